"""Project-wide pieces every Glassbox package needs: the root error and the settings.

Settings are parsed once, at the edge (the command line), into a frozen
object that is passed in; nothing below reads ``os.environ`` itself.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = ["GlassboxError", "SettingsError", "Settings", "redact_url"]


class GlassboxError(Exception):
    """Root of every error Glassbox raises on purpose.

    ``retriable`` says whether trying the same call again may succeed
    (like aiokafka's ``KafkaError.retriable``).
    """

    retriable: bool = False


class SettingsError(GlassboxError):
    """A setting that cannot be used; the message names it and says what to set."""


def redact_url(url: str | None) -> str | None:
    """The URL with any password replaced by ``***`` (for logs and reprs)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _url(environ: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    scheme = urlsplit(value).scheme
    if schemes and scheme not in schemes:
        raise SettingsError(
            f"{name}={redact_url(value)!r} must start with one of {', '.join(s + '://' for s in schemes)}"
        )
    return value


def _int(environ: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} must be a whole number") from None
    if number < minimum:
        raise SettingsError(f"{name}={value!r} must be at least {minimum}")
    return number


def _float(environ: Mapping[str, str], name: str, default: float, accept: Callable[[float], bool],
           must_be: str) -> float:
    """``name``'s number, or ``default`` when unset; a value ``accept`` refuses (or no number) is an error."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not accept(number):
        raise SettingsError(f"{name}={value!r} must be {must_be}")
    return number


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    return _float(environ, name, default, lambda n: 0 < n < float("inf"), "a positive number")


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    return _float(environ, name, default, lambda n: 0.0 <= n < 1.0,
                  "a fraction from 0 (no band) up to, not including, 1")


def _name(environ: Mapping[str, str], name: str, default: str, pattern: str) -> str:
    value = environ.get(name, "").strip() or default
    if not re.fullmatch(pattern, value):
        raise SettingsError(f"{name}={value!r} must match {pattern}")
    return value


def _date_ns(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} must be an ISO date or time, such as 1990-01-01") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    if stamp < datetime(1970, 1, 1, tzinfo=timezone.utc) or stamp > datetime.now(timezone.utc):
        raise SettingsError(f"{name}={value!r} must be from 1970-01-01 to now")
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1_000


def _tick_bounds(env: Mapping[str, str]) -> dict[str, float | int]:
    """The GLASSBOX_TICK_* bounds; each a positive finite number, the price range not empty (defaults: Settings')."""
    bounds = {
        "tick_earliest_ns": _date_ns(env, "GLASSBOX_TICK_EARLIEST", Settings.tick_earliest_ns),
        "tick_max_future_s": _positive_float(env, "GLASSBOX_TICK_MAX_FUTURE_S", Settings.tick_max_future_s),
        "tick_min_price": _positive_float(env, "GLASSBOX_TICK_MIN_PRICE", Settings.tick_min_price),
        "tick_max_price": _positive_float(env, "GLASSBOX_TICK_MAX_PRICE", Settings.tick_max_price),
        "tick_max_size": _positive_float(env, "GLASSBOX_TICK_MAX_SIZE", Settings.tick_max_size),
    }
    if bounds["tick_min_price"] >= bounds["tick_max_price"]:
        raise SettingsError(f"GLASSBOX_TICK_MIN_PRICE ({bounds['tick_min_price']:g}) must be below "
                            f"GLASSBOX_TICK_MAX_PRICE ({bounds['tick_max_price']:g})")
    return bounds


def _risk_limits(env: Mapping[str, str]) -> dict[str, float]:
    """The GLASSBOX_RISK_* limits: each a positive finite number; the stale move a fraction below 1."""
    return {
        "risk_max_position_fraction": _positive_float(env, "GLASSBOX_RISK_MAX_POSITION_FRACTION",
                                                      Settings.risk_max_position_fraction),
        "risk_max_leverage": _positive_float(env, "GLASSBOX_RISK_MAX_LEVERAGE", Settings.risk_max_leverage),
        "risk_daily_loss_limit": _positive_float(env, "GLASSBOX_RISK_DAILY_LOSS_LIMIT",
                                                 Settings.risk_daily_loss_limit),
        "risk_stale_move": _float(env, "GLASSBOX_RISK_STALE_MOVE", Settings.risk_stale_move,
                                  lambda n: 0.0 <= n < 1.0, "a fraction from 0 up to, not including, 1"),
        "risk_max_view_skew_ms": _positive_float(env, "GLASSBOX_RISK_MAX_VIEW_SKEW_MS",
                                                 Settings.risk_max_view_skew_ms),
    }


def _alerts(env: Mapping[str, str]) -> dict[str, object]:
    """The GLASSBOX_ALERT_* rules: a move in (0, 10), a window in (0, 86400] s, per-symbol ``SYM:MOVE/WINDOW_S``."""
    move_ok, window_ok = (lambda n: 0.0 < n < 10.0), (lambda n: 0.0 < n <= 86_400.0)
    rules = []
    for entry in filter(None, (part.strip() for part in env.get("GLASSBOX_ALERT_RULES", "").split(","))):
        found = re.fullmatch(r"([^:\s]+):([0-9.eE+-]+)/([0-9.eE+-]+)", entry)
        try:
            move, window = (float(found.group(2)), float(found.group(3))) if found else (math.nan, math.nan)
        except ValueError:
            move = window = math.nan
        if not (found and move_ok(move) and window_ok(window)):
            raise SettingsError(f"GLASSBOX_ALERT_RULES: {entry[:60]!r} must be SYMBOL:MOVE/WINDOW_S with a move "
                                "in (0, 10) and a window of (0, 86400] seconds, e.g. BTCUSD:0.03/30")
        rules.append((found.group(1), move, window))
    return {
        "alert_move": _float(env, "GLASSBOX_ALERT_MOVE", Settings.alert_move, move_ok,
                             "a fraction above 0 and below 10 (0.05 is 5 %)"),
        "alert_window_s": _float(env, "GLASSBOX_ALERT_WINDOW_S", Settings.alert_window_s, window_ok,
                                 "seconds above 0, at most 86400"),
        "alert_rules": tuple(rules),
    }


@dataclass(frozen=True)
class Settings:
    """Where Glassbox keeps its data and which external services it uses.

    Each URL left unset means "start the embedded one" (docs/design.md,
    Embedded default and production).
    """

    home: Path
    """Project-local data: embedded service data dirs, the model registry."""
    redis_url: str | None = field(default=None, repr=False)
    kafka_bootstrap_servers: str | None = None
    database_url: str | None = field(default=None, repr=False)
    kafka_partitions: int = 8
    kafka_replication_factor: int = 1
    kafka_retention_ms: int | None = None
    namespace: str = ""
    """Key prefix of every Redis key a run uses (isolates runs sharing one Redis)."""
    schema: str = "glassbox"
    """PostgreSQL schema of the read models."""
    topic_prefix: str = ""
    """Prefix of every Kafka topic (isolates runs sharing one broker)."""
    log_level: str = "INFO"
    """DEBUG adds a line per committed decision, with its tick's correlation id."""
    api_tokens: str = field(default="", repr=False)
    """``token:scope,scope;...`` the API accepts (``api.auth.ApiTokens`` parses it); empty: none given."""
    api_rate_per_s: float = 200.0
    """Requests per second per client before the API answers 429."""
    relay_stores: tuple[str, ...] = ()
    """(The API alone) the event stores whose relays ``/metrics`` reports."""
    tick_earliest_ns: int = 0
    """No tick is accepted before this time (ns since 1970); ``edge.ticks.TickBounds`` holds the tick bounds.

    These ``tick_*`` defaults are the one source of the tick bounds' defaults (``TickBounds`` reads them)."""
    tick_max_future_s: float = 60.0
    """Seconds a live tick may be ahead of the wall clock."""
    tick_min_price: float = 1e-12
    tick_max_price: float = 1e12
    """Prices, bids and asks outside [min, max] are refused (``bad_price``, ``bad_quote``)."""
    tick_max_size: float = 1e15
    """Sizes above this are refused (``bad_size``)."""
    min_trade_fraction: float = 0.01
    """The desks' no-trade band: a rebalance worth less than this fraction of equity is not placed
    (``aggregates.policy.Sizing``); every decision records it."""
    risk_max_position_fraction: float = 0.25
    """No order may take one position past this fraction of the book's equity.

    These ``risk_*`` defaults are the one source of ``aggregates.risk.RiskLimits``' defaults."""
    risk_max_leverage: float = 1.5
    """No order may take the book's gross exposure past this multiple of its equity."""
    risk_daily_loss_limit: float = 0.02
    """Once the book has lost this fraction of its start-of-day equity, no order may grow a position."""
    risk_stale_move: float = 0.005
    """The adverse move a shard assumes the other shards' positions made since they last published."""
    risk_max_view_skew_ms: float = 100.0
    """No order may grow a position while the desks it sees are further apart than this in stream time
    (publication time, ms): a shard or desk catching up on a backlog only reduces."""
    alert_move: float = 0.05
    """A price alert fires when a symbol moves this fraction (0.05: ±5 %) within ``alert_window_s``."""
    alert_window_s: float = 60.0
    alert_rules: tuple[tuple[str, float, float], ...] = ()
    """Per-symbol (symbol, move, window_s) overriding the default rule (``GLASSBOX_ALERT_RULES``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``GLASSBOX_HOME``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``,
        ``KAFKA_PARTITIONS``, ``KAFKA_REPLICATION_FACTOR``, ``KAFKA_RETENTION_MS``,
        ``GLASSBOX_NAMESPACE``, ``GLASSBOX_SCHEMA``, ``GLASSBOX_TOPIC_PREFIX``, ``GLASSBOX_LOG_LEVEL``,
        ``GLASSBOX_API_TOKENS``, ``GLASSBOX_API_RATE_PER_S``, ``GLASSBOX_RELAY_STORES`` and the tick
        bounds ``GLASSBOX_TICK_EARLIEST``, ``GLASSBOX_TICK_MAX_FUTURE_S``, ``GLASSBOX_TICK_MIN_PRICE``,
        ``GLASSBOX_TICK_MAX_PRICE``, ``GLASSBOX_TICK_MAX_SIZE``, ``GLASSBOX_MIN_TRADE_FRACTION`` and the
        risk limits ``GLASSBOX_RISK_MAX_POSITION_FRACTION``, ``GLASSBOX_RISK_MAX_LEVERAGE``,
        ``GLASSBOX_RISK_DAILY_LOSS_LIMIT`` and ``GLASSBOX_RISK_STALE_MOVE``, and the price alerts
        ``GLASSBOX_ALERT_MOVE``, ``GLASSBOX_ALERT_WINDOW_S`` and ``GLASSBOX_ALERT_RULES``
        (``SYMBOL:MOVE/WINDOW_S,...``).

        Raises:
            SettingsError: for a URL of the wrong kind or a number out of range.
        """
        env = os.environ if environ is None else environ
        home = Path(env.get("GLASSBOX_HOME", "").strip() or ".glassbox").resolve()
        return cls(
            home=home,
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None,
            database_url=_url(env, "DATABASE_URL", ("postgresql", "postgres")),
            kafka_partitions=_int(env, "KAFKA_PARTITIONS", 8, minimum=1),
            kafka_replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR", 1, minimum=1),
            kafka_retention_ms=_int(env, "KAFKA_RETENTION_MS", None, minimum=-1),
            namespace=_name(env, "GLASSBOX_NAMESPACE", "", r"[A-Za-z0-9._:-]*"),
            schema=_name(env, "GLASSBOX_SCHEMA", "glassbox", r"[a-z_][a-z0-9_]{0,62}"),
            topic_prefix=_name(env, "GLASSBOX_TOPIC_PREFIX", "", r"[A-Za-z0-9._-]*"),
            log_level=_name(env, "GLASSBOX_LOG_LEVEL", "INFO", r"DEBUG|INFO|WARNING|ERROR"),
            api_tokens=env.get("GLASSBOX_API_TOKENS", "").strip(),
            api_rate_per_s=_positive_float(env, "GLASSBOX_API_RATE_PER_S", 200.0),
            relay_stores=tuple(s for s in env.get("GLASSBOX_RELAY_STORES", "").split(",") if s.strip()),
            min_trade_fraction=_fraction(env, "GLASSBOX_MIN_TRADE_FRACTION", Settings.min_trade_fraction),
            **_tick_bounds(env),
            **_risk_limits(env),
            **_alerts(env),
        )

    @property
    def model_dir(self) -> Path:
        return self.home / "models"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    def __repr__(self) -> str:
        return (
            f"Settings(home={str(self.home)!r}, redis_url={redact_url(self.redis_url)!r}, "
            f"kafka_bootstrap_servers={self.kafka_bootstrap_servers!r}, "
            f"database_url={redact_url(self.database_url)!r}, "
            f"kafka_partitions={self.kafka_partitions}, "
            f"kafka_replication_factor={self.kafka_replication_factor}, "
            f"kafka_retention_ms={self.kafka_retention_ms})"
        )
