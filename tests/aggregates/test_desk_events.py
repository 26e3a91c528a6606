"""Desk events: built without the dataclass ``__init__``, stored and read back, old versions upcast."""

from __future__ import annotations

import dataclasses
import math

import pytest
from eventsourcing.application import Application

from actors.application import DeskApplication
from actors.features import FeatureEngine
from aggregates.desk import V1_MIN_TRADE_FRACTION, SymbolDesk, wire_name
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.risk import OthersView, RiskLimits
from aggregates.strategies import SmaCross
from edge.feeds import SyntheticFeed

PLAIN_STORE = {
    "PERSISTENCE_MODULE": "eventsourcing.popo",
    "TRANSCODER_TOPIC": "edge.transcoding:OrjsonTranscoder",
    "MAPPER_TOPIC": "edge.transcoding:PlainEventMapper",
}


def run_desk(policy, ticks: int = 400, capital: float = 1e6, symbol: str = "SYN0",
             limits: RiskLimits = RiskLimits()) -> SymbolDesk:
    """A desk that decided ``ticks`` synthetic ticks (its events still pending)."""
    feed = SyntheticFeed([symbol], seed=3, start_ns=1_700_000_000 * 10**9, tick_interval_ns=10**9)
    engine = FeatureEngine()
    desk = None
    history: list[float] = []
    for i, tick in enumerate(feed.ticks(ticks)):
        tick_id = f"{1_700_000_000_000 + i}-0"
        if desk is None:
            desk = SymbolDesk.open(symbol, tick_id, tick.ts_ns)
        features = engine.update(tick.price, tick.size, math.nan if tick.bid is None else tick.bid,
                                 math.nan if tick.ask is None else tick.ask)
        history = (history + [tick.price])[-max(policy.lookback, 1):]
        desk.decide(tick_id=tick_id, ts_ns=tick.ts_ns, price=tick.price, size=tick.size, bid=tick.bid,
                    ask=tick.ask, features=features, policy=policy, others=OthersView(capital),
                    limits=limits, history=history if policy.lookback else ())
    assert desk is not None
    return desk


def test_events_built_by_the_desk_equal_the_dataclass_built_ones(policy: DecisionPolicy) -> None:
    desk = run_desk(policy)
    events = desk.collect_events()
    kinds = {type(e) for e in events}
    assert {SymbolDesk.DecisionTaken, SymbolDesk.RegimeChanged, SymbolDesk.OrderFilled} <= kinds
    for event in events:
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        rebuilt = type(event)(**fields)  # the dataclass __init__, as trigger_event builds it
        assert rebuilt == event
        assert vars(rebuilt) == vars(event)


def _library_emit(desk: SymbolDesk, event_class: type, fields: dict) -> None:
    """The eventsourcing way: the dataclass ``__init__`` and the event's generic ``mutate``."""
    desk.trigger_event(event_class, **fields)


def test_a_desk_decides_as_it_would_through_the_librarys_trigger_event(policy: DecisionPolicy,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A day's loss limit soon hit: fills, risk rejections and regime changes all happen, and a checkpoint.
    tight = RiskLimits(daily_loss_limit=1e-4)

    def decided() -> tuple[str, list]:
        desk = run_desk(policy, ticks=1_000, limits=tight)
        state = repr(sorted(vars(desk).items()))  # before the checkpoint (its trigger_event sets version and time)
        desk.checkpoint_features([1.0, 2.0], "9-0", desk.last_ts_ns)
        return state, desk.collect_events()

    fast_state, fast = decided()
    monkeypatch.setattr(SymbolDesk, "_emit", _library_emit)
    library_state, library = decided()
    kinds = {type(e) for e in fast}
    assert {SymbolDesk.DecisionTaken, SymbolDesk.RegimeChanged, SymbolDesk.OrderFilled,
            SymbolDesk.RiskRejected, SymbolDesk.FeaturesCheckpointed} <= kinds
    # repr tells every float apart (NaN and -0.0 included); the fields' order is the dataclass's in one.
    assert [(type(e), repr(sorted(vars(e).items()))) for e in fast] == \
           [(type(e), repr(sorted(vars(e).items()))) for e in library]
    assert fast_state == library_state


def test_a_missing_field_is_refused_not_stored(policy: DecisionPolicy) -> None:
    desk = run_desk(policy, ticks=2)
    version, pending = desk.version, len(desk.collect_events())
    with pytest.raises(TypeError, match="takes the fields"):
        desk._emit(SymbolDesk.RegimeChanged, {"symbol": "SYN0", "previous": "", "current": "bull",
                                              "correlation_id": "1-0", "timestamp_ns": 1})
    assert (desk.version, desk.collect_events()) == (version, [])  # nothing half-applied
    assert pending >= 3


def test_a_strategy_without_a_band_records_none() -> None:
    desk = run_desk(SmaCross(2, 5, 0.5), ticks=30)
    assert {e.min_trade_fraction for e in desk.collect_events() if isinstance(e, SymbolDesk.DecisionTaken)} == {0.0}


def test_a_wider_no_trade_band_places_fewer_orders(policy: DecisionPolicy) -> None:
    counts = {}
    for band in (0.0, 0.01, 0.3):
        banded = DecisionPolicy(policy.specialists, sizing=Sizing(min_trade_fraction=band))
        events = run_desk(banded, ticks=600).collect_events()
        decisions = [e for e in events if isinstance(e, SymbolDesk.DecisionTaken)]
        assert {d.min_trade_fraction for d in decisions} == {band}
        counts[band] = sum(isinstance(e, (SymbolDesk.OrderFilled, SymbolDesk.RiskRejected)) for e in events)
        assert len(decisions) == 600  # one decision per tick, whatever the band
    assert counts[0.3] < counts[0.01] <= counts[0.0]


def test_the_default_band_is_the_one_v1_decisions_were_taken_with() -> None:
    assert Sizing().min_trade_fraction == V1_MIN_TRADE_FRACTION


def _as_v1(app: Application, event: SymbolDesk.DecisionTaken):
    """The stored form a v1 desk wrote: no class_version, no min_trade_fraction."""
    import orjson

    stored = app.mapper.to_stored_event(event)
    state = orjson.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["min_trade_fraction"]
    return dataclasses.replace(stored, state=orjson.dumps(state))


@pytest.mark.parametrize("with_model", [True, False])
def test_a_stored_v1_decision_reads_with_the_band_it_was_decided_with(policy: DecisionPolicy,
                                                                      with_model: bool) -> None:
    app = DeskApplication(env=PLAIN_STORE)
    desk = run_desk(policy if with_model else SmaCross(2, 5, 0.5), ticks=20)
    decision = next(e for e in desk.collect_events() if isinstance(e, SymbolDesk.DecisionTaken))
    assert wire_name(decision) == "Trading.Decision.Taken.v2"
    old = app.mapper.to_domain_event(_as_v1(app, decision))
    assert old.min_trade_fraction == (V1_MIN_TRADE_FRACTION if with_model else 0.0)
    assert old == decision
    current = app.mapper.to_domain_event(app.mapper.to_stored_event(decision))
    assert vars(current) == vars(decision)


def test_a_desk_rebuilt_from_v1_decisions_equals_the_live_one(policy: DecisionPolicy) -> None:
    app = DeskApplication(env=PLAIN_STORE)
    desk = run_desk(policy, ticks=50)
    events = desk.collect_events()
    stored = [_as_v1(app, e) if isinstance(e, SymbolDesk.DecisionTaken) else app.mapper.to_stored_event(e)
              for e in events]
    app.recorder.insert_events(stored)
    rebuilt = app.load_desk("SYN0")
    assert rebuilt is not None
    assert (rebuilt.version, rebuilt.position, rebuilt.cash, rebuilt.regime_probs, rebuilt.last_tick_id) == (
        desk.version, desk.position, desk.cash, desk.regime_probs, desk.last_tick_id)
