"""A broker outage while ticks flow: trading goes on, the circuit opens and closes, nothing is lost."""

from __future__ import annotations

import os
import signal
import threading
import time

from backbone.broker import EmbeddedBroker, run_coroutine
from backbone.circuit import BreakerSettings, CircuitState
from backbone.relay import Relay, RelaySettings
from edge.feeds import SyntheticFeed
from edge.tick_stream import TickPublisher
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.migrate import apply_migrations
from projections.worker import ProjectionWorker, WorkerSettings
from tests.actors.hot_path_support import make_hot_path
from tests.backbone.relay_support import feature_names
from tests.projections.test_workers import count

SYMBOLS = ["AAA", "BBB", "CCC"]


def in_thread(coroutine_factory) -> tuple[threading.Thread, list]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_coroutine(coroutine_factory())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def test_broker_paused_while_ticks_flow(redis_url, namespace, policy, model_registry, database_url, schema, pg_dir, topic_settings):
    apply_migrations(database_url, schema)
    done = threading.Event()
    with EmbeddedBroker(pg_dir / "broker") as broker:
        hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
        relay = Relay(redis_url, hot.settings.store_name, broker.bootstrap_servers, topic_settings, feature_names,
                      RelaySettings(batch_size=200, request_timeout_ms=1_000,
                                    breaker=BreakerSettings(failure_threshold=2, reset_timeout=1.0)))
        worker = ProjectionWorker(ForensicsProjection(ExplainerCache(model_registry)), broker.bootstrap_servers,
                                  database_url, schema, topic_settings, WorkerSettings(poll_timeout_ms=100))

        async def relay_loop() -> None:
            try:
                while not done.is_set():
                    await relay.step()
            finally:
                await relay.close()

        async def worker_loop() -> None:
            await worker.start()
            try:
                while not done.is_set():
                    await worker.step()
            finally:
                await worker.stop()

        ticks = list(SyntheticFeed(SYMBOLS, seed=17).ticks(400))
        with hot:
            relay_thread, relay_errors = in_thread(relay_loop)
            worker_thread, worker_errors = in_thread(worker_loop)
            publisher = TickPublisher(hot.client, hot.keys, SYMBOLS)
            paused_at = len(ticks) // 3
            for i in range(0, len(ticks), 20):  # ~1,200 ticks over ~6 s, the broker paused for 4 s of it
                if i == paused_at:
                    os.kill(broker.pid, signal.SIGSTOP)
                    paused = time.monotonic()
                if i >= paused_at and time.monotonic() - paused > 4 and relay.metrics.circuit_opened_total:
                    resumed_with = (i, hot.stats.snapshot().decisions)  # ticks published, ticks decided
                    os.kill(broker.pid, signal.SIGCONT)
                    paused = float("inf")
                publisher.publish(ticks[i:i + 20])
                time.sleep(0.1)
            if paused != float("inf"):
                time.sleep(max(0.0, 4 - (time.monotonic() - paused)))
                resumed_with = (len(ticks), hot.stats.snapshot().decisions)
                os.kill(broker.pid, signal.SIGCONT)
            deadline = time.monotonic() + 90
            while count(database_url, schema, "SELECT count(*) FROM {s}.forensics") < len(ticks):
                assert time.monotonic() < deadline, f"forensics stuck; relay {relay.metrics}, worker {worker.metrics}"
                assert not relay_errors and not worker_errors, (relay_errors, worker_errors)
                time.sleep(0.2)
            done.set()
            relay_thread.join(30)
            worker_thread.join(30)
    published, decided = resumed_with
    assert decided >= published - 20, resumed_with  # trading kept pace while the broker was away
    assert relay.metrics.circuit_opened_total >= 1 and relay.breaker.state == CircuitState.CLOSED
    assert count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == len(ticks)
    assert count(database_url, schema, "SELECT count(DISTINCT decision_id) FROM {s}.forensics") == len(ticks)
