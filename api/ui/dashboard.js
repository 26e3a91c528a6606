// The Glassbox dashboard: one page, routed by the URL's fragment (#/, #/decisions, #/decision/<id>[?run=],
// #/backtests, #/backtest/<run>).
// It reads only what the API serves a token: the REST routes and the live stream (GET /api/v1/stream).
"use strict";

const TOKEN_KEY = "glassbox.token";
const RECENT_DECISIONS = 20;
const {barChart, lineChart, waterfall, numberTable} = window.GlassboxCharts;
const TRADES_SHOWN = 200;

const live = {
  socket: null, epoch: null, seq: 0, retryMs: 500, timer: null, wanted: false,
  system: null, totals: null, positions: {}, decisions: [], alerts: [],
};

// ---- small DOM helpers (text only: nothing the API returns is parsed as HTML) ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const main = () => document.getElementById("main");
const num = (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v)) ? "—"
  : Number(v).toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
const pct = v => (v === null || v === undefined) ? "—" : (100 * v).toFixed(1) + " %";
const timeOf = ns => new Date(Number(ns) / 1e6).toISOString().replace("T", " ").replace("Z", "");

function show(...nodes) {
  const target = main();
  target.replaceChildren(...nodes);
}

function setConnection(text) { document.getElementById("connection").textContent = text; }

// ---- the token ----

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  location.hash = "#/signin";
  renderSignIn(message);
}

class ApiError extends Error {
  constructor(status, code, detail) { super(detail || code); this.status = status; this.code = code; }
}

async function api(path) {
  const response = await fetch(path, {headers: {Authorization: "Bearer " + token()}});
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    signOut("The API refused this token (401 unauthorized): paste it again, or ask for a valid one.");
    throw new ApiError(401, "unauthorized", body.detail);
  }
  if (response.status >= 400) throw new ApiError(response.status, body.error || "error", body.detail);
  return {status: response.status, body, retryAfter: Number(response.headers.get("Retry-After") || 2)};
}

function renderSignIn(message) {
  document.getElementById("sign-out").hidden = true;
  setConnection("");
  const input = el("input", {id: "token", type: "password", autocomplete: "off", required: true,
                             "aria-describedby": "token-help"});
  const feedback = el("div", {id: "signin-message", role: "alert"});
  if (message) feedback.append(el("p", {class: "error", text: message}));
  const form = el("form", {class: "signin", onsubmit: async event => {
    event.preventDefault();
    feedback.replaceChildren();
    const given = input.value.trim();
    const response = await fetch("/api/v1/trading", {headers: {Authorization: "Bearer " + given}});
    if (response.status === 401) {
      feedback.append(el("p", {class: "error", text: "That token was refused (401 unauthorized): check it for a typo. " +
        "glassbox up writes its token to api-token in its home directory."}));
      input.focus();
      return;
    }
    if (response.status === 403) {
      feedback.append(el("p", {class: "error", text: "That token lacks the portfolio:read scope the overview needs (403)."}));
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, given);
    // A link followed before signing in (a report's "why") opens once signed in.
    const wanted = ["", "#/", "#/signin"].includes(location.hash) ? "#/" : location.hash;
    if (location.hash === wanted) route(); else location.hash = wanted;
  }},
    el("label", {for: "token", text: "API token"}), input,
    el("p", {id: "token-help", class: "muted",
             text: "Kept for this browser tab only (session storage); sent as a bearer token and in the stream's subscribe message, never in a URL."}),
    el("button", {type: "submit", text: "Sign in"}));
  show(el("h1", {text: "Sign in"}), feedback, form);
  input.focus();
}

// ---- the live stream ----

function startLive() {
  live.wanted = true;
  if (live.socket) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/v1/stream`);
  live.socket = socket;
  setConnection("connecting to the live stream …");
  socket.onopen = () => {
    const subscribe = {type: "subscribe", token: token(), kinds: ["decision", "portfolio", "system", "alert"]};
    if (live.epoch) subscribe.resume = {epoch: live.epoch, seq: live.seq};
    socket.send(JSON.stringify(subscribe));
  };
  socket.onmessage = event => {
    for (const message of JSON.parse(event.data)) take(message);
    if (currentPage() === "overview") renderOverviewFigures();
  };
  socket.onclose = event => {
    live.socket = null;
    if (event.code === 4401) { signOut("The live stream refused this token (4401): sign in again."); return; }
    if (event.code === 4403) { setConnection("this token may not read the live stream (4403: it needs forensics:read and portfolio:read)"); return; }
    if (!live.wanted) return;
    setConnection(`live stream lost (${event.code}${event.reason ? ": " + event.reason : ""}); reconnecting in ${(live.retryMs / 1000).toFixed(1)} s …`);
    live.timer = setTimeout(startLive, live.retryMs);
    live.retryMs = Math.min(live.retryMs * 2, 8000);
  };
}

function stopLive() {
  live.wanted = false;
  clearTimeout(live.timer);
  if (live.socket) live.socket.close(1000, "left the page");
  live.socket = null;
  setConnection("");
}

function take(message) {
  const data = message.data;
  switch (message.kind) {
    case "subscribed":
      if (!data.resumed) { live.positions = {}; live.decisions = []; live.alerts = []; }
      live.epoch = data.epoch;
      live.seq = message.seq;
      live.retryMs = 500;
      setConnection(data.resumed ? "live (resumed)" : "live");
      break;
    case "snapshot":  // the newest decisions, oldest first, before anything new
      live.decisions = (data.decisions || []).map(m => m.data).reverse().slice(0, RECENT_DECISIONS);
      break;
    case "decision":
      live.seq = message.seq;
      live.decisions.unshift(data);
      live.decisions.length = Math.min(live.decisions.length, RECENT_DECISIONS);
      break;
    case "alert":
      live.seq = message.seq;
      live.alerts.unshift(data);
      live.alerts.length = Math.min(live.alerts.length, 10);
      break;
    case "portfolio":
      Object.assign(live.positions, data.positions || {});
      if (data.totals) live.totals = data.totals;
      break;
    case "system":
      live.system = data;
      break;
    case "error":
      setConnection(`the stream says: ${data.message}`);
      break;
  }
}

// ---- pages ----

function currentPage() {
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  if (path === "/signin") return "signin";
  if (path === "/decisions") return "decisions";
  if (path === "/backtests") return "backtests";
  if (path.startsWith("/backtest/")) return "backtest";
  if (path.startsWith("/decision/")) return "decision";
  return "overview";
}

function card(label, id, value) {
  return el("div", {class: "card"}, el("dt", {text: label}), el("dd", {id, text: value ?? "—"}));
}

function renderOverview() {
  show(
    el("h1", {text: "Overview"}),
    el("p", {id: "trading-state", role: "status"}),
    el("h2", {text: "System"}),
    el("dl", {class: "cards", id: "system-cards"},
      card("ticks / s", "ticks-per-s"), card("decisions / s", "decisions-per-s"),
      card("tick → committed p99 (ms)", "tick-p99"), card("relay lag (events)", "relay-lag"), card("forensics lag (s)", "forensics-lag"),
      card("ticks so far", "ticks-total")),
    el("h2", {text: "Book"}),
    el("dl", {class: "cards", id: "book-cards"},
      card("equity", "equity"), card("P&L", "pnl"), card("day P&L", "day-pnl"),
      card("gross exposure", "gross"), card("leverage", "leverage")),
    el("h2", {text: "Positions"}),
    el("table", {id: "positions"}),
    el("h2", {text: "Latest decisions"}),
    el("table", {id: "recent-decisions"}),
    el("h2", {text: "Price alerts"}),
    el("table", {id: "recent-alerts"}));
  renderOverviewFigures();
  startLive();
}

function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

function renderOverviewFigures() {
  const s = live.system, t = live.totals;
  if (s) {
    setText("ticks-per-s", num(s.ticks_per_s, 0));
    setText("decisions-per-s", num(s.decisions_per_s, 0));
    setText("tick-p99", num(s.tick_latency_ms_p99, 1));
    setText("relay-lag", num(s.relay_lag_events, 0));
    setText("forensics-lag", num(s.forensics_lag_s, 1));
    setText("ticks-total", num(s.ticks, 0));
    const state = document.getElementById("trading-state");
    if (state) {
      state.className = s.halted ? "state-halted" : "state-running";
      state.textContent = s.halted
        ? `Trading HALTED${s.flatten ? " (flattening)" : ""}: ${s.halt_reason || "no reason given"}`
        : "Trading: running";
    }
  }
  if (t) {
    setText("equity", num(t.equity));
    setText("pnl", num(t.pnl));
    setText("day-pnl", num(t.day_pnl));
    setText("gross", num(t.gross_exposure));
    setText("leverage", num(t.leverage, 3));
  }
  const positions = document.getElementById("positions");
  if (positions) {
    const rows = Object.entries(live.positions).sort(([a], [b]) => a.localeCompare(b));
    positions.replaceChildren(
      el("caption", {text: "Each position's exposure as a share of the 25 % concentration limit (1 = at the limit)"}),
      el("thead", {}, el("tr", {}, ["symbol", "position", "price", "exposure", "share of limit"].map((h, i) =>
        el("th", {scope: "col", class: i ? "num" : null, text: h})))),
      el("tbody", {}, rows.map(([symbol, p]) => {
        const used = p.limit_used ?? 0;
        const bar = el("span", {class: "share" + (used > 0.92 ? " over" : used > 0.8 ? " near" : ""), "aria-hidden": "true"},
          el("span", {style: null}));
        bar.firstChild.style.width = `${Math.min(100, 100 * used)}%`;
        return el("tr", {}, el("td", {text: symbol}), el("td", {class: "num", text: num(p.position, 2)}),
          el("td", {class: "num", text: num(p.price, 4)}), el("td", {class: "num", text: num(p.exposure)}),
          el("td", {class: "num"}, bar, pct(used)));
      })));
  }
  const recent = document.getElementById("recent-decisions");
  if (recent) recent.replaceChildren(...decisionTable(live.decisions.map(d => ({
    decision_id: d.decision_id, symbol: d.symbol, action: d.action, quantity: d.quantity, price: d.price,
    confidence: d.confidence, risk_passed: d.risk_passed, when: timeOf(d.timestamp_ns)})), "The newest decisions, as committed"));
  const alerts = document.getElementById("recent-alerts");
  if (alerts) alerts.replaceChildren(
    el("caption", {text: live.alerts.length ? "The newest price alerts" : "No price alert since the page opened"}),
    el("thead", {}, el("tr", {}, ["time", "symbol", "move", "window (s)", "severity"].map(h => el("th", {scope: "col", text: h})))),
    el("tbody", {}, live.alerts.map(a => el("tr", {}, el("td", {text: timeOf(a.timestamp_ns)}), el("td", {text: a.symbol}),
      el("td", {text: pct(a.move)}), el("td", {text: num(a.window_s, 0)}), el("td", {text: a.severity})))));
}

function decisionTable(rows, caption) {
  return [
    el("caption", {text: caption}),
    el("thead", {}, el("tr", {}, ["time", "symbol", "action", "quantity", "price", "confidence", "risk"].map((h, i) =>
      el("th", {scope: "col", class: i >= 3 && i <= 5 ? "num" : null, text: h})))),
    el("tbody", {}, rows.map(r => el("tr", {},
      el("td", {}, el("a", {href: `#/decision/${r.decision_id}`, class: "decision-link", text: r.when})),
      el("td", {text: r.symbol}), el("td", {class: r.action, text: r.action}),
      el("td", {class: "num", text: num(r.quantity, 2)}), el("td", {class: "num", text: num(r.price, 4)}),
      el("td", {class: "num", text: num(r.confidence, 3)}),
      el("td", {text: r.risk_passed ? "passed" : "cut or refused"})))),
  ];
}

async function renderDecisions() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const field = (name, label, input) => el("label", {for: `filter-${name}`}, label, input);
  const symbol = el("input", {id: "filter-symbol", name: "symbol", value: params.get("symbol") || "", size: 10});
  const action = el("select", {id: "filter-action", name: "action"},
    ["", "BUY", "SELL", "HOLD"].map(a => el("option", {value: a, text: a || "any", selected: params.get("action") === a || null})));
  const from = el("input", {id: "filter-from", name: "from", type: "datetime-local", step: 1, value: params.get("from_local") || ""});
  const to = el("input", {id: "filter-to", name: "to", type: "datetime-local", step: 1, value: params.get("to_local") || ""});
  const form = el("form", {class: "filters", onsubmit: event => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (symbol.value.trim()) next.set("symbol", symbol.value.trim());
    if (action.value) next.set("action", action.value);
    if (from.value) next.set("from_local", from.value);
    if (to.value) next.set("to_local", to.value);
    location.hash = "#/decisions?" + next.toString();
  }}, field("symbol", "symbol", symbol), field("action", "action", action),
    field("from", "from (UTC)", from), field("to", "to (UTC)", to), el("button", {type: "submit", text: "Filter"}));
  const table = el("table", {id: "decisions"});
  const status = el("p", {id: "decisions-status", role: "status"});
  const more = el("button", {type: "button", id: "next-page", text: "Next page", hidden: true});
  show(el("h1", {text: "Decisions"}), form, status, table, more);
  const query = new URLSearchParams({limit: "50"});
  for (const name of ["symbol", "action"]) if (params.get(name)) query.set(name, params.get(name));
  if (params.get("from_local")) query.set("from", params.get("from_local") + "Z");
  if (params.get("to_local")) query.set("to", params.get("to_local") + "Z");
  let shown = [];
  const load = async cursor => {
    if (cursor) query.set("cursor", cursor);
    status.textContent = "loading …";
    try {
      const {body} = await api("/api/v1/decisions?" + query.toString());
      shown = shown.concat(body.decisions.map(d => ({...d, when: d.decided_at.replace("T", " ").replace("+00:00", ""),
                                                     risk_passed: d.risk_passed})));
      table.replaceChildren(...decisionTable(shown, `${shown.length} decisions, oldest first`));
      status.textContent = body.next_cursor ? "" : (shown.length ? "that is all of them" : "no decision matches");
      more.hidden = !body.next_cursor;
      more.onclick = () => load(body.next_cursor);
    } catch (error) {
      if (error.status !== 401) status.replaceChildren(el("span", {class: "error", text: `${error.code}: ${error.message}`}));
    }
  };
  await load(null);
}

async function renderBacktests() {
  const status = el("p", {id: "backtests-status", role: "status", text: "loading …"});
  const table = el("table", {id: "backtests"});
  show(el("h1", {text: "Backtests"}), status, table);
  try {
    const {body} = await api("/api/v1/backtests?limit=200");
    const m = r => r.metrics || {};
    const orNull = (v, f) => (v === null || v === undefined) ? "—" : f(v);
    table.replaceChildren(
      el("caption", {text: "Completed runs, newest first; a run's id opens its report (runs recorded before " +
                           "reports were linked have none here: theirs is where `glassbox backtest --out` wrote it)"}),
      el("thead", {}, el("tr", {}, ["run", "strategy", "source", "from", "to", "return", "Sharpe", "max drawdown",
                                    "trades", "risk cut / refused"].map((h, i) =>
        el("th", {scope: "col", class: i >= 5 ? "num" : null, text: h})))),
      el("tbody", {}, body.backtests.map(r => el("tr", {},
        el("td", {}, r.report ? el("a", {href: `#/backtest/${encodeURIComponent(r.run_id)}`, class: "run-link",
                                         text: r.run_id}) : r.run_id),
        el("td", {text: r.strategy}), el("td", {text: r.source}),
        el("td", {text: r.first}), el("td", {text: r.last}),
        el("td", {class: "num", text: orNull(m(r).total_return, pct)}),
        el("td", {class: "num", text: orNull(m(r).sharpe_ratio, v => num(v, 2))}),
        el("td", {class: "num", text: orNull(m(r).max_drawdown, pct)}),
        el("td", {class: "num", text: orNull(m(r).trades, v => num(v, 0))}),
        el("td", {class: "num", text: `${orNull(r.orders_cut_by_risk, v => num(v, 0))} / ${orNull(r.orders_refused_by_risk, v => num(v, 0))}`})))));
    status.textContent = body.backtests.length ? "" : "No completed backtest yet: run `glassbox backtest`.";
    if (body.unreadable) status.textContent += ` (${body.unreadable} record(s) could not be read)`;
  } catch (error) {
    if (error.status !== 401) status.replaceChildren(el("span", {class: "error", text: `${error.code}: ${error.message}`}));
  }
}

async function renderBacktest(runId) {
  const status = el("p", {id: "backtest-status", role: "status", text: "loading …"});
  const body = el("div", {id: "backtest"});
  show(el("h1", {text: "Backtest " + runId}), status, body);
  let answer;
  try {
    answer = (await api(`/api/v1/backtests/${encodeURIComponent(runId)}`)).body;
  } catch (error) {
    if (error.status !== 401) status.replaceChildren(el("p", {class: "error", role: "alert", text: `${error.code}: ${error.message}`}));
    return;
  }
  const run = answer.run, report = answer.report;
  status.textContent = answer.report_problem ? `No report to show: ${answer.report_problem}.` : "";
  const m = run.metrics || {};
  const cards = el("dl", {class: "cards"},
    card("strategy", "b-strategy", run.strategy), card("source", "b-source", run.source),
    card("days", "b-days", `${run.first} to ${run.last}`), card("total return", "b-return", pct(m.total_return)),
    card("Sharpe", "b-sharpe", m.sharpe_ratio === null || m.sharpe_ratio === undefined ? "—" : num(m.sharpe_ratio, 2)),
    card("max drawdown", "b-drawdown", pct(m.max_drawdown)),
    card("forensics", "b-forensics", run.forensics ? "every decision explained" : "not explained (run with --forensics)"));
  if (!report) { body.replaceChildren(cards); return; }
  const why = id => id && run.forensics
    ? el("a", {href: `#/decision/${id}?run=${encodeURIComponent(runId)}`, class: "trade-decision", text: "why",
               title: `the forensics of decision ${id}`}) : "";
  const trades = report.trades || [];
  const tradeTable = el("table", {id: "trades"},
    el("caption", {text: trades.length > TRADES_SHOWN ? `The first ${TRADES_SHOWN} of ${trades.length} trades`
                                                       : `${trades.length} closed trade(s)`}),
    el("thead", {}, el("tr", {}, ["symbol", "size", "entry", "entry price", "", "exit", "exit price", "", "P&L"].map(
      (h, i) => el("th", {scope: "col", class: [1, 3, 6, 8].includes(i) ? "num" : null, text: h})))),
    el("tbody", {}, trades.slice(0, TRADES_SHOWN).map(t => el("tr", {},
      el("td", {text: t.symbol}), el("td", {class: "num", text: num(t.size, 0)}),
      el("td", {text: (t.entry_time || "").slice(0, 10)}), el("td", {class: "num", text: num(t.entry_price, 4)}),
      el("td", {}, why(t.entry_decision_id)),
      el("td", {text: (t.exit_time || "").slice(0, 10)}), el("td", {class: "num", text: num(t.exit_price, 4)}),
      el("td", {}, why(t.exit_decision_id)), el("td", {class: "num", text: num(t.pnl, 2)})))));
  const curve = report.equity_curve || [];
  body.replaceChildren(cards,
    curve.length ? lineChart("Equity, day by day", curve, v => num(v, 2)) : el("p", {text: "No equity recorded."}),
    el("h2", {text: "Trades"}), tradeTable);
}

async function renderDecision(id, runId) {
  const heading = el("h1", {text: "Decision " + id + (runId ? ` (backtest ${runId})` : "")});
  const body = el("div", {id: "forensics"});
  show(heading, body);
  const deadline = Date.now() + 120_000;
  for (;;) {
    let answer;
    try {
      answer = await api(`/api/v1/forensics/${encodeURIComponent(id)}` +
                         (runId ? `?run=${encodeURIComponent(runId)}` : ""));
    } catch (error) {
      if (error.status === 404 && error.code === "not_found" && !runId && Date.now() < deadline) {
        // streamed before the read models have it
        body.replaceChildren(el("p", {class: "notice", role: "status", text: "Not recorded in the read models yet: looking again …"}));
        await sleep(2000);
        if (currentPage() !== "decision") return;
        continue;
      }
      if (error.status !== 401) body.replaceChildren(el("p", {class: "error", role: "alert", text: `${error.code}: ${error.message}`}));
      return;
    }
    if (answer.status === 202) {
      body.replaceChildren(el("p", {class: "notice", role: "status", id: "pending",
        text: "Being explained: the decision is recorded and its SHAP explanation is being computed. This page fills in when it is ready."}));
      await sleep(Math.max(1, answer.retryAfter) * 1000);
      if (currentPage() !== "decision" || Date.now() > deadline) return;
      continue;
    }
    body.replaceChildren(...forensicsView(answer.body));
    return;
  }
}

function forensicsView(f) {
  const e = f.explanations, x = f.execution_details, a = f.audit_trail;
  const summary = el("dl", {class: "cards"},
    card("symbol", "f-symbol", f.symbol), card("action", "f-action", f.action),
    card("quantity", "f-quantity", num(f.quantity, 4)), card("confidence", "f-confidence", num(f.confidence, 4)),
    card("fill", "f-fill", x.executed ? `${x.side} ${num(x.quantity, 4)} @ ${num(x.execution_price, 4)}` : "not executed"),
    card("position after", "f-position", x.executed ? num(x.position_after, 4) : "—"),
    card("time", "f-time", f.timestamp.replace("T", " ")));
  const shown = e.top_features || [];
  const others = Object.entries(e.all_shap_values || {}).filter(([name]) => !shown.some(t => t.feature === name));
  const steps = shown.map(t => ({label: `${t.feature} = ${Number(t.value).toPrecision(3)}`, value: t.shap}));
  if (others.length) steps.push({label: `${others.length} other features`, value: others.reduce((sum, [, v]) => sum + v, 0)});
  const regimes = Object.entries(e.regime_probs || {}).map(([label, value]) => ({label, value}));
  const weights = Object.entries(e.strategy_weights || {}).map(([label, value]) => ({label, value}));
  const checks = a.risk_checks || [];
  return [
    summary,
    el("h2", {text: "Why: the model's features"}),
    waterfall("SHAP waterfall: expected value → model output", e.expected_value, steps, e.model_output),
    el("div", {class: "grid2"},
      el("section", {}, el("h2", {text: "Regime probabilities"}), barChart("Regime probabilities", regimes),
        el("p", {class: "muted", text: `entropy ${num(e.regime_entropy_normalised, 2)} of its maximum`})),
      el("section", {}, el("h2", {text: "Strategy weights"}), barChart("Strategy weights", weights))),
    el("h2", {text: "In words"}),
    el("div", {class: "sentences"}, el("p", {text: e.regime_reasoning}), el("p", {text: e.strategy_selection}),
      el("p", {text: e.risk_reasoning})),
    el("h2", {text: "Risk checks"}),
    withId(numberTable("Each check the order went through", ["check", "passed", "detail"],
      checks.map(c => [c.name, c.passed ? "yes" : "no", checkDetail(c)]), [false, false, false]), "risk-checks"),
    el("h2", {text: "Event trail"}),
    el("dl", {class: "cards"}, card("correlation id (tick)", "f-correlation", a.correlation_id),
      card("log position", "f-log-position", String(a.log_position)), card("model version", "f-model", a.model_version),
      card("explained at", "f-explained", (a.forensics_computed_at || "").replace("T", " "))),
  ];
}

function checkDetail(c) {
  const value = c.value === null || c.value === undefined ? "—" : Number(c.value).toFixed(4);
  const most = c.max_quantity === null || c.max_quantity === undefined ? "no size limit" : `at most ${num(c.max_quantity, 4)}`;
  return `value ${value} against limit ${Number(c.limit).toFixed(4)}; ${most}`;
}

function withId(node, id) { node.id = id; return node; }

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function route() {
  const page = currentPage();
  document.querySelectorAll("nav a").forEach(a => {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (page === "signin" || !token()) { stopLive(); renderSignIn(); return; }
  document.getElementById("sign-out").hidden = false;
  if (page !== "overview") stopLive();
  if (page === "overview") renderOverview();
  else if (page === "decisions") renderDecisions();
  else if (page === "backtests") renderBacktests();
  else if (page === "backtest") renderBacktest(decodeURIComponent(location.hash.split("/")[2] || ""));
  else {
    const [id, query] = (location.hash.split("/")[2] || "").split("?");
    renderDecision(decodeURIComponent(id), new URLSearchParams(query || "").get("run"));
  }
  main().focus();
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);
route();
