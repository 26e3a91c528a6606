"""The strict query-string reader (pure code): what it refuses, and that nothing else gets through."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.params import MAX_QUERY_BYTES, BadRequest, read_query

READS = {"symbol": 8, "limit": 4}


def refused(raw: bytes) -> tuple[int, str, str]:
    with pytest.raises(BadRequest) as caught:
        read_query(raw, READS)
    return caught.value.status, caught.value.code, caught.value.detail


def test_well_formed_values_are_percent_decoded():
    assert read_query(b"symbol=GO%20OG&limit=10", READS) == {"symbol": "GO OG", "limit": "10"}
    assert read_query(b"symbol=a+b&&limit=", READS) == {"symbol": "a b", "limit": ""}
    assert read_query(b"symbol=%C3%A9t%C3%A9", READS) == {"symbol": "été"}
    assert read_query(b"", READS) == {}


@pytest.mark.parametrize(("raw", "code", "says"), [
    (b"symbol=GOOG%00", "invalid_symbol", "U+0000"),
    (b"symbol=GO%0AOG", "invalid_symbol", "U+000A"),
    (b"symbol=%C2%85", "invalid_symbol", "U+0085"),
    (b"symbol=%7F", "invalid_symbol", "U+007F"),
    (b"symbol=%FF%FE", "invalid_symbol", "not UTF-8"),
    (b"symbol=%ED%A0%80", "invalid_symbol", "not UTF-8"),  # a UTF-16 surrogate, which UTF-8 forbids
    (b"symbol=\xff", "invalid_symbol", "not UTF-8"),
    (b"symbol=ABCDEFGHI", "invalid_symbol", "9 characters long; at most 8"),
    (b"limit=1&limit=2", "invalid_limit", "more than once"),
    (b"symbl=AAA", "unknown_parameter", "it reads: symbol, limit"),
    (b"%FF=1", "invalid_query", "not printable UTF-8"),
    (b"%00=1", "invalid_query", "not printable UTF-8"),
    (b"symbol=" + b"A" * MAX_QUERY_BYTES, "invalid_query", "bytes; send at most"),
])
def test_what_cannot_be_a_value_is_refused_with_400_naming_the_parameter(raw, code, says):
    status, got, detail = refused(raw)
    assert (status, got) == (400, code) and says in detail


def test_a_route_that_reads_nothing_refuses_every_parameter():
    with pytest.raises(BadRequest) as caught:
        read_query(b"x=1", {})
    assert caught.value.code == "unknown_parameter" and "it reads: none" in caught.value.detail


@given(st.binary(max_size=300) | st.lists(st.sampled_from([b"symbol=", b"limit=", b"&", b"%", b"%0", b"%00", b"%C3",
                                                           b"%A9", b"+", b"=", b"A", b"\xff", b"%FF"])).map(b"".join))
def test_any_bytes_give_checked_values_or_a_400(raw):
    try:
        found = read_query(raw, READS)
    except BadRequest as error:
        assert error.status == 400 and error.code and error.detail
        return
    for key, value in found.items():
        assert key in READS and len(value) <= READS[key]
        assert not any(unicodedata.category(c) == "Cc" for c in value)
        value.encode("utf-8")  # a real str: no lone surrogates
