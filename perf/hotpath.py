"""Tick → decision-committed latency of the hot path, against its floor in the same run.

    python -m perf.hotpath --symbols 50 --rate 5000 --seconds 30 --json out.json

A separate producer process publishes synthetic ticks at the offered rate
(stamping each with its send time). Two consumers are measured in turn on
fresh streams of the same shape:

- the floor: the same hops with no work in between — a blocked consumer-group
  read wakes, ONE Lua append of the cycle's events (each the size of a real
  decision event), the acknowledgements sent with the next read, as the
  shard sends them;
- the hot path: the shard's actors (features, regime, specialists, risk,
  aggregate, event store) as ``glassbox up`` runs them.

``shard_cpu_us_per_tick`` is this process's CPU (every thread: actors, policy,
events, the Lua append) over the measured run, per tick it took.

Latency is measured from the send stamp to the moment the batch's append
returned. ``saturation_rate_per_s`` then steps the offered rate up until the
hot path's p99 leaves 1.5 × the floor's p99 or it falls behind.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from timeit import timeit
from typing import Callable

import numpy as np
import redis
from eventsourcing.persistence import StoredEvent

from actors.features import FeatureEngine, warm_up
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.stats import percentiles_us
from aggregates.desk import desk_id
from aggregates.registry import ModelRegistry
from edge.embedded_server import given_or_embedded
from edge.eventstore import RedisFactory
from edge.feeds import SyntheticFeed
from edge.pacing import PacedFeed
from edge.redis_server import EmbeddedRedis
from edge.tick_stream import TickKeys, TickPublisher, TickReader
from glassbox import Settings
from perf.report import write_result

SATURATION_LIMIT = 1.5


def produce(
    url: str, namespace: str, symbols: list[str], rate: float, seconds: float, seed: int,
    started: multiprocessing.synchronize.Event,
    finished: multiprocessing.synchronize.Event,
) -> None:
    """Producer process: publish synthetic ticks at ``rate`` for ``seconds``."""
    client = redis.Redis.from_url(url)
    feed = SyntheticFeed(symbols, seed=seed, start_ns=time.time_ns(),
                         tick_interval_ns=int(1e9 * len(symbols) / rate))
    paced = PacedFeed(TickPublisher(client, TickKeys(namespace), symbols), feed.ticks(10**12),
                      rate, chunk_seconds=0.001)
    started.set()
    paced.run(threading.Event(), duration=seconds)
    finished.set()


def _run_producer(
    url: str, namespace: str, symbols: list[str], rate: float, seconds: float,
    on_start: Callable[[], None] = lambda: None,
    on_finish: Callable[[], None] = lambda: None,
) -> None:
    """Run the producer process; the hooks mark its first and last tick."""
    context = multiprocessing.get_context("spawn")
    started, finished = context.Event(), context.Event()
    process = context.Process(
        target=produce, args=(url, namespace, symbols, rate, seconds, 11, started, finished)
    )
    process.start()
    started.wait()
    on_start()
    finished.wait()
    on_finish()
    process.join()


def measure_floor(url: str, symbols: list[str], rate: float, seconds: float, event_bytes: int) -> np.ndarray:
    """Latencies (ns) of XADD → XREADGROUP wake → one Lua append per symbol batch."""
    return floor_cycles(url, symbols, rate, seconds, event_bytes)[1]


def floor_cycles(url: str, symbols: list[str], rate: float, seconds: float,
                 event_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(wall-clock ns each tick's append returned, its latency ns) of the floor's load; ``perf.aof`` splits them by time."""
    namespace = f"floor-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url)
    keys = TickKeys(namespace)
    reader = TickReader(client, keys, symbols, group="floor", consumer="floor")
    reader.ensure_group()
    factory = RedisFactory({"REDIS_URL": url, "REDIS_KEY_PREFIX": f"{namespace}store"})
    recorder = factory.application_recorder()
    versions = dict.fromkeys(symbols, 0)
    state = b"x" * event_bytes
    latencies: list[int] = []
    done_at: list[int] = []
    producer = threading.Thread(target=_run_producer, args=(url, namespace, symbols, rate, seconds))
    producer.start()
    acks: dict[str, list[bytes]] = {}
    while producer.is_alive() or _lag(client, keys, symbols, "floor"):
        batches = reader.read(count=200, block_ms=50, acks=acks)
        acks = {}
        if not batches:
            continue
        events = []
        for symbol, entries in batches.items():
            for _ in entries:
                versions[symbol] += 1
                events.append(StoredEvent(desk_id(symbol), versions[symbol], "floor", state))
        recorder.insert_events(events)
        done = time.time_ns()
        for symbol, entries in batches.items():
            latencies.extend(done - int(fields[b"sent"]) for _, fields in entries)
            done_at.extend(done for _ in entries)
            acks[symbol] = [entry_id for entry_id, _ in entries]
    factory.close()
    client.close()
    return np.asarray(done_at, dtype=np.int64), np.asarray(latencies, dtype=np.int64)


def _lag(client: redis.Redis, keys: TickKeys, symbols: list[str], group: str) -> int:
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        pipe.xpending(keys.stream(symbol), group)
    return sum(int(p["pending"]) for p in pipe.execute()) + sum(
        int(g.get("lag") or 0)
        for symbol in symbols
        for g in client.xinfo_groups(keys.stream(symbol))
        if g["name"] in (group.encode(), group)
    )


def run_hot_path(hot: HotPath, rate: float, seconds: float) -> tuple[np.ndarray, float]:
    """Offer ``rate`` ticks/s for ``seconds``; latencies (ns) and the achieved rate."""
    since = hot.stats.sample_batches()
    mark: dict[str, float] = {}

    def on_start() -> None:
        mark["ticks"], mark["at"] = hot.stats.snapshot().ticks, time.perf_counter()

    def on_finish() -> None:
        mark["ticks_end"], mark["end"] = hot.stats.snapshot().ticks, time.perf_counter()

    _run_producer(hot.settings.redis_url, hot.keys.prefix, hot.symbols, rate, seconds, on_start, on_finish)
    produced_for = mark["end"] - mark["at"]
    decided_in_window = mark["ticks_end"] - mark["ticks"]
    deadline = time.monotonic() + 60
    while _lag(hot.client, hot.keys, hot.symbols, "desks") and time.monotonic() < deadline:
        time.sleep(0.05)
    hot.shard.idle(10)
    return hot.stats.latencies_ns(since=since), decided_in_window / produced_for


def mean_event_bytes(client: redis.Redis, store_name: str) -> int:
    """Average stored size of the hot path's recorded events."""
    entries = client.xrange(f"{{{store_name}}}:log", count=500)
    sizes = [len(fields[b"s"]) for _, fields in entries if b"s" in fields]
    return int(np.mean(sizes)) if sizes else 1024


def model_registry(settings: Settings) -> ModelRegistry:
    """The settings' model registry, or a fresh one trained now when it is empty (benchmarks need a model)."""
    registry = ModelRegistry(settings.model_dir)
    if registry.latest() is None:
        from actors.system.training import train_specialists

        registry = ModelRegistry(Path(tempfile.mkdtemp(prefix="glassbox-models-")))
        train_specialists(registry)
    return registry


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.hotpath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5000.0, help="offered ticks/s")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--step-seconds", type=float, default=8.0, help="length of each saturation step")
    parser.add_argument("--max-rate", type=float, default=20000.0, help="stop the saturation search here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    settings = Settings.from_env()
    symbols = SyntheticFeed.symbol_names(args.symbols)
    warm_up()
    engine = FeatureEngine()
    feature_ns = timeit(lambda: engine.update(100.0, 1.0), number=200_000) / 200_000 * 1e9

    with tempfile.TemporaryDirectory(prefix="glassbox-perf-") as tmp, \
            given_or_embedded(settings.redis_url, EmbeddedRedis(Path(tmp) / "redis")) as url:
        namespace = f"perf-{uuid.uuid4().hex[:8]}:"
        hot = HotPath.from_registry(
            HotPathSettings(url, namespace=namespace, shard=ShardSettings()), symbols, model_registry(settings)
        )
        hot.start()
        run_hot_path(hot, args.rate, 2.0)  # warm-up: compile, fill windows, connect
        ticks_before, cpu_before = hot.stats.snapshot().ticks, time.process_time()
        latencies, achieved = run_hot_path(hot, args.rate, args.seconds)
        # This process is the shard (its producer and Redis are other processes): CPU of all its threads.
        shard_cpu_us = (time.process_time() - cpu_before) * 1e6 / max(hot.stats.snapshot().ticks - ticks_before, 1)
        event_bytes = mean_event_bytes(hot.client, hot.settings.store_name)
        floor = measure_floor(url, symbols, args.rate, args.seconds, event_bytes)
        p50, p99, p999 = percentiles_us(latencies)
        f50, f99 = percentiles_us(floor, (50, 99))
        saturation = _saturation(hot, args, f99, p99, achieved)
        hot.stop()

    metrics = {
        "latency_us_p50": p50, "latency_us_p99": p99, "latency_us_p999": p999,
        "floor_latency_us_p50": f50, "floor_latency_us_p99": f99,
        "overhead_ratio_p99": p99 / f99,
        "rate_offered_per_s": args.rate, "rate_achieved_per_s": achieved,
        "saturation_rate_per_s": saturation, "feature_update_ns": feature_ns,
        "event_bytes_mean": event_bytes, "decisions": float(len(latencies)),
        "shard_cpu_us_per_tick": shard_cpu_us,
    }
    params = {"symbols": args.symbols, "rate": args.rate, "seconds": args.seconds,
              "step_seconds": args.step_seconds}
    return write_result(args.json, "hotpath", params, metrics, started_at)


def _saturation(hot: HotPath, args: argparse.Namespace, floor_p99: float, p99: float,
                achieved: float) -> float:
    """Highest offered rate whose p99 stays within 1.5 × the floor and that keeps up."""
    if not (p99 <= SATURATION_LIMIT * floor_p99 and achieved >= 0.95 * args.rate):
        best, rate = 0.0, args.rate / 2
        while rate >= 100:  # look below the offered rate
            lat, got = run_hot_path(hot, rate, args.step_seconds)
            if percentiles_us(lat, (99,))[0] <= SATURATION_LIMIT * floor_p99 and got >= 0.95 * rate:
                return rate
            rate /= 2
        return best
    best, rate = args.rate, args.rate * 1.5
    while rate <= args.max_rate:
        lat, got = run_hot_path(hot, rate, args.step_seconds)
        if not (percentiles_us(lat, (99,))[0] <= SATURATION_LIMIT * floor_p99 and got >= 0.95 * rate):
            break
        best, rate = rate, rate * 1.5
    return best


if __name__ == "__main__":
    main()
