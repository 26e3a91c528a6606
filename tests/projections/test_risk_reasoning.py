"""The forensics sentence on risk, from a decision's recorded checks (pure code)."""

from projections.risk_reasoning import risk_reasoning


def check(name: str, passed: bool, value: float | None = 0.1, limit: float = 0.25) -> dict:
    return {"name": name, "passed": passed, "value": value, "limit": limit, "max_quantity": None}


def test_it_says_what_the_checks_made_of_the_order() -> None:
    assert risk_reasoning([], "HOLD") == "No order was proposed, so no risk check ran."
    assert risk_reasoning([check("leverage", True)], "BUY 10") == "Risk: every risk check passed."
    assert risk_reasoning([check("position_concentration", False, 0.3)], "BUY 10") == (
        "Risk: the order was cut to BUY 10: it would have broken position_concentration (0.3 over its limit 0.25).")
    assert risk_reasoning([check("daily_loss", False, None, 0.02)], "HOLD") == (
        "Risk: the order was refused: it would have broken daily_loss (unbounded over its limit 0.02).")


def test_during_a_halt_it_says_trading_was_halted() -> None:
    halted = check("trading_halted", True, 1.0, 0.0)
    assert risk_reasoning([halted], "HOLD") == (
        "Trading was halted: only orders that close positions could pass; every risk check passed.")
    refused = [check("leverage", True), {**halted, "passed": False}]
    assert risk_reasoning(refused, "HOLD") == (
        "Trading was halted: only orders that close positions could pass; the order was refused.")
