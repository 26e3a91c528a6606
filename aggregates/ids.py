"""Name-based ids, fast: ``str(uuid5(namespace, name))`` without building UUID objects."""

from __future__ import annotations

import hashlib
from uuid import UUID

__all__ = ["uuid5_text"]


def uuid5_text(namespace: UUID | bytes, name: str | bytes) -> str:
    """``str(uuid.uuid5(namespace, name))`` in about a third of the time (one per decision and per relayed event).

    ``name`` may be given as its UTF-8 bytes (the relay has them from the store).
    """
    prefix = namespace.bytes if isinstance(namespace, UUID) else namespace
    digest = bytearray(hashlib.sha1(prefix + (name.encode() if type(name) is str else name)).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
