"""``glassbox halt`` and ``glassbox resume``: the kill switch from the command line.

Works on a running system (its Redis) and on a stopped one (its embedded
Redis, started on its data for the moment: the halt is then in force when
``glassbox up`` starts again). Who asked is recorded as ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from actors.system.services import system_redis
from actors.trading_control import TradingControl
from aggregates.errors import TradingSwitchError
from edge.shared_book import TradingState
from edge.system_keys import SystemKeys
from glassbox import GlassboxError, Settings

__all__ = ["add_trading_parsers", "cli_user", "describe"]


def add_trading_parsers(commands: Any) -> None:
    halt = commands.add_parser("halt", help="stop every desk opening or growing positions (the kill switch)")
    halt.add_argument("--reason", required=True, help="why, as recorded in Risk.Trading.Halted.v1")
    halt.add_argument("--flatten", action="store_true", help="also close every position, each on its next tick")
    halt.set_defaults(handler=halt_command)
    resume = commands.add_parser("resume", help="let the desks trade again after a halt")
    resume.add_argument("--reason", default="", help="why, as recorded in Risk.Trading.Resumed.v1")
    resume.set_defaults(handler=resume_command)


def cli_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid (a container)
        return "cli:unknown"


def describe(state: TradingState) -> str:
    """One line on the switch, for ``halt``, ``resume`` and ``status``."""
    if not state.halted:
        return "running" + (f" (resumed by {state.by} at {state.at})" if state.by else "")
    flatten = ", flattening" if state.flatten else ""
    return f"HALTED{flatten} by {state.by} at {state.at}: {state.reason}"


def halt_command(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(settings, lambda control: control.halt(cli_user(), args.reason, args.flatten))


def resume_command(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(settings, lambda control: control.resume(cli_user(), args.reason))


def _switch(settings: Settings, change: Any) -> int:
    with system_redis(settings) as url:
        control = TradingControl(url, SystemKeys(settings.namespace))
        try:
            state = change(control)
        except TradingSwitchError as error:
            raise GlassboxError(str(error)) from None
        finally:
            control.close()
    print(f"trading {describe(state)}")
    return 0
