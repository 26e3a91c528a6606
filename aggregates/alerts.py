"""Price alerts: a symbol's price moving beyond a threshold within a window of event time.

A rule is a move (a fraction: 0.05 is ±5 %) and a window (seconds). The move
at a tick is the larger, in size, of the rise from the window's lowest price
and the fall from its highest (:class:`PriceWindow` keeps both in O(1) per
tick), so a swing counts wherever in the window it started. A desk whose
symbol moves that far records ``Risk.Alert.Triggered.v1`` in the same append
as the tick's decision, then stays quiet for one window (its event time), so a
crash is one alert, not one a tick. Severity: ``warning`` from the threshold,
``critical`` from twice it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

from aggregates.errors import DomainError
from glassbox import Settings

__all__ = ["AlertRule", "AlertRules", "PriceWindow", "severity_of"]


@dataclass(frozen=True)
class AlertRule:
    """Alert when the price moves by ``move`` (a fraction) or more within ``window_s`` seconds."""

    move: float = Settings.alert_move
    window_s: float = Settings.alert_window_s

    def __post_init__(self) -> None:
        if not (math.isfinite(self.move) and 0 < self.move < 10):
            raise DomainError(f"an alert's move is a fraction above 0 (0.05 is 5 %), not {self.move!r}")
        if not (math.isfinite(self.window_s) and 0 < self.window_s <= 86_400):
            raise DomainError(f"an alert's window is 0 < seconds <= 86400, not {self.window_s!r}")

    @property
    def window_ns(self) -> int:
        return int(self.window_s * 1e9)


@dataclass(frozen=True)
class AlertRules:
    """The default rule and per-symbol ones."""

    default: AlertRule = field(default_factory=AlertRule)
    by_symbol: Mapping[str, AlertRule] = field(default_factory=dict)

    def for_symbol(self, symbol: str) -> AlertRule:
        return self.by_symbol.get(symbol, self.default)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertRules:
        """The rules ``GLASSBOX_ALERT_*`` chose (parsed and checked in :class:`glassbox.Settings`)."""
        return cls(AlertRule(settings.alert_move, settings.alert_window_s),
                   {symbol: AlertRule(move, window) for symbol, move, window in settings.alert_rules})


def severity_of(move: float, rule: AlertRule) -> str:
    return "critical" if abs(move) >= 2 * rule.move else "warning"


class PriceWindow:
    """A symbol's prices within the last ``window_ns`` of event time, with their running low and high."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._lows: deque[tuple[int, float]] = deque()   # increasing prices: the window's low first
        self._highs: deque[tuple[int, float]] = deque()  # decreasing prices: the window's high first

    def add(self, ts_ns: int, price: float) -> tuple[float, float]:
        """Take a tick; (move, the price it moved from): the larger of the rise from the low and fall from the high."""
        while self._lows and self._lows[-1][1] >= price:
            self._lows.pop()
        self._lows.append((ts_ns, price))
        while self._highs and self._highs[-1][1] <= price:
            self._highs.pop()
        self._highs.append((ts_ns, price))
        oldest = ts_ns - self.window_ns
        while self._lows[0][0] < oldest:
            self._lows.popleft()
        while self._highs[0][0] < oldest:
            self._highs.popleft()
        low, high = self._lows[0][1], self._highs[0][1]
        rise, fall = price / low - 1.0, price / high - 1.0
        return (rise, low) if rise >= -fall else (fall, high)

    def clear(self) -> None:
        self._lows.clear()
        self._highs.clear()
