"""A Redis with an AOF big enough that loading it takes a few seconds: written in milliseconds, replayed slowly.

Shared by the launcher's tests (tests/edge/test_redis_server.py) and ``glassbox
up``'s (tests/actors/system/test_services.py). Not a test module: pytest
collects nothing here.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from edge.child_process import free_port
from edge.redis_server import EmbeddedRedis, RedisServerSettings

__all__ = ["BASE_TIMEOUT", "CHUNK", "LOADING_MB", "SLOW_LOAD", "entries_in", "given_loading_redis", "write_big_aof"]

LOADING_MB = 60
"""Of small XADDs: about 1 s of replay on a 2-core machine, so the wait is seen going past a 0.1 s base."""
BASE_TIMEOUT = 0.1
SLOW_LOAD = RedisServerSettings(startup_timeout=BASE_TIMEOUT, aof_load_bytes_per_s=1024 * 1024,
                                aof_rewrite_percentage=0)
"""A base timeout the replay outlasts; a replay rate so pessimistic that a busy CI machine stays within it."""


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


_STREAMS = 50
CHUNK = b"".join(_resp(b"XADD", b"s%d" % (i % _STREAMS), b"*", b"v", b"x") for i in range(5000))


def write_big_aof(data_dir: Path, megabytes: int = LOADING_MB, tail: bytes = b"") -> int:
    """Give ``data_dir`` an AOF of ``megabytes`` of XADDs, then ``tail``; how many entries it holds.

    Redis makes the files (base, increment, manifest); we append to the increment.

    Written as Redis writes it, but without a server in between: a few
    hundred thousand commands take milliseconds instead of a minute of XADDs.
    """
    with EmbeddedRedis(data_dir, SLOW_LOAD):
        pass  # Redis creates appendonlydir: base, incr file and manifest
    incr = next((data_dir / "appendonlydir").glob("*.incr.aof"))
    chunks = megabytes * 1024 * 1024 // len(CHUNK)
    with incr.open("ab") as aof:
        for _ in range(chunks):
            aof.write(CHUNK)
        aof.write(tail)
    return chunks * 5000


def entries_in(url: str) -> int:
    """How many entries the streams :func:`write_big_aof` writes hold in the Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.xlen(f"s{i}")) for i in range(_STREAMS))
    finally:
        client.close()



@contextmanager
def given_loading_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(URL, entries) of a Redis of the user's, just restarted: it answers LOADING while it replays a big AOF."""
    data_dir = tmp_path / "given-redis"
    entries = write_big_aof(data_dir)
    port = free_port()
    binary = EmbeddedRedis(data_dir).find_binary()
    given = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--appendonly", "yes",
         "--save", "", "--logfile", str(tmp_path / "given.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        try:
            while True:  # until it listens; then it answers LOADING for a while
                try:
                    client.ping()
                except redis.BusyLoadingError:
                    break
                except redis.ConnectionError:
                    assert given.poll() is None, (tmp_path / "given.log").read_text()
                    time.sleep(0.01)
                    continue
                pytest.fail("the given Redis answered PING before it loaded its AOF")
        finally:
            client.close()
        yield url, entries
    finally:
        given.terminate()
        given.wait()
