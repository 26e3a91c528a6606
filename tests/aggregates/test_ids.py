"""The fast name-based id is exactly uuid5."""

from __future__ import annotations

from uuid import NAMESPACE_URL, uuid4, uuid5

from aggregates.ids import uuid5_text


def test_uuid5_text_is_str_of_uuid5_for_any_namespace_and_name() -> None:
    for name in ["", "1700000000000-0", "ünïcödé/42", str(uuid4())]:
        for namespace in (NAMESPACE_URL, uuid4()):
            assert uuid5_text(namespace, name) == str(uuid5(namespace, name))
            assert uuid5_text(namespace.bytes, name) == str(uuid5(namespace, name))
