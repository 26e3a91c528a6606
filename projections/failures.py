"""What a failure while projecting records is about: the record itself, or the world around it.

Pure code. A projection worker asks :func:`is_transient` about every error
its projection raises while preparing or writing rows:

- **transient** — the connection to PostgreSQL or the broker was lost or timed
  out, a serialisation failure or deadlock, an administrator's shutdown, a
  full disk, a missing table (the schema is being migrated). Retrying the
  same records later can succeed, so the worker retries with backoff and
  never dead-letters for these.
- **about the record** — everything else: a body that fails decoding or
  validation (``KeyError``/``TypeError``/``ValueError`` ...), a value the
  database refuses (``DataError``, ``IntegrityError`` such as a
  ``NotNullViolation``, an index row too large). The same record fails the
  same way every time, so the worker finds it (bisecting the batch) and
  dead-letters it with :func:`reason_of` and :func:`describe`.

The split is by SQLSTATE class, not by example: a new kind of refusal lands
on the right side without code here changing.
"""

from __future__ import annotations

import asyncio

import psycopg
from aiokafka.errors import KafkaError

from glassbox import GlassboxError

__all__ = ["PoisonMessage", "describe", "is_transient", "reason_of"]

_TRANSIENT_CLASSES = frozenset({
    "08",  # connection exception
    "40",  # transaction rollback: serialization_failure, deadlock_detected
    "53",  # insufficient resources: disk full, out of memory, too many connections
    "55",  # object not in prerequisite state: lock_not_available
    "57",  # operator intervention: admin_shutdown, crash_shutdown, cannot_connect_now, query_canceled
    "58",  # system error (I/O error outside PostgreSQL)
    "XX",  # internal error
    "3D",  # invalid catalog name: the database does not exist (yet)
    "3F",  # invalid schema name: not migrated yet
})
_TRANSIENT_STATES = frozenset({
    "42P01",  # undefined_table: the schema is being migrated
    "42501",  # insufficient_privilege: a grant is missing, not a record's fault
})
_ERROR_TEXT_LIMIT = 1000


class PoisonMessage(GlassboxError):
    """A message this projection cannot process; ``reason`` is a short code, the message says why.

    ``permanent`` ones (undecodable, unknown schema, an invalid body) go to the
    dead-letter topic at once; others (an unknown model version, which the
    registry may still be receiving) are retried first.
    """

    def __init__(self, reason: str, detail: str, permanent: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.permanent = permanent


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is about the world (retry later) rather than about the record (dead-letter it)."""
    if isinstance(error, PoisonMessage):
        return False
    if isinstance(error, (KafkaError, ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state is None:
            # Raised by psycopg itself: a lost or closed connection is operational, while a value
            # it cannot adapt or send (NUL in text, an unknown type) is a DataError/ProgrammingError.
            return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return isinstance(error, OSError)


def reason_of(error: BaseException) -> str:
    """The dead-letter reason code of an error about a record."""
    if isinstance(error, PoisonMessage):
        return error.reason
    if isinstance(error, psycopg.Error):
        return "database_refused"
    return "processing_failed"


def describe(error: BaseException) -> str:
    """One line about ``error``, safe to store as PostgreSQL text and send as a header.

    NUL and other control characters, which a record's values may carry into an
    error message, are escaped; the text is cut at 1,000 characters.
    """
    if isinstance(error, PoisonMessage):
        text = str(error)
    else:
        first = str(error).strip().splitlines()
        text = f"{type(error).__name__}: {first[0] if first else repr(error)}"
    cleaned = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    cleaned = cleaned.encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned[:_ERROR_TEXT_LIMIT]
