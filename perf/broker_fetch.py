"""What a fetch costs the embedded broker: by what the partition holds, and while it waits.

    python -m perf.broker_fetch --records 100 1000 4000 16000 --json out.json

A fresh embedded broker (``backbone.broker``, memory storage, no niceness) and
one partition. Two figures, the broker's CPU read from ``/proc``:

1. ``fetch_us_<n>_records``: CPU per fetch that finds one new record, when the
   partition holds ``n`` records (each its own batch, as a relay step writes one
   batch per partition). The consumer seeks back one record and fetches it,
   ``--fetches`` times (1 KB records). Tansu's memory storage lists the partition's stored
   batches on every such look, and it never deletes any (``DeleteRecords`` is not
   implemented: the broker's handler panics), so this grows with the run's age.
2. ``idle_cores_wait_<ms>ms``: cores the broker spends while one consumer-group
   member of an ``--idle-partitions``-partition topic, caught up, keeps a fetch
   waiting with that ``fetch_max_wait_ms`` (the broker looks again at halving
   intervals until the wait is over: ~6 looks per 50 ms).

These explain ``WorkerSettings.fetch_min_bytes`` (docs/design.md, "What this
machine allows").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from backbone.broker import BrokerSettings, EmbeddedBroker
from backbone.topics import TopicSpec, ensure_topics
from perf.proc_cpu import ProcessTable
from perf.report import write_result

__all__ = ["main"]


def _broker_cpu(pid: int) -> float:
    return ProcessTable().own_seconds(pid)


async def _fill(servers: str, topic: str, upto: int, have: int) -> int:
    """Produce single-record batches until the partition holds ``upto`` records."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=0)
    await producer.start()
    try:
        while have < upto:
            sent = []
            for _ in range(min(200, upto - have)):
                sent.append(await producer.send(topic, b"x" * 1000, partition=0))
                await asyncio.sleep(0)  # let each go out alone: one batch per record
            await asyncio.gather(*sent)
            have += len(sent)
    finally:
        await producer.stop()
    return have


async def _fetch_cost(servers: str, pid: int, topic: str, fetches: int) -> float:
    """Broker CPU µs per fetch of the partition's last record."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, fetch_min_bytes=1)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        before = _broker_cpu(pid)
        for _ in range(fetches):
            consumer.seek(tp, end - 1)
            await consumer.getmany(tp, timeout_ms=2000)
        return (_broker_cpu(pid) - before) / fetches * 1e6
    finally:
        await consumer.stop()


async def _idle_cost(servers: str, pid: int, topic: str, wait_ms: int, seconds: float) -> float:
    """Broker cores while a caught-up group member keeps a fetch waiting ``wait_ms``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=f"idle-{wait_ms}",
                                enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=wait_ms, fetch_min_bytes=1)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=3000)  # joined, positioned
        before, started = _broker_cpu(pid), time.monotonic()
        while time.monotonic() - started < seconds:
            await consumer.getmany(timeout_ms=200)
        return (_broker_cpu(pid) - before) / (time.monotonic() - started)
    finally:
        await consumer.stop()


async def _measure(servers: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    await ensure_topics(servers, [TopicSpec("fetched", 1, 1), TopicSpec("idle", args.idle_partitions, 1)])
    metrics: dict[str, float] = {}
    have = 0
    for n in sorted(args.records):
        have = await _fill(servers, "fetched", n, have)
        metrics[f"fetch_us_{n}_records"] = await _fetch_cost(servers, pid, "fetched", args.fetches)
    for wait_ms in args.waits_ms:
        metrics[f"idle_cores_wait_{wait_ms}ms"] = await _idle_cost(servers, pid, "idle", wait_ms, args.idle_seconds)
    return metrics


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.broker_fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[100, 1000, 4000, 16000],
                        help="partition sizes (records, one batch each) at which a fetch is measured")
    parser.add_argument("--fetches", type=int, default=300, help="fetches measured at each size")
    parser.add_argument("--waits-ms", type=int, nargs="+", default=[50, 500], help="fetch_max_wait_ms values, idle")
    parser.add_argument("--idle-partitions", type=int, default=8)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="glassbox-broker-fetch-") as tmp:
        with EmbeddedBroker(Path(tmp), BrokerSettings()) as broker:
            metrics = asyncio.run(_measure(broker.bootstrap_servers, broker.pid, args))
    params = {"records": args.records, "fetches": args.fetches, "waits_ms": args.waits_ms,
              "idle_partitions": args.idle_partitions, "idle_seconds": args.idle_seconds}
    return write_result(args.json, "broker_fetch", params, metrics, started_at)


if __name__ == "__main__":
    main()
