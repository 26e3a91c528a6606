"""``glassbox up`` outliving its services: the embedded Redis, broker or PostgreSQL SIGKILLed mid-run.

Each test lets the supervisor start the one service it kills (the others are
the session's, given by URL), kills that service's real process while ticks
flow, and checks what an operator sees and what the ledger holds: one line
when the service is down and one when it is back, no traceback, a drain and
exit code 0, and every published tick decided once, every decision archived
and explained once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from eventsourcing.application import Application

from actors.application import event_store_env
from edge.redis_server import EmbeddedRedis
from projections.postgres_server import EmbeddedPostgres, reachable_data_dir
from tests.e2e.test_glassbox_up import PROGRESS_TIMEOUT, STOP_TIMEOUT, _assert_everything_projected_once, _counts, \
    _ticks
from tests.process_report import wait_until

pytestmark = pytest.mark.timeout(1_800)
"""Slow on purpose: a whole system, an outage and a restart, then the drain (minutes on a loaded machine)."""


def _pid_with(*needles: str) -> int:
    """The pid of the one process whose command line holds every one of ``needles``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            found.append(int(proc.name))
    assert len(found) == 1, (needles, found)
    return found[0]


def _service_pid(service: str, run) -> int:
    if service == "redis":
        port = run.status["redis_url"].rsplit(":", 1)[1].split("/")[0]
        return _pid_with("redis-server", f"127.0.0.1:{port}")  # redis-server sets its own process title
    if service == "broker":
        return _pid_with("broker", f"tcp://{run.status['kafka_servers']}")
    pid_file = reachable_data_dir(run.home / "postgres") / "postmaster.pid"
    return int(pid_file.read_text().split("\n", 1)[0])  # the postmaster


@contextmanager
def _ledger_services(service: str, run, redis_url: str, database_url: str) -> Iterator[tuple[str, str]]:
    """(Redis URL, PostgreSQL URL) holding ``run``'s data after it stopped: the embedded one started on its files."""
    if service == "redis":
        with EmbeddedRedis(run.home / "redis") as server:
            yield server.url, database_url
    elif service == "postgresql":
        data_dir = reachable_data_dir(run.home / "postgres")
        try:
            with EmbeddedPostgres(data_dir) as server:
                yield redis_url, server.url
        finally:
            if data_dir != run.home / "postgres":  # root: the cluster lives outside tmp_path
                shutil.rmtree(data_dir.parent, ignore_errors=True)
    else:
        yield redis_url, database_url


def _outage_events(redis_url: str, run, service: str) -> dict[str, int]:
    app = Application(env=event_store_env(redis_url, f"{run.env['GLASSBOX_NAMESPACE']}glassbox:system"))
    try:
        notifications = app.recorder.select_notifications(1, 10_000)
    finally:
        app.close()
    needle = f'"service":"{service}"'.encode()
    return {topic: sum(1 for n in notifications if n.topic == topic and needle in n.state)
            for topic in ("System.Service.Down", "System.Service.Back")}


@pytest.mark.parametrize("service", ["redis", "broker", "postgresql"])
def test_a_killed_service_is_said_once_restarted_and_loses_nothing(service, glassbox_up, redis_url,
                                                                    database_url) -> None:
    run = glassbox_up("--source", "bundled", "--rate", "200", embedded=(service,))
    run.wait_for_status()
    live_redis = run.status["redis_url"] if service == "redis" else redis_url

    answers: list[int] = []

    def deciding() -> bool:  # the whole path works before the kill: decided, relayed, projected
        try:
            status, body = run.api("/api/v1/decisions?limit=1")
        except (OSError, ValueError):  # answering late (the API's own timeout is shorter): ask again
            return False
        answers.append(status)
        return status == 200 and bool(body["decisions"])

    wait_until(deciding, PROGRESS_TIMEOUT, "the API to serve a decision", run.process, every=0.5)
    os.kill(_service_pid(service, run), signal.SIGKILL)
    wait_until(lambda: f"{service} is back (" in run.output(), PROGRESS_TIMEOUT,
               f"the supervisor to say {service} is back", run.process, every=0.5)
    published = _ticks(run, live_redis)
    wait_until(lambda: _ticks(run, live_redis) > published + 200, PROGRESS_TIMEOUT,
               f"the feeds to publish past tick {published + 200} after the outage", run.process, every=0.5)
    wait_until(deciding, PROGRESS_TIMEOUT, "the API to serve decisions again", run.process, every=0.5)
    run.process.send_signal(signal.SIGTERM)
    assert run.process.exit_code(STOP_TIMEOUT) == 0, run.report()

    output = run.output()
    assert output.count(f"{service} is down (") == 1, run.report()
    assert output.count(f"{service} is back (") == 1, run.report()
    assert "Traceback" not in output, run.report()
    # The outage's exits are its own, not a crash loop: no component's exit or restart line.
    assert not re.search(r"^\S+ (exited with code|restarted \(restart)", output, re.MULTILINE), run.report()
    assert "stopped: every component exited" in output, run.report()
    with _ledger_services(service, run, redis_url, database_url) as (ledger_redis, ledger_database):
        assert _outage_events(ledger_redis, run, service) == {"System.Service.Down": 1, "System.Service.Back": 1}
        _assert_everything_projected_once(_counts(run, ledger_redis, ledger_database), run)
    # An outage is the server's trouble, never the client's: 503 while it lasts, never a 500.
    assert 500 not in answers, answers
    ledger = run.ledger()  # glassbox doctor's check of the whole ledger
    assert ledger.balances(), [finding.line() for finding in ledger.findings()]
