"""The supervisor's watch over its services: one down and one back per outage, an embedded one restarted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import redis

from actors.system.service_watch import ServiceBack, ServiceDown, ServiceRestartFailed, ServiceWatch, WatchedService
from edge.redis_server import EmbeddedRedis
from projections.postgres_server import remove_stale_pid_file


def test_a_killed_embedded_redis_is_restarted_on_its_port_from_its_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        port = server.port
        with redis.Redis.from_url(server.url) as client:
            client.set("kept", "across the restart")
        watch = ServiceWatch([WatchedService("redis", server.url, server)])
        assert watch.check() == []
        os.kill(server.pid, signal.SIGKILL)
        changes = []
        while not any(isinstance(c, ServiceBack) for c in changes):
            changes += watch.check(["shard-0", "worker-archive", "api"])
        down, back = changes[0], changes[-1]
        assert isinstance(down, ServiceDown) and down.restarting and down.waiting == ("shard-0", "worker-archive", "api")
        assert str(down).startswith("redis is down (its process exited with code -9); trading paused, restarting it")
        assert isinstance(back, ServiceBack) and back.restarted
        assert all(isinstance(c, ServiceRestartFailed) for c in changes[1:-1])
        assert watch.down == [] and watch.check() == []
        assert server.port == port
        with redis.Redis.from_url(server.url) as client:
            assert client.get("kept") == b"across the restart"
    finally:
        server.stop()


def test_a_given_service_is_down_after_two_missed_probes_and_back_at_its_first_answer() -> None:
    now, answering = [0.0], [True]
    service = WatchedService("postgresql", "postgresql://user:secret@db/x", answers=lambda: answering[0])
    watch = ServiceWatch([service], clock=lambda: now[0])

    def tick() -> list:
        now[0] += 1.0
        return watch.check(["worker-forensics", "shard-0"])

    assert tick() == []
    answering[0] = False
    assert tick() == []  # one late answer is no outage
    [down] = tick()
    assert down == ServiceDown("postgresql", "it does not answer at postgresql://user:***@db/x", False,
                               ("worker-forensics",))
    assert "secret" not in str(down) and str(down).endswith("waiting for it; worker-forensics wait for postgresql")
    assert tick() == [] and tick() == []  # said once
    answering[0] = True
    [back] = tick()
    assert back == ServiceBack("postgresql", 3.0, False)
    assert tick() == []


def test_a_pid_file_is_removed_only_when_no_postgres_works_in_its_data_dir(tmp_path: Path, database_url) -> None:
    stale = tmp_path / "cluster"
    stale.mkdir()
    (stale / "postmaster.pid").write_text(f"{os.getpid()}\n{stale}\n")  # a live pid, but not a postgres
    assert remove_stale_pid_file(stale) is True
    assert not (stale / "postmaster.pid").exists()
    assert remove_stale_pid_file(stale) is False  # nothing to remove
    with psycopg.connect(database_url) as conn:  # the session's real, running server
        live = Path(conn.execute("SHOW data_directory").fetchone()[0])
    assert remove_stale_pid_file(live) is False
    assert (live / "postmaster.pid").exists()
