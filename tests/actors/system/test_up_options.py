"""``glassbox up``'s options become a run plan, or one clear error before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.system.cli import _parser, _plan
from actors.system.layout import ProcessLayout, ServiceUrls
from glassbox import GlassboxError, Settings


def plan(*argv: str):
    return _plan(_parser().parse_args(["up", *argv]))


def test_defaults_trade_the_bundled_and_twenty_synthetic_symbols() -> None:
    run = plan()
    assert run.bundled == ["GOOG", "EURUSD", "BTCUSD"] and len(run.synthetic) == 20
    assert (run.shards, run.rate, run.duration, run.api_port) == (1, 1000.0, None, None)


def test_a_users_file_adds_its_symbols(tmp_path: Path) -> None:
    path = tmp_path / "acme.csv"
    path.write_text("timestamp,price,size,symbol\n2024-01-02T10:00:00,10,1,ACME\n2024-01-02T10:00:01,11,1,GOOG\n")
    run = plan("--source", "csv", str(path), "--shards", "2")
    assert run.symbols == ["ACME", "GOOG"] and run.user_data is not None and len(run.user_data.ticks) == 2


@pytest.mark.parametrize(("argv", "says"), [
    (("--source", "csv"), "exactly one PATH"),
    (("--source", "bundled", "x.csv"), "no PATH"),
    (("--source", "ftp"), "unknown --source"),
    (("--source", "csv", "/nonexistent/ticks.csv"), "no such file"),
])
def test_bad_sources_are_refused_with_one_message(argv: tuple[str, ...], says: str) -> None:
    with pytest.raises(GlassboxError, match=says):
        plan(*argv)


def test_forensics_workers_start_members_of_one_forensics_group(tmp_path: Path) -> None:
    run = plan("--forensics-workers", "3", "--api-port", "0")
    assert run.forensics_workers == 3 and plan().forensics_workers == 1
    settings = Settings.from_env({"GLASSBOX_HOME": str(tmp_path)})
    specs = ProcessLayout(settings, run, tmp_path, lambda line: None).specs(
        ServiceUrls("redis://x", "x:9092", "postgresql://x"), [run.symbols])
    forensics = [s for s in specs if "forensics" in s.argv]
    assert [s.name for s in forensics] == ["worker-forensics", "worker-forensics-2", "worker-forensics-3"]
    assert len({s.ready_file for s in forensics}) == 3
    assert [s.name for s in specs].count("worker-archive") == 1


@pytest.mark.parametrize("argv", [("--shards", "0"), ("--forensics-workers", "0"), ("--rate", "-5"), ("--symbols", "-1"), ("--api-port", "x")])
def test_bad_numbers_are_refused_by_the_parser(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        plan(*argv)
