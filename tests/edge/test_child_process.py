"""A server started by a process that is SIGKILLed does not outlive it."""

from __future__ import annotations

import os
import sys
import time

from tests.process_report import LoggedProcess, wait_until

PARENT = """
import subprocess, sys, time
from edge.child_process import die_with_parent
child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_dies_with_its_sigkilled_parent(tmp_path) -> None:
    parent = LoggedProcess([sys.executable, "-c", PARENT], tmp_path / "parent.out")
    try:
        wait_until(lambda: parent.output().endswith("\n"), 120, "the parent to start its child", parent)
    finally:
        parent.kill()  # SIGKILL, as before; a no-op for a parent that already exited
        parent.wait()
    assert parent.output().strip().isdigit(), parent.report()
    child_pid = int(parent.output())
    deadline = time.monotonic() + 60
    while True:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break  # gone (reaped by init)
        try:
            with open(f"/proc/{child_pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    break  # a zombie: it is dead, init has not reaped it yet
        except FileNotFoundError:
            break
        assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
        time.sleep(0.05)
