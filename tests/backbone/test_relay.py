"""The relay on the real Redis event store and the real broker: in order, once, resumable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from actors.features import FEATURE_NAMES
from backbone.broker import BrokerSettings, EmbeddedBroker, run_coroutine
from backbone.circuit import BreakerSettings, CircuitState
from backbone.relay import Relay, RelaySettings
from tests.actors.hot_path_support import STORE_SYMBOLS as SYMBOLS
from tests.backbone.relay_support import (
    consume_all,
    feature_names,
    log_size,
    relay_until_caught_up,
)


def test_every_committed_event_is_relayed_once_in_order_with_its_envelope(
    redis_url, store, kafka_servers, topic_settings
):
    relay = Relay(redis_url, store, kafka_servers, topic_settings, feature_names,
                  RelaySettings(batch_size=128, pack_max_events=1))
    head = log_size(redis_url, store)
    assert relay_until_caught_up(relay) == head
    assert relay.position.get() == head and relay.metrics.lag == 0

    envelopes = consume_all(kafka_servers, topic_settings, head)
    positions = [e["log_position"] for e in envelopes]
    assert sorted(positions) == list(range(1, head + 1))  # every event, none twice
    assert len({e["event_id"] for e in envelopes}) == head
    for symbol in SYMBOLS:  # one symbol's events keep the log's order on its partition
        mine = [e for e in envelopes if e["symbol"] == symbol and e["_topic"].endswith("trading_decisions")]
        assert [e["log_position"] for e in mine] == sorted(e["log_position"] for e in mine)
    types = Counter(e["event_type"] for e in envelopes)
    assert types["Trading.Decision.Taken.v2"] == 300
    decision = next(e for e in envelopes if e["event_type"] == "Trading.Decision.Taken.v2")
    assert decision["_key"] == decision["symbol"].encode()
    assert decision["_headers"] == {  # schema 2: every record is a pack, here of one
        "event_type": b"pack",
        "log_position": str(decision["log_position"]).encode(),
        "log_position_last": str(decision["log_position"]).encode(),
        "events": b"1",
        "schema_version": b"2",
    }
    assert decision["schema_version"] == 2
    body = decision["trading_decision"]
    assert set(body["features"]) == set(FEATURE_NAMES)
    assert set(body["strategy_weights"]) == {"bull_specialist", "bear_specialist", "sideways_specialist"}
    for field in ("decision_id", "timestamp", "symbol", "action", "quantity", "confidence",
                  "regime_probs", "risk_checks", "model_version"):
        assert field in body
    assert decision["correlation_id"] and decision["timestamp"].endswith("Z")


def test_a_new_relay_resumes_from_the_stored_position(redis_url, store, kafka_servers, topic_settings):
    first = Relay(redis_url, store, kafka_servers, topic_settings, feature_names, RelaySettings(batch_size=100))

    async def one_step() -> int:
        try:
            return await first.step()
        finally:
            await first.close()

    assert run_coroutine(one_step()) == 100
    second = Relay(redis_url, store, kafka_servers, topic_settings, feature_names, RelaySettings(batch_size=100))
    head = log_size(redis_url, store)
    assert relay_until_caught_up(second) == head - 100
    positions = sorted(e["log_position"] for e in consume_all(kafka_servers, topic_settings, head))
    assert positions == list(range(1, head + 1))


def test_republishing_from_a_position_sends_those_events_again_with_the_same_ids(
    redis_url, store, kafka_servers, topic_settings
):
    relay = Relay(redis_url, store, kafka_servers, topic_settings, feature_names)
    head = log_size(redis_url, store)
    relay_until_caught_up(relay)
    again = Relay(redis_url, store, kafka_servers, topic_settings, feature_names)
    again.position.set(head - 10)
    assert relay_until_caught_up(again) == 10
    envelopes = consume_all(kafka_servers, topic_settings, head + 10)
    assert len(envelopes) == head + 10
    ids = Counter(e["event_id"] for e in envelopes)
    assert sum(1 for n in ids.values() if n == 2) == 10  # the re-sent ones, recognisable by id


def test_a_dead_broker_opens_the_circuit_and_only_grows_lag(redis_url, store, tmp_path: Path, topic_settings):
    ticks = [0.0]
    broker_settings = BrokerSettings()
    broker = EmbeddedBroker(tmp_path / "b", broker_settings)
    broker.start()
    servers = broker.bootstrap_servers
    port = broker.port
    broker.stop()
    relay = Relay(
        redis_url, store, servers, topic_settings, feature_names,
        RelaySettings(batch_size=50, request_timeout_ms=1_000, breaker=BreakerSettings(failure_threshold=2, reset_timeout=5)),
        clock=lambda: ticks[0],
    )

    async def steps(n: int) -> list[int]:
        return [await relay.step() for _ in range(n)]

    assert run_coroutine(steps(2)) == [0, 0]
    assert relay.breaker.state == CircuitState.OPEN and relay.metrics.circuit_opened_total == 1
    assert relay.position.get() == 0 and relay.metrics.lag == log_size(redis_url, store)
    assert run_coroutine(steps(3)) == [0, 0, 0]  # open: refused without touching the broker
    assert relay.metrics.failed_steps == 2

    with EmbeddedBroker(tmp_path / "b2", BrokerSettings(port=port)):
        ticks[0] = 10.0  # past the reset timeout: half-open, one trial
        assert relay.breaker.state == CircuitState.HALF_OPEN
        head = log_size(redis_url, store)
        assert relay_until_caught_up(relay) == head
        assert relay.breaker.state == CircuitState.CLOSED
        assert len(consume_all(servers, topic_settings, head)) == head


def test_packed_records_keep_every_event_once_and_each_symbols_order(redis_url, store, kafka_servers, topic_settings):
    relay = Relay(redis_url, store, kafka_servers, topic_settings, feature_names,
                  RelaySettings(batch_size=500, pack_max_events=25))
    head = log_size(redis_url, store)
    assert relay_until_caught_up(relay) == head
    envelopes = consume_all(kafka_servers, topic_settings, head)
    assert sorted(e["log_position"] for e in envelopes) == list(range(1, head + 1))
    packs = [e for e in envelopes if e["_headers"]["event_type"] == b"pack"]
    assert any(int(e["_headers"]["events"]) > 1 for e in packs), "nothing was packed"
    assert all(int(e["_headers"]["events"]) <= 25 for e in packs)
    for symbol in SYMBOLS:
        for topic in {e["_topic"] for e in envelopes}:
            mine = [e["log_position"] for e in envelopes if e["symbol"] == symbol and e["_topic"] == topic]
            assert mine == sorted(mine)
