"""Clients that misbehave cannot hurt the stream: the API in its own process (real uvicorn), its RSS measured.

1,000 connections opened and dropped in a loop (clean closes, drops without
a close, garbage, oversized and unknown-kind messages, silence): each bad one
gets its close code, the process's RSS after they leave stays within a
generous bound of what it was before, and the hub counts only the client
still connected.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import httpx2 as httpx
import orjson
import websockets

from edge.child_process import free_port
from edge.feeds import SyntheticFeed
from tests.actors.hot_path_support import make_hot_path, publish
from tests.api.test_stream import READER, TOKENS, kinds, messages_until, subscribe

SYMBOLS = SyntheticFeed.symbol_names(3)
RSS_GROWTH_BOUND_MB = 40.0

SERVE = """
import sys, uvicorn, orjson
from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from api.stream_hub import StreamConfig
c = orjson.loads(sys.argv[1])
stream = StreamConfig(stores=tuple(c["stores"]), subscribe_timeout_s=2.0)
app = create_app(ApiConfig(c["database_url"], ApiTokens.parse(c["tokens"]), redis_url=c["redis_url"],
                           relay_stores=tuple(c["stores"]), stream=stream))
uvicorn.run(app, host="127.0.0.1", port=c["port"], log_level="warning")
"""


@contextmanager
def api_process(redis_url: str, database_url: str, stores: list[str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    tokens = ";".join(f"{token}:{','.join(sorted(TOKENS.scopes_by_token[token]))}" for token in TOKENS.scopes_by_token)
    config = {"stores": stores, "database_url": database_url, "redis_url": redis_url, "tokens": tokens, "port": port}
    process = subprocess.Popen([sys.executable, "-c", SERVE, orjson.dumps(config).decode()], cwd=os.getcwd())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the API process exited while starting"
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start in 30 s"
            time.sleep(0.1)
        yield base.replace("http://", "ws://") + "/api/v1/stream", process.pid
    finally:
        process.terminate()
        process.wait(10)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def misbehave(url: str, n: int) -> dict[str, int]:
    """One connection of the loop, chosen by ``n``: how it ended, by close code ("dropped" when we dropped it)."""
    subscribe_message = orjson.dumps({"type": "subscribe", "token": READER, "kinds": ["decision", "system"]}).decode()
    firsts = [subscribe_message, "{not json", '{"type": "subscribe", "token": "%s", "kinds": ["gossip"]}' % READER,
              "x" * 10_000, None]
    first = firsts[n % len(firsts)]
    async with websockets.connect(url, max_size=2**24) as ws:
        if first is None:  # opens and says nothing: the subscribe timeout closes it
            pass
        else:
            await ws.send(first)
        if n % len(firsts) == 0:
            await ws.recv()  # subscribed; then drop without a close handshake, half of the time
            if n % 2:
                ws.transport.abort()
                return {"dropped": 1}
            return {"closed": 1}
        try:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed as closed:
            return {str(closed.rcvd.code if closed.rcvd else 1006): 1}
    return {}


def test_a_thousand_connections_opened_and_dropped_leave_no_memory_behind(redis_url, database_url, policy) -> None:
    namespace = f"abuse-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
    with hot, api_process(redis_url, database_url, [hot.settings.store_name]) as (url, pid):
        async def loop() -> dict[str, int]:
            ws = await subscribe(url, kinds=["decision"])  # warm up the server's paths once
            await ws.recv()
            await ws.close()
            counts: dict[str, int] = {}
            for batch in range(0, 1_000, 50):
                for ended in await asyncio.gather(*(misbehave(url, n) for n in range(batch, batch + 50))):
                    for key, value in ended.items():
                        counts[key] = counts.get(key, 0) + value
            return counts

        before = rss_mb(pid)
        counts = asyncio.run(loop())
        time.sleep(1.0)
        after = rss_mb(pid)

        async def still_serves() -> list[dict]:
            ws = await subscribe(url, kinds=["decision", "system"])
            publish(hot, SyntheticFeed(SYMBOLS, seed=3).ticks(10))
            got = await messages_until(ws, lambda m: len(kinds(m, "decision")) >= 30
                                       and any(s["data"]["clients"] == 1 for s in kinds(m, "system")))
            await ws.close()
            return got

        got = asyncio.run(still_serves())
    assert counts == {"closed": 100, "dropped": 100, "4400": 400, "1009": 200, "4408": 200}, counts
    assert after - before < RSS_GROWTH_BOUND_MB, (before, after)
    print(f"RSS before {before:.1f} MB, after 1,000 connections {after:.1f} MB")
    # Every one of the thousand has left the hub: the system messages count one client, the last one.
