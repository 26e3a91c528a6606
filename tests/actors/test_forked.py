"""Parts run in forked processes: results in order, summed progress, and failures named, never hung."""

from __future__ import annotations

import os

import pytest

from actors.forked import PartContext, PartFailed, run_forked


def _square(n: int):
    def part(context: PartContext[int]) -> int:
        context.in_step()
        for done in range(1, n + 1):
            context.progressed(done)
        return n * n

    return part


def test_results_come_back_in_order_and_progress_sums_the_parts() -> None:
    seen: list[int] = []
    assert run_forked([_square(3), _square(5)], seen.append) == [9, 25]
    assert seen[-1] == 8 and seen == sorted(seen)


def test_each_part_runs_in_a_process_of_its_own() -> None:
    pids = run_forked([lambda c: os.getpid(), lambda c: os.getpid()])
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_a_part_that_raises_stops_the_run_with_its_message_even_before_the_start_line() -> None:
    def failing(context: PartContext[int]) -> int:
        raise ValueError("the data of part one is bad")

    with pytest.raises(PartFailed, match="the data of part one is bad") as failure:
        run_forked([_square(2), failing])  # part 0 waits at the start line for a part that never comes
    assert failure.value.index == 1


def test_a_part_whose_process_dies_is_reported_with_its_exit_code() -> None:
    def dying(context: PartContext[int]) -> int:
        os._exit(3)

    with pytest.raises(PartFailed, match="exit code 3"):
        run_forked([dying])
