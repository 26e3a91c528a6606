"""Symbols are spread over shards by a stable hash."""

from __future__ import annotations

import sys

import pytest

from actors.sharding import assign_symbols, shard_of
from tests.process_report import process_report, run

SYMBOLS = [f"SYN{i:03d}" for i in range(100)] + ["GOOG", "EURUSD", "BTCUSD"]


def test_every_symbol_has_exactly_one_owner() -> None:
    owned = assign_symbols(SYMBOLS, 3)
    assert sorted(s for shard in owned for s in shard) == sorted(SYMBOLS)
    assert all(owned)  # 103 symbols over 3 shards: none is left empty
    assert assign_symbols(SYMBOLS, 1) == [SYMBOLS]


def test_the_owner_is_the_same_in_another_process() -> None:
    # str hashes are salted per process; the assignment must not be.
    code = "from actors.sharding import shard_of; print([shard_of(s, 4) for s in ('GOOG', 'SYN001', 'BTCUSD')])"
    other = run([sys.executable, "-c", code], 120)
    assert other.returncode == 0, process_report(other)
    assert other.stdout.strip() == str([shard_of(s, 4) for s in ("GOOG", "SYN001", "BTCUSD")]), process_report(other)


def test_no_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("GOOG", 0)
