"""Watching the services a run stands on: Redis, the broker and PostgreSQL, down and back.

The supervisor calls :meth:`ServiceWatch.check` once a second. An embedded
service (one the supervisor started) is down when its process has exited;
it is then restarted on its port and data dir (:meth:`EmbeddedServer.restart`,
the one place restarts happen), with backoff while the restart fails. A
paused embedded server (SIGSTOP) still has its process and is waited out. A
service given by URL is probed (``answers``) and waited for, never
restarted. Each outage gives exactly one :class:`ServiceDown` and one
:class:`ServiceBack`; ``str()`` of each is the line the supervisor prints.

Which components stand on which service (:data:`NEEDS`) tells the supervisor
whose exits an outage explains: those are not restarted until it is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.embedded_server import EmbeddedServer
from glassbox import redact_url

__all__ = ["NEEDS", "ServiceBack", "ServiceChange", "ServiceDown", "ServiceRestartFailed", "ServiceWatch",
           "WatchedService", "needs"]

NEEDS: dict[str, tuple[str, ...]] = {
    "redis": ("shard-", "relay-", "worker-", "api"),
    "broker": ("relay-", "worker-"),
    "postgresql": ("worker-", "api"),
}
"""Per service, the name prefixes of the components that cannot work without it."""

_WHILE_DOWN = {
    "redis": "trading paused",
    "broker": "deciding goes on, relaying and projecting wait",
    "postgresql": "deciding goes on, the projection workers wait",
}
_WHEN_BACK = {
    "redis": "trading resumes where the store says",
    "broker": "it came back empty: the relays re-publish every event store from the start",
    "postgresql": "the projection workers catch up",
}


def needs(component: str, service: str) -> bool:
    """Whether ``component`` (a component's name) cannot work while ``service`` is down."""
    return component.startswith(NEEDS.get(service, ()))


@dataclass(frozen=True)
class ServiceDown:
    """A service stopped answering (or its process died)."""

    name: str
    reason: str
    restarting: bool
    waiting: tuple[str, ...] = ()
    """The components that wait for it."""

    def __str__(self) -> str:
        action = "restarting it" if self.restarting else "waiting for it"
        who = f"; {', '.join(self.waiting)} wait for {self.name}" if self.waiting else ""
        return f"{self.name} is down ({self.reason}); {_WHILE_DOWN.get(self.name, 'its users wait')}, {action}{who}"


@dataclass(frozen=True)
class ServiceBack:
    """A service answers again (restarted by us, or come back by itself)."""

    name: str
    down_for: float
    restarted: bool

    def __str__(self) -> str:
        how = "restarted" if self.restarted else "answering again"
        return f"{self.name} is back ({how} after {self.down_for:.1f} s); {_WHEN_BACK.get(self.name, 'its users resume')}"


@dataclass(frozen=True)
class ServiceRestartFailed:
    """A restart of an embedded service failed; tried again after ``retry_in`` seconds."""

    name: str
    error: str
    retry_in: float

    def __str__(self) -> str:
        first_line = self.error.strip().splitlines()[0] if self.error.strip() else "no reason given"
        return f"{self.name}: restart failed ({first_line}); trying again in {self.retry_in:.0f} s"


ServiceChange = ServiceDown | ServiceBack | ServiceRestartFailed


@dataclass
class WatchedService:
    """One service of a run: embedded (``server``, restarted when it dies) or given (``answers``, probed)."""

    name: str
    url: str
    server: EmbeddedServer | None = None
    answers: Callable[[], bool] = lambda: True
    """For a given service: whether it answers now (a bounded probe)."""
    after_restart: Callable[[], None] = lambda: None
    """Run once an embedded one answers again, before it counts as back (the broker's re-publish)."""
    probe_every: float = 1.0
    misses_before_down: int = 2
    """Probes in a row a given service must fail: one late answer on a loaded machine is no outage."""
    down_since: float | None = None
    _misses: int = 0
    _next_probe: float = 0.0
    _restart_at: float = 0.0
    _restart_failures: int = 0
    _after_restart_due: bool = field(default=False)


class ServiceWatch:
    """Checks every service of a run; restarts the embedded ones that died."""

    def __init__(self, services: list[WatchedService], clock: Callable[[], float] = time.monotonic,
                 max_restart_delay: float = 30.0) -> None:
        self.services = services
        self._clock = clock
        self._max_delay = max_restart_delay
        self._back_at: dict[str, float] = {}

    @property
    def down(self) -> list[str]:
        """Names of the services down now."""
        return [s.name for s in self.services if s.down_since is not None]

    def back_within(self, seconds: float) -> list[str]:
        """Names of the services that came back less than ``seconds`` ago.

        A component may notice an outage only after a quick restart (Redis is back
        in a fraction of a second): an exit then is still that outage's.
        """
        now = self._clock()
        return [name for name, at in self._back_at.items() if now - at < seconds]

    def check(self, components: Sequence[str] = ()) -> list[ServiceChange]:
        """What changed since the last call; restarts what is due. ``components``: names, for the down line."""
        changes: list[ServiceChange] = []
        for service in self.services:
            changes += self._check_embedded(service, components) if service.server is not None \
                else self._check_given(service, components)
        return changes

    def _check_embedded(self, service: WatchedService, components: Sequence[str]) -> list[ServiceChange]:
        server = service.server
        assert server is not None
        now = self._clock()
        changes: list[ServiceChange] = []
        if service.down_since is None:
            code = server.exit_code
            if code is None:
                return []
            service.down_since, service._restart_at, service._restart_failures = now, now, 0
            changes.append(ServiceDown(service.name, f"its process exited with code {code}", True,
                                       _waiting(service.name, components)))
        if now < service._restart_at:
            return changes
        try:
            if not service._after_restart_due:
                server.restart()
                service._after_restart_due = True
            service.after_restart()
        except Exception as error:  # noqa: BLE001 - any failure of a restart: try again, later
            service._restart_failures += 1
            delay = min(2.0 ** (service._restart_failures - 1), self._max_delay)
            service._restart_at = now + delay
            changes.append(ServiceRestartFailed(service.name, str(error) or repr(error), delay))
            return changes
        service._after_restart_due = False
        changes.append(ServiceBack(service.name, self._clock() - service.down_since, True))
        service.down_since = None
        self._back_at[service.name] = self._clock()
        return changes

    def _check_given(self, service: WatchedService, components: Sequence[str]) -> list[ServiceChange]:
        now = self._clock()
        if now < service._next_probe:
            return []
        service._next_probe = now + service.probe_every
        try:
            answered = service.answers()
        except Exception:  # noqa: BLE001 - a probe that fails is "does not answer"
            answered = False
        if answered:
            service._misses = 0
            if service.down_since is None:
                return []
            down_for, service.down_since = now - service.down_since, None
            self._back_at[service.name] = now
            return [ServiceBack(service.name, down_for, False)]
        service._misses += 1
        if service.down_since is not None or service._misses < service.misses_before_down:
            return []
        service.down_since = now
        return [ServiceDown(service.name, f"it does not answer at {redact_url(service.url)}", False,
                            _waiting(service.name, components))]


def _waiting(service: str, components: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for c in components if needs(c, service))
