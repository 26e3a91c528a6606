"""A backtest's results from its events: equity, trades, and the usual performance figures.

:class:`Ledger` is a projection: it reads a run's committed desk events in
time order (a decision marks the symbol's price, a fill moves cash and
position) and keeps the portfolio's equity and round-trip trades.
:func:`performance` turns them into figures. Pure arithmetic, no I/O, so the
same events always give the same numbers, to the bit.

Conventions: returns are of end-of-day (UTC) equity; annualised figures use
the number of days with data per year in the data itself (≈252 for stock
bars, 365 for crypto), risk-free rate 0; the Sortino ratio's downside
deviation is the root mean square of the negative daily returns over all
days; drawdown is the fall from the running peak of equity, as a fraction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["Ledger", "Trade", "performance", "iso_day"]

NS_PER_DAY = 86_400 * 1_000_000_000
_EPSILON = 1e-9


def iso_day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=timezone.utc).date().isoformat()


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Trade:
    """A round trip: a position opened by one fill and closed (wholly or in part) by another."""

    symbol: str
    size: float
    """Signed: positive long, negative short."""
    entry_ns: int
    entry_price: float
    exit_ns: int | None = None
    exit_price: float | None = None
    commission: float = 0.0
    pnl: float | None = None
    """Net of this trade's share of commissions; None while open."""
    entry_decision_id: str | None = None
    """The decision whose fill opened it (its forensics explains the entry); None when not given."""
    exit_decision_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["entry_time"] = _iso(record.pop("entry_ns"))
        exit_ns = record.pop("exit_ns")
        record["exit_time"] = _iso(exit_ns) if exit_ns is not None else None
        return record


@dataclass
class _Book:
    position: float = 0.0
    cash: float = 0.0
    price: float = 0.0
    open: list[Trade] = field(default_factory=list)


class Ledger:
    """Equity and trades of a portfolio, built from desk events in time order."""

    def __init__(self, capital: float) -> None:
        self.capital = capital
        self.trades: list[Trade] = []
        self.fills = 0
        self.commission = 0.0
        self._books: dict[str, _Book] = {}
        self._value = 0.0  # sum over symbols of cash + position * price
        self._holding = 0  # symbols with a position
        self._ts: int | None = None
        self.times: list[int] = []
        self.equity: list[float] = []
        self.exposed: list[bool] = []

    @classmethod
    def combined(cls, ledgers: Sequence[Ledger]) -> Ledger:
        """One portfolio's finished ledger from the finished ledgers of disjoint sets of its symbols.

        What a sharded run gives: each shard books its own symbols. Equity at
        every instant any of them sampled is the capital plus each part's gain
        as of its last sample at or before that instant, exactly what one
        ledger fed all the events in time order records (to rounding); trades
        are in the order they closed, ties in the order of ``ledgers``.
        """
        if not ledgers:
            raise ValueError("combining no ledgers")
        capitals = {ledger.capital for ledger in ledgers}
        if len(capitals) != 1:
            raise ValueError(f"ledgers of one portfolio share its capital, got {sorted(capitals)}")
        out = cls(ledgers[0].capital)
        parts = [ledger for ledger in ledgers if ledger.times]
        times = np.unique(np.concatenate([np.asarray(p.times, dtype=np.int64) for p in parts])) if parts else []
        equity = np.full(len(times), float(out.capital))
        exposed = np.zeros(len(times), dtype=bool)
        for part in parts:
            at = np.searchsorted(np.asarray(part.times, dtype=np.int64), times, side="right") - 1
            started = at >= 0
            equity[started] += (np.asarray(part.equity) - part.capital)[at[started]]
            exposed[started] |= np.asarray(part.exposed, dtype=bool)[at[started]]
        out.times, out.equity, out.exposed = list(map(int, times)), equity.tolist(), exposed.tolist()
        out.trades = sorted((t for ledger in ledgers for t in ledger.trades), key=lambda t: t.exit_ns or 0)
        out.fills = sum(ledger.fills for ledger in ledgers)
        out.commission = sum(ledger.commission for ledger in ledgers)
        for ledger in ledgers:
            overlap = out._books.keys() & ledger._books.keys()
            if overlap:
                raise ValueError(f"ledgers of one portfolio hold disjoint symbols; both hold {sorted(overlap)}")
            out._books.update(ledger._books)
        return out

    def mark(self, symbol: str, ts_ns: int, price: float) -> None:
        """A decision at ``price``: the symbol is now worth its position at that price."""
        self._advance(ts_ns)
        book = self._book(symbol)
        self._revalue(book, book.cash, book.position, price)

    def fill(self, symbol: str, ts_ns: int, side: str, quantity: float, price: float, commission: float,
             decision_id: str | None = None) -> None:
        """A fill at ``price`` of the decision ``decision_id``: cash and position move, round trips open or close."""
        self._advance(ts_ns)
        book = self._book(symbol)
        signed = quantity if side == "BUY" else -quantity
        self._revalue(book, book.cash - signed * price - commission, book.position + signed, book.price)
        self.fills += 1
        self.commission += commission
        self._match(book, symbol, ts_ns, signed, price, commission, decision_id)

    def finish(self) -> None:
        """Close the books: record the last instant's equity."""
        if self._ts is not None:
            self._sample(self._ts)
            self._ts = None

    @property
    def open_trades(self) -> list[Trade]:
        return [t for b in self._books.values() for t in b.open]

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        return book

    def _revalue(self, book: _Book, cash: float, position: float, price: float) -> None:
        self._value += (cash + position * price) - (book.cash + book.position * book.price)
        self._holding += (abs(position) > _EPSILON) - (abs(book.position) > _EPSILON)
        book.cash, book.position, book.price = cash, position, price

    def _advance(self, ts_ns: int) -> None:
        if self._ts is not None and ts_ns != self._ts:
            self._sample(self._ts)
        self._ts = ts_ns

    def _sample(self, ts_ns: int) -> None:
        self.times.append(ts_ns)
        self.equity.append(self.capital + self._value)
        self.exposed.append(self._holding > 0)

    def _match(self, book: _Book, symbol: str, ts_ns: int, signed: float, price: float, commission: float,
               decision_id: str | None) -> None:
        remaining = signed
        per_unit = commission / abs(signed) if signed else 0.0
        # Close open trades of the other direction first, oldest first (FIFO).
        while book.open and remaining and math.copysign(1, book.open[0].size) != math.copysign(1, remaining):
            trade = book.open[0]
            closing = min(abs(remaining), abs(trade.size))
            if closing < abs(trade.size) - _EPSILON:  # a partial close splits the trade
                part = Trade(symbol, math.copysign(closing, trade.size), trade.entry_ns, trade.entry_price,
                             commission=trade.commission * closing / abs(trade.size),
                             entry_decision_id=trade.entry_decision_id)
                trade.commission -= part.commission
                trade.size = math.copysign(abs(trade.size) - closing, trade.size)
                trade = part
            else:
                book.open.pop(0)
            trade.exit_ns, trade.exit_price, trade.exit_decision_id = ts_ns, price, decision_id
            trade.commission += per_unit * closing
            trade.pnl = trade.size * (price - trade.entry_price) - trade.commission
            self.trades.append(trade)
            remaining = math.copysign(abs(remaining) - closing, remaining) if abs(remaining) > closing else 0.0
        if abs(remaining) > _EPSILON:
            book.open.append(Trade(symbol, remaining, ts_ns, price, commission=per_unit * abs(remaining),
                                   entry_decision_id=decision_id))


def performance(ledger: Ledger) -> dict[str, Any]:
    """The run's figures (see the module docstring for conventions)."""
    if not ledger.times:
        raise ValueError("no equity was recorded: the backtest decided on no tick")
    times = np.asarray(ledger.times, dtype=np.int64)
    equity = np.asarray(ledger.equity, dtype=np.float64)
    days = times // NS_PER_DAY
    last_of_day = np.flatnonzero(np.append(days[1:] != days[:-1], True))
    daily = equity[last_of_day]
    daily_returns = np.diff(np.concatenate(([ledger.capital], daily))) / np.concatenate(([ledger.capital], daily[:-1]))
    span_years = max((times[-1] - times[0]) / (365.25 * NS_PER_DAY), 1 / 365.25)
    per_year = len(daily) / span_years
    final = float(equity[-1])
    total_return = final / ledger.capital - 1
    annual_return = (final / ledger.capital) ** (1 / span_years) - 1 if final > 0 else -1.0
    mean = float(np.mean(daily_returns))
    std = float(np.std(daily_returns, ddof=1)) if len(daily_returns) > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(daily_returns, 0.0) ** 2)))
    peak = np.maximum.accumulate(np.concatenate(([ledger.capital], equity)))[1:]
    drawdown = equity / peak - 1
    trough = int(np.argmin(drawdown))
    max_drawdown = float(-drawdown[trough])
    peak_at = int(np.flatnonzero(equity[: trough + 1] >= peak[trough])[-1]) if max_drawdown > 0 else trough
    recovered = np.flatnonzero(equity[trough:] >= peak[trough]) if max_drawdown > 0 else np.array([], dtype=np.int64)
    closed = [t for t in ledger.trades if t.pnl is not None]
    wins = sum(1 for t in closed if t.pnl > 0)  # type: ignore[operator]
    figures = {
        "start": _iso(int(times[0])),
        "end": _iso(int(times[-1])),
        "initial_equity": ledger.capital,
        "final_equity": final,
        "total_return": total_return,
        "annualised_return": annual_return,
        "annualised_volatility": std * math.sqrt(per_year),
        "sharpe_ratio": mean / std * math.sqrt(per_year) if std > 0 else None,
        "sortino_ratio": mean / downside * math.sqrt(per_year) if downside > 0 else None,
        "max_drawdown": max_drawdown,
        "max_drawdown_peak": _iso(int(times[peak_at])),
        "max_drawdown_trough": _iso(int(times[trough])),
        "max_drawdown_recovered": _iso(int(times[trough + int(recovered[0])])) if len(recovered) else None,
        "trades": len(closed),
        "open_trades": len(ledger.open_trades),
        "win_rate": wins / len(closed) if closed else None,
        "fills": ledger.fills,
        "commission_paid": ledger.commission,
        "exposure": float(np.mean(ledger.exposed)),
        "trading_days": len(daily),
        "days_per_year": per_year,
    }
    return {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in figures.items()}


def daily_equity(ledger: Ledger) -> list[tuple[str, float]]:
    """End-of-day equity, for the report's curve."""
    out: dict[str, float] = {}
    for ts, value in zip(ledger.times, ledger.equity):
        out[iso_day(ts)] = value
    return list(out.items())


def drawdown_series(equity: Iterable[float], capital: float) -> list[float]:
    """Drawdown (≤ 0) of each equity value from the running peak."""
    peak, out = capital, []
    for value in equity:
        peak = max(peak, value)
        out.append(value / peak - 1)
    return out
