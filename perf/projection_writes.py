"""CPU per decision of the archive and read-models workers, and of PostgreSQL writing their rows.

    python -m perf.projection_writes --symbols 50 --ticks 400 --max-records 2000 --json out.json

Fills an event store with decisions (the real hot path on synthetic ticks), relays it to the
broker, then drains it with one in-process worker per projection (archive, then read-models),
each into a schema of its own. For each it reads, over the drain only:

- ``worker_cpu_us_per_decision_<group>``: this process's CPU (``time.process_time``), which
  between batches does nothing but the worker's steps;
- ``postgres_cpu_us_per_decision_<group>``: the CPU of every process of the PostgreSQL server
  (backends, WAL writer, checkpointer ...) from ``/proc``, when the server runs on this machine;
- ``rows_per_s_<group>``: events (archive) or decisions (read-models) written per second.

``--max-records`` is the worker's batch bound: the default is the worker's; a small one (50)
is what a live system at ~1,000 ticks/s fetches per batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from backbone.broker import run_coroutine
from perf.forensics import relay_all
from perf.report import write_result
from perf.services import Services, fill_store, running_services
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection, DecisionsProjection
from projections.worker import Projection, ProjectionWorker, WorkerSettings

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # exited
    return (int(fields[11]) + int(fields[12])) / _TICK


def _server_processes(database_url: str) -> list[int]:
    """The PostgreSQL server's processes (the postmaster's children and itself), [] if not local."""
    with psycopg.connect(database_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        status = Path(f"/proc/{backend}/status").read_text()
    except OSError:
        return []
    postmaster = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{postmaster}\n" in text:
                children.append(int(entry.name))
    return [postmaster, *children]


def _server_cpu(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def drain(services: Services, projection: Projection, schema: str, max_records: int) -> tuple[float, float, float]:
    """(wall s, worker CPU s, PostgreSQL CPU s) for one worker from its first batch until caught up."""
    worker = ProjectionWorker(projection, services.kafka_servers, services.database_url, schema,
                              services.topics, WorkerSettings(max_records=max_records))

    async def drive() -> tuple[float, float, float]:
        await worker.start()
        try:
            while not await worker.step():
                pass  # the group join; measuring starts after the first batch
            pids = _server_processes(services.database_url)  # after connecting: the worker's backend is one
            wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu(pids)
            idle = 0
            while idle < 3:  # caught up three times in a row: the broker's end offsets can lag a little
                if await worker.step():
                    idle = 0
                elif await worker.caught_up():
                    idle += 1
            return time.perf_counter() - wall, time.process_time() - cpu, _server_cpu(pids) - server
        finally:
            await worker.stop()

    return run_coroutine(drive())


def _count(services: Services, schema: str, table: str) -> int:
    with psycopg.connect(services.database_url) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.projection_writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=400, help="ticks per symbol in the preloaded store")
    parser.add_argument("--max-records", type=int, default=WorkerSettings().max_records)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    metrics: dict[str, float] = {}
    with running_services() as services:
        print("filling the event store ...", file=sys.stderr, flush=True)
        store, events = fill_store(services, args.symbols, args.ticks)
        decisions = args.symbols * args.ticks
        print(f"relaying {events:,} events ...", file=sys.stderr, flush=True)
        relay_all(services, store)
        for projection, table in ((ArchiveProjection(), "event_archive"), (DecisionsProjection(), "decisions")):
            group = projection.group.replace("-", "_")
            schema = f"{services.schema}_{group}"
            apply_migrations(services.database_url, schema)
            print(f"{projection.group} worker ...", file=sys.stderr, flush=True)
            wall, cpu, server = drain(services, projection, schema, args.max_records)
            written = _count(services, schema, table)
            expected = events if table == "event_archive" else decisions
            if written != expected:
                raise RuntimeError(f"{projection.group}: {written} rows in {table}, expected {expected}")
            metrics[f"worker_cpu_us_per_decision_{group}"] = cpu / decisions * 1e6
            metrics[f"postgres_cpu_us_per_decision_{group}"] = server / decisions * 1e6
            metrics[f"rows_per_s_{group}"] = written / wall
    metrics.update(events=float(events), decisions=float(decisions))
    params = {"symbols": args.symbols, "ticks": args.ticks, "max_records": args.max_records}
    return write_result(args.json, "projection_writes", params, metrics, started_at)


if __name__ == "__main__":
    main()
