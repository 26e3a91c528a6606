"""The portfolio book: every desk's committed P&L and exposure, for risk checks.

Freshness: a desk publishes its figures right after each batch it commits,
so the view another desk's risk check gets is the committed state of every
desk in the same shard as of their latest batch — at most one batch (a few
milliseconds at full load) behind. Desks of other shards are not in it: each
shard checks concentration and leverage against the capital it was given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from aggregates.frozen import built
from aggregates.risk import OthersView

__all__ = ["PortfolioBook", "DeskFigures"]


@dataclass(frozen=True, slots=True)
class DeskFigures:
    """What one desk contributes to the portfolio."""

    pnl: float = 0.0
    day_pnl: float = 0.0
    exposure: float = 0.0


_NO_FIGURES = DeskFigures()


class PortfolioBook:
    """Thread-safe totals of desk figures; O(1) to update and to read."""

    def __init__(self, capital: float) -> None:
        if not capital > 0:
            raise ValueError(f"portfolio capital must be positive, got {capital!r}")
        self.capital = capital
        self._lock = threading.Lock()
        self._desks: dict[str, DeskFigures] = {}
        self._pnl = 0.0
        self._day_pnl = 0.0
        self._exposure = 0.0

    def publish(self, symbol: str, figures: DeskFigures) -> None:
        """Replace a desk's figures after it committed a batch."""
        with self._lock:
            old = self._desks.get(symbol, _NO_FIGURES)
            self._desks[symbol] = figures
            self._pnl += figures.pnl - old.pnl
            self._day_pnl += figures.day_pnl - old.day_pnl
            self._exposure += figures.exposure - old.exposure

    def others(self, symbol: str) -> OthersView:
        """Everything but ``symbol``'s own desk, as of the last publications."""
        with self._lock:
            own = self._desks.get(symbol, _NO_FIGURES)
            # Asked once a batch of often one or two ticks: built without the frozen __init__.
            return built(OthersView, {
                "capital": self.capital,
                "pnl": self._pnl - own.pnl,
                "day_pnl": self._day_pnl - own.day_pnl,
                "gross_exposure": max(self._exposure - own.exposure, 0.0),
            })

    def equity(self) -> float:
        with self._lock:
            return self.capital + self._pnl
