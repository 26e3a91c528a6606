"""The JSON result every benchmark writes (docs/design.md, Benchmarks)."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

__all__ = ["machine", "write_result"]


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def write_result(
    path: Path | None,
    scenario: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    started_at: datetime,
) -> dict[str, object]:
    """Write ``{"scenario", "params", "metrics", "machine", "started_at"}`` to ``path`` and stdout."""
    result = {
        "scenario": scenario,
        "params": dict(params),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "machine": machine(),
        "started_at": started_at.astimezone(timezone.utc).isoformat(),
    }
    text = json.dumps(result, indent=2)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    print(text, file=sys.stdout)
    return result
