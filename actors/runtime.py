"""The hot path of one shard, assembled: Redis client, event store, policy, actors.

``HotPath`` is what ``glassbox up``, the restart-safety tests and the
benchmarks all run, so they exercise one and the same assembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import redis

from actors.application import DeskApplication, event_store_env
from actors.book import PortfolioBook
from actors.features import warm_up
from actors.shard import Shard, ShardSettings
from actors.stats import HotPathStats
from actors.trading_control import TradingControl
from aggregates.errors import ModelNotFound
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.registry import ModelRegistry
from edge.gc_settling import settle_garbage_collector
from edge.shared_book import SharedBook
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys

__all__ = ["HotPath", "HotPathSettings"]


@dataclass(frozen=True)
class HotPathSettings:
    """Everything a shard's hot path needs besides its symbols."""

    redis_url: str
    namespace: str = ""
    """Key prefix for tick streams and the event store (isolates tests and backtests)."""
    capital: float = 1_000_000.0
    book_share: float = 1.0
    """This shard's symbols over the whole book's: its share of the leverage budget (the shards
    exchange their figures, and read the kill switch, through the shared book in Redis)."""
    shard: ShardSettings = field(default_factory=ShardSettings)
    halts: bool = True
    """Whether the shard halts trading when the whole book breaks its daily loss limit (live: yes;
    a backtest, with nobody to resume it: no, its daily loss check alone stops growth for the day)."""

    @property
    def store_name(self) -> str:
        return SystemKeys(self.namespace).store(self.shard.name)


class HotPath:
    """Starts and stops one shard; exposes its stats, store and tick keys."""

    def __init__(
        self,
        settings: HotPathSettings,
        symbols: Sequence[str],
        policy: DecisionPolicy,
    ) -> None:
        self.settings = settings
        self.symbols = list(symbols)
        self.policy = policy
        self.keys = TickKeys(settings.namespace)
        self.client = redis.Redis.from_url(settings.redis_url)
        self.app = DeskApplication(env=event_store_env(settings.redis_url, settings.store_name))
        self.book = PortfolioBook(settings.capital, settings.book_share)
        self.stats = HotPathStats()
        system_keys = SystemKeys(settings.namespace)
        shared = SharedBook(self.client, system_keys.risk_book, settings.shard.name, system_keys.trading_state)
        self.trading = TradingControl(settings.redis_url, system_keys) if settings.halts else None
        self.shard = Shard(
            self.client, self.app, policy, self.symbols, self.book,
            self.keys, settings.shard, self.stats, shared,
            None if self.trading is None else self.trading.halt_unless_halted,
        )

    @classmethod
    def from_registry(
        cls, settings: HotPathSettings, symbols: Sequence[str], registry: ModelRegistry,
        version: str | None = None, sizing: Sizing | None = None,
    ) -> HotPath:
        """A hot path deciding with a model version from the registry (the latest by default).

        ``sizing`` holds the no-trade band (``Settings.min_trade_fraction``); the policy's default without.

        Raises:
            ModelNotFound: when the registry has no such version (run ``glassbox train``).
        """
        chosen = version or registry.latest()
        if chosen is None:
            raise ModelNotFound(f"the model registry {registry.root} is empty: run `glassbox train`")
        return cls(settings, symbols, DecisionPolicy(registry.load(chosen), sizing=sizing))

    def start(self) -> None:
        """Compile kernels before the first tick, then start the actors and the reader."""
        warm_up()
        settle_garbage_collector()
        if self.trading is not None:
            self.trading.sync()  # a halt recorded but not yet in force (a crash between the two) is, now
        self.shard.start()

    def stop(self) -> None:
        """Finish the cycle in progress (it commits), stop the actors, close connections."""
        self.shard.stop()
        self.app.close()
        if self.trading is not None:
            self.trading.close()
        self.client.close()

    def __enter__(self) -> HotPath:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
