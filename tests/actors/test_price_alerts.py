"""Price alerts on the real Redis: committed with the tick's decision, once a window, the same after a restart."""

from __future__ import annotations

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from aggregates.alerts import AlertRule, AlertRules
from aggregates.desk import SymbolDesk
from edge.feeds import SyntheticFeed
from tests.actors.hot_path_support import publish, wait_until_decided

SYMBOLS = SyntheticFeed.symbol_names(3)
RULES = AlertRules(AlertRule(0.004, 1.0), {"SYN002": AlertRule(0.006, 2.0)})
"""Ticks are 10 ms apart with a volatility of about 0.1 %: a window of 100-200 ticks moves this far often."""


def hot_path(redis_url: str, namespace: str, policy, checkpoint_every: int = 1_000) -> HotPath:
    actor = ActorSettings(checkpoint_every=checkpoint_every, alerts=RULES)
    return HotPath(HotPathSettings(redis_url, namespace=namespace, shard=ShardSettings(actor=actor)), SYMBOLS, policy)


def events(hot: HotPath) -> list:
    return [hot.app.mapper.to_domain_event(n) for n in hot.app.recorder.select_notifications(start=1, limit=10**7)]


def test_a_move_beyond_the_rule_is_an_alert_committed_with_its_decision_once_a_window(
        redis_url, namespace, policy) -> None:
    ticks = list(SyntheticFeed(SYMBOLS, seed=9).ticks(1_500))
    hot = hot_path(redis_url, namespace, policy)
    with hot:
        publish(hot, ticks)
        wait_until_decided(hot, len(ticks))
        recorded = events(hot)
    alerts = [e for e in recorded if isinstance(e, SymbolDesk.AlertTriggered)]
    assert {a.symbol for a in alerts} == set(SYMBOLS) and len(alerts) > 10
    decisions = {(e.symbol, e.correlation_id): e for e in recorded if isinstance(e, SymbolDesk.DecisionTaken)}
    last: dict[str, int] = {}
    for alert in alerts:
        rule = RULES.for_symbol(alert.symbol)
        decision = decisions[alert.symbol, alert.correlation_id]  # the tick's decision, in the same append
        assert decision.symbol == alert.symbol and decision.price == alert.price
        assert abs(alert.move) >= rule.move and (alert.threshold, alert.window_s) == (rule.move, rule.window_s)
        assert alert.move == alert.price / alert.reference_price - 1
        assert alert.severity == ("critical" if abs(alert.move) >= 2 * rule.move else "warning")
        assert alert.exposure == abs(alert.position * alert.price)
        assert alert.timestamp_ns - last.get(alert.symbol, -10**18) >= rule.window_ns  # quiet for a window
        last[alert.symbol] = alert.timestamp_ns
    assert len(hot.stats.alert_latencies_ns()) == len(alerts)


def test_after_restarts_the_alerts_are_the_ones_a_straight_run_raises(redis_url, namespace, policy) -> None:
    ticks = list(SyntheticFeed(SYMBOLS, seed=10).ticks(900))

    def alerts_of(hot: HotPath) -> list[tuple]:
        return sorted((a.symbol, a.timestamp_ns, a.move, a.reference_price) for a in events(hot)
                      if isinstance(a, SymbolDesk.AlertTriggered))  # in time order per symbol (batches differ)

    straight = hot_path(redis_url, f"{namespace}a:", policy, checkpoint_every=64)
    with straight:
        publish(straight, ticks)
        wait_until_decided(straight, len(ticks))
        expected = alerts_of(straight)
    assert expected
    for start, end in [(0, 700), (700, 701), (701, 1_600), (1_600, len(ticks))]:  # restarts mid-window
        hot = hot_path(redis_url, f"{namespace}b:", policy, checkpoint_every=64)
        with hot:
            publish(hot, ticks[start:end])
            wait_until_decided(hot, end - start)
            resumed = alerts_of(hot)
    assert resumed == expected
