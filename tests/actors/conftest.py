"""Fixtures of the actor tests."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
import redis


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key prefix for tick streams and event stores; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        for pattern in (f"{prefix}*", f"{{{prefix}*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
