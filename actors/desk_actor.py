"""``SymbolActor``: one pykka actor per symbol, turning tick batches into committed decisions.

Per batch: features by Numba, a decision per new tick, ONE event-store
commit for the whole batch, then ONE Redis transaction that writes the
batch's dead letters and acknowledges its ticks. A tick is acknowledged only
after the decision it caused is durable; a tick delivered again after a
crash is recognised by its id (the desk remembers the last tick it decided)
and acknowledged without a second decision.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pykka
import redis

from actors.application import DeskApplication
from actors.book import DeskFigures, PortfolioBook
from actors.features import FeatureEngine
from actors.stats import HotPathStats
from aggregates.desk import SymbolDesk
from aggregates.policy import DecisionPolicy
from edge.tick_stream import StreamEntry, TickKeys, DeadLetters
from edge.ticks import BadTick, decode_tick, sent_ns_of, validate_tick

__all__ = ["ActorSettings", "SymbolActor", "TickBatch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorSettings:
    """Knobs of a desk actor."""

    checkpoint_every: int = 1_000
    """Decisions between feature checkpoints (each followed by a snapshot)."""
    group: str = "desks"


@dataclass(frozen=True)
class TickBatch:
    """Entries of one symbol's stream, in stream order."""

    entries: Sequence[StreamEntry]
    on_done: Callable[[], None] = field(default=lambda: None)
    """Called once the batch is committed and acknowledged (releases reader credit)."""


class SymbolActor(pykka.ThreadingActor):
    """Decides for one symbol; its state lives in the event store, not in the actor.

    ``on_start`` (actor thread) loads the desk from its latest snapshot and
    later events and replays the ticks since the last feature checkpoint
    through the feature engine. A failure while handling a batch (told, not
    asked) kills the actor: pykka logs it and calls ``on_failure``; the
    batch's ticks stay unacknowledged, so a replacement actor redoes them.
    """

    def __init__(
        self,
        symbol: str,
        app: DeskApplication,
        policy: DecisionPolicy,
        client: redis.Redis,
        keys: TickKeys,
        book: PortfolioBook,
        stats: HotPathStats,
        settings: ActorSettings = ActorSettings(),
    ) -> None:
        super().__init__()
        self.symbol = symbol
        self._app = app
        self._policy = policy
        self._client = client
        self._keys = keys
        self._book = book
        self._stats = stats
        self._settings = settings
        self._dead = DeadLetters(client, keys)
        self.desk: SymbolDesk | None = None
        self.engine = FeatureEngine()

    def on_start(self) -> None:
        self.desk = self._app.load_desk(self.symbol)
        if self.desk is None:
            return
        if self.desk.feature_state:
            self.engine = FeatureEngine.from_state(self.desk.feature_state)
        since = self.desk.feature_checkpoint_version
        for event in self._app.events_after(self.symbol, since):
            if isinstance(event, SymbolDesk.DecisionTaken):
                self.engine.update(event.price, event.size, _nan(event.bid), _nan(event.ask))
        self._publish()

    def on_receive(self, message: object) -> None:
        if isinstance(message, TickBatch):
            self.handle_batch(message)
        else:
            super().on_receive(message)

    def handle_batch(self, batch: TickBatch) -> None:
        """Decide on every new tick of the batch, commit, then acknowledge."""
        pipe = self._client.pipeline(transaction=True)
        acks: list[bytes] = []
        sent: list[int] = []
        decisions = dead = duplicates = 0
        checkpointed = False
        for entry_id, fields in batch.entries:
            acks.append(entry_id)
            tick_id = entry_id.decode()
            if self.desk is not None and self.desk.has_seen(tick_id):
                duplicates += 1
                continue
            try:
                tick = decode_tick(self.symbol, fields or {})
                validate_tick(tick, self.desk.last_ts_ns if self.desk else None)
            except BadTick as error:
                self._dead.add(pipe, self.symbol, error, fields, "desk", entry_id)
                dead += 1
                continue
            desk = self._desk_for(tick_id, tick.ts_ns)
            features = self.engine.update(tick.price, tick.size, _nan(tick.bid), _nan(tick.ask))
            desk.decide(
                tick_id=tick_id,
                ts_ns=tick.ts_ns,
                price=tick.price,
                size=tick.size,
                bid=tick.bid,
                ask=tick.ask,
                features=features,
                policy=self._policy,
                others=self._book.others(self.symbol),
            )
            decisions += 1
            if desk.decisions % self._settings.checkpoint_every == 0:
                desk.checkpoint_features(self.engine.state_list(), tick_id, tick.ts_ns)
                checkpointed = True
            stamp = sent_ns_of(fields or {})
            if stamp is not None:
                sent.append(stamp)
        events = len(self.desk.pending_events) if self.desk else 0
        if events:
            self._app.save(self.desk)
        committed_ns = time.time_ns()
        pipe.xack(self._keys.stream(self.symbol), self._settings.group, *acks)
        pipe.execute()
        if checkpointed and self.desk is not None:
            self._app.snapshot(self.desk)
        self._publish()
        self._stats.record_batch(
            len(batch.entries), decisions, events, dead, duplicates,
            committed_ns - np.asarray(sent, dtype=np.int64),
        )
        batch.on_done()

    def _desk_for(self, tick_id: str, ts_ns: int) -> SymbolDesk:
        if self.desk is None:
            self.desk = SymbolDesk.open(self.symbol, correlation_id=tick_id, timestamp_ns=ts_ns)
        return self.desk

    def _publish(self) -> None:
        if self.desk is not None:
            self._book.publish(
                self.symbol,
                DeskFigures(self.desk.pnl, self.desk.day_pnl, self.desk.exposure),
            )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
