"""The process layout of ``glassbox up``: which component processes run, with which arguments, env and priority.

In start order: one shard process per shard that owns symbols
(``actors.shard_main``), one relay per shard store (``backbone.relay_main``),
one worker per projection group (``projections.worker_main``; ``--forensics-workers N``
starts N members of the forensics group), then the API
(uvicorn). A new supervised process is one more :class:`ComponentSpec` here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from api.auth import SCOPES
from actors.system.components import ComponentSpec
from actors.system.plan import RunPlan
from edge.child_process import free_port
from edge.logs import uvicorn_log_config
from edge.system_keys import SystemKeys
from glassbox import Settings
from projections.groups import PROJECTIONS

__all__ = ["BACKBONE_NICENESS", "DEFAULT_API_PORT", "ProcessLayout", "ServiceUrls", "api_tokens"]

BACKBONE_NICENESS = 10
"""The relays, workers, broker and PostgreSQL run below the CPU priority of the shards and
Redis: their catch-up after an outage must not take the cores deciding needs
(``perf.outage`` measures the effect). The API runs there too: its stream's fan-out to many
dashboards must not take them either (``perf.stream`` measures the effect)."""
DEFAULT_API_PORT = 8000
_ALL_SCOPES = ",".join(SCOPES)


@dataclass(frozen=True)
class ServiceUrls:
    """Where the system's services answer (embedded or given)."""

    redis_url: str
    kafka_servers: str
    database_url: str


def api_tokens(settings: Settings) -> str:
    """GLASSBOX_API_TOKENS, or one token for every scope kept in ``<home>/api-token`` (mode 0600)."""
    if settings.api_tokens:
        return settings.api_tokens
    path = settings.home / "api-token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return f"local@{path.read_text().strip()}:{_ALL_SCOPES}"  # the halts it makes say "api:local"


class ProcessLayout:
    """The component processes of one run of ``plan``; :attr:`api_url` is known once :meth:`specs` ran."""

    def __init__(self, settings: Settings, plan: RunPlan, run_dir: Path, out: Callable[[str], None]) -> None:
        self.settings = settings
        self.plan = plan
        self.run_dir = run_dir
        self.keys = SystemKeys(settings.namespace)
        self.api_url = ""
        self._out = out

    def specs(self, services: ServiceUrls, owned: list[list[str]]) -> list[ComponentSpec]:
        """Every component, in start order; ``owned[i]`` are shard i's symbols (a shard with none is left out)."""
        s, python = self.settings, sys.executable
        env = {**os.environ, "GLASSBOX_HOME": str(s.home), "REDIS_URL": services.redis_url,
               "KAFKA_BOOTSTRAP_SERVERS": services.kafka_servers, "DATABASE_URL": services.database_url}
        shards = [i for i, symbols in enumerate(owned) if symbols]
        book = sum(len(symbols) for symbols in owned)
        specs: list[ComponentSpec] = []
        for i in shards:
            ready = self._ready_file(f"shard-{i}")
            specs.append(ComponentSpec(
                f"shard-{i}", [python, "-m", "actors.shard_main", "--symbols", ",".join(owned[i]),
                               "--namespace", s.namespace, "--name", f"shard-{i}",
                               "--book-share", repr(len(owned[i]) / book), "--ready-file", str(ready)],
                env, ready.exists, start_timeout=120, ready_file=ready))
        for i in shards:
            ready = self._ready_file(f"relay-shard-{i}")
            specs.append(ComponentSpec(
                f"relay-shard-{i}", [python, "-m", "backbone.relay_main", "--store", self.keys.shard_store(i),
                                     "--topic-prefix", s.topic_prefix, "--ready-file", str(ready)],
                env, ready.exists, nice=BACKBONE_NICENESS, ready_file=ready))
        for projection in PROJECTIONS:
            members = self.plan.forensics_workers if projection == "forensics" else 1
            for member in range(1, members + 1):  # one consumer group: the members share its partitions
                name = f"worker-{projection}" + (f"-{member}" if member > 1 else "")
                ready = self._ready_file(name)
                specs.append(ComponentSpec(
                    name, [python, "-m", "projections.worker_main", "--projection", projection,
                           "--schema", s.schema, "--topic-prefix", s.topic_prefix, "--ready-file", str(ready)],
                    env, ready.exists, start_timeout=120, nice=BACKBONE_NICENESS, ready_file=ready))
        specs.append(self._api_spec(env, [self.keys.shard_store(i) for i in shards]))
        return specs

    def _api_spec(self, env: dict[str, str], stores: list[str]) -> ComponentSpec:
        s = self.settings
        port = self.plan.api_port if self.plan.api_port is not None else self._default_api_port()
        port = port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        api_env = {**env, "GLASSBOX_API_TOKENS": api_tokens(s), "GLASSBOX_SCHEMA": s.schema,
                   "GLASSBOX_TOPIC_PREFIX": s.topic_prefix, "GLASSBOX_RELAY_STORES": ",".join(stores)}
        log_config = self.run_dir / "api-logging.json"
        log_config.write_text(json.dumps(uvicorn_log_config("api", s.log_level)))
        health = f"{self.api_url}/health"
        return ComponentSpec(
            "api", [sys.executable, "-m", "uvicorn", "--factory", "actors.system.api_main:app_from_env", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log", "--log-level", s.log_level.lower(),
                    # Compressing every frame for every stream client was a fifth of the API's CPU under
                    # 200 clients (py-spy): a dashboard's frames are small and its network is near.
                    "--ws-per-message-deflate", "false",
                    "--log-config", str(log_config)],
            api_env, lambda: _http_ok(health), nice=BACKBONE_NICENESS)

    def _ready_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.ready"

    def _default_api_port(self) -> int:
        """8000 when it is free, else 0 (any free port), saying so."""
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", DEFAULT_API_PORT))
            except OSError:
                self._out(f"port {DEFAULT_API_PORT} is taken: the API takes a free one (choose with --api-port)")
                return 0
        return DEFAULT_API_PORT


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
        return response.status == 200
