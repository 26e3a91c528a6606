"""The ledger's arithmetic: gaps in log positions, repeated decisions, and which invariant each finding names."""

from __future__ import annotations

from dataclasses import replace

import redis
from hypothesis import given
from hypothesis import strategies as st

from actors.system.doctor import DoctorServices, examine

from actors.system.ledger import (
    DecisionTally,
    Ledger,
    LogGaps,
    ProjectionCounts,
    StoreEvents,
    SymbolTicks,
    log_gaps,
)
from edge.stray_streams import sweep_stray_streams
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys
from glassbox import Settings
from projections.lag import PartitionLag


@given(st.sets(st.integers(min_value=1, max_value=10**12), max_size=60), st.integers(min_value=0, max_value=10**12))
def test_log_gaps_are_exactly_the_positions_missing_below_the_head(positions: set[int], head: int) -> None:
    gaps, beyond = log_gaps(sorted(positions), head)
    assert beyond == sorted(p for p in positions if p > head)
    present = {p for p in positions if p <= head}
    missing = sum(b - a + 1 for a, b in gaps)
    assert missing == head - len(present)
    for a, b in gaps:
        assert a <= b and not any(a <= p <= b for p in present)


def test_a_gapless_log_has_no_gaps() -> None:
    assert log_gaps(range(1, 101), 100) == ([], [])
    assert log_gaps([], 0) == ([], [])
    assert log_gaps([1, 2, 5, 9], 10) == ([(3, 4), (6, 8), (10, 10)], [])


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 5), st.integers(0, 3)), max_size=80))
def test_the_tally_counts_each_tick_once_and_names_every_repeat(decisions: list[tuple[str, int, int]]) -> None:
    tally = DecisionTally()
    for symbol, ms, seq in decisions:
        tally.add(symbol, f"{ms}-{seq}")
    for symbol in "ABC":
        ids = [(ms, seq) for s, ms, seq in decisions if s == symbol]
        grows = [i for n, i in enumerate(ids) if all(i > j for j in ids[:n])]
        assert tally.decided.get(symbol, 0) == len(grows)
        assert len(tally.repeated.get(symbol, [])) == len(ids) - len(grows)


@given(st.lists(st.text(max_size=40), max_size=20))
def test_the_tally_takes_any_tick_id_and_counts_a_malformed_one_as_a_repeat(tick_ids: list[str]) -> None:
    tally = DecisionTally()
    tally.add("A", "5-0")
    for tick_id in tick_ids:
        tally.add("A", tick_id)
    assert tally.decided["A"] + len(tally.repeated.get("A", [])) == 1 + len(tick_ids)


TICKS = SymbolTicks("AAPL", "shard-0", published=10, decided=8, dead_lettered=2, pending=0, undelivered=0)
STORE = StoreEvents("glassbox:shard-0", "relay-shard-0", head=30, entries=30, gaps=(), beyond_head=(), relayed=30,
                    archived=30, archived_distinct=30, decisions=8)
TABLES = ProjectionCounts(decision_rows=8, decision_ids=8, ticks_decided_twice=(), archived_decisions=8,
                          forensics_rows=8, forensics_ids=8, explained=8, unexplained=(), explained_orphans=0)
PARTITION = PartitionLag("forensics", "trading_decisions", 0, next_offset=5, end_offset=5)


def _ledger(running: bool = False, **changes: object) -> Ledger:
    ledger = Ledger(running=running, symbols=[TICKS], stores=[STORE], tables=TABLES, partitions=[PARTITION],
                    tick_dead_letters={"processing_failed": 2}, tick_dead_letter_entries=2,
                    projection_dead_letters={"forensics": {}})
    for name, value in changes.items():
        setattr(ledger, name, value)
    return ledger


def _checks(ledger: Ledger) -> set[str]:
    return {f.check for f in ledger.findings()}


def test_a_balanced_ledger_has_no_findings() -> None:
    assert _ledger().balances() and _ledger(running=True).balances()


def test_each_violation_is_named() -> None:
    assert _checks(_ledger(symbols=[replace(TICKS, decided=7)])) == {"undecided ticks"}
    assert _checks(_ledger(symbols=[replace(TICKS, decided=7, undelivered=1)])) == {"undecided ticks"}
    assert _checks(_ledger(symbols=[replace(TICKS, pending=1)])) == {"pending entries"}
    assert _checks(_ledger(symbols=[replace(TICKS, repeated=("5-0",))])) == {"two decisions for one tick"}
    assert _checks(_ledger(symbols=[replace(TICKS, dead_lettered_twice=("5-0",))])) == {"tick dead-lettered twice"}
    assert _checks(_ledger(stores=[replace(STORE, gaps=((3, 4),))])) == {"gap in the event log"}
    assert _checks(_ledger(stores=[replace(STORE, beyond_head=(40,))])) == {"gap in the event log"}
    assert _checks(_ledger(stores=[replace(STORE, relayed=29)])) == {"relay position"}
    assert _checks(_ledger(stores=[replace(STORE, archived=31)])) == {"event archived twice"}
    assert _checks(_ledger(stores=[replace(STORE, archived=29, archived_distinct=29)])) == {"events not archived"}
    assert _checks(_ledger(tables=replace(TABLES, decision_rows=9))) == {"same decision id twice"}
    assert "two decisions for one tick" in _checks(_ledger(tables=replace(TABLES, ticks_decided_twice=("A 1-0",))))
    assert _checks(_ledger(tables=replace(TABLES, explained=7, unexplained=("x",)))) == {"decisions not explained"}
    assert _checks(_ledger(tables=replace(TABLES, explained_orphans=1))) == {"forensics without a decision"}
    assert _checks(_ledger(partitions=[replace(PARTITION, next_offset=4)])) == {"projection behind"}
    assert _checks(_ledger(tick_dead_letter_entries=3)) == {"tick dead letters miscounted"}
    assert _checks(_ledger(projection_dead_lettered_twice={"forensics": ["t/0/1"]})) == {"record dead-lettered twice"}


def test_a_decision_dead_lettered_by_forensics_needs_no_explanation() -> None:
    ledger = _ledger(tables=replace(TABLES, explained=7, unexplained=("x",)),
                     projection_dead_letters={"forensics": {"unknown_model_version": 1}})
    assert ledger.balances()


def test_a_running_system_has_work_in_flight_but_never_loses_any() -> None:
    in_flight = replace(TICKS, decided=6, pending=1, undelivered=1)
    assert _ledger(running=True, symbols=[in_flight], stores=[replace(STORE, relayed=28)],
                   partitions=[replace(PARTITION, next_offset=1)],
                   tables=replace(TABLES, decision_rows=6, decision_ids=6, explained=6, forensics_rows=6,
                                  forensics_ids=6)).balances()
    assert _checks(_ledger(running=True, symbols=[replace(TICKS, decided=9)])) == {"ticks decided twice"}
    assert _checks(_ledger(running=True, stores=[replace(STORE, relayed=31)])) == {"relay position"}
    assert _checks(_ledger(running=True, stores=[replace(STORE, gaps=((3, 4),))])) == {"gap in the event log"}
    assert _checks(_ledger(running=True, stores=[replace(STORE, archived=31, archived_distinct=31)])) == \
        {"archive holds unknown events"}
    assert _checks(_ledger(running=True, tables=replace(TABLES, decision_rows=9, decision_ids=9))) == \
        {"decision rows without an event"}


def test_a_running_system_read_downstream_first_has_its_later_stages_behind() -> None:
    """Read tables, relays, logs, then the tick streams: what moved meanwhile is published, not yet decided."""
    moved_on = replace(TICKS, published=14, decided=8, pending=0, undelivered=0)  # 4 decided after the log's read
    assert _ledger(running=True, symbols=[moved_on]).balances()
    assert _checks(_ledger(symbols=[moved_on])) == {"undecided ticks"}
    forensics_ahead = replace(TABLES, explained_orphans=2)  # sibling groups of one topic: either may lead
    assert _ledger(running=True, tables=forensics_ahead).balances()
    assert _checks(_ledger(tables=forensics_ahead)) == {"forensics without a decision"}


def test_log_gaps_folds_a_log_in_one_pass_keeping_only_the_findings() -> None:
    found = LogGaps(10)
    for position in (1, 2, 5, 9, 12):
        found.add(position)
    assert (found.gaps, found.beyond, found.entries) == ([(3, 4), (6, 8), (10, 10)], [12], 5)


@given(entries=st.integers(min_value=1, max_value=1_200), symbol=st.text(min_size=1, max_size=30))
def test_a_real_sweep_of_a_stray_stream_balances_in_the_doctor(redis_url: str, namespace: str, entries: int,
                                                                symbol: str) -> None:
    """Swept entries are deleted from their stream: counted as swept, never as decided twice."""
    client = redis.Redis.from_url(redis_url)
    keys = TickKeys(namespace)
    stray = "stray" + symbol  # never "dead" (the dead letters' stream) nor the traded AAPL; glob characters welcome
    for key in (keys.stream(stray), keys.dead_letters, keys.dead_letter_counts):
        client.delete(key)
    SystemKeys(namespace).record_shards(client, 1)
    with client.pipeline(transaction=False) as pipe:
        for n in range(entries):
            pipe.xadd(keys.stream(stray), {b"n": str(n).encode(), b"\x00\xff": b"\xff" * (n % 50)})
        pipe.execute()
    assert sweep_stray_streams(client, keys, ["AAPL"]) == entries
    assert client.xlen(keys.stream(stray)) == 0 and client.xlen(keys.dead_letters) == entries
    settings = Settings.from_env({"GLASSBOX_NAMESPACE": namespace})
    ledger = examine(settings, DoctorServices(redis_url, None, None, running=False))
    (row,) = [s for s in ledger.symbols if s.symbol == stray]
    assert (row.published, row.dead_lettered, row.swept, row.undecided) == (0, 0, entries, 0)
    assert ledger.balances(), ledger.findings()
    client.close()
