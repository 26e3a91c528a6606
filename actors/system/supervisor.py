"""The supervisor behind ``glassbox up``: starts the whole system in order, watches it, drains it.

Start order, each step behind a health check with a timeout: the services
(:mod:`actors.system.services`: Redis, the broker, PostgreSQL, migrations),
then the component processes of :mod:`actors.system.layout` (shards, one
relay per shard store, the projection workers, the API), then the feeds. A
step that fails stops start-up with one message naming it, a
``System.Startup.Failed.v1`` event (once Redis is up) and a non-zero exit;
so does an embedded service that dies before start-up is done (it is
restarted only once the system runs). Ctrl-C or SIGTERM during start-up
(:mod:`actors.system.stop_signals`) interrupts whichever step waits, stops
what had started, newest first, and exits with 128 + the signal's number.

While running, a component process that exits is restarted with
exponential backoff (a shard rebuilds its desks from the event store and
redoes its unacknowledged ticks; a worker seeks to its stored offsets), and
every restart is logged, counted and recorded as an event. The services
are watched too (:mod:`actors.system.service_watch`): one line when one is
down and one when it is back (and their events); an embedded one that died
is restarted on its port and data dir. While a service is down, the
components that need it are not restarted (their exits are its outage, not
a crash loop): they wait, and start again as soon as it is back. The feeds
wait out a Redis outage and resume from their stored offsets.

Stopping (Ctrl-C, SIGTERM, ``--duration``) drains in order: feeds stop,
shards finish every tick already published, relays catch up with their
stores, workers with the topics, then everything stops, newest first. What
is still unfinished then (:mod:`actors.system.stuck`: which shard and
symbol, relay and store, group and partition, with the owner's last logged
error) is printed and published to the status, and ``glassbox up`` exits
with :data:`DRAIN_STUCK` instead of 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.sharding import assign_symbols
from actors.system.components import Component, ComponentFailed, ComponentRestarted
from actors.system.feeds import start_feeds
from actors.system.history import SystemHistory
from actors.system.layout import ProcessLayout, ServiceUrls
from actors.system.plan import RunPlan
from actors.system.service_watch import ServiceBack, ServiceDown, ServiceWatch, WatchedService, needs
from actors.system.services import bring_up_services, fail_if_exited, republish_into_fresh_broker
from actors.system.status import Progress, ProgressProbe, StatusBoard
from actors.system.stop_signals import StartupInterrupted, StopSignals
from actors.system.stuck import Stuck, backlogs_of, stuck_work
from backbone.relay import RelayPosition
from backbone.topics import TopicSettings
from edge.child_process import stop_children
from edge.store_layout import log_head
from edge.stray_streams import StraySweeper
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys
from edge.ticks import TickBounds
from glassbox import GlassboxError, Settings, redact_url

__all__ = ["DRAIN_STUCK", "FEED_JOIN_S", "OUTAGE_AFTERMATH_S", "REDIS_TIMEOUT_S", "Supervisor", "restart_movers",
           "resume_waiting"]

OUTAGE_AFTERMATH_S = 10.0
"""Seconds after a service is back in which an exit of a component needing it is still that outage's
(noticed late): restarted as usual, but not printed as a crash of its own."""
REDIS_TIMEOUT_S = 5.0
"""Seconds the supervisor's own Redis calls (progress, stray sweep, drain) may block: a paused or
partitioned Redis must not freeze the watch loop, which is what says it is down and restarts it."""
FEED_JOIN_S = 10.0
"""Seconds the supervisor waits, in all, for the feed threads to stop (they are daemons: Ctrl-C never hangs)."""


class Supervisor:
    """Runs ``plan`` with ``settings``; :meth:`run` returns the process exit code."""

    def __init__(self, settings: Settings, plan: RunPlan, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.plan = plan
        self.out = out
        self.run_dir = settings.home / "run"
        self.log_dir = self.run_dir / "logs"
        self.keys = SystemKeys(settings.namespace)
        self.tick_keys = TickKeys(settings.namespace)
        self.layout = ProcessLayout(settings, plan, self.run_dir, out)
        self.history = SystemHistory(self.keys, out)
        self.board = StatusBoard(self.run_dir, self.keys)
        self.components: list[Component] = []
        self.watch = ServiceWatch([])
        self._quiet: set[str] = set()
        """Components whose exit an outage explained: their restart after it is not news either."""

    def run(self, signals: StopSignals) -> int:
        """Start everything, run until a stop signal (or the duration passes), drain, stop.

        ``signals`` are installed already: one during start-up interrupts it (what had
        started is stopped, no drain: nothing ran yet) and the exit code is 128 + its number.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        owned = assign_symbols(self.plan.symbols, self.plan.shards)
        with ExitStack() as stack:
            stack.callback(self.history.close)
            stack.callback(self.board.close)
            try:
                services = self._start_up(stack, signals, owned)
            except GlassboxError as error:
                return self._startup_failed(error)
            except StartupInterrupted as interrupted:
                return self._startup_interrupted(stack, interrupted)
            # Not retried by the client: the watch asks again a second later, and a timed-out call
            # counts as Redis being unreachable (the watch says so once).
            client = redis.Redis.from_url(services.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                          socket_connect_timeout=REDIS_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
            stack.callback(client.close)
            stores = [self.keys.shard_store(i) for i, symbols in enumerate(owned) if symbols]
            probe = ProgressProbe(client, services, stores, self.settings.schema,
                                  TopicSettings.from_settings(self.settings, prefix=self.settings.topic_prefix))
            stack.callback(probe.close)
            feeds_stop = threading.Event()
            feeds = start_feeds(services.redis_url, self.tick_keys, self.plan, feeds_stop,
                                TickBounds.from_settings(self.settings), say=self.out)
            for line in self.started_lines(services, owned):
                self.out(line)
            try:
                self._watch(signals.stop, probe, services, StraySweeper(client, self.tick_keys, self.plan.symbols))
                if signals.received is not None:
                    self.out(f"{signals.received.name}: draining and stopping ...")
            finally:
                feeds_stop.set()
                joined_by = time.monotonic() + FEED_JOIN_S
                for thread in feeds:
                    thread.join(max(joined_by - time.monotonic(), 0.0))
                if any(thread.is_alive() for thread in feeds):
                    self.out(f"warning: a feed did not stop within {FEED_JOIN_S:g} s; the drain goes on without it")
                self._wait_for_services(time.monotonic() + self.plan.drain_timeout)
                code = self._drain(client, probe, services)
        self.out("stopped: every component exited; services the supervisor started are stopped")
        return code

    # -- start-up ------------------------------------------------------------

    def _start_up(self, stack: ExitStack, signals: StopSignals, owned: list[list[str]]) -> ServiceUrls:
        """The services, then the components; each stopped when ``stack`` closes."""
        with signals.starting():
            services, watched = bring_up_services(stack, self.settings, self.plan.shards, self.plan.seed,
                                                  self.out, on_redis=self._on_redis)
            self.watch = ServiceWatch(watched)
            for service in watched:
                if service.name == "broker" and service.server is not None:
                    service.after_restart = lambda: self._after_broker_restart(services, owned)
            self._start_components(stack, services, owned, watched)
        return services

    def _startup_failed(self, error: GlassboxError) -> int:
        self.history.startup_failed(error.component if isinstance(error, ComponentFailed) else "supervisor", str(error))
        self.out(f"glassbox up: start-up failed: {error}")
        return 1

    def _startup_interrupted(self, stack: ExitStack, interrupted: StartupInterrupted) -> int:
        """Stop what had started (no drain: nothing ran yet); the exit code the signal calls for."""
        self.history.stopped(str(interrupted))
        self.out(f"glassbox up: stopped by {interrupted.signum.name} during start-up; stopping what it had started")
        stack.close()  # the components, then the services, newest first
        stop_children()  # and a child whose spawn the signal cut short (Popen raised before returning it)
        return interrupted.exit_code

    def _on_redis(self, redis_url: str) -> None:
        self.board.attach(redis_url)
        self.history.open(redis_url, self.plan)

    def _start_components(self, stack: ExitStack, services: ServiceUrls, owned: list[list[str]],
                          watched: list[WatchedService]) -> None:
        for spec in self.layout.specs(services, owned):
            component = Component(spec, self.log_dir)
            self.out(f"starting {spec.name} ...")
            stack.callback(component.stop)  # newest first on the way out; before the start, which may be interrupted
            self.components.append(component)
            # An embedded service that died meanwhile fails start-up at once: it is restarted only
            # once the system runs, and the component would wait out its whole timeout for it.
            component.start(between=lambda: fail_if_exited(watched))

    def started_lines(self, services: ServiceUrls, owned: list[list[str]]) -> list[str]:
        """What ``glassbox up`` prints once everything runs: where the services are, the shards, the API."""
        s, api_url = self.settings, self.layout.api_url
        shards = sum(1 for o in owned if o)
        return [
            f"redis      {redact_url(services.redis_url)}{'' if s.redis_url else ' (embedded)'}",
            f"kafka      {services.kafka_servers}{'' if s.kafka_bootstrap_servers else ' (embedded)'}",
            f"postgresql {redact_url(services.database_url)}{'' if s.database_url else ' (embedded)'}",
            f"{len(self.plan.symbols)} symbols on {shards} shard(s), one actor each; logs in {self.log_dir}",
            f"API        {api_url}  (try: curl -H \"Authorization: Bearer $(cat {s.home / 'api-token'})\" "
            f"{api_url}/api/v1/decisions?limit=1)",
            f"dashboard  {api_url}/  (sign in with the token in {s.home / 'api-token'})",
        ]

    # -- running ---------------------------------------------------------------

    def _watch(self, stop: threading.Event, probe: ProgressProbe, services: ServiceUrls,
               strays: StraySweeper) -> None:
        started = time.monotonic()
        last_ticks, last_at = 0, started
        progress = Progress()
        while not stop.wait(1.0):
            self._check_services()
            self._check_components()
            if not self.watch.down:
                try:
                    strays.maybe_sweep()  # ticks:<symbol nobody trades> → dead letters (every few seconds)
                except redis.RedisError:
                    pass  # Redis just went away: the watch says so once; the sweep resumes with it
            now = time.monotonic()
            try:
                progress = probe.sample()
            except redis.RedisError:
                pass  # Redis is down: its outage was said once; the figures resume with it
            else:
                progress.ticks_per_s = max(progress.ticks - last_ticks, 0) / (now - last_at)
                last_ticks, last_at = progress.ticks, now
                self.out(progress.line(now - started))
            self.board.publish(services, self.layout.api_url, self.components, progress)
            if self.plan.duration is not None and now - started >= self.plan.duration:
                return

    def _check_services(self) -> None:
        """Print and record each service going down or coming back; restart the components that waited."""
        for change in self.watch.check([c.name for c in self.components]):
            self.out(str(change))
            if isinstance(change, ServiceDown):
                self.history.service_down(change.name, change.reason)
            elif isinstance(change, ServiceBack):
                self.history.service_back(change.name, change.down_for)
                self._quiet.update(resume_waiting(self.components, change.name))

    def _check_components(self) -> None:
        down, just_back = self.watch.down, self.watch.back_within(OUTAGE_AFTERMATH_S)
        for component in self.components:
            waits = any(needs(component.name, service) for service in down)
            change = component.check(hold=waits)
            if change is None:
                continue
            quiet = waits or component.name in self._quiet or any(needs(component.name, s) for s in just_back)
            if isinstance(change, ComponentRestarted):
                self._quiet.discard(component.name)
                self.history.component_restarted(change.name, change.restarts)
            elif quiet:
                self._quiet.add(component.name)  # its outage explains it; said once, with the outage
            if not quiet:
                self.out(str(change))

    def _after_broker_restart(self, services: ServiceUrls, owned: list[list[str]]) -> None:
        """The embedded broker came back empty: re-publish every store into it, as at a fresh start.

        Relays and workers are stopped first, so none stores a position of the lost broker after
        the reset, then started again; projections are idempotent, so re-sending costs time only.
        """
        restart_movers(self.components,
                       lambda: republish_into_fresh_broker(services, self.keys, self.plan.shards, self.settings))

    def _keep_watching(self) -> None:
        """The watch's checks, for the waits of the drain: services restarted, crashed components too."""
        self._check_services()
        self._check_components()

    def _wait_for_services(self, deadline: float) -> None:
        """Before the drain: let a service that is down come back (restarted, or by itself), up to ``deadline``."""
        while self.watch.down and time.monotonic() < deadline:
            self._check_services()
            self._check_components()
            if self.watch.down:
                time.sleep(0.5)
        for name in self.watch.down:
            self.out(f"warning: {name} is still down; the drain waits for it no longer")

    # -- stopping --------------------------------------------------------------

    def _drain(self, client: redis.Redis, probe: ProgressProbe, services: ServiceUrls) -> int:
        """Drain stage by stage; 0 when everything published was finished, :data:`DRAIN_STUCK` and what is not."""
        by_name = {c.name: c for c in self.components}
        owned = assign_symbols(self.plan.symbols, self.plan.shards)
        deadline = time.monotonic() + self.plan.drain_timeout
        stuck: list[Stuck] = []
        try:
            self.out("draining: shards finish the published ticks ...")
            # Components are still watched while draining: a shard that crashed just before the
            # signal must be restarted to finish its ticks (one stopped on purpose stays down).
            _wait(lambda: self._ticks_pending(client) == 0, deadline, self._keep_watching)
            for name in [n for n in by_name if n.startswith("shard-")]:
                by_name[name].stop()
            # A stage after one that timed out still gets its own grace, so a stuck shard
            # is not reported as a stuck relay too.
            self.out("draining: relays catch up with the event stores ...")
            _wait(lambda: all(probe.relay_lag(store) == 0 for store in probe.stores), _grace(deadline),
                  self._keep_watching)
            for name in [n for n in by_name if n.startswith("relay-")]:
                by_name[name].stop()
            self.out("draining: projections catch up with the topics ...")
            # The broker's end offsets can trail just-acknowledged messages for a moment (seen with
            # the embedded one): "caught up" must hold on several reads a second apart.
            _wait(lambda: _holds(lambda: _total(probe) == 0, times=3, every=1.0), _grace(deadline),
                  self._keep_watching)
            stuck = self._stuck(client, probe, owned)
            for item in stuck:
                self.out(f"stuck: {item.line()}")
            if stuck:
                self.out(f"error: the drain ended after {self.plan.drain_timeout:g} s with the work above unfinished; "
                         f"it resumes at the next start (check with `glassbox doctor`)")
            self.board.publish(services, self.layout.api_url, self.components, probe.sample(),
                               stuck=[item.line() for item in stuck])
        except redis.RedisError as error:
            self.out(f"error: the drain could not read Redis ({error}); check with `glassbox doctor`")
            return DRAIN_STUCK
        finally:
            self.history.stopped("signal or duration")
        return DRAIN_STUCK if stuck else 0

    def _stuck(self, client: redis.Redis, probe: ProgressProbe, owned: list[list[str]]) -> list[Stuck]:
        """What is left: every symbol's tick backlog, every relay's lag, every group's partitions."""
        relays = [(f"relay-shard-{i}", self.keys.shard_store(i),
                   RelayPosition(client, self.keys.shard_store(i), "relay").get(),
                   log_head(client, self.keys.shard_store(i)))
                  for i, symbols in enumerate(owned) if symbols]
        return stuck_work(backlogs_of(client, self.tick_keys, owned), relays, probe.partition_lags(), self.log_dir)

    def _ticks_pending(self, client: redis.Redis) -> int:
        # Not XINFO's ``lag`` alone: Redis forgets it (nil) after loading a stream from its AOF,
        # which is exactly after a Redis restart; tick_backlog counts what it cannot read.
        owned = assign_symbols(self.plan.symbols, self.plan.shards)
        return sum(backlog.unfinished for backlog in backlogs_of(client, self.tick_keys, owned))


def resume_waiting(components: list[Component], service: str) -> list[str]:
    """``service`` is back: restart at once the components that need it and waited; their names.

    A component that needs another service, or crashed on its own, keeps its backoff: its
    exit is not this outage's, and resetting its backoff would hide a crash loop.
    """
    return [c.name for c in components if needs(c.name, service) and c.resume()]


def restart_movers(components: list[Component], between: Callable[[], None]) -> None:
    """Stop the relays and workers, run ``between()`` (the re-publish), start them again.

    Only those not stopped on purpose: during the drain the relays are stopped once caught
    up, and a broker restart then must not bring them back. If ``between()`` raises, the
    stopped ones wait like crashed ones (held while the broker counts as down) and the next
    attempt (the watch retries the restart) takes them again: none may store a position of
    the lost broker meanwhile.
    """
    movers = [c for c in components if c.name.startswith(("relay-", "worker-")) and not c.stopped]
    for component in movers:
        component.stop()
    try:
        between()
    except BaseException:
        for component in movers:
            component.wait_for_restart()
        raise
    for component in movers:
        component.respawn()


DRAIN_STUCK = 3
"""``glassbox up``'s exit code when its drain ended with ticks undecided or events not relayed or projected."""
GRACE_S = 15.0
"""Seconds each drain stage gets at least, even after an earlier stage used up the drain's time."""


def _grace(deadline: float) -> float:
    return max(deadline, time.monotonic() + GRACE_S)


def _total(probe: ProgressProbe) -> int | None:
    lags = probe.group_lags()
    return None if lags is None else lags.total


def _holds(check: Callable[[], bool], times: int, every: float) -> bool:
    """``check()`` true ``times`` times in a row, ``every`` seconds apart."""
    for attempt in range(times):
        if attempt:
            time.sleep(every)
        if not check():
            return False
    return True


def _wait(done: Callable[[], bool], deadline: float, between: Callable[[], None] = lambda: None) -> bool:
    """Until ``done()`` or ``deadline``; ``between()`` runs between the questions."""
    while time.monotonic() < deadline:
        try:
            if done():
                return True
        except Exception:  # noqa: BLE001 - a source that cannot answer yet: ask again
            pass
        between()
        time.sleep(0.2)
    return False
