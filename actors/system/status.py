"""What a running system reports: a progress line a second, ``<home>/run/status.json`` and the components hash.

:class:`ProgressProbe` reads the figures straight from their owners: each
shard's published metrics, each store's log head against its relay's
position, and each projection group's stored offsets against the topics'
ends (:mod:`projections.lag`). :class:`StatusBoard` publishes them for
``glassbox status`` (the file) and the API's ``/metrics`` (the hash).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from actors.shard_metrics import shard_metrics_key
from actors.system.components import Component
from actors.system.layout import ServiceUrls
from backbone.relay import RelayPosition
from backbone.topics import TopicSettings
from edge.store_layout import log_head
from edge.system_keys import SystemKeys
from glassbox import GlassboxError, redact_url
from projections.lag import GroupLags, LagReader, PartitionLag

__all__ = ["Progress", "ProgressProbe", "StatusBoard", "read_status"]


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


class ProgressProbe:
    """Samples the running system's figures from the shards' metrics, the stores and the projection groups.

    The groups' lags are read over one PostgreSQL connection and one Kafka client
    kept for the probe's life (:class:`projections.lag.LagReader`), in an event
    loop of its own: the probe asks every second. :meth:`close` when done.
    """

    def __init__(self, client: redis.Redis, services: ServiceUrls, stores: list[str], schema: str,
                 topics: TopicSettings) -> None:
        self._client = client
        self.stores = stores
        self._loop = asyncio.new_event_loop()
        self._lags = LagReader(services.database_url, schema, services.kafka_servers, topics)

    def sample(self) -> Progress:
        """Counters summed over the shards, the worst shard's p99, relay lag summed, forensics lag."""
        progress = Progress()
        for store in self.stores:
            metrics = {k.decode(): v for k, v in self._client.hgetall(shard_metrics_key(store)).items()}
            progress.ticks += int(metrics.get("ticks", 0))
            progress.decisions += int(metrics.get("decisions", 0))
            progress.dead_letters += int(metrics.get("dead_letters", 0))
            progress.latency_us_p99 = max(progress.latency_us_p99, float(metrics.get("latency_us_p99", 0)))
            progress.relay_lag += self.relay_lag(store)
        lags = self.group_lags()
        progress.forensics_lag = None if lags is None else lags.behind["forensics"]
        return progress

    def relay_lag(self, store: str) -> int:
        """Committed events of ``store`` its relay has not yet had acknowledged."""
        return max(log_head(self._client, store) - RelayPosition(self._client, store, "relay").get(), 0)

    def group_lags(self) -> GroupLags | None:
        """Every projection group's lag, or None while the broker or the database cannot answer."""
        try:
            return self._loop.run_until_complete(asyncio.wait_for(self._lags.group_lags(), 5.0))
        except Exception:  # noqa: BLE001 - unreadable for now: the line shows "?", the drain asks again
            return None

    def partition_lags(self) -> list[PartitionLag] | None:
        """Where every group stands on every partition, or None while the broker or the database cannot answer."""
        try:
            lags, _ = self._loop.run_until_complete(asyncio.wait_for(self._lags.partition_lags(), 10.0))
        except Exception:  # noqa: BLE001 - the drain reports the groups as unreadable
            return None
        return lags

    def close(self) -> None:
        """Close the kept connection and Kafka client, and the probe's event loop."""
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._lags.close(), 5.0))
        except Exception:  # noqa: BLE001 - closing what a dead service held: nothing more to do
            pass
        finally:
            self._loop.close()


class StatusBoard:
    """Publishes the status of a run: ``<run_dir>/status.json`` and the components hash in Redis."""

    def __init__(self, run_dir: Path, keys: SystemKeys) -> None:
        self.path = run_dir / "status.json"
        self._keys = keys
        self._client: redis.Redis | None = None

    def attach(self, redis_url: str) -> None:
        """Publish into this Redis from now on; a previous run's components are not ours."""
        # Bounded like the supervisor's own client: the watch loop publishes every second and must
        # not hang on a paused Redis (the service watch says it is down).
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._client.delete(self._keys.components)

    def publish(self, services: ServiceUrls, api_url: str, components: list[Component], progress: Progress,
                stuck: list[str] | None = None) -> None:
        """Write the status file (atomically) and the components hash (best effort).

        ``stuck``: what the drain left unfinished (:class:`actors.system.stuck.Stuck` lines).
        """
        listed = [{"name": c.name, "pid": c.pid, "state": c.state, "restarts": c.restarts} for c in components]
        status = {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "api_url": api_url,
            "redis_url": redact_url(services.redis_url),
            "kafka_servers": services.kafka_servers,
            "database_url": redact_url(services.database_url),
            "components": listed,
            "progress": asdict(progress),
            "stuck": stuck or [],
        }
        if self._client is not None and listed:  # for the API's /metrics
            try:
                self._client.hset(self._keys.components, mapping={c["name"]: json.dumps(c) for c in listed})
            except redis.RedisError:
                pass  # the file below still tells; /metrics catches up next second
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status, indent=2))
        temporary.replace(self.path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def read_status(home: Path) -> dict[str, object]:
    """The running supervisor's status file.

    Raises:
        GlassboxError: there is none, or the supervisor that wrote it is gone (the message says which).
    """
    path = home / "run" / "status.json"
    if not path.exists():
        raise GlassboxError(f"no running system found ({path} does not exist): start one with `glassbox up`")
    status = json.loads(path.read_text())
    try:
        os.kill(int(status["pid"]), 0)
    except (ProcessLookupError, ValueError):
        left = status.get("stuck") or []
        said = "".join(f"\n  stuck: {line}" for line in left)
        raise GlassboxError(f"the system that wrote {path} is no longer running (pid {status['pid']})"
                            + (f"; its drain left work unfinished:{said}" if left else "")) from None
    return status
