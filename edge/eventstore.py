"""Persistence module for the ``eventsourcing`` library over Redis Streams.

A sibling of ``eventsourcing.popo``, ``.sqlite`` and ``.postgres``, selected the
same way: ``PERSISTENCE_MODULE=edge.eventstore``. Settings read from the
eventsourcing ``Environment``: ``REDIS_URL`` (required), ``REDIS_KEY_PREFIX``
(the store's name, default ``glassbox``), ``REDIS_MAX_CONNECTIONS`` (optional
pool cap; callers then wait for a free connection) and ``ORIGINATOR_ID_TYPE``
(``uuid`` or ``text``, as in the sqlite and postgres modules).

Key layout of a store named P (every key carries the hash tag ``{P}``, so one
Lua script may touch all of them on Redis Cluster)::

    {P}:seq               string  last notification id (1, 2, 3, ... gapless)
    {P}:log               stream  entry <notification_id>-0: o, v, t, s
                                  (originator id, version, topic, state)
    {P}:agg:<id>          stream  entry <version>-1: n (notification id);
                                  the payload lives only in the log
    {P}:<purpose>:<id>    stream  entry <version>-1: t, s (plain aggregate
                                  recorders, e.g. purpose "snapshots")
    {P}:tracking          hash    application name -> max notification id

Writes are one Lua script that validates everything before writing anything
(Lua scripts are not rolled back), so a refusal leaves no trace. Scripts use
the ``#!lua`` shebang, so they need Redis 7 or later.

This module is the store's settings, its datastore (client, scripts, error
translation), the write side of each recorder and the factory; the recorders'
reads (events, notifications, subscriptions, raw log reads, tracking
positions) are the bases they inherit from :mod:`edge.eventstore_reads`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from uuid import UUID

import redis
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from edge.eventstore_reads import (
    READ_LOG_FLAT_LUA,
    SELECT_EVENTS_LUA,
    AggregateReads,
    ApplicationLogReads,
    TrackingReads,
)
from edge.store_layout import StoreKeys

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "Factory",
    "RedisAggregateRecorder",
    "RedisApplicationRecorder",
    "RedisDatastore",
    "RedisFactory",
    "RedisProcessRecorder",
    "RedisStoreSettings",
    "RedisTrackingRecorder",
]

_T = TypeVar("_T")
_INTEGRITY = "INTEGRITY"  # prefix of the error replies our scripts refuse with
_APPLICATION_FAMILY = "agg"
# Errors that say the server cannot serve us now, not that the request is wrong.
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)

# KEYS: seq, log, tracking, then one per aggregate stream.
# ARGV: mode ("log" | "plain"), tracking name ("" = none), tracking id,
#       then five per event: KEYS index, version, originator id, topic, state.
# Returns the first new notification id (0 when none were assigned).
_INSERT_LUA = """#!lua
local mode, name, tid = ARGV[1], ARGV[2], tonumber(ARGV[3])
if name ~= '' then
  local current = redis.call('HGET', KEYS[3], name)
  if current and tonumber(current) >= tid then
    return redis.error_reply('INTEGRITY tracking id ' .. ARGV[3] .. ' of ' ..
      name .. ' is not greater than ' .. current)
  end
end
local n = (#ARGV - 3) / 5
local top = {}
for i = 0, n - 1 do
  local b = 4 + i * 5
  local key = KEYS[tonumber(ARGV[b])]
  local version = tonumber(ARGV[b + 1])
  local last = top[key]
  if last == nil then
    local entry = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    last = entry and tonumber(string.match(entry[1], '^%d+')) or -1
  end
  if version <= last then
    return redis.error_reply('INTEGRITY version ' .. ARGV[b + 1] .. ' of ' ..
      key .. ' is not greater than ' .. last)
  end
  top[key] = version
end
local first = 0
if mode == 'log' and n > 0 then
  first = redis.call('INCRBY', KEYS[1], n) - n + 1
end
for i = 0, n - 1 do
  local b = 4 + i * 5
  local key = KEYS[tonumber(ARGV[b])]
  local id = ARGV[b + 1] .. '-1'
  if mode == 'log' then
    local nid = string.format('%d', first + i)
    redis.call('XADD', KEYS[2], nid .. '-0', 'o', ARGV[b + 2], 'v', ARGV[b + 1],
      't', ARGV[b + 3], 's', ARGV[b + 4])
    redis.call('XADD', key, id, 'n', nid)
  else
    redis.call('XADD', key, id, 't', ARGV[b + 3], 's', ARGV[b + 4])
  end
end
if name ~= '' then
  redis.call('HSET', KEYS[3], name, ARGV[3])
end
return first
"""


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn redis-py errors into eventsourcing's persistence errors (the one place)."""
    try:
        yield
    except _UNAVAILABLE as e:
        raise OperationalError(str(e)) from e
    except redis.ResponseError as e:
        if str(e).startswith(_INTEGRITY):
            raise IntegrityError(str(e)) from e
        raise DatabaseError(str(e)) from e
    except redis.DataError as e:
        raise DataError(str(e)) from e
    except redis.RedisError as e:
        raise PersistenceError(str(e)) from e


@dataclass(frozen=True)
class RedisStoreSettings:
    """Where a store lives and how it is reached; ``url`` is kept out of repr."""

    url: str = field(repr=False)
    key_prefix: str = "glassbox"
    max_connections: int | None = None
    originator_id_type: Literal["uuid", "text"] = "uuid"

    def __post_init__(self) -> None:
        if not self.key_prefix or "{" in self.key_prefix or "}" in self.key_prefix:
            msg = f"REDIS_KEY_PREFIX must be non-empty, no braces: {self.key_prefix!r}"
            raise OSError(msg)
        if self.max_connections is not None and self.max_connections < 1:
            msg = f"REDIS_MAX_CONNECTIONS must be positive: {self.max_connections}"
            raise OSError(msg)
        if self.originator_id_type not in ("uuid", "text"):
            msg = (
                f"ORIGINATOR_ID_TYPE must be uuid or text: {self.originator_id_type!r}"
            )
            raise OSError(msg)

    @classmethod
    def from_env(cls, env: Environment) -> RedisStoreSettings:
        """Read the settings; raises OSError naming the key that is missing or bad."""
        url = env.get(RedisFactory.REDIS_URL)
        if not url:
            msg = (
                f"Redis URL not found in environment with key "
                f"'{RedisFactory.REDIS_URL}': set it to a running Redis, "
                "e.g. redis://127.0.0.1:6379/0"
            )
            raise OSError(msg)
        max_connections_str = env.get(RedisFactory.REDIS_MAX_CONNECTIONS)
        try:
            max_connections = int(max_connections_str) if max_connections_str else None
        except ValueError:
            msg = (
                f"{RedisFactory.REDIS_MAX_CONNECTIONS} must be an integer: "
                f"{max_connections_str!r}"
            )
            raise OSError(msg) from None
        return cls(
            url=url,
            key_prefix=env.get(RedisFactory.REDIS_KEY_PREFIX) or "glassbox",
            max_connections=max_connections,
            originator_id_type=cast(
                "Literal['uuid', 'text']",
                (env.get(RedisFactory.ORIGINATOR_ID_TYPE) or "uuid").lower(),
            ),
        )


class RedisDatastore:
    """The client, key names and scripts that one store's recorders share.

    Writes run once: the client itself never retries, because retrying a
    script whose reply was lost would report a conflict for a write that
    happened. Reads are retried on connection errors with ``read_retry``.
    Both raise eventsourcing persistence errors, never redis-py ones.
    """

    def __init__(
        self, settings: RedisStoreSettings, read_retry: Retry | None = None
    ) -> None:
        pool_class = (
            redis.ConnectionPool
            if settings.max_connections is None
            else redis.BlockingConnectionPool
        )
        pool_options: dict[str, Any] = {
            "decode_responses": False,
            "retry": Retry(NoBackoff(), 0),
        }
        if settings.max_connections is not None:
            pool_options["max_connections"] = settings.max_connections
        self.settings = settings
        self.client = redis.Redis(
            connection_pool=pool_class.from_url(settings.url, **pool_options)
        )
        self.read_retry = read_retry or Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=3
        )
        self.insert_script = self.client.register_script(_INSERT_LUA)
        self.select_events_script = self.client.register_script(SELECT_EVENTS_LUA)
        self.read_log_flat_script = self.client.register_script(READ_LOG_FLAT_LUA)
        self.keys = StoreKeys(settings.key_prefix)

    def stream_key(self, family: str, originator_id: UUID | str) -> str:
        """The key of one aggregate's stream in a key family."""
        return self.keys.stream(family, originator_id)

    def read(self, command: Callable[[redis.Redis], _T]) -> _T:
        """Run an idempotent command, retrying on connection errors."""
        with _translated_errors():
            return self.read_retry.call_with_retry(
                lambda: command(self.client), lambda _error: None
            )

    def write(self, command: Callable[[redis.Redis], _T]) -> _T:
        """Run a command exactly once."""
        with _translated_errors():
            return command(self.client)

    def insert(
        self,
        mode: Literal["log", "plain"],
        family: str,
        stored_events: Sequence[StoredEvent],
        tracking: Tracking | None,
    ) -> int:
        """Run the insert script; returns the first new notification id or 0.

        Raises IntegrityError when a version or the tracking id is refused,
        DataError for a negative version.
        """
        keys: list[str] = [self.keys.seq, self.keys.log, self.keys.tracking]
        args: list[str | int | bytes] = [mode, "", 0]
        if tracking is not None:
            args[1:3] = [tracking.application_name, tracking.notification_id]
        key_index: dict[str, int] = {}
        for event in stored_events:
            if event.originator_version < 0:
                msg = f"originator_version must not be negative: {event}"
                raise DataError(msg)
            originator_id = str(event.originator_id)
            index = key_index.get(originator_id)
            if index is None:
                keys.append(self.stream_key(family, originator_id))
                index = key_index[originator_id] = len(keys)
            args += (index, event.originator_version, originator_id, event.topic)
            args.append(event.state)
        return int(self.write(lambda _: self.insert_script(keys=keys, args=args)))

    def close(self) -> None:
        """Close the client and every pooled connection."""
        self.client.close()
        self.client.connection_pool.disconnect()


class RedisRecorder:
    """Base of the Redis recorders: holds the datastore."""

    def __init__(self, datastore: RedisDatastore) -> None:
        self.datastore = datastore


class RedisAggregateRecorder(RedisRecorder, AggregateReads):
    """Events (or snapshots) in per-aggregate streams, payloads stored inline.

    ``family`` names the key family, e.g. ``snapshots`` for ``{P}:snapshots:<id>``.
    """

    _mode: Literal["log", "plain"] = "plain"

    def __init__(self, datastore: RedisDatastore, family: str = "events") -> None:
        super().__init__(datastore)
        if self._mode == "plain" and family == _APPLICATION_FAMILY:
            msg = f"key family {family!r} is reserved for application recorders"
            raise ValueError(msg)
        self.family = family

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record events atomically; raises IntegrityError on a version conflict."""
        tracking: Tracking | None = kwargs.get("tracking")
        if not stored_events and tracking is None:
            return None
        first = self.datastore.insert(self._mode, self.family, stored_events, tracking)
        if self._mode == "plain" or not stored_events:
            return None
        return list(range(first, first + len(stored_events)))


class RedisApplicationRecorder(RedisAggregateRecorder, ApplicationLogReads):
    """Events in one gapless application log, referenced from per-aggregate streams."""

    _mode: Literal["log", "plain"] = "log"

    def __init__(self, datastore: RedisDatastore) -> None:
        super().__init__(datastore, family=_APPLICATION_FAMILY)

    def forget_history(self, originator_ids: Sequence[UUID | str]) -> None:
        """Drop the log's payloads and all but each aggregate's latest reference.

        For a store whose events are not kept once read (a backtest that was
        not asked to keep them): later inserts still get the next notification
        id and still check versions, but memory stays flat however long the
        run. Reading back what was dropped is no longer possible.
        """

        def trim(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.xtrim(self.datastore.keys.log, maxlen=0, approximate=False)
            for originator_id in originator_ids:
                pipe.xtrim(self.datastore.stream_key(self.family, originator_id), maxlen=1, approximate=False)
            pipe.execute()

        self.datastore.write(trim)


class RedisTrackingRecorder(RedisRecorder, TrackingReads):
    """Tracking positions in the hash ``{P}:tracking``."""

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a position; raises IntegrityError unless it is beyond the last."""
        self.datastore.insert("plain", _APPLICATION_FAMILY, (), tracking)


class RedisProcessRecorder(
    RedisTrackingRecorder, RedisApplicationRecorder, ProcessRecorder
):
    """Application recorder whose inserts may carry a Tracking, written atomically."""


class RedisFactory(InfrastructureFactory[RedisTrackingRecorder]):
    """Makes Redis recorders that share one client; selected by
    ``PERSISTENCE_MODULE=edge.eventstore``.

    Raises OSError when ``REDIS_URL`` is missing or a setting is malformed.
    """

    REDIS_URL = "REDIS_URL"
    REDIS_KEY_PREFIX = "REDIS_KEY_PREFIX"
    REDIS_MAX_CONNECTIONS = "REDIS_MAX_CONNECTIONS"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.datastore = RedisDatastore(RedisStoreSettings.from_env(self.env))

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """A plain recorder over the key family ``purpose`` (e.g. snapshots)."""
        return RedisAggregateRecorder(self.datastore, family=purpose)

    def application_recorder(self) -> ApplicationRecorder:
        """The recorder of the store's application log."""
        cls = self._recorder_class(
            self.APPLICATION_RECORDER_TOPIC, RedisApplicationRecorder
        )
        return cls(self.datastore)

    def tracking_recorder(
        self, tracking_recorder_class: type[RedisTrackingRecorder] | None = None
    ) -> RedisTrackingRecorder:
        """A tracking recorder, of the given class or TRACKING_RECORDER_TOPIC's."""
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, RedisTrackingRecorder
        )
        if not issubclass(cls, RedisTrackingRecorder):
            msg = f"{cls} is not a RedisTrackingRecorder"
            raise TypeError(msg)
        return cls(self.datastore)

    def process_recorder(self) -> ProcessRecorder:
        """A recorder of events and tracking positions in one atomic write."""
        cls = self._recorder_class(self.PROCESS_RECORDER_TOPIC, RedisProcessRecorder)
        return cls(self.datastore)

    def close(self) -> None:
        """Close the shared client."""
        self.datastore.close()

    def _recorder_class(self, topic_key: str, default: type[_T]) -> type[_T]:
        topic = self.env.get(topic_key)
        if not topic:
            return default
        cls = resolve_topic(topic)
        if not (isinstance(cls, type) and issubclass(cls, default)):
            msg = f"{topic_key}={topic!r} is not a subclass of {default.__name__}"
            raise TypeError(msg)
        return cls


Factory = RedisFactory
