"""The relay as a process: ``python -m backbone.relay_main --store NAME``.

Attaches to an existing event store (``REDIS_URL``) and broker
(``KAFKA_BOOTSTRAP_SERVERS``), relays until SIGTERM or SIGINT, then closes
cleanly; a SIGKILL loses nothing either (see :mod:`backbone.relay`). Prints
one progress line a second: relayed events/s, lag, circuit state.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from pathlib import Path
from typing import Callable, Sequence

import redis

from aggregates.errors import ModelNotFound
from aggregates.registry import ModelRegistry
from backbone.circuit import BreakerSettings
from backbone.relay import Relay, RelaySettings
from backbone.service import run_until_signalled
from backbone.topics import TopicSettings
from edge.gc_settling import settle_garbage_collector
from edge.logs import configure_logging
from glassbox import GlassboxError, Settings, SettingsError

__all__ = ["main", "registry_feature_names"]


def registry_feature_names(registry: ModelRegistry):  # noqa: ANN201 - a cached callable
    """``feature_names(version)`` for envelopes, read once per version; KeyError when unknown."""

    @functools.lru_cache(maxsize=64)
    def feature_names(version: str) -> tuple[str, ...]:
        try:
            return registry.feature_names(version)
        except ModelNotFound as error:
            raise KeyError(version) from error

    return feature_names


def main(argv: Sequence[str] | None = None) -> int:
    """Run the relay process; returns its exit code (0 after a clean stop, 2 on a usage error, 3 when Redis is lost)."""
    parser = argparse.ArgumentParser(prog="python -m backbone.relay_main", description=__doc__)
    parser.add_argument("--store", required=True, help="event store name, e.g. glassbox:shard-0")
    parser.add_argument("--name", default="relay", help="relay name (its stored position)")
    parser.add_argument("--topic-prefix", default="", help="prefix of the topics (isolates a run)")
    parser.add_argument("--from-position", type=int, default=None,
                        help="re-publish from this log position (1 = everything) before relaying on")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written once the relay has taken its first step (for a supervisor)")
    parser.add_argument("--batch-size", type=int, default=RelaySettings.batch_size)
    parser.add_argument("--failure-threshold", type=int, default=BreakerSettings.failure_threshold)
    parser.add_argument("--reset-timeout", type=float, default=BreakerSettings.reset_timeout)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(f"relay:{args.store}", settings.log_level)
        if not settings.redis_url or not settings.kafka_bootstrap_servers:
            raise SettingsError("the relay attaches to running services: set REDIS_URL and KAFKA_BOOTSTRAP_SERVERS")
        relay = Relay(
            settings.redis_url,
            args.store,
            settings.kafka_bootstrap_servers,
            TopicSettings.from_settings(settings, prefix=args.topic_prefix),
            registry_feature_names(ModelRegistry(settings.model_dir)),
            RelaySettings(
                name=args.name, batch_size=args.batch_size,
                breaker=BreakerSettings(args.failure_threshold, args.reset_timeout),
            ),
        )
        if args.from_position is not None:
            relay.position.set(max(args.from_position - 1, 0))
        settle_garbage_collector()
        asyncio.run(run_until_signalled(relay.run, _progress(relay), lambda: relay.steps > 0, args.ready_file))
    except (GlassboxError, ValueError) as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
    except redis.RedisError as error:  # its event store went away: the supervisor starts it again once Redis answers
        print(f"relay: lost Redis ({error}); exiting: restarted once Redis answers, it resumes from its stored "
              "position", file=sys.stderr)
        return 3
    return 0


def _progress(relay: Relay) -> Callable[[float], str]:
    last = [0]

    def line(seconds: float) -> str:
        m = relay.metrics
        rate = (m.relayed_total - last[0]) / seconds if seconds > 0 else 0.0
        last[0] = m.relayed_total
        return (f"relay {relay.store_name}: {rate:,.0f} events/s  position {m.position:,}  "
                f"lag {m.lag:,}  circuit {m.circuit_state}")

    return line


if __name__ == "__main__":
    sys.exit(main())
