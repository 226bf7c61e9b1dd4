// The monitoring page in a real browser (Debian's chromium driven by playwright-core; no browser
// is downloaded). Run by tests/api/operators.rs after a known burst of requests:
//   BASE_URL=http://127.0.0.1:PORT TOKEN=<superuser> PLAYER_TOKEN=<not a superuser> \
//   SCREENSHOT=path.png [CHROMIUM=/usr/bin/chromium] node monitoring.mjs
// It loads the page, pastes the token, checks that what the page shows equals what the API
// says, clicks "Flush all caches" (accepting the confirmation) and checks the cache status
// changed, and saves a screenshot. Prints one JSON line of facts; exits 1 on a failed check.
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const token = process.env.TOKEN;
const playerToken = process.env.PLAYER_TOKEN;
const screenshot = process.env.SCREENSHOT;
const failures = [];
const facts = {};

function expectEqual(what, shown, expected) {
  if (shown !== expected) failures.push(`${what}: the page shows ${JSON.stringify(shown)}, the API says ${JSON.stringify(expected)}`);
}

async function api(path, options = {}) {
  const response = await fetch(base + path, { ...options, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

const fmt = {
  int: (n) => String(Math.round(n)),
  ms: (n) => Number(n).toFixed(1),
  pct: (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %"),
  num: (n) => Number(n).toFixed(2),
};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("dialog", (dialog) => { facts.dialog = dialog.message(); dialog.accept(); });

  await page.goto(base + "/monitoring");
  await page.waitForSelector("#login:not(.hidden)");

  // A token that is not a superuser's is refused, and the page asks again.
  if (playerToken) {
    await page.fill("#token", playerToken);
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
    facts.refused = await page.textContent("#login-error");
    if (!(await page.isVisible("#login"))) failures.push("a player's token opened the page");
    // Its 403s were logged by the browser: expected.
    consoleErrors.length = 0;
  }

  await page.fill("#token", token);
  await page.click("#connect");
  await page.waitForSelector("body[data-loaded]");
  await page.waitForSelector("#app:not(.hidden)");
  if (page.url().includes(token)) failures.push("the token is in the URL");
  const stored = await page.evaluate(() => Object.values(sessionStorage));
  if (!stored.includes(token)) failures.push("the token is not in sessionStorage");
  const local = await page.evaluate(() => Object.values(localStorage));
  if (local.includes(token)) failures.push("the token is in localStorage");

  // Read the API, then make the page read it again, so both see the same moment.
  const [summary, stats, cache, trends, alerts] = await Promise.all([
    api("/api/bff/monitoring/summary"),
    api("/api/bff/monitoring/stats"),
    api("/api/management/cache/status"),
    api("/api/bff/monitoring/trends"),
    api("/api/bff/monitoring/alerts"),
  ]);
  const loads = Number(await page.getAttribute("body", "data-loaded"));
  await page.click("#refresh");
  await page.waitForFunction((n) => Number(document.body.dataset.loaded) > n, loads);

  const text = async (selector) => ((await page.textContent(selector)) || "").trim();
  expectEqual("requests", await text("#summary-requests"), fmt.int(summary.requests));
  expectEqual("error rate", await text("#summary-error-rate"), fmt.pct(summary.errorRate));
  expectEqual("cache hit rate", await text("#summary-cache-hit-rate"), fmt.pct(summary.cacheHitRate));
  expectEqual("SQL per request", await text("#summary-sql"), fmt.num(summary.sqlStatementsPerRequest));
  for (const [code, n] of Object.entries(summary.errorsByCode)) {
    expectEqual(`errors ${code}`, await text(`#errors tr[data-code="${code}"] td[data-field="count"]`), fmt.int(n));
  }
  const rows = await page.$$eval("#operations tr[data-operation]", (trs) => trs.map((tr) => tr.dataset.operation));
  expectEqual("operations listed", JSON.stringify(rows), JSON.stringify(stats.operations.map((o) => o.operation)));
  for (const o of stats.operations) {
    const cell = (field) => text(`#operations tr[data-operation="${o.operation}"] td[data-field="${field}"]`);
    expectEqual(`${o.operation} count`, await cell("count"), fmt.int(o.count));
    expectEqual(`${o.operation} errors`, await cell("errors"), fmt.int(o.errors));
    expectEqual(`${o.operation} p50`, await cell("p50"), fmt.ms(o.medianMs));
    expectEqual(`${o.operation} p95`, await cell("p95"), fmt.ms(o.p95Ms));
    expectEqual(`${o.operation} p99`, await cell("p99"), fmt.ms(o.p99Ms));
    expectEqual(`${o.operation} SQL`, await cell("sql"), fmt.num(o.sqlStatementsPerRequest));
    expectEqual(`${o.operation} hit rate`, await cell("hitRate"), fmt.pct(o.cacheHitRate));
  }
  // The page's own API calls check the token, which reads the authContext and permissions
  // kinds: those two move between any two reads, so the others are compared.
  for (const k of cache.kinds.filter((k) => k.kind !== "authContext" && k.kind !== "permissions")) {
    const s = k.stats;
    const lookups = s.l1Hits + s.l2Hits + s.staleWhileRevalidate + s.staleIfError + s.misses;
    expectEqual(`${k.kind} lookups`, await text(`#kinds tr[data-kind="${k.kind}"] td[data-field="lookups"]`), fmt.int(lookups));
    const hits = lookups - s.misses;
    expectEqual(`${k.kind} hit rate`, await text(`#kinds tr[data-kind="${k.kind}"] td[data-field="hitRate"]`), lookups ? fmt.pct(hits / lookups) : "–");
  }
  expectEqual("invalidations", await text("#invalidations"), fmt.int(cache.invalidations));
  facts.operations = rows;
  facts.requests = summary.requests;
  facts.slowestRows = await page.$$eval("#slowest tr[data-request-id]", (trs) => trs.length);
  facts.chartPaths = await page.$$eval("#chart-rate path, #chart-latency path", (ps) => ps.length);
  // The charts drew the last hour the API reports (every operation merged).
  const charted = trends.all.points.reduce((n, p) => n + p.count, 0);
  expectEqual("requests charted", await page.getAttribute("#chart-rate", "data-requests"), String(charted));
  facts.charted = charted;
  facts.alertRows = await page.$$eval("#alerts tr[data-rule]", (trs) => trs.map((tr) => tr.dataset.rule));
  expectEqual("alerts listed", JSON.stringify(facts.alertRows), JSON.stringify(alerts.alerts.map((a) => a.rule)));

  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  // Flush, confirmed in the dialog; the cache status changes, on the page and in the API.
  const before = cache.invalidations;
  await page.click("#flush-all");
  await page.waitForFunction(() => /done/.test(document.getElementById("action-result").textContent));
  const after = await api("/api/management/cache/status");
  if (!(after.invalidations > before)) failures.push(`flushing did not count an invalidation (${before} -> ${after.invalidations})`);
  await page.waitForFunction((n) => document.getElementById("invalidations").textContent.trim() === String(n), after.invalidations);
  facts.invalidations = [before, after.invalidations];
  if (consoleErrors.length) failures.push("console errors: " + consoleErrors.join(" | "));

  // One endpoint failing leaves its panel empty and says so; the rest still draws. The token is
  // in sessionStorage, so a reload connects by itself.
  await page.route("**/api/bff/monitoring/slowest*", (route) => route.fulfill({ status: 500, contentType: "application/json", body: "{}" }));
  await page.reload();
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForFunction(() => /slowest/.test(document.getElementById("app-error").textContent));
  expectEqual("requests with one endpoint down", await text("#summary-requests"), fmt.int(summary.requests));
  facts.partialFailure = await text("#app-error");
} catch (error) {
  failures.push(String(error && error.stack || error));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ facts, failures }));
process.exit(failures.length ? 1 : 0);
