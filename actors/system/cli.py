"""The ``glassbox`` command: ``up``, ``status``, ``doctor``, ``replay``, ``backtest``, ``train``, ``halt``, ``resume``, ``dlq``.

This is the edge where settings are parsed (environment + options) and
embedded services are started; everything below receives them as arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from actors.application import DeskApplication, event_store_env
from actors.system.backtest_cli import add_backtest_parser
from actors.system.dlq_cli import add_dlq_parser
from actors.system.trading_cli import add_trading_parsers, describe
from actors.trading_control import TradingControl
from actors.system.options import non_negative_int, positive_float, positive_int
from actors.replay import DeskReplay
from actors.system.plan import RunPlan
from actors.system.status import read_status
from actors.system.stop_signals import StopSignals
from actors.system.supervisor import Supervisor
from actors.system.services import system_redis
from aggregates.registry import ModelRegistry
from edge.feeds import BUNDLED_SYMBOLS, SyntheticFeed
from edge.logs import configure_logging
from edge.system_keys import SystemKeys
from edge.user_data import read_user_data
from glassbox import GlassboxError, Settings

__all__ = ["main"]

log = logging.getLogger("glassbox")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``glassbox`` command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        component = "supervisor" if args.handler is _up else "cli"
        configure_logging(component, settings.log_level)
        return int(args.handler(args, settings) or 0)
    except GlassboxError as error:
        print(f"glassbox: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassbox", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the whole system: services, actors, relay, workers, API, feeds")
    up.add_argument("--symbols", type=non_negative_int, default=20,
                    help="synthetic symbols besides the bundled real ones (default 20)")
    up.add_argument("--rate", type=positive_float, default=1000.0,
                    help="ticks per second offered, all sources together (default 1000)")
    up.add_argument("--duration", type=positive_float, default=None,
                    help="seconds to run (default: until Ctrl-C)")
    up.add_argument("--source", nargs="+", default=["all"], metavar="KIND",
                    help="all (default), bundled, synthetic, or csv PATH: a CSV or Parquet file of bars "
                         "(timestamp,open,high,low,close,volume) or ticks (timestamp,price,size[,bid,ask]), "
                         "with an optional symbol column")
    up.add_argument("--shards", type=positive_int, default=1, help="actor processes (default 1)")
    up.add_argument("--forensics-workers", type=positive_int, default=1,
                    help="forensics worker processes, members of one consumer group (default 1)")
    up.add_argument("--api-port", type=non_negative_int, default=None,
                    help="API port (default 8000, or a free one when 8000 is taken; 0: any free one)")
    up.add_argument("--seed", type=int, default=7, help="seed of the synthetic feed")
    up.set_defaults(handler=_up)

    replay = commands.add_parser("replay", help="rebuild state from the event log and check it")
    replay.add_argument("what", choices=("aggregates", "projections"),
                        help="aggregates: rebuild every desk from its events and compare with the recorded state; "
                             "projections: drop the read models and rebuild them through the relay and workers")
    replay.set_defaults(handler=_replay)

    add_backtest_parser(commands)

    status = commands.add_parser("status", help="health, rates, lags and restarts of a running system")
    status.set_defaults(handler=_status)

    doctor = commands.add_parser("doctor", help="check a running or stopped system's ledger; exit 1 on any violation")
    doctor.add_argument("--json", action="store_true", help="print the ledger as JSON")
    doctor.set_defaults(handler=_doctor)

    add_trading_parsers(commands)
    add_dlq_parser(commands)

    train = commands.add_parser("train", help="fit the regime specialists on the bundled bars")
    train.add_argument("--seed", type=int, default=7)
    train.set_defaults(handler=_train)

    return parser



def _train(args: argparse.Namespace, settings: Settings) -> int:
    from actors.system.training import train_specialists

    print(f"training the regime specialists on the bundled bars ({', '.join(BUNDLED_SYMBOLS)}) ...")
    started = time.perf_counter()
    version = train_specialists(ModelRegistry(settings.model_dir), seed=args.seed)
    print(f"model version {version} saved in {settings.model_dir} ({time.perf_counter() - started:.1f} s)")
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    plan = _plan(args)
    if not plan.symbols:
        raise GlassboxError("no symbols to trade: use --source bundled, --source csv PATH or --symbols N with N > 0")
    signals = StopSignals()
    signals.install()  # before start-up: a Ctrl-C while the services start must stop them too
    return Supervisor(settings, plan, out=lambda line: print(line, flush=True)).run(signals)


def _plan(args: argparse.Namespace) -> RunPlan:
    kind, *rest = args.source
    if kind not in ("all", "bundled", "synthetic", "csv", "parquet"):
        raise GlassboxError(f"unknown --source {kind!r}: choose all, bundled, synthetic, or csv PATH")
    takes_path = kind in ("csv", "parquet")
    if takes_path != bool(rest) or len(rest) > 1:
        raise GlassboxError(f"--source {kind} takes {'exactly one PATH' if takes_path else 'no PATH'}")
    user_data = read_user_data(Path(rest[0])) if rest else None
    return RunPlan(
        bundled=list(BUNDLED_SYMBOLS) if kind in ("all", "bundled") else [],
        synthetic=SyntheticFeed.symbol_names(args.symbols) if kind in ("all", "synthetic") else [],
        user_data=user_data, shards=args.shards, forensics_workers=args.forensics_workers, rate=args.rate,
        duration=args.duration,
        api_port=args.api_port, seed=args.seed,
    )


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.what == "projections":
        from actors.system.rebuild import rebuild_projections_command

        try:
            read_status(settings.home)
        except GlassboxError:
            return rebuild_projections_command(settings)  # nothing runs from this home
        raise GlassboxError("a system is running from this GLASSBOX_HOME: stop it (Ctrl-C) before rebuilding its "
                            "read models, so its live workers do not write while they are rebuilt")
    with system_redis(settings) as url:
        stores = _shard_stores(url, settings)
        failed = 0
        for store in stores:
            app = DeskApplication(env=event_store_env(url, store))
            started = time.perf_counter()

            def progress(events: int, store: str = store, started: float = started) -> None:
                rate = events / max(time.perf_counter() - started, 1e-9)
                print(f"\r{store}: {events:,} events replayed ({rate:,.0f}/s)", end="", flush=True)

            report = DeskReplay(app).verify(progress)
            app.close()
            print(f"\r{store}: {report.desks} desks rebuilt from {report.events:,} events in {report.seconds:.2f} s "
                  f"({report.events_per_s:,.0f} events/s); "
                  + ("every desk equals its recorded state" if not report.mismatches else
                     f"{len(report.mismatches)} differ:\n  " + "\n  ".join(report.mismatches)))
            failed += bool(report.mismatches)
    return 1 if failed else 0


def _shard_stores(url: str, settings: Settings) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return SystemKeys(settings.namespace).shard_stores(client)
    finally:
        client.close()


def _status(args: argparse.Namespace, settings: Settings) -> int:
    status = read_status(settings.home)
    age = time.time() - float(status["updated_at"])
    print(f"glassbox (supervisor pid {status['pid']}, updated {age:.0f} s ago)  API {status['api_url']}")
    print(f"  redis {status['redis_url']}  kafka {status['kafka_servers']}  postgresql {status['database_url']}")
    for c in status["components"]:
        print(f"  {c['name']:<22} {c['state']:<10} pid {c['pid']!s:<8} restarts {c['restarts']}")
    p = status["progress"]
    forensics = "?" if p["forensics_lag"] is None else f"{p['forensics_lag']:,}"
    print(f"  ticks {p['ticks']:,} ({p['ticks_per_s']:,.0f}/s)  decisions {p['decisions']:,}  "
          f"dead letters {p['dead_letters']}  p99 {p['latency_us_p99'] / 1e3:.2f} ms  "
          f"relay lag {p['relay_lag']:,}  forensics lag {forensics}")
    for line in status.get("stuck") or []:
        print(f"  stuck: {line}")
    control = TradingControl(str(status["redis_url"]), SystemKeys(settings.namespace))
    try:
        state = control.in_force()
    except (redis.RedisError, ValueError) as error:
        print(f"  trading: unknown ({error})")
    else:
        print(f"  trading: {describe(state) if state is not None else 'running'}")
    finally:
        control.close()
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from actors.system.doctor import run_doctor

    return run_doctor(settings, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
