"""How a projection worker asks the broker for records (docs/design.md, "What this machine allows")."""

from __future__ import annotations

import pytest

from backbone.topics import TopicSettings
from projections.read_models import DecisionsProjection
from projections.worker import ProjectionWorker, WorkerSettings


def _worker(settings: WorkerSettings) -> ProjectionWorker:
    return ProjectionWorker(DecisionsProjection(), "127.0.0.1:9", "postgresql://nowhere/x", "s",
                            TopicSettings(prefix="p."), settings)


def test_the_default_fetch_settings_reach_the_consumer() -> None:
    settings = WorkerSettings()
    options = _worker(settings).consumer_options()
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (settings.fetch_min_bytes,
                                                                          settings.fetch_max_wait_ms)


def test_fetch_settings_reach_the_consumer_and_offsets_stay_ours() -> None:
    options = _worker(WorkerSettings(fetch_min_bytes=4096, fetch_max_wait_ms=120)).consumer_options()
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (4096, 120)
    assert options["enable_auto_commit"] is False  # offsets are committed with the rows, in PostgreSQL
    assert options["group_id"] == "p.read-models"


@pytest.mark.parametrize("value", [0, -1])
def test_fetch_min_bytes_below_one_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="fetch_min_bytes"):
        WorkerSettings(fetch_min_bytes=value)
