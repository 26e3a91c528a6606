"""``perf.alerts`` writes the figures it names (no timing asserted: the machine is shared)."""

from __future__ import annotations

import json

from perf.alerts import main


def test_perf_alerts_measures_alert_and_tick_latency_in_one_run(tmp_path) -> None:
    path = tmp_path / "alerts.json"
    main(["--symbols", "6", "--rate", "600", "--seconds", "3", "--json", str(path)])
    metrics = json.loads(path.read_text())["metrics"]
    for name in ("alert_latency_ms_p50", "alert_latency_ms_p99", "tick_latency_ms_p50", "tick_latency_ms_p99",
                 "alert_to_tick_p99", "rate_achieved_per_s"):
        assert metrics[name] > 0, name
    assert 0 < metrics["alerts"] < metrics["ticks"]
