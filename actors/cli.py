"""The ``glassbox`` command: ``up``, ``train``, ``shard``.

This is the edge where settings are parsed (environment + options) and
embedded services are started; everything below receives them as arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.shard_metrics import ShardMetricsPublisher
from actors.stats import percentiles_us
from aggregates.registry import ModelRegistry
from edge.feeds import BUNDLED_SYMBOLS, SyntheticFeed, bundled_ticks
from edge.pacing import PacedFeed
from edge.redis_server import redis_url_or_embedded
from edge.tick_stream import TickPublisher
from glassbox import GlassboxError, Settings, redact_url

__all__ = ["main"]

log = logging.getLogger("glassbox")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``glassbox`` command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except GlassboxError as error:
        print(f"glassbox: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassbox", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the hot path on bundled and synthetic ticks")
    up.add_argument("--symbols", type=_non_negative_int, default=20,
                    help="synthetic symbols besides the bundled real ones (default 20)")
    up.add_argument("--rate", type=_positive_float, default=1000.0,
                    help="ticks per second offered, all sources together (default 1000)")
    up.add_argument("--duration", type=_positive_float, default=None,
                    help="seconds to run (default: until Ctrl-C)")
    up.add_argument("--source", choices=("all", "bundled", "synthetic"), default="all")
    up.add_argument("--seed", type=int, default=7, help="seed of the synthetic feed")
    up.set_defaults(handler=_up)

    train = commands.add_parser("train", help="fit the regime specialists on the bundled bars")
    train.add_argument("--seed", type=int, default=7)
    train.set_defaults(handler=_train)

    shard = commands.add_parser("shard", help="run one shard's actors on existing tick streams")
    shard.add_argument("--symbols", required=True, type=_symbols, help="comma-separated symbols")
    shard.add_argument("--namespace", default="", help="key prefix of streams and event store")
    shard.add_argument("--name", default="shard-0", help="shard name (consumer and store name)")
    shard.add_argument("--ready-file", type=Path, default=None,
                       help="written once the shard is deciding (for a supervisor)")
    shard.set_defaults(handler=_shard)
    return parser


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("give at least one symbol")
    return symbols


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from actors.training import train_specialists

    print(f"training the regime specialists on the bundled bars ({', '.join(BUNDLED_SYMBOLS)}) ...")
    started = time.perf_counter()
    version = train_specialists(ModelRegistry(settings.model_dir), seed=args.seed)
    print(f"model version {version} saved in {settings.model_dir} ({time.perf_counter() - started:.1f} s)")
    return 0


def _ensure_model(settings: Settings) -> ModelRegistry:
    registry = ModelRegistry(settings.model_dir)
    if registry.latest() is None:
        _train(argparse.Namespace(seed=7), settings)
    return registry


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[str]:
    with redis_url_or_embedded(settings.redis_url, settings.redis_dir) as url:
        where = "given by REDIS_URL" if settings.redis_url else f"embedded, data in {settings.redis_dir}"
        print(f"redis: {redact_url(url)} ({where})")
        yield url


def _up(args: argparse.Namespace, settings: Settings) -> int:
    registry = _ensure_model(settings)
    bundled = list(BUNDLED_SYMBOLS) if args.source in ("all", "bundled") else []
    synthetic = SyntheticFeed.symbol_names(args.symbols) if args.source in ("all", "synthetic") else []
    symbols = bundled + synthetic
    if not symbols:
        raise GlassboxError("no symbols to trade: use --source bundled or --symbols N with N > 0")
    with _redis(settings) as url:
        hot = HotPath.from_registry(HotPathSettings(url), symbols, registry)
        print(f"model {hot.policy.model_version}; {len(symbols)} symbols "
              f"({len(bundled)} bundled, {len(synthetic)} synthetic), one actor each")
        hot.start()
        stop = threading.Event()
        feeds = _start_feeds(hot, bundled, synthetic, args, stop)
        _install_stop_handlers(stop)
        try:
            _report_progress(hot, stop, args.duration)
        finally:
            stop.set()
            for thread in feeds:
                thread.join()
            hot.stop()
        _print_summary(hot)
    return 0


def _start_feeds(
    hot: HotPath, bundled: list[str], synthetic: list[str], args: argparse.Namespace,
    stop: threading.Event,
) -> list[threading.Thread]:
    publisher = TickPublisher(hot.client, hot.keys, hot.symbols)
    share = args.rate / (bool(bundled) + bool(synthetic))
    feeds: list[PacedFeed] = []
    if bundled:
        offset_key = f"{hot.keys.prefix}feed:bundled:offset"
        feeds.append(PacedFeed(publisher, bundled_ticks(bundled), share, hot.client, offset_key))
    if synthetic:
        interval = int(1e9 * len(synthetic) / share)
        feed = SyntheticFeed(synthetic, seed=args.seed, start_ns=time.time_ns(), tick_interval_ns=interval)
        feeds.append(PacedFeed(publisher, feed.ticks(sys.maxsize), share))
    threads = [threading.Thread(target=f.run, args=(stop,), daemon=True) for f in feeds]
    for thread in threads:
        thread.start()
    return threads


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        print(f"\n{signal.Signals(signum).name}: draining and stopping ...")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _report_progress(hot: HotPath, stop: threading.Event, duration: float | None) -> None:
    started = time.perf_counter()
    last_ticks, last_batch = 0, 0
    while not stop.wait(1.0):
        elapsed = time.perf_counter() - started
        snap = hot.stats.snapshot()
        recent = hot.stats.latencies_ns(since=last_batch)
        last_batch = hot.stats.sample_batches()
        p50, p99 = percentiles_us(recent, (50, 99))
        print(
            f"[{elapsed:5.0f}s] ticks {snap.ticks:,} ({snap.ticks - last_ticks:,}/s)  "
            f"decisions {snap.decisions:,}  events {snap.events:,}  dead letters {snap.dead_letters}  "
            f"| tick→committed p50 {p50 / 1e3:.2f} ms p99 {p99 / 1e3:.2f} ms",
            flush=True,
        )
        last_ticks = snap.ticks
        if hot.shard.failure is not None:
            raise GlassboxError(f"the shard stopped deciding: {hot.shard.failure!r} (see the log above)")
        if duration is not None and elapsed >= duration:
            return


def _print_summary(hot: HotPath) -> None:
    snap = hot.stats.snapshot()
    p50, p99, p999 = percentiles_us(hot.stats.latencies_ns())
    print(
        f"stopped: "
        f"{snap.ticks:,} ticks, {snap.decisions:,} decisions, {snap.events:,} events committed, "
        f"{snap.dead_letters} dead letters, {snap.duplicates_skipped} redelivered ticks skipped\n"
        f"tick→committed latency: p50 {p50:.0f} µs, p99 {p99:.0f} µs, p99.9 {p999:.0f} µs"
    )
    print(f"event store: Redis stream {{{hot.settings.store_name}}}:log; "
          f"tick streams {hot.keys.stream('<SYMBOL>')}")


def _shard(args: argparse.Namespace, settings: Settings) -> int:
    if settings.redis_url is None:
        raise GlassboxError("glassbox shard needs REDIS_URL: it serves existing tick streams")
    registry = ModelRegistry(settings.model_dir)
    hot_settings = HotPathSettings(
        settings.redis_url, namespace=args.namespace, shard=ShardSettings(name=args.name)
    )
    hot = HotPath.from_registry(hot_settings, args.symbols, registry)
    stop = threading.Event()
    _install_stop_handlers(stop)
    hot.start()
    metrics = ShardMetricsPublisher(hot.client, hot_settings.store_name, hot.stats, len(args.symbols))
    metrics.publish()
    if args.ready_file is not None:
        args.ready_file.write_text(f"{os.getpid()}\n")
    print(f"shard {args.name} serving {len(args.symbols)} symbols", flush=True)
    try:
        while not stop.wait(1.0):
            if hot.shard.failure is not None:
                raise GlassboxError(f"shard {args.name} stopped deciding: {hot.shard.failure!r}")
            metrics.publish()
    finally:
        hot.stop()
        metrics.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
