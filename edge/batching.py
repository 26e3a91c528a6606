"""Spacing the steps of a loop that drains a stream in batches.

A relay or projection worker step has a fixed cost (a few Redis or broker
round trips, a transaction, offsets, metrics) besides its cost per record.
Taken as soon as anything is there, a light stream makes many small steps:
at 1,000 ticks/s the fixed cost was most of a step's CPU. Spacing the steps
by a short interval lets records gather, so the fixed cost is paid per
interval instead of per few records. A step that took a full batch starts
the next at once: a backlog is drained at full speed.

The interval adds at most itself to a record's way through (tens of
milliseconds against the one-second forensics budget), never to trading.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["StepSpacing"]


class StepSpacing:
    """Waits, after a step that was not full, until ``interval_s`` has passed since that step began."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s >= 0:
            raise ValueError(f"a step interval must be zero or more seconds, got {interval_s!r}")
        self.interval_s = interval_s
        self._clock = clock
        self._began = clock()

    def began(self) -> None:
        """Note the start of a step."""
        self._began = self._clock()

    def wait_for(self, full: bool) -> float:
        """Seconds to wait before the next step: 0 after a full step, else what is left of the interval."""
        if full:
            return 0.0
        return max(self.interval_s - (self._clock() - self._began), 0.0)

    async def after_step(self, full: bool) -> None:
        """Wait what :meth:`wait_for` says (nothing after a full step)."""
        wait = self.wait_for(full)
        if wait > 0:
            await asyncio.sleep(wait)
