"""What the supervisor did: one ``SystemRun`` aggregate per ``glassbox up``.

Its events say when a run started and with what, which component failed to
start (``System.Startup.Failed.v1``) or was restarted, which service went
down and came back (``System.Service.Down.v1``, ``System.Service.Back.v1``), and how the run
ended. They go to the system's own event store, so an operator can read a
run's history the same way as a desk's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

__all__ = ["SystemRun"]


class SystemRun(Aggregate):
    """One run of the supervisor."""

    TOPIC: ClassVar[str] = "System.Run"

    class Created(Aggregate.Created):
        TOPIC = "System.Run.Started"
        shards: int
        symbols: list[str]
        options: dict[str, Any]

    class StartupFailed(Aggregate.Event):
        TOPIC = "System.Startup.Failed"
        component: str
        reason: str

        def apply(self, run: SystemRun) -> None:
            run.state = "failed"

    class ComponentRestarted(Aggregate.Event):
        TOPIC = "System.Component.Restarted"
        component: str
        exit_code: int | None
        restarts: int

        def apply(self, run: SystemRun) -> None:
            run.restarts[self.component] = self.restarts

    class ServiceDown(Aggregate.Event):
        TOPIC = "System.Service.Down"
        service: str
        reason: str

        def apply(self, run: SystemRun) -> None:
            run.down.add(self.service)

    class ServiceBack(Aggregate.Event):
        TOPIC = "System.Service.Back"
        service: str
        down_for_s: float

        def apply(self, run: SystemRun) -> None:
            run.down.discard(self.service)

    class Stopped(Aggregate.Event):
        TOPIC = "System.Run.Stopped"
        reason: str

        def apply(self, run: SystemRun) -> None:
            run.state = "stopped"

    @classmethod
    def start(cls, shards: int, symbols: list[str], options: dict[str, Any]) -> SystemRun:
        """A new run with its shard count, symbols and the options it was started with."""
        return cls._create(cls.Created, shards=shards, symbols=list(symbols), options=dict(options))

    def __init__(self, shards: int, symbols: list[str], options: dict[str, Any]) -> None:
        self.shards = shards
        self.symbols = symbols
        self.options = options
        self.state = "running"
        self.restarts: dict[str, int] = {}
        self.down: set[str] = set()

    def startup_failed(self, component: str, reason: str) -> None:
        self.trigger_event(self.StartupFailed, component=component, reason=reason[:2_000])

    def component_restarted(self, component: str, exit_code: int | None, restarts: int) -> None:
        self.trigger_event(self.ComponentRestarted, component=component, exit_code=exit_code, restarts=restarts)

    def service_down(self, service: str, reason: str) -> None:
        self.trigger_event(self.ServiceDown, service=service, reason=reason[:2_000])

    def service_back(self, service: str, down_for_s: float) -> None:
        self.trigger_event(self.ServiceBack, service=service, down_for_s=round(down_for_s, 3))

    def stopped(self, reason: str) -> None:
        self.trigger_event(self.Stopped, reason=reason)
