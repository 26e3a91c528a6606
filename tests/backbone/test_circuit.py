"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from backbone.circuit import BreakerSettings, CircuitBreaker, CircuitState


def test_opens_after_threshold_refuses_then_half_opens_and_closes_on_success() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=3, reset_timeout=5), clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == CircuitState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state == CircuitState.OPEN and not breaker.allow()
    now[0] = 4.0
    assert breaker.seconds_until_trial() == pytest.approx(1.0)
    now[0] = 5.0
    assert breaker.state == CircuitState.HALF_OPEN and breaker.allow()
    breaker.record_success()
    assert breaker.state == CircuitState.CLOSED and breaker.opened_count == 1


def test_a_failed_trial_opens_again_at_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, reset_timeout=1), clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1.5
    assert breaker.state == CircuitState.HALF_OPEN
    breaker.record_failure()
    assert breaker.state == CircuitState.OPEN and breaker.opened_count == 2
    assert breaker.seconds_until_trial() == pytest.approx(1.0)


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=2, reset_timeout=1))
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == CircuitState.CLOSED


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        BreakerSettings(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerSettings(reset_timeout=0)
