"""The system's own history: ``System.Run.Started.v1``, restarts, outages, start-up failures and stops, as events.

Kept in the event store ``glassbox:system`` (:class:`edge.system_keys.SystemKeys`)
as one :class:`aggregates.system_run.SystemRun` per ``glassbox up``. Best
effort: a run goes on when an event of its history cannot be saved.

That store lives in Redis, so an outage of Redis cannot be recorded while it
lasts: its ``System.Service.Down.v1`` is held back and saved, just before its
``System.Service.Back.v1``, once Redis is back (nothing else is recorded
meanwhile: the supervisor holds the components' restarts during an outage).
"""

from __future__ import annotations

from collections.abc import Callable

from eventsourcing.application import Application

from actors.application import event_store_env
from actors.system.plan import RunPlan
from aggregates.system_run import SystemRun
from edge.system_keys import SystemKeys

__all__ = ["SystemHistory"]


class SystemHistory:
    """Records one run of the system; every method is a no-op until :meth:`open`."""

    def __init__(self, keys: SystemKeys, out: Callable[[str], None]) -> None:
        self._keys = keys
        self._out = out
        self._app: Application | None = None
        self._run: SystemRun | None = None
        self._redis_url = ""
        self._held_back: list[Callable[[SystemRun], None]] = []

    def open(self, redis_url: str, plan: RunPlan) -> None:
        """Start the run's aggregate (``System.Run.Started.v1``) in the system store on ``redis_url``."""
        self._redis_url = redis_url
        self._app = Application(env=event_store_env(redis_url, self._keys.system_store))
        options = {"rate": plan.rate, "duration": plan.duration, "shards": plan.shards,
                   "file": str(plan.user_data.path) if plan.user_data else None}
        self._run = SystemRun.start(plan.shards, plan.symbols, options)
        self._app.save(self._run)

    def component_restarted(self, name: str, restarts: int) -> None:
        self._record(lambda run: run.component_restarted(name, None, restarts))

    def startup_failed(self, component: str, reason: str) -> None:
        self._record(lambda run: run.startup_failed(component, reason))

    def service_down(self, service: str, reason: str) -> None:
        """``System.Service.Down.v1``; held back until Redis is back when ``service`` is Redis."""
        change: Callable[[SystemRun], None] = lambda run: run.service_down(service, reason)
        if service == "redis":
            self._held_back.append(change)
        else:
            self._record(change)

    def service_back(self, service: str, down_for_s: float) -> None:
        """``System.Service.Back.v1``; after Redis is back, first what was held back, on a new connection."""
        if service == "redis" and self._app is not None and self._run is not None:
            self._reconnect()
        held, self._held_back = self._held_back, []
        for change in held:
            self._record(change)
        self._record(lambda run: run.service_back(service, down_for_s))

    def stopped(self, reason: str) -> None:
        self._record(lambda run: run.stopped(reason))

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def _reconnect(self) -> None:
        """A fresh client and the run as stored: the old client's connections died with the old server."""
        assert self._app is not None and self._run is not None
        run_id = self._run.id
        try:
            self._app.close()
            self._app = Application(env=event_store_env(self._redis_url, self._keys.system_store))
            self._run = self._app.repository.get(run_id)
        except Exception as error:  # noqa: BLE001 - the history is best effort; the run goes on
            self._out(f"warning: could not reopen the system's history: {error!r}")

    def _record(self, change: Callable[[SystemRun], None]) -> None:
        if self._app is None or self._run is None:
            return
        change(self._run)
        try:
            self._app.save(self._run)
        except Exception as error:  # noqa: BLE001 - the history is best effort; the run goes on
            self._out(f"warning: could not record a system event: {error!r}")
            try:  # the unsaved event is gone: go on from the stored version, or every later save conflicts
                self._run = self._app.repository.get(self._run.id)
            except Exception:  # noqa: BLE001 - still unreachable: the next save reports it
                pass
