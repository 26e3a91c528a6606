"""The portfolio book as one shard sees it: its own desks exactly, the other shards as last published.

Freshness: the shard decides its desks one after another on one thread and
publishes each desk's figures here as soon as that desk's batch is decided
(:meth:`PortfolioBook.publish`), so a desk's risk check sees every other desk
of its shard as it stands in the shard's commit order. The other shards' sums
come from the shared book in Redis (:mod:`edge.shared_book`), exchanged once a
cycle (:meth:`PortfolioBook.set_remote`): a shard decides a whole cycle on the
view read at its start, and that view holds each other shard as of its last
committed cycle, so what a check misses is at most the other shards' cycles
that overlap this one — about two cycles, a few milliseconds at full load
(``glassbox status`` shows the view's age). :mod:`aggregates.risk` says why
the limits hold with that staleness.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

from aggregates.frozen import built
from aggregates.risk import OthersView, RemoteShard, RiskLimits
from edge.shared_book import ShardBook, TradingState

__all__ = ["PortfolioBook", "DeskFigures"]


@dataclass(frozen=True, slots=True)
class DeskFigures:
    """What one desk contributes to the portfolio."""

    pnl: float = 0.0
    day_pnl: float = 0.0
    exposure: float = 0.0


_NO_FIGURES = DeskFigures()


class PortfolioBook:
    """Thread-safe totals of desk figures; O(1) to update and to read.

    ``share`` is this shard's share of the book's leverage budget (its symbols
    over the book's; 1 when it holds the whole book).
    """

    def __init__(self, capital: float, share: float = 1.0) -> None:
        if not capital > 0:
            raise ValueError(f"portfolio capital must be positive, got {capital!r}")
        if not 0 < share <= 1:
            raise ValueError(f"a shard's share of the book must be in (0, 1], got {share!r}")
        self.capital = capital
        self.share = share
        self._lock = threading.Lock()
        self._desks: dict[str, DeskFigures] = {}
        self._pnl = 0.0
        self._day_pnl = 0.0
        self._exposure = 0.0
        self._remote: tuple[RemoteShard, ...] = ()
        self._remote_pnl = 0.0
        self._remote_day_pnl = 0.0
        self._remote_exposure = 0.0
        self._unseen_share = 1.0 - share
        self._remote_window = (0.0, float("inf"))
        self._remote_idle = False
        self.trading = TradingState()
        """The kill switch as last read (running until read otherwise)."""

    def publish(self, symbol: str, figures: DeskFigures) -> None:
        """Replace a desk's figures after it decided a batch."""
        with self._lock:
            old = self._desks.get(symbol, _NO_FIGURES)
            self._desks[symbol] = figures
            self._pnl += figures.pnl - old.pnl
            self._day_pnl += figures.day_pnl - old.day_pnl
            self._exposure += figures.exposure - old.exposure

    def set_remote(self, shards: Mapping[str, ShardBook]) -> None:
        """Replace the other shards' figures with what the shared book holds now."""
        remote = tuple(RemoteShard(s.gross_exposure, s.share) for s in shards.values())
        with self._lock:
            self._remote = remote
            self._remote_pnl = sum(s.pnl for s in shards.values())
            self._remote_day_pnl = sum(s.day_pnl for s in shards.values())
            self._remote_exposure = sum(s.gross_exposure for s in shards.values())
            self._unseen_share = max(1.0 - self.share - sum(s.share for s in shards.values()), 0.0)
            # In event time: each shard's stream times less its ticks' lag.
            self._remote_window = (float(max((s.as_of_ms - s.lag_ms for s in shards.values() if s.as_of_ms),
                                             default=0)),
                                   float(min((s.valid_ms - s.lag_ms for s in shards.values() if s.valid_ms),
                                             default=float("inf"))))
            self._remote_idle = any(not s.valid_ms for s in shards.values())

    def remote_window(self) -> tuple[float, float, bool]:
        """(newest, oldest, any idle) in event time (ms): the newest tick the other shards' figures include,
        the oldest time up to which the deciding ones hold (``ShardBook.valid_ms``; inf: none deciding),
        each shard's stream times less its ticks' lag (``ShardBook.lag_ms``), and whether some shard said
        it was idle (its figures hold up to when they were read); :func:`aggregates.risk.view_skew_ms`."""
        return (*self._remote_window, self._remote_idle)

    def set_trading(self, state: TradingState) -> None:
        """The kill switch as just read: every later risk check sees it."""
        self.trading = state

    def others(self, symbol: str) -> OthersView:
        """Everything but ``symbol``'s own desk, as of the last publications."""
        with self._lock:
            own = self._desks.get(symbol, _NO_FIGURES)
            # Asked once a batch of often one or two ticks: built without the frozen __init__.
            return built(OthersView, {
                "capital": self.capital,
                "pnl": self._pnl - own.pnl + self._remote_pnl,
                "day_pnl": self._day_pnl - own.day_pnl + self._remote_day_pnl,
                "gross_exposure": max(self._exposure - own.exposure, 0.0) + self._remote_exposure,
                "remote": self._remote,
                "unseen_share": self._unseen_share,
                "remote_exposure": self._remote_exposure,
                "halted": self.trading.halted,
                "flatten": self.trading.flatten,
            })

    def own_totals(self, published_ms: int, as_of_ms: int = 0, valid_ms: int = 0, lag_ms: int = 0) -> ShardBook:
        """This shard's sums, to publish to the shared book, with how far in stream time it has decided."""
        with self._lock:
            return ShardBook(self._pnl, self._day_pnl, max(self._exposure, 0.0), self.share, published_ms,
                             as_of_ms, valid_ms, lag_ms)

    def equity(self) -> float:
        with self._lock:
            return self.capital + self._pnl + self._remote_pnl

    def utilisation(self, limits: RiskLimits) -> dict[str, float]:
        """How much of each limit the book uses now, as fractions of the limits (1: at the limit).

        ``concentration`` is this shard's largest position (the other shards report theirs);
        ``leverage`` and ``daily_loss`` are the whole book's as this shard sees it.
        """
        with self._lock:
            equity = self.capital + self._pnl + self._remote_pnl
            largest = max((d.exposure for d in self._desks.values()), default=0.0)
            gross = self._exposure + self._remote_exposure
        if equity <= 0:
            return {"concentration": float("inf"), "leverage": float("inf"), "daily_loss": float("inf")}
        return {"concentration": largest / equity / limits.max_position_fraction,
                "leverage": gross / equity / limits.max_leverage,
                "daily_loss": max(self.day_loss(), 0.0) / limits.daily_loss_limit}

    def day_loss(self) -> float:
        """The whole book's loss since the start of the day, as a fraction of its start-of-day equity."""
        with self._lock:
            day_pnl = self._day_pnl + self._remote_day_pnl
            start = self.capital + self._pnl + self._remote_pnl - day_pnl
        return -day_pnl / start if start > 0 else 0.0
