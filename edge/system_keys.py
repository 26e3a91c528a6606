"""The names of a Glassbox system's own Redis keys and event stores, in one place.

A system is a namespace (``GLASSBOX_NAMESPACE``; a backtest run is one of
its own). Its keys, besides the tick streams (:class:`edge.tick_stream.TickKeys`)
and each store's internal layout (:class:`edge.eventstore.StoreKeys`)::

    {ns}glassbox:layout        hash    shards -> the shard count the desks were built with
    {ns}glassbox:components    hash    component name -> JSON of its state (``glassbox up``)
    {ns}glassbox:{risk}:book   hash    shard name -> JSON of its desks' P&L and exposure (risk on the whole book)
    {ns}glassbox:{risk}:trading string JSON of the kill switch: running or halted, by whom, why
    {ns}glassbox:shard-<i>     store   shard i's desks (event store name)
    {ns}glassbox:system        store   the SystemRun aggregate's events
    {ns}glassbox:backtests     store   the BacktestRun aggregates' events

Everything else asks this class for them; nothing spells them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from edge.errors import EdgeError

__all__ = ["SystemKeys"]


@dataclass(frozen=True)
class SystemKeys:
    """Key and store names of the system in ``namespace`` (a prefix, ``""`` by default)."""

    namespace: str = ""

    def store(self, name: str) -> str:
        """The event store name of the store called ``name`` (e.g. a shard's name)."""
        return f"{self.namespace}glassbox:{name}"

    def shard_store(self, index: int) -> str:
        """The event store of shard ``index`` (0-based)."""
        return self.store(f"shard-{index}")

    @property
    def system_store(self) -> str:
        """The store of the system's own history (runs started, components restarted, ...)."""
        return self.store("system")

    @property
    def backtests_store(self) -> str:
        """The store of every completed backtest's record."""
        return self.store("backtests")

    @property
    def layout(self) -> str:
        """Hash holding the shard count the system's desks were built with."""
        return f"{self.namespace}glassbox:layout"

    @property
    def risk_book(self) -> str:
        """Hash of every shard's P&L and exposure (:mod:`edge.shared_book`); ``{risk}`` keeps risk keys in one slot."""
        return f"{self.namespace}glassbox:{{risk}}:book"

    @property
    def trading_state(self) -> str:
        """The kill switch as the desks read it (:class:`edge.shared_book.TradingState`), beside the risk book."""
        return f"{self.namespace}glassbox:{{risk}}:trading"

    @property
    def components(self) -> str:
        """Hash where ``glassbox up``'s supervisor publishes each component's state."""
        return f"{self.namespace}glassbox:components"

    def recorded_shards(self, client: redis.Redis) -> int | None:
        """The shard count this system ran with, or None when it never ran on this Redis."""
        value = client.hget(self.layout, "shards")
        return None if value is None else int(value)

    def record_shards(self, client: redis.Redis, shards: int) -> None:
        """Remember the shard count (the desks live in those shards' stores)."""
        client.hset(self.layout, "shards", shards)

    def shard_stores(self, client: redis.Redis) -> list[str]:
        """Every shard store of the system, as recorded in its layout.

        Raises:
            EdgeError: no Glassbox system has run in this namespace on this Redis.
        """
        shards = self.recorded_shards(client)
        if shards is None:
            raise EdgeError(f"no Glassbox system has run on this Redis (namespace {self.namespace or 'default'}): "
                            "run `glassbox up` first")
        return [self.shard_store(i) for i in range(shards)]
