"""Unfinished work names its owner and the owner's last logged error; tick backlogs are read from real Redis."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import redis

from actors.system.stuck import last_problem, stuck_work, tick_backlog
from edge.redis_server import EmbeddedRedis
from edge.tick_stream import TickKeys
from projections.lag import PartitionLag


def _log(path: Path, *records: dict | str) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def test_the_last_error_or_warning_of_a_log_is_its_owners_account(tmp_path: Path) -> None:
    log = tmp_path / "shard-0.log"
    _log(log, {"ts": "t1", "level": "ERROR", "message": "old"}, {"ts": "t2", "level": "WARNING", "message": "newer"},
         {"ts": "t3", "level": "INFO", "message": "fine"}, "not json at all")
    assert last_problem(log) == "t2 WARNING newer"
    _log(log, {"ts": "t1", "level": "INFO", "message": "fine"})
    assert last_problem(log) is None
    assert last_problem(tmp_path / "missing.log") is None
    log.write_bytes(b"\xff\xfe garbage\x00\n")
    assert last_problem(log) is None


def test_a_tick_backlog_counts_pending_and_unread_entries(redis_url: str, key_prefix: str) -> None:
    keys = TickKeys(key_prefix)
    client = redis.Redis.from_url(redis_url)
    stream = keys.stream("AAPL")
    assert tick_backlog(client, keys, "AAPL", "shard-0").unfinished == 0  # nothing published
    ids = [client.xadd(stream, {b"p": b"1"}) for _ in range(5)]
    before_group = tick_backlog(client, keys, "AAPL", "shard-0")
    assert (before_group.undelivered, before_group.oldest) == (5, ids[0].decode())
    client.xgroup_create(stream, "desks", id="0")
    client.xreadgroup("desks", "shard-0", {stream: ">"}, count=2)
    client.xack(stream, "desks", ids[0])
    backlog = tick_backlog(client, keys, "AAPL", "shard-0")
    assert (backlog.pending, backlog.undelivered, backlog.oldest) == (1, 3, ids[1].decode())
    client.close()


def test_stuck_work_names_shard_symbol_relay_store_group_partition_and_last_error(tmp_path: Path,
                                                                                  redis_url: str, key_prefix: str) -> None:
    keys = TickKeys(key_prefix)
    client = redis.Redis.from_url(redis_url)
    client.xadd(keys.stream("MSFT"), {b"p": b"1"})
    _log(tmp_path / "shard-0.log", {"ts": "t", "level": "ERROR", "message": "commit of a cycle failed"})
    stuck = stuck_work([tick_backlog(client, keys, "MSFT", "shard-0")],
                       [("relay-shard-0", "glassbox:shard-0", 4, 9), ("relay-shard-1", "glassbox:shard-1", 9, 9)],
                       [PartitionLag("archive", "regime_changes", 3, 10, 12), PartitionLag("archive", "x", 0, 1, 1)],
                       tmp_path)
    client.close()
    lines = [s.line() for s in stuck]
    assert len(lines) == 3, lines
    assert lines[0].startswith("shard-0 symbol MSFT: 1 ticks never decided") and \
        "last error in shard-0.log: t ERROR commit of a cycle failed" in lines[0]
    assert lines[1].startswith("relay-shard-0 store glassbox:shard-0: 5 events not relayed (at position 4, head 9)")
    assert lines[2].startswith("worker-archive group archive regime_changes/3: 2 messages behind (at offset 10")
    assert "nothing logged at ERROR or WARNING by worker-archive" in lines[2]
    assert [s.component for s in stuck_work([], [], None, tmp_path)] == ["supervisor"]


def test_a_tick_backlog_counts_unread_entries_after_redis_reloads_its_aof(tmp_path: Path, key_prefix: str) -> None:
    # A Redis restarted on its AOF forgets each group's entries-read, so XINFO's ``lag`` is nil
    # (seen in the service-outage test: the drain took "lag nil" for "nothing left").
    keys = TickKeys(key_prefix)
    stream = keys.stream("AAPL")
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        client.xgroup_create(stream, "desks", id="$", mkstream=True)
        ids = [client.xadd(stream, {b"p": b"1"}) for _ in range(5)]
        client.xreadgroup("desks", "shard-0", {stream: ">"}, count=2)
        client.xack(stream, "desks", ids[0])
        client.close()
        os.kill(server.pid, signal.SIGKILL)  # restart() reaps it and starts Redis again on its AOF
        server.restart()
        client = redis.Redis.from_url(server.url)
        (group,) = client.xinfo_groups(stream)
        assert group["lag"] is None  # the condition this test is about
        backlog = tick_backlog(client, keys, "AAPL", "shard-0")
        assert (backlog.pending, backlog.undelivered, backlog.oldest) == (1, 3, ids[1].decode())
        client.close()
