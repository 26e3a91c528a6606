"""Forensics query latency under concurrent clients, against uvicorn serving the real app.

    python -m perf.api --clients 50 --seconds 15 --json out.json

Fills the read models through the real pipeline (hot path → relay → broker →
workers), serves ``api.app`` with uvicorn (httptools, one process), then
``--clients`` keep-alive connections each ask for random decisions' forensics
as fast as answers come. The floor, measured in the same run the same way,
is ``/health``: the same server and client with no query behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from perf.forensics import drain, relay_all
from perf.report import write_result
from perf.services import Services, fill_store, running_services
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.read_models import DecisionsProjection


async def _client(port: int, paths: list[str], token: str, until: float, latencies: list[float], statuses: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            path = random.choice(paths)
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            code = int(status_line.split()[1])
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        writer.close()


def load(port: int, paths: list[str], token: str, clients: int, seconds: float) -> tuple[np.ndarray, dict]:
    """Latencies (s) and status counts of ``clients`` concurrent keep-alive clients for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def run() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, paths, token, until, latencies, statuses) for _ in range(clients)))

    asyncio.run(run())
    return np.asarray(latencies), statuses


def serve(services: Services, token: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": services.database_url, "GLASSBOX_SCHEMA": services.schema,
           "GLASSBOX_API_TOKENS": f"{token}:forensics:read,portfolio:read,metrics:read",
           "GLASSBOX_API_RATE_PER_S": "1000000"}  # measure queries, not the limiter's refusals
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "actors.system.api_main:app_from_env", "--port", str(port),
         "--http", "httptools", "--loop", "uvloop", "--log-level", "warning", "--no-access-log"],
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    token = secrets.token_urlsafe(24)
    with running_services() as services:
        print("filling the read models ...", file=sys.stderr, flush=True)
        store, _ = fill_store(services, args.symbols, args.ticks)
        relay_all(services, store)
        decisions = args.symbols * args.ticks
        drain(services, DecisionsProjection(), "decisions", decisions)
        drain(services, ForensicsProjection(ExplainerCache(services.registry)), "forensics", decisions)
        with psycopg.connect(services.database_url) as conn:
            ids = [str(r[0]) for r in conn.execute(sql.SQL("SELECT decision_id FROM {}").format(
                sql.Identifier(services.schema, "forensics"))).fetchall()]
        server, port = serve(services, token)
        try:
            print(f"{args.clients} clients on /health, then on forensics ...", file=sys.stderr, flush=True)
            load(port, ["/health"], token, args.clients, 2.0)  # warm-up
            floor, _ = load(port, ["/health"], token, args.clients, args.seconds)
            load(port, [f"/api/v1/forensics/{i}" for i in ids], token, args.clients, 2.0)
            lat, statuses = load(port, [f"/api/v1/forensics/{i}" for i in ids], token, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    q50, q99 = np.percentile(lat, [50, 99]) * 1e3
    f50, f99 = np.percentile(floor, [50, 99]) * 1e3
    metrics = {
        "query_ms_p50": q50, "query_ms_p99": q99, "requests_per_s": len(lat) / args.seconds,
        "floor_ms_p50": f50, "floor_ms_p99": f99, "floor_requests_per_s": len(floor) / args.seconds,
        "non_200_responses": float(sum(n for code, n in statuses.items() if code != 200)),
    }
    params = {"clients": args.clients, "seconds": args.seconds, "decisions": decisions}
    return write_result(args.json, "api", params, metrics, started_at)


if __name__ == "__main__":
    main()
