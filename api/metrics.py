"""``/metrics``: the system's health in Prometheus text format, gathered at scrape time.

Sources, each read-only: the relays' and shards' published metrics in Redis
(relayed events, lag, circuit state and consecutive send failures; per shard
the tick → committed latency histogram, limit utilisation and price alerts by
severity), the tick dead letters by reason, the kill switch, the projections'
tracking rows in PostgreSQL against the topics' end offsets in Kafka
(consumer lag per group), the dead-letter topics' end offsets (dead letters
per group), and how far forensics trails the decisions (seconds of event
time). A source that is down is reported as ``glassbox_source_up{source=...} 0``,
never as an error. ``deploy/prometheus/alerts.yml`` holds the alerting rules
over these names (``tests/api/test_alert_rules.py`` runs each against a real scrape).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson
import psycopg
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from psycopg_pool import AsyncConnectionPool

from backbone.circuit import CircuitState
from backbone.relay import RelayKeys
from backbone.topics import TopicSettings
from edge.shared_book import TradingState
from edge.store_layout import StoreKeys
from projections.lag import EndOffsets, forensics_trailing_s, group_lags

__all__ = ["MetricsSources", "render_metrics"]

@dataclass(frozen=True)
class MetricsSources:
    """Where ``/metrics`` looks."""

    pool: AsyncConnectionPool
    schema: str
    redis: aioredis.Redis | None
    relay_stores: Sequence[str]
    kafka_servers: str | None
    topics: TopicSettings
    relay_name: str = "relay"
    components_key: str | None = None
    """Redis hash where ``glassbox up``'s supervisor publishes its components (name → JSON)."""
    trading_key: str | None = None
    """Where the kill switch's state is (``SystemKeys.trading_state``)."""
    tick_dead_letter_counts_key: str | None = None
    """Hash of tick dead letters per reason (``TickKeys.dead_letter_counts``)."""


async def render_metrics(sources: MetricsSources, timeout: float = 2.0) -> bytes:
    """The Prometheus text exposition of every metric (see the module docstring)."""
    families: list[Metric] = []
    up = GaugeMetricFamily("glassbox_source_up", "Whether /metrics could read a source", labels=["source"])
    for name, gather in (("redis", _relay_metrics), ("kafka", _kafka_metrics)):
        try:
            families += await asyncio.wait_for(gather(sources), timeout)
            up.add_metric([name], 1)
        except (OSError, KafkaError, aioredis.RedisError, psycopg.Error, asyncio.TimeoutError, RuntimeError):
            up.add_metric([name], 0)
    families.append(up)
    registry = CollectorRegistry()
    registry.register(_Static(families))
    return generate_latest(registry)


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


async def _relay_metrics(sources: MetricsSources) -> list[Metric]:
    if sources.redis is None:
        return []
    relayed = GaugeMetricFamily("glassbox_relay_events_total", "Events the relay has had acknowledged", labels=["store"])
    lag = GaugeMetricFamily("glassbox_relay_lag_events", "Committed events not yet relayed", labels=["store"])
    circuit = GaugeMetricFamily(
        "glassbox_relay_circuit_state", "Relay circuit breaker: 0 closed, 1 half-open, 2 open", labels=["store"]
    )
    opened = GaugeMetricFamily("glassbox_relay_circuit_opened_total", "Times the circuit opened", labels=["store"])
    failing = GaugeMetricFamily("glassbox_relay_consecutive_failures",
                                "Sends to the broker failed since the last that succeeded", labels=["store"])
    for store in sources.relay_stores:
        keys = RelayKeys(store, sources.relay_name)
        head = int(await sources.redis.get(StoreKeys(store).seq) or 0)
        position = int(await sources.redis.get(keys.position) or 0)
        published = await sources.redis.hgetall(keys.metrics)
        state = (published.get(b"circuit_state") or b"closed").decode()
        relayed.add_metric([store], float(published.get(b"relayed_total") or 0))
        lag.add_metric([store], max(head - position, 0))
        circuit.add_metric([store], CircuitState.code.get(state, 0))
        opened.add_metric([store], float(published.get(b"circuit_opened_total") or 0))
        failing.add_metric([store], float(published.get(b"consecutive_failures") or 0))
    families: list[Metric] = [relayed, lag, circuit, opened, failing]
    families += await _shard_metrics(sources)
    if sources.tick_dead_letter_counts_key:
        dead = GaugeMetricFamily("glassbox_tick_dead_letters", "Ticks dead-lettered, by reason", labels=["reason"])
        for reason, n in (await sources.redis.hgetall(sources.tick_dead_letter_counts_key)).items():
            dead.add_metric([reason.decode(errors="replace")], float(n))
        families.append(dead)
    if sources.components_key:
        restarts = GaugeMetricFamily("glassbox_component_restarts_total",
                                     "Times the supervisor restarted a component", labels=["component"])
        running = GaugeMetricFamily("glassbox_component_running", "1 while a component's process runs",
                                    labels=["component"])
        for name, text in (await sources.redis.hgetall(sources.components_key)).items():
            component = orjson.loads(text)
            restarts.add_metric([name.decode()], float(component.get("restarts", 0)))
            running.add_metric([name.decode()], 1.0 if component.get("state") == "running" else 0.0)
        families += [restarts, running]
    if sources.trading_key:
        families += _trading_metrics(await sources.redis.get(sources.trading_key))
    return families


async def _shard_metrics(sources: MetricsSources) -> list[Metric]:
    """Per shard (the relay stores are the shards' stores): latency histogram, limit utilisation, alerts."""
    latency = HistogramMetricFamily("glassbox_tick_latency_seconds", "Tick sent → decision committed, per shard",
                                    labels=["shard"])
    utilisation = GaugeMetricFamily("glassbox_risk_limit_utilisation",
                                    "Use of a risk limit as a fraction of it (1 = at the limit; concentration is the "
                                    "shard's largest position)", labels=["shard", "limit"])
    alerts = GaugeMetricFamily("glassbox_price_alerts_total", "Price alerts committed, by severity",
                               labels=["shard", "severity"])
    for store in sources.relay_stores:
        published = await sources.redis.hgetall(StoreKeys(store).shard_metrics)
        if not published:
            continue
        shard = store.rsplit(":", 1)[-1]
        histogram = _json(published.get(b"latency_histogram"))
        if histogram:
            bounds = [*(repr(float(b)) for b in histogram["le"]), "+Inf"]
            latency.add_metric([shard], list(zip(bounds, histogram["cumulative"])), histogram["sum"])
        for limit, used in (_json(published.get(b"limit_utilisation")) or {}).items():
            utilisation.add_metric([shard, limit], float("inf") if used is None else float(used))
        for severity in ("warning", "critical"):
            alerts.add_metric([shard, severity], float((_json(published.get(b"alerts")) or {}).get(severity, 0)))
    return [latency, utilisation, alerts]


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _trading_metrics(raw: bytes | None) -> list[Metric]:
    halted = GaugeMetricFamily("glassbox_trading_halted",
                               "1 while trading is halted (the kill switch; an unreadable state counts as halted)")
    flatten = GaugeMetricFamily("glassbox_trading_flatten", "1 while a halt asks every desk to close its position")
    try:
        state = TradingState() if raw is None else TradingState.from_dict(orjson.loads(raw))
    except (ValueError, orjson.JSONDecodeError):
        state = TradingState(halted=True)
    halted.add_metric([], 1.0 if state.halted else 0.0)
    flatten.add_metric([], 1.0 if state.flatten else 0.0)
    return [halted, flatten]


async def _kafka_metrics(sources: MetricsSources) -> list[Metric]:
    if sources.kafka_servers is None:
        return []
    async with sources.pool.connection() as conn, EndOffsets(sources.kafka_servers) as offsets:
        lags = await group_lags(conn, sources.schema, offsets, sources.topics)
    lag = GaugeMetricFamily("glassbox_consumer_lag_messages", "Messages a projection has yet to process", labels=["group"])
    dead = GaugeMetricFamily("glassbox_dead_letters", "Messages in a group's dead-letter topic", labels=["group"])
    for group, behind in lags.behind.items():
        lag.add_metric([group], behind)
        dead.add_metric([group], lags.dead_letters[group])
    forensics = GaugeMetricFamily("glassbox_forensics_lag_messages", "Decisions' messages awaiting forensics")
    forensics.add_metric([], lags.behind["forensics"])
    async with sources.pool.connection() as conn:
        trailing = await forensics_trailing_s(conn, sources.schema)
    seconds = GaugeMetricFamily("glassbox_forensics_lag_seconds",
                                "Event time between the newest decision projected and the newest explained")
    seconds.add_metric([], trailing)
    return [lag, dead, forensics, seconds]
