// Drives /dashboard in a real browser (Debian's chromium, headless, through playwright-core):
// the page renders from the binary alone, its numbers change after orders are posted, a dead
// letter replayed from the page is delivered (its order gets confirmed), a purge and an order
// cancellation from the page take effect, and the page switches to Chinese. A screenshot of the
// populated page is written to $DASHBOARD_SCREENSHOT (docs/dashboard.png when refreshing the
// docs). Started by scripts/browser/dashboard.sh, which installs what this needs.
//
//   node scripts/browser/dashboard.mjs [BINARY]

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const BIN = process.argv[2] || "target/debug/ordermill";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOT = process.env.DASHBOARD_SCREENSHOT || path.join(os.tmpdir(), "ordermill-dashboard.png");
const ADMIN = "browser-admin-token";
const MERCHANT = "browser-merchant-token";
const WAIT_MS = 15_000;

const work = fs.mkdtempSync(path.join(os.tmpdir(), "ordermill-browser-"));
const logPath = path.join(work, "node.log");
let node = null;
let browser = null;
let checks = 0;

function ok(what) {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

async function finish(code, why) {
  if (why) {
    console.error(`FAILED: ${why}`);
    if (fs.existsSync(logPath)) {
      console.error("--- the node's log (last 40 lines) ---");
      console.error(fs.readFileSync(logPath, "utf8").split("\n").slice(-40).join("\n"));
    }
  }
  try { if (browser) await browser.close(); } catch (_) { /* already gone */ }
  if (node) node.kill("SIGTERM");
  gateway.close();
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(code);
}

// The whole run is bounded: a hang is a failure, not a stuck CI job.
const overall = setTimeout(() => finish(1, "the browser test took longer than 120 s"), 120_000);

// A payment gateway of our own: it refuses every charge with 400 (ordermill dead-letters a
// definite refusal at once) until `approving` is set, then approves.
let approving = false;
const charges = [];
const gateway = http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    let order = null;
    try { order = JSON.parse(body).order_id; } catch (_) { order = null; }
    charges.push({ order, approved: approving });
    res.writeHead(approving ? 200 : 400, { "content-type": "application/json" });
    res.end(approving ? "{}" : '{"error":"card refused (test gateway)"}');
  });
});

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

async function freePort() {
  const probe = http.createServer();
  const port = await listen(probe);
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function until(what, check) {
  const end = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`not within ${WAIT_MS / 1000} s: ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function call(base, method, url, body, token) {
  const response = await fetch(base + url, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

try {
  const gatewayPort = await listen(gateway);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(logPath, "w");
  node = spawn(BIN, ["serve"], {
    env: {
      // The node reads every ORDERMILL_* variable as a setting: pass none of the caller's.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ORDERMILL_"))),
      ORDERMILL_LISTEN: `127.0.0.1:${port}`,
      ORDERMILL_DATA_DIR: path.join(work, "data"),
      ORDERMILL_ADMIN_TOKEN: ADMIN,
      ORDERMILL_MERCHANT_TOKEN: MERCHANT,
      ORDERMILL_PAYMENT__GATEWAY: "http",
      ORDERMILL_PAYMENT__URL: `http://127.0.0.1:${gatewayPort}/charge`,
    },
    stdio: ["ignore", log, log],
  });
  node.on("exit", (code) => { if (code !== null && code !== 0) finish(1, `ordermill serve exited with ${code}`); });
  await until("the node is ready", async () => (await fetch(`${base}/readyz`)).status === 200);
  ok("ordermill serve is ready");

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1050 }, locale: "en-US" });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(`console: ${msg.text()}`); });
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()}`));
  page.on("request", (req) => { if (!req.url().startsWith(base)) problems.push(`left the origin: ${req.url()}`); });
  page.on("dialog", (dialog) => dialog.accept());
  const text = (selector) => page.locator(selector).innerText();
  const count = async (selector) => Number((await text(selector)).replace(/[^0-9]/g, "") || "NaN");

  // Renders, empty, from the binary alone; the token leaves the address bar.
  await page.goto(`${base}/dashboard#token=${ADMIN}`);
  await page.locator("#board").waitFor({ state: "visible", timeout: WAIT_MS });
  if (new URL(page.url()).hash !== "") throw new Error(`the token stayed in the URL: ${page.url()}`);
  await until("the live state", async () => (await page.locator("#state").getAttribute("data-state")) === "live");
  const before = await count("#total-accepted");
  if (before !== 0) throw new Error(`a fresh node shows ${before} accepted orders`);
  // Every second rather than the default two: the waits below are shorter.
  await page.locator("#every").selectOption("1000");
  await page.locator("#recent-empty").waitFor({ state: "visible" });
  const queues = await page.locator("#queues tbody tr").allInnerTexts();
  for (const q of ["inventory", "payment", "notify"]) {
    if (!queues.some((row) => row.startsWith(q))) throw new Error(`queue ${q} missing: ${queues}`);
  }
  ok("the page renders empty: 0 accepted, every queue, no orders, the token out of the URL");

  // Orders posted behind the page's back show up: counters, recent orders, dead letters, a deal.
  const put = await call(base, "PUT", "/api/products/crab", { name: "大闸蟹礼盒", price: "19.99", stock: 100 }, MERCHANT);
  if (put.status !== 201 && put.status !== 200) throw new Error(`PUT product: ${JSON.stringify(put)}`);
  const ids = [];
  for (const customer of ["ann", "bo", "cy"]) {
    const reply = await call(base, "POST", "/api/orders", { customer_id: customer, items: [{ sku: "crab", quantity: 1 }] }, "none");
    if (reply.status !== 201) throw new Error(`POST order: ${JSON.stringify(reply)}`);
    ids.push(reply.body.order_id);
  }
  const deal = await call(base, "POST", "/api/deals", { sku: "crab", deal_price: "9.90", group_size: 5, expires_in: "2h" }, MERCHANT);
  if (deal.status !== 201) throw new Error(`POST deal: ${JSON.stringify(deal)}`);
  await call(base, "POST", `/api/deals/${deal.body.deal_id}/join`, { customer_id: "dee" }, "none");
  await until("3 accepted orders on the page", async () => (await count("#total-accepted")) >= 3);
  await until("3 dead letters on the page", async () => (await page.locator("#dead-letters tbody tr").count()) === 3);
  await until("the deal on the page", async () => (await page.locator("#deals tbody tr").count()) === 1);
  const dealRow = await page.locator("#deals tbody tr").innerText();
  if (!dealRow.includes("crab") || !/\b4\b/.test(dealRow)) throw new Error(`the deal row: ${dealRow}`);
  await until("4 recent orders", async () => (await page.locator("#recent tbody tr").count()) === 4);
  ok("numbers change after orders are posted: accepted, 3 dead letters, the deal with 4 slots left, 4 recent orders");

  // Replay one dead letter from the page, with the gateway now approving: it is delivered.
  approving = true;
  const row = (table, id) => page.locator(`${table} tbody tr`, { hasText: id });
  await row("#dead-letters", ids[0]).locator('button[data-action="replay"]').click();
  await until("the replayed order confirmed on the page", async () =>
    (await row("#recent", ids[0]).locator("td[data-status]").getAttribute("data-status")) === "confirmed");
  await until("its dead letter gone", async () => (await row("#dead-letters", ids[0]).count()) === 0);
  if (!charges.some((c) => c.order === ids[0] && c.approved)) throw new Error("the gateway never saw the replayed charge");
  const replayed = await call(base, "GET", `/api/orders/${ids[0]}`, undefined, ADMIN);
  if (replayed.body.status !== "confirmed") throw new Error(`the replayed order: ${JSON.stringify(replayed.body)}`);
  ok("a replay from the page delivers the dead letter: the charge reaches the gateway and the order is confirmed");

  // Purge one from the page (after its confirm dialog).
  await row("#dead-letters", ids[1]).locator('button[data-action="purge"]').click();
  await until("the purged dead letter gone", async () => (await row("#dead-letters", ids[1]).count()) === 0);
  const left = await call(base, "GET", "/admin/dlq/payment", undefined, ADMIN);
  if (left.body.total !== 1) throw new Error(`dead letters left: ${JSON.stringify(left.body)}`);
  ok("a purge from the page removes exactly that dead letter");

  // Cancel the purged letter's order, stuck in accepted, from the page.
  await row("#recent", ids[1]).locator('button[data-action="cancel"]').click();
  await until("the cancelled order on the page", async () =>
    (await row("#recent", ids[1]).locator("td[data-status]").getAttribute("data-status")) === "cancelled");
  const cancelled = await call(base, "GET", `/api/orders/${ids[1]}`, undefined, ADMIN);
  if (cancelled.body.status !== "cancelled") throw new Error(`the cancelled order: ${JSON.stringify(cancelled.body)}`);
  ok("an order cancelled from the page is cancelled in the store");

  // A few more polls draw the rate chart, then the picture for the docs.
  await page.waitForTimeout(3_000);
  const tidy = () => page.evaluate(() => { document.getElementById("toast").hidden = true; window.scrollTo(0, 0); });
  await tidy();
  await page.screenshot({ path: SHOT, fullPage: true });
  ok(`screenshot written to ${SHOT}`);

  // 中文.
  await page.locator("#lang").click();
  await until("Chinese headings", async () => (await text("#h-orders")) === "订单");
  const pill = await text("#state");
  if (pill !== "实时") throw new Error(`the live state in Chinese: ${pill}`);
  const status = await row("#recent", ids[1]).locator("td[data-status]").innerText();
  if (status !== "已取消") throw new Error(`the status in Chinese: ${status}`);
  ok("the page switches to Simplified Chinese");

  // The hot-stock line: absent on this node (serve's counts live in its own memory and are never
  // rebuilt), drawn from the figures an api node on shared Redis sends once they are not all 0.
  if (await page.locator("#hot-stock").isVisible()) throw new Error("a hot-stock line on a node whose counts are its own");
  await page.route("**/admin/overview", async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    json.hot_stock = { rebuilds: 2, fenced_orders: 3, late_commits: 1 };
    await route.fulfill({ response, json });
  });
  await until("the hot-stock line", async () => page.locator("#hot-stock").isVisible());
  const hot = await text("#hot-stock");
  for (const part of ["重建 2 次", "拒绝的订单 3", "迟到的提交 1"]) {
    if (!hot.includes(part)) throw new Error(`the hot-stock line lacks "${part}": ${hot}`);
  }
  await page.unroute("**/admin/overview");
  ok("the hot-stock line shows an api node's rebuilds, fenced orders and late commits, and only then");
  if (process.env.DASHBOARD_SCREENSHOT_ZH) await tidy();
  if (process.env.DASHBOARD_SCREENSHOT_ZH) await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT_ZH, fullPage: true });

  if (problems.length) throw new Error(problems.join("; "));
  ok("no script error, no failed request, nothing loaded from another origin");
  clearTimeout(overall);
  console.log(`dashboard in a real browser: ${checks} checks passed`);
  await finish(0);
} catch (error) {
  await finish(1, error && error.stack ? error.stack : String(error));
}
