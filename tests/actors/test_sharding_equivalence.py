"""The same ticks give the same decisions on one shard or two (the real Redis event store)."""

from __future__ import annotations

import orjson

from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.sharding import assign_symbols
from edge.eventstore import RedisApplicationRecorder, RedisDatastore, RedisStoreSettings
from edge.feeds import SyntheticFeed
from edge.tick_stream import TickPublisher
from tests.actors.hot_path_support import wait_until_decided

SYMBOLS = SyntheticFeed.symbol_names(6)
TICKS_PER_SYMBOL = 150


def _decide(redis_url: str, namespace: str, policy, shards: int) -> dict[tuple[str, int], dict]:
    """Run ``shards`` shards over the same ticks; every decision keyed by (symbol, tick time)."""
    ticks = list(SyntheticFeed(SYMBOLS, seed=23).ticks(TICKS_PER_SYMBOL))
    hot_paths = [
        HotPath(HotPathSettings(redis_url, namespace=namespace, shard=ShardSettings(name=f"shard-{i}")), owned, policy)
        for i, owned in enumerate(assign_symbols(SYMBOLS, shards)) if owned
    ]
    assert len(hot_paths) == shards
    TickPublisher(hot_paths[0].client, hot_paths[0].keys, SYMBOLS).publish(ticks, stamp=False)
    decisions: dict[tuple[str, int], dict] = {}
    for hot in hot_paths:
        with hot:
            wait_until_decided(hot, sum(1 for t in ticks if t.symbol in hot.symbols))
        recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(redis_url, key_prefix=hot.settings.store_name)))
        for notification in recorder.select_notifications(1, 100_000):
            if notification.topic == "Trading.Decision.Taken":
                state = orjson.loads(notification.state)
                # Ids name the tick's stream entry, which Redis numbers per run: compare the decision itself.
                for field in ("timestamp", "correlation_id", "decision_id"):
                    state.pop(field)
                decisions[(state["symbol"], state["timestamp_ns"])] = state
    assert len(decisions) == len(ticks)
    return decisions


def test_one_shard_and_two_shards_decide_the_same(redis_url, namespace, policy) -> None:
    one = _decide(redis_url, f"{namespace}n1:", policy, 1)
    two = _decide(redis_url, f"{namespace}n2:", policy, 2)
    assert one.keys() == two.keys()
    assert one == two
