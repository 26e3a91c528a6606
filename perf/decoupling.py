"""The headline: tick → decision latency with forensics on the trading path, and off it.

    python -m perf.decoupling --symbols 10 --rate 2000 --seconds 15 --json out.json

The same synthetic tick stream is decided twice in one run, by the same
actors, policy and event store:

- synchronous (the seeds' "before" design): each desk actor explains every
  decision with SHAP and writes its forensics row to PostgreSQL, committed,
  before the decision counts as taken;
- decoupled (Glassbox): the actor only decides; the relay and a forensics
  worker run beside it as their own processes and do the same SHAP and
  PostgreSQL work off the trading path.

Latency is from the tick's send stamp to its decision being committed to the
event store, as in ``perf.hotpath``.

The deployed model is small (3 × 100 trees of depth 3): explaining one
decision takes ~0.2 ms and storing it ~0.5 ms. So at low rates the
synchronous design keeps up and decoupling buys little (or costs some tail:
the off-path processes share the two cores); its value shows where the
synchronous design saturates and the decoupled one does not. Run it at
several ``--rate`` values to see both sides.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from actors.desk_actor import BatchOutcome, SymbolActor, TickBatch
from actors.runtime import HotPath, HotPathSettings
from actors.shard import Shard, ShardSettings
from actors.stats import percentiles_us
from aggregates.desk import SymbolDesk
from aggregates.policy import DecisionPolicy
from edge.feeds import SyntheticFeed
from perf.hotpath import run_hot_path
from perf.report import write_result
from perf.services import Services, running_services
from projections.forensics import DecisionToExplain, ExplainerCache, explain_batch

_EXPLAIN_LOCK = threading.Lock()  # one shared explainer cache; SHAP itself is not run concurrently


class SynchronousForensicsActor(SymbolActor):
    """A desk actor that explains and stores every decision before returning it (the slow design)."""

    def __init__(self, *args: Any, explainers: ExplainerCache, database_url: str, schema: str) -> None:
        super().__init__(*args)
        self._explainers = explainers
        self._conn = psycopg.connect(database_url, autocommit=True)
        self._insert = sql.SQL(
            "INSERT INTO {} (decision_id, decided_at, model_version, expected_value, model_output, shap_values,"
            " top_features, regime_reasoning, strategy_selection) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING"
        ).format(sql.Identifier(schema, "forensics"))

    def decide_batch(self, batch: TickBatch) -> BatchOutcome:
        outcome = super().decide_batch(batch)
        for event in outcome.events:
            if isinstance(event, SymbolDesk.DecisionTaken):
                d = DecisionToExplain(
                    event.decision_id, event.model_version, event.features, event.strategy_weights,
                    event.regime_probs, event.regime_entropy, event.specialist_margins, event.score,
                    event.probability_up, event.action, event.quantity,
                )
                with _EXPLAIN_LOCK:
                    x = explain_batch(self._explainers.get(event.model_version), [d])[0]
                self._conn.execute(self._insert, (
                    x.decision_id, event.timestamp, x.model_version, x.expected_value, x.model_output,
                    Jsonb(x.shap_values), Jsonb(x.top_features), x.regime_reasoning, x.strategy_selection,
                ))
        return outcome

    def on_stop(self) -> None:
        self._conn.close()


class SynchronousForensicsShard(Shard):
    """A shard whose actors are :class:`SynchronousForensicsActor`."""

    def __init__(self, *args: Any, explainers: ExplainerCache, database_url: str, schema: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync = dict(explainers=explainers, database_url=database_url, schema=schema)

    def _start_actor(self, symbol: str):  # noqa: ANN202 - same as the base class
        return SynchronousForensicsActor.start(
            symbol, self._app, self._policy, self._book, self.settings.actor, **self._sync
        )


def hot_path(services: Services, names: list[str], policy: DecisionPolicy, namespace: str, synchronous: bool) -> HotPath:
    hot = HotPath(HotPathSettings(services.redis_url, namespace=namespace, shard=ShardSettings()), names, policy)
    if synchronous:
        hot.shard = SynchronousForensicsShard(
            hot.client, hot.app, policy, names, hot.book, hot.keys, hot.settings.shard, hot.stats,
            explainers=ExplainerCache(services.registry), database_url=services.database_url, schema=services.schema,
        )
    return hot


def background(services: Services, store: str, prefix: str) -> list[subprocess.Popen]:
    """The relay and a forensics worker as processes: the decoupled design's off-path work."""
    env = {**os.environ, "REDIS_URL": services.redis_url, "KAFKA_BOOTSTRAP_SERVERS": services.kafka_servers,
           "DATABASE_URL": services.database_url, "GLASSBOX_HOME": str(services.home)}
    commands = [
        [sys.executable, "-m", "backbone.relay_main", "--store", store, "--topic-prefix", prefix],
        [sys.executable, "-m", "projections.worker_main", "--projection", "forensics", "--schema", services.schema,
         "--topic-prefix", prefix],
    ]
    return [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in commands]


def measure(services: Services, names: list[str], rate: float, seconds: float, synchronous: bool) -> tuple[list[float], float]:
    policy = DecisionPolicy(services.registry.load(services.registry.latest() or ""))
    namespace = f"{services.namespace}{'sync' if synchronous else 'decoupled'}:"
    hot = hot_path(services, names, policy, namespace, synchronous)
    processes = [] if synchronous else background(services, hot.settings.store_name, services.topics.prefix)
    try:
        with hot:
            time.sleep(0 if synchronous else 3.0)  # the worker joins its group
            run_hot_path(hot, rate, 2.0)  # warm-up
            latencies, achieved = run_hot_path(hot, rate, seconds)
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=30)
    return percentiles_us(latencies, (50, 99)), achieved


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.decoupling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2000.0, help="ticks/s offered in both runs")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    names = SyntheticFeed.symbol_names(args.symbols)
    with running_services() as services:
        print("synchronous forensics on the trading path ...", file=sys.stderr, flush=True)
        (s50, s99), sync_rate = measure(services, names, args.rate, args.seconds, synchronous=True)
        print("decoupled through the relay ...", file=sys.stderr, flush=True)
        (d50, d99), decoupled_rate = measure(services, names, args.rate, args.seconds, synchronous=False)
    metrics = {
        "sync_latency_us_p50": s50, "sync_latency_us_p99": s99,
        "decoupled_latency_us_p50": d50, "decoupled_latency_us_p99": d99,
        "decoupling_ratio_p99": s99 / d99, "decoupling_ratio_p50": s50 / d50,
        "sync_rate_achieved_per_s": sync_rate, "decoupled_rate_achieved_per_s": decoupled_rate,
    }
    params = {"symbols": args.symbols, "rate": args.rate, "seconds": args.seconds}
    return write_result(args.json, "decoupling", params, metrics, started_at)


if __name__ == "__main__":
    main()
