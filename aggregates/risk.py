"""Pre-trade risk checks on the whole book: concentration, daily loss, leverage.

Pure arithmetic on a desk's own exact state plus a read-only view of the rest
of the portfolio. An order that only shrinks the desk's position is never
blocked: refusing to reduce risk would be the risky choice.

The view of the rest is never quite now. A desk sees the other desks of its
shard as of their last decided batch (the shard decides them one after another
on one thread) and the other shards as of their last publication
(:class:`RemoteShard`), about two cycles old; meanwhile their prices move and
the other shards trade. Two rules keep the limits whole with that staleness:

- **Headroom for what moved unseen.** Every other desk's position is assumed
  to have moved against the book by ``RiskLimits.stale_move`` since it was
  seen: the equity the limits are measured against, and the day's P&L, are
  reduced by ``stale_move`` × the other desks' gross exposure, and their
  exposure counts ``1 + stale_move`` times. For the equity, another shard's
  exposure counts as in the next rule, at its full share of the budget if it
  holds less: it may have built positions since it was seen, and they move
  too. (Not for the day's P&L: a flat book would start each day with that
  much of the daily loss limit gone; the halt on the daily loss backs it.)
- **Shares of the leverage budget.** Each shard owns a share of the book's
  gross-exposure budget (its symbols over the book's). Another shard counts at
  its full share, or at what it holds if that is more (a shard not heard from
  yet at its full share), so two shards growing at the same moment cannot both
  spend the same headroom: a shard's orders can only grow it into its own share.

So the limits hold at every fill as long as no price the check could not see
moved by more than ``stale_move`` in the meantime (docs/design.md, "Risk on the
whole book"). With one shard there is nothing remote and the whole budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aggregates.frozen import built
from glassbox import Settings

__all__ = ["HALTED_HOLD", "CheckResult", "OthersView", "RemoteShard", "RiskAssessment", "RiskLimits", "assess_order",
           "halt_check", "view_skew_ms"]

QUANTITY_EPSILON = 1e-9


@dataclass(frozen=True)
class RiskLimits:
    """The book's limits; fractions are of its current equity (defaults: ``Settings.risk_*``)."""

    max_position_fraction: float = Settings.risk_max_position_fraction
    daily_loss_limit: float = Settings.risk_daily_loss_limit
    max_leverage: float = Settings.risk_max_leverage
    stale_move: float = Settings.risk_stale_move
    """The adverse move assumed for every other desk's position since the check last saw it."""
    max_view_skew_ms: float = Settings.risk_max_view_skew_ms
    """How far apart in stream time (ms) the desks a check sees may be for an order to grow a position."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        """The limits ``GLASSBOX_RISK_*`` chose (parsed in :class:`glassbox.Settings`)."""
        return cls(settings.risk_max_position_fraction, settings.risk_daily_loss_limit,
                   settings.risk_max_leverage, settings.risk_stale_move, settings.risk_max_view_skew_ms)

    def __post_init__(self) -> None:
        for name in ("max_position_fraction", "daily_loss_limit", "max_leverage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"risk limit {name}={value!r} must be a finite positive number")
        if not (math.isfinite(self.stale_move) and 0 <= self.stale_move < 1):
            raise ValueError(f"risk stale_move={self.stale_move!r} must be in [0, 1)")
        if not self.max_view_skew_ms > 0:
            raise ValueError(f"risk max_view_skew_ms={self.max_view_skew_ms!r} must be positive")


@dataclass(frozen=True, slots=True)
class RemoteShard:
    """Another shard's figures as it last published them."""

    gross_exposure: float
    """Sum of |position × last price| over its desks."""
    share: float
    """Its share of the book's leverage budget (its symbols over the book's)."""


@dataclass(frozen=True)
class OthersView:
    """What a desk knows of every other desk: their summed P&L and exposure.

    Built by the caller from other desks' decided state; it is a snapshot,
    as stale as the module docstring says (``actors.book`` builds it).
    """

    capital: float
    """Portfolio starting capital shared by all desks."""
    pnl: float = 0.0
    """Sum of the other desks' total P&L (realised + marked to market)."""
    day_pnl: float = 0.0
    """Sum of the other desks' P&L since the start of their trading day."""
    gross_exposure: float = 0.0
    """Sum of |position × last price| over the other desks (remote ones included)."""
    remote: tuple[RemoteShard, ...] = ()
    """The other shards, as they last published (their P&L and exposure are in the sums above)."""
    unseen_share: float = 0.0
    """Leverage share of shards that have not published yet: counted as fully used."""
    remote_exposure: float = 0.0
    """The part of ``gross_exposure`` held by other shards."""
    halted: bool = False
    """Trading is halted (the kill switch): no order may open or grow a position."""
    flatten: bool = False
    """The halt asks every desk to close its position."""


@dataclass(frozen=True)
class CheckResult:
    """One rule's verdict, kept in the decision event for audit."""

    name: str
    passed: bool
    value: float
    limit: float
    max_quantity: float

    def as_dict(self) -> dict[str, object]:
        """JSON-safe form: an unbounded quantity (the rule does not limit size) is None."""
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value if math.isfinite(self.value) else None,
            "limit": self.limit,
            "max_quantity": self.max_quantity if math.isfinite(self.max_quantity) else None,
        }


@dataclass(frozen=True)
class RiskAssessment:
    """All checks for one proposed order."""

    passed: bool
    checks: tuple[CheckResult, ...]
    max_quantity: float
    """Largest quantity in the same direction that every check would pass."""

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple([f"{c.name}: {c.value:.6g} exceeds {c.limit:.6g}" for c in self.checks if not c.passed])


def assess_order(
    side: int,
    quantity: float,
    price: float,
    position: float,
    own_pnl: float,
    own_day_pnl: float,
    others: OthersView,
    limits: RiskLimits,
    view_skew_ms: float = 0.0,
) -> RiskAssessment:
    """Check an order of ``quantity`` (> 0) in direction ``side`` (+1 buy, -1 sell).

    ``position``, ``own_pnl`` and ``own_day_pnl`` are the desk's exact state
    before the order; ``others`` is the rest of the portfolio. ``view_skew_ms``
    is how far the order's tick is in stream time from the desks ``others`` was
    built from (:func:`view_skew_ms`): beyond ``limits.max_view_skew_ms`` the
    view says nothing about the book at this tick, so the order may only reduce
    (a ``book_view_skew`` check, recorded only then).
    """
    equity = others.capital + others.pnl + own_pnl
    # What the other desks' positions may have lost since they were seen (module docstring): this
    # shard's as seen, every other shard's at its share of the budget, or what it holds if more.
    full_budget = max(equity, 0.0) * limits.max_leverage
    exposed = others.gross_exposure - others.remote_exposure + others.unseen_share * full_budget
    for shard in others.remote:
        exposed += max(shard.gross_exposure, shard.share * full_budget)
    unseen_loss = limits.stale_move * exposed
    safe_equity = max(equity - unseen_loss, 0.0)
    after = position + side * quantity
    # Quantity that only closes existing position: always allowed.
    reducing = abs(position) if side * position < 0 else 0.0

    cap = safe_equity * limits.max_position_fraction / price
    concentration = built(CheckResult, {
        "name": "position_concentration",
        "passed": abs(after) <= cap + QUANTITY_EPSILON or abs(after) < abs(position),
        "value": _ratio(abs(after) * price, safe_equity),
        "limit": limits.max_position_fraction,
        "max_quantity": max(cap - side * position, reducing, 0.0),
    })

    budget = safe_equity * limits.max_leverage
    # This shard's other desks as they may have moved, every other shard at its share or its holding if larger.
    held = (others.gross_exposure - others.remote_exposure) * (1.0 + limits.stale_move) + others.unseen_share * budget
    for shard in others.remote:
        held += max(shard.gross_exposure * (1.0 + limits.stale_move), shard.share * budget)
    gross_cap = (budget - held) / price
    leverage = built(CheckResult, {
        "name": "leverage",
        "passed": abs(after) <= gross_cap + QUANTITY_EPSILON or abs(after) < abs(position),
        "value": _ratio(held + abs(after) * price, safe_equity),
        "limit": limits.max_leverage,
        "max_quantity": max(gross_cap - side * position, reducing, 0.0),
    })

    day_pnl = others.day_pnl + own_day_pnl
    day_start_equity = equity - day_pnl
    # Only the positions seen here: a flat book would otherwise start every day a share of the limit down.
    day_loss = _ratio(limits.stale_move * others.gross_exposure - day_pnl, day_start_equity)
    loss_breached = day_loss >= limits.daily_loss_limit
    daily = built(CheckResult, {
        "name": "daily_loss",
        "passed": not loss_breached or abs(after) < abs(position),
        "value": day_loss,
        "limit": limits.daily_loss_limit,
        "max_quantity": reducing if loss_breached else math.inf,
    })

    # Built without the frozen dataclasses' __init__ (four a proposed order): equal to
    # CheckResult(...) and RiskAssessment(...), as tests/aggregates/test_risk.py checks.
    if view_skew_ms > limits.max_view_skew_ms:
        skewed = CheckResult("book_view_skew", abs(after) < abs(position), view_skew_ms, limits.max_view_skew_ms,
                             reducing)
        assessed = assess_order(side, quantity, price, position, own_pnl, own_day_pnl, others, limits)
        return RiskAssessment(assessed.passed and skewed.passed, assessed.checks + (skewed,),
                              min(assessed.max_quantity, reducing))
    if others.halted:
        closing = side * position < 0 and quantity <= abs(position) + QUANTITY_EPSILON  # never through zero
        halt = halt_check(closing, reducing)
        return built(RiskAssessment, {
            "passed": concentration.passed and daily.passed and leverage.passed and halt.passed,
            "checks": (concentration, daily, leverage, halt),
            "max_quantity": min(concentration.max_quantity, daily.max_quantity, leverage.max_quantity, reducing),
        })
    return built(RiskAssessment, {
        "passed": concentration.passed and daily.passed and leverage.passed,
        "checks": (concentration, daily, leverage),
        "max_quantity": min(concentration.max_quantity, daily.max_quantity, leverage.max_quantity),
    })


def view_skew_ms(tick_ms: int, window: tuple[float, float] | None) -> float:
    """How far ``tick_ms`` (a tick's event time) lies outside ``window``, in ms (0: inside, or no window).

    ``window`` is (newest, oldest), in event time: the newest tick any desk the
    check sees has already decided, and the oldest one some desk may still have to decide.
    A tick older than the first saw others' figures from its future; one newer
    than the second misses others' past. Either way by more than the view's
    usual age only while a shard or desk catches up on a backlog.
    """
    if window is None:
        return 0.0
    newest, oldest = window
    return max(newest - tick_ms, tick_ms - oldest, 0.0)


def halt_check(passed: bool, max_quantity: float) -> CheckResult:
    """The kill switch's verdict: during a halt only an order that closes part or all of a position passes.

    Recorded in every decision taken during a halt, a HOLD's included (``passed`` then, nothing proposed).
    """
    return CheckResult("trading_halted", passed, 1.0, 0.0, max_quantity)


HALTED_HOLD = RiskAssessment(True, (halt_check(True, 0.0),), 0.0)
"""The risk checks of a decision that proposed nothing during a halt."""


def _ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0:
        return math.inf if numerator > 0 else 0.0
    return numerator / denominator
