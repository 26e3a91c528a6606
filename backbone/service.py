"""Running an asyncio service as a process: stop on SIGTERM/SIGINT, one progress line a second."""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable

__all__ = ["run_until_signalled"]


async def run_until_signalled(
    run: Callable[[asyncio.Event], Awaitable[None]], progress: Callable[[float], str]
) -> None:
    """Run ``run(stop)`` until it returns; SIGTERM or SIGINT sets ``stop`` so it can finish cleanly.

    ``progress(seconds_since_last_call)`` is printed once a second. Raises
    what ``run`` raised.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(run(stop))
    last = loop.time()
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        now = loop.time()
        print(progress(now - last), flush=True)
        last = now
    task.result()
