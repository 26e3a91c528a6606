"""SystemKeys: the one owner of a system's key and store names, and its recorded layout (real Redis)."""

from __future__ import annotations

import pytest
import redis

from edge.errors import EdgeError
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys


def test_names_carry_the_namespace() -> None:
    keys = SystemKeys("ns:")
    assert keys.shard_store(2) == keys.store("shard-2") == "ns:glassbox:shard-2"
    assert (keys.system_store, keys.backtests_store) == ("ns:glassbox:system", "ns:glassbox:backtests")
    assert (keys.layout, keys.components) == ("ns:glassbox:layout", "ns:glassbox:components")
    assert TickKeys("ns:").feed_offset("bundled") == "ns:feed:bundled:offset"


def test_shard_stores_follow_the_recorded_layout(redis_url: str, namespace: str) -> None:
    keys = SystemKeys(namespace)
    with redis.Redis.from_url(redis_url) as client:
        with pytest.raises(EdgeError, match="run `glassbox up` first"):
            keys.shard_stores(client)
        assert keys.recorded_shards(client) is None
        keys.record_shards(client, 3)
        assert keys.recorded_shards(client) == 3
        assert keys.shard_stores(client) == [keys.shard_store(i) for i in range(3)]
