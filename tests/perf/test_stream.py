"""``perf.stream`` runs the real ``glassbox up`` with live WebSocket clients and writes the figures it names.

No timing is asserted (the machine is shared): only that each figure is
there, and that the clients got decisions and book updates and were not closed.
"""

from __future__ import annotations

import json
from pathlib import Path

from aggregates.registry import ModelRegistry
from perf.stream import main


def test_a_tiny_run_times_decisions_and_the_book_at_the_clients_and_the_hot_path_beside(
        model_registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "stream.json"
    main(["--clients", "3", "--seconds", "3", "--warmup", "2", "--models", str(model_registry.root),
          "--idle-load", "0.2", "--json", str(path)])
    result = json.loads(path.read_text())
    assert result["scenario"] == "stream"
    metrics = result["metrics"]
    for name in ("stream_latency_ms_p50", "stream_latency_ms_p99", "portfolio_latency_ms_p50",
                 "portfolio_latency_ms_p99", "stream_messages_per_s", "stream_decisions_per_client_per_s",
                 "tick_latency_ms_p99_without", "tick_latency_ms_p99_with", "tick_p99_ratio_with_clients",
                 "decisions_timed", "portfolio_messages_timed"):
        assert metrics[name] > 0, name
    assert metrics["clients"] == 3 and metrics["clients_closed"] == 0
    assert 0 < metrics["idle_load_cores"] <= 0.3  # the load asked for, burnt over the window with clients
    assert metrics["stream_latency_ms_p50"] <= metrics["stream_latency_ms_p99"]
