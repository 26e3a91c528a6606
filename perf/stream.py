"""The live stream under many WebSocket clients, and what they cost trading.

    python -m perf.stream --clients 200 --seconds 30 --json out.json

Runs ``glassbox up`` itself at its default rate and sources (``python -m
actors.system.cli up --api-port 0 --duration D``) in a home and namespace of
its own, with the embedded Redis, broker and PostgreSQL it starts (and the
model registry ``--models`` names, or the one it trains first). After
``--warmup`` seconds come three windows of ``--seconds`` each: without
clients, with ``--clients`` clients, and without again. Each client opens
``GET /api/v1/stream`` (the token in its first message), subscribes to
``--kinds`` for every symbol (default ``decision``, ``portfolio`` and
``system``, as the dashboard's overview does; ``portfolio,system`` is seed
003's story, live book metrics), and reads every frame as it comes. The clients
run in this process, on the same two cores as the system.

Figures:

- ``stream_latency_ms_p50`` / ``_p99``: a frame's receipt minus the arrival
  in Redis of the tick of its first (oldest) decision (of portfolio messages when ``--kinds`` has no
  decisions, as below) (the ms of the tick stream's entry id, the
  decision's ``correlation_id``), over the "with" window. So it is an upper
  bound of event committed → message received, over by the tick → committed
  latency (``tick_latency_ms_p99_with``, beside it) and by up to 1 ms of the
  id's resolution. Target: p99 < 50 ms.
- ``portfolio_latency_ms_p50`` / ``_p99``: a portfolio message's receipt
  minus the publication time of the newest shard figures in its totals
  (``totals.as_of_ms``): book committed → received, seed 003's "live
  portfolio metrics within 50 ms". Frames are scanned as text, not decoded
  (see ``_Clients._take``), so the clients cost this process less than the
  server they measure; ``decisions_timed`` counts the frames timed.
- ``--clients-nice N`` runs the clients (this process) at niceness N under
  ``SCHED_IDLE``, as stand-ins for browsers on other machines; default 0.
- ``--idle-load CORES`` adds, over the "with" window only, processes that
  burn that much CPU at niceness 10 under ``SCHED_IDLE`` (in 10 ms periods)
  and do nothing else: what any work of that size below trading's priority
  costs its p99, whatever the work (``--clients 1 --idle-load 0.5`` against
  ``--clients 1``). ``idle_load_cores`` is what they burnt.
- ``stream_messages_per_s``: messages (all kinds) all clients received per
  second of the "with" window; ``stream_decisions_per_client_per_s`` the
  decisions one client got.
- ``tick_latency_ms_p99_without`` / ``_with``: tick sent → committed p99,
  the median of the shards' per-second p99s over a window (the two "without"
  windows pooled); ``tick_p99_ratio_with_clients`` is with ÷ without. Target:
  at most 1.1.
- ``clients_closed``: clients the API closed during the window (too slow:
  4429, or anything else); ``api_cpu_cores_with`` / ``_without`` and
  ``clients_cpu_cores``: the API process's and this process's CPU over each
  window, in cores (from ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from actors.shard_metrics import shard_metrics_key
from edge.system_keys import SystemKeys
from edge.child_process import child_setup, lower_priority
from perf.proc_cpu import ProcessTable
from perf.report import write_result
from perf.up_process import UpProcess

__all__ = ["main"]

KINDS = ("decision", "portfolio", "system")
"""What a client subscribes to unless ``--kinds`` says otherwise: what the dashboard's overview shows."""

_BEGAN = time.monotonic()


def _say(line: str) -> None:
    print(f"perf.stream [{time.monotonic() - _BEGAN:5.0f}s]: {line}", file=sys.stderr, flush=True)


class _Up(UpProcess):
    """``glassbox up`` at its defaults in a home and namespace of its own, with the services it starts."""

    def __init__(self, work: Path, duration: float, models: Path | None) -> None:
        home = work / "home"
        if models is not None:  # a trained registry: glassbox up would otherwise train its own first
            shutil.copytree(models, home / "models")
        self.namespace = f"perf-stream-{uuid.uuid4().hex[:8]}:"
        env = {name: value for name, value in os.environ.items()
               if name not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "GLASSBOX_API_TOKENS")}
        env.update(GLASSBOX_HOME=str(home), GLASSBOX_NAMESPACE=self.namespace)
        super().__init__(["--api-port", "0", "--duration", f"{duration:g}"], env, work / "up.out")

    def urls_and_shards(self) -> tuple[str, str, int]:
        """(API base URL, Redis URL, shards) once ``glassbox up`` says everything runs."""
        text = self.wait_until_running()
        api = re.search(r"^API\s+(http://\S+)", text, re.M)
        redis_url = re.search(r"^redis\s+(redis://\S+)", text, re.M)
        shards = re.search(r"symbols on (\d+) shard", text)
        if not (api and redis_url and shards):
            raise RuntimeError(f"glassbox up did not say its API, Redis and shards:\n  {self.tail()}")
        return api.group(1), redis_url.group(1), int(shards.group(1))

    def api_pid(self) -> int | None:
        return next((int(c["pid"]) for c in self.status().get("components", [])
                     if c.get("name") == "api" and c.get("pid")), None)


class _Clients:
    """What the clients received: decision latencies (ms) and message counts, while ``counting``."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.counting = False
        self.latencies_ms: list[float] = []
        """Of decision messages: receipt less the tick's arrival in Redis."""
        self.portfolio_ms: list[float] = []
        """Of portfolio messages: receipt less the publication of the book's newest figures."""
        self.messages = 0
        self.decisions = 0
        self.closed: dict[str, int] = {}
        self.subscribed = 0

    async def client(self, url: str, token: str, stop: asyncio.Event) -> None:
        try:
            async with connect(url, max_size=2**24, open_timeout=60) as ws:
                await ws.send(orjson.dumps({"type": "subscribe", "token": token, "kinds": self.kinds}).decode())
                self.subscribed += 1
                while not stop.is_set():
                    try:
                        frame = await asyncio.wait_for(ws.recv(), 1.0)
                    except asyncio.TimeoutError:
                        continue
                    if self.counting:
                        self._take(frame)
        except ConnectionClosed as closed:
            if not stop.is_set():
                code = str(closed.rcvd.code if closed.rcvd else "none")
                self.closed[code] = self.closed.get(code, 0) + 1

    def _take(self, frame: str | bytes) -> None:
        """Count a frame's messages and time its oldest decision and its book.

        Decoding every message of 200 clients would take this process a core
        of its own (the clients share the machine with the system), so frames
        are scanned as text, in C: each message begins ``{"kind":``, and of
        the frame's decisions the first (the oldest, so the latest to arrive
        for its age) is timed, once a frame.
        """
        now_ms = time.time() * 1000.0
        text = frame if isinstance(frame, str) else frame.decode()
        self.messages += text.count(_MESSAGE)
        decisions = text.count(_DECISION)
        if decisions:
            self.decisions += decisions
            at = text.find(_CORRELATION, text.find(_DECISION))
            tick_ms = text[at + len(_CORRELATION):text.find("-", at + len(_CORRELATION))] if at >= 0 else ""
            if tick_ms.isdigit():
                self.latencies_ms.append(now_ms - int(tick_ms))
        at = text.rfind(_AS_OF)
        if at >= 0:
            end = at + len(_AS_OF)
            as_of = _NUMBER.match(text, end)
            if as_of:
                self.portfolio_ms.append(now_ms - float(as_of.group()))


_MESSAGE, _DECISION = '{"kind":', '{"kind":"decision"'
_CORRELATION, _AS_OF = '"correlation_id":"', '"as_of_ms":'
_NUMBER = re.compile(r"[0-9.]+")


class _Window:
    """One window's shard p99s (per second, by the shards' own clock) and CPU."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.p99s_us: dict[tuple[str, bytes], float] = {}
        self.began = self.ended = 0.0
        self.cpu_api = self.cpu_self = 0.0


_BURN = """
import sys, time
share, period = float(sys.argv[1]), 0.01
while True:
    began = time.perf_counter()
    while time.perf_counter() - began < period * share:
        pass
    time.sleep(period * (1 - share))
"""


class _IdleLoad:
    """``cores`` of pure CPU burnt below trading's priority while the block runs; :attr:`cores` what was burnt."""

    def __init__(self, cores: float) -> None:
        self.shares = [1.0] * int(cores) + ([cores - int(cores)] if cores - int(cores) > 1e-9 else [])
        self.cores = 0.0
        self._children: list[subprocess.Popen[bytes]] = []
        self._began = 0.0

    def __enter__(self) -> _IdleLoad:
        self._began = time.monotonic()
        self._children = [subprocess.Popen([sys.executable, "-c", _BURN, repr(share)],
                                           preexec_fn=child_setup(10)) for share in self.shares]  # noqa: PLW1509
        return self

    def __exit__(self, *_: object) -> None:
        table = ProcessTable()
        burnt = sum(table.own_seconds(child.pid) for child in self._children)
        for child in self._children:
            child.kill()
            child.wait()
        self.cores = burnt / max(time.monotonic() - self._began, 1e-9)


def _cpu_seconds(pid: int | None) -> float:
    return ProcessTable().own_seconds(pid) if pid else 0.0


async def _sample(window: _Window, client: redis.Redis, stores: list[str], seconds: float, api: int | None) -> None:
    """Record the shards' per-second p99 latencies that fall in ``seconds`` from now."""
    window.began, cpu_api, cpu_self = time.time(), _cpu_seconds(api), time.process_time()
    until = window.began + seconds
    while time.time() < until:
        await asyncio.sleep(0.25)
        metrics = await asyncio.to_thread(_read_metrics, client, stores)
        for store, m in zip(stores, metrics):
            updated = m.get(b"updated_at")
            if updated and window.began <= float(updated) <= until and int(m.get(b"decisions", 0)):
                window.p99s_us[(store, updated)] = float(m[b"latency_us_p99"])
    window.ended = time.time()
    spent = window.ended - window.began
    window.cpu_api = (_cpu_seconds(api) - cpu_api) / spent
    window.cpu_self = (time.process_time() - cpu_self) / spent


def _read_metrics(client: redis.Redis, stores: list[str]) -> list[dict[bytes, bytes]]:
    pipe = client.pipeline(transaction=False)
    for store in stores:
        pipe.hgetall(shard_metrics_key(store))
    return pipe.execute()


async def _measure(args: argparse.Namespace, up: _Up, api_url: str, redis_url: str, shards: int) -> dict[str, float]:
    token = (up.home / "api-token").read_text().strip()
    stream_url = api_url.replace("http://", "ws://") + "/api/v1/stream"
    client = redis.Redis.from_url(redis_url)
    stores = [SystemKeys(up.namespace).shard_store(i) for i in range(shards)]
    _say(f"warming up for {args.warmup:g} s (glassbox up runs; API {api_url}, {shards} shard(s))")
    await asyncio.sleep(args.warmup)
    api = up.api_pid()  # the status file names the components' pids once a second
    if api is None:
        raise RuntimeError(f"glassbox up's status file names no api process:\n  {up.tail()}")
    before = _Window("without (before)")
    _say(f"window 1 of 3: no clients, {args.seconds:g} s")
    await _sample(before, client, stores, args.seconds, api)

    clients, stop = _Clients(args.kinds), asyncio.Event()
    tasks = [asyncio.create_task(clients.client(stream_url, token, stop)) for _ in range(args.clients)]
    deadline = time.monotonic() + 60
    while clients.subscribed + sum(clients.closed.values()) < args.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if clients.subscribed < args.clients:
        raise RuntimeError(f"only {clients.subscribed} of {args.clients} clients subscribed within 60 s "
                           f"(closed: {clients.closed})")
    await asyncio.sleep(1.0)  # past the snapshots every new client gets
    with_clients = _Window("with clients")
    _say(f"window 2 of 3: {args.clients} clients subscribed, {args.seconds:g} s"
         + (f", and {args.idle_load:g} cores of SCHED_IDLE load" if args.idle_load else ""))
    clients.counting = True
    with _IdleLoad(args.idle_load) as load:
        await _sample(with_clients, client, stores, args.seconds, api)
    clients.counting = False
    closed_in_window = dict(clients.closed)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)

    after = _Window("without (after)")
    _say(f"window 3 of 3: no clients, {args.seconds:g} s")
    await _sample(after, client, stores, args.seconds, api)
    client.close()

    without = [*before.p99s_us.values(), *after.p99s_us.values()]
    with_p99s = list(with_clients.p99s_us.values())
    if not without or not with_p99s:
        raise RuntimeError("the shards published no latency in a window: is glassbox up deciding?\n  " + up.tail())
    tick_without = statistics.median(without) / 1e3
    tick_with = statistics.median(with_p99s) / 1e3
    latencies = np.asarray(clients.latencies_ms)
    books = np.asarray(clients.portfolio_ms)
    timed = latencies if len(latencies) else books  # decisions when subscribed to, else the book
    p50, p99 = np.percentile(timed, [50, 99]) if len(timed) else (float("nan"), float("nan"))
    book50, book99 = np.percentile(books, [50, 99]) if len(books) else (float("nan"), float("nan"))
    seconds = with_clients.ended - with_clients.began
    return {
        "stream_latency_ms_p50": float(p50), "stream_latency_ms_p99": float(p99),
        "portfolio_latency_ms_p50": float(book50), "portfolio_latency_ms_p99": float(book99),
        "stream_messages_per_s": clients.messages / seconds,
        "stream_decisions_per_client_per_s": clients.decisions / seconds / args.clients,
        "tick_latency_ms_p99_without": tick_without, "tick_latency_ms_p99_with": tick_with,
        "tick_p99_ratio_with_clients": tick_with / tick_without,
        "tick_latency_ms_p99_without_before": statistics.median(before.p99s_us.values()) / 1e3
        if before.p99s_us else float("nan"),
        "tick_latency_ms_p99_without_after": statistics.median(after.p99s_us.values()) / 1e3
        if after.p99s_us else float("nan"),
        "clients": float(args.clients), "clients_closed": float(sum(closed_in_window.values())),
        "api_cpu_cores_without": (before.cpu_api + after.cpu_api) / 2, "api_cpu_cores_with": with_clients.cpu_api,
        "clients_cpu_cores": with_clients.cpu_self,
        "idle_load_cores": load.cores,
        "decisions_timed": float(len(latencies)), "portfolio_messages_timed": float(len(books)),
        "latency_target_met": float(len(timed) > 0 and p99 < 50.0),
        "ratio_target_met": float(tick_with / tick_without <= 1.1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each of the three windows")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of trading before the first window")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="what each client subscribes to (comma-separated; default %(default)s)")
    parser.add_argument("--clients-nice", type=int, default=0,
                        help="CPU niceness of the clients (this process, after glassbox up started; a positive "
                             "one also under SCHED_IDLE, as the API and backbone run): they stand in for browsers "
                             "on other machines (default %(default)s)")
    parser.add_argument("--idle-load", type=float, default=0.0,
                        help="cores of pure SCHED_IDLE CPU load to add over the window with clients (default 0)")
    parser.add_argument("--models", type=Path, default=None,
                        help="a trained model registry to deploy (default: glassbox up trains its own first)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.models is not None and not args.models.is_dir():
        parser.error(f"--models {args.models}: no such directory (give a model registry, e.g. ~/.glassbox/models)")
    if args.clients < 1 or args.seconds <= 0 or args.warmup < 0 or not 0 <= args.idle_load <= 2:
        parser.error("--clients must be at least 1, --seconds positive, --warmup not negative and "
                     "--idle-load from 0 to 2 cores")
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not args.kinds or not set(args.kinds) <= {"decision", "portfolio", "system", "alert"}:
        parser.error("--kinds takes decision, portfolio, system and alert, comma-separated")
    started_at = datetime.now(timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="glassbox-perf-stream-"))
    # Room for the client connections and the windows' gaps; glassbox up drains after it.
    up = _Up(work, args.warmup + 3 * args.seconds + 30 + args.clients * 0.05, args.models)
    try:
        api_url, redis_url, shards = up.urls_and_shards()
        lower_priority(args.clients_nice)  # after glassbox up started: its processes keep theirs
        metrics = asyncio.run(_measure(args, up, api_url, redis_url, shards))
        _say("done; glassbox up drains and stops ...")
        up.process.terminate()
        code = up.wait_for_exit()
        if code not in (0, 3):
            raise RuntimeError(f"glassbox up exited with {code}:\n  {up.tail()}")
    finally:
        up.kill_if_running()
    shutil.rmtree(work, ignore_errors=True)
    params = {"clients": args.clients, "seconds": args.seconds, "warmup": args.warmup, "kinds": ",".join(args.kinds),
              "clients_nice": args.clients_nice, "idle_load": args.idle_load,
              "glassbox_up": "default rate and sources"}
    return write_result(args.json, "stream", params, metrics, started_at)


if __name__ == "__main__":
    main()
