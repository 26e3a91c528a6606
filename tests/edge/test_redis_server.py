"""EmbeddedRedis starts a real redis-server with AOF on in its data dir."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis

from edge.errors import EdgeError, RedisServerNotFound, RedisServerStartError
from edge.redis_server import EmbeddedRedis, RedisServerSettings
from tests.edge.embedded_server_contract import EmbeddedServerContract, write_script

if TYPE_CHECKING:
    from pathlib import Path


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
