"""How fast the event log rebuilds state, beside the floor of just reading it, in one run.

    python -m perf.replay --symbols 50 --ticks 2000 --json out.json

1. Fills an event store with decisions (the real hot path on synthetic ticks).
2. ``read_floor_events_per_s``: the log read page by page and each state
   parsed with orjson, nothing else: what any rebuild must pay.
3. ``rebuild_events_per_s`` (target ≥ 100,000): every desk rebuilt from the
   whole log by ``glassbox replay aggregates``'s code (the application's
   mapper and the aggregates' own ``mutate``), snapshots ignored.
4. ``verify_events_per_s``: the same plus comparing every desk with its
   recorded state (snapshot + later events), as the command does.
5. ``projections_rebuild_events_per_s``: ``glassbox replay projections``'s
   code (re-publish through a relay, the read-model and forensics workers,
   checksums), run twice: the first builds the tables, the second rebuilds
   them and must match (``projections_identical`` 1). Bound by SHAP: every
   decision is explained again (``--skip-projections`` leaves it out).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from actors.application import DeskApplication, event_store_env
from actors.replay import PAGE, DeskReplay
from edge.gc_settling import settle_garbage_collector
from perf.report import write_result
from perf.services import fill_store, running_services
from actors.system.rebuild import rebuild_read_models


def read_floor(app: DeskApplication) -> tuple[float, int]:
    """Seconds to read and parse the whole log, and the events read."""
    recorder = app.recorder
    started, after, events = time.perf_counter(), 0, 0
    while entries := recorder.read_log_entries(after, PAGE, block_ms=None):  # type: ignore[attr-defined]
        for entry in entries:
            orjson.loads(entry.state)
        events += len(entries)
        after = entries[-1].position
    return time.perf_counter() - started, events


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=2_000, help="ticks per symbol in the store")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--skip-projections", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    with running_services() as services:
        print("filling the event store ...", file=sys.stderr, flush=True)
        store, _ = fill_store(services, args.symbols, args.ticks)
        app = DeskApplication(env=event_store_env(services.redis_url, store))
        settle_garbage_collector()  # as the replay command's process does after start-up
        replay = DeskReplay(app)
        floor_s = rebuild_s = verify_s = float("inf")
        for _ in range(args.repeat):
            seconds, events = read_floor(app)
            floor_s = min(floor_s, seconds)
            began = time.perf_counter()
            _, rebuilt_events = replay.rebuild()
            rebuild_s = min(rebuild_s, time.perf_counter() - began)
            report = replay.verify()
            verify_s = min(verify_s, report.seconds)
            if report.mismatches:
                raise SystemExit(f"replay found differences: {report.mismatches[:5]}")
        app.close()
        projections: dict[str, float] = {}
        if not args.skip_projections:
            print("rebuilding the read models (twice) ...", file=sys.stderr, flush=True)
            rebuild = [rebuild_read_models(services.redis_url, services.kafka_servers, services.database_url,
                                           services.schema, [store], services.registry, services.topics)
                       for _ in range(2)]
            projections = {"projections_rebuild_events_per_s": rebuild[1].events_per_s,
                           "projections_identical": float(rebuild[1].identical)}
    assert rebuilt_events == events
    metrics = {
        "rebuild_events_per_s": events / rebuild_s,
        "verify_events_per_s": events / verify_s,
        "read_floor_events_per_s": events / floor_s,
        "rebuild_vs_floor_ratio": floor_s / rebuild_s,
        "events": float(events),
        "desks": float(report.desks),
        **projections,
    }
    params = {"symbols": args.symbols, "ticks": args.ticks, "repeat": args.repeat}
    return write_result(args.json, "replay", params, metrics, started_at)


if __name__ == "__main__":
    main()
