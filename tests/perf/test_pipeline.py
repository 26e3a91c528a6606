"""``perf.pipeline`` runs the real ``glassbox up`` and writes every figure the issue names, with sane values.

No timing is asserted (the machine is shared): only that each key is there and
that what must be positive is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aggregates.registry import ModelRegistry
from perf.pipeline import COMPONENTS, UNITS, _slope
from perf.proc_cpu import ProcessTable, cpu_delta, cpu_seconds

PER_RATE = ["rate_achieved_per_s", "tick_latency_us_p50", "tick_latency_us_p99", "forensics_lag_ms_p50",
            "forensics_lag_ms_p99", "forensics_lag_growth_per_s", "cpu_us_per_decision_total",
            "floor_hop_latency_us_p99", "ratio_tick_latency_p99_vs_floor",
            *(f"cpu_us_per_decision_{name}" for name in COMPONENTS),
            *(f"{figure}_{name}" for name in UNITS for figure in ("cpu_us_per_unit", "done_share"))]
FLOORS = ["floor_produce_records_per_s", "floor_produce_cpu_us_per_record", "floor_shap_rows_per_s",
          "floor_copy_rows_per_s", "floor_copy_cpu_us_per_row"]


def test_a_tiny_run_writes_every_figure_per_rate_and_for_the_sustained_one(
        model_registry: ModelRegistry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_registry.root, home / "models")  # no training inside the benchmark
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    out = tmp_path / "pipeline.json"
    done = subprocess.run([sys.executable, "-m", "perf.pipeline", "--symbols", "3", "--rates", "100,200",
                           "--seconds", "8", "--floor-seconds", "2", "--json", str(out)],
                          env={**env, "GLASSBOX_HOME": str(home)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "perf.pipeline" in done.stderr and "rate 200" in done.stderr  # progress lines
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    assert result["scenario"] == "pipeline" and out.with_suffix(".png").stat().st_size > 0
    for key in PER_RATE:
        assert all(f"{key}_at_{rate}" in metrics for rate in (100, 200)) and key in metrics, key
    assert all(key in metrics for key in FLOORS + ["sustained_decisions_per_s"])
    for rate in (100, 200):
        assert metrics[f"rate_achieved_per_s_at_{rate}"] > 0
        assert metrics[f"cpu_us_per_decision_total_at_{rate}"] > 0
        for name in ("shard", "feed", "redis", "relay", "broker", "worker_forensics", "postgres"):
            assert metrics[f"cpu_us_per_decision_{name}_at_{rate}"] > 0, name
        for name in UNITS:  # every stage did some of the window's work, and its CPU per unit is a figure
            assert metrics[f"cpu_us_per_unit_{name}_at_{rate}"] > 0, name
            assert 0 < metrics[f"done_share_{name}_at_{rate}"] < 2, name
        assert metrics[f"forensics_lag_ms_p99_at_{rate}"] >= metrics[f"forensics_lag_ms_p50_at_{rate}"] > 0
        assert metrics[f"tick_latency_us_p99_at_{rate}"] >= metrics[f"tick_latency_us_p50_at_{rate}"] > 0
    assert metrics["sustained_decisions_per_s"] in (0, 100, 200)
    assert all(metrics[key] > 0 for key in FLOORS)


def test_a_childs_cpu_stays_in_its_parents_tree_after_it_exited(tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    marker = tmp_path / "reaped"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time\n"
                               f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
                               f"open({str(marker)!r}, 'w').close()\ntime.sleep(60)"])
    try:
        before = cpu_seconds(ProcessTable(), {"tree": [parent.pid]}, alone={"alone": [parent.pid]})
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the child burns 0.5 s of CPU, exits and is reaped by the parent
        after = cpu_seconds(ProcessTable(), {"tree": [parent.pid]}, alone={"alone": [parent.pid]})
        spent = cpu_delta(before, after)
        assert marker.exists() and spent["tree"] >= 0.45 and spent["alone"] < spent["tree"] - 0.4, spent
    finally:
        parent.kill()
        parent.wait()


def test_the_backlog_slope_is_least_squares() -> None:
    t = np.arange(20.0)
    assert abs(_slope(list(zip(t + 1e9, 3.0 * t + 7))) - 3.0) < 1e-9
    assert _slope([(1.0, 5.0)]) == 0.0
