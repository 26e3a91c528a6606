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


def test_checking_a_batch_pauses_the_collector_and_always_turns_it_back_on() -> None:
    """The collector is paused while a batch decodes (docs/design.md, Events), on again after, bad records or not."""
    import gc
    from types import SimpleNamespace

    from projections.batch_writes import BatchWriter
    from projections.dead_letters import DeadLetter
    from projections.worker import WorkerMetrics

    seen: list[bool] = []

    class Watching(DecisionsProjection):
        def validate(self, envelope):  # type: ignore[no-untyped-def]
            seen.append(gc.isenabled())
            super().validate(envelope)

    batches = BatchWriter(Watching(), "s", "p.read-models", WorkerSettings(), WorkerMetrics())
    good = b'{"event_id":"00000000-0000-0000-0000-000000000001","event_type":"X.v1","schema_version":1,' \
           b'"log_position":1,"symbol":"A","timestamp_ns":0}'
    messages = [SimpleNamespace(topic="t", partition=0, offset=i, key=b"A", value=value)
                for i, value in enumerate([good, b"not json", b"[1, 2]"])]
    letters: list[DeadLetter] = []
    found = batches.checked(messages, letters)
    assert gc.isenabled() and seen == [False]
    assert [o.envelope["event_id"] for o in found] == ["00000000-0000-0000-0000-000000000001"]
    assert sorted((letter.offset, letter.index, letter.reason) for letter in letters) == [
        (1, None, "undecodable"), (2, 0, "undecodable"), (2, 1, "undecodable")]
