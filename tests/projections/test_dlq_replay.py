"""Dead letters re-driven into their projection: once, and the still-poison ones back with their reason (real services)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import orjson
import psycopg
from psycopg import sql

from projections.dlq import dead_letters, replay_dead_letters
from projections.failures import PoisonMessage
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.process_report import process_report, run
from tests.projections.poison_support import WorkerThread, archive_envelope, consumed, produce, wait_for


class BuggyArchive(ArchiveProjection):
    """The archive with a bug that refuses every event of the symbol BUG (the fix is the plain archive)."""

    def validate(self, envelope) -> None:
        if envelope.get("symbol") == "BUG":
            raise PoisonMessage("invalid_record", "symbol BUG refused by a bug", permanent=True)


def _dead_letter_through_the_buggy_worker(kafka_servers, database_url, schema, topic_settings,
                                          values: list[bytes]) -> str:
    """Run the buggy archive over ``values`` until it consumed them all; the consumer group."""
    topic, group = topic_settings.name("trading_decisions"), topic_settings.name("archive")
    placed = produce(kafka_servers, topic_settings, ["archive"], topic, values)
    worker = WorkerThread(ProjectionWorker(BuggyArchive(), kafka_servers, database_url, schema, topic_settings,
                                           WorkerSettings(max_retries=1, backoff_base=0.01)))
    try:
        wait_for(lambda: consumed(database_url, schema, group, topic, placed), 120, "the records", worker)
    finally:
        worker.stop()
    return group


def _cli_env(kafka_servers, database_url, schema, topic_settings, home) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
            "GLASSBOX_SCHEMA": schema, "GLASSBOX_TOPIC_PREFIX": topic_settings.prefix,
            "GLASSBOX_HOME": str(home), "REDIS_URL": "redis://127.0.0.1:1"}


def _archived(database_url: str, schema: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL("SELECT event_id, symbol FROM {}.event_archive ORDER BY symbol")
                            .format(sql.Identifier(schema))).fetchall()


def test_a_fixed_letter_is_replayed_once_and_a_poison_one_stays_with_its_reason(
        kafka_servers, database_url, schema, topic_settings, tmp_path) -> None:
    apply_migrations(database_url, schema)
    good, bug = archive_envelope(1), {**archive_envelope(2), "symbol": "BUG"}
    group = _dead_letter_through_the_buggy_worker(kafka_servers, database_url, schema, topic_settings,
                                                  [orjson.dumps(good), orjson.dumps(bug), b"\x00 not json"])
    assert [s for _, s in _archived(database_url, schema)] == ["AAA"]

    async def replay() -> tuple:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            letters = await dead_letters(conn, schema, group)
            report = await replay_dead_letters(conn, schema, ArchiveProjection(), group, letters)
            return letters, report, await dead_letters(conn, schema, group, include_replayed=True)

    letters, report, after = asyncio.run(replay())
    assert sorted(letter.reason for letter in letters) == ["invalid_record", "undecodable"]
    assert len(report.replayed) == 1 and [reason for _, reason, _ in report.still_poison] == ["undecodable"]
    assert sorted(s for _, s in _archived(database_url, schema)) == ["AAA", "BUG"]
    by_reason = {letter.reason: letter for letter in after}
    assert by_reason["invalid_record"].replayed_at is not None and by_reason["invalid_record"].replay_attempts == 1
    assert by_reason["undecodable"].replayed_at is None and by_reason["undecodable"].replay_attempts == 1

    # Again, through the command a user runs: nothing is written twice, the poison one is counted again.
    env = _cli_env(kafka_servers, database_url, schema, topic_settings, tmp_path)
    cli = [sys.executable, "-m", "actors.system.cli", "dlq"]
    listed = run([*cli, "list", "--group", "archive"], 120, env=env)
    assert listed.returncode == 0, process_report(listed)
    assert "undecodable" in listed.stdout and "1 dead letter(s)" in listed.stdout
    source = listed.stdout.split()[0]
    shown = run([*cli, "show", "--group", "archive", source], 120, env=env)
    assert shown.returncode == 0 and "reason: undecodable" in shown.stdout, process_report(shown)
    again = run([*cli, "replay", "--group", "archive", "--every"], 120, env=env)
    assert again.returncode == 1, process_report(again)  # a letter is still poison: said, and exit 1
    assert "0 replayed, 1 still poison" in again.stdout
    assert sorted(s for _, s in _archived(database_url, schema)) == ["AAA", "BUG"]
    both = run([*cli, "replay", "--group", "archive", source, "--every"], 120, env=env)
    assert both.returncode == 2 and "not both" in both.stderr


def test_a_replay_killed_midway_and_run_again_writes_every_letter_exactly_once(
        kafka_servers, database_url, schema, topic_settings, tmp_path) -> None:
    apply_migrations(database_url, schema)
    letters = [{**archive_envelope(100 + i), "symbol": "BUG"} for i in range(400)]
    _dead_letter_through_the_buggy_worker(kafka_servers, database_url, schema, topic_settings,
                                          [orjson.dumps(e) for e in letters])

    def replayed() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute(sql.SQL("SELECT count(*) FROM {}.dead_letters WHERE replayed_at IS NOT NULL")
                                .format(sql.Identifier(schema))).fetchone()[0]

    env = _cli_env(kafka_servers, database_url, schema, topic_settings, tmp_path)
    command = [sys.executable, "-m", "actors.system.cli", "dlq", "replay", "--group", "archive", "--every"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: replayed() > 0 or first.poll() is not None, 120, "the replay to start")
        first.send_signal(signal.SIGKILL)  # midway: some letters written and marked, the rest not
    finally:
        first.wait(30)
    done_before = replayed()
    assert done_before < len(letters), "the replay finished before it could be killed: make it longer"
    again = run(command, 300, env=env)
    assert again.returncode == 0, process_report(again)
    assert f"{len(letters) - done_before} replayed, 0 still poison" in again.stdout
    archived = _archived(database_url, schema)
    assert len(archived) == len(letters) and len({event_id for event_id, _ in archived}) == len(letters)
    assert replayed() == len(letters)
