"""The book every shard shares through Redis: each shard's P&L and exposure, for risk on the whole portfolio.

One hash per system, ``{ns}glassbox:{risk}:book`` (:meth:`SystemKeys.risk_book`;
its hash tag keeps every risk key of a system in one Redis Cluster slot):
field = shard name, value = that shard's figures as JSON (:class:`ShardBook`).
A shard writes its own field and reads the whole hash once a cycle, both
queued on the pipeline that already carries its acknowledgements and its read
(:meth:`SharedBook.queue_exchange`), so the exchange costs no round trip of
its own.

The hash is written by other processes, so what is read is checked: a field
that is not a well-formed figure set is logged and replaced by that shard's
last good figures; a shard never seen well-formed is left out, which counts
its share of the leverage budget as fully used (``OthersView.unseen_share``).
Never trusted, never fatal.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import orjson
import redis

__all__ = ["SharedBook", "ShardBook"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardBook:
    """What one shard publishes: its desks' sums and its share of the leverage budget."""

    pnl: float
    """Sum of its desks' total P&L (realised + marked to their last price)."""
    day_pnl: float
    """Sum of its desks' P&L since the start of their trading day."""
    gross_exposure: float
    """Sum of |position × last price| over its desks."""
    share: float
    """Its share of the book's leverage budget: its symbols over the book's."""
    published_ms: int = 0
    """Wall time of the publication (ms since the epoch): how old the view a shard decides on is."""

    def to_json(self) -> bytes:
        return orjson.dumps({"pnl": self.pnl, "day_pnl": self.day_pnl, "gross_exposure": self.gross_exposure,
                             "share": self.share, "published_ms": self.published_ms})

    @classmethod
    def from_json(cls, raw: bytes) -> ShardBook:
        """Parse and check one published figure set.

        Raises:
            ValueError: not a JSON object of finite numbers, exposure negative or share outside (0, 1].
        """
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        numbers = {name: _finite(data, name) for name in ("pnl", "day_pnl", "gross_exposure", "share")}
        if numbers["gross_exposure"] < 0:
            raise ValueError(f"gross_exposure {numbers['gross_exposure']!r} is negative")
        if not 0 < numbers["share"] <= 1:
            raise ValueError(f"share {numbers['share']!r} is not in (0, 1]")
        published = data.get("published_ms", 0)
        if type(published) is not int or published < 0:
            raise ValueError(f"published_ms {published!r} is not a non-negative integer")
        return cls(numbers["pnl"], numbers["day_pnl"], numbers["gross_exposure"], numbers["share"], published)


def _finite(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)


class SharedBook:
    """One shard's side of the shared book: publishes its own figures, reads every other shard's."""

    def __init__(self, client: redis.Redis, key: str, shard: str) -> None:
        self._client = client
        self.key = key
        self.shard = shard
        self._last_good: dict[str, ShardBook] = {}
        self._refused: set[tuple[str, bytes]] = set()
        self.latest: dict[str, ShardBook] = {}
        """The other shards' figures as last read."""

    def queue_exchange(self, pipe: Any, own: ShardBook) -> None:
        """Queue writing ``own`` and reading every shard's figures (two replies; see :meth:`others_from`)."""
        pipe.hset(self.key, self.shard, own.to_json())
        pipe.hgetall(self.key)

    def publish(self, own: ShardBook) -> None:
        self._client.hset(self.key, self.shard, own.to_json())

    def read_others(self) -> dict[str, ShardBook]:
        return self.others_from(self._client.hgetall(self.key))

    def others_from(self, reply: Mapping[bytes, bytes]) -> dict[str, ShardBook]:
        """The other shards' figures in an ``HGETALL`` reply; a malformed one keeps its last good figures."""
        others: dict[str, ShardBook] = {}
        for raw_name, raw in (reply or {}).items():
            name = raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
            if name == self.shard:
                continue
            try:
                figures = ShardBook.from_json(raw)
            except (ValueError, TypeError, orjson.JSONDecodeError) as error:
                if (name, raw) not in self._refused:  # once per bad value, not once a cycle
                    self._refused.add((name, raw))
                    log.error("the shared book's figures of %s in %s are unreadable (%s); using its last good "
                              "ones", name, self.key, error)
                figures = self._last_good.get(name)
                if figures is None:
                    continue
            self._last_good[name] = figures
            others[name] = figures
        self.latest = others
        return others
