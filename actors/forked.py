"""Parts of one job run side by side in forked processes: a common start, progress, and failures.

A backtest over several shards runs each shard in a process of its own, as
``glassbox up --shards N`` does, so the shards decide on separate cores
instead of taking turns on one interpreter lock. The processes are *forked*:
they inherit the parent's memory — the loaded history, the strategy and its
models — instead of having millions of ticks pickled to them. A part must
therefore build its own connections and threads after the fork (a backtest
shard starts its own Redis clients and actors).
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from glassbox import GlassboxError

__all__ = ["PartContext", "PartFailed", "run_forked"]

T = TypeVar("T")

_POLL_S = 0.5


class PartFailed(GlassboxError):
    """A part raised, or its process ended without a result; ``index`` names the part."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class PartContext(Generic[T]):
    """What a part is handed: its index, a line shared with the others to keep in step, and a progress counter."""

    index: int
    _messages: Any
    _start_line: Any

    def in_step(self) -> None:
        """Wait until every part has come this far: after starting up (the timed work begins together),
        and, called once a step by every part, after each step (parts go in step).

        A part that fails breaks the line, and the others stop waiting at once.
        """
        self._start_line.wait()

    def progressed(self, done: int) -> None:
        """Report that ``done`` units of this part's work are done (the parent sums the parts)."""
        self._messages.put(("progress", self.index, done))


def run_forked(parts: Sequence[Callable[[PartContext[T]], T]],
               progress: Callable[[int], None] | None = None) -> list[T]:
    """Run every part in a forked process of its own; their results, in the order of ``parts``.

    ``progress`` is called in the parent with the units done by all parts so far.
    Results travel back pickled.

    Raises:
        PartFailed: for the first part that raised (its message) or died; the
            other parts are stopped at once.
    """
    context = multiprocessing.get_context("fork")  # inherit the loaded data; see the module docstring
    messages = context.Queue()
    start_line = context.Barrier(len(parts))
    processes = [
        context.Process(target=_part_main, args=(part, PartContext(i, messages, start_line)),
                        name=f"part-{i}", daemon=True)
        for i, part in enumerate(parts)
    ]
    results: dict[int, T] = {}
    done: dict[int, int] = {}
    try:
        gc.freeze()  # a child's collections then leave the inherited objects' pages unwritten (shared)
        try:
            for process in processes:
                process.start()
        finally:
            gc.unfreeze()
        ended_silent: set[int] = set()
        while len(results) < len(parts):
            try:
                kind, index, payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                # A part's process writes all it sent before it ends, so one that has ended and
                # stayed silent for a whole poll since will send no result.
                ended = {i for i, p in enumerate(processes) if i not in results and p.exitcode is not None}
                if ended & ended_silent:
                    i = min(ended & ended_silent)
                    raise PartFailed(i, f"its process ended (exit code {processes[i].exitcode}) without a result")
                ended_silent = ended
                continue
            if kind == "progress":
                done[index] = payload
                if progress is not None:
                    progress(sum(done.values()))
            elif kind == "done":
                results[index] = payload
            else:
                raise PartFailed(index, payload)
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
        messages.close()
    return [results[i] for i in range(len(parts))]


def _part_main(part: Callable[[PartContext[T]], T], context: PartContext[T]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent stops a part with SIGTERM: at once, whatever it inherited
    try:
        result = part(context)
    except threading.BrokenBarrierError:
        # Another part failed while the others waited for it; its own report says why.
        context._messages.put(("failed", context.index, "stopped: another part failed"))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        message = str(error) or repr(error)
        context._messages.put(("failed", context.index, message))
        context._messages.close()
        context._messages.join_thread()  # the parent hears the cause before the others break
        context._start_line.abort()
    else:
        context._messages.put(("done", context.index, result))
    context._messages.close()
    context._messages.join_thread()
