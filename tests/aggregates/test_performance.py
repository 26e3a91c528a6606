"""The ledger and the figures, on hand-made fills whose results are known."""

from __future__ import annotations

import math

import pytest

from aggregates.performance import NS_PER_DAY, Ledger, daily_equity, performance

DAY0 = 1_600_000_000 * 1_000_000_000 // NS_PER_DAY * NS_PER_DAY  # a midnight UTC


def day(n: int) -> int:
    return DAY0 + n * NS_PER_DAY


def test_a_long_round_trip_is_one_winning_trade_net_of_commission() -> None:
    ledger = Ledger(1_000.0)
    ledger.mark("X", day(0), 10.0)
    ledger.fill("X", day(0), "BUY", 50, 10.0, commission=1.0)
    ledger.mark("X", day(1), 12.0)
    ledger.mark("X", day(2), 11.0)
    ledger.fill("X", day(2), "SELL", 50, 11.0, commission=1.0)
    ledger.finish()
    [trade] = ledger.trades
    assert (trade.size, trade.entry_price, trade.exit_price) == (50, 10.0, 11.0)
    assert trade.pnl == pytest.approx(50 * 1.0 - 2.0)
    m = performance(ledger)
    assert m["final_equity"] == pytest.approx(1_048.0)
    assert m["total_return"] == pytest.approx(0.048)
    assert m["trades"] == 1 and m["win_rate"] == 1.0 and m["open_trades"] == 0
    # equity per day: 999 (after commission), 1,099, 1,048: the drawdown is from 1,099 to 1,048
    assert [v for _, v in daily_equity(ledger)] == pytest.approx([999.0, 1_099.0, 1_048.0])
    assert m["max_drawdown"] == pytest.approx(1 - 1_048 / 1_099)
    assert m["max_drawdown_peak"].startswith("2020-09-14") and m["max_drawdown_trough"].startswith("2020-09-15")
    assert m["max_drawdown_recovered"] is None


def test_a_reversal_closes_the_long_and_opens_a_short_at_the_same_price() -> None:
    ledger = Ledger(10_000.0)
    ledger.mark("X", day(0), 100.0)
    ledger.fill("X", day(0), "BUY", 10, 100.0, 0.0)
    ledger.mark("X", day(1), 90.0)
    ledger.fill("X", day(1), "SELL", 30, 90.0, 0.0)
    ledger.mark("X", day(2), 80.0)
    ledger.finish()
    [closed] = ledger.trades
    [short] = ledger.open_trades
    assert (closed.size, closed.pnl) == (10, -100.0)
    assert (short.size, short.entry_price, short.exit_ns) == (-20, 90.0, None)
    assert performance(ledger)["final_equity"] == pytest.approx(10_000 - 100 + 200)


def test_partial_closes_are_first_in_first_out() -> None:
    ledger = Ledger(10_000.0)
    for n, price in enumerate((10.0, 20.0)):
        ledger.mark("X", day(n), price)
        ledger.fill("X", day(n), "BUY", 5, price, 0.0)
    ledger.mark("X", day(2), 30.0)
    ledger.fill("X", day(2), "SELL", 7, 30.0, 0.0)
    ledger.finish()
    assert [(t.size, t.entry_price, t.pnl) for t in ledger.trades] == [(5, 10.0, 100.0), (2, 20.0, 20.0)]
    assert [(t.size, t.entry_price) for t in ledger.open_trades] == [(3, 20.0)]


def test_ratios_follow_their_stated_definitions() -> None:
    ledger = Ledger(100.0)
    prices = [100.0, 101.0, 99.0, 102.0, 100.0]
    ledger.mark("X", day(0), prices[0])
    ledger.fill("X", day(0), "BUY", 1, prices[0], 0.0)
    for n, price in enumerate(prices[1:], start=1):
        ledger.mark("X", day(n), price)
    ledger.finish()
    m = performance(ledger)
    equity = [p for p in prices]
    returns = [0.0] + [equity[i] / equity[i - 1] - 1 for i in range(1, len(equity))]  # day 0 vs capital: 0
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    per_year = 5 / (4 / 365.25)
    assert m["sharpe_ratio"] == pytest.approx(mean / std * math.sqrt(per_year))
    assert m["sortino_ratio"] == pytest.approx(mean / downside * math.sqrt(per_year))
    assert m["annualised_volatility"] == pytest.approx(std * math.sqrt(per_year))
    assert m["exposure"] == 1.0


def test_no_decisions_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no equity"):
        performance(Ledger(1.0))


def test_ledgers_of_disjoint_symbols_combine_into_the_ledger_of_all_their_events() -> None:
    events = [  # (symbol, day, price, fill) in time order; X and Y trade on days that interleave
        ("X", 0, 10.0, ("BUY", 10)), ("Y", 0, 50.0, None), ("Y", 1, 52.0, ("BUY", 4)), ("X", 2, 11.0, None),
        ("X", 3, 12.0, ("SELL", 10)), ("Y", 3, 49.0, None), ("Y", 4, 55.0, ("SELL", 4)), ("X", 5, 9.0, ("SELL", 5)),
    ]
    whole, parts = Ledger(1_000.0), {"X": Ledger(1_000.0), "Y": Ledger(1_000.0)}
    for symbol, n, price, fill in events:
        for ledger in (whole, parts[symbol]):
            ledger.mark(symbol, day(n), price)
            if fill:
                ledger.fill(symbol, day(n), fill[0], fill[1], price, commission=0.5)
    for ledger in (whole, *parts.values()):
        ledger.finish()
    combined = Ledger.combined([parts["X"], parts["Y"]])
    assert combined.times == whole.times
    assert combined.equity == pytest.approx(whole.equity, rel=1e-12)
    assert combined.exposed == whole.exposed
    assert [t.as_dict() for t in combined.trades] == [t.as_dict() for t in whole.trades]
    assert [t.as_dict() for t in combined.open_trades] == [t.as_dict() for t in whole.open_trades]
    assert (combined.fills, combined.commission) == (whole.fills, whole.commission)
    assert performance(combined) == pytest.approx(performance(whole))


def test_ledgers_of_different_portfolios_do_not_combine() -> None:
    with pytest.raises(ValueError, match="share its capital"):
        Ledger.combined([Ledger(1.0), Ledger(2.0)])
