"""What a failure while projecting records is about: the record itself, or the world around it.

Pure code. A projection worker asks :func:`is_transient` about every error
its projection raises while preparing or writing rows:

- **transient** — the connection to PostgreSQL or the broker was lost or timed
  out, a serialisation failure or deadlock, an administrator's shutdown, a
  full disk (the SQLSTATE classes of :data:`TRANSIENT_CLASSES`); or the code
  and the schema disagree: a missing table, column, function or grant, a
  syntax error (:data:`TRANSIENT_STATES`), a query psycopg refuses to send
  (a ``ProgrammingError`` of its own), a Python ``AttributeError``,
  ``NameError``, ``ImportError`` ... (:data:`CODE_ERRORS`). Retrying the same
  records later can succeed (the migration runs, the fixed worker is
  deployed), so the worker retries with backoff and never dead-letters for
  these: a worker deployed before its migration must not dead-letter every
  record and commit the offsets.
- **about the record** — everything else: a body that fails decoding or
  validation (``KeyError``/``TypeError``/``ValueError`` ...), a value the
  database refuses (``DataError``, ``IntegrityError`` such as a
  ``NotNullViolation``, an index row too large). The same record fails the
  same way every time, so the worker finds it (bisecting the batch) and
  dead-letters it with :func:`reason_of` and :func:`describe`. A batch whose
  every record fails alone is not about its records (:class:`WholeBatchRefused`).

The split is by SQLSTATE class, not by example: a new kind of refusal lands
on the right side without code here changing.
"""

from __future__ import annotations

import asyncio

import psycopg
from aiokafka.errors import KafkaError

from glassbox import GlassboxError

__all__ = [
    "CODE_ERRORS",
    "TRANSIENT_CLASSES",
    "TRANSIENT_STATES",
    "PoisonMessage",
    "WholeBatchRefused",
    "describe",
    "is_transient",
    "reason_of",
]

TRANSIENT_CLASSES = frozenset({
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
"""SQLSTATE classes (first two characters) a worker retries: the world around the records."""
TRANSIENT_STATES = frozenset({
    "42P01",  # undefined_table: the schema is being migrated
    "42703",  # undefined_column: a worker deployed before its migration
    "42883",  # undefined_function: idem (or an extension not installed yet)
    "42704",  # undefined_object: a type or index not created yet
    "42601",  # syntax_error: the worker's SQL, never a record's (values are parameters)
    "42501",  # insufficient_privilege: a grant is missing, not a record's fault
})
"""Single SQLSTATEs of other classes a worker retries: the code and the schema disagree."""
CODE_ERRORS: tuple[type[BaseException], ...] = (
    AttributeError, NameError, ImportError, NotImplementedError, AssertionError)
"""Python errors of the worker's code, not of a record's values: retried until a fixed worker runs."""
_ERROR_TEXT_LIMIT = 1000


class WholeBatchRefused(GlassboxError):
    """Every record of a batch of several failed alone: the write, not the records, is wrong (transient)."""


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
    if isinstance(error, (WholeBatchRefused, KafkaError, ConnectionError, TimeoutError, asyncio.TimeoutError,
                          *CODE_ERRORS)):
        return True
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state is None:
            # Raised by psycopg itself: a lost or closed connection is operational, a query it
            # refuses to send (placeholders, a type it cannot adapt: the body checks let no such
            # value through) is the code's ProgrammingError; NUL in text is a record's DataError.
            return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, psycopg.ProgrammingError))
        return state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_STATES
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
