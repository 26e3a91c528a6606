"""Frozen dataclasses built on the hot path without their generated ``__init__``."""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["built"]

_T = TypeVar("_T")


def built(cls: type[_T], fields: dict[str, Any]) -> _T:
    """A frozen dataclass holding ``fields`` (every field), without its ``__init__``'s per-field ``object.__setattr__``.

    The instance compares equal to ``cls(**fields)`` and has the same ``repr``;
    ``fields`` must name every field, in declaration order (``vars`` and so the
    stored form follow it), and no ``__post_init__`` runs: only for classes
    without one, whose values the caller has already made right.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance
