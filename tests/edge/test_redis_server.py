"""EmbeddedRedis starts a real redis-server with AOF on in its data dir."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from edge.child_process import free_port
from edge.errors import EdgeError, RedisNotReady, RedisServerNotFound, RedisServerStartError
from edge.redis_server import EmbeddedRedis, RedisServerSettings, aof_bytes, startup_timeout_for, wait_until_loaded
from tests.edge.embedded_server_contract import EmbeddedServerContract, write_script
from tests.edge.loading_redis import (
    BASE_TIMEOUT,
    CHUNK,
    LOADING_MB,
    SLOW_LOAD,
    entries_in,
    given_loading_redis,
    write_big_aof,
)


class TestEmbeddedRedis(EmbeddedServerContract):
    launcher = EmbeddedRedis
    not_found_error = RedisServerNotFound
    start_error = RedisServerStartError
    state_error = EdgeError
    given_address = "redis://example.invalid:6379/0"

    def construct_server_without_binary(self, data_dir: Path) -> EmbeddedRedis:
        settings = RedisServerSettings(binary=data_dir.parent / "no-such-redis-server", install_if_missing=False)
        return EmbeddedRedis(data_dir, settings)

    def construct_server_that_exits(self, data_dir: Path, bin_dir: Path, body: str) -> EmbeddedRedis:
        bin_dir.mkdir()
        fake = write_script(bin_dir / "redis-server", body)
        return EmbeddedRedis(data_dir, RedisServerSettings(binary=fake))

    def expected_address(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def not_found_message(self, data_dir: Path) -> str:
        return (
            "redis-server not found: install it with `apt-get install redis-server` "
            "or set REDIS_URL to a running Redis"
        )

    def client_answers(self, address: str) -> bool:
        client = redis.Redis.from_url(address, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def test_starts_with_aof_in_its_data_dir_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with EmbeddedRedis(data_dir) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.ping()
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("dir") == {"dir": str(data_dir.resolve())}
            client.set("k", "v")
        finally:
            client.close()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert (data_dir / "appendonlydir").is_dir()
    assert server.logfile.is_file()
    with pytest.raises(EdgeError):
        _ = server.url  # stopped


# -- a Redis that is loading its AOF is starting, not dead ------------------------------------------------


def test_startup_timeout_is_the_base_plus_the_replay_of_the_aof() -> None:
    assert startup_timeout_for(0, 10.0, 8e6) == 10.0
    assert startup_timeout_for(-5, 10.0, 8e6) == 10.0  # a size read as negative never shortens the base
    assert startup_timeout_for(800_000_000, 10.0, 8e6) == 110.0
    sizes = [0, 1, 10**6, 10**9, 10**12]
    timeouts = [startup_timeout_for(size, 2.0, 1e6) for size in sizes]
    assert timeouts == sorted(timeouts)
    assert timeouts[-1] - timeouts[-2] == pytest.approx((10**12 - 10**9) / 1e6)


@given(sizes=st.lists(st.integers(min_value=-(2**63), max_value=2**63), min_size=2, max_size=50),
       base=st.floats(min_value=1e-6, max_value=1e6), rate=st.floats(min_value=1.0, max_value=1e12))
def test_startup_timeout_never_below_the_base_and_grows_with_the_aof(sizes: list[int], base: float,
                                                                     rate: float) -> None:
    timeouts = [startup_timeout_for(size, base, rate) for size in sorted(sizes)]
    assert all(timeout >= base for timeout in timeouts)
    assert timeouts == sorted(timeouts)
    assert all(timeout < float("inf") for timeout in timeouts)


def test_aof_bytes_counts_every_file_of_the_aof(tmp_path: Path) -> None:
    assert aof_bytes(tmp_path / "nothing-here") == 0
    entries = write_big_aof(tmp_path / "redis", megabytes=1)
    files = list((tmp_path / "redis" / "appendonlydir").iterdir())
    assert {path.suffix for path in files} == {".rdb", ".aof", ".manifest"}
    assert aof_bytes(tmp_path / "redis") == sum(path.stat().st_size for path in files) > len(CHUNK) * entries // 5000


def test_a_loading_redis_is_waited_for_beyond_the_base_timeout_with_progress(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    lines: list[str] = []
    server = EmbeddedRedis(data_dir, SLOW_LOAD, progress=lines.append)
    server.start()
    port = server.port
    server.stop()
    entries = write_big_aof(data_dir)
    # Scaled to the AOF now on disk, at the settings' (here: a MB a second) replay rate.
    assert server.startup_timeout() == pytest.approx(BASE_TIMEOUT + aof_bytes(data_dir) / (1024 * 1024))
    assert server.startup_timeout() > BASE_TIMEOUT + 0.99 * LOADING_MB
    started = time.monotonic()
    server.restart()  # what a supervisor calls after Redis died: same data dir, same port
    try:
        waited = time.monotonic() - started
        assert server.port == port
        assert waited > BASE_TIMEOUT  # the old fixed timeout would have declared it dead
        assert lines, "no progress line while Redis loaded its AOF"
        assert all(re.fullmatch(r"loading the AOF, \d+% of [\d,]+ MB(, about \d+ s left)? \.\.\.", line)
                   for line in lines), lines
        assert entries_in(server.url) == entries  # all of it loaded, nothing declared lost
    finally:
        server.stop()


def test_a_redis_that_exits_while_loading_fails_with_its_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    write_big_aof(data_dir, megabytes=5, tail=b"this is not a command\r\n" + CHUNK)
    server = EmbeddedRedis(data_dir, SLOW_LOAD)
    with pytest.raises(RedisServerStartError, match=r"exited with code 1") as raised:
        server.start()
    message = str(raised.value)
    assert f"log {server.logfile} ends:" in message
    assert "Bad file format reading the append only file" in message  # from the log's tail
    assert not raised.value.retriable


def test_restart_before_any_start_says_what_to_call(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"never started: call start\(\) first"):
        EmbeddedRedis(tmp_path / "redis").restart()


def test_a_given_redis_that_is_loading_is_waited_for_with_progress(tmp_path: Path) -> None:
    lines: list[str] = []
    with given_loading_redis(tmp_path) as (url, entries):
        wait_until_loaded(url, SLOW_LOAD, progress=lines.append)
        assert lines, "no progress line while the given Redis loaded its AOF"
        assert all(line.startswith("loading the AOF, ") for line in lines), lines
        assert entries_in(url) == entries


def test_a_given_redis_that_does_not_answer_says_so(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisNotReady, match=r"Redis at redis://:\*\*\*@127\.0\.0\.1:\d+/0 does not answer") as raised:
        wait_until_loaded(url, SLOW_LOAD)
    assert "secret" not in str(raised.value)
    assert "fix REDIS_URL" in str(raised.value)
