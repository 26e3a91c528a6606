"""The live stream, end to end: a real hot path commits, real uvicorn serves, a real WebSocket client reads.

The source is the committed log in the real Redis (never the trading path);
what the clients get is checked against the events in the store.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import struct
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import orjson
import pytest
import websockets

from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from api.stream_hub import StreamConfig
from edge.feeds import SyntheticFeed
from edge.system_keys import SystemKeys
from tests.actors.hot_path_support import make_hot_path, publish, wait_until_decided
from tests.api.test_database_outage import served

SYMBOLS = SyntheticFeed.symbol_names(3)
READER = "stream-reader-0123456789"
PORTFOLIO_ONLY = "stream-portfolio-0123456789"
TOKENS = ApiTokens.parse(f"{READER}:forensics:read,portfolio:read;{PORTFOLIO_ONLY}:portfolio:read")


@dataclasses.dataclass
class Live:
    hot: Any
    url: str
    namespace: str


@contextmanager
def live_stream(redis_url: str, database_url: str, policy, **bounds: Any) -> Iterator[Live]:
    namespace = f"stream-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
    keys = SystemKeys(namespace)
    config = StreamConfig(stores=(hot.settings.store_name,), book_key=keys.risk_book, trading_key=keys.trading_state,
                          portfolio_interval_s=0.05, system_interval_s=0.2, **bounds)
    app = create_app(ApiConfig(database_url, TOKENS, redis_url=redis_url, relay_stores=config.stores, stream=config))
    with hot, served(app) as base:
        yield Live(hot, base.replace("http://", "ws://") + "/api/v1/stream", namespace)


def committed_decisions(hot) -> list[dict]:
    return [orjson.loads(n.state) for n in hot.app.recorder.select_notifications(1, 10**6)
            if n.topic == "Trading.Decision.Taken"]


async def subscribe(url: str, **message: Any):
    ws = await websockets.connect(url, max_size=2**24)
    await ws.send(orjson.dumps({"type": "subscribe", "token": READER, **message}).decode())
    return ws


async def messages_until(ws, done, timeout: float = 30.0) -> list[dict]:
    """Every message received until ``done(messages)`` holds."""
    got: list[dict] = []
    async with asyncio.timeout(timeout):
        while not done(got):
            got.extend(orjson.loads(await ws.recv()))
    return got


def merged_positions(messages: list[dict]) -> dict[str, dict]:
    """The positions as the portfolio deltas received so far leave them."""
    positions: dict[str, dict] = {}
    for message in kinds(messages, "portfolio"):
        positions.update(message["data"]["positions"])
    return positions


def kinds(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["kind"] == kind]


async def closed_with(url: str, first: str | bytes | None, **connect: Any) -> tuple[int, str]:
    async with websockets.connect(url, **connect) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(15):
                while True:
                    await ws.recv()
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_decisions_are_pushed_as_committed_filtered_by_symbol_with_portfolio_and_system(
        redis_url, database_url, policy) -> None:
    with live_stream(redis_url, database_url, policy) as live:
        async def scenario():
            every = await subscribe(live.url, kinds=["decision", "portfolio", "system"])
            one = await subscribe(live.url, kinds=["decision"], symbols=[SYMBOLS[1]])
            hello = orjson.loads(await every.recv())[0]
            assert hello["kind"] == "subscribed" and hello["data"]["resumed"] is False
            ticks = publish(live.hot, SyntheticFeed(SYMBOLS, seed=5).ticks(100))
            got = await messages_until(every, lambda m: len(kinds(m, "decision")) >= len(ticks)
                                       and any(s["data"]["clients"] == 2 for s in kinds(m, "system"))
                                       and m[-1]["kind"] == "portfolio"
                                       and set(merged_positions(m)) == set(SYMBOLS))
            mine = await messages_until(one, lambda m: len(kinds(m, "decision")) >= 100)
            await every.close()
            await one.close()
            return got, mine

        got, mine = asyncio.run(scenario())
        wait_until_decided(live.hot, 300)
        committed = committed_decisions(live.hot)
    decisions = kinds(got, "decision")
    assert [d["data"]["decision_id"] for d in decisions] == [c["decision_id"] for c in committed]
    # Each names its tick (the tick stream's entry id: when Redis took the tick in; perf.stream times from it).
    assert [d["data"]["correlation_id"] for d in decisions] == [c["correlation_id"] for c in committed]
    seqs = [d["seq"] for d in decisions]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # numbered without gaps, in commit order
    assert {d["data"]["symbol"] for d in kinds(mine, "decision")} == {SYMBOLS[1]}
    assert [d["data"]["decision_id"] for d in kinds(mine, "decision")] == [
        c["decision_id"] for c in committed if c["symbol"] == SYMBOLS[1]]
    for symbol, held in merged_positions(got).items():  # the last price each desk decided at
        assert held["price"] == [c["price"] for c in committed if c["symbol"] == symbol][-1]
    system = kinds(got, "system")[-1]["data"]
    assert system["halted"] is False and system["clients"] == 2 and system["relay_lag_events"] > 0  # no relay here


def test_an_api_started_after_trading_shows_the_book_and_the_recent_decisions_at_once(
        redis_url, database_url, policy) -> None:
    namespace = f"stream-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
    with hot:
        publish(hot, SyntheticFeed(SYMBOLS, seed=8).ticks(100))
        wait_until_decided(hot, 300)
        committed = committed_decisions(hot)
        fills = [orjson.loads(n.state) for n in hot.app.recorder.select_notifications(1, 10**6)
                 if n.topic == "Trading.Order.Filled"]
        keys = SystemKeys(namespace)
        config = StreamConfig(stores=(hot.settings.store_name,), book_key=keys.risk_book,
                              trading_key=keys.trading_state, portfolio_interval_s=0.05)
        app = create_app(ApiConfig(database_url, TOKENS, redis_url=redis_url, relay_stores=config.stores,
                                   stream=config))
        with served(app) as base:  # the API (and its hub) start after every decision was committed
            async def scenario():
                ws = await subscribe(base.replace("http://", "ws://") + "/api/v1/stream", kinds=["decision", "portfolio"])
                got = await messages_until(ws, lambda m: kinds(m, "snapshot") and set(merged_positions(m)) == set(SYMBOLS))
                await ws.close()
                return got
            got = asyncio.run(scenario())
    snapshot = kinds(got, "snapshot")[0]["data"]["decisions"]
    assert [d["data"]["decision_id"] for d in snapshot] == [c["decision_id"] for c in committed[-50:]]
    assert kinds(got, "decision") == []  # the past is in the snapshot, never sent again as new
    positions = merged_positions(got)
    assert fills  # the synthetic desks trade: there is a book to show
    for symbol in SYMBOLS:
        mine = [f for f in fills if f["symbol"] == symbol]
        assert positions[symbol]["position"] == (mine[-1]["position_after"] if mine else 0.0)
        assert positions[symbol]["price"] == [c["price"] for c in committed if c["symbol"] == symbol][-1]


def test_a_position_whose_last_fill_is_older_than_the_seed_comes_from_the_read_models(
        redis_url, database_url, policy) -> None:
    import psycopg
    from psycopg import sql

    from projections.migrate import apply_migrations

    namespace = f"stream-{uuid.uuid4().hex[:8]}:"
    schema = f"seed_{uuid.uuid4().hex[:8]}"
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
    with hot:
        publish(hot, SyntheticFeed(SYMBOLS, seed=8).ticks(100))
        wait_until_decided(hot, 300)
        fills = [orjson.loads(n.state) for n in hot.app.recorder.select_notifications(1, 10**6)
                 if n.topic == "Trading.Order.Filled"]
        last_fill = {f["symbol"]: f for f in fills}
        assert last_fill  # the synthetic desks trade
        apply_migrations(database_url, schema)  # the read models, as the projection left them: every last fill
        with psycopg.connect(database_url, autocommit=True) as conn:
            for symbol, fill in last_fill.items():
                conn.execute(sql.SQL("INSERT INTO {}.positions (symbol, quantity, last_price, log_position) "
                                     "VALUES (%s, %s, %s, 0)").format(sql.Identifier(schema)),
                             (symbol, fill["position_after"], fill["price"]))
        keys = SystemKeys(namespace)
        config = StreamConfig(stores=(hot.settings.store_name,), book_key=keys.risk_book,
                              trading_key=keys.trading_state, portfolio_interval_s=0.05,
                              seed_entries=3)  # the last few entries only: no fill of most symbols among them
        app = create_app(ApiConfig(database_url, TOKENS, schema=schema, redis_url=redis_url,
                                   relay_stores=config.stores, stream=config))
        with served(app) as base:
            async def scenario():
                ws = await subscribe(base.replace("http://", "ws://") + "/api/v1/stream", kinds=["portfolio"])
                got = await messages_until(ws, lambda m: set(merged_positions(m)) == set(SYMBOLS))
                await ws.close()
                return got
            positions = merged_positions(asyncio.run(scenario()))
    for symbol in SYMBOLS:
        expected = last_fill[symbol]["position_after"] if symbol in last_fill else 0.0
        assert positions[symbol]["position"] == expected, symbol


def test_a_client_that_falls_behind_is_told_so_and_resumes_where_it_left_off(redis_url, database_url, policy) -> None:
    with live_stream(redis_url, database_url, policy, client_queue=20, min_frame_interval_s=0.5) as live:
        async def scenario():
            ws = await subscribe(live.url, kinds=["decision"])
            hello = orjson.loads(await ws.recv())[0]
            publish(live.hot, SyntheticFeed(SYMBOLS, seed=6).ticks(40))  # 120 decisions inside one frame interval
            got: list[dict] = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(30):
                    while True:
                        got.extend(orjson.loads(await ws.recv()))
            wait_until_decided(live.hot, 120)
            last = max([m["seq"] for m in kinds(got, "decision")], default=hello["seq"])
            again = await subscribe(live.url, kinds=["decision"], resume={"epoch": hello["data"]["epoch"], "seq": last})
            resumed = await messages_until(again, lambda m: m and m[0]["kind"] == "subscribed"
                                           and len(kinds(m, "decision")) >= 120 - len(kinds(got, "decision")))
            await again.close()
            stale = await subscribe(live.url, kinds=["decision"], resume={"epoch": "0" * 16, "seq": last})
            fresh = await messages_until(stale, lambda m: kinds(m, "snapshot"))
            await stale.close()
            return got, closed.value.rcvd, resumed, fresh

        got, close, resumed, fresh = asyncio.run(scenario())
        committed = committed_decisions(live.hot)
    assert close.code == 4429 and "resume" in close.reason
    assert kinds(got, "error")[0]["data"]["code"] == "too_slow"
    assert resumed[0]["data"]["resumed"] is True
    ids = [d["data"]["decision_id"] for d in kinds(got, "decision") + kinds(resumed, "decision")]
    assert ids == [c["decision_id"] for c in committed]  # nothing lost, nothing twice
    assert fresh[0]["data"]["resumed"] is False  # another server run's seq: a fresh snapshot instead
    assert len(kinds(fresh, "snapshot")[0]["data"]["decisions"]) == 50


@pytest.mark.parametrize(("first", "code", "said"), [
    ("not json", 4400, "JSON"),
    ('{"type": "subscribe", "token": "%s", "kinds": ["decision", "gossip"]}' % READER, 4400, "unknown kind 'gossip'"),
    ('{"type": "subscribe", "token": "%s", "kinds": []}' % READER, 4400, "kinds"),
    ('{"type": "subscribe", "token": "%s", "kinds": ["decision"], "symbols": "AAA"}' % READER, 4400, "symbols"),
    ('{"type": "subscribe", "token": "%s", "kinds": ["decision"], "resume": {"seq": -1}}' % READER, 4400, "resume"),
    ('{"type": "hello"}', 4400, "subscribe"),
    ("x" * 5_000, 1009, "4096"),
    ('{"type": "subscribe", "token": "wrong-token-0123456789", "kinds": ["decision"]}', 4401, "token"),
    ('{"type": "subscribe", "kinds": ["decision"]}', 4401, "token"),
    ('{"type": "subscribe", "token": "%s", "kinds": ["decision"]}' % PORTFOLIO_ONLY, 4403, "forensics:read"),
])
def test_a_bad_first_message_is_closed_with_a_clear_code_and_reason(redis_url, database_url, policy, first, code,
                                                                   said) -> None:
    with live_stream(redis_url, database_url, policy) as live:
        got = asyncio.run(closed_with(live.url, first))
    assert got[0] == code and said in got[1], got


def test_the_token_may_come_in_a_header_but_never_in_the_url(redis_url, database_url, policy) -> None:
    with live_stream(redis_url, database_url, policy, subscribe_timeout_s=0.5) as live:
        async def scenario():
            async with websockets.connect(live.url, additional_headers={"Authorization": f"Bearer {READER}"}) as ws:
                await ws.send('{"type": "subscribe", "kinds": ["decision"]}')
                hello = orjson.loads(await ws.recv())[0]
            in_url = await closed_with(live.url + f"?token={READER}", None)
            silent = await closed_with(live.url, None)
            after = await closed_with(live.url, None)
            return hello, in_url, silent, after

        hello, in_url, silent, _ = asyncio.run(scenario())

        async def chatty():
            ws = await subscribe(live.url, kinds=["system"])
            await ws.recv()
            await ws.send('{"type": "subscribe", "kinds": ["decision"]}')
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(15):
                    while True:
                        await ws.recv()
            return closed.value.rcvd

        again = asyncio.run(chatty())
    assert hello["kind"] == "subscribed"
    assert in_url[0] == 4400 and "URL" in in_url[1]
    assert silent[0] == 4408 and "subscribe" in silent[1]
    assert again.code == 4400 and "reconnect" in again.reason


def _never_reading_client(url: str, kinds: list[str]) -> socket.socket:
    """A WebSocket client that subscribes and then never reads: a raw socket whose receive buffer is tiny.

    Its handshake and subscribe frame are written by hand (RFC 6455: a masked text frame) so nothing reads
    on its behalf; the kernel's small window makes the server's sends back up instead of vanishing into it.
    """
    host, port = url.removeprefix("ws://").split("/", 1)[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window is set from it
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # byte by byte: nothing past the handshake is taken off the socket
    assert answer.startswith(b"HTTP/1.1 101"), answer
    payload = orjson.dumps({"type": "subscribe", "token": READER, "kinds": kinds})
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask
    sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def _read_to_the_end(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_never_reads_is_closed_and_nobody_else_notices(redis_url, database_url, policy) -> None:
    with live_stream(redis_url, database_url, policy) as live:
        silent = _never_reading_client(live.url, ["decision", "portfolio", "system"])

        async def scenario():
            reader = await subscribe(live.url, kinds=["decision", "system"])
            assert orjson.loads(await reader.recv())[0]["kind"] == "subscribed"
            # The silent client subscribed too: the hub counts both.
            await messages_until(reader, lambda m: any(s["data"]["clients"] == 2 for s in kinds(m, "system")))
            # Enough decisions to fill the silent client's path many times over (~6 MB of messages).
            ticks = publish(live.hot, SyntheticFeed(SYMBOLS, seed=11).ticks(6_000))
            got: list[dict] = []
            decided, alone = 0, False
            async with asyncio.timeout(120):
                while decided < len(ticks) or not alone:
                    frame = orjson.loads(await reader.recv())
                    got.extend(frame)
                    decided += sum(m["kind"] == "decision" for m in frame)
                    alone = alone or any(m["kind"] == "system" and m["data"]["clients"] == 1 for m in frame)
            await reader.close()
            return got

        try:
            got = asyncio.run(scenario())
            rest = _read_to_the_end(silent)  # what the kernel held for it, then the server's close frame
        finally:
            silent.close()
        committed = committed_decisions(live.hot)
    # The server ended the connection (the socket reached its end) with only part of the decisions on the way:
    # what the kernel buffers took (~3 MB here). No close frame can reach a client that does not read (the
    # same full window holds it back), so it sees the connection end.
    assert 0 < rest.count(b'"kind":"decision"') < len(committed)
    # The reader got every decision in order while the silent client was dropped (the hub counts 1 client).
    assert [d["data"]["decision_id"] for d in kinds(got, "decision")] == [c["decision_id"] for c in committed]
