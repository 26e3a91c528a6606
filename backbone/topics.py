"""The Kafka topics Glassbox uses, and creating them.

Four event topics, keyed by symbol so one symbol's events stay in order on
one partition, plus one dead-letter topic per consumer group. A prefix
isolates tests and backtests from live topics. Partitions, replication and
retention come from settings: the embedded broker has one node (replication
1); a real Apache Kafka cluster should get a replication factor of at least 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from backbone.errors import TopicError
from glassbox import Settings

__all__ = [
    "EVENT_TOPICS",
    "TopicSettings",
    "TopicSpec",
    "dead_letter_spec",
    "dead_letter_topic",
    "ensure_topics",
    "glassbox_topics",
]

EVENT_TOPICS = ("trading_decisions", "risk_decisions", "risk_alerts", "regime_changes", "model_updates")
"""The event topics of docs/design.md (Data flow), before any prefix."""

_TOPIC_ALREADY_EXISTS = 36  # Kafka error code; creating an existing topic is not a failure here


@dataclass(frozen=True)
class TopicSettings:
    """Shape of the topics Glassbox creates."""

    partitions: int = 8
    replication_factor: int = 1
    retention_ms: int | None = None
    """``None`` keeps the broker's default retention."""
    prefix: str = ""
    """Put before every topic name (``test-1a2b.``, ``backtest-7.``) to isolate a run."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {self.partitions!r}")
        if self.replication_factor < 1:
            raise ValueError(f"replication_factor must be at least 1, not {self.replication_factor!r}")
        if self.retention_ms is not None and self.retention_ms < -1:
            raise ValueError(f"retention_ms must be -1 (forever) or positive, not {self.retention_ms!r}")
        if any(c not in _TOPIC_CHARS for c in self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} may hold only letters, digits, '.', '_' and '-'")

    @classmethod
    def from_settings(cls, settings: Settings, prefix: str = "") -> TopicSettings:
        """Partitions, replication and retention as ``KAFKA_*`` settings give them."""
        return cls(
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            retention_ms=settings.kafka_retention_ms,
            prefix=prefix,
        )

    def name(self, topic: str) -> str:
        """The full name of ``topic`` under this prefix."""
        return f"{self.prefix}{topic}"


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create."""

    name: str
    partitions: int
    replication_factor: int
    configs: tuple[tuple[str, str], ...] = ()


def dead_letter_topic(consumer_group: str) -> str:
    """Name (before any prefix) of the dead-letter topic of a consumer group."""
    return f"dlq.{consumer_group}"


def glassbox_topics(settings: TopicSettings, consumer_groups: Iterable[str] = ()) -> list[TopicSpec]:
    """The event topics plus one dead-letter topic per consumer group, as settings shape them."""
    names = [*EVENT_TOPICS, *(dead_letter_topic(group) for group in consumer_groups)]
    return [_spec(settings, name) for name in names]


def dead_letter_spec(settings: TopicSettings, consumer_group: str) -> TopicSpec:
    """The dead-letter topic of ``consumer_group``, as settings shape it."""
    return _spec(settings, dead_letter_topic(consumer_group))


def _spec(settings: TopicSettings, name: str) -> TopicSpec:
    configs = () if settings.retention_ms is None else (("retention.ms", str(settings.retention_ms)),)
    return TopicSpec(settings.name(name), settings.partitions, settings.replication_factor, configs)


async def ensure_topics(bootstrap_servers: str, specs: Sequence[TopicSpec], timeout: float = 10.0) -> list[str]:
    """Create the topics that are missing; return the names it created.

    An existing topic is left as it is, but one with fewer partitions than
    asked is refused: keys would map to other partitions than the consumers
    expect.

    Raises:
        TopicError: the broker refused a topic, or one exists with too few partitions.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000))
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
                for s in specs
            ],
            timeout_ms=int(timeout * 1000),
        )
        created, existing, refused = [], [], []
        for topic, code, message in _topic_errors(response):
            if code == 0:
                created.append(topic)
            elif code == _TOPIC_ALREADY_EXISTS:
                existing.append(topic)
            else:
                refused.append(f"{topic}: error {code} {message or ''}".strip())
        if refused:
            raise TopicError(f"the broker at {bootstrap_servers} refused to create topics: {'; '.join(refused)}")
        if existing:
            _check_partitions(await admin.describe_topics(existing), {s.name: s.partitions for s in specs})
        return created
    except KafkaError as error:
        raise TopicError(f"could not create topics on {bootstrap_servers}: {error!r}") from error
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = []
    for row in getattr(response, "topic_errors", ()):
        topic, code = row[0], row[1]
        message = row[2] if len(row) > 2 else None
        rows.append((topic, code, message))
    return rows


def _check_partitions(described: list[dict], wanted: dict[str, int]) -> None:
    short = [
        f"{t['topic']} has {len(t['partitions'])} partitions, {wanted[t['topic']]} wanted"
        for t in described
        if len(t["partitions"]) < wanted[t["topic"]]
    ]
    if short:
        raise TopicError(
            f"existing topics are too small: {'; '.join(short)}; add partitions or use another topic prefix"
        )
