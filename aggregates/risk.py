"""Pre-trade risk checks: concentration, daily loss, leverage.

Pure arithmetic on a desk's own exact state plus a read-only view of the rest
of the portfolio. An order that only shrinks the desk's position is never
blocked: refusing to reduce risk would be the risky choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aggregates.frozen import built

__all__ = ["CheckResult", "OthersView", "RiskAssessment", "RiskLimits", "assess_order"]

QUANTITY_EPSILON = 1e-9


@dataclass(frozen=True)
class RiskLimits:
    """Portfolio limits; fractions are of current portfolio equity."""

    max_position_fraction: float = 0.25
    daily_loss_limit: float = 0.02
    max_leverage: float = 1.5

    def __post_init__(self) -> None:
        for name in ("max_position_fraction", "daily_loss_limit", "max_leverage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"risk limit {name}={value!r} must be a finite positive number")


@dataclass(frozen=True)
class OthersView:
    """What a desk knows of every other desk: their summed P&L and exposure.

    Built by the caller from other desks' committed state; it is a snapshot,
    so it can be as stale as the caller's refresh rule (see the desk actor).
    """

    capital: float
    """Portfolio starting capital shared by all desks."""
    pnl: float = 0.0
    """Sum of the other desks' total P&L (realised + marked to market)."""
    day_pnl: float = 0.0
    """Sum of the other desks' P&L since the start of their trading day."""
    gross_exposure: float = 0.0
    """Sum of |position × last price| over the other desks."""


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
) -> RiskAssessment:
    """Check an order of ``quantity`` (> 0) in direction ``side`` (+1 buy, -1 sell).

    ``position``, ``own_pnl`` and ``own_day_pnl`` are the desk's exact state
    before the order; ``others`` is the rest of the portfolio.
    """
    equity = others.capital + others.pnl + own_pnl
    after = position + side * quantity
    # Quantity that only closes existing position: always allowed.
    reducing = abs(position) if side * position < 0 else 0.0

    cap = max(equity, 0.0) * limits.max_position_fraction / price
    concentration = built(CheckResult, {
        "name": "position_concentration",
        "passed": abs(after) <= cap + QUANTITY_EPSILON or abs(after) < abs(position),
        "value": _ratio(abs(after) * price, equity),
        "limit": limits.max_position_fraction,
        "max_quantity": max(cap - side * position, reducing, 0.0),
    })

    gross_cap = (max(equity, 0.0) * limits.max_leverage - others.gross_exposure) / price
    gross_after = others.gross_exposure + abs(after) * price
    leverage = built(CheckResult, {
        "name": "leverage",
        "passed": abs(after) <= gross_cap + QUANTITY_EPSILON or abs(after) < abs(position),
        "value": _ratio(gross_after, equity),
        "limit": limits.max_leverage,
        "max_quantity": max(gross_cap - side * position, reducing, 0.0),
    })

    day_pnl = others.day_pnl + own_day_pnl
    day_start_equity = equity - day_pnl
    day_loss = _ratio(-day_pnl, day_start_equity)
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
    return built(RiskAssessment, {
        "passed": concentration.passed and daily.passed and leverage.passed,
        "checks": (concentration, daily, leverage),
        "max_quantity": min(concentration.max_quantity, daily.max_quantity, leverage.max_quantity),
    })


def _ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0:
        return math.inf if numerator > 0 else 0.0
    return numerator / denominator
