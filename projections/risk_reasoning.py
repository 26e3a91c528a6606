"""The forensics sentence on risk: what the pre-trade checks made of a decision, from its recorded checks.

Light on purpose (no SHAP, no models): the API words it when it serves a
decision's forensics, from the checks the decision event carries.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["risk_reasoning"]


def risk_reasoning(checks: Sequence[Mapping[str, Any]], action: str) -> str:
    """One sentence on what the pre-trade risk checks made of the decision (from its recorded checks)."""
    if not checks:
        return "No order was proposed, so no risk check ran."
    halted = any(c.get("name") == "trading_halted" for c in checks)
    failed = [c for c in checks if not c.get("passed")]
    if not failed:
        verdict = "every risk check passed"
    else:
        broken = ", ".join(f"{c['name']} ({_number(c.get('value'))} over its limit {_number(c.get('limit'))})"
                           for c in failed if c.get("name") != "trading_halted")
        outcome = f"cut to {action}" if action != "HOLD" else "refused"
        verdict = f"the order was {outcome}" + (f": it would have broken {broken}" if broken else "")
    if halted:
        return f"Trading was halted: only orders that close positions could pass; {verdict}."
    return f"Risk: {verdict}."


def _number(value: Any) -> str:
    return "unbounded" if value is None else f"{value:.4g}"
