"""The shipped Prometheus alerting rules: valid for promtool, and each exercised against a real /metrics scrape.

The scrape comes from the real API over the real pipeline's read models, with a
shard's, relay's and supervisor's published metrics in the real Redis. Each
scrape sample becomes a constant promtool input series; then, rule by rule, the
series it reads are pushed past its threshold (a counter made to grow, a gauge
set high) and promtool checks the rule fires with the scrape's own labels —
and that none fires on the healthy scrape.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from actors.book import DeskFigures, PortfolioBook
from actors.shard_metrics import ShardMetricsPublisher
from actors.stats import HotPathStats
from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from edge.debian_packages import locate_or_install
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "metrics-reader-0123456789"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = locate_or_install(lambda: shutil.which("promtool"), "prometheus",
                              "installing Debian's prometheus package for promtool ...", install_if_missing=True)
    if found is None:
        pytest.fail("promtool is not installed and cannot be: apt-get install prometheus")
    return found


@pytest.fixture(scope="module")
def scrape(projected) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a real /metrics answer: (name, labels, value)."""
    namespace = f"rules-{uuid.uuid4().hex[:8]}:"
    keys, ticks = SystemKeys(namespace), TickKeys(namespace)
    client = redis.Redis.from_url(projected.redis_url)
    stats = HotPathStats()
    stats.record_batch(100, 100, 120, 0, 0, np.linspace(1e6, 8e6, 100).astype(np.int64))  # 1-8 ms
    stats.record_alert_severities(["warning"])
    book = PortfolioBook(1e6)
    book.publish("SYN000", DeskFigures(100.0, 50.0, 150_000.0))
    ShardMetricsPublisher(client, projected.store, stats, 1, book).publish()
    client.hset(keys.components, "shard-0", orjson.dumps({"state": "running", "restarts": 1}))
    client.hset(ticks.dead_letter_counts, "bad_price", 2)
    config = ApiConfig(projected.database_url, ApiTokens.parse(f"{TOKEN}:metrics:read"), schema=projected.schema,
                       redis_url=projected.redis_url, kafka_servers=projected.kafka_servers,
                       relay_stores=(projected.store,), topics=projected.topics, components_key=keys.components,
                       trading_key=keys.trading_state, tick_dead_letter_counts_key=ticks.dead_letter_counts)
    try:
        with TestClient(create_app(config)) as api:
            text = api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    finally:
        client.delete(keys.components, ticks.dead_letter_counts)
        client.close()
    samples = [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
               for s in family.samples]
    assert samples
    return samples


def rules() -> dict[str, dict]:
    return {r["alert"]: r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]}


def test_promtool_accepts_the_rules(promtool) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 12 rules found" in done.stdout


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _constant(value: float) -> str:
    return f"{value!r}+0x40"


def _growing(value: float, step: float) -> str:
    return f"{value!r}+{step!r}x40"


# Per rule: which scraped series to change, to what, and the labels the alert then carries.
BREACHES = {
    "GlassboxForensicsLagging": ("glassbox_forensics_lag_seconds", lambda v: _constant(30.0)),
    "GlassboxTopicBacklog": ("glassbox_consumer_lag_messages", lambda v: _constant(60_000.0)),
    "GlassboxRelaySendFailures": ("glassbox_relay_consecutive_failures", lambda v: _constant(11.0)),
    "GlassboxRelayCircuitOpen": ("glassbox_relay_circuit_state", lambda v: _constant(2.0)),
    "GlassboxPositionNearLimit": ("glassbox_risk_limit_utilisation", lambda v: _constant(0.95)),
    "GlassboxRiskLimitReached": ("glassbox_risk_limit_utilisation", lambda v: _constant(1.0)),
    "GlassboxHotPathSlow": ("glassbox_tick_latency_seconds_bucket", None),  # every new tick over 25 ms
    "GlassboxDeadLettersGrowing": ("glassbox_dead_letters", lambda v: _growing(v, 1.0)),
    "GlassboxTickDeadLettersGrowing": ("glassbox_tick_dead_letters", lambda v: _growing(v, 1.0)),
    "GlassboxComponentRestarting": ("glassbox_component_restarts_total", lambda v: _growing(v, 1.0)),
    "GlassboxTradingHalted": ("glassbox_trading_halted", lambda v: _constant(1.0)),
    "GlassboxSourceDown": ("glassbox_source_up", lambda v: _constant(0.0)),
}


def _slow_bucket(labels: dict[str, str], value: float) -> str:
    # Buckets at or above 50 ms take every new tick; the ones below stay: p99 lands above 25 ms.
    le = float(labels["le"].replace("+Inf", "inf"))
    return _growing(value, 10.0) if le >= 0.05 else _constant(value)


def _promtool_test(promtool: str, tmp_path: Path, series: list[dict], alert: str, expected: list[dict]) -> None:
    test = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "30m", "alertname": alert, "exp_alerts": expected}]}]}
    path = tmp_path / f"{alert}.test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{alert}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("alert", sorted(rules()))
def test_each_rule_is_quiet_on_the_real_scrape_and_fires_when_pushed_past_its_threshold(
        promtool, scrape, tmp_path, alert) -> None:
    rule, (name, breach) = rules()[alert], BREACHES[alert]
    healthy = [{"series": _series(n, l), "values": _constant(v)} for n, l, v in scrape]
    _promtool_test(promtool, tmp_path, healthy, alert, [])  # the healthy system raises nothing

    touched = [(n, l, v) for n, l, v in scrape if n == name and _selected(rule["expr"], l)]
    assert touched, f"{alert} reads {name}, which the real /metrics does not export"
    pushed = []
    for n, l, v in scrape:
        if (n, l, v) in touched:
            values = _slow_bucket(l, v) if breach is None else breach(v)
        else:
            values = _constant(v)
        pushed.append({"series": _series(n, l), "values": values})
    expected = [{"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": rule["annotations"]}
                for labels in _alert_labels(alert, touched)]
    _promtool_test(promtool, tmp_path, pushed, alert, expected)


def _selected(expr: str, labels: dict[str, str]) -> bool:
    if 'limit="concentration"' in expr:
        return labels.get("limit") == "concentration"
    if 'limit=~"leverage|daily_loss"' in expr:
        return labels.get("limit") in ("leverage", "daily_loss")
    if "glassbox_source_up" in expr:
        return labels.get("source") == "redis"
    return True


def _alert_labels(alert: str, touched: list[tuple[str, dict[str, str], float]]) -> list[dict[str, str]]:
    if alert == "GlassboxHotPathSlow":  # aggregated by shard
        return [{"shard": s} for s in sorted({l["shard"] for _, l, _ in touched})]
    return [dict(l) for _, l, _ in touched]  # a comparison or increase() keeps the series' labels, not its name


def test_every_rule_names_a_runbook_that_exists() -> None:
    root = RULES.parents[2]
    for alert, rule in rules().items():
        page = root / rule["annotations"]["runbook"]
        assert page.is_file(), f"{alert}: {page} is missing"
        assert alert in (root / "docs" / "runbooks" / "README.md").read_text(), f"{alert} is not in the index"
