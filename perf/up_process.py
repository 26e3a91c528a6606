"""``glassbox up`` as a benchmark runs it: a child process in a home of its own, its output in a file.

Shared by ``perf.pipeline`` and ``perf.stream``: start it, wait until it says
everything runs (its ``API`` line), read its status file, wait for its drain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["START_TIMEOUT_S", "STOP_TIMEOUT_S", "UpProcess"]

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 240.0


class UpProcess:
    """``python -m actors.system.cli up *args`` with ``env``; its home is ``env["GLASSBOX_HOME"]``."""

    def __init__(self, args: list[str], env: dict[str, str], out: Path) -> None:
        self.home = Path(env["GLASSBOX_HOME"])
        self.out = out
        with out.open("wb") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "actors.system.cli", "up", *args], env=env,
                                            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def tail(self) -> str:
        lines = self.output().splitlines()[-25:]
        return "\n  ".join(lines) + f"\n  (whole output: {self.out}; component logs: {self.home / 'run' / 'logs'})"

    def wait_until_running(self) -> str:
        """Its output once it says everything runs (the ``API`` line)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.output()
            if any(line.startswith("API ") for line in text.splitlines()):
                return text
            if self.process.poll() is not None:
                raise RuntimeError(f"glassbox up exited with {self.process.returncode} before it ran:\n  {self.tail()}")
            time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"glassbox up did not start within {START_TIMEOUT_S:g} s:\n  {self.tail()}")

    def status(self) -> dict:
        """Its status file (``home/run/status.json``, rewritten each second); empty before the first."""
        try:
            return json.loads((self.home / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"glassbox up did not drain and stop within {STOP_TIMEOUT_S:g} s:\n  {self.tail()}")

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
