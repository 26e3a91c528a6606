"""The read side of the Redis Streams event store (:mod:`edge.eventstore`).

The recorders of :mod:`edge.eventstore` are eventsourcing's recorder classes
put together from two halves: their writes (the Lua append, forgetting
history) live there with the settings, the datastore and the factory; their
reads live here as abstract recorder bases that each recorder inherits:
:class:`AggregateReads` (an aggregate's events), :class:`ApplicationLogReads`
(the application log: notifications, subscriptions and the relay's raw log
reads) and :class:`TrackingReads` (tracking positions). They read through
``self.datastore`` (:class:`edge.eventstore.RedisDatastore`, which retries
reads and translates Redis errors) in the key layout
:mod:`edge.eventstore`'s docstring gives. The read-only scripts below are
registered by the datastore, beside the append.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, cast
from uuid import UUID

import redis
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    Notification,
    StoredEvent,
    Subscription,
    TrackingRecorder,
)

from edge.store_layout import LogEntry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge.eventstore import RedisDatastore

__all__ = [
    "READ_LOG_FLAT_LUA",
    "SELECT_EVENTS_LUA",
    "AggregateReads",
    "ApplicationLogReads",
    "RedisSubscription",
    "TrackingReads",
]

# A stream entry as redis-py returns it with decode_responses=False.
_Entry = tuple[bytes, dict[bytes, bytes]]

# KEYS: aggregate stream, log. ARGV: min id, max id, "1" for descending, count
# ("0" = all). Returns flat triples: entry id, topic, state.
SELECT_EVENTS_LUA = """#!lua flags=no-writes
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
READ_LOG_FLAT_LUA = """#!lua flags=no-writes
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


class AggregateReads(AggregateRecorder):
    """An aggregate's events from its stream ``{P}:<family>:<id>`` (payloads inline)."""

    datastore: RedisDatastore
    family: str

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


class ApplicationLogReads(AggregateReads, ApplicationRecorder):
    """The application log ``{P}:log``: an aggregate's events by reference, notifications, raw reads."""

    page_size = 500  # log entries read per round trip when filtering by topic

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


class RedisSubscription(Subscription[ApplicationLogReads]):
    """Iterates the application log with ``XREAD BLOCK``.

    ``stop()`` (from any thread) ends the iteration within ``block_ms``.
    Raises the recorder's persistence errors from ``__next__``.
    """

    block_ms = 100
    batch_size = 500

    def __init__(
        self,
        recorder: ApplicationLogReads,
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


class TrackingReads(TrackingRecorder):
    """Tracking positions from the hash ``{P}:tracking``."""

    datastore: RedisDatastore

    def max_tracking_id(self, application_name: str) -> int | None:
        """The last recorded position of the named upstream application, or None."""
        value = self.datastore.read(
            lambda client: client.hget(self.datastore.keys.tracking, application_name)
        )
        return int(value) if value else None
