"""``GET /api/v1/stream``: the live WebSocket (protocol in :mod:`api.stream_protocol`, source in :mod:`api.stream_hub`).

One task per connection sends; the handler itself reads. Every way a client
can go wrong ends in a close code with a reason, never a server error: a
first message that is not a subscribe message (4400, or 1009 when too big),
no first message in time (4408), a bad token (4401), a kind its token may not
read (4403), falling too far behind or not reading at all (4429), and any
message after the subscribe (4400: reconnect to change the subscription).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.auth import MAX_TOKEN_BYTES, ApiTokens
from api.stream_hub import StreamClient, StreamHub
from api.stream_protocol import (
    CLOSE_BAD_MESSAGE,
    CLOSE_FORBIDDEN,
    CLOSE_NO_SUBSCRIBE,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    KIND_SCOPES,
    MAX_CLIENT_MESSAGE_BYTES,
    StreamRefusal,
    Subscription,
    encode_message,
    parse_subscribe,
)

__all__ = ["stream"]

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
"""A frame the client's connection has not taken in this long: the client is not reading (4429)."""
CLOSE_UNAVAILABLE = 1013
"""RFC 6455's "try again later": the stream has no source (no Redis configured)."""


async def stream(websocket: WebSocket) -> None:
    """The WebSocket endpoint."""
    hub: StreamHub | None = websocket.state.stream_hub
    tokens: ApiTokens = websocket.state.config.tokens
    await websocket.accept()
    try:
        if hub is None:
            raise StreamRefusal(CLOSE_UNAVAILABLE, "the live stream needs REDIS_URL: the API has no source for it")
        if b"token" in websocket.scope.get("query_string", b"").lower():
            raise StreamRefusal(CLOSE_BAD_MESSAGE, "never put the token in the URL: send it in the subscribe message")
        subscription = _authorised(await _first_message(websocket, hub.config.subscribe_timeout_s),
                                   _header_token(websocket), tokens)
    except StreamRefusal as refusal:
        await _close(websocket, refusal.code, refusal.reason)
        return
    except WebSocketDisconnect:
        return
    client, resumed = hub.register(subscription)
    sender = asyncio.create_task(_send_frames(websocket, client, hub.config.min_frame_interval_s))
    try:
        if not await _send_within(websocket, _frame(encode_message("subscribed", hub.seq, {
                "epoch": hub.epoch, "resumed": resumed, "kinds": sorted(subscription.kinds),
                "symbols": sorted(subscription.symbols)}))):
            return
        reader = asyncio.create_task(_read_after_subscribe(websocket))
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        refusal = next((t.result() for t in done if not t.cancelled() and t.exception() is None and t.result()), None)
        if refusal is not None:
            await _close(websocket, refusal.code, refusal.reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away mid-send: nothing to tell it
    finally:
        sender.cancel()
        hub.unregister(client)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _first_message(websocket: WebSocket, timeout_s: float) -> str | bytes:
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except asyncio.TimeoutError:
        raise StreamRefusal(CLOSE_NO_SUBSCRIBE, f"send a subscribe message within {timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text")
    return raw if raw is not None else message.get("bytes") or b""


def _header_token(websocket: WebSocket) -> bytes | None:
    given = [value for name, value in websocket.scope.get("headers") or () if name.lower() == b"authorization"]
    if len(given) != 1:
        return None
    kind, _, token = given[0].partition(b" ")
    return token.strip(b" \t") if kind.lower() == b"bearer" else None


def _authorised(raw: str | bytes, header_token: bytes | None, tokens: ApiTokens) -> Subscription:
    subscription = parse_subscribe(raw)
    token = subscription.token if subscription.token is not None else header_token
    scopes = tokens.scopes_of(token) if token is not None and len(token) <= MAX_TOKEN_BYTES else None
    if scopes is None:
        raise StreamRefusal(CLOSE_UNAUTHORIZED, "unknown or missing token: send it as \"token\" in the subscribe message")
    missing = sorted({KIND_SCOPES[kind] for kind in subscription.kinds} - scopes)
    if missing:
        raise StreamRefusal(CLOSE_FORBIDDEN, f"this token lacks the {missing[0]!r} scope for the kinds asked for")
    return subscription


async def _read_after_subscribe(websocket: WebSocket) -> StreamRefusal | None:
    """Wait for the client's next message: a close ends quietly, anything else is refused."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    size = len(message.get("text") or message.get("bytes") or "")
    if size > MAX_CLIENT_MESSAGE_BYTES:
        return StreamRefusal(CLOSE_TOO_BIG, f"a client message may have at most {MAX_CLIENT_MESSAGE_BYTES} bytes")
    return StreamRefusal(CLOSE_BAD_MESSAGE, "send one subscribe message per connection; reconnect to change it")


async def _send_frames(websocket: WebSocket, client: StreamClient, interval_s: float) -> StreamRefusal | None:
    """Drain the client's queue into frames, one at most every ``interval_s``, until it falls behind."""
    queue = client.queue
    while True:
        await client.wake.wait()
        client.wake.clear()
        if queue.overflowed:
            await _send_within(websocket, _frame(encode_message("error", 0, {
                "code": "too_slow", "message": "fell too far behind; reconnect with resume to get what you missed"})))
            return StreamRefusal(CLOSE_TOO_SLOW, "too far behind: reconnect with resume {epoch, seq}")
        if queue:
            if not await _send_within(websocket, queue.take_frame()):
                return StreamRefusal(CLOSE_TOO_SLOW, "not reading: the server could not send for "
                                                     f"{SEND_TIMEOUT_S:g} s")
        await asyncio.sleep(interval_s)


def _frame(message: bytes) -> bytes:
    """A frame of one message (every frame is a JSON array of messages)."""
    return b"[" + message + b"]"


async def _send_within(websocket: WebSocket, frame: bytes) -> bool:
    try:
        await asyncio.wait_for(websocket.send_text(frame.decode()), SEND_TIMEOUT_S)
    except asyncio.TimeoutError:
        return False
    return True


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await asyncio.wait_for(websocket.close(code, reason), SEND_TIMEOUT_S)
