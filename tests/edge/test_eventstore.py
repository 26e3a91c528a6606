"""The Redis Streams event store against eventsourcing's own contract tests.

Every case gets the session's Redis (see ``tests/conftest.py``) and its own key
prefix, and deletes that prefix's keys when it ends.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
import redis
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.tests import persistence as contract
from eventsourcing.utils import Environment

from edge.eventstore import (
    RedisAggregateRecorder,
    RedisApplicationRecorder,
    RedisFactory,
    RedisProcessRecorder,
    RedisTrackingRecorder,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.persistence import Notification


def delete_store(url: str, key_prefix: str) -> None:
    """Delete every key of the store named ``key_prefix``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{{{key_prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
    finally:
        client.close()


def store_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    """The eventsourcing settings that select a store."""
    return {
        "PERSISTENCE_MODULE": "edge.eventstore",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
    }


@pytest.fixture(autouse=True)
def _unittest_store(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str
) -> None:
    """Hand the session's Redis and a fresh key prefix to unittest-style cases."""
    if request.instance is not None:
        request.instance.redis_url = redis_url
        request.instance.key_prefix = key_prefix


class RedisStoreCase:
    """Mixin: a RedisFactory per test, closed and its keys deleted afterwards."""

    redis_url: str
    key_prefix: str
    factory: RedisFactory

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.factory = RedisFactory(store_env(self.redis_url, self.key_prefix))

    def tearDown(self) -> None:
        self.factory.close()
        delete_store(self.redis_url, self.key_prefix)
        super().tearDown()  # type: ignore[misc]


class TestRedisAggregateRecorder(RedisStoreCase, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> RedisAggregateRecorder:
        return RedisAggregateRecorder(self.factory.datastore, family="snapshots")


class TestRedisApplicationRecorder(
    RedisStoreCase, contract.ApplicationRecorderTestCase[RedisApplicationRecorder]
):
    def create_recorder(self) -> RedisApplicationRecorder:
        return RedisApplicationRecorder(self.factory.datastore)

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestRedisTrackingRecorder(RedisStoreCase, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> RedisTrackingRecorder:
        return RedisTrackingRecorder(self.factory.datastore)


class TestRedisProcessRecorder(RedisStoreCase, contract.ProcessRecorderTestCase):
    def create_recorder(self) -> RedisProcessRecorder:
        return RedisProcessRecorder(self.factory.datastore)


class TestRedisNonInterleavingNotificationIDs(
    RedisStoreCase, contract.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> RedisApplicationRecorder:
        return RedisApplicationRecorder(self.factory.datastore)


class CustomTrackingRecorder(RedisTrackingRecorder):
    """A subclass the factory must construct when asked to."""


class TestRedisInfrastructureFactory(
    contract.InfrastructureFactoryTestCase[RedisFactory]
):
    redis_url: str
    key_prefix: str

    def setUp(self) -> None:
        self.env = Environment("TestCase", store_env(self.redis_url, self.key_prefix))
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        delete_store(self.redis_url, self.key_prefix)

    def expected_factory_class(self) -> type[RedisFactory]:
        return RedisFactory

    def expected_aggregate_recorder_class(self) -> type[RedisAggregateRecorder]:
        return RedisAggregateRecorder

    def expected_application_recorder_class(self) -> type[RedisApplicationRecorder]:
        return RedisApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[RedisTrackingRecorder]:
        return RedisTrackingRecorder

    def tracking_recorder_subclass(self) -> type[RedisTrackingRecorder]:
        return CustomTrackingRecorder

    def expected_process_recorder_class(self) -> type[RedisProcessRecorder]:
        return RedisProcessRecorder


@pytest.fixture
def factory(redis_url: str, key_prefix: str) -> Iterator[RedisFactory]:
    """A RedisFactory on a fresh store, closed and deleted afterwards."""
    store = RedisFactory(store_env(redis_url, key_prefix))
    try:
        yield store
    finally:
        store.close()
        delete_store(redis_url, key_prefix)


def stored(originator_id: UUID, version: int, topic: str) -> StoredEvent:
    return StoredEvent(originator_id, version, topic, f"{topic}-{version}".encode())


def test_missing_url_says_what_to_set() -> None:
    with pytest.raises(OSError, match="REDIS_URL"):
        InfrastructureFactory.construct({"PERSISTENCE_MODULE": "edge.eventstore"})


def test_unreachable_redis_is_an_operational_error(key_prefix: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = store_env(f"redis://127.0.0.1:{port}/0", key_prefix)
    with RedisFactory(env) as store:
        try:
            with pytest.raises(OperationalError):
                store.application_recorder().max_notification_id()
            with pytest.raises(OperationalError):
                store.application_recorder().insert_events([stored(uuid4(), 0, "a")])
        finally:
            store.close()


def test_payload_is_stored_once_in_the_log(
    factory: RedisFactory, key_prefix: str
) -> None:
    recorder = factory.application_recorder()
    originator_id = uuid4()
    assert recorder.insert_events(
        [stored(originator_id, 0, "a"), stored(originator_id, 1, "b")]
    ) == [1, 2]

    client = factory.datastore.client
    tag = "{" + key_prefix + "}"
    assert client.get(f"{tag}:seq") == b"2"
    references = client.xrange(f"{tag}:agg:{originator_id}") or []
    assert [fields for _, fields in references] == [{b"n": b"1"}, {b"n": b"2"}]
    log = client.xrange(f"{tag}:log") or []
    assert [entry_id for entry_id, _ in log] == [b"1-0", b"2-0"]
    assert log[1][1] == {
        b"o": str(originator_id).encode(),
        b"v": b"1",
        b"t": b"b",
        b"s": b"b-1",
    }
    assert recorder.select_events(originator_id, desc=True, limit=1) == [
        stored(originator_id, 1, "b")
    ]


def test_refused_batch_writes_nothing(factory: RedisFactory) -> None:
    recorder = factory.process_recorder()
    first, second = uuid4(), uuid4()
    recorder.insert_events([stored(first, 0, "a")])

    with pytest.raises(IntegrityError):
        recorder.insert_events(
            [stored(second, 0, "a"), stored(first, 0, "a")],
            tracking=Tracking("upstream", 5),
        )

    assert recorder.select_events(second) == []
    assert recorder.max_notification_id() == 1
    assert recorder.max_tracking_id("upstream") is None


def test_application_recorder_selects_version_ranges(factory: RedisFactory) -> None:
    recorder = factory.application_recorder()
    originator_id = uuid4()
    recorder.insert_events([stored(originator_id, v, "t") for v in range(5)])

    def versions(**kwargs: Any) -> list[int]:
        return [
            e.originator_version
            for e in recorder.select_events(originator_id, **kwargs)
        ]

    assert versions() == [0, 1, 2, 3, 4]
    assert versions(gt=1, lte=3) == [2, 3]
    assert versions(desc=True, limit=2) == [4, 3]
    assert versions(lte=2, desc=True, limit=1) == [2]
    assert versions(gt=4) == []
    assert versions(lte=-1) == []
    assert recorder.select_events(originator_id, gt=3) == [
        stored(originator_id, 4, "t")
    ]


def test_text_originator_ids(redis_url: str, key_prefix: str) -> None:
    env = {**store_env(redis_url, key_prefix), "ORIGINATOR_ID_TYPE": "text"}
    with RedisFactory(env) as store:
        try:
            recorder = store.application_recorder()
            recorder.insert_events([StoredEvent("dog-1", 0, "t", b"s")])
            [notification] = recorder.select_notifications(start=None, limit=1)
            assert notification.originator_id == "dog-1"
            assert recorder.select_events("dog-1")[0].originator_id == "dog-1"
        finally:
            store.close()
            delete_store(redis_url, key_prefix)


def test_topic_filter_pages_through_the_log(factory: RedisFactory) -> None:
    recorder = RedisApplicationRecorder(factory.datastore)
    recorder.page_size = 2
    originator_id = uuid4()
    topics = ["x", "y", "y", "y", "x", "y", "x"]
    recorder.insert_events([stored(originator_id, v, t) for v, t in enumerate(topics)])

    found = recorder.select_notifications(start=None, limit=2, topics=["x"])
    assert [n.id for n in found] == [1, 5]
    found = recorder.select_notifications(start=2, limit=10, topics=["x"], stop=6)
    assert [n.id for n in found] == [5]


def test_stop_ends_a_blocked_subscription(factory: RedisFactory) -> None:
    recorder = factory.application_recorder()
    received: list[Notification] = []
    subscription = recorder.subscribe(gt=None)

    def consume() -> None:
        with subscription:
            received.extend(subscription)

    consumer = threading.Thread(target=consume)
    consumer.start()
    recorder.insert_events([stored(uuid4(), 0, "a")])
    while not received and consumer.is_alive():
        consumer.join(timeout=0.01)
    subscription.stop()
    consumer.join(timeout=30)

    assert not consumer.is_alive()
    assert [n.topic for n in received] == ["a"]


class Dog(Aggregate):
    """A small aggregate for the application round trip."""

    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


def test_application_with_snapshots(redis_url: str, key_prefix: str) -> None:
    env: dict[str, Any] = {
        **store_env(redis_url, key_prefix),
        "IS_SNAPSHOTTING_ENABLED": "y",
    }
    app: Application[UUID] = Application(env=env)
    try:
        dog = Dog("Fido")
        dog.add_trick("roll over")
        app.save(dog)
        assert app.repository.get(dog.id).tricks == ["roll over"]

        app.take_snapshot(dog.id)
        copy: Dog = app.repository.get(dog.id)
        copy.add_trick("play dead")
        app.save(copy)

        assert app.snapshots is not None
        assert [s.originator_version for s in app.snapshots.get(dog.id)] == [2]
        again: Dog = app.repository.get(dog.id)
        assert again.tricks == ["roll over", "play dead"]
        assert again.version == 3

        dog.add_trick("fetch")  # dog is stale: version 3 is taken
        with pytest.raises(IntegrityError):
            app.save(dog)
        notifications = app.recorder.select_notifications(start=None, limit=10)
        assert [n.id for n in notifications] == [1, 2, 3]
    finally:
        app.close()
        delete_store(redis_url, key_prefix)
