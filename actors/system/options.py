"""Command-line value types shared by the ``glassbox`` subcommands: each refuses bad input in one sentence."""

from __future__ import annotations

import argparse
from datetime import date

from edge.run_names import RUN_ID_RULE, is_run_id

__all__ = ["iso_date", "non_negative_int", "positive_float", "positive_int", "run_id_arg"]


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2005-01-31") from None


def run_id_arg(text: str) -> str:
    if not is_run_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} cannot name a run: use {RUN_ID_RULE}")
    return text
