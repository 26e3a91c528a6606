"""What a projection worker reads from a record: envelopes, decoded and checked before any projection sees them.

Pure code. A record's value is one envelope or a pack of them
(:func:`backbone.envelope.unpack`); :func:`decode_envelopes` gives its items
unchecked and :func:`check_envelope` turns each into an envelope in schema 1's
shape or refuses it with a :class:`projections.failures.PoisonMessage` whose
reason the dead letter carries (``undecodable``, ``invalid_record``,
``unknown_schema_version``).
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from backbone.envelope import (
    ENVELOPE_SCHEMA_VERSION,
    READABLE_SCHEMA_VERSIONS,
    Undecodable,
    decode_pack_lines,
    read_envelope,
    unpack,
)
from projections.failures import PoisonMessage

__all__ = ["Envelope", "check_envelope", "decode_envelopes"]

Envelope = Mapping[str, Any]
_REQUIRED = ("event_id", "event_type", "schema_version", "log_position", "symbol", "timestamp_ns")


def decode_envelopes(value: bytes | None) -> list[Any]:
    """The items of one record: a single envelope, or the envelopes of a pack (unchecked).

    A schema 2 pack that is not JSON as a whole is read line by line: its
    broken lines come back as :class:`backbone.envelope.Undecodable` items,
    which :func:`check_envelope` refuses, so only those are dead-lettered.

    Raises:
        PoisonMessage: the value is not JSON.
    """
    try:
        return unpack(orjson.loads(value or b""))
    except orjson.JSONDecodeError as error:
        lines = decode_pack_lines(value or b"")
        if lines is None:
            raise PoisonMessage("undecodable", f"not JSON ({error})", permanent=True) from None
        return lines


def check_envelope(item: object) -> Envelope:
    """``item`` as an envelope this worker reads, in schema 1's shape (:func:`backbone.envelope.read_envelope`).

    Raises:
        PoisonMessage: not an envelope, or an envelope schema this code does not read.
    """
    if isinstance(item, Undecodable):
        raise PoisonMessage("undecodable", item.reason, permanent=True)
    if type(item) is dict and item.get("schema_version") == ENVELOPE_SCHEMA_VERSION:
        try:
            return read_envelope(item)  # has every required key, and its schema is readable
        except ValueError as error:
            raise PoisonMessage("invalid_record", str(error), permanent=True) from None
    if not isinstance(item, dict) or any(k not in item for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(item, dict) or k not in item]
        raise PoisonMessage("undecodable", f"not an event envelope (missing {missing})", permanent=True)
    if item["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        raise PoisonMessage(
            "unknown_schema_version",
            f"envelope schema {item['schema_version']!r}; this worker reads {sorted(READABLE_SCHEMA_VERSIONS)}",
            permanent=True,
        )
    return item
