"""SIGKILL of the shard process mid-stream loses nothing and decides nothing twice (real Redis)."""

from __future__ import annotations

import os
import signal
import sys

import redis

from actors.application import DeskApplication, event_store_env
from aggregates.desk import SymbolDesk
from edge.feeds import SyntheticFeed
from edge.tick_stream import TickKeys, TickPublisher
from tests.process_report import LoggedProcess, wait_until

SYMBOLS = [f"K{i}" for i in range(6)]
ROUNDS = 4_000  # 24,000 ticks: several seconds of work, so the kill lands mid-stream


def start_shard(redis_url: str, namespace: str, home, output) -> LoggedProcess:
    env = dict(os.environ, REDIS_URL=redis_url, GLASSBOX_HOME=str(home))
    return LoggedProcess(
        [sys.executable, "-m", "actors.shard_main", "--symbols", ",".join(SYMBOLS), "--namespace", namespace],
        output, env=env,
    )


def outstanding(client: redis.Redis, keys: TickKeys) -> int:
    """Ticks not yet acknowledged: pending plus never delivered."""
    total = 0
    for symbol in SYMBOLS:
        stream = keys.stream(symbol)
        total += client.xpending(stream, "desks")["pending"]
        for group in client.xinfo_groups(stream):
            total += int(group.get("lag") or 0)
    return total


def test_sigkill_mid_stream_then_restart_decides_every_tick_exactly_once(
    redis_url, namespace, model_registry, tmp_path
):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_registry.root)
    client = redis.Redis.from_url(redis_url)
    keys = TickKeys(namespace)
    ticks = list(SyntheticFeed(SYMBOLS, seed=21).ticks(ROUNDS))
    TickPublisher(client, keys, SYMBOLS).publish(ticks, stamp=False)
    log_key = f"{{{namespace}glassbox:shard-0}}:log"

    first = start_shard(redis_url, namespace, home, tmp_path / "first.out")
    try:
        wait_until(lambda: client.exists(log_key) and client.xlen(log_key) > 3_000, 300, "first decisions", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, first.report()
    assert outstanding(client, keys) > 0, f"the kill came too late to land mid-stream\n{first.report()}"

    second = start_shard(redis_url, namespace, home, tmp_path / "second.out")
    try:
        wait_until(lambda: outstanding(client, keys) == 0, 300, "the restarted shard to catch up", second)
    finally:
        second.stop(120)  # SIGTERM; SIGKILL (a failure below) if it has not stopped 120 s later
    assert second.returncode == 0, second.report()

    app = DeskApplication(env=event_store_env(redis_url, f"{namespace}glassbox:shard-0"))
    notifications = app.recorder.select_notifications(start=None, limit=10_000_000)
    assert [n.id for n in notifications] == list(range(1, len(notifications) + 1))  # gapless log
    decided: dict[str, list[str]] = {s: [] for s in SYMBOLS}
    for notification in notifications:
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, SymbolDesk.DecisionTaken):
            decided[event.symbol].append(event.correlation_id)
    for symbol in SYMBOLS:
        stream_ids = [entry_id.decode() for entry_id, _ in client.xrange(keys.stream(symbol))]
        assert decided[symbol] == stream_ids, f"{symbol}: a tick was skipped or decided twice"
        assert app.load_desk(symbol) == app.replay_desk(symbol)
    app.close()
    client.close()
