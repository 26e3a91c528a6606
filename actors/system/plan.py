"""What ``glassbox up`` was asked to run: the plan the command line builds and the supervisor carries out."""

from __future__ import annotations

from dataclasses import dataclass

from edge.user_data import UserData

__all__ = ["RunPlan"]


@dataclass(frozen=True)
class RunPlan:
    """What ``glassbox up`` was asked to run."""

    bundled: list[str]
    synthetic: list[str]
    user_data: UserData | None = None
    """A CSV or Parquet file of the user's, already read (so a bad one fails before anything starts)."""
    shards: int = 1
    forensics_workers: int = 1
    """Members of the forensics consumer group (one process each): SHAP is the costliest projection."""
    rate: float = 1_000.0
    duration: float | None = None
    api_port: int | None = None
    """None: 8000, or any free port when 8000 is taken; 0: any free port."""
    seed: int = 7
    drain_timeout: float = 60.0

    @property
    def symbols(self) -> list[str]:
        user = self.user_data.symbols if self.user_data else []
        return self.bundled + self.synthetic + [s for s in user if s not in self.bundled + self.synthetic]
