"""`glassbox up`'s services: a Redis given by REDIS_URL that is still loading is waited for, named when it fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from actors.system.components import ComponentFailed
from actors.system.services import _named, _redis
from edge.child_process import free_port
from edge.redis_server import EmbeddedRedis
from glassbox import Settings
from tests.edge.loading_redis import entries_in, given_loading_redis

if TYPE_CHECKING:
    from pathlib import Path


def test_a_given_redis_that_is_loading_is_waited_for_with_progress(tmp_path: Path) -> None:
    lines: list[str] = []
    with given_loading_redis(tmp_path) as (url, entries):
        settings = Settings.from_env({"GLASSBOX_HOME": str(tmp_path / "home"), "REDIS_URL": url})
        with _named("redis", _redis(settings, EmbeddedRedis(settings.redis_dir), lines.append)) as redis_url:
            assert redis_url == url
            assert entries_in(url) == entries  # it had loaded when up went on
    assert lines, "no progress line while the given Redis loaded its AOF"
    assert all(line.startswith("redis: loading the AOF, ") for line in lines), lines


def test_a_given_redis_that_does_not_answer_stops_start_up_with_its_name(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings.from_env({"GLASSBOX_HOME": str(tmp_path / "home"), "REDIS_URL": url})
    with pytest.raises(ComponentFailed, match=r"^redis: Redis at .* does not answer .*fix REDIS_URL"), \
            _named("redis", _redis(settings, EmbeddedRedis(settings.redis_dir), print)):
        pass
