"""The event archive and the decisions and portfolio read models, built from relayed envelopes.

Every write is idempotent: archive and decision rows are keyed by event and
decision id (``ON CONFLICT DO NOTHING``), and a position only moves forward
in log order, so an event delivered twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Json

from projections.bulk import BulkInsert
from projections.body_checks import check_decision, check_event_fields, check_fill
from projections.envelopes import Envelope
from projections.groups import PROJECTION_TOPICS
from projections.worker import Projection

__all__ = ["ArchiveProjection", "DecisionsProjection", "check_trading_event", "event_time", "fill_of"]

DECISION = "Trading.Decision.Taken.v2"
"""What a desk writes now."""
DECISIONS = ("Trading.Decision.Taken.v1", DECISION)
"""Every version read: v2 adds ``min_trade_fraction`` (the no-trade band), which nothing here reads."""
FILLS = ("Trading.Order.Filled.v1", "Trading.Order.Filled.v2")


def event_time(envelope: Envelope) -> datetime:
    """The event's own time (µs precision; the ns value stays in the payload)."""
    return datetime.fromtimestamp(int(envelope["timestamp_ns"]) / 1e9, tz=timezone.utc)


class ArchiveProjection(Projection):
    """Every event of every topic, immutable: the audit log replays read from."""

    group = "archive"
    topics = PROJECTION_TOPICS[group]

    def validate(self, envelope: Envelope) -> None:
        """Every column of the archive row from a field of the right type and range."""
        check_event_fields(envelope)

    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Envelope]) -> None:
        await _ARCHIVE.write(conn, schema, (
            (e["log_position"], e["event_id"], e.get("store", ""), e["originator_id"], e["originator_version"],
             e["event_type"], e["symbol"], event_time(e), e["schema_version"], e.get("correlation_id"), e)
            for e in items))


class DecisionsProjection(Projection):
    """One row per decision (its fill attached when it fills) and one position row per symbol."""

    group = "read-models"
    topics = PROJECTION_TOPICS[group]

    def validate(self, envelope: Envelope) -> None:
        """A decision or fill whose fields the rows cannot hold is dead-lettered with the field named."""
        check_trading_event(envelope)

    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Envelope]) -> None:
        decisions, positions, fills = [], [], []
        for e in items:  # in log order per symbol: a fill follows its decision
            if e["event_type"] in DECISIONS:
                d, at = e["trading_decision"], event_time(e)
                decisions.append((
                    d["decision_id"], d["symbol"], at, d["action"], d["quantity"], d["confidence"], d["price"],
                    d["regime_probs"], d["strategy_weights"], d["features"], d["model_version"], d["risk_passed"],
                    d["risk_checks"], e.get("correlation_id"), e["log_position"],
                ))
                positions.append((_MARK, d["symbol"], e["log_position"], (d["symbol"], d["price"], at, e["log_position"])))
            elif e["event_type"] in FILLS:
                f, at = e["payload"], event_time(e)
                signed = f["quantity"] if f["side"] == "BUY" else -f["quantity"]
                positions.append((_FILL, f["symbol"], e["log_position"], (
                    f["symbol"], f["position_after"], -signed * f["price"] - f.get("commission", 0.0), f["price"], at,
                    e["log_position"])))
                fills.append((Json(fill_of(e)), at, f["decision_id"]))
        if decisions:
            await _DECISIONS.write(conn, schema, decisions)
        statements = _statements(conn, schema)
        async with conn.cursor() as cur:
            if positions:
                async with conn.pipeline():
                    for kind, params in _position_updates(positions):
                        await cur.execute(statements[kind], params, prepare=True)
            if fills:  # after the decisions: a fill in the same batch updates the row just inserted
                await cur.executemany(statements[_ATTACH], fills)


def _position_updates(updates: list[tuple[int, str, int, tuple[Any, ...]]]) -> list[tuple[int, tuple[Any, ...]]]:
    """The position statements to run, in order: a mark whose symbol's next update is later is left out.

    Exact, not a shortcut: each update applies only if its log position is past the row's, and
    sets the price, time and position a mark sets; so if the mark applies, the next update
    (later in the log) applies too and overwrites all it set, and if it does not, it changed nothing.
    """
    kept: list[tuple[int, tuple[Any, ...]] | None] = []
    last: dict[str, tuple[int, int]] = {}  # symbol -> (index in kept, log position) of its latest update
    for kind, symbol, position, params in updates:
        previous = last.get(symbol)
        if previous is not None and position > previous[1] and kept[previous[0]] is not None \
                and kept[previous[0]][0] == _MARK:  # type: ignore[index]
            kept[previous[0]] = None
        last[symbol] = (len(kept), position)
        kept.append((kind, params))
    return [k for k in kept if k is not None]


_MARK, _FILL, _ATTACH = 0, 1, 2
_RENDERED: dict[str, tuple[bytes, bytes, bytes]] = {}
"""Schema -> its statements (rendering a Composed is Python work per call; connections are all UTF-8)."""


def _statements(conn: psycopg.AsyncConnection[Any], schema: str) -> tuple[bytes, bytes, bytes]:
    """The mark, fill and attach-fill statements for ``schema``, rendered once."""
    found = _RENDERED.get(schema)
    if found is None:
        s = sql.Identifier(schema)
        mark = sql.SQL(
            "INSERT INTO {0}.positions AS p (symbol, last_price, updated_at, log_position) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (symbol) DO UPDATE SET last_price = EXCLUDED.last_price,"
            " updated_at = EXCLUDED.updated_at, log_position = EXCLUDED.log_position"
            " WHERE p.log_position < EXCLUDED.log_position"
        ).format(s)
        fill_position = sql.SQL(
            "INSERT INTO {0}.positions AS p (symbol, quantity, cash, last_price, updated_at, log_position)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity,"
            " cash = p.cash + EXCLUDED.cash, last_price = EXCLUDED.last_price, updated_at = EXCLUDED.updated_at,"
            " log_position = EXCLUDED.log_position WHERE p.log_position < EXCLUDED.log_position"
        ).format(s)
        # A fill carries its decision's tick time: both events were stamped by the same tick.
        attach_fill = sql.SQL("UPDATE {}.decisions SET fill = %s WHERE decided_at = %s AND decision_id = %s").format(s)
        found = (mark.as_bytes(conn), fill_position.as_bytes(conn), attach_fill.as_bytes(conn))
        _RENDERED[schema] = found
    return found


_ARCHIVE = BulkInsert("event_archive", (
    ("log_position", "int8", "log_position"), ("event_id", "text", "event_id::uuid"), ("store", "text", "store"),
    ("originator_id", "text", "originator_id::uuid"), ("originator_version", "int4", "originator_version"),
    ("event_type", "text", "event_type"), ("symbol", "text", "symbol"), ("event_time", "timestamptz", "event_time"),
    ("schema_version", "int4", "schema_version"), ("correlation_id", "text", "correlation_id"),
    # json: the text is validated, not parsed into jsonb (migration 0004; a jsonb target casts it).
    ("payload", "json", "payload"),
))
_DECISIONS = BulkInsert("decisions", (
    ("decision_id", "text", "decision_id::uuid"), ("symbol", "text", "symbol"),
    ("decided_at", "timestamptz", "decided_at"), ("action", "text", "action"), ("quantity", "float8", "quantity"),
    # json: the documents' text is validated, not parsed into jsonb (migration 0006; a jsonb target casts it).
    ("confidence", "float8", "confidence"), ("price", "float8", "price"), ("regime_probs", "json", "regime_probs"),
    ("strategy_weights", "json", "strategy_weights"), ("features", "json", "features"),
    ("model_version", "text", "model_version"), ("risk_passed", "bool", "risk_passed"),
    ("risk_checks", "json", "risk_checks"), ("correlation_id", "text", "correlation_id"),
    ("log_position", "int8", "log_position"),
))


def check_trading_event(envelope: Envelope) -> None:
    """Check a decision's or a fill's fields (other events pass); raises ``PoisonMessage``."""
    if envelope["event_type"] in DECISIONS:
        check_decision(envelope)
    elif envelope["event_type"] in FILLS:
        check_fill(envelope)


def fill_of(envelope: Envelope) -> dict[str, Any]:
    """The fill as the read models and the forensics record show it."""
    f = envelope["payload"]
    return {
        "side": f["side"], "quantity": f["quantity"], "price": f["price"],
        "position_after": f["position_after"], "commission": f.get("commission", 0.0), "filled_at": envelope["timestamp"],
        "log_position": envelope["log_position"],
    }
