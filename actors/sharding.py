"""Which shard owns which symbol: a stable hash, the same on every machine and every run.

Python's ``hash()`` of a string changes between processes, so the owner is
CRC-32 of the symbol modulo the number of shards.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = ["assign_symbols", "shard_of"]


def shard_of(symbol: str, shards: int) -> int:
    """The index (0 … shards-1) of the shard that owns ``symbol``."""
    if shards < 1:
        raise ValueError(f"there is at least one shard, not {shards}")
    return zlib.crc32(symbol.encode()) % shards


def assign_symbols(symbols: Sequence[str], shards: int) -> list[list[str]]:
    """Each shard's symbols, in the given order; a shard may own none when symbols are few."""
    owned: list[list[str]] = [[] for _ in range(shards)]
    for symbol in symbols:
        owned[shard_of(symbol, shards)].append(symbol)
    return owned
