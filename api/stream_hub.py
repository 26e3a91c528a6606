"""The live stream's source and fan-out: committed events from the shards' logs, to every client's queue.

One hub per API process (in the app's lifespan). Its sources are committed
state only, never the trading path:

- the shards' event store logs (``{store}:log``, tailed with a blocking
  ``XREAD``): decisions, fills and alerts as they are committed;
- the shared book (``edge.shared_book``) the shards publish each cycle: the
  book's P&L and gross exposure;
- the shards' metrics hashes, the relay positions and the kill switch, read
  once a second for ``system`` messages.

Each event is encoded once; a client gets it through its own bounded
:class:`~api.stream_protocol.ClientQueue`, which its own task drains into at
most one frame per ``min_frame_interval_s``. The hub never waits on a
client: a client that cannot keep up overflows its queue and is closed, the
others go on. The last ``ring`` decisions and alerts are kept for clients
that resume after a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import Any, Sequence

import orjson
import redis.asyncio as aioredis

from api.stream_protocol import (
    ClientQueue,
    Subscription,
    alert_summary,
    decision_summary,
    encode_message,
    fill_delta,
)
from backbone.relay import RelayKeys
from edge.shared_book import ShardBook, TradingState
from edge.store_layout import StoreKeys

__all__ = ["ReadModelReads", "StreamConfig", "StreamHub", "StreamClient"]

log = logging.getLogger(__name__)

DECISION_TOPIC = "Trading.Decision.Taken"
FILL_TOPIC = "Trading.Order.Filled"
ALERT_TOPIC = "Risk.Alert.Triggered"
RECENT_DECISIONS = 50
"""How many of the latest decisions a snapshot holds."""


@dataclass(frozen=True)
class StreamConfig:
    """Where the stream reads from, and its bounds."""

    stores: Sequence[str] = ()
    """The shards' event stores whose logs are tailed (the relay's stores)."""
    book_key: str | None = None
    """The shared book's hash (``SystemKeys.risk_book``)."""
    trading_key: str | None = None
    capital: float = 1_000_000.0
    max_position_fraction: float = 0.25
    client_queue: int = 2_000
    """Decisions and alerts a client may have waiting before it counts as too far behind."""
    ring: int = 10_000
    """Decisions and alerts kept for resuming clients."""
    min_frame_interval_s: float = 0.02
    """A client gets at most one frame this often: what arrives meanwhile goes in the same frame."""
    subscribe_timeout_s: float = 10.0
    portfolio_interval_s: float = 0.025
    """How often the book's totals are read (one HGETALL): with the frame interval, their age at a client."""
    system_interval_s: float = 1.0
    read_block_ms: int = 1_000
    seed_entries: int = 5_000
    """How many of each log's newest entries the hub reads at start: positions, prices and the recent decisions
    are there from the first client on (an API restart included), not only after the next fill."""


@dataclass(eq=False)
class StreamClient:
    """One connected client: its subscription, its queue, and the event its sender waits on."""

    subscription: Subscription
    queue: ClientQueue
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class ReadModelReads:
    """What the hub reads from the read models (PostgreSQL), through the API's pool; the API wires them in."""

    forensics_lag_s: Callable[[], Awaitable[float]]
    """How far the explanations trail the decisions (seconds of event time), for the system messages."""
    positions: Callable[[], Awaitable[list[dict[str, Any]]]]
    """Every symbol's projected position (``symbol``, ``quantity``, ``last_price``): the seed's base."""


class StreamHub:
    """Tails the sources and offers every message to the clients that asked for it."""

    def __init__(self, redis_url: str, config: StreamConfig, read_models: ReadModelReads | None = None) -> None:
        self.config = config
        self._read_models = read_models
        self.epoch = uuid.uuid4().hex[:16]
        """Names this run of the hub: a resume from another run gets a snapshot."""
        self.seq = 0
        self._redis_url = redis_url
        self._clients: set[StreamClient] = set()
        self._ring: deque[tuple[int, str, str | None, bytes]] = deque(maxlen=config.ring)
        self._recent: deque[tuple[str, bytes]] = deque(maxlen=RECENT_DECISIONS)
        self._positions: dict[str, dict[str, float]] = {}
        self._changed: set[str] = set()
        self._totals: dict[str, float] | None = None
        self._system: dict[str, Any] = {}
        """The latest system message's data."""
        self._last_sample: tuple[float, int, int] | None = None
        """(monotonic time, ticks, decisions) when it was read: the rates are taken between two reads."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._decisions_seen = 0
        self.unreadable = 0
        """Log entries the hub could not read (skipped, counted; the relay dead-letters them)."""

    async def start(self) -> None:
        if self.config.stores:
            self._tasks.append(asyncio.create_task(self._tail(), name="stream-tail"))
        self._tasks.append(asyncio.create_task(self._every(self.config.portfolio_interval_s, self._portfolio),
                                               name="stream-portfolio"))
        self._tasks.append(asyncio.create_task(self._every(self.config.system_interval_s, self._read_system),
                                               name="stream-system"))

    async def stop(self) -> None:
        """Let the readers finish their current read (at most ``read_block_ms``), then cancel what is left."""
        self._stopping.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=self.config.read_block_ms / 1000 + 2)
        for task in late:
            task.cancel()
        self._tasks.clear()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def register(self, subscription: Subscription) -> tuple[StreamClient, bool]:
        """Add a client; its queue holds what it missed (a resume) or a snapshot. True when it resumed."""
        client = StreamClient(subscription, ClientQueue(self.config.client_queue))
        resumed = self._fill_resume(client) if subscription.resume is not None else False
        if not resumed:
            client.queue.offer_event(encode_message("snapshot", self.seq, self._snapshot(subscription)))
        if "portfolio" in subscription.kinds:
            client.queue.offer_portfolio(self.seq, {"positions": self._positions_for(subscription, None),
                                                    "totals": self._totals})
        if "system" in subscription.kinds and self._system:
            client.queue.offer_system(encode_message("system", self.seq, self._system))
        self._clients.add(client)
        client.wake.set()
        return client, resumed

    def unregister(self, client: StreamClient) -> None:
        self._clients.discard(client)

    def _fill_resume(self, client: StreamClient) -> bool:
        resume = client.subscription.resume
        assert resume is not None
        oldest = self._ring[0][0] if self._ring else self.seq + 1
        if resume.epoch != self.epoch or resume.seq > self.seq or resume.seq < oldest - 1:
            return False
        for seq, kind, symbol, encoded in self._ring:
            if seq > resume.seq and client.subscription.wants(kind, symbol):
                client.queue.replay(encoded)
        return True

    def _snapshot(self, subscription: Subscription) -> dict[str, Any]:
        recent = ([orjson.loads(encoded) for symbol, encoded in self._recent if subscription.wants("decision", symbol)]
                  if "decision" in subscription.kinds else [])
        return {"epoch": self.epoch, "decisions": recent}

    def _positions_for(self, subscription: Subscription, symbols: set[str] | None) -> dict[str, Any]:
        names = self._positions if symbols is None else symbols
        return {s: self._positions[s] for s in names
                if s in self._positions and (not subscription.symbols or s in subscription.symbols)}

    # --- sources -------------------------------------------------------------------------------

    async def _tail(self) -> None:
        client = aioredis.Redis.from_url(self._redis_url)
        try:
            logs = {StoreKeys(store).log: store for store in self.config.stores}
            await self._seed_positions()
            after: dict[str, bytes | str] = {key: await self._seed(client, key, logs[key]) for key in logs}
            self._wake_all()
            while not self._stopping.is_set():
                try:
                    reply = await client.xread(after, count=1_000, block=self.config.read_block_ms)
                except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as error:
                    log.warning("the stream cannot read the event logs (%r); retrying in 1 s", error)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 1.0)
                    continue
                for stream, entries in reply or ():
                    key = stream.decode()
                    for entry_id, fields in entries:
                        after[key] = entry_id
                        self._take(logs[key], int(entry_id.split(b"-", 1)[0]), fields)
                self._wake_all()
        finally:
            await client.aclose()

    async def _seed_positions(self) -> None:
        """The read models' positions as the base the logs' recent past is read over.

        A symbol with no fill in the seeded entries would otherwise show 0 until its next fill. A fill
        in those entries is at least as new as the read models (they trail the log), so it wins.
        """
        if self._read_models is None:
            return
        try:
            rows = await asyncio.wait_for(self._read_models.positions(), 5.0)
        except Exception as error:  # noqa: BLE001 - PostgreSQL away or slow: the logs' window alone, as before
            log.warning("the stream could not read the projected positions (%r): it seeds from the logs only", error)
            return
        for row in rows:
            try:
                self._mark(str(row["symbol"]), float(row["quantity"]), float(row["last_price"] or 0.0))
            except (KeyError, TypeError, ValueError):
                self.unreadable += 1

    async def _seed(self, client: aioredis.Redis, key: str, store: str) -> bytes | str:
        """Read the log's newest ``seed_entries`` (positions, prices, recent decisions; nothing is sent as new);
        the id to tail after. An unreadable log starts from its end, as with no seed."""
        try:
            newest = await client.xrevrange(key, count=self.config.seed_entries)
        except (aioredis.RedisError, OSError) as error:
            log.warning("the stream could not read the recent past of %s (%r): it starts from now", store, error)
            return "$"
        for entry_id, fields in reversed(newest):
            self._take(store, int(entry_id.split(b"-", 1)[0]), fields, live=False)
        return newest[0][0] if newest else "0-0"

    def _take(self, store: str, position: int, fields: dict[bytes, bytes], live: bool = True) -> None:
        """One committed log entry: a decision, fill or alert becomes messages; anything else is ignored.

        Not ``live`` (the start's seed): it updates positions, prices and the recent decisions, and sends nothing.
        """
        topic = fields.get(b"t", b"").decode(errors="replace")
        if topic not in (DECISION_TOPIC, FILL_TOPIC, ALERT_TOPIC):
            return
        try:
            state = orjson.loads(fields.get(b"s", b""))
        except orjson.JSONDecodeError:
            state = None
        if not isinstance(state, dict):
            self.unreadable += 1
            return
        if topic == DECISION_TOPIC:
            summary = decision_summary(state, store, position)
            if summary is None:
                self.unreadable += 1
                return
            self._mark(summary["symbol"], None, summary["price"])
            if not live:
                self._recent.append((summary["symbol"], encode_message("decision", 0, summary)))
                return
            self._decisions_seen += 1
            self._publish("decision", summary["symbol"], summary)
        elif topic == FILL_TOPIC:
            fill = fill_delta(state)
            if fill is None:
                self.unreadable += 1
                return
            self._mark(*fill)
        else:
            alert = alert_summary(state)
            if alert is None:
                self.unreadable += 1
                return
            if live:
                self._publish("alert", alert["symbol"], alert)

    def _publish(self, kind: str, symbol: str, data: dict[str, Any]) -> None:
        self.seq += 1
        encoded = encode_message(kind, self.seq, data)
        self._ring.append((self.seq, kind, symbol, encoded))
        if kind == "decision":
            self._recent.append((symbol, encoded))
        for client in self._clients:
            if client.subscription.wants(kind, symbol):
                client.queue.offer_event(encoded)

    def _mark(self, symbol: str, position: float | None, price: float) -> None:
        held = self._positions.setdefault(symbol, {"position": 0.0, "price": price})
        if position is not None:
            held["position"] = position
        held["price"] = price
        held["exposure"] = abs(held["position"] * price)
        self._changed.add(symbol)

    async def _portfolio(self, client: aioredis.Redis) -> None:
        if self.config.book_key:
            self._totals = self._book_totals(await client.hgetall(self.config.book_key))
        equity = (self._totals or {}).get("equity") or self.config.capital
        changed, self._changed = self._changed, set()
        for symbol in changed:
            held = self._positions[symbol]
            held["limit_used"] = held["exposure"] / equity / self.config.max_position_fraction if equity > 0 else 0.0
        # Clients of every symbol (a dashboard's overview) share one delta, encoded once here.
        everything = {"positions": {s: self._positions[s] for s in changed}, "totals": self._totals}
        shared = (encode_message("portfolio", self.seq, everything)
                  if everything["positions"] or self._totals is not None else None)
        for c in self._clients:
            if "portfolio" not in c.subscription.kinds:
                continue
            if not c.subscription.symbols:
                if shared is not None:
                    c.queue.offer_portfolio(self.seq, everything, shared)
                continue
            positions = self._positions_for(c.subscription, changed)
            if positions or self._totals is not None:
                c.queue.offer_portfolio(self.seq, {"positions": positions, "totals": self._totals})
        self._wake_all()

    def _book_totals(self, fields: dict[bytes, bytes]) -> dict[str, float]:
        shards = []
        for raw in fields.values():
            try:
                shards.append(ShardBook.from_json(raw))
            except ValueError:
                continue  # a garbled field: the shards' own check says so; the totals go without it
        pnl = sum(s.pnl for s in shards)
        gross = sum(s.gross_exposure for s in shards)
        equity = self.config.capital + pnl
        return {"capital": self.config.capital, "equity": equity, "pnl": pnl,
                "day_pnl": sum(s.day_pnl for s in shards), "gross_exposure": gross,
                "leverage": gross / equity if equity > 0 else float("inf"), "shards": len(shards),
                # When the newest figures were published (ms since the epoch): how fresh the totals are.
                "as_of_ms": max((s.published_ms for s in shards), default=0)}

    async def _read_system(self, client: aioredis.Redis) -> None:
        started = time.monotonic()
        ticks, p99_us, relay_lag = 0, 0.0, 0
        for store in self.config.stores:
            published = await client.hgetall(StoreKeys(store).shard_metrics)
            ticks += int(float(published.get(b"ticks") or 0))
            p99_us = max(p99_us, float(published.get(b"latency_us_p99") or 0.0))
            head = int(await client.get(StoreKeys(store).seq) or 0)
            relay_lag += max(head - int(await client.get(RelayKeys(store).position) or 0), 0)
        trading = TradingState()
        if self.config.trading_key:
            raw = await client.get(self.config.trading_key)
            try:
                trading = TradingState() if raw is None else TradingState.from_dict(orjson.loads(raw))
            except (ValueError, orjson.JSONDecodeError):
                trading = TradingState(halted=True)
        at, ticks_before, decided_before = self._last_sample or (started, ticks, self._decisions_seen)
        elapsed = started - at
        rate = (ticks - ticks_before) / elapsed if elapsed > 0 else 0.0
        decided = (self._decisions_seen - decided_before) / elapsed if elapsed > 0 else 0.0
        self._last_sample = (started, ticks, self._decisions_seen)
        forensics_lag_s = None
        if self._read_models is not None:
            try:
                forensics_lag_s = round(await asyncio.wait_for(self._read_models.forensics_lag_s(), 2.0), 3)
            except Exception as error:  # noqa: BLE001 - PostgreSQL away or slow: the figure is unknown, not 0
                log.debug("the stream could not read the forensics lag (%r)", error)
        self._system = {
            "ticks": ticks, "forensics_lag_s": forensics_lag_s, "ticks_per_s": round(max(rate, 0.0), 1), "decisions_per_s": round(decided, 1),
            "tick_latency_ms_p99": round(p99_us / 1000.0, 3), "relay_lag_events": relay_lag,
            "halted": trading.halted, "flatten": trading.flatten, "halt_reason": trading.reason,
            "clients": len(self._clients),
        }
        encoded = encode_message("system", self.seq, self._system)
        for c in self._clients:
            if "system" in c.subscription.kinds:
                c.queue.offer_system(encoded)
        self._wake_all()

    async def _every(self, interval_s: float, step: Any) -> None:
        client = aioredis.Redis.from_url(self._redis_url)
        try:
            while not self._stopping.is_set():
                try:
                    await step(client)
                except (aioredis.RedisError, OSError) as error:
                    log.warning("the stream's %s read failed (%r); retrying", step.__name__, error)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), interval_s)
        finally:
            await client.aclose()

    def _wake_all(self) -> None:
        for client in self._clients:
            if client.queue:
                client.wake.set()
