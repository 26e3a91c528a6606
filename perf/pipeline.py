"""The whole system at a series of offered rates: CPU per decision per component, latency and forensics lag.

    python -m perf.pipeline --symbols 50 --rates 1000,2000,3000,5000,8000 --seconds 40 --json out.json

For each offered rate it runs ``glassbox up`` itself (``python -m
actors.system.cli up --source synthetic --symbols N --rate R --duration S``,
with ``--shards`` and ``--forensics-workers`` passed on): the same
supervisor, feeds, shards, relays, workers and API as a user's run, in a
home, namespace, schema and topics of its own. Its Redis, broker and
PostgreSQL are the embedded servers ``glassbox up`` starts (the same
launchers and niceness, :mod:`perf.services`) but started by the benchmark
and handed over by URL, so the rows can still be read after ``glassbox up``
drained and stopped. Synthetic ticks only: the bundled bars are a few
thousand and would run out within the window.

Over the steady window (after ``--warmup`` of the seconds; the feeds start
the clock) it reads, once a second: every process's CPU from ``/proc``
(:mod:`perf.proc_cpu`; the supervisor counts as ``feed``, since the feeds
run in it; PostgreSQL with all its backends; each component with its
children), each shard's published counters and latency, and the forensics
backlog ``glassbox up`` publishes. Figures:

- ``cpu_us_per_decision_<component>`` and ``_total``: CPU µs over the window
  divided by the decisions committed in it;
- for the relay and each worker (:data:`UNITS`), ``cpu_us_per_unit_<stage>``: its CPU
  over the window divided by the units it did in the window (events relayed, rows
  inserted), and ``done_share_<stage>``: those units over what the window's decisions
  asked of it (below 1: the stage fell behind, and its CPU per decision understates
  what a decision costs it);
- ``rate_achieved_per_s``: decisions committed per second of the window, by the shards' own
  clock (their counters are published once a second with the time they were taken);
- ``tick_latency_us_p50``/``p99`` (tick sent → committed): the median of the
  shards' per-second p50s, and the highest per-second p99 (an upper bound of
  the window's p99);
- ``forensics_lag_ms_p50``/``p99``: a forensics row's ``computed_at`` (its
  writing transaction's start, after SHAP) minus the decision's tick arrival
  in Redis (the ms of its stream id, the decision's ``correlation_id``), over
  the decisions whose tick arrived in the window, read after the drain. The
  arrival is earlier than the commit by the tick latency (above, ms), so this
  overstates decision committed → row by at most that. A decision still
  without a row counts with the lag it had reached when read (a lower bound);
- ``forensics_lag_growth_per_s``: least-squares slope of the backlog in decisions
  (decisions committed less forensics rows inserted, sampled once a second);
- a component restarted in the window is warned about: its CPU is then not counted whole.

A rate is sustained when achieved ≥ 98 % of offered, forensics lag p99 <
1 s and the backlog grows by less than 1 % of the offered rate per second.
Every figure is written once per rate (``_at_<rate>``) and once unsuffixed
for the highest sustained rate (the lowest rate run when none was).

Floors (:mod:`perf.floors`), in the same run: the bare hop at each rate;
producing, explaining and COPY once, on the last rate's records and rows.
The ratios put each stage's CPU per decision beside its floor's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg
import redis
from psycopg import sql

from actors.shard_metrics import shard_metrics_key
from actors.system.training import train_specialists
from backbone.relay import RelayPosition
from aggregates.registry import ModelRegistry
from edge.feeds import SyntheticFeed
from edge.store_layout import log_head
from edge.system_keys import SystemKeys
from glassbox import Settings
from perf.floors import Floor, copy_floor, hop_floor, produce_floor
from perf.forensics import shap_raw_rows_per_s
from perf.hotpath import mean_event_bytes
from perf.proc_cpu import ProcessTable, cpu_delta, cpu_seconds
from perf.report import write_result
from perf.services import Services, running_services
from perf.up_process import UpProcess

__all__ = ["COMPONENTS", "UNITS", "main"]

COMPONENTS = ("shard", "feed", "redis", "relay", "broker", "worker_forensics", "worker_archive",
              "worker_read_models", "postgres", "api")
"""Every ``cpu_us_per_decision_<component>``; their sum is ``cpu_us_per_decision_total``."""
UNITS = {"relay": "event relayed", "worker_forensics": "forensics row", "worker_archive": "event archived",
         "worker_read_models": "decision row"}
"""The stages whose work is counted apart from the decisions: ``cpu_us_per_unit_<stage>``, ``done_share_<stage>``."""
SUSTAINED_SHARE = 0.98
LAG_P99_LIMIT_MS = 1_000.0
GROWTH_LIMIT = 0.01
"""A backlog 'does not grow' when it gains less than this share of the offered rate per second."""


_BEGAN = time.monotonic()


def _say(line: str) -> None:
    print(f"perf.pipeline [{time.monotonic() - _BEGAN:5.0f}s]: {line}", file=sys.stderr, flush=True)


# -- one rate ----------------------------------------------------------------------------------------------


def _up_run(services: Services, args: argparse.Namespace, rate: float, models: Path, work: Path) -> UpProcess:
    """One ``glassbox up`` of this benchmark, on the services it started."""
    home = work / f"home-{rate:g}"
    shutil.copytree(models, home / "models")
    env = {**os.environ, "GLASSBOX_HOME": str(home), "REDIS_URL": services.redis_url,
           "KAFKA_BOOTSTRAP_SERVERS": services.kafka_servers, "DATABASE_URL": services.database_url,
           "GLASSBOX_NAMESPACE": services.namespace, "GLASSBOX_SCHEMA": services.schema,
           "GLASSBOX_TOPIC_PREFIX": services.topics.prefix}
    return UpProcess(["--source", "synthetic", "--symbols", str(args.symbols), "--rate", f"{rate:g}",
                      "--duration", f"{args.seconds:g}", "--shards", str(args.shards),
                      "--forensics-workers", str(args.forensics_workers), "--api-port", "0"],
                     env, work / f"up-{rate:g}.out")


def _service_roots(table: ProcessTable, exclude: set[int]) -> dict[str, list[int]]:
    """This process's children that are the services, by the program of any process in their tree."""
    roots: dict[str, list[int]] = {"redis": [], "broker": [], "postgres": []}
    for child in table.children(os.getpid()):
        if child in exclude:
            continue
        programs = {Path(table.cmdline(p).split(" ", 1)[0]).name for p in table.tree(child)}
        if any(p.startswith("redis-server") for p in programs):
            roots["redis"].append(child)
        elif any("tansu" in p for p in programs):
            roots["broker"].append(child)
        elif programs & {"postgres", "postmaster"}:
            roots["postgres"].append(child)
    missing = [name for name, pids in roots.items() if not pids]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} process of this benchmark's own: unset REDIS_URL, "
                           "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL so it starts its own and can read their CPU")
    return roots


def _component_group(name: str) -> str:
    for prefix, group in (("shard-", "shard"), ("relay-", "relay"), ("worker-forensics", "worker_forensics"),
                          ("worker-archive", "worker_archive"), ("worker-read-models", "worker_read_models"),
                          ("api", "api")):
        if name.startswith(prefix):
            return group
    raise RuntimeError(f"glassbox up runs a component {name!r} this benchmark does not know: add it to COMPONENTS")


def _cpu(table: ProcessTable, supervisor: int, components: dict[str, int], services: dict[str, list[int]]
         ) -> dict[str, float]:
    groups: dict[str, list[int]] = {name: [] for name in COMPONENTS if name != "feed"}
    for name, pid in components.items():
        groups[_component_group(name)].append(pid)
    for name, pids in services.items():
        groups[name] += pids
    # The supervisor alone: its children are the components, counted above.
    return cpu_seconds(table, groups, alone={"feed": [supervisor]})


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    t, y = np.asarray(points, dtype=np.float64).T
    return float(np.polyfit(t - t[0], y, 1)[0])


def run_rate(services: Services, args: argparse.Namespace, rate: float, models: Path, work: Path) -> dict[str, float]:
    """Run ``glassbox up`` at ``rate`` for ``args.seconds``; this rate's figures (unsuffixed)."""
    up = _up_run(services, args, rate, models, work)
    client = redis.Redis.from_url(services.redis_url)
    pg = psycopg.connect(services.database_url, autocommit=True)
    try:
        up.wait_until_running()
        started = time.time()  # the feeds started just before glassbox up said everything runs
        status = up.status()
        keys = SystemKeys(services.namespace)
        stores = [keys.shard_store(i) for i in range(args.shards)]
        window_from = started + args.seconds * args.warmup
        window_to = started + args.seconds - 1.0  # the drain begins at `seconds`
        latencies: dict[tuple[str, bytes], tuple[float, float]] = {}
        # (shard metrics' own clock, decisions) first and last seen in the window, per store: the
        # shard publishes once a second, so the benchmark's clock would be up to a second off.
        counted: dict[str, tuple[float, int]] = {}
        counted_last: dict[str, tuple[float, int]] = {}
        backlog: dict[float, tuple[float, float]] = {}
        begin: dict[str, object] = {}
        components: dict[str, int] = {}
        roots: dict[str, list[int]] = {}
        last_said = 0.0
        while True:
            now = time.time()
            status = up.status() or status
            if up.process.poll() is not None:
                raise RuntimeError(f"glassbox up exited with {up.process.returncode} during the run:\n  {up.tail()}")
            pipe = client.pipeline(transaction=False)
            for store in stores:
                pipe.hgetall(shard_metrics_key(store))
            metrics = [{k.decode(): v for k, v in m.items()} for m in pipe.execute()]
            decisions = sum(int(m.get("decisions", 0)) for m in metrics)
            events = sum(log_head(client, store) for store in stores)
            progress = status.get("progress") or {}
            if now >= window_from and status.get("components"):  # the status file is written once a second
                if not begin:
                    table = ProcessTable()
                    components = {c["name"]: int(c["pid"]) for c in status.get("components", []) if c.get("pid")}
                    roots = _service_roots(table, {up.process.pid})
                    begin = {"at": now, "decisions": decisions, "events": events,
                             "cpu": _cpu(table, up.process.pid, components, roots),
                             "done": _work_done(pg, services.schema, client, stores),
                             "restarts": sum(c["restarts"] for c in status["components"])}
                for store, m in zip(stores, metrics):
                    if "updated_at" in m:
                        latencies[(store, m["updated_at"])] = (float(m["latency_us_p50"]), float(m["latency_us_p99"]))
                        counted.setdefault(store, (float(m["updated_at"]), int(m.get("decisions", 0))))
                        counted_last[store] = (float(m["updated_at"]), int(m.get("decisions", 0)))
                explained = _forensics_rows(pg, services.schema)
                backlog[now] = (now, decisions - explained)  # decisions not explained yet
            if now - last_said >= 5.0:
                last_said = now
                phase = "steady" if begin else "warm-up"
                _say(f"rate {rate:g}: [{now - started:4.0f}s {phase}] decisions {decisions:,}  "
                     f"tick p99 {float(progress.get('latency_us_p99', 0)) / 1e3:.1f} ms  "
                     f"relay lag {progress.get('relay_lag', '?')}  forensics backlog {progress.get('forensics_lag', '?')}")
            if now >= window_to and begin:
                break
            time.sleep(max(min(1.0, window_to - time.time()), 0.0))
        end_cpu = _cpu(ProcessTable(), up.process.pid, components, roots)
        end_done = _work_done(pg, services.schema, client, stores)
        seconds = now - float(begin["at"])  # type: ignore[arg-type]
        achieved = sum((counted_last[s][1] - counted[s][1]) / (counted_last[s][0] - counted[s][0])
                       for s in counted if counted_last[s][0] > counted[s][0])
        decided = round(achieved * seconds)  # over the CPU window, at the rate the shards' own clock says
        events_in_window = events - int(begin["events"])  # type: ignore[call-overload]
        restarts = sum(c["restarts"] for c in status["components"]) - int(begin["restarts"])  # type: ignore[call-overload]
        _say(f"rate {rate:g}: window done ({decided:,} decisions in {seconds:.1f} s); glassbox up drains ...")
        code = up.wait_for_exit()
        if code not in (0, 3):
            raise RuntimeError(f"glassbox up exited with {code}:\n  {up.tail()}")
        if restarts:
            _say(f"rate {rate:g}: WARNING: {restarts} component restart(s) in the window; a restarted process's "
                 "CPU is not counted whole, so this rate's CPU figures are not trustworthy")
        if code == 3:
            _say(f"rate {rate:g}: glassbox up's drain left work unfinished (exit 3): it counts as lag below")
        if decided <= 0:
            raise RuntimeError(f"no decision was committed in the window at {rate:g} ticks/s:\n  {up.tail()}")
        spent = cpu_delta(begin["cpu"], end_cpu)  # type: ignore[arg-type]
        lag50, lag99, missing = _forensics_lag(services, window_from, window_to)
        p50s = [p50 for p50, _ in latencies.values()]
        p99s = [p99 for _, p99 in latencies.values()]
        figures = {
            "rate_offered_per_s": rate,
            "rate_achieved_per_s": achieved,
            "tick_latency_us_p50": statistics.median(p50s) if p50s else 0.0,
            "tick_latency_us_p99": max(p99s, default=0.0),
            "forensics_lag_ms_p50": lag50,
            "forensics_lag_ms_p99": lag99,
            "forensics_missing": float(missing),
            "forensics_lag_growth_per_s": _slope(list(backlog.values())),
            "decisions": float(decided),
            "events_per_decision": events_in_window / decided,
            "restarts": float(restarts),
            "drain_stuck": float(code == 3),
            **{f"cpu_us_per_decision_{name}": spent.get(name, 0.0) * 1e6 / decided for name in COMPONENTS},
        }
        figures["cpu_us_per_decision_total"] = sum(figures[f"cpu_us_per_decision_{n}"] for n in COMPONENTS)
        # A stage that falls behind does less than the window's decisions ask of it, and per decision
        # looks cheaper than it is: its CPU per unit it did, and the share of the window's work it did.
        began_done: dict[str, int] = begin["done"]  # type: ignore[assignment]
        asked = {"relay": events_in_window, "worker_forensics": decided, "worker_archive": events_in_window,
                 "worker_read_models": decided}
        for name in UNITS:
            done = end_done[name] - began_done[name]
            figures[f"cpu_us_per_unit_{name}"] = spent.get(name, 0.0) * 1e6 / done if done > 0 else 0.0
            figures[f"done_share_{name}"] = done / asked[name] if asked[name] > 0 else 0.0
        figures["cores"] = sum(spent.values()) / seconds
        figures["sustained"] = float(
            figures["rate_achieved_per_s"] >= SUSTAINED_SHARE * rate and lag99 < LAG_P99_LIMIT_MS
            and figures["forensics_lag_growth_per_s"] < GROWTH_LIMIT * rate)
        figures["event_bytes_mean"] = float(mean_event_bytes(client, stores[0]))
        return figures
    finally:
        client.close()
        pg.close()
        up.kill_if_running()


def _work_done(conn: psycopg.Connection, schema: str, client: redis.Redis, stores: list[str]) -> dict[str, int]:
    """Units of :data:`UNITS` done so far: rows each worker inserted (PostgreSQL's counters) and events relayed."""
    relayed = sum(RelayPosition(client, store, "relay").get() for store in stores)
    return {"relay": relayed, **_rows_inserted(conn, schema)}


def _forensics_rows(conn: psycopg.Connection, schema: str) -> int:
    """Forensics rows inserted so far in ``schema`` (PostgreSQL's counters: no scan of the table).

    A duplicate dropped by ON CONFLICT is not counted; the counters reach the view within
    about a second of each commit, which a slope over tens of seconds does not notice.
    """
    return _rows_inserted(conn, schema)["worker_forensics"]


def _rows_inserted(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """Rows inserted so far into each worker's tables in ``schema``, by the worker's :data:`UNITS` name."""
    rows = dict(conn.execute(
        "SELECT CASE WHEN relname LIKE 'forensics%%' THEN 'worker_forensics'"
        " WHEN relname LIKE 'event\\_archive%%' THEN 'worker_archive'"
        " WHEN relname LIKE 'decisions%%' THEN 'worker_read_models' END AS stage, coalesce(sum(n_tup_ins), 0)"
        " FROM pg_stat_user_tables WHERE schemaname = %s GROUP BY 1", (schema,)).fetchall())
    return {name: int(rows.get(name) or 0) for name in UNITS if name != "relay"}


def _forensics_lag(services: Services, window_from: float, window_to: float) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, decisions without a row) for the decisions whose tick arrived in the window."""
    schema = services.schema
    query = sql.SQL(
        "SELECT split_part(d.correlation_id, '-', 1)::bigint AS arrived_ms,"
        " extract(epoch FROM f.computed_at) * 1000 AS explained_ms"
        " FROM {} d LEFT JOIN {} f USING (decided_at, decision_id)"
        " WHERE d.correlation_id ~ '^[0-9]+-[0-9]+$'"
        " AND split_part(d.correlation_id, '-', 1)::bigint BETWEEN %s AND %s"
    ).format(sql.Identifier(schema, "decisions"), sql.Identifier(schema, "forensics"))
    with psycopg.connect(services.database_url) as conn:
        rows = conn.execute(query, (int(window_from * 1000), int(window_to * 1000))).fetchall()
    read_ms = time.time() * 1000
    if not rows:  # the read-models worker fell behind the whole window: nothing to join, lag is at least this
        _say(f"no decisions rows for the window in schema {schema} (read models behind): lag reported as a lower bound")
        return read_ms - window_to * 1000, read_ms - window_from * 1000, -1
    lags = np.asarray([(float(e) if e is not None else read_ms) - a for a, e in rows], dtype=np.float64)
    missing = sum(1 for _, e in rows if e is None)
    p50, p99 = np.percentile(lags, (50, 99))
    return float(p50), float(p99), missing


# -- floors and the whole run ------------------------------------------------------------------------------


def _group_cpu(name: str) -> Callable[[], float]:
    """CPU seconds so far of the benchmark's own ``name`` service (redis, broker, postgres)."""
    def read() -> float:
        table = ProcessTable()
        return cpu_seconds(table, {name: _service_roots(table, set())[name]})[name]
    return read


def _ratios(figures: dict[str, float], floors: dict[str, float]) -> dict[str, float]:
    """Each stage's CPU per decision beside what its tools need for the same work."""
    ratios = {}
    if figures.get("floor_hop_latency_us_p99"):
        ratios["ratio_tick_latency_p99_vs_floor"] = figures["tick_latency_us_p99"] / figures["floor_hop_latency_us_p99"]
    if figures.get("floor_hop_cpu_us_per_tick"):
        hop = sum(figures[f"cpu_us_per_decision_{n}"] for n in ("shard", "feed", "redis"))
        ratios["ratio_shard_feed_redis_cpu_vs_hop_floor"] = hop / figures["floor_hop_cpu_us_per_tick"]
    if floors.get("floor_produce_cpu_us_per_record"):
        produce = floors["floor_produce_cpu_us_per_record"] * figures["events_per_decision"]
        ratios["ratio_relay_broker_cpu_vs_produce_floor"] = (
            figures["cpu_us_per_decision_relay"] + figures["cpu_us_per_decision_broker"]) / produce
    if floors.get("floor_shap_us_per_row"):
        ratios["ratio_worker_forensics_cpu_vs_shap_floor"] = (
            figures["cpu_us_per_decision_worker_forensics"] / floors["floor_shap_us_per_row"])
    if floors.get("floor_copy_cpu_us_per_row"):
        # Rows a decision writes: its forensics row, its decisions row, one archive row per event.
        rows = 2 + figures["events_per_decision"]
        ratios["ratio_postgres_cpu_vs_copy_floor"] = (
            figures["cpu_us_per_decision_postgres"] / (floors["floor_copy_cpu_us_per_row"] * rows))
    return ratios


def _plot(path: Path, rates: list[float], per_rate: dict[float, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (lag, cpu) = plt.subplots(1, 2, figsize=(12, 4.5))
    lag.plot(rates, [per_rate[r]["forensics_lag_ms_p99"] for r in rates], "o-", label="forensics lag p99")
    lag.plot(rates, [per_rate[r]["forensics_lag_ms_p50"] for r in rates], "o--", label="forensics lag p50")
    lag.plot(rates, [per_rate[r]["tick_latency_us_p99"] / 1e3 for r in rates], "s-", label="tick→committed p99")
    lag.axhline(LAG_P99_LIMIT_MS, color="grey", linestyle=":", label="1 s")
    lag.set(xlabel="offered ticks/s", ylabel="ms", yscale="log", title="lag and latency")
    lag.legend()
    bottom = np.zeros(len(rates))
    for name in COMPONENTS:
        values = np.asarray([per_rate[r][f"cpu_us_per_decision_{name}"] for r in rates])
        cpu.bar([str(int(r)) for r in rates], values, bottom=bottom, label=name)
        bottom += values
    cpu.axhline(250, color="grey", linestyle=":", label="target 250 µs")
    cpu.set(xlabel="offered ticks/s", ylabel="CPU µs per decision", title="CPU per decision by component")
    cpu.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ticks/s like 1000,2000") from None
    if not rates or any(not r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more positive rates, like 1000,2000")
    return sorted(set(rates))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=_positive_int, default=50, help="synthetic symbols (default 50)")
    parser.add_argument("--rates", type=_rates, default=_rates("1000,2000,3000,5000,8000"),
                        help="offered ticks/s, comma-separated (default 1000,2000,3000,5000,8000)")
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds each rate runs (default 40)")
    parser.add_argument("--warmup", type=float, default=0.25, help="share of the seconds skipped (default 0.25)")
    parser.add_argument("--shards", type=_positive_int, default=1, help="glassbox up --shards (default 1)")
    parser.add_argument("--forensics-workers", type=_positive_int, default=1,
                        help="glassbox up --forensics-workers (default 1)")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="seconds of the bare hop at each rate")
    parser.add_argument("--json", type=Path, default=None, help="the result; the plot is written beside it (.png)")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < 0.9 or args.seconds * (1 - args.warmup) < 3:
        parser.error("the steady window (seconds × (1 - warmup)) must last 3 s or more, with warmup in [0, 0.9)")
    started_at = datetime.now(timezone.utc)
    settings = Settings.from_env()
    symbols = SyntheticFeed.symbol_names(args.symbols)
    per_rate: dict[float, dict[str, float]] = {}
    floors: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="glassbox-pipeline-") as tmp:
        work = Path(tmp)
        if ModelRegistry(settings.model_dir).latest() is None:
            _say("training the deployed model once for every run ...")
            settings = replace(settings, home=work / "models-home")
            train_specialists(ModelRegistry(settings.model_dir))
        for n, rate in enumerate(args.rates):
            _say(f"rate {rate:g} ticks/s ({n + 1} of {len(args.rates)}): starting services and glassbox up ...")
            with running_services(settings=settings) as services:
                figures = run_rate(services, args, rate, settings.model_dir, work)
                _say(f"rate {rate:g}: bare hop floor ({args.floor_seconds:g} s) ...")
                hop = hop_floor(services, symbols, rate, args.floor_seconds, int(figures["event_bytes_mean"]),
                                _group_cpu("redis"))
                figures |= {"floor_hop_latency_us_p50": hop.latency_us_p50, "floor_hop_latency_us_p99": hop.latency_us_p99,
                            "floor_hop_cpu_us_per_tick": hop.cpu_us}
                if n == len(args.rates) - 1:
                    floors = _floors(services)
            per_rate[rate] = figures
            _say(f"rate {rate:g}: achieved {figures['rate_achieved_per_s']:,.0f}/s, "
                 f"{figures['cpu_us_per_decision_total']:,.0f} µs CPU a decision, forensics lag p99 "
                 f"{figures['forensics_lag_ms_p99']:,.0f} ms, {'sustained' if figures['sustained'] else 'NOT sustained'}")
    for figures in per_rate.values():
        figures |= _ratios(figures, floors)
    sustained = [r for r in args.rates if per_rate[r]["sustained"]]
    chosen = max(sustained) if sustained else min(args.rates)
    metrics: dict[str, float] = {**floors, **per_rate[chosen], "sustained_decisions_per_s": max(sustained, default=0.0)}
    for rate in args.rates:
        metrics |= {f"{key}_at_{rate:g}": value for key, value in per_rate[rate].items()}
    params = {"symbols": args.symbols, "rates": args.rates, "seconds": args.seconds, "warmup": args.warmup,
              "shards": args.shards, "forensics_workers": args.forensics_workers, "floor_seconds": args.floor_seconds,
              "unsuffixed_rate": chosen}
    result = write_result(args.json, "pipeline", params, metrics, started_at)
    if args.json is not None:
        _plot(args.json.with_suffix(".png"), args.rates, per_rate)
        _say(f"wrote {args.json} and {args.json.with_suffix('.png')}")
    return result


def _floors(services: Services) -> dict[str, float]:
    """Producing, explaining and COPY once, on this run's records and rows."""
    _say("floors: aiokafka producing the relayed records ...")
    produce: Floor = produce_floor(services, services.topics.prefix, 20_000, _group_cpu("broker"))
    _say("floors: shap.TreeExplainer alone ...")
    shap_per_s = shap_raw_rows_per_s(services, 5_000)  # one core: shap's TreeExplainer is single-threaded
    _say("floors: one binary COPY of the forensics rows ...")
    copy = copy_floor(services, services.schema, _group_cpu("postgres"))
    return {
        "floor_produce_records_per_s": produce.per_s, "floor_produce_cpu_us_per_record": produce.cpu_us,
        "floor_shap_rows_per_s": shap_per_s, "floor_shap_us_per_row": 1e6 / shap_per_s,
        "floor_copy_rows_per_s": copy.per_s, "floor_copy_cpu_us_per_row": copy.cpu_us,
    }


if __name__ == "__main__":
    main()
