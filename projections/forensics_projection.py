"""The forensics projection: a SHAP record for every decision, written with its fill.

Reads ``trading_decisions``; decisions are explained in batches per model
version (:mod:`projections.forensics`), fills are attached to the record of
the decision they executed. A decision naming a model version the registry
does not hold is retried (the registry may still be receiving it), then
dead-lettered as ``unknown_model_version``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Json

from projections.bulk import BulkInsert
from projections.envelopes import Envelope
from projections.failures import PoisonMessage
from projections.forensics import (
    DecisionToExplain,
    ExplainerCache,
    Explanation,
    UnknownModelVersion,
    explain_batch,
)
from projections.groups import PROJECTION_TOPICS
from projections.read_models import DECISIONS, FILLS, check_trading_event, event_time, fill_of
from projections.worker import Projection

__all__ = ["ForensicsProjection"]


@dataclass(frozen=True)
class _Record:
    envelope: Envelope
    explanation: Explanation | None
    """None for a fill (it only updates the record of its decision)."""


class ForensicsProjection(Projection):
    """SHAP forensics of every decision; see the module docstring."""

    group = "forensics"
    topics = PROJECTION_TOPICS[group]

    def __init__(self, explainers: ExplainerCache) -> None:
        self._explainers = explainers

    async def already_written(
        self, conn: psycopg.AsyncConnection[Any], schema: str, envelopes: Sequence[Envelope]
    ) -> set[int]:
        """Decisions explained before (a re-publish after a broker lost its data): no SHAP again."""
        ids: dict[str, int] = {}
        times: list[datetime] = []
        for i, e in enumerate(envelopes):
            if e["event_type"] in DECISIONS:
                body = e.get("trading_decision")
                decision_id = body.get("decision_id") if isinstance(body, dict) else None
                try:
                    at = event_time(e)
                except (KeyError, TypeError, ValueError, OverflowError):
                    continue  # a malformed one is left to prepare, which dead-letters it
                key = _uuid_text(decision_id)
                if key is not None:
                    ids[key] = i
                    times.append(at)
        if not ids:
            return set()
        # By the primary key (decided_at, decision_id): the batch's time span and its ids. By the id
        # alone this was a scan of every forensics row each batch, a cost that grew with the table
        # (measured: the forensics backend was PostgreSQL's busiest process within two minutes of
        # `glassbox up`). The ids go as one text parameter: psycopg dumps a list parameter element
        # by element in Python (~10 % of this worker's CPU when they went as two arrays).
        cursor = await conn.execute(
            sql.SQL("SELECT decision_id::text FROM {}.forensics WHERE decided_at BETWEEN %s AND %s"
                    " AND decision_id = ANY(string_to_array(%s, ',')::uuid[])").format(sql.Identifier(schema)),
            (min(times), max(times), ",".join(ids)))
        return {ids[row[0]] for row in await cursor.fetchall()}

    def validate(self, envelope: Envelope) -> None:
        """A decision or fill whose fields the record cannot hold is dead-lettered before any SHAP work."""
        check_trading_event(envelope)

    def prepare(self, envelopes: Sequence[Envelope]) -> list[Any]:
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(envelopes):
            if e["event_type"] in DECISIONS:
                by_version[e["trading_decision"]["model_version"]].append(i)
        explained: dict[int, Explanation] = {}
        for version, indexes in by_version.items():
            try:
                explainers = self._explainers.get(version)
            except UnknownModelVersion as error:
                raise PoisonMessage("unknown_model_version", str(error)) from error
            try:
                batch = [_to_explain(envelopes[i], explainers.feature_names) for i in indexes]
                results = explain_batch(explainers, batch)
            except (KeyError, TypeError, ValueError) as error:
                raise PoisonMessage("bad_decision", f"cannot explain: {error!r}", permanent=True) from error
            explained.update(zip(indexes, results))
        return [
            _Record(e, explained.get(i)) if e["event_type"] in DECISIONS or e["event_type"] in FILLS else None
            for i, e in enumerate(envelopes)
        ]

    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Any]) -> None:
        """The batch's records in one binary COPY (:class:`projections.bulk.BulkInsert`); fills by key.

        Idempotent: a decision explained before stays as it was (ON CONFLICT DO NOTHING).
        """
        records, fills = [], {}
        for record in items:
            if record is None:
                continue
            e, x = record.envelope, record.explanation
            if x is not None:
                records.append((
                    x.decision_id, event_time(e), x.model_version, x.expected_value, x.model_output,
                    x.shap_values, x.top_features, x.regime_reasoning, x.strategy_selection,
                    e["trading_decision"]["risk_checks"],
                ))
            else:
                # A desk fills a decision at most once; should two fills of one decision meet in a
                # batch, the later one is kept, as row-by-row updates would have left it.
                fills[(e["payload"]["decision_id"], event_time(e))] = Json(fill_of(e))
        # Decisions first: a fill in the same batch updates the row just inserted.
        if records:
            await _FORENSICS.write(conn, schema, records)
        if fills:
            # One keyed UPDATE per fill (a batch holds few): by the whole primary key it is an
            # index lookup whatever the planner knows. A join with a staged fills table was
            # planned as a scan of the whole forensics partition each batch (no statistics on a
            # fresh partition or a temp table), a cost that grew with the table: measured under
            # perf.pipeline, 228 scans reading 2.2 M rows for 29 k rows written.
            # A fill carries its decision's tick time: both events were stamped by the same tick.
            async with conn.cursor() as cur:
                await cur.executemany(sql.SQL(
                    "UPDATE {}.forensics SET fill = %s WHERE decided_at = %s AND decision_id = %s::uuid"
                ).format(sql.Identifier(schema)), [(fill, at, decision_id) for (decision_id, at), fill in fills.items()])


# Documents as json: validated text, not parsed into jsonb (migration 0006; a jsonb target casts them).
_FORENSICS = BulkInsert("forensics", (
    ("decision_id", "text", "decision_id::uuid"), ("decided_at", "timestamptz", "decided_at"),
    ("model_version", "text", "model_version"), ("expected_value", "float8", "expected_value"),
    ("model_output", "float8", "model_output"), ("shap_values", "json", "shap_values"),
    ("top_features", "json", "top_features"), ("regime_reasoning", "text", "regime_reasoning"),
    ("strategy_selection", "text", "strategy_selection"), ("risk_checks", "json", "risk_checks"),
))
"""The forensics rows' COPY. Its staging table is ``ON COMMIT DELETE ROWS``: this projection's own
staging table once was not, and since autovacuum never visits a temporary table, every batch's
``INSERT ... SELECT`` and ``DELETE`` scanned the dead rows of all earlier ones (measured under
perf.pipeline at 1,000 decisions/s: 200 µs of PostgreSQL CPU per row within a minute, and rising)."""


def _uuid_text(value: object) -> str | None:
    """``value`` as PostgreSQL prints a uuid, or None when it is not a uuid's text."""
    if not isinstance(value, str):
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


def _to_explain(envelope: Envelope, names: Sequence[str]) -> DecisionToExplain:
    d = envelope["trading_decision"]
    features = d["features"]
    vector = [features[name] for name in names] if isinstance(features, dict) else features
    regimes = ("bull", "bear", "sideways")
    return DecisionToExplain(
        decision_id=d["decision_id"],
        model_version=d["model_version"],
        features=[float("nan") if v is None else v for v in vector],
        strategy_weights={r: d["strategy_weights"][f"{r}_specialist"] for r in regimes},
        regime_probs=d["regime_probs"],
        regime_entropy=d["regime_entropy"],
        specialist_margins=d["specialist_margins"],
        score=d["score"],
        probability_up=d["probability_up"],
        action=d["action"],
        quantity=d["quantity"],
    )
