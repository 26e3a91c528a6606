"""The whole book replayed from every shard's committed events, in time order, checked against the limits.

A test's independent account of what the desks did: it reads each shard's
event store, orders all their events by event time (ties: store, then log
position), rebuilds every desk's position, cash and last price as
``SymbolDesk`` applies its events, and at every fill that grows a position
checks the whole book at that moment:

- the position is at most ``max_position_fraction`` of the book's equity;
- the book's gross exposure is at most ``max_leverage`` times its equity;
- the book's loss since the start of the day is below ``daily_loss_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from aggregates.desk import NS_PER_DAY
from aggregates.risk import RiskLimits
from edge.eventstore import RedisApplicationRecorder, RedisDatastore, RedisStoreSettings

TOLERANCE = 1e-9


@dataclass
class _Desk:
    position: float = 0.0
    cash: float = 0.0
    price: float = 0.0
    day: int | None = None
    day_start_pnl: float = 0.0

    @property
    def pnl(self) -> float:
        return self.cash + self.position * self.price


@dataclass
class BookReplay:
    """What the replay saw: fills that grew a position, refusals, and every breach of a limit."""

    growing_fills: int = 0
    refusals: list[dict] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    max_concentration: float = 0.0
    max_leverage: float = 0.0
    max_day_loss: float = 0.0


def committed_events(redis_url: str, stores: list[str]) -> list[tuple[str, dict]]:
    """Every event of ``stores`` as (topic, state), in event time order."""
    keyed = []
    for s, store in enumerate(stores):
        recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(redis_url, key_prefix=store)))
        for n in recorder.select_notifications(1, 10_000_000):
            state = orjson.loads(n.state)
            keyed.append(((state.get("timestamp_ns", 0), s, n.id), n.topic, state))
    keyed.sort(key=lambda k: k[0])
    return [(topic, state) for _, topic, state in keyed]


def replay_book(events: list[tuple[str, dict]], capital: float, limits: RiskLimits) -> BookReplay:
    desks: dict[str, _Desk] = {}
    seen = BookReplay()
    checks: dict[str, list] = {}
    for topic, e in events:
        if topic == "Trading.Decision.Taken":
            checks[e["decision_id"]] = e.get("risk_checks") or []
            desk = desks.setdefault(e["symbol"], _Desk())
            day = e["timestamp_ns"] // NS_PER_DAY
            if desk.day is None:
                desk.day = day
            elif day != desk.day:  # SymbolDesk.roll_day, before the new price is marked
                desk.day, desk.day_start_pnl = day, desk.pnl
            desk.price = e["price"]
        elif topic == "Trading.Order.Filled":
            desk = desks[e["symbol"]]
            before = desk.position
            signed = e["quantity"] if e["side"] == "BUY" else -e["quantity"]
            desk.cash -= signed * e["price"] + e["commission"]
            desk.position = e["position_after"]
            if abs(desk.position) > abs(before) + TOLERANCE:
                seen.growing_fills += 1
                _check(seen, desks, e, capital, limits, checks.get(e["decision_id"], []))
        elif topic == "Risk.Check.Rejected":
            seen.refusals.append(e)
    return seen


def _check(seen: BookReplay, desks: dict[str, _Desk], fill: dict, capital: float, limits: RiskLimits,
           checks: list) -> None:
    equity = capital + sum(d.pnl for d in desks.values())
    gross = sum(abs(d.position * d.price) for d in desks.values())
    day_pnl = sum(d.pnl - d.day_start_pnl for d in desks.values())
    own = desks[fill["symbol"]]
    concentration = abs(own.position * own.price) / equity
    leverage = gross / equity
    # The day's loss as the desk decided: before this fill's commission.
    day_loss = -(day_pnl + fill["commission"]) / (equity + fill["commission"] - day_pnl)
    seen.max_concentration = max(seen.max_concentration, concentration)
    seen.max_leverage = max(seen.max_leverage, leverage)
    seen.max_day_loss = max(seen.max_day_loss, day_loss)
    # What the desk's checks saw, beside each breach: which of its figures the replay disagrees with.
    saw = ", ".join(f"{c['name']} {c['value']:.6f}" for c in checks if isinstance(c.get("value"), float))
    where = f"{fill['symbol']} at {fill['timestamp_ns']} (its checks saw {saw or 'nothing'}; equity {equity:.2f})"
    if concentration > limits.max_position_fraction + TOLERANCE:
        seen.breaches.append(f"{where}: position {concentration:.6f} of equity > {limits.max_position_fraction}")
    if leverage > limits.max_leverage + TOLERANCE:
        seen.breaches.append(f"{where}: leverage {leverage:.6f} > {limits.max_leverage}")
    if day_loss >= limits.daily_loss_limit:
        seen.breaches.append(f"{where}: grew a position with the day's loss at {day_loss:.6f}")
