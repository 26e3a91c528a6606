// Hand-written SVG charts, each with its numbers in a table beneath (the chart's text alternative).
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function numberTable(caption, headers, rows, numeric) {
  const table = document.createElement("table");
  table.createCaption().textContent = caption;
  const head = table.createTHead().insertRow();
  headers.forEach((h, i) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    if (numeric[i]) th.className = "num";
    head.appendChild(th);
  });
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((cell, i) => {
      const td = tr.insertCell();
      td.textContent = cell;
      if (numeric[i]) td.className = "num";
    });
  }
  return table;
}

// Bars of values in [0, 1] (probabilities, weights): one row per label.
function barChart(title, rows) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const rowHeight = 22, labelWidth = 110, barWidth = 360, width = labelWidth + barWidth + 60;
  const chart = svg("svg", {width, height: rows.length * rowHeight + 6, viewBox: `0 0 ${width} ${rows.length * rowHeight + 6}`,
                            role: "img", "aria-label": `${title}: ` + rows.map(r => `${r.label} ${pct(r.value)}`).join(", ")});
  rows.forEach((r, i) => {
    const y = i * rowHeight + 4;
    chart.appendChild(svg("text", {x: 0, y: y + 13}, r.label));
    chart.appendChild(svg("rect", {class: "bar", x: labelWidth, y, height: rowHeight - 8,
                                   width: Math.max(0, Math.min(1, r.value)) * barWidth}));
    chart.appendChild(svg("text", {x: labelWidth + Math.max(0, Math.min(1, r.value)) * barWidth + 6, y: y + 13}, pct(r.value)));
  });
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(caption, chart, numberTable(`${title}, as numbers`, ["", "value"],
                                            rows.map(r => [r.label, r.value.toFixed(4)]), [false, true]));
  return figure;
}

// A SHAP waterfall: from the expected value, each feature's contribution in turn, to the model output.
// `steps` are {label, value} contributions; the last bar lands on expected + Σ steps.
function waterfall(title, expected, steps, output) {
  const figure = document.createElement("figure");
  figure.className = "chart waterfall";
  const rowHeight = 22, labelWidth = 190, plotWidth = 420, width = labelWidth + plotWidth + 70;
  let running = expected;
  const bars = steps.map(s => {
    const start = running;
    running += s.value;
    return {label: s.label, start, end: running, value: s.value};
  });
  const ends = [expected, output, ...bars.map(b => b.end)];
  const low = Math.min(...ends), high = Math.max(...ends);
  const span = high - low || 1;
  const x = v => labelWidth + ((v - low) / span) * plotWidth;
  const height = (bars.length + 2) * rowHeight + 6;
  const chart = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                            "aria-label": `${title}: expected value ${fmt(expected)}, ${bars.length} contributions, model output ${fmt(output)}`});
  const marker = (row, label, value) => {
    const y = row * rowHeight + 4;
    chart.appendChild(svg("text", {x: 0, y: y + 13}, label));
    chart.appendChild(svg("rect", {class: "sum", x: x(value) - 1.5, y, width: 3, height: rowHeight - 8}));
    chart.appendChild(svg("text", {x: x(value) + 6, y: y + 13}, fmt(value)));
  };
  marker(0, "expected value", expected);
  bars.forEach((b, i) => {
    const y = (i + 1) * rowHeight + 4;
    chart.appendChild(svg("text", {x: 0, y: y + 13}, b.label));
    const left = Math.min(x(b.start), x(b.end));
    chart.appendChild(svg("rect", {class: b.value >= 0 ? "pos" : "neg", x: left, y, height: rowHeight - 8,
                                   width: Math.max(1, Math.abs(x(b.end) - x(b.start)))}));
    chart.appendChild(svg("text", {x: Math.max(x(b.start), x(b.end)) + 6, y: y + 13}, signed(b.value)));
  });
  marker(bars.length + 1, "model output", output);
  chart.appendChild(svg("line", {class: "axis", x1: x(expected), x2: x(expected), y1: 0, y2: height}));
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const rows = [["expected value", fmt(expected)], ...bars.map(b => [b.label, signed(b.value)]), ["model output", fmt(output)]];
  const table = numberTable(`${title}, as numbers`, ["", "SHAP value"], rows, [false, true]);
  table.classList.add("waterfall-numbers");
  figure.append(caption, chart, table);
  return figure;
}

// A line of [label, value] points in order (a backtest's daily equity), with its numbers beneath, folded.
function lineChart(title, points, format) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const width = 760, height = 220, pad = 8;
  const values = points.map(p => p[1]);
  const low = Math.min(...values), high = Math.max(...values), span = (high - low) || 1;
  const x = i => pad + (points.length > 1 ? i / (points.length - 1) : 0.5) * (width - 2 * pad);
  const y = v => pad + (1 - (v - low) / span) * (height - 2 * pad);
  const first = points[0], last = points[points.length - 1];
  const chart = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${title}: ${points.length} points from ${first[0]} (${format(first[1])}) to ${last[0]} ` +
                  `(${format(last[1])}); lowest ${format(low)}, highest ${format(high)}`});
  chart.appendChild(svg("polyline", {class: "line", fill: "none",
                                     points: points.map((p, i) => `${x(i).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ")}));
  chart.appendChild(svg("text", {x: pad, y: 14}, format(high)));
  chart.appendChild(svg("text", {x: pad, y: height - 4}, format(low)));
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const numbers = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = `${title}: the ${points.length} points, as numbers`;
  numbers.append(summary, numberTable(`${title}, as numbers`, ["", "value"],
                                      points.map(p => [p[0], format(p[1])]), [false, true]));
  figure.append(caption, chart, numbers);
  return figure;
}

function fmt(v) { return Number(v).toFixed(4); }
function signed(v) { return (v >= 0 ? "+" : "") + Number(v).toFixed(4); }
function pct(v) { return (100 * v).toFixed(1) + " %"; }

window.GlassboxCharts = {barChart, lineChart, waterfall, numberTable};
})();
