"""A finished backtest, as the fact ``Backtest.Run.Completed.v2``.

One ``BacktestRun`` aggregate per run, created by its completion: the run's
parameters, the data it covered, the model version it decided with and its
figures. Runs are listed and compared by reading these events back
(``glassbox backtest list``); the run's own decisions live in its own
namespace (see :mod:`actors.backtest`).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

__all__ = ["BacktestRun", "backtest_run_id"]

_RUNS = uuid5(NAMESPACE_URL, "https://glassbox.invalid/backtest-run")


def backtest_run_id(run_id: str) -> UUID:
    return uuid5(_RUNS, run_id)


class BacktestRun(Aggregate):
    """One completed backtest."""

    TOPIC: ClassVar[str] = "Backtest.Run"

    class Created(Aggregate.Created):
        """The run's completion is its creation: a run is recorded only once it has finished."""

        TOPIC = "Backtest.Run.Completed"
        run_id: str
        parameters: dict[str, Any]
        data_range: dict[str, Any]
        model_version: str
        metrics: dict[str, Any]
        throughput: dict[str, Any]
        """Wall-clock figures of the run (events/s, seconds): they differ between runs of the same test."""
        report: dict[str, str]
        """Where the run's report went: ``{"json": path, "html": path}`` (absolute)."""
        forensics_schema: str | None
        """The database schema its decisions were explained into (``--forensics``), else None."""
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 runs did not record where their report went, nor explained their decisions.
            state["report"] = {}
            state["forensics_schema"] = None

    @staticmethod
    def create_id(run_id: str) -> UUID:
        return backtest_run_id(run_id)

    @classmethod
    def completed(cls, run_id: str, parameters: dict[str, Any], data_range: dict[str, Any],
                  model_version: str, metrics: dict[str, Any], throughput: dict[str, Any],
                  report: dict[str, str], forensics_schema: str | None = None) -> BacktestRun:
        return cls._create(cls.Created, run_id=run_id, parameters=dict(parameters),
                           data_range=dict(data_range), model_version=model_version,
                           metrics=dict(metrics), throughput=dict(throughput), report=dict(report),
                           forensics_schema=forensics_schema)

    def __init__(self, run_id: str, parameters: dict[str, Any], data_range: dict[str, Any],
                 model_version: str, metrics: dict[str, Any], throughput: dict[str, Any],
                 report: dict[str, str], forensics_schema: str | None) -> None:
        self.run_id = run_id
        self.parameters = parameters
        self.data_range = data_range
        self.model_version = model_version
        self.metrics = metrics
        self.throughput = throughput
        self.report = report
        self.forensics_schema = forensics_schema
