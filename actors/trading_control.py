"""Halting and resuming trading: the ``TradingSwitch`` aggregate's events, then the state the desks read.

Order matters for "nothing lost": the event (``Risk.Trading.Halted.v1`` /
``Risk.Trading.Resumed.v1``) is saved in the system's event store first; only
then is the state key the desks read rewritten (``SystemKeys.trading_state``).
A crash between the two leaves a recorded change not yet in force, which
:meth:`TradingControl.sync` puts in force: ``glassbox up`` and every shard call
it when they start, and a halt or resume called again does too. The key is
only ever written from the aggregate, and a write carrying an older version
never replaces a newer one (one Lua call compares them), so two halts racing
cannot leave the older in force.
"""

from __future__ import annotations

import orjson
import redis
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from actors.application import event_store_env
from aggregates.trading_switch import SWITCH_ID, TradingSwitch
from edge.shared_book import TradingState
from edge.system_keys import SystemKeys

__all__ = ["TradingControl"]

_WRITE_IF_NEWER = """
local stored = redis.call('GET', KEYS[1])
if stored then
  local ok, state = pcall(cjson.decode, stored)
  if ok and type(state) == 'table' and tonumber(state['version']) and tonumber(state['version']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_CONFLICT_RETRIES = 5


class TradingControl:
    """The kill switch of the system in ``keys``' namespace, on the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, keys: SystemKeys) -> None:
        self._keys = keys
        self._client = redis.Redis.from_url(redis_url)
        self._app = Application(env=event_store_env(redis_url, keys.system_store))
        self._write = self._client.register_script(_WRITE_IF_NEWER)

    def halt(self, by: str, reason: str, flatten: bool = False) -> TradingState:
        """Record a halt and put it in force; the state now in force.

        Raises:
            TradingSwitchError: no reason, or no name of who halts.
        """
        return self._change(lambda switch: switch.halt(by, reason, flatten))

    def halt_unless_halted(self, by: str, reason: str) -> TradingState:
        """:meth:`halt`, recording nothing when trading is halted already (shards seeing one loss together)."""
        return self._change(lambda switch: None if switch.halted else switch.halt(by, reason))

    def resume(self, by: str, reason: str = "") -> TradingState:
        """Record a resume and put it in force; the state now in force.

        Raises:
            TradingSwitchError: trading is not halted.
        """
        return self._change(lambda switch: switch.resume(by, reason))

    def recorded(self) -> TradingState:
        """The switch as its events say (running when it never switched)."""
        switch = self._switch()
        if switch is None:
            return TradingState()
        return TradingState(switch.halted, switch.flatten, switch.reason, switch.by, switch.at, switch.version)

    def sync(self) -> TradingState:
        """Put the recorded state in force (after a crash between recording and writing it); that state."""
        state = self.recorded()
        self._put_in_force(state)
        return state

    def in_force(self) -> TradingState | None:
        """The state the desks read now, or None when none was ever written."""
        raw = self._client.get(self._keys.trading_state)
        return None if raw is None else TradingState.from_dict(orjson.loads(raw))

    def history(self) -> list[dict[str, object]]:
        """Every halt and resume, oldest first: what, who, why, when."""
        try:
            events = list(self._app.events.get(SWITCH_ID))
        except AggregateNotFoundError:
            return []
        return [{"event": f"{e.TOPIC}.v1", "by": e.by, "reason": e.reason, "at": e.timestamp.isoformat(),
                 **({"flatten": e.flatten} if isinstance(e, TradingSwitch.Halted) else {})}
                for e in events if isinstance(e, (TradingSwitch.Halted, TradingSwitch.Resumed))]

    def close(self) -> None:
        self._app.close()
        self._client.close()

    def _change(self, change) -> TradingState:  # type: ignore[no-untyped-def]
        for _ in range(_CONFLICT_RETRIES):
            switch = self._switch() or TradingSwitch.install()
            change(switch)
            if not switch.pending_events:  # nothing to record: what is recorded is in force
                state = TradingState(switch.halted, switch.flatten, switch.reason, switch.by, switch.at,
                                     switch.version)
                self._put_in_force(state)
                return state
            try:
                self._app.save(switch)
            except IntegrityError:  # another halt or resume saved first: apply ours to what it left
                continue
            state = TradingState(switch.halted, switch.flatten, switch.reason, switch.by, switch.at, switch.version)
            self._put_in_force(state)
            return state
        raise RuntimeError(f"the trading switch kept changing under {_CONFLICT_RETRIES} tries; try again")

    def _switch(self) -> TradingSwitch | None:
        try:
            return self._app.repository.get(SWITCH_ID)
        except AggregateNotFoundError:
            return None

    def _put_in_force(self, state: TradingState) -> None:
        self._write(keys=[self._keys.trading_state], args=[orjson.dumps(state.as_dict()), state.version])
