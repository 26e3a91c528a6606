"""Step spacing: a light stream is taken in few larger steps, a backlog at full speed."""

from __future__ import annotations

import asyncio

import pytest

from edge.batching import StepSpacing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_that_was_not_full_waits_out_the_rest_of_the_interval() -> None:
    clock = Clock()
    spacing = StepSpacing(0.05, clock)
    spacing.began()
    clock.now += 0.01
    assert spacing.wait_for(full=False) == pytest.approx(0.04)
    clock.now += 0.1  # a slow step: the interval has passed already
    assert spacing.wait_for(full=False) == 0.0


def test_a_full_step_goes_on_at_once() -> None:
    clock = Clock()
    spacing = StepSpacing(0.05, clock)
    spacing.began()
    assert spacing.wait_for(full=True) == 0.0


def test_after_step_sleeps_what_wait_for_says() -> None:
    spacing = StepSpacing(0.03)
    spacing.began()
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        loop.run_until_complete(spacing.after_step(full=False))
        assert loop.time() - started >= 0.025  # asyncio.sleep never returns early by more than its clock's grain
    finally:
        loop.close()


@pytest.mark.parametrize("interval", [-0.1, float("nan")])
def test_a_negative_or_nan_interval_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="zero or more seconds"):
        StepSpacing(interval)
