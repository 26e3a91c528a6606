"""Settings parsed from the environment: defaults, validation, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.topics import TopicSettings
from glassbox import Settings, SettingsError, redact_url


def test_defaults_mean_embedded_services(tmp_path: Path) -> None:
    settings = Settings.from_env({"GLASSBOX_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()
    assert (settings.redis_url, settings.kafka_bootstrap_servers, settings.database_url) == (None, None, None)
    assert (settings.kafka_partitions, settings.kafka_replication_factor, settings.kafka_retention_ms) == (8, 1, None)


def test_production_settings_are_read_and_shape_topics() -> None:
    settings = Settings.from_env({
        "REDIS_URL": "redis://cache:6379/0",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "DATABASE_URL": "postgresql://gb:s3cret@db/glassbox",
        "KAFKA_PARTITIONS": "24",
        "KAFKA_REPLICATION_FACTOR": "3",
        "KAFKA_RETENTION_MS": "604800000",
    })
    topics = TopicSettings.from_settings(settings, prefix="live.")
    assert (topics.partitions, topics.replication_factor, topics.retention_ms, topics.prefix) == (24, 3, 604_800_000, "live.")
    assert "s3cret" not in repr(settings)
    assert "postgresql://gb:***@db/glassbox" in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_URL", "http://x", "REDIS_URL='http://x' must start with one of redis://"),
        ("DATABASE_URL", "mysql://x", "must start with one of postgresql://"),
        ("KAFKA_PARTITIONS", "many", "KAFKA_PARTITIONS='many' must be a whole number"),
        ("KAFKA_PARTITIONS", "0", "must be at least 1"),
        ("KAFKA_REPLICATION_FACTOR", "-2", "must be at least 1"),
        ("KAFKA_RETENTION_MS", "-7", "must be at least -1"),
        ("GLASSBOX_TICK_MAX_FUTURE_S", "-1", "must be a positive number"),
        ("GLASSBOX_TICK_MAX_PRICE", "inf", "must be a positive number"),
        ("GLASSBOX_TICK_MIN_PRICE", "1e13", "must be below GLASSBOX_TICK_MAX_PRICE"),
        ("GLASSBOX_TICK_MAX_SIZE", "nan", "must be a positive number"),
        ("GLASSBOX_TICK_EARLIEST", "last year", "must be an ISO date or time"),
        ("GLASSBOX_TICK_EARLIEST", "1969-12-31", "must be from 1970-01-01 to now"),
        ("GLASSBOX_TICK_EARLIEST", "2999-01-01", "must be from 1970-01-01 to now"),
    ],
)
def test_bad_settings_are_one_clear_error(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("+", r"\+")):
        Settings.from_env({name: value})


def test_tick_bounds_are_read_with_their_defaults() -> None:
    defaults = Settings.from_env({})
    assert (defaults.tick_earliest_ns, defaults.tick_max_future_s, defaults.tick_min_price,
            defaults.tick_max_price, defaults.tick_max_size) == (0, 60.0, 1e-12, 1e12, 1e15)
    chosen = Settings.from_env({"GLASSBOX_TICK_EARLIEST": "1980-01-01T00:00:00+00:00",
                                "GLASSBOX_TICK_MAX_FUTURE_S": "2.5", "GLASSBOX_TICK_MAX_SIZE": "100"})
    assert (chosen.tick_earliest_ns, chosen.tick_max_future_s, chosen.tick_max_size) == (
        315_532_800 * 10**9, 2.5, 100.0)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert redact_url(None) is None


def test_tick_bounds_defaults_are_the_settings_defaults():
    from edge.ticks import TickBounds

    assert TickBounds.from_settings(Settings.from_env({})) == TickBounds()


def test_min_trade_fraction_is_read_with_its_default_and_checked() -> None:
    from aggregates.policy import Sizing

    assert Settings.from_env({}).min_trade_fraction == Sizing().min_trade_fraction == 0.01
    assert Settings.from_env({"GLASSBOX_MIN_TRADE_FRACTION": "0.05"}).min_trade_fraction == 0.05
    assert Settings.from_env({"GLASSBOX_MIN_TRADE_FRACTION": "0"}).min_trade_fraction == 0.0
    for bad in ("1", "-0.1", "nan", "inf", "a lot"):
        with pytest.raises(SettingsError, match="GLASSBOX_MIN_TRADE_FRACTION=.* must be a fraction from 0"):
            Settings.from_env({"GLASSBOX_MIN_TRADE_FRACTION": bad})
