"""The ledger's arithmetic: gaps in log positions, repeated decisions, and which invariant each finding names."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from actors.system.ledger import (
    DecisionTally,
    Ledger,
    ProjectionCounts,
    StoreEvents,
    SymbolTicks,
    log_gaps,
    stream_id,
)
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


@given(st.text(max_size=40))
def test_stream_id_never_raises(text: str) -> None:
    ms, seq = stream_id(text)
    assert isinstance(ms, int) and isinstance(seq, int)


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
    assert _checks(_ledger(running=True, symbols=[replace(TICKS, decided=5, pending=1, undelivered=1)])) == \
        {"undecided ticks"}
    assert _checks(_ledger(running=True, stores=[replace(STORE, relayed=31)])) == {"relay position"}
