"""The services a system runs on: Redis, the Kafka-protocol broker and PostgreSQL, embedded or given by URL.

:func:`bring_up_services` starts them for ``glassbox up``, in order and each
behind its health check, then readies them for the run (migrations; after a
fresh embedded broker, a re-publish of the whole log; the first model).
:func:`system_redis` and :func:`system_backbone` find them for commands that
work on an existing system's data: the ones given by URL, else those of a
``glassbox up`` running from this home, else embedded ones started on this
home's data (never a second server on a running one's data directory).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.system.components import ComponentFailed
from actors.system.layout import BACKBONE_NICENESS, ServiceUrls
from actors.system.status import read_status
from aggregates.registry import ModelRegistry
from actors.system.service_watch import WatchedService
from backbone.broker import BrokerSettings, EmbeddedBroker, broker_answers
from backbone.relay import RelayPosition
from edge.embedded_server import given_or_embedded
from edge.redis_server import EmbeddedRedis, redis_answers, wait_until_loaded
from edge.system_keys import SystemKeys
from glassbox import GlassboxError, Settings
from projections.postgres_server import EmbeddedPostgres, PostgresServerSettings, postgres_answers, reachable_data_dir

__all__ = ["CHILD_TIMEOUT_S", "MIGRATIONS_TIMEOUT_S", "bring_up_services", "fail_if_exited",
           "republish_into_fresh_broker", "system_backbone", "system_redis"]

CHILD_TIMEOUT_S = 15.0
"""Seconds a short child (the offsets reset) may take: it runs on the watch loop after a broker restart,
and a PostgreSQL that hangs must fail that restart (retried with backoff), not freeze the watch."""
MIGRATIONS_TIMEOUT_S = 300.0
"""Seconds the migrations may take at start-up (a large archive's new index is built then)."""
_REDIS_TIMEOUT_S = 5.0


def bring_up_services(stack: ExitStack, settings: Settings, shards: int, seed: int, out: Callable[[str], None],
                      on_redis: Callable[[str], None] = lambda url: None) -> tuple[ServiceUrls, list[WatchedService]]:
    """Start (or attach to) Redis, the broker and PostgreSQL; stopped when ``stack`` closes.

    ``on_redis(url)`` runs as soon as Redis answers, so whatever fails after
    can be recorded there. The layout check refuses a shard count other than
    the one this system's desks were built with. Returns where they answer and
    each as a :class:`WatchedService` (embedded ones with their server, to be
    restarted; given ones with a probe).

    Raises:
        ComponentFailed: a service did not start, or the system cannot run as asked; names which.
    """
    keys = SystemKeys(settings.namespace)
    out("starting redis ...")
    redis_server = EmbeddedRedis(settings.redis_dir, progress=lambda line: out(f"redis: {line}"))
    redis_url = stack.enter_context(_named("redis", _redis(settings, redis_server, out)))
    _check_layout(redis_url, keys, shards)
    on_redis(redis_url)
    out("starting the kafka-protocol broker ...")
    broker = EmbeddedBroker(settings.home / "broker", BrokerSettings(niceness=BACKBONE_NICENESS))
    kafka_servers = stack.enter_context(_named("broker", given_or_embedded(settings.kafka_bootstrap_servers, broker)))
    out("starting postgresql ...")
    postgres = EmbeddedPostgres(reachable_data_dir(settings.home / "postgres"),
                                PostgresServerSettings(niceness=BACKBONE_NICENESS))
    database_url = stack.enter_context(_named("postgresql", given_or_embedded(settings.database_url, postgres)))
    services = ServiceUrls(redis_url, kafka_servers, database_url)
    out("applying migrations ...")
    _run_child("migrations", ["projections.migrate", "--schema", settings.schema], database_url,
               timeout=MIGRATIONS_TIMEOUT_S)
    if not settings.kafka_bootstrap_servers:
        republish_into_fresh_broker(services, keys, shards, settings)
    if ModelRegistry(settings.model_dir).latest() is None:
        from actors.system.training import train_specialists

        out("training the regime specialists on the bundled bars (first run only) ...")
        train_specialists(ModelRegistry(settings.model_dir), seed=seed)
    watched = [
        WatchedService("redis", redis_url, None if settings.redis_url else redis_server,
                       answers=lambda: redis_answers(redis_url, timeout=2.0)),
        WatchedService("broker", kafka_servers, None if settings.kafka_bootstrap_servers else broker,
                       answers=lambda: broker_answers(kafka_servers, timeout=2.0), probe_every=5.0),
        WatchedService("postgresql", database_url, None if settings.database_url else postgres,
                       answers=lambda: postgres_answers(database_url, timeout=2)),
    ]
    return services, watched


def fail_if_exited(watched: list[WatchedService]) -> None:
    """During start-up: raise if an embedded service's process has exited (nothing restarts it before the run).

    Raises:
        ComponentFailed: names the service, its exit code and the end of its log.
    """
    for service in watched:
        server = service.server
        code = None if server is None else server.exit_code
        if server is not None and code is not None:
            raise ComponentFailed(service.name, f"{service.name}: the embedded {service.name} exited with code {code} "
                                                f"during start-up; end of {server.logfile}:\n{server.log_tail()}")


def _bounded_redis(url: str) -> redis.Redis:
    """A client whose calls fail after a few seconds instead of blocking on a paused or partitioned Redis."""
    return redis.Redis.from_url(url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0))


@contextlib.contextmanager
def _redis(settings: Settings, server: EmbeddedRedis, out: Callable[[str], None]) -> Iterator[str]:
    """REDIS_URL once it has loaded its data set, else ``server``; a loading one is waited for with progress."""
    if settings.redis_url:
        wait_until_loaded(settings.redis_url, progress=lambda line: out(f"redis: {line}"))
    with given_or_embedded(settings.redis_url, server) as url:
        yield url


def _check_layout(redis_url: str, keys: SystemKeys, shards: int) -> None:
    client = _bounded_redis(redis_url)
    try:
        recorded = keys.recorded_shards(client)
        if recorded is not None and recorded != shards:
            raise ComponentFailed(
                "layout", f"layout: this system ran with --shards {recorded} and its desks live in those shards' "
                f"event stores; run with --shards {recorded}, or start a new system with another "
                "GLASSBOX_HOME (or GLASSBOX_NAMESPACE)")
        keys.record_shards(client, shards)
    finally:
        client.close()


def republish_into_fresh_broker(services: ServiceUrls, keys: SystemKeys, shards: int, settings: Settings) -> None:
    """The embedded broker starts empty: relay every store from the start, projections from offset 0.

    Run at start-up and after the supervisor restarted a broker that died (with the relays and
    workers stopped meanwhile, so none writes a position of the old broker after it).

    Without this, a second ``glassbox up`` would have its relays continue where they stopped
    (the events before are in no topic any more) and its workers seek to offsets of topics
    that no longer exist, skipping messages. Projections are idempotent, so re-sending all
    costs time, never a duplicate row.
    """
    client = _bounded_redis(services.redis_url)
    try:
        for i in range(shards):
            RelayPosition(client, keys.shard_store(i), "relay").set(0)
    finally:
        client.close()
    _run_child("offsets", ["projections.offsets", "--schema", settings.schema,
                           "--topic-prefix", settings.topic_prefix], services.database_url)


def _run_child(name: str, module_args: list[str], database_url: str, timeout: float = CHILD_TIMEOUT_S) -> None:
    """The Python module ``module_args`` (run as ``python -m``) against ``database_url``, killed after ``timeout`` seconds.

    Raises:
        ComponentFailed: it failed (its error quoted) or did not finish in time.
    """
    try:
        done = subprocess.run([sys.executable, "-m", *module_args], env={**os.environ, "DATABASE_URL": database_url},
                              capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise ComponentFailed(name, f"{name}: did not finish within {timeout:g} s (is PostgreSQL answering? "
                                    "check with `glassbox doctor`)") from error
    if done.returncode:
        raise ComponentFailed(name, f"{name}: {(done.stderr or done.stdout).strip()}")


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


@contextlib.contextmanager
def system_redis(settings: Settings) -> Iterator[str]:
    """The Redis of this system: REDIS_URL, the running system's, or the embedded one started on its data."""
    if settings.redis_url:
        yield settings.redis_url
        return
    try:
        status = read_status(settings.home)
    except GlassboxError:
        with EmbeddedRedis(settings.redis_dir) as server:
            yield server.url
        return
    yield str(status["redis_url"])


@contextlib.contextmanager
def system_backbone(settings: Settings) -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap servers, PostgreSQL URL) of this system, as :func:`system_redis` chooses Redis."""
    try:
        status = read_status(settings.home)
    except GlassboxError:
        status = None
    with contextlib.ExitStack() as stack:
        kafka = settings.kafka_bootstrap_servers or (status and str(status["kafka_servers"])) or \
            stack.enter_context(EmbeddedBroker(settings.home / "broker-backtest")).bootstrap_servers
        database_url = settings.database_url or (status and str(status["database_url"])) or \
            stack.enter_context(EmbeddedPostgres(reachable_data_dir(settings.home / "postgres"))).url
        yield kafka, database_url
