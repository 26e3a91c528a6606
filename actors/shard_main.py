"""A shard as a process: ``python -m actors.shard_main --symbols A,B --name shard-0``.

What ``glassbox up`` starts per shard, beside ``backbone.relay_main`` and
``projections.worker_main``. It attaches to an existing Redis (``REDIS_URL``),
loads the newest model of the registry under ``GLASSBOX_HOME``, starts one
actor per symbol, publishes its metrics once a second and decides until
SIGTERM or SIGINT; a SIGKILL loses nothing either (a tick is acknowledged
only after its decision is durable).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import redis

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings, redis_lost
from actors.shard_metrics import ShardMetricsPublisher
from aggregates.policy import Sizing
from aggregates.alerts import AlertRules
from aggregates.registry import ModelRegistry
from aggregates.risk import RiskLimits
from edge.logs import configure_logging
from edge.ticks import TickBounds
from glassbox import GlassboxError, Settings, SettingsError

__all__ = ["main", "run_shard"]

log = logging.getLogger("glassbox")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one shard process; its exit code (0 after a clean stop, 2 on a usage error or a failure, 3 when Redis is lost)."""
    parser = argparse.ArgumentParser(prog="python -m actors.shard_main", description=__doc__)
    parser.add_argument("--symbols", required=True, type=_symbols, help="comma-separated symbols")
    parser.add_argument("--namespace", default="", help="key prefix of streams and event store")
    parser.add_argument("--name", default="shard-0", help="shard name (consumer and store name)")
    parser.add_argument("--book-share", type=_share, default=1.0,
                        help="this shard's symbols over the whole book's (its share of the leverage budget)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written once the shard is deciding (for a supervisor)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(args.name, settings.log_level)
        run_shard(settings, args.symbols, args.namespace, args.name, args.ready_file, args.book_share)
    except GlassboxError as error:
        print(f"shard: {error}", file=sys.stderr)
        return 2
    except redis.RedisError as error:  # Redis went away: nothing to decide on; the supervisor waits for it
        print(f"shard: lost Redis ({error}); exiting: the supervisor starts the shard again once Redis answers, "
              "and it redoes its unacknowledged ticks", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


def run_shard(settings: Settings, symbols: list[str], namespace: str, name: str, ready_file: Path | None,
              book_share: float = 1.0) -> None:
    """Decide ``symbols`` until SIGTERM or SIGINT.

    Raises:
        SettingsError: ``REDIS_URL`` is not set.
        GlassboxError: the shard stopped deciding (its cause in the message), or no model is trained.
    """
    if settings.redis_url is None:
        raise SettingsError("a shard needs REDIS_URL: it serves existing tick streams")
    actor = ActorSettings(bounds=TickBounds.from_settings(settings), limits=RiskLimits.from_settings(settings),
                          alerts=AlertRules.from_settings(settings))
    hot_settings = HotPathSettings(settings.redis_url, namespace=namespace, book_share=book_share,
                                   shard=ShardSettings(name=name, actor=actor))
    hot = HotPath.from_registry(hot_settings, symbols, ModelRegistry(settings.model_dir),
                               sizing=Sizing(min_trade_fraction=settings.min_trade_fraction))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    hot.start()
    metrics = ShardMetricsPublisher(hot.client, hot_settings.store_name, hot.stats, len(symbols), hot.book,
                                    actor.limits)
    metrics.publish()
    if ready_file is not None:
        ready_file.write_text(f"{os.getpid()}\n")
    log.info("shard %s serving %d symbols", name, len(symbols), extra={"symbols": symbols})
    try:
        while not stop.wait(1.0):
            failure = hot.shard.failure
            if failure is not None:
                if redis_lost(failure):  # a refusal the shard waits out itself; it stops only on a lost connection
                    raise redis.ConnectionError(str(failure)) from failure
                raise GlassboxError(f"shard {name} stopped deciding: {failure!r}")
            metrics.publish()
    finally:
        hot.stop()
        metrics.publish()


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = float("nan")
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"a share of the book is in (0, 1], not {text!r}")
    return share


def _symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("give at least one symbol")
    return symbols


if __name__ == "__main__":
    sys.exit(main())
