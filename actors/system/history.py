"""The system's own history: ``System.Run.Started.v1``, restarts, start-up failures and stops, as events.

Kept in the event store ``glassbox:system`` (:class:`edge.system_keys.SystemKeys`)
as one :class:`aggregates.system_run.SystemRun` per ``glassbox up``. Best
effort: a run goes on when an event of its history cannot be saved.
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

    def open(self, redis_url: str, plan: RunPlan) -> None:
        """Start the run's aggregate (``System.Run.Started.v1``) in the system store on ``redis_url``."""
        self._app = Application(env=event_store_env(redis_url, self._keys.system_store))
        options = {"rate": plan.rate, "duration": plan.duration, "shards": plan.shards,
                   "file": str(plan.user_data.path) if plan.user_data else None}
        self._run = SystemRun.start(plan.shards, plan.symbols, options)
        self._app.save(self._run)

    def component_restarted(self, name: str, restarts: int) -> None:
        self._record(lambda run: run.component_restarted(name, None, restarts))

    def startup_failed(self, component: str, reason: str) -> None:
        self._record(lambda run: run.startup_failed(component, reason))

    def stopped(self, reason: str) -> None:
        self._record(lambda run: run.stopped(reason))

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def _record(self, change: Callable[[SystemRun], None]) -> None:
        if self._app is None or self._run is None:
            return
        change(self._run)
        try:
            self._app.save(self._run)
        except Exception as error:  # noqa: BLE001 - the history is best effort; the run goes on
            self._out(f"warning: could not record a system event: {error!r}")
