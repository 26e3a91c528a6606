"""``glassbox doctor`` and the drain against a real ``glassbox up``: a clean run balances, each injected fault is named.

The faults are made for real in the stores a run leaves behind (a forensics
row deleted, a second decision row for one tick, a tick delivered and never
acknowledged, a tick never read, an entry past the log's head), and a shard
is stopped for real (SIGSTOP: alive, so not restarted, and deciding nothing)
so the drain has something it cannot finish.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import psycopg
import pytest
import redis
from psycopg import sql

from actors.system.supervisor import DRAIN_STUCK
from edge.feeds import BUNDLED_SYMBOLS
from edge.store_layout import StoreKeys, log_head
from edge.tick_stream import TickKeys
from tests.process_report import run as run_command
from tests.process_report import wait_until

pytestmark = pytest.mark.timeout(1_500)

STOP_TIMEOUT = 400.0
"""Seconds a run may take to start, run and drain on a loaded machine (a stuck drain waits 60 s + grace)."""
DOCTOR_TIMEOUT = 300.0


def _doctor(run, *args: str):
    return run_command([sys.executable, "-m", "actors.system.cli", "doctor", *args], DOCTOR_TIMEOUT, env=run.env)


def test_doctor_balances_a_clean_run_and_names_each_injected_violation(glassbox_up, redis_url, database_url) -> None:
    run = glassbox_up("--source", "bundled", "--rate", "300", "--duration", "12")
    assert run.process.exit_code(STOP_TIMEOUT) == 0, run.report()
    clean = _doctor(run, "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    ledger = json.loads(clean.stdout)
    assert ledger["balances"] and not ledger["findings"], ledger["findings"]
    published = sum(s["published"] for s in ledger["symbols"])
    assert published > 0
    assert published == sum(s["decided"] + s["dead_lettered"] for s in ledger["symbols"])
    tables = ledger["tables"]
    committed = sum(e["decisions"] for e in ledger["stores"])
    assert tables["archived_decisions"] == tables["explained"] == tables["decision_ids"] == committed
    assert all(e["relayed"] == e["head"] == e["archived"] for e in ledger["stores"])
    assert ledger["partitions"] and all(p["next_offset"] == p["end_offset"] for p in ledger["partitions"])
    table = _doctor(run)
    assert table.returncode == 0 and "verdict: the ledger balances" in table.stdout, table.stdout + table.stderr

    namespace, s = run.env["GLASSBOX_NAMESPACE"], sql.Identifier(run.schema)
    client = redis.Redis.from_url(redis_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DELETE FROM {s}.forensics WHERE decision_id = "
                             "(SELECT decision_id FROM {s}.forensics LIMIT 1)").format(s=s))
        assert {f.check for f in run.ledger().findings()} == {"decisions not explained"}
        conn.execute(sql.SQL(
            "INSERT INTO {s}.decisions SELECT gen_random_uuid(), symbol, decided_at, action, quantity, confidence, "
            "price, regime_probs, strategy_weights, features, model_version, risk_passed, risk_checks, "
            "correlation_id, log_position, fill FROM {s}.decisions LIMIT 1").format(s=s))
        checks = {f.check for f in run.ledger().findings()}
        assert {"two decisions for one tick", "decision rows without an event"} <= checks, checks
    keys = TickKeys(namespace)
    stream = keys.stream(BUNDLED_SYMBOLS[0])
    fields = client.xrevrange(stream, count=1)[0][1]
    unacked = client.xadd(stream, fields)  # delivered to the stopped shard's consumer, never acknowledged
    client.xreadgroup("desks", "shard-0", {stream: ">"}, count=1)
    client.xadd(stream, fields)  # never read at all
    store = f"{namespace}glassbox:shard-0"
    head = log_head(client, store)
    client.xadd(StoreKeys(store).log, {b"o": b"x", b"v": b"1", b"t": b"Bogus", b"s": b"{}"}, id=f"{head + 3}-0")
    client.close()
    findings = run.ledger().findings()
    undecided = [f for f in findings if f.check == "undecided ticks"]
    assert len(undecided) == 1 and undecided[0].where == f"shard-0 symbol {BUNDLED_SYMBOLS[0]}", findings
    assert f"oldest at entry {unacked.decode()}" in undecided[0].detail and "1 pending, 1 never read" in \
        undecided[0].detail, undecided
    gap = [f for f in findings if f.check == "gap in the event log"]
    assert gap and gap[0].where == store and str(head + 3) in gap[0].detail, findings
    broken = _doctor(run)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    for check in ("decisions not explained", "two decisions for one tick", "undecided ticks", "gap in the event log"):
        assert f"VIOLATION {check}" in broken.stdout, broken.stdout
    assert "verdict: " in broken.stdout.splitlines()[-1] and "violation(s)" in broken.stdout.splitlines()[-1]


def test_a_drain_with_a_stuck_shard_names_it_and_exits_non_zero(glassbox_up, redis_url) -> None:
    run = glassbox_up("--source", "bundled", "--rate", "300", "--duration", "25")
    run.wait_for_status()
    client = redis.Redis.from_url(redis_url)
    store = f"{run.env['GLASSBOX_NAMESPACE']}glassbox:shard-0"
    wait_until(lambda: log_head(client, store) > 0, STOP_TIMEOUT, "shard-0's first commit", run.process)
    client.close()
    shard = next(c["pid"] for c in run.status["components"] if c["name"] == "shard-0")
    os.kill(shard, signal.SIGSTOP)  # alive but deciding nothing: the feeds go on publishing to it
    try:
        code = run.process.exit_code(STOP_TIMEOUT)
    finally:
        try:
            os.kill(shard, signal.SIGCONT)
        except ProcessLookupError:
            pass
    output = run.output()
    assert code == DRAIN_STUCK, run.report()
    stuck = [line for line in output.splitlines() if line.startswith("stuck: shard-0 symbol ")]
    assert stuck and "ticks never decided" in stuck[0] and "oldest entry" in stuck[0], run.report()
    assert "error: the drain ended after" in output, run.report()
    status = run_command([sys.executable, "-m", "actors.system.cli", "status"], DOCTOR_TIMEOUT, env=run.env)
    assert status.returncode == 2 and "stuck: shard-0 symbol " in status.stderr, status.stderr
    doctor = _doctor(run)
    assert doctor.returncode == 1 and "VIOLATION undecided ticks: shard-0 symbol " in doctor.stdout, doctor.stdout


def test_the_doctor_balances_a_running_system_with_work_in_flight(glassbox_up, database_url) -> None:
    """Sampled while ``glassbox up`` publishes, decides, relays and projects: in flight is never a violation."""
    run = glassbox_up("--source", "bundled", "--rate", "300", "--duration", "120")
    run.wait_for_status()

    def explained() -> bool:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                return conn.execute(sql.SQL("SELECT count(*) FROM {}.forensics").format(
                    sql.Identifier(run.schema))).fetchone()[0] > 0
        except psycopg.errors.UndefinedTable:
            return False

    wait_until(explained, STOP_TIMEOUT, "the first forensics row", run.process, every=0.5)
    samples = []
    for _ in range(3):
        ledger = run.ledger()
        assert run.process.poll() is None, "the run ended before the doctor's sample: nothing was in flight"
        assert ledger.running and ledger.balances(), ledger.findings()
        samples.append(sum(s.published for s in ledger.symbols))
    assert samples[0] < samples[-1], f"no tick published between the samples {samples}: nothing was in flight"
    table = _doctor(run)
    assert table.returncode == 0 and "a running system" in table.stdout and \
        "verdict: the ledger balances" in table.stdout, table.stdout + table.stderr
