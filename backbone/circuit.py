"""A circuit breaker: stop hammering a dead broker, try again now and then.

closed    — calls go through; ``failure_threshold`` failures in a row open it.
open      — calls are refused until ``reset_timeout`` seconds have passed.
half-open — one trial call goes through: success closes the circuit,
            failure opens it again for another ``reset_timeout``.

Pure state machine: the clock is passed in, nothing sleeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["BreakerSettings", "CircuitBreaker", "CircuitState"]


class CircuitState:
    """The three states; ``code`` is what the ``relay_circuit_state`` metric exports."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    code = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class BreakerSettings:
    """When the breaker opens and how long it stays open."""

    failure_threshold: int = 3
    reset_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {self.failure_threshold!r}")
        if self.reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be positive, not {self.reset_timeout!r}")


class CircuitBreaker:
    """Tracks failures of one dependency; see the module docstring."""

    def __init__(self, settings: BreakerSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self.opened_count = 0
        """How many times the circuit has opened (a metric)."""

    @property
    def state(self) -> str:
        """The current state, moving from open to half-open once the timeout has passed."""
        if self._state == CircuitState.OPEN and self._clock() - self._opened_at >= self.settings.reset_timeout:
            self._state = CircuitState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success (a metric: the seeds alert past 10)."""
        return self._failures

    def allow(self) -> bool:
        """Whether a call may be tried now."""
        return self.state != CircuitState.OPEN

    def seconds_until_trial(self) -> float:
        """How long an open circuit still refuses calls (0 when it allows them)."""
        if self.state != CircuitState.OPEN:
            return 0.0
        return max(0.0, self.settings.reset_timeout - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self._state = CircuitState.CLOSED
        self._failures = 0

    def record_failure(self) -> None:
        self._failures += 1
        if self.state == CircuitState.HALF_OPEN or self._failures >= self.settings.failure_threshold:
            self._state = CircuitState.OPEN
            self._opened_at = self._clock()
            self.opened_count += 1
