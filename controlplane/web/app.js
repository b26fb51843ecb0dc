// Switchboard dashboard: plain JavaScript, no build step, nothing loaded
// from outside. Every page reads the control plane's JSON API (/api/...)
// and redraws itself on a timer while it is shown.
"use strict";

const main = document.getElementById("main");
const statusEl = document.getElementById("status");
let timer = null;     // the current page's refresh timer
let pageToken = 0;    // bumps on every navigation, so stale fetches are dropped

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class APIError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ("HTTP " + status));
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.details = body && body.error && body.error.details;
    this.body = body;
  }
}

async function api(path, opts) {
  const rsp = await fetch(path, opts);
  let body = null;
  try { body = await rsp.json(); } catch (e) { /* not JSON */ }
  if (!rsp.ok) throw new APIError(rsp.status, body);
  statusEl.textContent = "updated " + new Date().toLocaleTimeString();
  return body;
}

function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (digits === undefined) digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
  return Number(n).toFixed(digits);
}

function ago(t) {
  const d = (Date.now() - new Date(t).getTime()) / 1000;
  if (d < 60) return Math.max(0, Math.round(d)) + "s ago";
  if (d < 3600) return Math.round(d / 60) + "m ago";
  return Math.round(d / 3600) + "h ago";
}

function uptime(sec) {
  if (sec < 60) return Math.round(sec) + "s";
  if (sec < 3600) return Math.round(sec / 60) + "m";
  return (sec / 3600).toFixed(1) + "h";
}

function healthDot(hs) {
  hs = hs || "unknown";
  return h("span", { class: "dot h-" + hs, title: hs });
}

function healthColor(hs) {
  return { healthy: "#1f9d55", degraded: "#d98e04", unhealthy: "#d64545" }[hs] || "#98a2b3";
}

function banner(kind, text) { return h("div", { class: "banner " + kind }, text); }

function every(ms, fn) {
  const token = pageToken;
  const run = async () => {
    if (token !== pageToken) return;
    try { await fn(); } catch (e) { console.error(e); }
    if (token === pageToken) timer = setTimeout(run, ms);
  };
  run();
}

function setPage(nav, ...children) {
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.dataset.nav === nav));
  main.replaceChildren(...children);
}

// ---------- router ----------

const routes = [
  [/^#?\/?$/, pageServices],
  [/^#\/service\/([^/]+)$/, pageService],
  [/^#\/graph$/, pageGraph],
  [/^#\/events(?:\/(.+))?$/, pageEvents],
  [/^#\/deadletters$/, pageDeadLetterPlaces],
  [/^#\/deadletters\/([^/]+)\/([^/]+)$/, pageDeadLetters],
  [/^#\/deadletters\/([^/]+)\/([^/]+)\/([^/]+)$/, pageDeadLetter],
  [/^#\/call(?:\/([^/]+)\/([^/]+))?$/, pageCall],
  [/^#\/traces$/, pageTraces],
  [/^#\/trace\/([0-9a-f]+)$/, pageTrace],
];

function route() {
  pageToken++;
  clearTimeout(timer);
  const hash = location.hash || "#/";
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) { page(...m.slice(1).map(x => x && decodeURIComponent(x))); return; }
  }
  setPage("", banner("error", "No such page: " + hash));
}
window.addEventListener("hashchange", route);

// ---------- service catalogue ----------

function pageServices() {
  const body = h("tbody", {});
  const table = h("table", { id: "services" },
    h("thead", {}, h("tr", {}, h("th", {}, "Service"), h("th", {}, "Health"), h("th", {}, "Versions"),
      h("th", { class: "num" }, "Instances"), h("th", { class: "num" }, "Requests/s"), h("th", { class: "num" }, "Errors/s"),
      h("th", { class: "num" }, "Requests"), h("th", {}, "Endpoints"))),
    body);
  const note = h("div", {});
  setPage("services", h("h1", {}, "Services"), note, table);
  every(2000, async () => {
    const data = await api("/api/services");
    note.replaceChildren(data.services.length ? "" : banner("warn", "No service has announced itself yet."));
    body.replaceChildren(...data.services.map(sv => h("tr", { class: "clickable", "data-service": sv.name, onclick: () => location.hash = "#/service/" + encodeURIComponent(sv.name) },
      h("td", {}, h("a", { href: "#/service/" + encodeURIComponent(sv.name) }, sv.name),
        sv.description ? h("div", { class: "muted" }, sv.description) : null,
        sv.faults ? h("span", { class: "badge fault" }, "fault injected") : null),
      h("td", { class: "health", "data-health": sv.health }, healthDot(sv.health), sv.health),
      h("td", {}, sv.versions.map(v => h("span", { class: "badge" }, v))),
      h("td", { class: "num" }, sv.instances),
      h("td", { class: "num" }, fmt(sv.requests_per_s)),
      h("td", { class: "num" }, fmt(sv.errors_per_s)),
      h("td", { class: "num" }, sv.requests),
      h("td", {}, sv.endpoints.map(e => h("span", { class: "badge" }, e))))));
  });
}

// ---------- charts ----------

// lineChart draws series ([{name, color, values: [number|null]}]) over
// times as an SVG line chart with a y axis from 0.
function lineChart(times, series, unit) {
  const W = 400, H = 150, L = 40, R = 8, T = 10, B = 18;
  let maxV = 0;
  for (const se of series) for (const v of se.values) if (v !== null && v > maxV) maxV = v;
  if (maxV <= 0) maxV = 1;
  maxV = niceMax(maxV);
  const n = Math.max(times.length, 2);
  const x = i => L + (W - L - R) * (i / (n - 1));
  const y = v => T + (H - T - B) * (1 - v / maxV);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "linechart" });
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(maxV * f), y2: y(maxV * f), stroke: "#e3e7ee" }));
    svg.append(s("text", { x: L - 4, y: y(maxV * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#667085" }, fmt(maxV * f) + (f === 1 ? unit : "")));
  }
  if (times.length) {
    svg.append(s("text", { x: L, y: H - 4, "font-size": 10, fill: "#667085" }, new Date(times[0]).toLocaleTimeString()));
    svg.append(s("text", { x: W - R, y: H - 4, "font-size": 10, fill: "#667085", "text-anchor": "end" }, new Date(times[times.length - 1]).toLocaleTimeString()));
  }
  let points = 0;
  for (const se of series) {
    let d = "", pen = false;
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
      points++;
      if (se.values.length < 40) svg.append(s("circle", { cx: x(i), cy: y(v), r: 1.8, fill: se.color, class: "point" }));
    });
    if (d) svg.append(s("path", { d, fill: "none", stroke: se.color, "stroke-width": 1.6, "vector-effect": "non-scaling-stroke", class: "series", "data-series": se.name }));
  }
  svg.dataset.points = points;
  return svg;
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function chartBox(title, current, svg, legend) {
  return h("div", { class: "chart" }, h("div", { class: "title" }, h("span", {}, title), h("b", {}, current)), svg,
    legend ? h("div", { class: "legend" }, legend) : null);
}

// ---------- one service ----------

function pageService(name) {
  const head = h("div", {});
  const instances = h("div", {});
  const endpoints = h("div", { class: "cards", id: "endpoints" });
  const topics = h("div", {});
  setPage("services", h("h1", {}, "Service ", h("span", { id: "service-name" }, name)), head, h("h2", {}, "Endpoints"), endpoints,
    h("h2", {}, "Instances"), instances, topics);
  every(2000, async () => {
    let d = null, gone = null;
    try { d = await api("/api/services/" + encodeURIComponent(name)); } catch (e) {
      if (e.status !== 404) throw e;
      gone = e;
    }
    if (gone) {
      head.replaceChildren(banner("error", gone.message + ". The graphs below are the history the control plane kept."));
      head.firstChild.id = "gone";
      instances.replaceChildren(h("p", { class: "muted" }, "No instance is running."));
      const st = await api("/api/stats?points=60&service=" + encodeURIComponent(name));
      drawEndpoints(endpoints, name, st.endpoints, []);
      return;
    }
    head.replaceChildren(h("div", { class: "kv" },
      h("span", { class: "muted" }, "Health"), h("span", { id: "service-health" }, healthDot(d.health), d.health),
      h("span", { class: "muted" }, "Description"), h("span", {}, d.description || "–"),
      h("span", { class: "muted" }, "Versions"), h("span", {}, d.versions.map(v => h("span", { class: "badge" }, v))),
      h("span", { class: "muted" }, "Rate (1m)"), h("span", {}, fmt(d.requests_per_s) + " requests/s, " + fmt(d.errors_per_s) + " errors/s")));
    drawEndpoints(endpoints, name, d.stats, d.endpoint_info);
    instances.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, ["ID", "Version", "Host", "PID", "Uptime", "Health", "Checks"].map(t => h("th", {}, t)))),
      h("tbody", {}, d.instance_list.map(i => h("tr", {},
        h("td", {}, h("code", {}, i.id)), h("td", {}, i.version), h("td", {}, i.host), h("td", {}, i.pid),
        h("td", {}, uptime(i.uptime_seconds)), h("td", {}, healthDot(i.health), i.health),
        h("td", {}, (i.checks || []).map(c => h("div", {}, healthDot(c.status), h("b", {}, c.name), " ", h("span", { class: "muted" }, c.message))),
          (i.faults || []).map(f => h("div", {}, h("span", { class: "badge fault" }, "fault on " + (f.endpoint || f.topic))))))))));
    topics.replaceChildren(
      d.publishes.length ? h("div", {}, h("h2", {}, "Publishes"), d.publishes.map(t => h("a", { class: "badge", href: "#/events/" + encodeURIComponent(t.topic) }, t.topic))) : "",
      d.subscribes.length ? h("div", {}, h("h2", {}, "Consumes"), d.subscribes.map(t => h("a", { class: "badge", href: "#/events/" + encodeURIComponent(t.topic) }, t.topic + " (group " + t.group + ")"))) : "");
  });
}

function drawEndpoints(box, service, stats, infos) {
  const byName = {};
  for (const st of stats) byName[st.endpoint] = st;
  const names = [...new Set([...infos.map(i => i.name), ...stats.map(st => st.endpoint)])].sort();
  box.replaceChildren(...names.map(n => {
    const st = byName[n];
    const info = infos.find(i => i.name === n);
    const card = h("div", { class: "card endpoint", "data-endpoint": n },
      h("h3", {}, n, " ", h("a", { href: "#/call/" + encodeURIComponent(service) + "/" + encodeURIComponent(n), class: "muted" }, "call ›")),
      info && info.description ? h("div", { class: "muted" }, info.description) : null);
    if (!st || !st.points.length) {
      card.append(h("p", { class: "muted" }, "No traffic seen yet."));
      return card;
    }
    const times = st.points.map(p => p.t);
    const lat = st.latency_1m;
    card.append(h("div", { class: "row muted" },
      `rate ${fmt(st.request_rate["1m"])} / ${fmt(st.request_rate["5m"])} / ${fmt(st.request_rate["15m"])} req/s (1m/5m/15m) · errors ${fmt(st.error_rate["1m"])}/s`),
      h("div", { class: "charts" },
        chartBox("requests/s", fmt(st.request_rate["1m"]), lineChart(times, [{ name: "requests", color: "#2f5fd0", values: st.points.map(p => p.requests_per_s) }], "")),
        chartBox("errors/s", fmt(st.error_rate["1m"]), lineChart(times, [{ name: "errors", color: "#d64545", values: st.points.map(p => p.errors_per_s) }], "")),
        chartBox("latency ms", lat.p99_ms !== null ? "p99 " + fmt(lat.p99_ms) : (lat.mean_ms !== null ? "mean " + fmt(lat.mean_ms) : "–"),
          lineChart(times, [
            { name: "p50", color: "#1f9d55", values: st.points.map(p => p.p50_ms) },
            { name: "p99", color: "#d98e04", values: st.points.map(p => p.p99_ms) },
            { name: "mean", color: "#98a2b3", values: st.points.map(p => p.p50_ms === null ? p.mean_ms : null) }], ""),
          [h("span", { style: "color:#1f9d55" }, "■ p50 "), h("span", { style: "color:#d98e04" }, "■ p99 "),
            lat.p50_ms === null && lat.mean_ms !== null ? h("span", { class: "muted" }, "(mean only: the service reports no latency histogram)") : null])));
    if (st.callers.length) {
      card.append(h("div", { class: "muted" }, "callers (1m): ", st.callers.map(c => h("span", { class: "badge" }, `${c.caller} ${fmt(c.requests_per_s)}/s`))));
    }
    return card;
  }));
  if (!names.length) box.replaceChildren(h("p", { class: "muted" }, "This service has no endpoints."));
}

// ---------- service graph ----------

function pageGraph() {
  const box = h("div", { id: "graph" });
  setPage("graph", h("h1", {}, "Service graph"),
    h("div", { class: "legend" }, "Nodes are services (coloured by health) and outside callers (grey, square). ",
      "Solid edges are calls over the last minute, as wide as their traffic and red when they fail; dashed edges are events."), box);
  every(2000, async () => {
    const g = await api("/api/graph");
    box.replaceChildren(drawGraph(g));
  });
}

const NODE_H = 40;

// boxExit is how far from a node's centre an edge leaves its box, going in
// direction (dx, dy).
function boxExit(p, dx, dy) {
  const len = Math.hypot(dx, dy) || 1;
  const ux = Math.abs(dx / len), uy = Math.abs(dy / len);
  const tx = ux > 0 ? (p.w / 2) / ux : Infinity, ty = uy > 0 ? (NODE_H / 2) / uy : Infinity;
  return Math.min(tx, ty);
}

function drawGraph(g) {
  // Layers: a node's layer is one more than its deepest caller's, so
  // traffic flows left to right; clients start at 0.
  const layer = {};
  for (const n of g.nodes) layer[n.id] = 0;
  for (let iter = 0; iter < g.nodes.length; iter++) {
    let changed = false;
    for (const e of g.edges) {
      if (e.from === e.to) continue;
      if (layer[e.to] < layer[e.from] + 1 && layer[e.from] + 1 < g.nodes.length) { layer[e.to] = layer[e.from] + 1; changed = true; }
    }
    if (!changed) break;
  }
  const cols = {};
  for (const n of g.nodes) (cols[layer[n.id]] = cols[layer[n.id]] || []).push(n);
  const ncols = Math.max(...Object.keys(cols).map(Number), 0) + 1;
  const maxRows = Math.max(...Object.values(cols).map(c => c.length), 1);
  const W = Math.max(900, ncols * 220), H = Math.max(320, maxRows * 110 + 40);
  const pos = {};
  for (const [c, nodes] of Object.entries(cols)) {
    nodes.sort((a, b) => a.id.localeCompare(b.id));
    nodes.forEach((n, i) => { pos[n.id] = { x: 90 + Number(c) * ((W - 180) / Math.max(ncols - 1, 1)), y: (H / (nodes.length + 1)) * (i + 1), w: Math.max(96, n.id.length * 8.5 + 24) }; });
  }
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, height: H, id: "graph-svg" });
  const defs = s("defs", {});
  for (const [id, color] of [["arrow", "#7b8794"], ["arrow-red", "#d64545"], ["arrow-event", "#8e6bbf"]]) {
    defs.append(s("marker", { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 11, markerHeight: 11, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", fill: color })));
  }
  svg.append(defs);
  const maxRate = Math.max(...g.edges.map(e => e.requests_per_s || 0), 0.001);
  const pairs = {};
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const key = [e.from, e.to].sort().join("|");
    const k = pairs[key] = (pairs[key] || 0) + 1;
    const bend = (k - 1) * 28 * (e.from < e.to ? 1 : -1) + (e.kind === "event" ? 30 : 0);
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const ra = boxExit(a, dx, dy), rb = boxExit(b, -dx, -dy);
    const ax = a.x + dx / len * ra, ay = a.y + dy / len * ra, bx = b.x - dx / len * (rb + 2), by = b.y - dy / len * (rb + 2);
    const mx = (ax + bx) / 2 - dy / len * bend, my = (ay + by) / 2 + dx / len * bend;
    const failing = e.requests_1m > 0 && e.errors_1m / e.requests_1m > 0.05;
    let color = e.kind === "event" ? "#8e6bbf" : failing ? "#d64545" : (e.health === "degraded" ? "#d98e04" : e.health === "unhealthy" ? "#d64545" : "#7b8794");
    const width = e.kind === "event" ? 1.5 : 1.5 + 8 * Math.sqrt((e.requests_per_s || 0) / maxRate);
    const marker = e.kind === "event" ? "arrow-event" : (color === "#d64545" ? "arrow-red" : "arrow");
    const path = s("path", { d: `M${ax},${ay} Q${mx},${my} ${bx},${by}`, fill: "none", stroke: color, "stroke-width": width.toFixed(1),
      "stroke-dasharray": e.kind === "event" ? "6 4" : null, "marker-end": `url(#${marker})`, class: "edge edge-" + e.kind,
      "data-from": e.from, "data-to": e.to, "data-rate": e.requests_per_s },
      s("title", {}, e.kind === "call" ? `${e.from} → ${e.to}: ${fmt(e.requests_per_s)} req/s, ${e.errors_1m} errors in the last minute (${e.endpoints.join(", ")})` : `${e.from} → ${e.to}: topic ${e.topic}`));
    svg.append(path);
    const label = e.kind === "call" ? fmt(e.requests_per_s) + "/s" : e.topic;
    svg.append(s("text", { x: (ax + 2 * mx + bx) / 4, y: (ay + 2 * my + by) / 4 + 4, "font-size": 11, "text-anchor": "middle", fill: color,
      stroke: "#fff", "stroke-width": 4, "paint-order": "stroke", class: "edge-label" }, label));
  }
  for (const n of g.nodes) {
    const p = pos[n.id];
    const grp = s("g", { class: "node node-" + n.kind, "data-id": n.id, "data-health": n.health, style: n.kind === "service" ? "cursor:pointer" : null });
    const w = p.w, hh = NODE_H;
    if (n.kind === "service") {
      grp.append(s("rect", { x: p.x - w / 2, y: p.y - hh / 2, width: w, height: hh, rx: hh / 2, fill: n.running ? healthColor(n.health) : "#fff",
        stroke: n.running ? "#1d2330" : "#98a2b3", "stroke-width": 1.5, "stroke-dasharray": n.running ? null : "4 3" }));
      grp.addEventListener("click", () => location.hash = "#/service/" + encodeURIComponent(n.id));
    } else {
      grp.append(s("rect", { x: p.x - w / 2, y: p.y - hh / 2, width: w, height: hh, rx: 4, fill: "#e4e7ec", stroke: "#98a2b3" }));
    }
    grp.append(s("text", { x: p.x, y: p.y - 1, "text-anchor": "middle", "font-size": 13, "font-weight": 600, fill: n.kind === "service" && n.running ? "#fff" : "#1d2330" }, n.id));
    grp.append(s("text", { x: p.x, y: p.y + 13, "text-anchor": "middle", "font-size": 10, fill: n.kind === "service" && n.running ? "#fff" : "#667085" },
      n.kind !== "service" ? "caller" : n.running ? `${n.instances} inst · ${fmt(n.requests_per_s)} req/s` : "not running"));
    grp.append(s("title", {}, `${n.id}: ${n.kind}${n.kind === "service" ? ", " + n.health : ""}`));
    svg.append(grp);
  }
  if (!g.nodes.length) svg.append(s("text", { x: 20, y: 30, fill: "#667085" }, "No services yet."));
  return svg;
}

// ---------- events ----------

function pageEvents(topic) {
  const list = h("div", { class: "list", id: "topics" });
  const tail = h("div", { id: "tail" });
  const title = h("h2", {}, topic ? "Latest on " + topic : "Latest on every topic");
  setPage("events", h("h1", {}, "Events"), h("div", { class: "split" }, h("div", {}, h("h2", {}, "Topics"), list), h("div", {}, title, tail)));
  let since = 0;
  const shown = [];
  every(1000, async () => {
    const ts = await api("/api/topics");
    list.replaceChildren(h("a", { href: "#/events", class: topic ? "" : "active" }, "all topics"),
      ...ts.topics.map(t => h("a", { href: "#/events/" + encodeURIComponent(t.topic), class: t.topic === topic ? "active" : "", "data-topic": t.topic },
        t.topic, " ", h("span", { class: "muted" }, `(${t.seen})`))));
    const q = new URLSearchParams({ limit: shown.length ? "50" : "20" });
    if (topic) q.set("topic", topic);
    if (since) q.set("since", String(since));
    const evs = (await api("/api/events?" + q)).events;
    if (!evs.length && !shown.length) { tail.replaceChildren(h("p", { class: "muted" }, "Waiting for events…")); return; }
    if (!shown.length) tail.replaceChildren();
    for (const ev of evs.slice().reverse()) {
      since = Math.max(since, ev.seq);
      const el = h("div", { class: "event" + (shown.length ? " new" : ""), "data-topic": ev.topic, "data-id": ev.id },
        h("div", { class: "meta" }, h("b", {}, ev.topic), " · ", ev.id || "(no id)", " · from ", ev.source || "?", ev.subject ? " · about " + ev.subject : "",
          " · ", new Date(ev.time || ev.received).toLocaleTimeString(), ev.proto_type ? " · " + ev.proto_type : ""),
        h("pre", { class: "compact" }, ev.data !== undefined ? JSON.stringify(ev.data) : `(${ev.size} bytes of ${ev.datacontenttype || "data"})`),
        ev.headers ? h("div", { class: "meta" }, Object.entries(ev.headers).map(([k, v]) => h("span", { class: "badge" }, k + ": " + v))) : null);
      tail.prepend(el);
      shown.push(el);
      if (shown.length > 200) shown.shift().remove();
    }
  });
}

// ---------- dead letters ----------

function pageDeadLetterPlaces() {
  const box = h("div", {});
  const note = h("div", {});
  const group = h("input", { id: "dlq-group", placeholder: "group", size: 16 });
  const topic = h("input", { id: "dlq-topic", placeholder: "topic", size: 24 });
  const go = h("button", { class: "secondary", onclick: () => {
    if (group.value.trim() && topic.value.trim()) location.hash = `#/deadletters/${encodeURIComponent(group.value.trim())}/${encodeURIComponent(topic.value.trim())}`;
  } }, "Open");
  setPage("deadletters", h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Events a consumer group gave up on after its handler failed them, by group and topic."),
    h("div", { class: "row" }, "Open a place:", group, topic, go), note, box);
  every(3000, async () => {
    let d;
    try { d = await api("/api/deadletters"); } catch (e) {
      box.replaceChildren(banner("warn", e.message));
      return;
    }
    note.replaceChildren(d.source === "discovery" ? h("p", { class: "muted" }, "This broker cannot list its dead-letter places: these are the consumer groups that running services announce.") : "");
    if (!d.places.length) { box.replaceChildren(banner("ok", "No dead letters. Nothing has failed for good.")); return; }
    box.replaceChildren(h("table", { id: "dlq-places" },
      h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Topic"), h("th", { class: "num" }, "Dead letters"))),
      h("tbody", {}, d.places.map(p => h("tr", { class: "clickable", onclick: () => location.hash = `#/deadletters/${encodeURIComponent(p.group)}/${encodeURIComponent(p.topic)}` },
        h("td", {}, h("a", { href: `#/deadletters/${encodeURIComponent(p.group)}/${encodeURIComponent(p.topic)}` }, p.group)), h("td", {}, p.topic), h("td", { class: "num" }, p.count))))));
  });
}

function pageDeadLetters(group, topic) {
  const box = h("div", {});
  const msg = h("div", {});
  setPage("deadletters", h("h1", {}, "Dead letters of ", group, " on ", topic), h("p", {}, h("a", { href: "#/deadletters" }, "‹ all places")), msg, box);
  const load = async () => {
    const d = await api(`/api/deadletters/${encodeURIComponent(group)}/${encodeURIComponent(topic)}`);
    if (!d.dead_letters.length) { box.replaceChildren(banner("ok", "None left here.")); return; }
    box.replaceChildren(h("table", { id: "dlq-list" },
      h("thead", {}, h("tr", {}, ["ID", "Dead at", "Attempts", "Replayed", "Event", "Reason", ""].map(t => h("th", {}, t)))),
      h("tbody", {}, d.dead_letters.map(dl => h("tr", { "data-id": dl.id },
        h("td", {}, h("a", { href: `#/deadletters/${encodeURIComponent(group)}/${encodeURIComponent(topic)}/${encodeURIComponent(dl.id)}` }, dl.id)),
        h("td", {}, dl.dead_time ? new Date(dl.dead_time).toLocaleString() : "–"), h("td", {}, dl.attempts), h("td", {}, dl.replayed || 0),
        h("td", {}, dl.event_id || ""), h("td", { class: "reason" }, dl.reason),
        h("td", {}, h("button", { class: "secondary replay", onclick: () => replay(group, topic, dl.id, msg, load) }, "Replay")))))));
  };
  every(3000, load);
}

async function replay(group, topic, id, msg, after) {
  try {
    const r = await api(`/api/deadletters/${encodeURIComponent(group)}/${encodeURIComponent(topic)}/${encodeURIComponent(id)}/replay`, { method: "POST" });
    msg.replaceChildren(banner("ok", `Replayed ${r.replayed.join(", ") || "nothing"} to ${topic} for group ${group}.`));
    msg.firstChild.id = "replay-result";
  } catch (e) {
    msg.replaceChildren(banner("error", "Replay failed: " + e.message));
    msg.firstChild.id = "replay-result";
  }
  if (after) await after();
}

function pageDeadLetter(group, topic, id) {
  const box = h("div", {});
  const msg = h("div", {});
  setPage("deadletters", h("h1", {}, "Dead letter ", id), h("p", {}, h("a", { href: `#/deadletters/${encodeURIComponent(group)}/${encodeURIComponent(topic)}` }, "‹ " + group + " on " + topic)), msg, box);
  (async () => {
    let d;
    try { d = await api(`/api/deadletters/${encodeURIComponent(group)}/${encodeURIComponent(topic)}/${encodeURIComponent(id)}`); } catch (e) {
      box.replaceChildren(banner("error", e.message));
      return;
    }
    const ev = d.event || {};
    box.replaceChildren(h("div", { class: "kv", id: "dlq-detail" },
      h("span", { class: "muted" }, "Reason"), h("span", { class: "reason" }, d.reason),
      h("span", { class: "muted" }, "Attempts"), h("span", {}, d.attempts),
      h("span", { class: "muted" }, "Dead at"), h("span", {}, d.dead_time || "–"),
      h("span", { class: "muted" }, "Event"), h("span", {}, (d.event_type || "") + " " + (d.event_id || "")),
      h("span", { class: "muted" }, "Headers"), h("span", {}, Object.entries(ev.headers || {}).map(([k, v]) => h("div", {}, h("code", {}, k), ": ", v)))),
      h("h2", {}, "Body"), h("pre", {}, ev.data !== undefined ? JSON.stringify(ev.data, null, 2) : `(${ev.size} bytes of ${ev.datacontenttype || "data"})`),
      h("button", { class: "replay", onclick: () => replay(group, topic, id, msg) }, "Replay to " + topic));
  })();
}

// ---------- call form ----------

function exampleOf(schema, root, depth) {
  root = root || schema;
  depth = depth || 0;
  if (!schema || depth > 8) return null;
  if (schema.$ref) {
    const m = schema.$ref.match(/^#\/(\$defs|definitions)\/(.+)$/);
    const def = m && root[m[1]] && root[m[1]][m[2].replace(/~1/g, "/").replace(/~0/g, "~")];
    return def ? exampleOf(def, root, depth + 1) : {};
  }
  if (schema.examples && schema.examples.length) return schema.examples[0];
  if (schema.default !== undefined) return schema.default;
  if (schema.const !== undefined) return schema.const;
  if (schema.enum && schema.enum.length) return schema.enum[0];
  for (const k of ["oneOf", "anyOf", "allOf"]) {
    if (schema[k] && schema[k].length) {
      const first = schema[k].find(x => x.type !== "null") || schema[k][0];
      return exampleOf(first, root, depth + 1);
    }
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find(t => t !== "null") || type[0];
  if (!type && schema.properties) type = "object";
  switch (type) {
    case "object": {
      const out = {};
      for (const [k, v] of Object.entries(schema.properties || {})) out[k] = exampleOf(v, root, depth + 1);
      return out;
    }
    case "array": return schema.items ? [exampleOf(schema.items, root, depth + 1)] : [];
    case "string":
      if (schema.format === "date-time") return new Date().toISOString();
      if (schema.format === "duration") return "1s";
      return "";
    case "integer": return schema.minimum !== undefined ? schema.minimum : 0;
    case "number": return schema.minimum !== undefined ? schema.minimum : 0;
    case "boolean": return false;
  }
  return {};
}

function pageCall(service, endpoint) {
  const svcSel = h("select", { id: "call-service" });
  const epSel = h("select", { id: "call-endpoint" });
  const body = h("textarea", { id: "call-body", spellcheck: "false" });
  const timeout = h("input", { id: "call-timeout", value: "10s", size: 6 });
  const out = h("div", { id: "call-result" });
  const schemaBox = h("details", {}, h("summary", { class: "muted" }, "request schema"), h("pre", { id: "call-schema" }, ""));
  const btn = h("button", { id: "call-send" }, "Call");
  setPage("call", h("h1", {}, "Call an endpoint"),
    h("div", { class: "row" }, "Service", svcSel, "Endpoint", epSel, "Timeout", timeout, btn),
    h("p", { class: "muted" }, "The body is prefilled from the endpoint's request schema; edit it and call. Calls come from caller \"dashboard\"."),
    body, schemaBox, h("h2", {}, "Reply"), out);
  let detail = null;
  const fill = () => {
    const info = detail && detail.endpoint_info.find(e => e.name === epSel.value);
    const schema = info && info.request_schema;
    body.value = JSON.stringify(schema ? exampleOf(schema) : {}, null, 2);
    schemaBox.querySelector("pre").textContent = schema ? JSON.stringify(schema, null, 2) : "(no schema)";
    history.replaceState(null, "", "#/call/" + encodeURIComponent(svcSel.value) + "/" + encodeURIComponent(epSel.value));
  };
  const loadService = async (want) => {
    detail = await api("/api/services/" + encodeURIComponent(svcSel.value));
    epSel.replaceChildren(...detail.endpoint_info.map(e => h("option", { value: e.name, selected: e.name === want }, e.name)));
    fill();
  };
  svcSel.addEventListener("change", () => loadService());
  epSel.addEventListener("change", fill);
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    out.replaceChildren(h("p", { class: "muted" }, "calling…"));
    try {
      const r = await api(`/api/call/${encodeURIComponent(svcSel.value)}/${encodeURIComponent(epSel.value)}?timeout=${encodeURIComponent(timeout.value)}`,
        { method: "POST", headers: { "Content-Type": "application/json" }, body: body.value });
      out.replaceChildren(banner("ok", `${r.service}.${r.endpoint} answered in ${fmt(r.duration_ms)} ms (instance ${r.instance})`),
        h("pre", { id: "call-reply" }, JSON.stringify(r.reply, null, 2)));
    } catch (e) {
      out.replaceChildren(banner("error", (e.code ? e.code + ": " : "") + e.message),
        h("pre", { id: "call-error" }, JSON.stringify(e.body, null, 2)));
    }
    btn.disabled = false;
  });
  (async () => {
    const data = await api("/api/services");
    const names = data.services.filter(x => x.endpoints.length).map(x => x.name);
    svcSel.replaceChildren(...names.map(n => h("option", { value: n, selected: n === service }, n)));
    if (names.length) await loadService(endpoint);
  })();
}

// ---------- traces ----------

function pageTraces() {
  const box = h("div", {});
  const filter = h("input", { id: "trace-endpoint", placeholder: "service.endpoint, e.g. trips.request_trip", size: 40 });
  setPage("traces", h("h1", {}, "Traces"), h("div", { class: "row" }, "Through", filter), box);
  let gen = 0;
  const load = async () => {
    const mine = ++gen;
    const q = new URLSearchParams({ limit: "30" });
    if (filter.value.trim()) q.set("endpoint", filter.value.trim());
    let d;
    try { d = await api("/api/traces?" + q); } catch (e) {
      if (mine === gen) box.replaceChildren(banner(e.status === 503 ? "warn" : "error", e.message));
      return;
    }
    if (mine !== gen) return; // a newer filter is on its way
    if (!d.traces || !d.traces.length) { box.replaceChildren(h("p", { class: "muted" }, "No traces yet.")); return; }
    box.replaceChildren(h("table", { id: "trace-list" },
      h("thead", {}, h("tr", {}, ["Trace", "Root", "Start", "Duration ms", "Spans", "Services", "Errors"].map(t => h("th", {}, t)))),
      h("tbody", {}, d.traces.map(t => h("tr", { class: "clickable", "data-root": t.root, onclick: () => location.hash = "#/trace/" + t.trace_id },
        h("td", {}, h("a", { href: "#/trace/" + t.trace_id }, h("code", {}, t.trace_id.slice(0, 12) + "…"))),
        h("td", {}, t.root), h("td", {}, new Date(t.start).toLocaleTimeString()), h("td", { class: "num" }, fmt(t.duration_ns / 1e6)),
        h("td", { class: "num" }, t.spans), h("td", {}, (t.services || []).join(", ")), h("td", { class: "num" }, t.errors || 0))))));
  };
  filter.addEventListener("input", () => load().catch(console.error));
  every(3000, load);
}

function pageTrace(id) {
  const box = h("div", { class: "seq" });
  setPage("traces", h("h1", {}, "Trace ", h("code", {}, id)), h("p", {}, h("a", { href: "#/traces" }, "‹ all traces")), box);
  (async () => {
    let t;
    try { t = await api("/api/traces/" + id); } catch (e) {
      box.replaceChildren(banner("error", e.message));
      return;
    }
    box.replaceChildren(h("p", { class: "muted" }, "Time runs down, one row per start or end of a span (elapsed time on the left). Calls one span makes at the same time (in parallel) overlap inside a shaded band marked ‖; calls made one after the other follow each other down."),
      sequenceDiagram(t.spans || []));
  })();
}

// sequenceDiagram draws a trace's spans: a lifeline per service, an arrow
// per call (client span → the server it reached) and per event, and an
// activation bar per server or consumer span, with time running down.
function sequenceDiagram(spans) {
  if (!spans.length) return h("p", { class: "muted" }, "The trace has no spans.");
  const t0 = Math.min(...spans.map(sp => sp.start_ns));
  const services = [];
  const target = sp => sp.attrs && (sp.attrs["rpc.service"] || null);
  for (const sp of spans) {
    for (const name of [sp.service, sp.kind === "client" ? target(sp) : null]) {
      if (name && !services.includes(name)) services.push(name);
    }
  }
  // Time runs down, compressed: every start and end of a span gets its own
  // row, in order, so that fast calls do not pile up and slow ones do not
  // stretch the page, while calls that overlap in time still overlap.
  const times = [...new Set(spans.flatMap(sp => [sp.start_ns, sp.start_ns + sp.duration_ns]))].sort((a, b) => a - b);
  const rowH = 24, top = 54, L = 80, colW = 170;
  const H = top + rowH * times.length + 20;
  const W = L + services.length * colW;
  const y = ns => {
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= ns) lo = mid; else hi = mid - 1; }
    const next = times[Math.min(lo + 1, times.length - 1)];
    const frac = next > times[lo] ? (ns - times[lo]) / (next - times[lo]) : 0;
    return top + rowH * (lo + Math.min(Math.max(frac, 0), 1));
  };
  const x = name => L + services.indexOf(name) * colW + colW / 2;
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "sequence" });
  svg.append(s("defs", {}, s("marker", { id: "seq-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#1d2330" }))));
  for (const name of services) {
    svg.append(s("rect", { x: x(name) - 60, y: 8, width: 120, height: 26, rx: 4, fill: "#141a29" }));
    svg.append(s("text", { x: x(name), y: 25, "text-anchor": "middle", fill: "#fff", "font-size": 12 }, name));
    svg.append(s("line", { x1: x(name), x2: x(name), y1: 34, y2: H - 10, stroke: "#c5cbd6", "stroke-dasharray": "4 4" }));
  }
  times.forEach((ns, i) => {
    if (i % 2 === 0 || i === times.length - 1) {
      svg.append(s("text", { x: 8, y: y(ns) + 4, "font-size": 10, fill: "#667085" }, "+" + fmt((ns - t0) / 1e6) + " ms"));
    }
  });
  // Parallel groups: client spans of one parent whose times overlap.
  const byParent = {};
  for (const sp of spans) if (sp.kind === "client" || sp.kind === "producer") (byParent[sp.parent_id || ""] = byParent[sp.parent_id || ""] || []).push(sp);
  const lane = {};
  let parallelGroups = 0;
  for (const kids of Object.values(byParent)) {
    kids.sort((a, b) => a.start_ns - b.start_ns);
    let group = [], end = -Infinity;
    const flush = () => {
      if (group.length > 1) {
        parallelGroups++;
        const gs = Math.min(...group.map(k => k.start_ns)), ge = Math.max(...group.map(k => k.start_ns + k.duration_ns));
        const from = group[0].service;
        svg.append(s("rect", { x: x(from) - 20, y: y(gs) - 3, width: W - x(from) + 10, height: Math.max(y(ge) - y(gs), 6) + 6,
          fill: "#2f5fd0", "fill-opacity": 0.07, stroke: "#2f5fd0", "stroke-opacity": 0.3, class: "parallel-band" }));
        svg.append(s("text", { x: W - 14, y: y(gs) + 14, "font-size": 11, "font-weight": 700, fill: "#2f5fd0", "text-anchor": "end" }, `‖ parallel ×${group.length}`));
        group.forEach((k, i) => { lane[k.span_id] = i; });
      }
      group = [];
    };
    for (const k of kids) {
      if (k.start_ns >= end) { flush(); end = -Infinity; }
      group.push(k);
      end = Math.max(end, k.start_ns + k.duration_ns);
    }
    flush();
  }
  const spanByID = {};
  for (const sp of spans) spanByID[sp.span_id] = sp;
  for (const sp of spans) {
    const failed = sp.error || (sp.code && sp.code !== "OK");
    if (sp.kind === "server" || sp.kind === "consumer" || sp.kind === "internal") {
      svg.append(s("rect", { x: x(sp.service) - 6, y: y(sp.start_ns), width: 12, height: Math.max(y(sp.start_ns + sp.duration_ns) - y(sp.start_ns), 2),
        fill: failed ? "#f6b4b4" : "#cdd9f6", stroke: failed ? "#d64545" : "#2f5fd0", class: "activation" },
        s("title", {}, `${sp.name} on ${sp.service}: ${fmt(sp.duration_ns / 1e6)} ms${failed ? " — " + (sp.code || "") + " " + (sp.error || "") : ""}`)));
    }
    if (sp.kind === "client" || sp.kind === "producer") {
      let to = target(sp);
      if (sp.kind === "producer") {
        const consumer = spans.find(c => c.kind === "consumer" && c.parent_id === sp.span_id);
        to = consumer ? consumer.service : null;
      }
      if (sp.kind === "producer" && (!to || !services.includes(to))) {
        // A publish nobody in this trace consumed: a short dashed arrow
        // out of the publisher, named by its topic.
        const ys = y(sp.start_ns), x1 = x(sp.service) + 6;
        const topicName = sp.attrs && sp.attrs["messaging.destination.name"] || sp.name;
        svg.append(s("line", { x1, y1: ys, x2: x1 + 70, y2: ys, stroke: "#8e6bbf", "stroke-width": 1.4, "stroke-dasharray": "5 3", "marker-end": "url(#seq-arrow)", class: "publish" },
          s("title", {}, `${sp.service} published ${topicName}`)));
        svg.append(s("text", { x: x1 + 74, y: ys + 4, "font-size": 11, fill: "#8e6bbf" }, "publish " + topicName));
        continue;
      }
      if (!to || !services.includes(to)) continue;
      const off = (lane[sp.span_id] || 0) * 5;
      const ys = y(sp.start_ns) + off, ye = y(sp.start_ns + sp.duration_ns);
      const x1 = x(sp.service) + 6, x2 = x(to) - (x(to) > x(sp.service) ? 6 : -6);
      const label = sp.kind === "producer" ? (sp.attrs && sp.attrs["messaging.destination.name"] || sp.name) : (sp.attrs && sp.attrs["rpc.method"] || sp.name);
      svg.append(s("line", { x1, y1: ys, x2, y2: ys, stroke: failed ? "#d64545" : "#1d2330", "stroke-width": 1.4, "marker-end": "url(#seq-arrow)",
        "stroke-dasharray": sp.kind === "producer" ? "5 3" : null, class: "call " + (lane[sp.span_id] !== undefined ? "parallel" : "sequential") },
        s("title", {}, `${sp.service} → ${to}: ${label}, ${fmt(sp.duration_ns / 1e6)} ms`)));
      svg.append(s("text", { x: (x1 + x2) / 2, y: ys - 4, "text-anchor": "middle", "font-size": 11, fill: failed ? "#d64545" : "#1d2330" }, label + " " + fmt(sp.duration_ns / 1e6) + "ms"));
      if (sp.kind === "client") {
        svg.append(s("line", { x1: x2, y1: ye, x2: x1, y2: ye, stroke: "#7b8794", "stroke-dasharray": "3 3", "marker-end": "url(#seq-arrow)", class: "return" }));
      }
    }
  }
  svg.dataset.parallelGroups = parallelGroups;
  return svg;
}

route();
