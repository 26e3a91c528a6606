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

import orjson
import psycopg
from psycopg import sql

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
        times: dict[str, datetime] = {}
        for i, e in enumerate(envelopes):
            if e["event_type"] in DECISIONS:
                body = e.get("trading_decision")
                decision_id = body.get("decision_id") if isinstance(body, dict) else None
                try:
                    at = event_time(e)
                except (KeyError, TypeError, ValueError, OverflowError):
                    continue  # a malformed one is left to prepare, which dead-letters it
                if _is_uuid(decision_id):
                    key = str(UUID(decision_id))
                    ids[key], times[key] = i, at
        if not ids:
            return set()
        # By the whole primary key (decided_at, decision_id): by the id alone this was a scan
        # of every forensics row each batch, a cost that grew with the table (measured: the
        # forensics backend was PostgreSQL's busiest process within two minutes of `glassbox up`).
        cursor = await conn.execute(
            sql.SQL("SELECT f.decision_id::text FROM {}.forensics f"
                    " JOIN unnest(%s::timestamptz[], %s::uuid[]) AS k(decided_at, decision_id)"
                    " USING (decided_at, decision_id)").format(sql.Identifier(schema)), (list(times.values()), list(times)))
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
        """The batch's records by COPY into a session staging table, then one statement; fills by key.

        COPY is psycopg's C path (no per-row statement, no Python array dumping); the staging
        table is this connection's own (``TEMP``) and emptied after each use, so a savepoint
        that rolls back (the worker bisecting a refused batch) leaves nothing behind. Idempotent:
        a decision explained before stays as it was (ON CONFLICT DO NOTHING).
        """
        s = sql.Identifier(schema)
        records, fills = [], {}
        for record in items:
            if record is None:
                continue
            e, x = record.envelope, record.explanation
            if x is not None:
                records.append((
                    x.decision_id, event_time(e), x.model_version, x.expected_value, x.model_output,
                    _json(x.shap_values), _json(x.top_features), x.regime_reasoning, x.strategy_selection,
                    _json(e["trading_decision"]["risk_checks"]),
                ))
            else:
                # A desk fills a decision at most once; should two fills of one decision meet in a
                # batch, the later one is kept, as row-by-row updates would have left it.
                fills[(e["payload"]["decision_id"], event_time(e))] = _json(fill_of(e))
        async with conn.cursor() as cur:
            await cur.execute(_STAGE)
            # Decisions first: a fill in the same batch updates the row just inserted.
            if records:
                async with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(_RECORDS))) as copy:
                    for row in records:
                        await copy.write_row(row)
                await cur.execute(sql.SQL(
                    "INSERT INTO {}.forensics (decision_id, decided_at, model_version, expected_value, model_output,"
                    " shap_values, top_features, regime_reasoning, strategy_selection, risk_checks)"
                    " SELECT * FROM {} ON CONFLICT DO NOTHING; DELETE FROM {}"
                ).format(s, sql.Identifier(_RECORDS), sql.Identifier(_RECORDS)))
            if fills:
                # One keyed UPDATE per fill (a batch holds few): by the whole primary key it is an
                # index lookup whatever the planner knows. A join with a staged fills table was
                # planned as a scan of the whole forensics partition each batch (no statistics on a
                # fresh partition or a temp table), a cost that grew with the table: measured under
                # perf.pipeline, 228 scans reading 2.2 M rows for 29 k rows written.
                # A fill carries its decision's tick time: both events were stamped by the same tick.
                await cur.executemany(sql.SQL(
                    "UPDATE {}.forensics SET fill = %s::json WHERE decided_at = %s AND decision_id = %s::uuid"
                ).format(s), [(fill, at, decision_id) for (decision_id, at), fill in fills.items()])


_RECORDS = "glassbox_forensics_rows"
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS {} (decision_id uuid, decided_at timestamptz, model_version text,"
    " expected_value float8, model_output float8, shap_values json, top_features json, regime_reasoning text,"
    " strategy_selection text, risk_checks json)"
).format(sql.Identifier(_RECORDS))
"""This connection's staging table for :meth:`ForensicsProjection.write` (TEMP: nobody else sees it).

Its documents are json: validated text, not parsed into jsonb (migration 0006; a jsonb target casts them)."""


def _json(value: Any) -> str:
    """JSON text as the connection's JSON dumpers write it (orjson: NaN as null, ``str`` for the rest)."""
    return orjson.dumps(value, default=str).decode()


def _is_uuid(value: object) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


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
