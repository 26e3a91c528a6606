"""One projection worker's batch, from fetched records to written rows and dead letters.

:class:`BatchWriter` does what the worker's module docstring promises about
records (:mod:`projections.worker`): it decodes and checks each record's
envelopes, prepares them with the projection (retrying an envelope whose
:class:`PoisonMessage` is not permanent, such as an unknown model version, a
bounded number of times with backoff), and writes the prepared items inside
the worker's transaction, bisecting a refused write in savepoints down to the
single bad records. Whatever is about a record becomes a :class:`DeadLetter`
in the caller's list; a transient error propagates, and the worker redoes the
batch from the stored offsets. The worker owns the transaction, the offsets
and the outbox the letters go to.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import psycopg

from backbone.envelope import Undecodable
from projections.dead_letters import DeadLetter
from projections.envelopes import Envelope, check_envelope, decode_envelopes
from projections.failures import PoisonMessage, WholeBatchRefused, describe, is_transient, reason_of

if TYPE_CHECKING:
    from projections.worker import Projection, WorkerMetrics, WorkerSettings

__all__ = ["BatchWriter", "Origin"]

log = logging.getLogger(__name__)


class Origin(NamedTuple):
    """Where an envelope came from: its record and its index in the record's pack.

    A named tuple, not a frozen dataclass: one is made per event, and a frozen dataclass's
    ``__init__`` (an ``object.__setattr__`` per field) was about 1.5 % of a worker's samples.
    """

    message: Any
    index: int
    envelope: Envelope
    alone: bool
    """The only envelope of its record (then its dead letter is the record's: its bytes, no index)."""

    @property
    def where(self) -> int | None:
        """The index a dead letter names: None for the record itself."""
        return None if self.alone else self.index


class BatchWriter:
    """Checks, prepares and writes the batches of one worker's :class:`Projection`; keeps its retry counts."""

    def __init__(
        self, projection: Projection, schema: str, group: str, settings: WorkerSettings, metrics: WorkerMetrics
    ) -> None:
        self.projection = projection
        self._schema = schema
        self._group = group
        self._settings = settings
        self._metrics = metrics
        self._attempts: dict[tuple[str, int, int, int], int] = {}
        """Envelopes (by record and pack index) whose preparing backed off, and how many times."""
        self._whole_refusals: dict[tuple[str, int, int], int] = {}
        """Batches (by first record) every record of which failed alone, and how many times in a row."""

    def checked(self, messages: list[Any], letters: list[DeadLetter]) -> list[Origin]:
        """The envelopes of ``messages`` that decode and pass the checks; the others become ``letters``.

        The garbage collector is paused meanwhile: decoding a batch makes many thousands of
        containers (each envelope's dicts and lists), none in a reference cycle, and each 700 of
        them started a collection that walked the young ones again (and now and then every object
        of the process). Nothing here awaits, so no other task runs while it is paused.
        """
        if not gc.isenabled():
            return self._checked_all(messages, letters)
        gc.disable()
        try:
            return self._checked_all(messages, letters)
        finally:
            gc.enable()

    def _checked_all(self, messages: list[Any], letters: list[DeadLetter]) -> list[Origin]:
        found: list[Origin] = []
        for message in messages:
            try:
                items = decode_envelopes(message.value)
            except PoisonMessage as poison:
                letters.append(_letter(message, None, poison, message.value))
                continue
            for index, item in enumerate(items):
                try:
                    envelope = check_envelope(item)
                    self.projection.validate(envelope)
                except Exception as error:  # noqa: BLE001 - a check is about its record
                    alone = len(items) == 1
                    letters.append(_letter(message, None if alone else index, error,
                                           _value_of(message, item, alone)))
                else:
                    found.append(Origin(message, index, envelope, len(items) == 1))
        return found

    async def prepared(self, found: list[Origin], letters: list[DeadLetter]) -> list[tuple[Origin, Any]] | None:
        """(origin, item) to write; failures about a record become ``letters``.

        None: an envelope is waiting out its backoff (slept already), and the batch is to be
        redone from the stored offsets.
        """
        try:
            items = self.projection.prepare([o.envelope for o in found])
        except Exception as error:  # noqa: BLE001 - classified below
            if is_transient(error):
                raise
        else:
            return [(o, item) for o, item in zip(found, items, strict=True) if item is not None]
        prepared = []
        for origin in found:  # find the culprits: prepare one by one
            try:
                item = self.projection.prepare_one(origin.envelope)
            except Exception as error:  # noqa: BLE001 - classified below
                if is_transient(error):
                    raise
                if isinstance(error, PoisonMessage) and not error.permanent and await self._backed_off(origin, error):
                    return None
                letters.append(_letter_of(origin, error))
                continue
            if item is not None:
                prepared.append((origin, item))
        return prepared

    async def _backed_off(self, origin: Origin, error: PoisonMessage) -> bool:
        """Wait before retrying ``origin``'s envelope, unless it had its ``max_retries`` (then False)."""
        m = origin.message
        key = (m.topic, m.partition, m.offset, origin.index)
        attempt = self._attempts.get(key, 0) + 1
        if attempt > self._settings.max_retries:
            # The count stays until the batch commits: if another record of this batch backs
            # off first, the redo must dead-letter this one at once, not retry it from 1 again
            # (two such records in a batch would otherwise take turns for ever).
            return False
        self._attempts[key] = attempt
        self._metrics.retries_total += 1
        log.warning("%s: retrying %s/%d/%d#%d (attempt %d of %d): %s", self._group, m.topic,
                    m.partition, m.offset, origin.index, attempt, self._settings.max_retries, error)
        await asyncio.sleep(self._settings.backoff(attempt))
        return True

    def committed(self, messages: list[Any]) -> None:
        """Forget the retry counts of ``messages``: their batch committed."""
        done = {(m.topic, m.partition, m.offset) for m in messages}
        self._attempts = {k: n for k, n in self._attempts.items() if k[:3] not in done}

    async def write_bisecting(
        self, conn: psycopg.AsyncConnection[Any], batch: list[tuple[Origin, Any]], letters: list[DeadLetter]
    ) -> None:
        """Write ``batch`` in a savepoint; if PostgreSQL refuses it, write each half the same way.

        Halves that succeed keep their rows, so the refused records are found in about
        2·k·log2(n) writes for k bad records in n, and only they become ``letters``.

        Raises:
            WholeBatchRefused: every record of a batch of several failed alone. That is most
                likely the write (a schema or code the records do not fit), not the records: the
                batch is retried with backoff ``max_retries`` times. If it still fails whole, the
                records are dead-lettered one by one after all, so a group never stops for good
                on a run of bad records (the body checks keep such runs rare).
        """
        refused: list[DeadLetter] = []
        written = await self._bisect(conn, batch, refused)
        records = sorted({(o.message.topic, o.message.partition, o.message.offset) for o, _ in batch})
        if not written and len(records) > 1:
            refusals = self._whole_refusals.get(records[0], 0) + 1
            if refusals <= self._settings.max_retries:
                self._whole_refusals[records[0]] = refusals
                raise WholeBatchRefused(f"all {len(batch)} records of the batch failed alone "
                                        f"({refusals} of {self._settings.max_retries} tries), e.g. {refused[0].error}")
        if records:
            self._whole_refusals.pop(records[0], None)
        letters.extend(refused)

    async def _bisect(
        self, conn: psycopg.AsyncConnection[Any], batch: list[tuple[Origin, Any]], letters: list[DeadLetter]
    ) -> int:
        """How many of ``batch`` were written; the refused ones become ``letters``."""
        if not batch:
            return 0
        try:
            async with conn.transaction():
                await self.projection.write(conn, self._schema, [item for _, item in batch])
            return len(batch)
        except Exception as error:  # noqa: BLE001 - classified below
            if is_transient(error):
                raise
            if len(batch) == 1:
                letters.append(_letter_of(batch[0][0], error))
                return 0
        middle = len(batch) // 2
        return await self._bisect(conn, batch[:middle], letters) + await self._bisect(conn, batch[middle:], letters)


def _letter(message: Any, index: int | None, error: BaseException, value: bytes | None) -> DeadLetter:
    return DeadLetter(message.topic, message.partition, message.offset, index, reason_of(error),
                      describe(error), message.key, value)


def _letter_of(origin: Origin, error: BaseException) -> DeadLetter:
    """The dead letter of one checked envelope that failed to prepare or write."""
    return _letter(origin.message, origin.where, error, _value_of(origin.message, origin.envelope, origin.alone))


def _value_of(message: Any, item: object, alone: bool) -> bytes | None:
    """What a dead letter carries: the record's bytes, or the one envelope of a pack."""
    if alone:
        return message.value
    if isinstance(item, Undecodable):
        return item.line
    try:
        return orjson.dumps(item)
    except TypeError:
        return message.value
