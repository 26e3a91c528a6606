"""What every shard shares through Redis for risk on the whole book: the shards' figures and the kill switch.

- ``{ns}glassbox:{risk}:book`` (:meth:`SystemKeys.risk_book`), a hash: field =
  shard name, value = that shard's P&L and exposure as JSON (:class:`ShardBook`);
- ``{ns}glassbox:{risk}:trading`` (:meth:`SystemKeys.trading_state`): the kill
  switch as the desks read it (:class:`TradingState`), kept by
  ``actors.trading_control`` from the ``TradingSwitch`` aggregate's events.

Their hash tag keeps every risk key of a system in one Redis Cluster slot. A
shard writes its own figures and reads the whole hash and the switch once a
cycle, all queued on the pipeline that already carries its acknowledgements
and its read (:meth:`SharedBook.queue_exchange`), so the exchange costs no
round trip of its own.

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

__all__ = ["SharedBook", "ShardBook", "TradingState"]

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
    as_of_ms: int = 0
    """Stream time (the entry ids' ms) of the newest tick the figures include; 0: none, or not streamed."""
    valid_ms: int = 0
    """Stream time up to which the figures hold: the shard has decided every tick of its symbols taken in
    before it (the time of its last read it has decided all of). 0: it is idle, nothing is waiting."""
    lag_ms: int = 0
    """Its newest tick's stream time minus its event time (ms): what turns ``as_of_ms`` and ``valid_ms``
    into event time, the time the risk checks compare (a feed that publishes late, in bursts, has ticks
    of seconds of event time within a few ms of stream time)."""

    def to_json(self) -> bytes:
        return orjson.dumps({"pnl": self.pnl, "day_pnl": self.day_pnl, "gross_exposure": self.gross_exposure,
                             "share": self.share, "published_ms": self.published_ms, "as_of_ms": self.as_of_ms,
                             "valid_ms": self.valid_ms, "lag_ms": self.lag_ms})

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
        times = {name: data.get(name, 0) for name in ("published_ms", "as_of_ms", "valid_ms")}
        for name, value in times.items():
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} {value!r} is not a non-negative integer")
        lag_ms = data.get("lag_ms", 0)
        if type(lag_ms) is not int:
            raise ValueError(f"lag_ms {lag_ms!r} is not an integer")
        return cls(numbers["pnl"], numbers["day_pnl"], numbers["gross_exposure"], numbers["share"],
                   times["published_ms"], times["as_of_ms"], times["valid_ms"], lag_ms)


@dataclass(frozen=True)
class TradingState:
    """The switch as the desks read it: running, or halted (and whether to flatten), with the last change's record."""

    halted: bool = False
    flatten: bool = False
    reason: str = ""
    by: str = ""
    at: str = ""
    """ISO time of the change (UTC)."""
    version: int = 0
    """The switch aggregate's version this state is of (0: never switched)."""

    def as_dict(self) -> dict[str, Any]:
        return {"state": "halted" if self.halted else "running", "flatten": self.flatten, "reason": self.reason,
                "by": self.by, "at": self.at, "version": self.version}

    @classmethod
    def from_dict(cls, data: Any) -> TradingState:
        """Parse :meth:`as_dict`'s form.

        Raises:
            ValueError: not that form.
        """
        if not isinstance(data, dict) or data.get("state") not in ("halted", "running"):
            raise ValueError("not a trading state: want an object with state 'halted' or 'running'")
        texts = {name: data.get(name, "") for name in ("reason", "by", "at")}
        if not all(isinstance(v, str) for v in texts.values()) or type(data.get("flatten", False)) is not bool:
            raise ValueError("a trading state's reason, by and at are text and flatten is true or false")
        version = data.get("version", 0)
        if type(version) is not int or version < 0:
            raise ValueError(f"a trading state's version is a non-negative integer, not {version!r}")
        return cls(data["state"] == "halted", data.get("flatten", False), texts["reason"], texts["by"],
                   texts["at"], version)


def _finite(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)


class SharedBook:
    """One shard's side of the shared book: publishes its own figures, reads every other shard's."""

    def __init__(self, client: redis.Redis, key: str, shard: str, trading_key: str) -> None:
        self._client = client
        self.key = key
        self.shard = shard
        self.trading_key = trading_key
        self.trading = TradingState()
        """The kill switch as last read (running until read otherwise)."""
        self._trading_raw: bytes | None = None
        self._published: ShardBook | None = None
        self._last_good: dict[str, ShardBook] = {}
        self._refused: set[tuple[str, bytes]] = set()
        self.latest: dict[str, ShardBook] = {}
        """The other shards' figures as last read."""

    REPUBLISH_MS = 1_000
    """An idle shard's figures, unchanged, are written again this often (so their age stays honest)."""

    def queue_exchange(self, pipe: Any, own: ShardBook) -> int:
        """Queue writing ``own`` (when it changed, or a second passed) and reading every shard's figures and
        the switch; how many commands it queued (:meth:`received` takes their replies)."""
        queued = 2
        if self._due(own):
            pipe.hset(self.key, self.shard, own.to_json())
            queued = 3
        pipe.hgetall(self.key)
        pipe.get(self.trading_key)
        return queued

    def received(self, replies: list[Any]) -> None:
        """Take the replies of :meth:`queue_exchange`'s commands: :attr:`latest` and :attr:`trading` are then new."""
        self.others_from(replies[-2])
        self.trading_from(replies[-1])

    def publish(self, own: ShardBook) -> None:
        self._client.hset(self.key, self.shard, own.to_json())
        self._published = own

    def _due(self, own: ShardBook) -> bool:
        last = self._published
        # A shard that is deciding moves its valid_ms every cycle, so it writes every cycle: the others
        # must see how far it has got. Only an idle one (valid_ms 0, figures unchanged) writes nothing.
        if (last is not None and (last.pnl, last.day_pnl, last.gross_exposure, last.share, last.valid_ms)
                == (own.pnl, own.day_pnl, own.gross_exposure, own.share, own.valid_ms)
                and own.published_ms - last.published_ms < self.REPUBLISH_MS):
            return False  # an idle cycle writes nothing (no AOF growth while nothing trades)
        self._published = own
        return True

    def read_others(self) -> dict[str, ShardBook]:
        """The other shards' figures and the switch, read now."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self.key)
        pipe.get(self.trading_key)
        book, trading = pipe.execute()
        self.trading_from(trading)
        return self.others_from(book)

    def trading_from(self, raw: bytes | None) -> TradingState:
        """The switch in a ``GET`` reply; an unreadable one counts as halted (the safe side), said once."""
        if raw == self._trading_raw and raw is not None:  # read every cycle, changed rarely: parsed once
            return self.trading
        self._trading_raw = raw
        if raw is None:
            self.trading = TradingState()
            return self.trading
        try:
            self.trading = TradingState.from_dict(orjson.loads(raw))
        except (ValueError, orjson.JSONDecodeError) as error:
            if ("", raw) not in self._refused:
                self._refused.add(("", raw))
                log.error("the trading state in %s is unreadable (%s); the desks act as if halted until it is "
                          "rewritten (`glassbox halt` or `glassbox resume`)", self.trading_key, error)
            self.trading = TradingState(halted=True, reason="unreadable trading state")
        return self.trading

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
