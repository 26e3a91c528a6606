"""Processes that tests run, and what an assertion about one says when it fails.

A test that runs a real process (``glassbox up``, a shard, a relay, a worker,
``glassbox backtest``) asserts on its exit code or on what it did meanwhile.
When that fails on a loaded CI machine, the reason is in the process's own
output and in its components' logs, so every such assertion's message is a
:func:`process_report`: the command, how it ended, the end of its output and
the end of each log.

:class:`LoggedProcess` sends a process's output to a file rather than to a
pipe: a pipe nobody reads fills up (64 KiB, a few minutes of ``glassbox up``'s
progress lines) and then blocks the process in the middle of a print, and a
file can be read while the process still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.child_process import log_tail

__all__ = ["LoggedProcess", "process_report", "run", "wait_until"]

OUTPUT_LINES = 60
"""Lines of a process's own output (each of stdout and stderr) a report ends with."""
LOG_LINES = 30
"""Lines of each log file a report ends with."""


def process_report(
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | subprocess.CompletedProcess[str],
    output: Path | None = None,
    logs: Iterable[Path] = (),
) -> str:
    """What a failed assertion about ``process`` says: its command, how it ended, its output's and logs' ends.

    A :class:`subprocess.CompletedProcess` brings its own stdout and stderr;
    for a running or finished ``Popen`` its output is read from ``output`` (a
    file), never from a pipe (which would block while it runs). ``logs`` are
    files it or its children write (``<GLASSBOX_HOME>/run/logs/*.log``).
    """
    argv = process.args if isinstance(process.args, (list, tuple)) else [process.args]
    lines = [f"command: {' '.join(str(a) for a in argv)}"]
    if isinstance(process, subprocess.CompletedProcess):
        lines.append(f"exit code {process.returncode}")
        lines += _section("stdout", _tail(process.stdout))
        lines += _section("stderr", _tail(process.stderr))
    else:
        returncode = process.poll()
        lines.append(f"pid {process.pid}, " + ("still running" if returncode is None else f"exit code {returncode}"))
        if output is not None:
            lines += _section(f"output ({output})", log_tail(output, OUTPUT_LINES))
    for log in logs:
        lines += _section(f"log {log}", log_tail(log, LOG_LINES))
    return "\n".join(lines)


def run(args: Sequence[str], timeout: float, **popen: object) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` capturing text output; AssertionError with the output so far after ``timeout`` s."""
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,  # type: ignore[call-overload]
                              check=False, **popen)
    except subprocess.TimeoutExpired as expired:  # subprocess.run has SIGKILLed it
        killed = subprocess.CompletedProcess(expired.cmd, -9, expired.stdout, expired.stderr)
        raise AssertionError(f"still running {timeout:g} s later (killed)\n{process_report(killed)}") from None


class LoggedProcess(subprocess.Popen[bytes]):
    """A ``Popen`` whose stdout and stderr go to ``output``; :meth:`report` for assertion messages.

    ``log_dir``: a directory whose ``*.log`` files the report quotes as well
    (``glassbox up`` writes one per component there).
    """

    def __init__(self, args: Sequence[str], output: Path, log_dir: Path | None = None, **popen: object) -> None:
        self.output_path = output
        self.log_dir = log_dir
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab") as sink:  # the child keeps its own descriptor
            super().__init__(list(args), stdout=sink, stderr=subprocess.STDOUT,  # type: ignore[call-overload]
                             stdin=subprocess.DEVNULL, **popen)

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr, interleaved)."""
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def report(self) -> str:
        """:func:`process_report` of this process, its output file and the logs in ``log_dir``."""
        logs = sorted(self.log_dir.glob("*.log")) if self.log_dir is not None else []
        return process_report(self, self.output_path, logs)

    def exit_code(self, timeout: float) -> int:
        """Its exit code once it has exited; AssertionError with :meth:`report` if it runs ``timeout`` s more."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout:g} s later\n{self.report()}") from None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it still runs ``timeout`` s later; the exit code (the test asserts on it)."""
        if self.poll() is None:
            self.terminate()
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.wait()


def wait_until(condition: Callable[[], object], timeout: float, what: str, process: LoggedProcess | None = None,
               every: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError after ``timeout`` s or when ``process`` exits.

    Deadlines here are for a loaded machine (minutes): they bound a hang, they
    do not measure speed. The message names ``what`` was awaited and, with a
    ``process``, carries its :meth:`LoggedProcess.report`.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited while waiting for {what}\n{process.report()}")
        if time.monotonic() > deadline:
            report = f"\n{process.report()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{report}")
        time.sleep(every)


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return "(not captured)"
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-OUTPUT_LINES:]) or "(empty)"


def _section(title: str, body: str) -> list[str]:
    return [f"--- {title}:", body]


class Interrupted(BaseException):
    """What :func:`interrupted_after` raises: a BaseException, as KeyboardInterrupt and StartupInterrupted are."""


@contextmanager
def interrupted_after(seconds: float, on_signal: Callable[[], None] = lambda: None) -> Iterator[None]:
    """The block must be interrupted: SIGUSR1 to this process after ``seconds`` raises :class:`Interrupted`
    in whatever the block waits on (``on_signal`` runs first, in the handler)."""

    def interrupt(_signum: int, _frame: object) -> None:
        on_signal()
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(Interrupted):
            yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
