// The query page: SQL against the API (history and realtime as one table),
// and a live view of one table over a WebSocket subscription, with a bar chart
// that moves as rows are produced and committed.
import { api, token } from "./api.js";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const show = (value) => (value === null || value === undefined ? "NULL" : typeof value === "object" ? JSON.stringify(value) : String(value));

function render(table, columns, rows) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { title: c.type || "" }, c.name)));
  const body = rows.map((row) =>
    el("tr", { className: row._provisional ? "provisional" : "" }, ...columns.map((c) => el("td", {}, show(row[c.name])))),
  );
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

async function run() {
  $("status").className = "muted";
  $("status").textContent = "running …";
  const started = performance.now();
  const response = await api("/api/v1/query", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: $("sql").value, limit: Number($("limit").value) }),
  });
  const answer = await response.json();
  if (!response.ok) {
    $("status").className = "error";
    $("status").textContent = `${answer.error}${answer.hint ? `\nhint: ${answer.hint}` : ""}`;
    $("result").replaceChildren();
    return;
  }
  const ms = Math.round(performance.now() - started);
  const more = answer.truncated ? ` (cut off at the limit)` : "";
  $("status").textContent = `${answer.rows.length} row${answer.rows.length === 1 ? "" : "s"}${more} in ${ms} ms`;
  render($("result"), answer.columns, answer.rows);
}

// The live view: rows by key (keyed tables) or in arrival order (append-only).
const live = { socket: null, columns: [], key: [], rows: new Map(), provisional: [], next: 0 };

const keyOf = (row) => (live.key.length ? JSON.stringify(live.key.map((k) => row[k])) : `#${live.next++}`);

function liveRows() {
  return [...live.rows.values(), ...live.provisional];
}

// How a column's values of one label combine: averages, rates and extremes are
// not added up across windows; amounts and counts are.
function defaultCombine(column) {
  if (/(^|_)(avg|average|mean|rate|ratio|pct|percent|share)(_|$)/i.test(column)) return "avg";
  if (/(^|_)max(_|$)/i.test(column)) return "max";
  if (/(^|_)min(_|$)/i.test(column)) return "min";
  return "sum";
}

function combined(values, how) {
  switch (how) {
    case "avg":
      return values.reduce((a, b) => a + b, 0) / values.length;
    case "max":
      return Math.max(...values);
    case "min":
      return Math.min(...values);
    case "latest":
      return values[values.length - 1];
    default:
      return values.reduce((a, b) => a + b, 0);
  }
}

function chart() {
  const svg = $("chart");
  const label = $("label").value;
  const value = $("value").value;
  const how = $("combine").value;
  const groups = new Map();
  for (const row of liveRows()) {
    const name = show(row[label]);
    const group = groups.get(name) || { values: [], provisional: false };
    group.values.push(Number(row[value]) || 0);
    group.provisional ||= Boolean(row._provisional);
    groups.set(name, group);
  }
  const bars = new Map([...groups].map(([name, g]) => [name, { value: combined(g.values, how), provisional: g.provisional }]));
  const entries = [...bars.entries()].sort((a, b) => b[1].value - a[1].value).slice(0, 12);
  const width = svg.clientWidth || 600;
  const max = Math.max(1, ...entries.map(([, e]) => e.value));
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const rows = entries.map(([name, entry], i) => {
    const y = 6 + i * 17;
    const w = Math.max(1, ((width - 190) * entry.value) / max);
    const g = make("g", { class: "bar", "data-label": name, "data-value": entry.value });
    g.append(
      make("text", { x: 0, y: y + 11 }, name.slice(0, 18)),
      make("rect", { x: 120, y, width: w, height: 13, fill: entry.provisional ? "#fcd38a" : "#fca311" }),
      make("text", { x: 126 + w, y: y + 11 }, String(Math.round(entry.value * 100) / 100)),
    );
    return g;
  });
  svg.replaceChildren(...rows);
}

function redraw() {
  render($("live"), live.columns, liveRows());
  chart();
  document.body.dataset.liveRows = String(liveRows().length);
}

function choose(select, names, preferred) {
  const current = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  select.value = names.includes(current) ? current : preferred || names[0] || "";
}

function snapshot(message) {
  live.columns = message.columns;
  live.key = message.key || [];
  live.rows = new Map();
  live.provisional = [];
  for (const row of message.rows) live.rows.set(keyOf(row), row);
  const names = live.columns.map((c) => c.name).filter((n) => n !== "_provisional");
  const numeric = live.columns.filter((c) => /INT|DECIMAL|DOUBLE|FLOAT/.test(c.type)).map((c) => c.name);
  const text = live.columns.filter((c) => /STRING|VARCHAR|CHAR/.test(c.type)).map((c) => c.name);
  choose($("label"), names, text[0]);
  choose($("value"), names, numeric[numeric.length - 1]);
  $("combine").value = defaultCombine($("value").value);
}

function onMessage(message) {
  switch (message.type) {
    case "snapshot":
      snapshot(message);
      break;
    case "upsert":
      for (const row of message.rows) live.rows.set(keyOf(row), row);
      break;
    case "delete":
      for (const row of message.rows) live.rows.delete(keyOf(row));
      break;
    case "insert":
      for (const row of message.rows) live.rows.set(keyOf(row), row);
      break;
    case "provisional":
      live.provisional = message.rows;
      break;
    case "error":
      $("live-status").className = "error";
      $("live-status").textContent = `${message.error}${message.hint ? ` — ${message.hint}` : ""}`;
      return;
    default:
      break;
  }
  $("live-status").className = "muted";
  $("live-status").textContent = `${liveRows().length} rows · ${message.type}${message.version !== undefined ? ` v${message.version}` : ""} at ${new Date().toLocaleTimeString()}`;
  redraw();
}

function subscribe() {
  live.socket?.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/subscribe?token=${encodeURIComponent(token())}`);
  live.socket = socket;
  socket.addEventListener("open", () => {
    const request = { table: $("live-table").value.trim() };
    if ($("live-filter").value.trim()) request.filter = $("live-filter").value.trim();
    socket.send(JSON.stringify(request));
    $("live-status").textContent = "subscribed …";
  });
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    if (live.socket === socket) $("live-status").textContent += " · closed";
  });
}

$("run").addEventListener("click", run);
$("sql").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
});
$("subscribe").addEventListener("click", subscribe);
$("label").addEventListener("change", chart);
$("value").addEventListener("change", () => {
  $("combine").value = defaultCombine($("value").value);
  chart();
});
$("combine").addEventListener("change", chart);

async function start() {
  const response = await api("/api/v1/tables");
  if (!response.ok) return;
  const tables = await response.json();
  $("tables").replaceChildren(...tables.map((t) => el("option", { value: t.name }, t.layer)));
  document.body.dataset.ready = "true";
}
start();
