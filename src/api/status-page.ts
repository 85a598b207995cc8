/**
 * GET / on the api listener: one static HTML page, no build step and no external assets. Its
 * script reads GET /status every 2 s and renders it with textContent only (no HTML from data).
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sidecar status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
  .meta { color: #555; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
  th { background: #f0f0f0; font-weight: 600; }
  code { font: 12px ui-monospace, monospace; }
  .ok { color: #17702c; font-weight: 600; }
  .bad { color: #b3261e; font-weight: 600; }
  .warn { color: #8a5a00; font-weight: 600; }
  .empty { color: #777; font-style: italic; }
  #error { color: #b3261e; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  svg.spark { display: block; }
  svg.spark .all { fill: none; stroke: #3465a4; stroke-width: 1.2; }
  svg.spark .failed { fill: none; stroke: #b3261e; stroke-width: 1.2; }
</style>
</head>
<body>
<h1>sidecar <span id="service"></span></h1>
<div class="meta" id="meta"></div>
<div id="error" role="alert"></div>
<form id="login" hidden>
  <label>This sidecar requires its api.token: <input id="token" type="password" autocomplete="off" size="40"></label>
  <button type="submit">Show status</button>
</form>
<h2>Health</h2>
<table id="health"><tbody></tbody></table>
<h2>Traffic: the last minute</h2>
<table id="calls">
  <thead><tr><th>service called</th><th>requests/s</th><th>success</th><th>p50</th><th>p99</th><th>requests per second (failed in red)</th></tr></thead>
  <tbody></tbody>
</table>
<table id="deliveries">
  <thead><tr><th>subscription</th><th>messages/s</th><th>success</th><th>p50</th><th>p99</th><th>deliveries per second (failed in red)</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Services this sidecar calls</h2>
<div class="meta" id="watching"></div>
<table id="services">
  <thead><tr><th>service</th><th>node</th><th>address</th><th>version</th><th>state</th><th>in flight</th><th>failures in a row</th><th>ejections</th></tr></thead>
  <tbody></tbody>
</table>
<details id="listing">
  <summary>Every service in the registry: a listing, read when opened (this sidecar watches only what it calls)</summary>
  <button id="relist" type="button">List again</button> <span class="meta" id="listed"></span>
  <table id="registry">
    <thead><tr><th>service</th><th>nodes</th><th>versions</th><th>addresses</th></tr></thead>
    <tbody></tbody>
  </table>
</details>
<h2>Subscriptions</h2>
<table id="subscriptions">
  <thead><tr><th>name</th><th>topic</th><th>path</th><th>state</th><th>delivered</th><th>retried</th><th>dead-lettered</th><th>dropped</th><th>in flight</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Recent events</h2>
<table id="events">
  <thead><tr><th>time</th><th>event</th><th>details</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Recent errors</h2>
<table id="errors">
  <thead><tr><th>time</th><th>level</th><th>message</th><th>details</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
const SVG = "http://www.w3.org/2000/svg";
// A small line chart of one minute, one point per second: all in blue, failed in red, on one scale.
function sparkline(all, failed) {
  const w = 120, h = 24, max = Math.max(1, ...all);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(w));
  svg.setAttribute("height", String(h));
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.setAttribute("role", "img");
  svg.dataset.points = all.join(",");
  svg.dataset.failed = failed.join(",");
  const title = document.createElementNS(SVG, "title");
  title.textContent = "peak " + Math.max(...all) + "/s, " + failed.reduce((a, b) => a + b, 0) + " failed in the last minute";
  svg.appendChild(title);
  for (const [series, cls] of [[all, "all"], [failed, "failed"]]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", cls);
    const step = w / Math.max(1, series.length - 1);
    line.setAttribute("points", series.map((v, i) => (i * step).toFixed(1) + "," + (h - 1 - (v / max) * (h - 2)).toFixed(1)).join(" "));
    svg.appendChild(line);
  }
  return svg;
}
const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " ms" : v.toFixed(0) + " ms");
const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%");
function fillTraffic(id, list, emptyText) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (list.length === 0) {
    const tr = document.createElement("tr");
    cell(tr, emptyText, "empty").colSpan = 6;
    body.appendChild(tr);
    return;
  }
  for (const t of list) {
    const tr = document.createElement("tr");
    cell(tr, t.key);
    cell(tr, t.rate.toFixed(1), "num");
    cell(tr, pct(t.success), "num " + (t.success === null ? "" : t.success >= 0.99 ? "ok" : t.success >= 0.9 ? "warn" : "bad"));
    cell(tr, ms(t.p50Ms), "num");
    cell(tr, ms(t.p99Ms), "num");
    cell(tr, "").appendChild(sparkline(t.perSecond, t.failedPerSecond));
    body.appendChild(tr);
  }
}
function fill(id, rows, columns, emptyText) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, emptyText, "empty");
    td.colSpan = columns;
    body.appendChild(tr);
    return;
  }
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of r) cell(tr, c[0], c[1]);
    body.appendChild(tr);
  }
}
const good = (v, want) => [v, v === want ? "ok" : "bad"];
function render(s) {
  document.getElementById("service").textContent = s.sidecar.service + " " + s.sidecar.version;
  document.getElementById("meta").textContent = "node " + s.sidecar.node + " at " + s.sidecar.address + " · registry " + s.sidecar.registry +
    " · broker " + s.sidecar.broker + " · transport " + s.sidecar.transport + " · up " + s.sidecar.uptimeSeconds + " s";
  const h = s.health;
  fill("health", [
    [["app"], good(h.app, "passing")],
    [["registered"], good(h.registered ? "yes" : "no", "yes")],
    [["registry"], good(h.registry, "connected")],
    [["broker"], good(h.broker, "connected")],
    [["draining"], [h.draining ? "yes" : "no", h.draining ? "warn" : "ok"]],
  ], 2, "");
  const nodes = [];
  for (const svc of s.services) {
    for (const n of svc.nodes) {
      const st = n.state;
      const state = st.ejected ? ["ejected until " + st.ejectedUntil, "bad"] : ["serving", "ok"];
      nodes.push([[svc.service], [n.id], [n.address], [n.version], state, [st.inFlight], [st.consecutiveFailures], [st.ejections]]);
    }
  }
  fill("services", nodes, 8, "no service called yet");
  const w = s.watching;
  document.getElementById("watching").textContent = w.scope === "all"
    ? "watching the whole registry (the local broker delivers to every subscribed node)"
    : "watching " + w.services.length + " service" + (w.services.length === 1 ? "" : "s") + ": each from its first call until unused for " + Math.round(w.idleWatchMs / 1000) + " s (registry.idleWatch)" +
      (w.services.some((x) => x.pinned) ? "; always: " + w.services.filter((x) => x.pinned).map((x) => x.service).join(", ") : "");
  fill("subscriptions", s.subscriptions.map((x) => [[x.name], [x.topic], [x.path],
    [x.state + (x.error ? ": " + x.error : ""), x.state === "active" ? "ok" : x.state === "paused" ? "warn" : "bad"],
    [x.delivered], [x.retried], [x.deadLettered], [x.dropped, x.dropped > 0 ? "bad" : ""], [x.inFlight]]), 9, "no subscriptions");
  fillTraffic("calls", s.traffic.calls, "no calls in the last minute");
  fillTraffic("deliveries", s.traffic.deliveries, "no deliveries in the last minute");
  fill("events", s.events.map((e) => {
    const { time, type, seq, ...rest } = e;
    const bad = type === "app-unhealthy" || type === "node-ejected" || (type === "subscription" && rest.state === "failed") || (type === "backend" && rest.status !== "connected");
    return [[time], [type, bad ? "bad" : ""], [JSON.stringify(rest)]];
  }), 3, "no events yet");
  fill("errors", s.recentErrors.map((e) => {
    const { time, level, message, ...rest } = e;
    return [[time], [level, level === "error" ? "bad" : "warn"], [message], [JSON.stringify(rest)]];
  }), 4, "no errors or warnings logged");
}
// With api.token, the token is asked for once and kept for this tab only (sessionStorage).
document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("sidecar-api-token", document.getElementById("token").value);
  refresh();
});
function authHeaders() {
  const headers = { accept: "application/json" };
  const token = sessionStorage.getItem("sidecar-api-token");
  if (token) headers.authorization = "Bearer " + token;
  return headers;
}
// GET /registry reads the whole registry: only when asked (the details opened, or "List again").
async function listRegistry() {
  try {
    const res = await fetch("registry", { headers: authHeaders() });
    if (!res.ok) throw new Error("GET /registry answered " + res.status);
    const r = await res.json();
    fill("registry", r.services.map((x) => [[x.service], [x.nodes.length], [[...new Set(x.nodes.map((n) => n.version))].join(" ")], [x.nodes.map((n) => n.address).join(" ")]]), 4, "the registry is empty");
    document.getElementById("listed").textContent = "listed at " + new Date().toLocaleTimeString() + (r.truncated ? " (the first " + r.truncated.listed + " of " + r.truncated.nodes + " nodes)" : "");
  } catch (err) {
    document.getElementById("listed").textContent = "cannot list the registry: " + err.message;
  }
}
document.getElementById("listing").addEventListener("toggle", (e) => { if (e.target.open) listRegistry(); });
document.getElementById("relist").addEventListener("click", listRegistry);
async function refresh() {
  try {
    const headers = authHeaders();
    const token = headers.authorization;
    const res = await fetch("status", { headers });
    document.getElementById("login").hidden = res.status !== 401;
    if (res.status === 401) {
      document.getElementById("error").textContent = token ? "the token was refused" : "";
      return;
    }
    if (!res.ok) throw new Error("GET /status answered " + res.status);
    render(await res.json());
    document.getElementById("error").textContent = "";
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    document.getElementById("error").textContent = "cannot read the sidecar's status: " + err.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
