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
"""

from __future__ import annotations

from collections import deque
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
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from edge.store_layout import LogEntry, StoreKeys

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
    "RedisSubscription",
    "RedisTrackingRecorder",
]

_T = TypeVar("_T")
# A stream entry as redis-py returns it with decode_responses=False.
_Entry = tuple[bytes, dict[bytes, bytes]]
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

# KEYS: aggregate stream, log. ARGV: min id, max id, "1" for descending, count
# ("0" = all). Returns flat triples: entry id, topic, state.
_SELECT_EVENTS_LUA = """#!lua flags=no-writes
local command, from, to = 'XRANGE', ARGV[1], ARGV[2]
if ARGV[3] == '1' then
  command, from, to = 'XREVRANGE', ARGV[2], ARGV[1]
end
local entries
if ARGV[4] == '0' then
  entries = redis.call(command, KEYS[1], from, to)
else
  entries = redis.call(command, KEYS[1], from, to, 'COUNT', ARGV[4])
end
local out = {}
for _, entry in ipairs(entries) do
  local log_id = entry[2][2] .. '-0'
  local fields = redis.call('XRANGE', KEYS[2], log_id, log_id)[1][2]
  out[#out + 1] = entry[1]
  out[#out + 1] = fields[6]
  out[#out + 1] = fields[8]
end
return out
"""

# KEYS: log. ARGV: exclusive start entry id ("(N-0"), count. Returns flat
# quintuples: entry id, originator id, version, topic, state. Read-only; a
# flat reply costs the reader no per-entry parsing (no dicts of fields).
_READ_LOG_FLAT_LUA = """#!lua flags=no-writes
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {}
for _, entry in ipairs(entries) do
  local f = entry[2]
  out[#out + 1] = entry[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
  out[#out + 1] = f[8]
end
return out
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
        self.select_events_script = self.client.register_script(_SELECT_EVENTS_LUA)
        self.read_log_flat_script = self.client.register_script(_READ_LOG_FLAT_LUA)
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


class RedisAggregateRecorder(RedisRecorder, AggregateRecorder):
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

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The aggregate's events with gt < version <= lte, at most ``limit``."""
        if (lte is not None and lte < 0) or (limit is not None and limit < 1):
            return []
        low = "-" if gt is None or gt < 0 else f"{gt + 1}-0"
        high = "+" if lte is None else f"{lte}-1"
        rows = self._select_rows(
            self.datastore.stream_key(self.family, originator_id),
            low,
            high,
            desc,
            limit,
        )
        return [
            StoredEvent(
                originator_id=originator_id,
                originator_version=int(entry_id.split(b"-")[0]),
                topic=topic.decode(),
                state=state,
            )
            for entry_id, topic, state in rows
        ]

    def _select_rows(
        self, key: str, low: str, high: str, desc: bool, limit: int | None
    ) -> list[tuple[bytes, bytes, bytes]]:
        def command(client: redis.Redis) -> list[_Entry]:
            if desc:
                return cast(
                    "list[_Entry]", client.xrevrange(key, high, low, count=limit)
                )
            return cast("list[_Entry]", client.xrange(key, low, high, count=limit))

        entries = self.datastore.read(command)
        return [(entry_id, fields[b"t"], fields[b"s"]) for entry_id, fields in entries]


class RedisApplicationRecorder(RedisAggregateRecorder, ApplicationRecorder):
    """Events in one gapless application log, referenced from per-aggregate streams."""

    _mode: Literal["log", "plain"] = "log"
    page_size = 500  # log entries read per round trip when filtering by topic

    def __init__(self, datastore: RedisDatastore) -> None:
        super().__init__(datastore, family=_APPLICATION_FAMILY)

    def _select_rows(
        self, key: str, low: str, high: str, desc: bool, limit: int | None
    ) -> list[tuple[bytes, bytes, bytes]]:
        # One round trip: the script resolves each reference in the log.
        args = [low, high, "1" if desc else "0", limit or 0]
        flat = self.datastore.read(
            lambda _: self.datastore.select_events_script(
                keys=[key, self.datastore.keys.log], args=args
            )
        )
        return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]

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

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Notifications with ids from ``start`` up to ``stop``, at most ``limit``."""
        if start is None:
            start, inclusive_of_start = 1, True
        first = max(start if inclusive_of_start else start + 1, 1)
        if limit < 1 or (stop is not None and stop < first):
            return []
        low, high = f"{first}-0", "+" if stop is None else f"{stop}-0"
        if not topics:
            entries = self._log_range(low, high, limit)
            return [
                self._notification(entry_id, fields) for entry_id, fields in entries
            ]
        wanted = {topic.encode() for topic in topics}
        found: list[Notification] = []
        while len(found) < limit:
            entries = self._log_range(low, high, self.page_size)
            found += [
                self._notification(entry_id, fields)
                for entry_id, fields in entries
                if fields[b"t"] in wanted
            ]
            if len(entries) < self.page_size:
                break
            low = "(" + entries[-1][0].decode()
        return found[:limit]

    def max_notification_id(self) -> int | None:
        """The last notification id, or None when nothing has been recorded."""
        value = self.datastore.read(lambda client: client.get(self.datastore.keys.seq))
        return int(value) if value else None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Notifications after ``gt``, blocking for new ones until stopped."""
        return RedisSubscription(recorder=self, gt=gt, topics=topics)

    def read_log(
        self, after: bytes | str, count: int, block_ms: int
    ) -> list[tuple[bytes, Notification]]:
        """Log entries after entry id ``after``, waiting up to ``block_ms`` for one."""
        return [
            (entry_id, self._notification(entry_id, fields))
            for entry_id, fields in self._read_raw(after, count, block_ms)
        ]

    def read_log_entries(
        self, after_position: int, count: int, block_ms: int | None
    ) -> list[LogEntry]:
        """:meth:`read_log` without building notifications: entries after ``after_position``.

        ``block_ms`` None returns at once, even with nothing to read. For
        readers that handle every event once and fast (the relay, replay).
        """
        return [
            LogEntry(int(entry_id.split(b"-")[0]), fields[b"o"].decode(), int(fields[b"v"]),
                     fields[b"t"].decode(), fields[b"s"])
            for entry_id, fields in self._read_raw(f"{after_position}-0", count, block_ms)
        ]

    def read_log_flat(
        self, after_position: int, count: int, block_ms: int | None
    ) -> list[bytes]:
        """Log entries after ``after_position`` as one flat list: entry id, originator id, version, topic, state, ...

        The cheapest read of the log for a reader that handles bytes (the
        relay): one script round trip, no per-entry parsing. With nothing to
        read it waits up to ``block_ms`` (None: not at all) for a new entry.
        """
        args = [f"({after_position}-0", count]
        keys = [self.datastore.keys.log]
        flat: list[bytes] = self.datastore.read(
            lambda _: self.datastore.read_log_flat_script(keys=keys, args=args)
        )
        if not flat and block_ms is not None and self._read_raw(f"{after_position}-0", 1, block_ms):
            flat = self.datastore.read(
                lambda _: self.datastore.read_log_flat_script(keys=keys, args=args)
            )
        return flat

    def _read_raw(
        self, after: bytes | str, count: int, block_ms: int | None
    ) -> list[_Entry]:
        reply: list[tuple[bytes, list[_Entry]]] = self.datastore.read(
            lambda client: client.xread(  # type: ignore[arg-type,return-value]
                {self.datastore.keys.log: after}, count=count, block=block_ms
            )
        )
        return reply[0][1] if reply else []

    def _log_range(self, low: str, high: str, count: int) -> list[_Entry]:
        key = self.datastore.keys.log
        return self.datastore.read(
            lambda client: cast(
                "list[_Entry]", client.xrange(key, low, high, count=count)
            )
        )

    def _notification(
        self, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> Notification:
        text_id = fields[b"o"].decode()
        is_uuid = self.datastore.settings.originator_id_type == "uuid"
        originator_id = UUID(text_id) if is_uuid else text_id
        return Notification(
            id=int(entry_id.split(b"-")[0]),
            originator_id=originator_id,
            originator_version=int(fields[b"v"]),
            topic=fields[b"t"].decode(),
            state=fields[b"s"],
        )


class RedisSubscription(Subscription[RedisApplicationRecorder]):
    """Iterates the application log with ``XREAD BLOCK``.

    ``stop()`` (from any thread) ends the iteration within ``block_ms``.
    Raises the recorder's persistence errors from ``__next__``.
    """

    block_ms = 100
    batch_size = 500

    def __init__(
        self,
        recorder: RedisApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._cursor: bytes | str = f"{gt or 0}-0"
        self._wanted = set(topics)
        self._buffer: deque[Notification] = deque()

    def __next__(self) -> Notification:
        while not self._has_been_stopped:
            if self._buffer:
                notification = self._buffer.popleft()
                self._last_notification_id = notification.id
                return notification
            entries = self._recorder.read_log(
                self._cursor, self.batch_size, self.block_ms
            )
            if entries:
                self._cursor = entries[-1][0]
            self._buffer.extend(
                notification
                for _, notification in entries
                if not self._wanted or notification.topic in self._wanted
            )
        raise StopIteration


class RedisTrackingRecorder(RedisRecorder, TrackingRecorder):
    """Tracking positions in the hash ``{P}:tracking``."""

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a position; raises IntegrityError unless it is beyond the last."""
        self.datastore.insert("plain", _APPLICATION_FAMILY, (), tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        """The last recorded position of the named upstream application, or None."""
        value = self.datastore.read(
            lambda client: client.hget(self.datastore.keys.tracking, application_name)
        )
        return int(value) if value else None


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
