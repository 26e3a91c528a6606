"""What a system has not finished, and which component sits on it with which last error.

The drain of ``glassbox up`` asks this when it stops waiting, ``glassbox
status`` shows its answer, and ``glassbox doctor`` reads the same tick
backlogs. Each piece of unfinished work names its owner (``shard-<i>`` and
the symbol, ``relay-shard-<i>`` and the store, ``worker-<group>`` and the
topic/partition/offset) and the last ERROR or WARNING line of that owner's
log in ``<home>/run/logs/<component>.log``: the component's own account of
why it is stuck.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from actors.shard import ShardSettings
from edge.tick_stream import TickKeys
from projections.lag import PartitionLag

__all__ = ["Stuck", "TickBacklog", "backlogs_of", "last_problem", "stuck_work", "tick_backlog"]

_TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class TickBacklog:
    """One symbol's ticks its shard has not finished: delivered and unacknowledged, and never read."""

    symbol: str
    shard: str
    pending: int
    undelivered: int
    oldest: str | None
    """The oldest unfinished entry id (the head of the pending list, else the first never read)."""

    @property
    def unfinished(self) -> int:
        return self.pending + self.undelivered


def tick_backlog(client: redis.Redis, keys: TickKeys, symbol: str, shard: str,
                 group: str = ShardSettings().group) -> TickBacklog:
    """``symbol``'s backlog in its consumer group (all of its stream when the group was never created)."""
    stream = keys.stream(symbol)
    length = client.xlen(stream)
    try:
        groups = {_text(g["name"]): g for g in client.xinfo_groups(stream)}
    except redis.ResponseError:  # no stream yet: nothing was published
        return TickBacklog(symbol, shard, 0, 0, None)
    info = groups.get(group)
    if info is None:
        first = client.xrange(stream, count=1)
        return TickBacklog(symbol, shard, 0, length, _text(first[0][0]) if first else None)
    pending = int(info.get("pending") or 0)
    last = _text(info.get("last-delivered-id") or "0-0")
    lag = info.get("lag")
    after = client.xrange(stream, f"({last}", "+", count=1 if lag is not None else None)
    undelivered = int(lag) if lag is not None else len(after)
    oldest = None
    if pending:
        summary = client.xpending(stream, group)
        oldest = _text(summary["min"]) if summary.get("min") else None
    elif undelivered and after:
        oldest = _text(after[0][0])
    return TickBacklog(symbol, shard, pending, undelivered, oldest)


@dataclass(frozen=True)
class Stuck:
    """One piece of unfinished work: its owner component, where exactly, what is left, the owner's last error."""

    component: str
    where: str
    detail: str
    last_error: str | None = None

    def line(self) -> str:
        said = f"; last error in {self.component}.log: {self.last_error}" if self.last_error else \
            f"; nothing logged at ERROR or WARNING by {self.component}"
        return f"{self.component} {self.where}: {self.detail}{said}"


def last_problem(log_path: Path) -> str | None:
    """The last ERROR or WARNING line of a component's JSON log, as ``ts LEVEL message``; None if there is none."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(size - _TAIL_BYTES, 0))
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except ValueError:
            if "Traceback" in raw or "Error" in raw:  # a line not ours (a crash's traceback goes to the log raw)
                return raw.strip()[:500]
            continue
        if isinstance(record, dict) and record.get("level") in ("ERROR", "WARNING", "CRITICAL"):
            message = str(record.get("message", ""))
            if record.get("exc_info"):
                message += " | " + str(record["exc_info"]).strip().splitlines()[-1]
            return f"{record.get('ts', '')} {record['level']} {message}"[:500]
    return None


def stuck_work(backlogs: Iterable[TickBacklog], relays: Iterable[tuple[str, str, int, int]],
               partitions: Iterable[PartitionLag] | None, log_dir: Path) -> list[Stuck]:
    """The unfinished work among ``backlogs``, ``relays`` (component, store, position, head) and ``partitions``.

    ``partitions`` None: the groups could not be read (the broker or the database did not answer),
    which is itself reported, under the supervisor.
    """
    stuck: list[Stuck] = []
    for b in backlogs:
        if b.unfinished:
            stuck.append(Stuck(b.shard, f"symbol {b.symbol}",
                               f"{b.unfinished:,} ticks never decided ({b.pending:,} pending, "
                               f"{b.undelivered:,} never read), oldest entry {b.oldest}"))
    for component, store, position, head in relays:
        if position < head:
            stuck.append(Stuck(component, f"store {store}",
                               f"{head - position:,} events not relayed (at position {position:,}, head {head:,})"))
    if partitions is None:
        stuck.append(Stuck("supervisor", "projections", "the groups' offsets could not be read (the broker or "
                                                         "PostgreSQL did not answer)"))
    else:
        for p in partitions:
            if p.behind:
                stuck.append(Stuck(f"worker-{p.group}", f"group {p.group} {p.topic}/{p.partition}",
                                   f"{p.behind:,} messages behind (at offset {p.next_offset:,}, "
                                   f"end {p.end_offset:,})"))
    return [Stuck(s.component, s.where, s.detail, last_problem(log_dir / f"{s.component}.log")) for s in stuck]


def backlogs_of(client: redis.Redis, keys: TickKeys, owned: Sequence[Sequence[str]]) -> list[TickBacklog]:
    """Every symbol's backlog; ``owned[i]`` are shard ``i``'s symbols."""
    return [tick_backlog(client, keys, symbol, f"shard-{i}") for i, symbols in enumerate(owned) for symbol in symbols]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
