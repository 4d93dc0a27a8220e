// The lineage browser: the graph around one node, fetched from the server
// (depth-limited, so 2,000 tables stay responsive), laid out left to right by
// dagre so that data flows sources → ODS → DWD → DWS → APP.
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
import { api } from "./api.js";

cytoscape.use(dagre);

const LAYERS = ["ods", "dwd", "dws", "app", "dim"];
const INDIRECT = new Set(["join_key", "filter", "group_by"]);
const state = { node: null, level: "table", data: null };
const $ = (id) => document.getElementById(id);

const cy = cytoscape({
  container: $("graph"),
  wheelSensitivity: 0.3,
  style: [
    { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center", color: "#1d2433" } },
    { selector: "node.table", style: { shape: "round-rectangle", width: "label", height: 28, padding: 10, "background-color": "#e5e9f2", "border-width": 1, "border-color": "#8a94a8" } },
    { selector: "node.table:parent", style: { "text-valign": "top", "background-opacity": 0.35, padding: 12 } },
    { selector: "node.layer-ods", style: { "background-color": "#dbeafe" } },
    { selector: "node.layer-dwd", style: { "background-color": "#dcfce7" } },
    { selector: "node.layer-dws", style: { "background-color": "#fef9c3" } },
    { selector: "node.layer-app", style: { "background-color": "#fde2e4" } },
    { selector: "node.layer-dim", style: { "background-color": "#ede9fe" } },
    { selector: "node.pipeline", style: { shape: "ellipse", width: "label", height: 22, padding: 6, "background-color": "#14213d", color: "#fff", "font-size": 10 } },
    { selector: "node.column", style: { shape: "round-rectangle", width: "label", height: 18, padding: 4, "background-color": "#fff", "border-width": 1, "border-color": "#b8c0cf", "font-size": 10 } },
    { selector: "node.failing", style: { "border-width": 3, "border-color": "#b42318", "border-style": "double" } },
    { selector: "node.focus", style: { "border-width": 3, "border-color": "#fca311" } },
    { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#8a94a8", "target-arrow-color": "#8a94a8" } },
    { selector: "edge.indirect", style: { "line-style": "dashed", "line-color": "#c2c8d4", "target-arrow-color": "#c2c8d4" } },
    { selector: ".faded", style: { opacity: 0.15 } },
    { selector: ".lit", style: { opacity: 1 } },
  ],
});

// The graph, for the browser tests (and a curious console).
window.lineage = cy;

function label(node) {
  if (node.type === "column") return node.name;
  if (node.type === "pipeline") return node.name;
  return node.name;
}

function elements(data) {
  const ids = new Set(data.nodes.map((n) => id(n)));
  const quality = data.quality || {};
  const nodes = data.nodes.map((n) => {
    const classes = [n.type];
    if (n.type === "table") classes.push(`layer-${n.layer}`);
    // A table with a failing quality rule is outlined in red.
    if (n.type === "table" && quality[n.name]?.failing.length) classes.push("failing");
    const element = { data: { id: id(n), label: label(n), node: n }, classes: classes.join(" ") };
    if (n.type === "column" && ids.has(n.table)) element.data.parent = n.table;
    return element;
  });
  const edges = data.edges
    .filter((e) => e.type !== "has")
    .map((e, i) => ({
      data: { id: `e${i}`, source: e.from, target: e.to, kind: e.kind || e.type, pipeline: e.pipeline },
      classes: INDIRECT.has(e.kind) ? "indirect" : "direct",
    }));
  return [...nodes, ...edges];
}

function id(n) {
  if (n.type === "column") return `${n.table}.${n.name}`;
  if (n.type === "pipeline") return `pipeline:${n.name}`;
  return n.name;
}

async function load(node) {
  state.node = node;
  location.hash = node;
  $("status").textContent = `loading ${node} …`;
  const params = new URLSearchParams({ depth: $("depth").value, level: state.level, direction: $("direction").value });
  const response = await api(`/api/v1/lineage/${encodeURIComponent(node)}?${params}`);
  const data = await response.json();
  if (!response.ok) {
    $("status").textContent = `${data.error}${data.hint ? ` — ${data.hint}` : ""}`;
    return;
  }
  state.data = data;
  cy.elements().remove();
  cy.add(elements(data));
  cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 70, animate: false }).run();
  cy.$id(node).addClass("focus");
  $("status").textContent = `${data.nodes.length} nodes · ${data.level} level · graph version ${data.version}`;
  document.body.dataset.loaded = node;
}

function highlight(element) {
  cy.elements().removeClass("lit").addClass("faded");
  const family = element.union(element.predecessors()).union(element.successors());
  family.union(family.parents()).union(family.children()).removeClass("faded").addClass("lit");
}

// Builds an element; text goes in as text, never as markup (names and
// descriptions come from the catalog).
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  Object.assign(element, attributes);
  for (const child of children) element.append(child instanceof Node ? child : String(child));
  return element;
}

const muted = (text) => el("span", { className: "muted" }, text);

async function describe(node) {
  const panel = $("panel");
  const table = node.type === "table" ? node.name : node.table;
  const kind = [node.type, node.layer && `${node.layer.toUpperCase()} · ${node.connector}`, node.data_type]
    .filter(Boolean)
    .join(" · ");
  const parts = [el("h2", { id: "panel-title" }, id(node)), el("p", { className: "muted" }, kind)];
  if (table) {
    const [space, name] = table.split(".");
    const response = await api(`/api/v1/tables/${encodeURIComponent(space)}/${encodeURIComponent(name)}`);
    if (response.ok) {
      const detail = await response.json();
      const runtime = (state.data.runtime || {})[table];
      parts.push(
        el("p", {}, el("b", {}, "Owner "), detail.owner || muted("none")),
        el("p", {}, el("b", {}, "Description "), detail.description || muted("none")),
        el("p", {}, el("b", {}, "Freshness "), runtime ? freshness(runtime) : muted("no pipeline running here writes it")),
        el("p", {}, el("b", {}, "Quality "), quality((state.data.quality || {})[table])),
      );
      const schema = el("table", { id: "schema" }, el("tr", {}, el("th", {}, "column"), el("th", {}, "type")));
      for (const column of detail.columns || []) schema.append(el("tr", {}, el("td", {}, column.name), el("td", {}, column.type)));
      parts.push(schema);
    }
  }
  panel.replaceChildren(...parts);
}

function quality(summary) {
  if (!summary || summary.rules === 0) return muted("no checks declared");
  // A rule that failed since the pipelines started shows until the span moves on, even once it passes again.
  const now = summary.failing.filter((f) => f.failing_now);
  const earlier = summary.failing.filter((f) => !f.failing_now);
  const describe = (list) =>
    list.map((f) => `${f.rule} (${f.detail || f.check}, ${f.action}; ${f.failed_rows} rows in ${f.failures} evaluations, last ${new Date(f.last_failure_ms).toLocaleTimeString()})`).join("; ");
  if (now.length > 0 || earlier.length > 0) {
    const parts = [];
    if (now.length > 0) parts.push(`FAILING: ${describe(now)}`);
    if (earlier.length > 0) parts.push(`FAILED EARLIER: ${describe(earlier)}`);
    return el("span", { className: "failing" }, parts.join(" · "));
  }
  const pending = summary.rules - summary.evaluated;
  return `${summary.rules} rules, passing` + (pending > 0 ? ` (${pending} not evaluated yet)` : "");
}

function freshness(runtime) {
  const lag = runtime.watermark_lag_ms == null ? "no watermark" : `watermark ${Math.round(runtime.watermark_lag_ms / 1000)} s behind`;
  const commit = runtime.last_commit_ms ? `last commit ${new Date(runtime.last_commit_ms).toLocaleTimeString()}` : "no commit yet";
  const version = runtime.table_version == null ? "" : `, Delta version ${runtime.table_version}`;
  return `${runtime.status}, ${lag}, ${commit}${version}, ${runtime.rows_committed} rows`;
}

cy.on("tap", "node", (event) => {
  highlight(event.target);
  describe(event.target.data("node"));
});
cy.on("tap", (event) => {
  if (event.target === cy) cy.elements().removeClass("faded lit");
});
cy.on("dbltap", "node", (event) => load(event.target.id()));

function setLevel(level) {
  state.level = level;
  $("level-table").classList.toggle("on", level === "table");
  $("level-column").classList.toggle("on", level === "column");
  if (state.node) load(state.node);
}
$("level-table").onclick = () => setLevel("table");
$("level-column").onclick = () => setLevel("column");
$("depth").onchange = () => state.node && load(state.node);
$("direction").onchange = () => state.node && load(state.node);
$("search").addEventListener("change", (event) => event.target.value && load(event.target.value.trim()));
$("search").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.value) load(event.target.value.trim());
});

window.addEventListener("hashchange", () => {
  const node = decodeURIComponent(location.hash.slice(1));
  if (node && node !== state.node) load(node);
});

async function start() {
  const tables = await (await api("/api/v1/tables")).json();
  $("tables").replaceChildren(...tables.map((t) => el("option", { value: t.name }, t.layer)));
  const first = decodeURIComponent(location.hash.slice(1)) || (tables.find((t) => LAYERS.includes(t.layer)) || tables[0] || {}).name;
  if (first) load(first);
}
start();
