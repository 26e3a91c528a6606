"""EmbeddedRedis starts a real redis-server with AOF on in its data dir."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis

from edge.redis_server import (
    EdgeError,
    EmbeddedRedis,
    RedisServerNotFound,
    RedisServerSettings,
    RedisServerStartError,
    redis_url_or_embedded,
)

if TYPE_CHECKING:
    from pathlib import Path


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


def test_missing_binary_raises_one_clear_sentence(tmp_path: Path) -> None:
    settings = RedisServerSettings(
        binary=tmp_path / "no-such-redis-server", install_if_missing=False
    )
    with pytest.raises(RedisServerNotFound) as raised:
        EmbeddedRedis(tmp_path / "redis", settings).start()
    assert str(raised.value) == (
        "redis-server not found: install it with `apt-get install redis-server` "
        "or set REDIS_URL to a running Redis"
    )
    assert not (tmp_path / "redis").exists()


def test_given_url_starts_nothing(tmp_path: Path) -> None:
    settings = RedisServerSettings(binary=tmp_path / "absent", install_if_missing=False)
    with redis_url_or_embedded(
        "redis://example.invalid:6379/0", tmp_path, settings
    ) as url:
        assert url == "redis://example.invalid:6379/0"


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot open the data dir' >&2\nexit 1\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(tmp_path / "redis", RedisServerSettings(binary=fake))
    with pytest.raises(RedisServerStartError, match="cannot open the data dir"):
        server.start()
    server.stop()  # nothing left running; stopping again is harmless
