"""The ledger of a system: what it was given, what it did with it, and what does not add up.

Pure counting, no I/O: :mod:`actors.system.doctor` reads the numbers from
their owners (tick streams, event stores, relay positions, projection
offsets, tables, dead letters) into the facts below, and :meth:`Ledger.findings`
says which invariants break. What a drain or ``glassbox status`` calls stuck
is :mod:`actors.system.stuck`'s.

The invariants, for a system that has stopped. A running one has ticks and
events in flight; the doctor reads each pipeline downstream first (tables,
then relay positions, then each store's head and its log up to that head,
then the tick dead letters, then the tick streams), so a later stage may
trail an earlier one (each "=" below is a "≤", the rest is in flight) but
never lead it:

* per symbol: entries of its tick stream = ticks decided + ticks
  dead-lettered by its desk (entries the stray sweep moved are deleted from
  the stream, so they count as swept, not against it); none pending in the
  consumer group;
* every tick decided once: per symbol, the decisions' tick ids only grow
  along the log (a desk decides its ticks in stream order), so a repeated
  tick shows as one that does not grow; every tick dead-lettered once;
* per event store: log positions 1..head with no gap and nothing past the
  head; relayed = head; archived = head, each event once;
* decisions committed = decision rows, each decision id once and one per
  tick; each decision explained once (or dead-lettered by forensics), and no
  explanation without its decision row (forensics and read-models are
  sibling groups of one topic: while running, either may be ahead);
* every projection group at the end of every partition it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edge.ticks import BadTick, parse_tick_id
from projections.lag import PartitionLag

__all__ = [
    "DecisionTally",
    "Finding",
    "Ledger",
    "LogGaps",
    "ProjectionCounts",
    "StoreEvents",
    "SymbolTicks",
    "log_gaps",
]

EXAMPLES = 5
"""Most examples a finding names (the count says how many there are)."""


@dataclass(frozen=True)
class Finding:
    """One violated invariant: which check, where (shard, symbol, store, group, partition), and what."""

    check: str
    where: str
    detail: str

    def line(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


@dataclass
class DecisionTally:
    """Folds the decision events of a log, in log order, into per-symbol counts and repeats.

    Memory is one tick id per symbol, however long the log: a desk decides
    its ticks in stream order, so a tick decided twice is one whose id does
    not exceed the symbol's previous decision's.
    """

    decided: dict[str, int] = field(default_factory=dict)
    last_tick: dict[str, tuple[int, int]] = field(default_factory=dict)
    repeated: dict[str, list[str]] = field(default_factory=dict)
    """symbol -> tick ids decided again (a second decision for one tick, or out of order)."""

    def add(self, symbol: str, tick_id: str) -> None:
        try:
            at = parse_tick_id(tick_id)
        except (BadTick, ValueError):  # not a stream entry id (ValueError: digits int() refuses, e.g. "²")
            at = (-1, -1)
        if symbol in self.last_tick and at <= self.last_tick[symbol]:
            self.repeated.setdefault(symbol, []).append(tick_id)
            return
        self.last_tick[symbol] = at
        self.decided[symbol] = self.decided.get(symbol, 0) + 1


class LogGaps:
    """Folds a log's ascending positions into the missing ranges of 1..head and the positions past it.

    Memory is the next expected position and the findings, however long the log.
    """

    def __init__(self, head: int) -> None:
        self.head = head
        self.entries = 0
        self._gaps: list[tuple[int, int]] = []
        self.beyond: list[int] = []
        self._expected = 1

    def add(self, position: int) -> None:
        self.entries += 1
        if position > self.head:
            self.beyond.append(position)
            return
        if position > self._expected:
            self._gaps.append((self._expected, position - 1))
        self._expected = max(self._expected, position + 1)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Missing ranges (first, last), the tail up to the head included."""
        tail = [(self._expected, self.head)] if self._expected <= self.head else []
        return self._gaps + tail


def log_gaps(positions: Iterable[int], head: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Missing ranges of 1..head (first, last) and positions past ``head``, from ascending ``positions``."""
    found = LogGaps(head)
    for position in positions:
        found.add(position)
    return found.gaps, found.beyond


@dataclass(frozen=True)
class SymbolTicks:
    """One symbol's ticks: its stream, its consumer group, its desk's decisions and dead letters."""

    symbol: str
    shard: str
    """The component that owns it (``shard-<i>``)."""
    published: int
    """Entries of its tick stream (ticks refused at ingest never get there)."""
    decided: int
    dead_lettered: int
    """Entries of its stream the desk dead-lettered (``ticks:dead`` entries with an entry id)."""
    pending: int
    """Delivered to the shard and never acknowledged (the group's PEL)."""
    undelivered: int
    """Not yet read by the group (its lag)."""
    rejected_at_ingest: int = 0
    swept: int = 0
    """Entries the stray sweep dead-lettered (stage ``sweep``): deleted from the stream, so not in ``published``."""
    repeated: tuple[str, ...] = ()
    dead_lettered_twice: tuple[str, ...] = ()
    last_undecided: str | None = None
    """The oldest entry id neither decided nor dead-lettered, when known (what a stuck shard sits on)."""

    @property
    def undecided(self) -> int:
        return self.published - self.decided - self.dead_lettered


@dataclass(frozen=True)
class StoreEvents:
    """One event store: its log, its relay, its archive."""

    store: str
    relay: str
    """The component that relays it (``relay-shard-<i>``)."""
    head: int
    entries: int
    gaps: tuple[tuple[int, int], ...]
    beyond_head: tuple[int, ...]
    relayed: int
    archived: int | None
    """Rows of ``event_archive`` for this store (None: the database was not read)."""
    archived_distinct: int | None
    decisions: int


@dataclass(frozen=True)
class ProjectionCounts:
    """The tables the projections write (the decisions, forensics and archive read models)."""

    decision_rows: int
    decision_ids: int
    """Distinct decision ids among the rows."""
    ticks_decided_twice: tuple[str, ...]
    """``symbol tick-id`` with more than one decision row."""
    archived_decisions: int
    forensics_rows: int
    forensics_ids: int
    explained: int
    """Decision rows that have their forensics row."""
    unexplained: tuple[str, ...]
    """Decision ids (some) without a forensics row."""
    explained_orphans: int
    """Forensics rows whose decision is not in the decisions table."""


@dataclass
class Ledger:
    """Everything the doctor counted; :meth:`findings` is what does not balance."""

    running: bool
    symbols: list[SymbolTicks] = field(default_factory=list)
    stores: list[StoreEvents] = field(default_factory=list)
    tables: ProjectionCounts | None = None
    partitions: list[PartitionLag] | None = None
    """None: the broker's data could not be read (an embedded broker keeps none across a stop)."""
    tick_dead_letters: dict[str, int] = field(default_factory=dict)
    """``ticks:dead:count``: reason -> count."""
    tick_dead_letter_entries: int = 0
    """Entries of ``ticks:dead``."""
    projection_dead_letters: dict[str, dict[str, int]] | None = None
    """group -> reason -> dead letters (None: not readable)."""
    projection_dead_letters_unpublished: dict[str, int] = field(default_factory=dict)
    """group -> dead letters recorded but not yet published to ``dlq.<group>`` (not lost: an outbox)."""
    projection_dead_lettered_twice: dict[str, list[str]] = field(default_factory=dict)
    """group -> sources its ``dlq.<group>`` topic holds more than once."""
    notes: list[str] = field(default_factory=list)

    def findings(self) -> list[Finding]:
        """Every violated invariant (empty: the ledger balances)."""
        return [*self._tick_findings(), *self._store_findings(), *self._table_findings(),
                *self._group_findings(), *self._dead_letter_findings()]

    def _tick_findings(self) -> list[Finding]:
        found = []
        for s in self.symbols:
            where = f"{s.shard} symbol {s.symbol}"
            if not self.running and s.undecided > 0:
                at = f" (oldest at entry {s.last_undecided})" if s.last_undecided else ""
                found.append(Finding("undecided ticks", where,
                                     f"{s.undecided:,} of {s.published:,} ticks neither decided nor dead-lettered"
                                     f"{at}; {s.pending:,} pending, {s.undelivered:,} never read"))
            elif s.undecided < 0:
                found.append(Finding("ticks decided twice", where,
                                     f"{s.decided:,} decided + {s.dead_lettered:,} dead-lettered > "
                                     f"{s.published:,} published"))
            if not self.running and s.pending and s.undecided <= 0:
                found.append(Finding("pending entries", where,
                                     f"{s.pending:,} entries delivered and never acknowledged"))
            if s.repeated:
                found.append(Finding("two decisions for one tick", where,
                                     f"{len(s.repeated):,} ticks decided again, e.g. {_some(s.repeated)}"))
            if s.dead_lettered_twice:
                found.append(Finding("tick dead-lettered twice", where,
                                     f"{len(s.dead_lettered_twice):,}, e.g. {_some(s.dead_lettered_twice)}"))
        return found

    def _store_findings(self) -> list[Finding]:
        found = []
        for e in self.stores:
            if e.gaps:
                missing = sum(b - a + 1 for a, b in e.gaps)
                found.append(Finding("gap in the event log", e.store,
                                     f"{missing:,} positions missing: " + _some(f"{a}–{b}" if a != b else str(a)
                                                                                for a, b in e.gaps)))
            if e.beyond_head:
                found.append(Finding("gap in the event log", e.store,
                                     f"{len(e.beyond_head):,} entries past the head {e.head:,}: "
                                     f"{_some(str(p) for p in e.beyond_head)}"))
            if e.relayed > e.head or (not self.running and e.relayed < e.head):
                found.append(Finding("relay position", f"{e.relay} store {e.store}",
                                     f"relayed up to {e.relayed:,}, the log's head is {e.head:,}"))
            if e.archived is not None:
                if e.archived_distinct is not None and e.archived != e.archived_distinct:
                    found.append(Finding("event archived twice", e.store,
                                         f"{e.archived - e.archived_distinct:,} duplicate rows of "
                                         f"{e.archived_distinct:,} events"))
                if (e.archived_distinct or 0) > e.entries or (not self.running and e.archived_distinct != e.entries):
                    found.append(Finding("events not archived" if (e.archived_distinct or 0) < e.entries
                                         else "archive holds unknown events", e.store,
                                         f"{e.archived_distinct:,} archived, {e.entries:,} committed"))
        return found

    def _table_findings(self) -> list[Finding]:
        t = self.tables
        if t is None:
            return []
        found = []
        committed = sum(e.decisions for e in self.stores)
        if t.decision_rows != t.decision_ids:
            found.append(Finding("same decision id twice", "decisions",
                                 f"{t.decision_rows - t.decision_ids:,} rows repeat a decision id"))
        if t.ticks_decided_twice:
            found.append(Finding("two decisions for one tick", "decisions",
                                 f"{len(t.ticks_decided_twice):,} ticks have several rows, "
                                 f"e.g. {_some(t.ticks_decided_twice)}"))
        if t.decision_ids > committed or (not self.running and t.decision_ids != committed):
            found.append(Finding("decisions not projected" if t.decision_ids < committed
                                 else "decision rows without an event", "decisions",
                                 f"{t.decision_ids:,} decision rows, {committed:,} decisions committed"))
        if t.forensics_rows != t.forensics_ids:
            found.append(Finding("same decision id twice", "forensics",
                                 f"{t.forensics_rows - t.forensics_ids:,} rows repeat a decision id"))
        if t.explained_orphans and not self.running:  # running: the forensics group may be ahead of read-models
            found.append(Finding("forensics without a decision", "forensics",
                                 f"{t.explained_orphans:,} explanations of decisions not in the decisions table"))
        dead = (self.projection_dead_letters or {}).get("forensics", {})
        missing = t.decision_ids - t.explained
        if not self.running and missing > sum(dead.values()):
            found.append(Finding("decisions not explained", "forensics",
                                 f"{missing:,} decisions have no forensics row ({sum(dead.values()):,} "
                                 f"dead-lettered by forensics), e.g. {_some(t.unexplained)}"))
        return found

    def _group_findings(self) -> list[Finding]:
        if self.running or not self.partitions:
            return []
        return [Finding("projection behind", f"group {p.group} {p.topic}/{p.partition}",
                        f"at offset {p.next_offset:,}, the partition ends at {p.end_offset:,}")
                for p in self.partitions if p.behind]

    def _dead_letter_findings(self) -> list[Finding]:
        found = []
        counted = sum(self.tick_dead_letters.values())
        if counted != self.tick_dead_letter_entries:
            found.append(Finding("tick dead letters miscounted", "ticks:dead",
                                 f"{self.tick_dead_letter_entries:,} entries, {counted:,} counted per reason"))
        for group, sources in self.projection_dead_lettered_twice.items():
            found.append(Finding("record dead-lettered twice", f"dlq.{group}",
                                 f"{len(sources):,} records, e.g. {_some(sources)}"))
        return found

    def balances(self) -> bool:
        return not self.findings()


def _some(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" (+{len(items) - EXAMPLES:,} more)" if len(items) > EXAMPLES else "")
