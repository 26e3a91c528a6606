"""Price alert rules and the price window (pure code)."""

from __future__ import annotations

import random

import pytest

from aggregates.alerts import AlertRule, AlertRules, PriceWindow, severity_of
from aggregates.errors import DomainError
from glassbox import Settings, SettingsError

S = 1_000_000_000


def test_the_move_is_the_larger_of_the_rise_from_the_low_and_the_fall_from_the_high() -> None:
    window = PriceWindow(60 * S)
    assert window.add(0, 100.0) == (0.0, 100.0)
    assert window.add(1 * S, 95.0) == pytest.approx((-0.05, 100.0))
    assert window.add(2 * S, 104.5) == pytest.approx((0.1, 95.0))  # +10 % from the low beats -0 from the high
    assert window.add(70 * S, 104.5) == pytest.approx((0.0, 104.5))  # everything else left the window


def test_the_window_equals_a_brute_force_scan_on_random_walks() -> None:
    rng = random.Random(5)
    window, seen, price = PriceWindow(10 * S), [], 100.0
    for i in range(3_000):
        ts, price = i * S // 3, price * (1 + rng.gauss(0, 0.01))
        seen.append((ts, price))
        inside = [p for t, p in seen if t >= ts - 10 * S]
        rise, fall = price / min(inside) - 1, price / max(inside) - 1
        expected = (rise, min(inside)) if rise >= -fall else (fall, max(inside))
        assert window.add(ts, price) == pytest.approx(expected)


def test_severity_doubles_from_the_threshold() -> None:
    rule = AlertRule(0.05, 60)
    assert severity_of(0.05, rule) == severity_of(-0.07, rule) == "warning"
    assert severity_of(-0.1, rule) == severity_of(0.2, rule) == "critical"


def test_rules_come_from_the_settings_per_symbol_or_by_default() -> None:
    rules = AlertRules.from_settings(Settings.from_env({"GLASSBOX_ALERT_MOVE": "0.02",
                                                        "GLASSBOX_ALERT_RULES": "BTCUSD:0.03/30"}))
    assert rules.for_symbol("BTCUSD") == AlertRule(0.03, 30) and rules.for_symbol("GOOG") == AlertRule(0.02, 60)
    for bad in ("BTCUSD", "BTCUSD:0.03", "BTCUSD:-1/30", "BTCUSD:0.03/0", "BTCUSD:x/30"):
        with pytest.raises(SettingsError, match="GLASSBOX_ALERT_RULES"):
            Settings.from_env({"GLASSBOX_ALERT_RULES": bad})
    with pytest.raises(SettingsError, match="GLASSBOX_ALERT_WINDOW_S"):
        Settings.from_env({"GLASSBOX_ALERT_WINDOW_S": "0"})
    with pytest.raises(DomainError):
        AlertRule(0.0, 60)
