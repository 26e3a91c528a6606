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
from psycopg.types.json import Jsonb

from projections.body_checks import check_decision, check_event_fields, check_fill
from projections.groups import PROJECTION_TOPICS
from projections.worker import Envelope, Projection

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
        query = sql.SQL(
            "INSERT INTO {}.event_archive (log_position, event_id, store, originator_id, originator_version,"
            " event_type, symbol, event_time, schema_version, correlation_id, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        ).format(sql.Identifier(schema))
        rows = [
            (e["log_position"], e["event_id"], e.get("store", ""), e["originator_id"], e["originator_version"],
             e["event_type"], e["symbol"], event_time(e), e["schema_version"], e.get("correlation_id"), Jsonb(e))
            for e in items
        ]
        async with conn.cursor() as cur:
            await cur.executemany(query, rows)


class DecisionsProjection(Projection):
    """One row per decision (its fill attached when it fills) and one position row per symbol."""

    group = "read-models"
    topics = PROJECTION_TOPICS[group]

    def validate(self, envelope: Envelope) -> None:
        """A decision or fill whose fields the rows cannot hold is dead-lettered with the field named."""
        check_trading_event(envelope)

    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Envelope]) -> None:
        s = sql.Identifier(schema)
        insert_decision = sql.SQL(
            "INSERT INTO {}.decisions (decision_id, symbol, decided_at, action, quantity, confidence, price,"
            " regime_probs, strategy_weights, features, model_version, risk_passed, risk_checks,"
            " correlation_id, log_position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING"
        ).format(s)
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
        async with conn.cursor() as cur:
            for e in items:  # in log order per symbol: a fill follows its decision
                if e["event_type"] in DECISIONS:
                    d, at = e["trading_decision"], event_time(e)
                    await cur.execute(insert_decision, (
                        d["decision_id"], d["symbol"], at, d["action"], d["quantity"], d["confidence"],
                        d["price"], Jsonb(d["regime_probs"]), Jsonb(d["strategy_weights"]), Jsonb(d["features"]),
                        d["model_version"], d["risk_passed"], Jsonb(d["risk_checks"]), e.get("correlation_id"),
                        e["log_position"],
                    ))
                    await cur.execute(mark, (d["symbol"], d["price"], at, e["log_position"]))
                elif e["event_type"] in FILLS:
                    f, at = e["payload"], event_time(e)
                    signed = f["quantity"] if f["side"] == "BUY" else -f["quantity"]
                    await cur.execute(fill_position, (
                        f["symbol"], f["position_after"], -signed * f["price"] - f.get("commission", 0.0), f["price"], at, e["log_position"],
                    ))
                    await cur.execute(attach_fill, (Jsonb(fill_of(e)), at, f["decision_id"]))


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
