"""What an AOF costs: its rewrite, felt by the hot path, and its replay when Redis restarts.

    python -m perf.aof --sizes-mb 64 256 1024 --rate 5000 --json out.json

For each size a fresh embedded Redis (automatic rewrites off) is filled with
what the hot path writes — tick XADDs through the ``TickPublisher`` and
decision-sized events (about as compressible as JSON) through the event
store's Lua append — until its AOF
holds that many MB. Then:

1. it is restarted and the replay of the never-rewritten AOF is timed
   (``load_s_raw``: the case of issue 12, a Redis that died and restarts);
2. the floor's steady load of ``perf.hotpath`` (XADD → blocked XREADGROUP →
   one Lua append per batch, at ``--rate`` ticks/s) runs while
   ``--rewrites`` BGREWRITEAOFs are started in it, a few seconds apart: tick
   latencies and the Redis process's CPU are split into "during a rewrite"
   and "outside" (pooled over the rewrites), and the forked child's CPU is
   read from the parent's reaped-children time;
3. it is restarted again and the replay of the rewritten AOF (an RDB
   preamble plus what the steady load wrote after) is timed
   (``load_s_rewritten``, ``load_s_per_gb_rewritten``).

The Redis settings chosen from these figures are justified in
``edge.redis_server.RedisServerSettings``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import redis
from eventsourcing.persistence import StoredEvent

from actors.stats import percentiles_us
from aggregates.desk import desk_id
from edge.eventstore import RedisFactory
from edge.feeds import SyntheticFeed
from edge.redis_server import EmbeddedRedis, RedisServerSettings, aof_bytes
from edge.tick_stream import TickKeys, TickPublisher
from perf.hotpath import floor_cycles
from perf.report import write_result

_MB = 1024 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")
LEAD_S = 4.0
"""Seconds of steady load before each rewrite starts (and at least as many after the last ends)."""
WARM_UP_S = 2.0
"""Seconds of flowing load left out of every figure: the consumer's first reads (connections, caches) are slow."""


def fill(url: str, target_bytes: int, data_dir: Path, event_bytes: int, symbols: list[str]) -> float:
    """Write ticks and events until the AOF in ``data_dir`` holds ``target_bytes``; seconds it took."""
    started = time.perf_counter()
    client = redis.Redis.from_url(url)
    publisher = TickPublisher(client, TickKeys("fill:"), symbols)
    factory = RedisFactory({"REDIS_URL": url, "REDIS_KEY_PREFIX": "fill:store"})
    recorder = factory.application_recorder()
    feed = SyntheticFeed(symbols, seed=3)
    versions = dict.fromkeys(symbols, 0)
    rounds = 0
    while aof_bytes(data_dir) < target_bytes:
        for _ in range(20):
            ticks = feed.next_round()
            publisher.publish(ticks, stamp=True)
            events = []
            for tick in ticks:
                versions[tick.symbol] += 1
                events.append(StoredEvent(desk_id(tick.symbol), versions[tick.symbol], "fill", _state(event_bytes)))
            recorder.insert_events(events)
            rounds += 1
    factory.close()
    client.close()
    return time.perf_counter() - started


def _state(size: int) -> bytes:
    """An event body as compressible as a JSON decision (about 2x): half random hex, half repeated text.

    Bodies all alike would compress away in the RDB a rewrite writes, and make it look cheap.
    """
    random_part = os.urandom(size // 4).hex().encode()
    return random_part + b'{"field": 0.0}' * ((size - len(random_part)) // 14 + 1)


def timed_restart(server: EmbeddedRedis) -> float:
    """Seconds from spawning Redis again on its data until it answers PING (the AOF replayed)."""
    server.stop()
    started = time.perf_counter()
    server.restart()
    return time.perf_counter() - started


def _cpu_s(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its reaped children's) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / _TICKS
    children = (int(fields[13]) + int(fields[14])) / _TICKS
    return own, children


def rewrite_under_load(server: EmbeddedRedis, symbols: list[str], rate: float, event_bytes: int,
                       size_mb: float, rewrites: int) -> dict[str, float]:
    """Run the floor's load with ``rewrites`` BGREWRITEAOFs in it; latencies and CPU during vs outside them."""
    expected = max(2.0, size_mb / 20)  # a rewrite at 20 MB/s, a busy machine's pace
    seconds = WARM_UP_S + rewrites * (LEAD_S + expected) + LEAD_S
    result: dict[str, np.ndarray] = {}
    load = threading.Thread(target=lambda: result.update(
        zip(("done", "latency"), floor_cycles(server.url, symbols, rate, seconds, event_bytes), strict=True)))
    client = redis.Redis.from_url(server.url)
    before = aof_bytes(server.data_dir)
    load.start()
    while aof_bytes(server.data_dir) < before + _MB and load.is_alive():
        time.sleep(0.05)  # the producer process starts slowly (it imports numba): wait until ticks flow
    time.sleep(WARM_UP_S)
    first_cpu, first_wall, first_ns = _cpu_s(server.pid), time.perf_counter(), time.time_ns()
    first_bytes = aof_bytes(server.data_dir)
    windows: list[tuple[int, int]] = []
    during_cpu = during_wall = 0.0
    outlasted = False
    growth = 0.0
    for _ in range(rewrites):
        time.sleep(LEAD_S)
        cpu_b, wall_b, start_ns = _cpu_s(server.pid), time.perf_counter(), time.time_ns()
        if not windows:  # no rewrite yet: what the steady load adds to the log
            growth = (aof_bytes(server.data_dir) - first_bytes) / _MB / (wall_b - first_wall)
        client.bgrewriteaof()
        while True:
            info = client.info("persistence")
            if not int(info["aof_rewrite_in_progress"]) and not int(info["aof_rewrite_scheduled"]):
                break
            time.sleep(0.05)
        cpu_c, wall_c, end_ns = _cpu_s(server.pid), time.perf_counter(), time.time_ns()
        outlasted = outlasted or not load.is_alive()  # then "during" misses the rewrite's end
        windows.append((start_ns, end_ns))
        during_cpu, during_wall = during_cpu + cpu_c[0] - cpu_b[0], during_wall + wall_c - wall_b
    load.join()
    last_cpu, last_wall = _cpu_s(server.pid), time.perf_counter()
    client.close()
    done, latency = result["done"], result["latency"]
    in_rewrite = np.zeros(len(done), dtype=bool)
    near_rewrite = np.zeros(len(done), dtype=bool)
    for start_ns, end_ns in windows:
        in_rewrite |= (done >= start_ns) & (done <= end_ns)
        near_rewrite |= (done >= start_ns) & (done <= end_ns + 500_000_000)  # the queue it left drains
    during, outside = latency[in_rewrite], latency[~near_rewrite & (done >= first_ns)]
    o50, o99 = percentiles_us(outside, (50, 99))
    d50, d99 = percentiles_us(during, (50, 99)) if len(during) else (float("nan"), float("nan"))
    total_cpu, total_wall = last_cpu[0] - first_cpu[0], last_wall - first_wall
    return {
        "aof_growth_mb_per_s": growth,
        "rewrite_s": sum(end - start for start, end in windows) / 1e9 / rewrites,
        "rewrite_outlasted_load": float(outlasted),
        "latency_us_p50_outside": o50, "latency_us_p99_outside": o99,
        "latency_us_p50_during": d50, "latency_us_p99_during": d99,
        "p99_ratio_during_outside": d99 / o99,
        "ticks_during": float(len(during)), "ticks_outside": float(len(outside)),
        "redis_cpu_pct_outside": 100 * (total_cpu - during_cpu) / (total_wall - during_wall),
        "redis_cpu_pct_during": 100 * during_cpu / during_wall,
        "rewrite_child_cpu_s": (last_cpu[1] - first_cpu[1]) / rewrites,
    }


def measure_size(size_mb: int, rate: float, event_bytes: int, symbols: list[str], rewrites: int) -> dict[str, float]:
    """Fill a fresh Redis to ``size_mb`` of AOF, then time its replay, a rewrite under load, and the replay after."""
    work = Path(tempfile.mkdtemp(prefix="glassbox-perf-aof-"))
    # Automatic rewrites off: this benchmark starts the one it measures. A generous
    # start-up timeout: the replay is what is measured here, not waited out.
    settings = RedisServerSettings(aof_rewrite_percentage=0, startup_timeout=600.0)
    server = EmbeddedRedis(work / "redis", settings)
    try:
        server.start()
        fill_s = fill(server.url, size_mb * _MB, server.data_dir, event_bytes, symbols)
        raw_bytes = aof_bytes(server.data_dir)
        with redis.Redis.from_url(server.url) as client:
            used_memory = int(client.info("memory")["used_memory"])
        load_raw = timed_restart(server)
        rewrite = rewrite_under_load(server, symbols, rate, event_bytes, size_mb, rewrites)
        rewritten_bytes = aof_bytes(server.data_dir)
        load_rewritten = timed_restart(server)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "aof_mb_raw": raw_bytes / _MB, "used_memory_mb": used_memory / _MB, "fill_s": fill_s,
        "load_s_raw": load_raw, "load_s_per_gb_raw": load_raw / (raw_bytes / 1024**3),
        "aof_mb_rewritten": rewritten_bytes / _MB, "load_s_rewritten": load_rewritten,
        "load_s_per_gb_rewritten": load_rewritten / (rewritten_bytes / 1024**3),
        **rewrite,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.aof", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[64, 256, 1024], help="AOF sizes to measure")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered ticks/s of the steady load (glassbox up's)")
    parser.add_argument("--rewrites", type=int, default=3, help="rewrites per size, their samples pooled")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--event-bytes", type=int, default=1024, help="size of each appended event's state")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    symbols = SyntheticFeed.symbol_names(args.symbols)
    metrics: dict[str, float] = {"load_average_1m_start": os.getloadavg()[0]}  # others' work on the machine
    for size in args.sizes_mb:
        for name, value in measure_size(size, args.rate, args.event_bytes, symbols, args.rewrites).items():
            metrics[f"{name}_{size}mb"] = value
    largest = max(args.sizes_mb)
    metrics["load_s_per_gb_raw"] = metrics[f"load_s_per_gb_raw_{largest}mb"]
    metrics["load_s_per_gb_rewritten"] = metrics[f"load_s_per_gb_rewritten_{largest}mb"]
    metrics["load_average_1m_end"] = os.getloadavg()[0]
    params = {"sizes_mb": args.sizes_mb, "rate": args.rate, "rewrites": args.rewrites, "symbols": args.symbols,
              "event_bytes": args.event_bytes}
    return write_result(args.json, "aof", params, metrics, started_at)


if __name__ == "__main__":
    main()
