"""The kill switch: one ``TradingSwitch`` aggregate per system, halted or running, and who said so and why.

Its events, ``Risk.Trading.Halted.v1`` and ``Risk.Trading.Resumed.v1``, go to
the system's own event store (beside ``SystemRun``), so every halt is on record
with who asked (an API token's name, ``cli:<user>``, or the shard that saw
the daily loss limit broken), why and when. The desks learn the state from its
projection in Redis (``edge.shared_book.TradingState``, kept by
``actors.trading_control``), never from this aggregate, so a halt costs the hot
path nothing.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from aggregates.errors import TradingSwitchError

__all__ = ["AUTO_HALT_REASON", "SWITCH_ID", "TradingSwitch"]

SWITCH_ID = uuid5(NAMESPACE_URL, "https://glassbox.invalid/trading-switch")
AUTO_HALT_REASON = "daily_loss_limit"
"""The reason of the halt a shard records when the whole book breaks the daily loss limit."""
MAX_TEXT = 500


class TradingSwitch(Aggregate):
    """Halted or running; every change recorded with who, why and when."""

    TOPIC: ClassVar[str] = "Risk.TradingSwitch"

    class Created(Aggregate.Created):
        TOPIC = "Risk.Trading.Switch.Installed"

    class Halted(Aggregate.Event):
        TOPIC = "Risk.Trading.Halted"
        by: str
        reason: str
        flatten: bool

        def apply(self, switch: TradingSwitch) -> None:
            switch.halted, switch.flatten = True, self.flatten
            switch.by, switch.reason, switch.at = self.by, self.reason, self.timestamp.isoformat()

    class Resumed(Aggregate.Event):
        TOPIC = "Risk.Trading.Resumed"
        by: str
        reason: str

        def apply(self, switch: TradingSwitch) -> None:
            switch.halted, switch.flatten = False, False
            switch.by, switch.reason, switch.at = self.by, self.reason, self.timestamp.isoformat()

    @staticmethod
    def create_id() -> UUID:
        return SWITCH_ID

    @classmethod
    def install(cls) -> TradingSwitch:
        """The system's switch, running (its id is :data:`SWITCH_ID`)."""
        return cls._create(cls.Created)

    def __init__(self) -> None:
        self.halted = False
        self.flatten = False
        self.by = ""
        self.reason = ""
        self.at = ""

    def halt(self, by: str, reason: str, flatten: bool = False) -> None:
        """Stop every desk opening or growing positions (``flatten``: and close them).

        Halting a halted switch records the new reason and flatten choice.

        Raises:
            TradingSwitchError: without a reason or a name of who asks.
        """
        self.trigger_event(self.Halted, by=_text("who halts", by), reason=_text("the reason", reason),
                           flatten=bool(flatten))

    def resume(self, by: str, reason: str = "") -> None:
        """Let the desks trade again.

        Raises:
            TradingSwitchError: when trading is not halted, or without a name of who asks.
        """
        if not self.halted:
            raise TradingSwitchError("trading is not halted: there is nothing to resume")
        self.trigger_event(self.Resumed, by=_text("who resumes", by), reason=reason.strip()[:MAX_TEXT])


def _text(what: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise TradingSwitchError(f"{what} must be given (a non-empty text)")
    return value[:MAX_TEXT]
