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
    h = hashlib.sha1(prefix + (name.encode() if type(name) is str else name)).hexdigest()
    # Version 5 in the 13th digit, the RFC 4122 variant (10xx) in the 17th.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
