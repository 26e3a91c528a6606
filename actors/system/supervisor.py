"""The supervisor behind ``glassbox up``: starts the whole system in order, watches it, drains it.

Start order, each step behind a health check with a timeout: Redis, the
Kafka-protocol broker, PostgreSQL (each embedded unless its URL is given),
migrations, the shard processes (actors), one relay per shard store, the
projection workers, the API; then the feeds. A step that fails stops
start-up with one message naming it, a ``System.Startup.Failed.v1`` event
(once Redis is up) and a non-zero exit.

While running, a component process that exits is restarted with
exponential backoff (a shard rebuilds its desks from the event store and
redoes its unacknowledged ticks; a worker seeks to its stored offsets), and
every restart is logged, counted and recorded as an event.

Stopping (Ctrl-C, SIGTERM, ``--duration``) drains in order: feeds stop,
shards finish every tick already published, relays catch up with their
stores, workers with the topics, then everything stops, newest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from eventsourcing.application import Application

from actors.application import event_store_env
from actors.system.components import Component, ComponentFailed, ComponentSpec
from actors.shard_metrics import shard_metrics_key
from actors.sharding import assign_symbols
from aggregates.registry import ModelRegistry
from aggregates.system_run import SystemRun
from backbone.broker import BrokerSettings, EmbeddedBroker
from backbone.relay import RelayPosition
from edge.child_process import free_port
from edge.embedded_server import given_or_embedded
from edge.feeds import SyntheticFeed, bundled_ticks
from edge.logs import uvicorn_log_config
from edge.pacing import PacedFeed
from edge.redis_server import EmbeddedRedis
from edge.tick_stream import TickKeys, TickPublisher
from edge.user_data import UserData
from glassbox import GlassboxError, Settings, redact_url
from projections.postgres_server import (
    EmbeddedPostgres,
    PostgresServerSettings,
    reachable_data_dir,
)

__all__ = ["RunPlan", "Supervisor", "read_status"]

PROJECTIONS = ("forensics", "archive", "read-models")
BACKBONE_NICENESS = 10
"""The relays, workers, broker and PostgreSQL run below the CPU priority of the shards and
Redis: their catch-up after an outage must not take the cores deciding needs
(``perf.outage`` measures the effect)."""


@dataclass(frozen=True)
class RunPlan:
    """What ``glassbox up`` was asked to run."""

    bundled: list[str]
    synthetic: list[str]
    user_data: UserData | None = None
    """A CSV or Parquet file of the user's, already read (so a bad one fails before anything starts)."""
    shards: int = 1
    rate: float = 1_000.0
    duration: float | None = None
    api_port: int | None = None
    """None: 8000, or any free port when 8000 is taken; 0: any free port."""
    seed: int = 7
    drain_timeout: float = 60.0

    @property
    def symbols(self) -> list[str]:
        user = self.user_data.symbols if self.user_data else []
        return self.bundled + self.synthetic + [s for s in user if s not in self.bundled + self.synthetic]


@dataclass
class Progress:
    """One line of progress, also kept in the status file."""

    ticks: int = 0
    decisions: int = 0
    dead_letters: int = 0
    ticks_per_s: float = 0.0
    latency_us_p99: float = 0.0
    relay_lag: int = 0
    forensics_lag: int | None = None

    def line(self, elapsed: float) -> str:
        forensics = "?" if self.forensics_lag is None else f"{self.forensics_lag:,}"
        return (f"[{elapsed:5.0f}s] ticks {self.ticks:,} ({self.ticks_per_s:,.0f}/s)  decisions {self.decisions:,}  "
                f"dead letters {self.dead_letters}  tick→committed p99 {self.latency_us_p99 / 1e3:.2f} ms  "
                f"| relay lag {self.relay_lag:,}  forensics lag {forensics}")


@dataclass
class _Running:
    """What the supervisor has started so far."""

    redis_url: str = ""
    kafka_servers: str = ""
    database_url: str = ""
    api_url: str = ""
    components: list[Component] = field(default_factory=list)


class Supervisor:
    """Runs ``plan`` with ``settings``; :meth:`run` returns the process exit code."""

    def __init__(self, settings: Settings, plan: RunPlan, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.plan = plan
        self.out = out
        self.run_dir = settings.home / "run"
        self.log_dir = self.run_dir / "logs"
        self.keys = TickKeys(settings.namespace)
        self._running = _Running()
        self._system: tuple[Application, SystemRun] | None = None
        self._components_client: redis.Redis | None = None
        self.components_key = f"{settings.namespace}glassbox:components"

    def store_name(self, shard: int) -> str:
        return f"{self.settings.namespace}glassbox:shard-{shard}"

    def run(self, stop: threading.Event) -> int:
        """Start everything, run until ``stop`` is set (or the duration passes), drain, stop."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        owned = assign_symbols(self.plan.symbols, self.plan.shards)
        with ExitStack() as stack:
            try:
                self._start_services(stack, owned)
                self._start_components(stack, owned)
            except GlassboxError as error:
                self._record_startup_failure(error)
                self.out(f"glassbox up: start-up failed: {error}")
                return 1
            feeds_stop = threading.Event()
            feeds = self._start_feeds(feeds_stop)
            self._print_started(owned)
            try:
                self._watch(stop, owned)
            finally:
                feeds_stop.set()
                for thread in feeds:
                    thread.join()
                self._drain(owned)
        self.out("stopped: every component exited; services the supervisor started are stopped")
        return 0

    # -- start-up ------------------------------------------------------------

    def _start_services(self, stack: ExitStack, owned: list[list[str]]) -> None:
        s, running = self.settings, self._running
        self.out("starting redis ...")
        running.redis_url = stack.enter_context(
            _named("redis", given_or_embedded(s.redis_url, EmbeddedRedis(s.redis_dir))))
        self._check_layout(running.redis_url)
        self._components_client = redis.Redis.from_url(running.redis_url)
        self._components_client.delete(self.components_key)  # a previous run's components are not ours
        stack.callback(self._components_client.close)
        self._open_system_run(stack, owned)
        self.out("starting the kafka-protocol broker ...")
        running.kafka_servers = stack.enter_context(
            _named("broker", given_or_embedded(s.kafka_bootstrap_servers, EmbeddedBroker(
                s.home / "broker", BrokerSettings(niceness=BACKBONE_NICENESS)))))
        self.out("starting postgresql ...")
        running.database_url = stack.enter_context(_named("postgresql", given_or_embedded(s.database_url, EmbeddedPostgres(
            reachable_data_dir(s.home / "postgres"), PostgresServerSettings(niceness=BACKBONE_NICENESS)))))
        self.out("applying migrations ...")
        migrate = subprocess.run(
            [sys.executable, "-m", "projections.migrate", "--schema", self.settings.schema],
            env={**os.environ, "DATABASE_URL": running.database_url}, capture_output=True, text=True, check=False)
        if migrate.returncode:
            raise ComponentFailed("migrations", f"migrations: {(migrate.stderr or migrate.stdout).strip()}")
        if not s.kafka_bootstrap_servers:
            self._republish_into_fresh_broker(running)
        if ModelRegistry(s.model_dir).latest() is None:
            from actors.system.training import train_specialists

            self.out("training the regime specialists on the bundled bars (first run only) ...")
            train_specialists(ModelRegistry(s.model_dir), seed=self.plan.seed)

    def _republish_into_fresh_broker(self, running: _Running) -> None:
        """The embedded broker starts empty: relay every store from the start, projections from offset 0.

        Without this, a second ``glassbox up`` would have its relays continue where they stopped
        (the events before are in no topic any more) and its workers seek to offsets of topics
        that no longer exist, skipping messages. Projections are idempotent, so re-sending all
        costs time, never a duplicate row.
        """
        client = redis.Redis.from_url(running.redis_url)
        try:
            for i in range(self.plan.shards):
                RelayPosition(client, self.store_name(i), "relay").set(0)
        finally:
            client.close()
        forget = subprocess.run(
            [sys.executable, "-m", "projections.offsets", "--schema", self.settings.schema,
             "--topic-prefix", self.settings.topic_prefix],
            env={**os.environ, "DATABASE_URL": running.database_url}, capture_output=True, text=True, check=False)
        if forget.returncode:
            raise ComponentFailed("offsets", f"offsets: {(forget.stderr or forget.stdout).strip()}")

    def _check_layout(self, redis_url: str) -> None:
        """Refuse a shard count other than the one this system's desks were built with."""
        key = f"{self.settings.namespace}glassbox:layout"
        client = redis.Redis.from_url(redis_url)
        try:
            recorded = client.hget(key, "shards")
            if recorded is not None and int(recorded) != self.plan.shards:
                raise ComponentFailed(
                    "layout", f"layout: this system ran with --shards {int(recorded)} and its desks live in those shards' "
                    f"event stores; run with --shards {int(recorded)}, or start a new system with another "
                    "GLASSBOX_HOME (or GLASSBOX_NAMESPACE)")
            client.hset(key, "shards", self.plan.shards)
        finally:
            client.close()

    def _open_system_run(self, stack: ExitStack, owned: list[list[str]]) -> None:
        app = Application(env=event_store_env(self._running.redis_url, f"{self.settings.namespace}glassbox:system"))
        stack.callback(app.close)
        options = {"rate": self.plan.rate, "duration": self.plan.duration, "shards": self.plan.shards,
                   "file": str(self.plan.user_data.path) if self.plan.user_data else None}
        run = SystemRun.start(self.plan.shards, self.plan.symbols, options)
        app.save(run)
        self._system = (app, run)

    def _record(self, change: Callable[[SystemRun], None]) -> None:
        if self._system is None:
            return
        app, run = self._system
        change(run)
        try:
            app.save(run)
        except Exception as error:  # noqa: BLE001 - the history is best effort; the run goes on
            self.out(f"warning: could not record a system event: {error!r}")

    def _record_startup_failure(self, error: GlassboxError) -> None:
        component = error.component if isinstance(error, ComponentFailed) else "supervisor"
        self._record(lambda run: run.startup_failed(component, str(error)))

    def _start_components(self, stack: ExitStack, owned: list[list[str]]) -> None:
        specs = self._component_specs(owned)
        for spec in specs:
            component = Component(spec, self.log_dir)
            self.out(f"starting {spec.name} ...")
            component.start()
            self._running.components.append(component)
            stack.callback(component.stop)  # newest first on the way out

    def _component_specs(self, owned: list[list[str]]) -> list[ComponentSpec]:
        running, python = self._running, sys.executable
        base_env = {**os.environ, "GLASSBOX_HOME": str(self.settings.home), "REDIS_URL": running.redis_url,
                    "KAFKA_BOOTSTRAP_SERVERS": running.kafka_servers, "DATABASE_URL": running.database_url}
        specs: list[ComponentSpec] = []
        for i, symbols in enumerate(owned):
            if not symbols:
                continue
            ready = self.run_dir / f"shard-{i}.ready"
            specs.append(ComponentSpec(
                f"shard-{i}", [python, "-m", "actors.shard_main", "--symbols", ",".join(symbols),
                               "--namespace", self.settings.namespace, "--name", f"shard-{i}", "--ready-file", str(ready)],
                base_env, ready.exists, start_timeout=120, ready_file=ready))
        for i, symbols in enumerate(owned):
            if not symbols:
                continue
            ready = self.run_dir / f"relay-shard-{i}.ready"
            specs.append(ComponentSpec(
                f"relay-shard-{i}", [python, "-m", "backbone.relay_main", "--store", self.store_name(i),
                                     "--topic-prefix", self.settings.topic_prefix, "--ready-file", str(ready)],
                base_env, ready.exists, nice=BACKBONE_NICENESS, ready_file=ready))
        for projection in PROJECTIONS:
            ready = self.run_dir / f"worker-{projection}.ready"
            specs.append(ComponentSpec(
                f"worker-{projection}", [python, "-m", "projections.worker_main", "--projection", projection,
                                         "--schema", self.settings.schema, "--topic-prefix", self.settings.topic_prefix,
                                         "--ready-file", str(ready)],
                base_env, ready.exists, start_timeout=120, nice=BACKBONE_NICENESS, ready_file=ready))
        port = self.plan.api_port if self.plan.api_port is not None else _default_api_port(self.out)
        port = port or free_port()
        running.api_url = f"http://127.0.0.1:{port}"
        api_env = {**base_env, "GLASSBOX_API_TOKENS": self._api_tokens(), "GLASSBOX_SCHEMA": self.settings.schema,
                   "GLASSBOX_TOPIC_PREFIX": self.settings.topic_prefix,
                   "GLASSBOX_RELAY_STORES": ",".join(self.store_name(i) for i, s in enumerate(owned) if s)}
        log_config = self.run_dir / "api-logging.json"
        log_config.write_text(json.dumps(uvicorn_log_config("api", self.settings.log_level)))
        specs.append(ComponentSpec(
            "api", [python, "-m", "uvicorn", "--factory", "api.app:app_from_env", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log", "--log-level", self.settings.log_level.lower(),
                    "--log-config", str(log_config)],
            api_env, lambda: _http_ok(f"{running.api_url}/health")))
        return specs

    def _api_tokens(self) -> str:
        """GLASSBOX_API_TOKENS, or one token for every scope kept in ``<home>/api-token`` (mode 0600)."""
        given = os.environ.get("GLASSBOX_API_TOKENS", "").strip()
        if given:
            return given
        path = self.settings.home / "api-token"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32) + "\n")
        return f"{path.read_text().strip()}:forensics:read,portfolio:read,metrics:read"

    def _start_feeds(self, stop: threading.Event) -> list[threading.Thread]:
        client = redis.Redis.from_url(self._running.redis_url)
        plan = self.plan
        publisher = TickPublisher(client, self.keys, plan.symbols)
        sources = bool(plan.bundled) + bool(plan.synthetic) + bool(plan.user_data)
        share = plan.rate / sources
        feeds: list[PacedFeed] = []
        if plan.bundled:
            offset_key = f"{self.keys.prefix}feed:bundled:offset"
            feeds.append(PacedFeed(publisher, bundled_ticks(plan.bundled), share, client, offset_key))
        if plan.synthetic:
            interval = int(1e9 * len(plan.synthetic) / share)
            feed = SyntheticFeed(plan.synthetic, seed=plan.seed, start_ns=time.time_ns(), tick_interval_ns=interval)
            feeds.append(PacedFeed(publisher, feed.ticks(sys.maxsize), share))
        if plan.user_data is not None:
            offset_key = f"{self.keys.prefix}feed:file:{plan.user_data.path.name}:offset"
            feeds.append(PacedFeed(publisher, iter(plan.user_data.ticks), share, client, offset_key))
        threads = [threading.Thread(target=f.run, args=(stop,), name="feed", daemon=True) for f in feeds]
        for thread in threads:
            thread.start()
        return threads

    def _print_started(self, owned: list[list[str]]) -> None:
        r, s = self._running, self.settings
        self.out(f"redis      {redact_url(r.redis_url)}{'' if s.redis_url else ' (embedded)'}")
        self.out(f"kafka      {r.kafka_servers}{'' if s.kafka_bootstrap_servers else ' (embedded)'}")
        self.out(f"postgresql {redact_url(r.database_url)}{'' if s.database_url else ' (embedded)'}")
        shards = sum(1 for o in owned if o)
        self.out(f"{len(self.plan.symbols)} symbols on {shards} shard(s), one actor each; logs in {self.log_dir}")
        self.out(f"API        {r.api_url}  (try: curl -H \"Authorization: Bearer $(cat {s.home / 'api-token'})\" "
                 f"{r.api_url}/api/v1/decisions?limit=1)")

    # -- running ---------------------------------------------------------------

    def _watch(self, stop: threading.Event, owned: list[list[str]]) -> None:
        client = redis.Redis.from_url(self._running.redis_url)
        started = time.monotonic()
        last_ticks, last_at = 0, started
        try:
            while not stop.wait(1.0):
                for component in self._running.components:
                    happened = component.check()
                    if happened:
                        self.out(happened)
                        if "restarted" in happened:
                            self._record(lambda run, c=component: run.component_restarted(c.name, None, c.restarts))
                now = time.monotonic()
                progress = self._progress(client, owned)
                progress.ticks_per_s = max(progress.ticks - last_ticks, 0) / (now - last_at)
                last_ticks, last_at = progress.ticks, now
                self.out(progress.line(now - started))
                self._write_status(progress)
                if self.plan.duration is not None and now - started >= self.plan.duration:
                    return
        finally:
            client.close()

    def _progress(self, client: redis.Redis, owned: list[list[str]]) -> Progress:
        progress = Progress()
        for i, symbols in enumerate(owned):
            if not symbols:
                continue
            metrics = {k.decode(): v for k, v in client.hgetall(shard_metrics_key(self.store_name(i))).items()}
            progress.ticks += int(metrics.get("ticks", 0))
            progress.decisions += int(metrics.get("decisions", 0))
            progress.dead_letters += int(metrics.get("dead_letters", 0))
            progress.latency_us_p99 = max(progress.latency_us_p99, float(metrics.get("latency_us_p99", 0)))
            progress.relay_lag += self._relay_lag(client, i)
        progress.forensics_lag = self._forensics_lag()
        return progress

    def _relay_lag(self, client: redis.Redis, shard: int) -> int:
        store = self.store_name(shard)
        head = int(client.get(f"{{{store}}}:seq") or 0)
        return max(head - RelayPosition(client, store, "relay").get(), 0)

    def _forensics_lag(self) -> int | None:
        """Decisions' messages not yet explained, from the API's /metrics (None when unreadable)."""
        lags = self._metric_values("glassbox_forensics_lag_messages")
        return int(lags[0]) if lags else None

    def _projections_lag(self) -> int | None:
        """Messages every projection group has yet to process, summed (None when unreadable)."""
        lags = self._metric_values("glassbox_consumer_lag_messages{")
        return int(sum(lags)) if lags else None

    def _metric_values(self, prefix: str) -> list[float]:
        token = self._api_tokens().split(":", 1)[0]
        try:
            text = _http_get(f"{self._running.api_url}/metrics", token)
        except OSError:
            return []
        return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]

    def _write_status(self, progress: Progress) -> None:
        status = {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "api_url": self._running.api_url,
            "redis_url": redact_url(self._running.redis_url),
            "kafka_servers": self._running.kafka_servers,
            "database_url": redact_url(self._running.database_url),
            "components": [{"name": c.name, "pid": c.pid, "state": c.state, "restarts": c.restarts}
                           for c in self._running.components],
            "progress": asdict(progress),
        }
        if self._components_client is not None:  # for the API's /metrics
            try:
                self._components_client.hset(self.components_key, mapping={
                    c["name"]: json.dumps(c) for c in status["components"]})  # type: ignore[union-attr]
            except redis.RedisError:
                pass  # the file below still tells; /metrics catches up next second
        path = self.run_dir / "status.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status, indent=2))
        temporary.replace(path)

    # -- stopping --------------------------------------------------------------

    def _drain(self, owned: list[list[str]]) -> None:
        client = redis.Redis.from_url(self._running.redis_url)
        by_name = {c.name: c for c in self._running.components}
        deadline = time.monotonic() + self.plan.drain_timeout
        try:
            self.out("draining: shards finish the published ticks ...")
            _wait(lambda: self._ticks_pending(client) == 0, deadline)
            for name in [n for n in by_name if n.startswith("shard-")]:
                by_name[name].stop()
            self.out("draining: relays catch up with the event stores ...")
            _wait(lambda: all(self._relay_lag(client, i) == 0 for i, o in enumerate(owned) if o), deadline)
            for name in [n for n in by_name if n.startswith("relay-")]:
                by_name[name].stop()
            self.out("draining: projections catch up with the topics ...")
            # The broker's end offsets can trail just-acknowledged messages for a moment (seen with
            # the embedded one): "caught up" must hold on several reads a second apart.
            caught_up = _wait(lambda: _holds(lambda: self._projections_lag() == 0, times=3, every=1.0), deadline)
            if not caught_up:
                self.out(f"warning: projections still {self._projections_lag()} messages behind after "
                         f"{self.plan.drain_timeout:g} s; they resume from their stored offsets at the next start")
            self._write_status(self._progress(client, owned))
        finally:
            client.close()
            self._record(lambda run: run.stopped("signal or duration"))

    def _ticks_pending(self, client: redis.Redis) -> int:
        pending = 0
        for symbol in self.plan.symbols:
            try:
                for group in client.xinfo_groups(self.keys.stream(symbol)):
                    pending += int(group.get("lag") or 0) + int(group.get("pending") or 0)
            except redis.ResponseError:
                continue  # no stream yet: nothing was published for this symbol
        return pending


def read_status(home: Path) -> dict[str, object]:
    """The running supervisor's status file, or a GlassboxError saying why there is none."""
    path = home / "run" / "status.json"
    if not path.exists():
        raise GlassboxError(f"no running system found ({path} does not exist): start one with `glassbox up`")
    status = json.loads(path.read_text())
    try:
        os.kill(int(status["pid"]), 0)
    except (ProcessLookupError, ValueError):
        raise GlassboxError(f"the system that wrote {path} is no longer running (pid {status['pid']})") from None
    return status


@contextlib.contextmanager
def _named(component: str, context: contextlib.AbstractContextManager[str]) -> Iterator[str]:
    """Prefix start-up errors of a service with its name (the failure message names the component)."""
    try:
        value = context.__enter__()
    except GlassboxError as error:
        raise ComponentFailed(component, f"{component}: {error}") from error
    try:
        yield value
    except BaseException:
        if not context.__exit__(*sys.exc_info()):
            raise
    else:
        context.__exit__(None, None, None)


DEFAULT_API_PORT = 8000


def _default_api_port(out: Callable[[str], None]) -> int:
    """8000 when it is free, else 0 (any free port), saying so."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_API_PORT))
        except OSError:
            out(f"port {DEFAULT_API_PORT} is taken: the API takes a free one (choose with --api-port)")
            return 0
    return DEFAULT_API_PORT


def _holds(check: Callable[[], bool], times: int, every: float) -> bool:
    """``check()`` true ``times`` times in a row, ``every`` seconds apart."""
    for attempt in range(times):
        if attempt:
            time.sleep(every)
        if not check():
            return False
    return True


def _wait(done: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if done():
                return True
        except Exception:  # noqa: BLE001 - a source that cannot answer yet: ask again
            pass
        time.sleep(0.2)
    return False


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
        return response.status == 200


def _http_get(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own loopback URL
        return response.read().decode()
