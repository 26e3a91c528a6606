"""Running ``glassbox up`` as a subprocess against the session's real Redis, broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.system.doctor import doctor_services, examine
from actors.system.ledger import Ledger
from aggregates.registry import ModelRegistry
from glassbox import Settings
from tests.process_report import LoggedProcess, wait_until

STATUS_TIMEOUT = 300.0
"""Seconds ``glassbox up`` may take to start everything on a loaded machine (it has its own
start-up timeouts per component; this only bounds a hang)."""


@dataclass
class UpRun:
    """One ``glassbox up`` process and where to find what it started."""

    process: LoggedProcess
    """Its output goes to a file, its components' logs to ``home/run/logs``: :meth:`report` quotes both."""
    home: Path
    env: dict[str, str]
    schema: str

    @property
    def status(self) -> dict:
        return json.loads((self.home / "run" / "status.json").read_text())

    def wait_for_status(self, timeout: float = STATUS_TIMEOUT) -> dict:
        wait_until((self.home / "run" / "status.json").exists, timeout, "glassbox up to write its status",
                   self.process, every=0.2)
        return self.status

    def api(self, path: str) -> tuple[int, dict]:
        token = (self.home / "api-token").read_text().strip()
        request = urllib.request.Request(self.status["api_url"] + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def metrics(self) -> str:
        token = (self.home / "api-token").read_text().strip()
        request = urllib.request.Request(self.status["api_url"] + "/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    def ledger(self) -> Ledger:
        """``glassbox doctor``'s ledger of this run's system (the product's check, not the test's own)."""
        settings = Settings.from_env(self.env)
        with doctor_services(settings) as services:
            return examine(settings, services)

    def output(self) -> str:
        """What ``glassbox up`` printed so far."""
        return self.process.output()

    def report(self) -> str:
        """For assertion messages: its exit code, the end of its output and of every component's log."""
        return self.process.report()


@pytest.fixture
def glassbox_up(redis_url: str, kafka_servers: str, database_url: str, model_registry: ModelRegistry,
                tmp_path: Path) -> Iterator:
    """Start ``glassbox up ARGS`` in its own namespace, schema and topics; stopped at the end."""
    runs: list[UpRun] = []

    def start(*args: str, run_id: str | None = None, embedded_broker: bool = False, api_port: int = 0,
              embedded: tuple[str, ...] = ()) -> UpRun:
        """``embedded``: services the supervisor starts itself ("redis", "broker", "postgresql")."""
        run_id = run_id or uuid.uuid4().hex[:8]
        home = tmp_path / f"home-{run_id}"
        if not (home / "models").exists():
            shutil.copytree(model_registry.root, home / "models")
        env = {**os.environ, "GLASSBOX_HOME": str(home), "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
               "DATABASE_URL": database_url, "GLASSBOX_NAMESPACE": f"e2e-{run_id}:",
               "GLASSBOX_SCHEMA": f"e2e_{run_id}", "GLASSBOX_TOPIC_PREFIX": f"e2e-{run_id}."}
        if embedded_broker:  # the supervisor starts its own, empty at every start
            env.pop("KAFKA_BOOTSTRAP_SERVERS")
        for service in embedded:
            env.pop({"redis": "REDIS_URL", "broker": "KAFKA_BOOTSTRAP_SERVERS", "postgresql": "DATABASE_URL"}[service])
        process = LoggedProcess([sys.executable, "-m", "actors.system.cli", "up", "--api-port", str(api_port), *args],
                                tmp_path / f"up-{run_id}-{len(runs)}.out", home / "run" / "logs", env=env,
                                start_new_session=True)  # its own process group, as a terminal gives it
        run = UpRun(process, home, env, f"e2e_{run_id}")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.process.stop(120)
