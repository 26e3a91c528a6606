"""A broker that lost its data: forgetting the offsets forgets their dead letters, so none is lost or doubled."""

from __future__ import annotations

from collections import Counter

import orjson
import psycopg
from psycopg import sql

from backbone.broker import EmbeddedBroker
from backbone.topics import dead_letter_topic
from projections.offsets import forget_offsets
from projections.read_models import ArchiveProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.projections.poison_support import WorkerThread, archive_envelope, consumed, produce, wait_for
from tests.projections.test_workers import _read_all, migrated  # noqa: F401 - fixture

OLD = b"{old poison"
NEW = b"{new poison"


def _project(servers, topics, database_url, schema, values: list[bytes]) -> list[tuple[int, int]]:
    """Send ``values`` to the decisions topic; run an archive worker until all are consumed and published."""
    topic, group = topics.name("trading_decisions"), topics.name("archive")
    placed = produce(servers, topics, ["archive"], topic, values)
    thread = WorkerThread(ProjectionWorker(ArchiveProjection(), servers, database_url, schema, topics,
                                           WorkerSettings(backoff_base=0.01)))
    try:
        wait_for(lambda: consumed(database_url, schema, group, topic, placed)
                 and all(published for *_, published in _rows(database_url, schema, group)), 240, "the batch", thread)
    finally:
        thread.stop()
    return placed


def _rows(database_url, schema, group) -> list[tuple[int, bytes, bool]]:
    """(source offset, record value, published) of the group's dead letters."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL(
            "SELECT source_offset, record_value, published_at IS NOT NULL FROM {}.dead_letters"
            " WHERE consumer_group = %s ORDER BY source_offset").format(sql.Identifier(schema)), (group,)).fetchall()


def test_a_fresh_broker_gets_each_poison_record_dead_lettered_once_at_its_new_offset(
    topic_settings, database_url, migrated, pg_dir  # noqa: F811
):
    schema, group = migrated, topic_settings.name("archive")
    good = [orjson.dumps(archive_envelope(i)) for i in range(3)]
    with EmbeddedBroker(pg_dir / "first") as broker:
        placed = _project(broker.bootstrap_servers, topic_settings, database_url, schema, [good[0], OLD, good[1]])
    old_offset = placed[1][1]
    assert [(o, v) for o, v, _ in _rows(database_url, schema, group)] == [(old_offset, OLD)]

    assert forget_offsets(database_url, schema, topic_settings.prefix) >= 1  # what the supervisor runs
    assert _rows(database_url, schema, group) == []

    with EmbeddedBroker(pg_dir / "second") as broker:  # empty: the relay re-publishes, new records come
        servers = broker.bootstrap_servers
        again = [good[0], NEW, OLD, good[1], good[2]]
        placed = _project(servers, topic_settings, database_url, schema, again)
        assert placed[1][1] == old_offset  # the new poison record sits where the old one was
        rows = _rows(database_url, schema, group)
        assert Counter(v for _, v, _ in rows) == Counter({OLD: 1, NEW: 1})
        assert {v: o for o, v, _ in rows} == {NEW: placed[1][1], OLD: placed[2][1]}
        letters = _read_all(servers, topic_settings.name(dead_letter_topic("archive")), 2)
        assert sorted(value for value, _ in letters) == sorted([OLD, NEW])
    with psycopg.connect(database_url) as conn:
        archived = conn.execute(sql.SQL("SELECT count(*) FROM {}.event_archive").format(sql.Identifier(schema)))
        assert archived.fetchone()[0] == 3
