"""``glassbox halt`` and ``glassbox resume`` as a user runs them (the real Redis, the real command)."""

from __future__ import annotations

import getpass
import os
import sys

from actors.trading_control import TradingControl
from edge.system_keys import SystemKeys
from tests.process_report import process_report, run


def glassbox(tmp_path, redis_url: str, namespace: str, *args: str):
    env = {**os.environ, "GLASSBOX_HOME": str(tmp_path), "REDIS_URL": redis_url, "GLASSBOX_NAMESPACE": namespace}
    return run([sys.executable, "-m", "actors.system.cli", *args], 60, env=env)


def test_halt_and_resume_from_the_command_line_are_recorded_under_the_users_name(tmp_path, redis_url,
                                                                                 namespace) -> None:
    halted = glassbox(tmp_path, redis_url, namespace, "halt", "--reason", "desk review", "--flatten")
    assert halted.returncode == 0, process_report(halted)
    assert f"trading HALTED, flattening by cli:{getpass.getuser()}" in halted.stdout
    assert "desk review" in halted.stdout
    control = TradingControl(redis_url, SystemKeys(namespace))
    try:
        state = control.in_force()
        assert state.halted and state.flatten and state.by == f"cli:{getpass.getuser()}"
        resumed = glassbox(tmp_path, redis_url, namespace, "resume", "--reason", "done")
        assert resumed.returncode == 0 and resumed.stdout.startswith("trading running"), process_report(resumed)
        again = glassbox(tmp_path, redis_url, namespace, "resume")
        assert again.returncode == 2 and "trading is not halted" in again.stderr
        no_reason = glassbox(tmp_path, redis_url, namespace, "halt")
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        assert [h["event"] for h in control.history()] == ["Risk.Trading.Halted.v1", "Risk.Trading.Resumed.v1"]
    finally:
        control.close()
