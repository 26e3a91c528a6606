"""Running an asyncio service as a process: stop on SIGTERM/SIGINT, one progress line a second."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Awaitable, Callable

__all__ = ["run_until_signalled"]

log = logging.getLogger("glassbox.progress")


async def run_until_signalled(
    run: Callable[[asyncio.Event], Awaitable[None]],
    progress: Callable[[float], str],
    ready: Callable[[], bool] = lambda: True,
    ready_file: Path | None = None,
) -> None:
    """Run ``run(stop)`` until it returns; SIGTERM or SIGINT sets ``stop`` so it can finish cleanly.

    ``progress(seconds_since_last_call)`` is logged once a second. Once
    ``ready()`` is true, ``ready_file`` (if given) is written: how a
    supervisor learns the service is up. Raises what ``run`` raised.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(run(stop))
    last = loop.time()
    announced = ready_file is None
    while not task.done():
        await asyncio.wait([task], timeout=0.2 if not announced else 1.0)
        if not announced and ready():
            ready_file.write_text(f"{os.getpid()}\n")  # type: ignore[union-attr]
            announced = True
        now = loop.time()
        if now - last >= 1.0 or task.done():
            log.info(progress(now - last))
            last = now
    task.result()
