"""``glassbox up`` end to end: the whole system as a user starts it, with nothing lost.

Each test runs the real command as a subprocess against the session's real
Redis, Kafka-protocol broker and PostgreSQL (given by URL, so the test can
read them after the run), in its own namespace, schema and topics.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time

import psycopg
import pytest
import redis
from eventsourcing.application import Application
from psycopg import sql

from actors.application import event_store_env
from edge.feeds import BUNDLED_SYMBOLS
from edge.tick_stream import TickKeys
from tests.process_report import wait_until

pytestmark = pytest.mark.timeout(1_200)
"""Above the waits below (minutes on a loaded machine), so a hang ends in their report, not pytest-timeout's."""

PROGRESS_TIMEOUT = 300.0
"""Seconds a running system may take to show the progress a test waits for, on a loaded machine."""
STOP_TIMEOUT = 300.0
"""Seconds ``glassbox up`` may take to drain and stop on a loaded machine."""


def _counts(run, redis_url: str, database_url: str) -> dict[str, int]:
    """What the event stores, tick streams and read models hold after ``run``."""
    namespace = run.env["GLASSBOX_NAMESPACE"]
    client = redis.Redis.from_url(redis_url)
    stores = [k.decode() for k in client.scan_iter(f"{{{namespace}glassbox:shard-*}}:log")]
    keys = TickKeys(namespace)
    counts = {
        "events": sum(client.xlen(k) for k in stores),
        "ticks": sum(client.xlen(keys.stream(s)) for s in BUNDLED_SYMBOLS if client.exists(keys.stream(s))),
    }
    client.close()
    s = sql.Identifier(run.schema)
    with psycopg.connect(database_url) as conn:
        for name, query in {
            "archived": "SELECT count(*) FROM {s}.event_archive",
            "archived_decisions": "SELECT count(*) FROM {s}.event_archive "
                                  "WHERE event_type IN ('Trading.Decision.Taken.v1', 'Trading.Decision.Taken.v2')",
            "decisions": "SELECT count(*) FROM {s}.decisions",
            "forensics": "SELECT count(*) FROM {s}.forensics",
            "forensics_distinct": "SELECT count(DISTINCT decision_id) FROM {s}.forensics",
            "explained_decisions": "SELECT count(*) FROM {s}.decisions d JOIN {s}.forensics f USING (decision_id)",
        }.items():
            counts[name] = conn.execute(sql.SQL(query).format(s=s)).fetchone()[0]
        rows = conn.execute(sql.SQL(
            "SELECT expected_value, model_output, shap_values FROM {s}.forensics").format(s=s)).fetchall()
    counts["additivity_violations"] = sum(
        1 for ev, output, shap in rows if not math.isclose(ev + sum(shap.values()), output, abs_tol=1e-6))
    return counts


def _ticks(run, redis_url: str) -> int:
    """Ticks published into ``run``'s tick streams so far."""
    keys = TickKeys(run.env["GLASSBOX_NAMESPACE"])
    with redis.Redis.from_url(redis_url) as client:
        return sum(client.xlen(keys.stream(s)) for s in BUNDLED_SYMBOLS if client.exists(keys.stream(s)))


def _assert_everything_projected_once(counts: dict[str, int], run) -> None:
    """``glassbox doctor``'s ledger balances (every tick decided once, every event relayed, archived, explained)."""
    ledger = run.ledger()
    why = f"{counts}\n{[f.line() for f in ledger.findings()]}\n{run.report()}"
    assert counts["ticks"] > 0 and counts["events"] > 0, why
    assert ledger.balances(), why
    assert counts["decisions"] == counts["ticks"], why  # the bundled bars are all good ticks: one decision each
    assert counts["additivity_violations"] == 0, why


def test_up_explains_every_decision_serves_it_and_stops_on_ctrl_c(glassbox_up, redis_url, database_url) -> None:
    run = glassbox_up("--source", "bundled", "--rate", "300")
    run.wait_for_status()
    answers: list[tuple[int, dict]] = []

    def explained() -> bool:  # the API serves a real decision's forensics while the system runs
        try:
            answers[:] = [run.api("/api/v1/decisions?limit=1")]
            status, body = answers[0]
            if status == 200 and body["decisions"]:
                answers.append(run.api(f"/api/v1/forensics/{body['decisions'][0]['decision_id']}"))
                return answers[1][0] == 200
        except OSError:  # a loaded machine's API answering late: ask again
            pass
        return False

    wait_until(explained, PROGRESS_TIMEOUT, "the API to serve a decision's forensics", run.process, every=0.5)
    (_, body), (_, forensics) = answers
    decision_id = body["decisions"][0]["decision_id"]
    assert forensics["decision_id"] == decision_id and forensics["explanations"]["shap_values"]
    time.sleep(3)
    os.killpg(run.process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    assert run.process.exit_code(STOP_TIMEOUT) == 0, run.report()
    assert "stopped: every component exited" in run.output(), run.report()
    _assert_everything_projected_once(_counts(run, redis_url, database_url), run)


def test_killed_actor_and_worker_are_restarted_and_sigterm_drains(glassbox_up, redis_url, database_url) -> None:
    run = glassbox_up("--source", "bundled", "--rate", "300")
    run.wait_for_status()
    client = redis.Redis.from_url(redis_url)
    sequence = f"{{{run.env['GLASSBOX_NAMESPACE']}glassbox:shard-0}}:seq"
    # Kill them once the shard has committed: a kill before any event would prove less.
    wait_until(lambda: int(client.get(sequence) or 0) > 0, PROGRESS_TIMEOUT, "shard-0's first commit", run.process)
    time.sleep(5)
    pids = {c["name"]: c["pid"] for c in run.status["components"]}
    os.kill(pids["shard-0"], signal.SIGKILL)
    os.kill(pids["worker-forensics"], signal.SIGKILL)

    def restarted() -> bool:  # both come back, and the system goes on deciding
        components = {c["name"]: c for c in run.status["components"]}
        return all(components[n]["restarts"] >= 1 and components[n]["state"] == "running"
                   for n in ("shard-0", "worker-forensics"))

    wait_until(restarted, PROGRESS_TIMEOUT, "shard-0 and worker-forensics to be restarted", run.process, every=0.5)

    restarts: dict[str, float] = {}

    def counted() -> bool:  # /metrics leaves the counts out while it cannot read Redis (a loaded machine)
        try:
            restarts.update({line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in run.metrics().splitlines()
                             if line.startswith("glassbox_component_restarts_total{")})
        except OSError:
            return False
        return {"shard-0", "worker-forensics", "api"} <= restarts.keys()

    wait_until(counted, PROGRESS_TIMEOUT, "/metrics to count the components' restarts", run.process, every=0.5)
    assert restarts["shard-0"] >= 1 and restarts["worker-forensics"] >= 1 and restarts["api"] == 0, (restarts, run.report())
    # The restarted shard goes on committing (its store's sequence, unlike a process's counters, only grows).
    # "running" is its process being alive: it still loads its model and rebuilds its desks before it
    # decides, which takes seconds on a loaded machine, so wait for the commit rather than sample once.
    committed = int(client.get(sequence))
    wait_until(lambda: int(client.get(sequence)) > committed, PROGRESS_TIMEOUT,
               f"the restarted shard-0 to commit past event {committed}", run.process, every=0.5)
    client.close()
    run.process.send_signal(signal.SIGTERM)
    assert run.process.exit_code(STOP_TIMEOUT) == 0, run.report()
    _assert_everything_projected_once(_counts(run, redis_url, database_url), run)


def test_a_second_run_resumes_and_its_fresh_broker_loses_nothing(glassbox_up, redis_url, database_url) -> None:
    # The embedded broker keeps nothing across its restart: the second run must re-publish
    # what the first relayed, and its workers must not seek into topics that are gone.
    first = glassbox_up("--source", "bundled", "--rate", "300", "--duration", "12", run_id="again", embedded_broker=True)
    assert first.process.exit_code(PROGRESS_TIMEOUT + STOP_TIMEOUT) == 0, first.report()
    after_first = _counts(first, redis_url, database_url)
    _assert_everything_projected_once(after_first, first)
    second = glassbox_up("--source", "bundled", "--rate", "300", run_id="again", embedded_broker=True)
    second.wait_for_status()
    wait_until(lambda: _ticks(second, redis_url) > after_first["ticks"], PROGRESS_TIMEOUT,
               f"the second run to publish past tick {after_first['ticks']}", second.process, every=0.5)
    # Ctrl-C reaches the whole foreground group: the embedded broker must not stop before the drain.
    os.killpg(second.process.pid, signal.SIGINT)
    assert second.process.exit_code(STOP_TIMEOUT) == 0, second.report()
    after_second = _counts(second, redis_url, database_url)
    assert after_second["ticks"] > after_first["ticks"], second.report()  # the bundled replay went on where it stopped
    _assert_everything_projected_once(after_second, second)


def test_a_component_that_cannot_start_stops_start_up_with_its_name(glassbox_up, redis_url) -> None:
    with socket.socket() as taken:  # the API's port is in use: uvicorn exits at start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = glassbox_up("--source", "bundled", "--duration", "5", api_port=port)
        assert run.process.exit_code(STOP_TIMEOUT) == 1, run.report()
    assert "start-up failed: api exited with code" in run.output(), run.report()
    app = Application(env=event_store_env(redis_url, f"{run.env['GLASSBOX_NAMESPACE']}glassbox:system"))
    failed = [n for n in app.recorder.select_notifications(1, 100) if n.topic == "System.Startup.Failed"]
    assert len(failed) == 1 and b'"component":"api"' in failed[0].state
    app.close()
    assert not (run.home / "run" / "status.json").exists()  # it never reported itself running
