"""A backtest's report: ``report.json`` for machines, ``report.html`` (with its chart) for people.

The JSON holds only what the run's input determines — parameters, data,
figures, trades, the daily equity curve — with sorted keys, so the same
backtest writes the same bytes every time. Wall-clock figures (how long it
took) are printed and recorded with the run's completion event instead.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from aggregates.performance import Ledger, daily_equity, drawdown_series, performance

__all__ = ["REPORT_FORMAT", "ReportLinks", "build_report", "write_report"]

REPORT_FORMAT = 2
"""2: each trade names the decisions that opened and closed it (``entry_decision_id``, ``exit_decision_id``)."""
_MAX_TRADES_SHOWN = 200


def build_report(ledger: Ledger, parameters: dict[str, Any], data: dict[str, Any],
                 model_version: str) -> dict[str, Any]:
    """The report's content (see the module docstring)."""
    return {
        "report_format": REPORT_FORMAT,
        "parameters": parameters,
        "data": data,
        "model_version": model_version,
        "metrics": performance(ledger),
        "trades": [t.as_dict() for t in ledger.trades],
        "open_trades": [t.as_dict() for t in ledger.open_trades],
        "equity_curve": [[day, value] for day, value in daily_equity(ledger)],
    }


@dataclass(frozen=True)
class ReportLinks:
    """Where a run's decisions are explained: the dashboard's forensics pages of the run (``--forensics``)."""

    dashboard_url: str
    run_id: str

    def decision(self, decision_id: str) -> str:
        return f"{self.dashboard_url.rstrip('/')}/#/decision/{decision_id}?run={self.run_id}"


def write_report(report: dict[str, Any], directory: Path, links: ReportLinks | None = None) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``directory``; their paths.

    With ``links``, the HTML's trades link their entry and exit to the
    deciding decisions' forensics pages (the JSON is the same either way).
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    html_path.write_text(_html(report, _chart_png(report), links), encoding="utf-8")
    return json_path, html_path


def _chart_png(report: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display here; before pyplot is imported
    import matplotlib.pyplot as plt

    days = [datetime.fromisoformat(d).replace(tzinfo=timezone.utc) for d, _ in report["equity_curve"]]
    equity = [v for _, v in report["equity_curve"]]
    drawdown = [100 * d for d in drawdown_series(equity, report["metrics"]["initial_equity"])]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(days, equity, color="#1f5fa8", linewidth=1.2)
    top.axhline(report["metrics"]["initial_equity"], color="#888888", linewidth=0.8, linestyle="--")
    top.set_ylabel("equity")
    top.set_title(f"{report['parameters']['strategy']['name']} on {report['data']['source']}")
    top.grid(alpha=0.3)
    bottom.fill_between(days, drawdown, 0, color="#c0392b", alpha=0.6, linewidth=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


_LABELS = {
    "total_return": ("Total return", "pct"),
    "annualised_return": ("Annualised return", "pct"),
    "annualised_volatility": ("Annualised volatility", "pct"),
    "sharpe_ratio": ("Sharpe ratio", "num"),
    "sortino_ratio": ("Sortino ratio", "num"),
    "max_drawdown": ("Maximum drawdown", "pct"),
    "max_drawdown_peak": ("… from peak", "text"),
    "max_drawdown_trough": ("… to trough", "text"),
    "max_drawdown_recovered": ("… recovered", "text"),
    "win_rate": ("Win rate", "pct"),
    "trades": ("Trades (closed)", "int"),
    "open_trades": ("Trades still open", "int"),
    "exposure": ("Exposure (time in market)", "pct"),
    "initial_equity": ("Initial equity", "money"),
    "final_equity": ("Final equity", "money"),
    "commission_paid": ("Commission paid", "money"),
    "start": ("First tick", "text"),
    "end": ("Last tick", "text"),
}


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f} %"
    if kind == "num":
        return f"{value:.3f}"
    if kind == "int":
        return f"{value:,}"
    if kind == "money":
        return f"{value:,.2f}"
    return str(value)


def _linked(text: str, decision_id: str | None, links: ReportLinks | None) -> str:
    if links is None or not decision_id:
        return html.escape(text)
    return (f'<a href="{html.escape(links.decision(decision_id))}" '
            f'title="why: decision {html.escape(decision_id)}">{html.escape(text)}</a>')


def _html(report: dict[str, Any], png: bytes, links: ReportLinks | None) -> str:
    metrics = report["metrics"]
    rows = "\n".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(_format(metrics.get(key), kind))}</td></tr>"
        for key, (label, kind) in _LABELS.items()
    )
    params = html.escape(orjson.dumps(report["parameters"], option=orjson.OPT_SORT_KEYS).decode())
    trades = report["trades"][:_MAX_TRADES_SHOWN]
    trade_rows = "\n".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in (
            html.escape(t["symbol"]), html.escape(str(t["size"])),
            _linked(t["entry_time"][:10], t.get("entry_decision_id"), links), f"{t['entry_price']:.4f}",
            _linked(t["exit_time"][:10], t.get("exit_decision_id"), links), f"{t['exit_price']:.4f}",
            f"{t['pnl']:.2f}")) + "</tr>"
        for t in trades
    )
    why = ("<p>Each entry and exit date links to the forensics of the decision behind it, on the dashboard at "
           f"<code>{html.escape(links.dashboard_url)}</code> (sign in with the API token first).</p>"
           if links is not None else "")
    more = (f"<p>First {_MAX_TRADES_SHOWN} of {len(report['trades'])} trades; all are in report.json.</p>"
            if len(report["trades"]) > _MAX_TRADES_SHOWN else "")
    chart = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Glassbox backtest</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}
td{{font-variant-numeric:tabular-nums}}code{{background:#f4f4f4;padding:.1em .3em}}</style></head>
<body><h1>Backtest: {html.escape(report['parameters']['strategy']['name'])}
on {html.escape(report['data']['source'])}</h1>
<p>Parameters: <code>{params}</code><br>Model version: <code>{html.escape(report['model_version'] or '—')}</code>
<br>Data: {report['data']['ticks']:,} ticks of {len(report['data']['symbols'])} symbol(s),
{html.escape(report['data']['first'])} to {html.escape(report['data']['last'])}</p>
<img alt="equity curve and drawdown" src="data:image/png;base64,{chart}" style="width:100%">
<h2>Performance</h2><table>{rows}</table>
<h2>Trades</h2>{more}{why}<table><tr><th>symbol</th><th>size</th><th>entry</th><th>entry price</th>
<th>exit</th><th>exit price</th><th>P&amp;L</th></tr>{trade_rows}</table>
</body></html>
"""
