"""No record stops a projection: drawn garbage among good decisions, three real workers, the real broker and PostgreSQL.

Every input is either projected exactly once or dead-lettered exactly once with a reason, in every
group; the good records around it are projected; the workers never die; each dead letter is in
``dlq.<group>`` once (a forced retry — an unknown model version — happens among the garbage).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from backbone.topics import dead_letter_topic
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.read_models import DECISION, ArchiveProjection, DecisionsProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.projections.poison_support import WorkerThread, consumed, dead_letters, produce, wait_for
from tests.projections.test_workers import _decision_envelopes, _read_all, migrated  # noqa: F401 - fixture

GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "A\x00B", "\x1b[2J\x07", "x" * 100_000, "not-a-uuid", "NaN", "1e999"])
    | st.sampled_from([2**63, -(2**63) - 1, 10**400, 1e308, -0.0, 5e-324]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
TOP_FIELDS = ["event_id", "event_type", "schema_version", "store", "log_position", "originator_id",
              "originator_version", "symbol", "timestamp", "timestamp_ns", "correlation_id", "trading_decision"]
BODY_FIELDS = ["decision_id", "symbol", "action", "quantity", "confidence", "regime_probs", "strategy_weights",
               "features", "risk_checks", "risk_passed", "model_version", "price", "probability_up", "score",
               "regime_entropy", "specialist_margins"]
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(TOP_FIELDS + [f"trading_decision.{f}" for f in BODY_FIELDS]), GARBAGE),
    st.tuples(st.just("delete"), st.sampled_from(TOP_FIELDS + [f"trading_decision.{f}" for f in BODY_FIELDS]),
              st.none()),
    st.tuples(st.just("model"), st.just("trading_decision.model_version"), st.just("f" * 16)),  # retried first
    st.tuples(st.just("raw"), st.just(""), st.binary(max_size=40)),  # not JSON, invalid UTF-8
)
INPUT = st.one_of(st.none(), MUTATION)  # None: a good record
RECORDS = st.lists(st.lists(INPUT, min_size=1, max_size=3), min_size=1, max_size=8)  # a record may be a pack


def _apply(envelope: dict[str, Any], mutation) -> dict[str, Any] | bytes:
    kind, path, value = mutation
    if kind == "raw":
        return value
    target, *rest = path.split(".")
    holder = envelope
    if rest:
        holder = envelope.get(target)
        target = rest[0]
        if not isinstance(holder, dict):
            return envelope
    if kind == "delete":
        holder.pop(target, None)
    else:
        holder[target] = value
    return envelope


def _key(value: object) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def test_no_drawn_record_stops_any_projection_and_each_is_projected_or_dead_lettered_once(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated, model_registry  # noqa: F811
):
    schema = migrated
    bases = [e for e in _decision_envelopes(redis_url, store, kafka_servers, topic_settings)][:20]
    topic = topic_settings.name("trading_decisions")
    projections = [ArchiveProjection(), DecisionsProjection(), ForensicsProjection(ExplainerCache(model_registry))]
    threads = [WorkerThread(ProjectionWorker(p, kafka_servers, database_url, schema, topic_settings,
                                             WorkerSettings(max_retries=2, backoff_base=0.01)))
               for p in projections]
    tables = {"archive": ("event_archive", "event_id"), "read-models": ("decisions", "decision_id"),
              "forensics": ("forensics", "decision_id")}
    position = [10**6]

    def fresh() -> dict[str, Any]:
        envelope = copy.deepcopy(bases[position[0] % len(bases)])
        position[0] += 1
        envelope.update(event_id=str(uuid.uuid4()), originator_id=str(uuid.uuid4()), log_position=position[0])
        envelope["trading_decision"]["decision_id"] = str(uuid.uuid4())
        return envelope

    @settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(RECORDS)
    def example(records) -> None:
        values, inputs = [], []  # inputs: (record number, index or None, mutated?, envelope or None)
        for number, drawn in enumerate(records):
            items = [(m, fresh() if m is None else _apply(fresh(), m)) for m in drawn]
            if len(items) == 1 or any(isinstance(item, bytes) for _, item in items):
                items = items[:1]
                m, item = items[0]
                values.append(item if isinstance(item, bytes) else json.dumps(item, allow_nan=True).encode())
                inputs.append((number, None, m is not None, None if isinstance(item, bytes) else item))
            else:
                values.append(json.dumps([item for _, item in items], allow_nan=True).encode())
                inputs += [(number, i, m is not None, item) for i, (m, item) in enumerate(items)]
        placed = produce(kafka_servers, topic_settings, list(tables), topic, values)
        for group in tables:
            wait_for(lambda: consumed(database_url, schema, topic_settings.name(group), topic, placed), 240,
                     f"{group} to consume the example", next(t for t in threads if t.worker.projection.group == group))
        with psycopg.connect(database_url) as conn:
            for group, (table, column) in tables.items():
                letters = Counter((p, o, i) for t, p, o, i, _, _ in dead_letters(database_url, schema,
                                                                                   topic_settings.name(group)))
                for number, index, mutated, envelope in inputs:
                    p, o = placed[number]
                    lettered = letters[(p, o, -1)] + (letters[(p, o, index)] if index is not None else 0)
                    holder = envelope if column == "event_id" else (envelope or {}).get("trading_decision")
                    key = _key(holder.get(column)) if isinstance(holder, dict) else None
                    rows = 0 if key is None else conn.execute(sql.SQL("SELECT count(*) FROM {}.{} WHERE {} = %s").format(
                        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)), (key,)).fetchone()[0]
                    if not mutated and letters[(p, o, -1)] and any(m for n, _, m, _ in inputs if n == number):
                        # A pack whose mutated sibling makes the whole record undecodable (orjson reads no
                        # integer past 64 bits): the record is dead-lettered whole, its good items with it.
                        assert (rows, lettered) == (0, 1), (group, envelope)
                    elif not mutated:
                        assert (rows, lettered) == (1, 0), (group, envelope)
                    elif group != "archive" and isinstance(envelope, dict) and envelope.get("event_type") != DECISION:
                        assert rows == 0 and lettered <= 1, (group, envelope)  # not a decision: nothing to write
                    else:
                        assert rows + lettered == 1, (group, rows, lettered, envelope)
        assert all(t.alive() for t in threads), [t.errors for t in threads]

    try:
        example()
        for group in tables:  # the outbox has published every dead letter, each once
            wait_for(lambda: all(published for *_, published in dead_letters(
                database_url, schema, topic_settings.name(group))), 120, f"{group}'s dead letters published")
    finally:
        for t in threads:
            t.stop()
    assert all(not t.errors for t in threads), [t.errors for t in threads]
    for group in tables:
        rows = dead_letters(database_url, schema, topic_settings.name(group))
        letters = _read_all(kafka_servers, topic_settings.name(dead_letter_topic(group)), len(rows))
        sources = Counter(dict(headers)["source"].decode() for _, headers in letters)
        assert all(n == 1 for n in sources.values()), [s for s, n in sources.items() if n > 1]
        assert len(sources) == len(rows)
        assert all(dict(h)["reason"] and dict(h)["consumer_group"] == topic_settings.name(group).encode()
                   for _, h in letters)
