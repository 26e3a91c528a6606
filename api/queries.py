"""The API's reads from the read models: parameterised SQL only, one function per question."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from glassbox import GlassboxError

__all__ = ["ALERT_EVENT", "AlertPage", "BadCursor", "DecisionPage", "alert_page", "decision_page", "forensics_record",
           "portfolio"]

ALERT_EVENT = "Risk.Alert.Triggered.v1"
"""The archived event type ``GET /api/v1/alerts`` serves."""
_ALERT_FIELDS = ("symbol", "severity", "move", "threshold", "window_s", "price", "reference_price", "position",
                 "exposure", "exposure_fraction")


class BadCursor(GlassboxError, ValueError):
    """A pagination cursor this API did not hand out."""


@dataclass(frozen=True)
class DecisionPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def forensics_record(
    conn: psycopg.AsyncConnection[Any], schema: str, decision_id: UUID
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(decision row, forensics row) of a decision; (None, None) when the decision is unknown.

    One statement: an index probe on decision_index, then one pruned
    partition probe on each of decisions and forensics.
    """
    query = sql.SQL(
        "SELECT d.decision_id, d.symbol, d.decided_at, d.action, d.quantity, d.confidence, d.regime_probs,"
        " d.strategy_weights, d.risk_checks, d.correlation_id, d.log_position, d.fill,"
        " f.decision_id IS NOT NULL AS explained, f.model_version, f.expected_value, f.model_output,"
        " f.shap_values, f.top_features, f.regime_reasoning, f.strategy_selection, f.computed_at,"
        " f.fill AS forensics_fill"
        " FROM {0}.decision_index i"
        " JOIN {0}.decisions d ON d.decided_at = i.decided_at AND d.decision_id = i.decision_id"
        " LEFT JOIN {0}.forensics f ON f.decided_at = i.decided_at AND f.decision_id = i.decision_id"
        " WHERE i.decision_id = %s"
    ).format(sql.Identifier(schema))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (decision_id,))
        row = await cur.fetchone()
    if row is None:
        return None, None
    if not row["explained"]:
        return row, None
    record = {k: row[k] for k in _FORENSICS_COLUMNS}
    record["fill"] = row["forensics_fill"]
    return row, record


_FORENSICS_COLUMNS = (
    "model_version", "expected_value", "model_output", "shap_values", "top_features",
    "regime_reasoning", "strategy_selection", "computed_at",
)


async def decision_page(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    *,
    symbol: str | None,
    action: str | None = None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    cursor: str | None,
) -> DecisionPage:
    """Decisions in (time, id) order, ``limit`` at a time; ``cursor`` continues a previous page.

    Raises:
        BadCursor: ``cursor`` was not produced by this function.
    """
    filters = [("symbol = %s", symbol), ("action = %s", action), ("decided_at >= %s", start),
               ("decided_at < %s", end)]
    rows, next_cursor = await _keyset_page(
        conn, sql.SQL("SELECT decision_id, symbol, decided_at, action, quantity, confidence, price, regime_probs,"
                      " strategy_weights, model_version, risk_passed, fill FROM {}.decisions"
                      ).format(sql.Identifier(schema)),
        filters, ("decided_at", "decision_id"), limit, cursor)
    return DecisionPage(rows, next_cursor)


@dataclass(frozen=True)
class AlertPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def alert_page(
    conn: psycopg.AsyncConnection[Any], schema: str, *, symbol: str | None, since: datetime | None, limit: int,
    cursor: str | None,
) -> AlertPage:
    """Price alerts from the event archive in (time, event id) order; ``cursor`` continues a page.

    Raises:
        BadCursor: ``cursor`` was not produced by this function.
    """
    filters = [("event_type = %s", ALERT_EVENT), ("symbol = %s", symbol), ("event_time >= %s", since)]
    found, next_cursor = await _keyset_page(
        conn, sql.SQL("SELECT event_id, event_time, correlation_id, store, log_position, payload"
                      " FROM {}.event_archive").format(sql.Identifier(schema)),
        filters, ("event_time", "event_id"), limit, cursor)
    rows = []
    for row in found:
        fields = (row["payload"] or {}).get("payload") or {}
        rows.append({"alert_id": row["event_id"], "at": row["event_time"], **{k: fields.get(k) for k in _ALERT_FIELDS},
                     "correlation_id": row["correlation_id"], "store": row["store"],
                     "log_position": row["log_position"]})
    return AlertPage(rows, next_cursor)


async def _keyset_page(
    conn: psycopg.AsyncConnection[Any], select_from: sql.Composable, filters: list[tuple[str, Any]],
    key: tuple[str, str], limit: int, cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of ``select_from`` matching the ``filters`` whose value is not None, in ``key`` (time, id) order.

    One page of ``limit``, after ``cursor``; and the cursor of the next page (None on the last).

    Raises:
        BadCursor: ``cursor`` was not produced here.
    """
    where = [sql.SQL("TRUE")] + [sql.SQL(condition) for condition, value in filters if value is not None]
    params = [value for _, value in filters if value is not None]
    at, ident = (sql.Identifier(column) for column in key)
    if cursor is not None:
        where.append(sql.SQL("({}, {}) > (%s, %s)").format(at, ident))
        params += list(_decode_cursor(cursor))
    query = sql.SQL("{} WHERE {} ORDER BY {}, {} LIMIT %s").format(select_from, sql.SQL(" AND ").join(where), at, ident)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [*params, limit + 1])
        rows = await cur.fetchall()
    more, rows = len(rows) > limit, rows[:limit]
    return rows, (_encode_cursor(rows[-1][key[0]], rows[-1][key[1]]) if more and rows else None)


async def portfolio(conn: psycopg.AsyncConnection[Any], schema: str) -> list[dict[str, Any]]:
    """Every symbol's position, cash and last price."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(
                "SELECT symbol, quantity, cash, last_price, updated_at, log_position FROM {}.positions ORDER BY symbol"
            ).format(sql.Identifier(schema))
        )
        return await cur.fetchall()


def _encode_cursor(at: datetime, decision_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{decision_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, _, decision_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        after = datetime.fromisoformat(at), UUID(decision_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this API handed out") from None
    if after[0].tzinfo is None:  # ours always carry the zone: compared with timestamptz, a naive one would shift
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this API handed out")
    return after
