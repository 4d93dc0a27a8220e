// The lineage browser in headless Chromium, against a `strata serve` of a small
// warehouse: the graph around a table by layer, the column view with direct and
// condition edges, a click that highlights a node's lineage and shows its
// schema and quality, and search. STRATA_BIN names the strata binary (scripts/test.sh sets it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const strata = process.env.STRATA_BIN;
const CATALOG = `
CREATE TABLE shop.ods_orders (
  order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2), status INT, order_time TIMESTAMP(3),
  proc_time AS PROCTIME(), WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json', 'connection' = 'events');
CREATE TABLE shop.dim_users (id BIGINT, city STRING, PRIMARY KEY (id) NOT ENFORCED)
WITH ('connector' = 'embedded', 'owner' = 'user-team', 'description' = 'Who buys');
CREATE TABLE shop.dwd_orders (order_id BIGINT, user_city STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3))
WITH ('connector' = 'delta', 'owner' = 'trade-team');
CREATE TABLE shop.dws_city_gmv (window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_city STRING, gmv DECIMAL(20, 2), avg_amount DECIMAL(14, 6))
WITH ('connector' = 'delta');
`;
const PIPELINES = {
  "dwd/dwd_orders.sql": `INSERT INTO shop.dwd_orders SELECT o.order_id, u.city, o.amount, o.order_time
FROM shop.ods_orders AS o LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id WHERE o.status = 1`,
  "dws/dws_city_gmv.sql": `INSERT INTO shop.dws_city_gmv SELECT window_start, window_end, user_city, SUM(amount), AVG(amount)
FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, user_city`,
};

let server;
let browser;
let page;
let base;
let dir;

before(async () => {
  assert.ok(strata, "STRATA_BIN is not set: run the UI tests through scripts/test.sh, or set it to a built strata binary");
  dir = mkdtempSync(join(tmpdir(), "strata-ui-"));
  writeFileSync(join(dir, "strata.toml"), '[connections.events]\nkind = "kafka"\nbootstrap-servers = "127.0.0.1:9"\n');
  writeFileSync(join(dir, "catalog.sql"), CATALOG);
  for (const [path, sql] of Object.entries(PIPELINES)) {
    mkdirSync(join(dir, "pipelines", path.split("/")[0]), { recursive: true });
    writeFileSync(join(dir, "pipelines", path), sql);
  }
  execFileSync(strata, ["--project", dir, "catalog", "register", join(dir, "catalog.sql")]);
  // A rule that fails over the table's history: its result is what the browser shows.
  mkdirSync(join(dir, "checks"));
  writeFileSync(
    join(dir, "checks", "dwd_orders.toml"),
    'table = "shop.dwd_orders"\n[[rule]]\nname = "city_known"\ncheck = "not_null"\ncolumn = "user_city"\n',
  );
  execFileSync(strata, ["--project", dir, "query", "INSERT INTO shop.dwd_orders VALUES (1, NULL, 5.00, TIMESTAMP '2024-05-01 10:00:00')"]);
  try {
    execFileSync(strata, ["--project", dir, "check", "shop.dwd_orders", "--history"], { stdio: "ignore" });
  } catch (failed) {
    assert.equal(failed.status, 1, "strata check --history exits 1 on the failing rule");
  }
  server = spawn(strata, ["--project", dir, "serve", "--port", "0", "--pg-port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
  base = await new Promise((resolve, reject) => {
    let text = "";
    server.stderr.on("data", (chunk) => {
      text += chunk;
      const found = text.match(/browser on (http:\/\/[^/\s]+)\//);
      if (found) resolve(found[1]);
    });
    server.on("exit", (code) => reject(new Error(`strata serve exited (${code}): ${text}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  server?.kill();
});

const loaded = (node) => page.waitForSelector(`body[data-loaded="${node}"]`, { state: "attached" });
const ids = (selector) => page.evaluate((s) => window.lineage.nodes(s).map((n) => n.id()).sort(), selector);

test("without a token the page asks for one", async () => {
  await page.goto(`${base}/ui/lineage`);
  await page.waitForSelector("#token-form");
});

test("the graph around a table shows its layers left to right", async () => {
  const token = readFileSync(join(dir, ".strata", "admin-token"), "utf8").trim();
  await page.goto(`${base}/ui/lineage?token=${token}`);
  assert.equal(new URL(page.url()).search, "", "the token leaves the address at once");
  await page.goto(`${base}/`);
  await page.waitForSelector("body[data-loaded]", { state: "attached" });
  await page.goto(`${base}/ui/lineage#shop.dwd_orders`);
  await loaded("shop.dwd_orders");
  assert.deepEqual(await ids(".table"), ["shop.dim_users", "shop.dwd_orders", "shop.dws_city_gmv", "shop.ods_orders"]);
  assert.deepEqual(await ids(".pipeline"), ["pipeline:dwd_orders", "pipeline:dws_city_gmv"]);
  const x = await page.evaluate(() => Object.fromEntries(window.lineage.nodes(".table").map((n) => [n.id(), n.position("x")])));
  assert.ok(x["shop.ods_orders"] < x["shop.dwd_orders"] && x["shop.dwd_orders"] < x["shop.dws_city_gmv"], JSON.stringify(x));
});

test("the column view draws value edges solid and condition edges dashed", async () => {
  await page.click("#level-column");
  await page.waitForFunction(() => window.lineage.nodes(".column").length > 0);
  const edge = (from, to) => page.evaluate(([f, t]) => {
    const found = window.lineage.edges().filter((e) => e.source().id() === f && e.target().id() === t);
    return found.map((e) => [e.data("kind"), e.style("line-style")]);
  }, [from, to]);
  assert.deepEqual(await edge("shop.dim_users.city", "shop.dwd_orders.user_city"), [["direct", "solid"]]);
  assert.deepEqual(await edge("shop.ods_orders.user_id", "shop.dwd_orders.user_city"), [["join_key", "dashed"]]);
  const parent = await page.evaluate(() => window.lineage.$id("shop.dwd_orders.user_city").parent().id());
  assert.equal(parent, "shop.dwd_orders");
});

test("a click highlights a node's lineage and opens its details", async () => {
  await page.evaluate(() => window.lineage.$id("shop.dim_users.city").emit("tap"));
  await page.waitForSelector("#panel-title");
  assert.equal(await page.textContent("#panel-title"), "shop.dim_users.city");
  assert.match(await page.textContent("#panel"), /user-team/);
  assert.match(await page.textContent("#schema"), /city\s*STRING/);
  const faded = await page.evaluate(() => ({
    downstream: window.lineage.$id("shop.dws_city_gmv.gmv").hasClass("faded"),
    unrelated: window.lineage.$id("shop.ods_orders.order_id").hasClass("faded"),
  }));
  assert.deepEqual(faded, { downstream: false, unrelated: true });
});

test("a table failing a quality rule is outlined, and its panel says which rule", async () => {
  await page.click("#level-table");
  await page.fill("#search", "shop.dwd_orders");
  await page.press("#search", "Enter");
  await loaded("shop.dwd_orders");
  const failing = await ids(".failing");
  assert.deepEqual(failing, ["shop.dwd_orders"]);
  await page.evaluate(() => window.lineage.$id("shop.dwd_orders").emit("tap"));
  await page.waitForFunction(() => document.getElementById("panel").textContent.includes("FAILING"));
  assert.match(await page.textContent("#panel"), /FAILING: city_known/);
});

test("search moves the graph to another table", async () => {
  await page.click("#level-table");
  await page.fill("#search", "shop.dws_city_gmv");
  await page.press("#search", "Enter");
  await loaded("shop.dws_city_gmv");
  assert.ok((await ids(".table")).includes("shop.ods_orders"));
  await page.fill("#search", "shop.nothing");
  await page.press("#search", "Enter");
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("not in the lineage graph"));
});

test("the query page runs SQL and shows the rows, or the error with its hint", async () => {
  await page.goto(`${base}/ui/query`);
  await page.waitForSelector('body[data-ready="true"]', { state: "attached" });
  await page.fill("#sql", "SELECT order_id, amount FROM shop.dwd_orders ORDER BY order_id");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 1);
  assert.match(await page.textContent("#status"), /^1 row in/);
  assert.deepEqual(await page.$$eval("#result td", (cells) => cells.map((c) => c.textContent)), ["1", "5"]);
  await page.fill("#sql", "SELECT nothing FROM shop.dwd_orders");
  await page.click("#run");
  await page.waitForSelector("#status.error");
  assert.match(await page.textContent("#status"), /nothing/);
});

test("the live view follows a table and its chart moves when rows are committed", async () => {
  await page.fill("#live-table", "shop.dws_city_gmv");
  await page.click("#subscribe");
  await page.waitForFunction(() => document.body.dataset.liveRows === "0");
  const first = "TIMESTAMP '2024-05-01 10:00:00', TIMESTAMP '2024-05-01 10:01:00'";
  const second = "TIMESTAMP '2024-05-01 10:01:00', TIMESTAMP '2024-05-01 10:02:00'";
  await page.fill(
    "#sql",
    `INSERT INTO shop.dws_city_gmv VALUES (${first}, 'Beijing', 12.50, 10), (${first}, 'Shanghai', 30.00, 30), (${second}, 'Beijing', 7.50, 20)`,
  );
  await page.click("#run");
  await page.waitForFunction(() => document.body.dataset.liveRows === "3", null, { timeout: 15000 });
  const bars = () => page.$$eval("#chart g.bar", (groups) => groups.map((g) => [g.dataset.label, Number(g.dataset.value)]));
  // An average per window is averaged across windows by default, never summed.
  assert.equal(await page.inputValue("#value"), "avg_amount");
  assert.equal(await page.inputValue("#combine"), "avg");
  assert.deepEqual(await bars(), [["Shanghai", 30], ["Beijing", 15]]);
  // An amount is summed.
  await page.selectOption("#value", "gmv");
  assert.equal(await page.inputValue("#combine"), "sum");
  assert.deepEqual(await bars(), [["Shanghai", 30], ["Beijing", 20]]);
  assert.match(await page.textContent("#live-status"), /3 rows · snapshot v1/);
});
