// The monitoring page: reads the monitoring and management APIs with a superuser's token (kept
// in sessionStorage, sent as a bearer header, never in the URL) and draws them. Every value from
// the server is set as text (textContent), never as markup: operation names are chosen by clients.
"use strict";
(function () {
  const KEY = "padel-bff.monitoring.token";
  const REFRESH_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let lastTrends = null;

  // Formatting (the browser test formats the API's numbers the same way).
  const fmt = {
    int: (n) => String(Math.round(n)),
    ms: (n) => Number(n).toFixed(1),
    pct: (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %"),
    num: (n) => Number(n).toFixed(2),
  };

  function token() { return sessionStorage.getItem(KEY); }

  function showLogin(message) {
    $("app").classList.add("hidden");
    $("login").classList.remove("hidden");
    $("login-error").textContent = message || "";
    $("token").focus();
    if (timer) { clearInterval(timer); timer = null; }
  }

  function showApp() {
    $("login").classList.add("hidden");
    $("app").classList.remove("hidden");
  }

  class Denied extends Error {}

  async function api(path, options) {
    const response = await fetch(path, Object.assign({
      headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
      cache: "no-store",
      credentials: "omit",
    }, options || {}));
    if (response.status === 401 || response.status === 403) {
      let message = response.status === 401 ? "The token was not accepted." : "This token is not a superuser's.";
      try { const body = await response.json(); if (body && body.error && body.error.message) message = body.error.message; } catch (_) { /* not JSON */ }
      throw new Denied(message);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : "HTTP " + response.status;
      throw new Error(path + ": " + message);
    }
    return body;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fill(tbody, items, render, empty) {
    tbody.replaceChildren();
    if (!items.length) {
      const row = document.createElement("tr");
      const td = cell(row, empty || "none", "muted");
      td.colSpan = 8;
      tbody.appendChild(row);
      return;
    }
    for (const item of items) {
      const row = document.createElement("tr");
      render(row, item);
      tbody.appendChild(row);
    }
  }

  // A line chart in inline SVG: series of {values, className}; x is the minute index.
  function chart(svg, series, labels) {
    svg.replaceChildren();
    const width = svg.clientWidth || 800, height = svg.clientHeight || 180;
    const pad = { l: 44, r: 8, t: 8, b: 18 };
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const all = series.flatMap((s) => s.values.filter((v) => v !== null && isFinite(v)));
    const max = Math.max(1e-9, ...all) * 1.1;
    const n = Math.max(1, labels.length - 1);
    const x = (i) => pad.l + (i / n) * (width - pad.l - pad.r);
    const y = (v) => height - pad.b - (v / max) * (height - pad.t - pad.b);
    const add = (name, attrs, text) => {
      const el = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      svg.appendChild(el);
      return el;
    };
    for (const f of [0, 0.5, 1]) {
      const v = (max / 1.1) * f;
      add("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), stroke: "#e3e6eb" });
      add("text", { x: pad.l - 4, y: y(v) + 3, "text-anchor": "end" }, v >= 100 ? v.toFixed(0) : v.toFixed(2));
    }
    for (const [i, anchor] of [[0, "start"], [Math.floor(n / 2), "middle"], [n, "end"]]) {
      if (labels[i]) add("text", { x: x(i), y: height - 4, "text-anchor": anchor }, labels[i]);
    }
    for (const s of series) {
      let d = "";
      s.values.forEach((v, i) => {
        if (v === null || !isFinite(v)) return;
        d += (d ? " L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      });
      if (d) add("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 1.8, "data-series": s.name });
      // Sparse series (a quiet hour) get dots: a lone minute is no line.
      const known = s.values.map((v, i) => [v, i]).filter(([v]) => v !== null && isFinite(v));
      if (known.length <= 5) for (const [v, i] of known) add("circle", { cx: x(i), cy: y(v), r: 2.5, fill: s.color });
    }
  }

  // The operation drawn: "" for every operation merged (the API's `all`), else its name.
  let drawn = "";

  function fillOperationSelect(names) {
    const select = $("trend-operation");
    const values = [""].concat(names);
    if (select.options.length !== values.length || values.some((v, i) => select.options[i].value !== v)) {
      select.replaceChildren(...values.map((v) => {
        const o = document.createElement("option");
        o.value = v;
        o.textContent = v === "" ? "all operations" : v;
        return o;
      }));
    }
    select.value = values.includes(drawn) ? drawn : "";
  }

  function drawTrends() {
    if (!lastTrends) return;
    const select = $("trend-operation");
    if (!lastTrends.all) return;
    // An operation quiet for the last hour has no trend: its chart is empty, not `all`'s.
    const quiet = { points: lastTrends.all.points.map((p) => ({ minute: p.minute, count: 0, errors: 0, ratePerSecond: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, cacheHitRate: null, sqlStatementsPerRequest: 0 })) };
    const trend = select.value === ""
      ? lastTrends.all
      : lastTrends.operations.find((t) => t.operation === select.value) || quiet;
    const points = trend.points;
    // What the charts drew, for a reader (and the browser test) to check against the API.
    $("chart-rate").dataset.requests = String(points.reduce((n, p) => n + p.count, 0));
    const labels = points.map((p) => p.minute.slice(11, 16));
    const busy = (f) => points.map((p) => (p.count ? f(p) : null));
    chart($("chart-rate"), [{ name: "rate", color: "#2457c5", values: points.map((p) => p.ratePerSecond) }], labels);
    chart($("chart-latency"), [
      { name: "p50", color: "#2457c5", values: busy((p) => p.p50Ms) },
      { name: "p95", color: "#8e44ad", values: busy((p) => p.p95Ms) },
      { name: "p99", color: "#d35400", values: busy((p) => p.p99Ms) },
    ], labels);
    chart($("chart-quality"), [
      { name: "errors", color: "#c62828", values: busy((p) => (p.errors / p.count) * 100) },
      { name: "hits", color: "#1a7f37", values: points.map((p) => (p.cacheHitRate === null ? null : p.cacheHitRate * 100)) },
      { name: "sql", color: "#2457c5", values: busy((p) => p.sqlStatementsPerRequest) },
    ], labels);
  }

  function render(data) {
    const { summary, stats, performance, cache, alerts, slowest, trends, health } = data;
    // Health.
    const status = $("health-status");
    status.textContent = health.status;
    status.className = health.status === "healthy" ? "ok" : health.status === "degraded" ? "warn" : "bad";
    const score = $("score");
    score.textContent = fmt.int(performance.score);
    score.className = "score " + (performance.score >= 80 ? "ok" : performance.score >= 50 ? "warn" : "bad");
    fill($("findings"), performance.findings, (row, f) => {
      row.dataset.rule = f.rule;
      cell(row, f.detail, "wrap");
      cell(row, f.recommendation, "wrap muted");
    }, "no findings");
    // Summary tiles.
    $("summary-requests").textContent = fmt.int(summary.requests);
    $("summary-error-rate").textContent = fmt.pct(summary.errorRate);
    $("summary-cache-hit-rate").textContent = fmt.pct(summary.cacheHitRate);
    $("summary-sql").textContent = fmt.num(summary.sqlStatementsPerRequest);
    // Errors by code.
    const codes = Object.entries(summary.errorsByCode || {}).sort((a, b) => b[1] - a[1]);
    fill($("errors"), codes, (row, [code, n]) => {
      row.dataset.code = code;
      cell(row, code);
      cell(row, fmt.int(n), "num").dataset.field = "count";
      cell(row, fmt.pct(summary.requests ? n / summary.requests : 0), "num").dataset.field = "share";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = Math.max(2, Math.round((n / Math.max(1, codes[0][1])) * 120)) + "px";
      cell(row, "").appendChild(bar);
    }, "no errors");
    // Operations.
    fill($("operations"), stats.operations, (row, o) => {
      row.dataset.operation = o.operation;
      cell(row, o.operation).dataset.field = "operation";
      cell(row, fmt.int(o.count), "num").dataset.field = "count";
      cell(row, fmt.int(o.errors), "num").dataset.field = "errors";
      cell(row, fmt.ms(o.medianMs), "num").dataset.field = "p50";
      cell(row, fmt.ms(o.p95Ms), "num").dataset.field = "p95";
      cell(row, fmt.ms(o.p99Ms), "num").dataset.field = "p99";
      cell(row, fmt.num(o.sqlStatementsPerRequest), "num").dataset.field = "sql";
      cell(row, fmt.pct(o.cacheHitRate), "num").dataset.field = "hitRate";
    }, "no requests yet");
    // Cache.
    $("l1-entries").textContent = fmt.int(cache.l1.entries);
    $("l1-bytes").textContent = fmt.int(cache.l1.bytes);
    $("invalidations").textContent = fmt.int(cache.invalidations);
    const redis = $("redis");
    redis.textContent = !cache.redis.configured ? "off" : cache.redis.healthy ? "healthy" : "degraded";
    redis.className = "value " + (!cache.redis.configured ? "muted" : cache.redis.healthy ? "ok" : "bad");
    fill($("kinds"), cache.kinds, (row, k) => {
      const s = k.stats;
      const hits = s.l1Hits + s.l2Hits + s.staleWhileRevalidate + s.staleIfError;
      const lookups = hits + s.misses;
      row.dataset.kind = k.kind;
      cell(row, k.kind);
      cell(row, fmt.int(lookups), "num").dataset.field = "lookups";
      cell(row, lookups ? fmt.pct(hits / lookups) : "–", "num").dataset.field = "hitRate";
      cell(row, fmt.int(s.misses), "num").dataset.field = "misses";
      cell(row, fmt.ms(s.meanLoadMs), "num").dataset.field = "meanLoadMs";
    });
    const kindSelect = $("flush-kind");
    if (!kindSelect.options.length) {
      kindSelect.replaceChildren(...cache.kinds.map((k) => { const o = document.createElement("option"); o.value = k.kind; o.textContent = k.kind; return o; }));
    }
    // Alerts.
    fill($("alerts"), alerts.alerts, (row, a) => {
      row.dataset.rule = a.rule;
      row.className = a.active ? "bad" : "";
      cell(row, a.rule);
      cell(row, a.subject);
      cell(row, a.startedAt.slice(11, 19));
      cell(row, a.endedAt ? a.endedAt.slice(11, 19) : "active");
      const ratio = a.rule === "error_rate" || a.rule === "cache_hit_rate";
      cell(row, ratio ? fmt.pct(a.peak) : a.rule === "slow_operation" ? fmt.ms(a.peak) + " ms" : "yes", "num");
      cell(row, ratio ? fmt.pct(a.threshold) : a.rule === "slow_operation" ? fmt.ms(a.threshold) + " ms" : "", "num");
    }, "no alerts");
    // Slowest requests.
    fill($("slowest"), slowest.requests, (row, r) => {
      row.dataset.requestId = r.requestId;
      cell(row, r.at.slice(11, 23));
      cell(row, r.operation);
      cell(row, fmt.ms(r.durationMs), "num");
      cell(row, String(r.status), "num");
      const id = document.createElement("code"); id.textContent = r.requestId; cell(row, "").appendChild(id);
      const trace = document.createElement("code"); trace.textContent = r.traceId || "–"; cell(row, "").appendChild(trace);
    }, "no requests yet");
    fillOperationSelect(stats.operations.map((o) => o.operation));
    lastTrends = trends;
    drawTrends();
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  }

  const ENDPOINTS = {
    summary: "/api/bff/monitoring/summary",
    stats: "/api/bff/monitoring/stats",
    performance: "/api/management/performance",
    cache: "/api/management/cache/status",
    alerts: "/api/bff/monitoring/alerts",
    slowest: "/api/bff/monitoring/slowest",
  };
  // What a panel shows while its endpoint fails.
  const EMPTY = {
    summary: { requests: 0, errorRate: 0, cacheHitRate: null, sqlStatementsPerRequest: 0, errorsByCode: {} },
    stats: { operations: [] },
    performance: { score: 0, findings: [] },
    cache: { l1: { entries: 0, bytes: 0 }, invalidations: 0, redis: { configured: false }, kinds: [] },
    alerts: { alerts: [] },
    slowest: { requests: [] },
    trends: { all: null, operations: [] },
    health: { status: "unknown" },
  };

  // Every endpoint at once; one that fails leaves its panel empty and says so, the others draw.
  async function load() {
    const names = Object.keys(ENDPOINTS).concat(["trends", "health"]);
    const trendsPath = "/api/bff/monitoring/trends" + (drawn ? "?operation=" + encodeURIComponent(drawn) : "");
    const results = await Promise.allSettled(names.map((name) =>
      name === "trends" ? api(trendsPath)
        : name === "health" ? fetch("/api/bff/monitoring/health", { cache: "no-store" }).then((r) => r.json())
        : api(ENDPOINTS[name])));
    const denied = results.find((r) => r.status === "rejected" && r.reason instanceof Denied);
    if (denied) {
      sessionStorage.removeItem(KEY);
      showLogin(denied.reason.message);
      return false;
    }
    const data = {};
    const failed = [];
    results.forEach((r, i) => {
      if (r.status === "fulfilled") data[names[i]] = r.value;
      else { data[names[i]] = EMPTY[names[i]]; failed.push(String(r.reason && r.reason.message || r.reason)); }
    });
    showApp();
    $("app-error").textContent = failed.length ? "Not loaded: " + failed.join("; ") : "";
    try {
      render(data);
    } catch (error) {
      $("app-error").textContent += " " + String(error.message || error);
    }
    return true;
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = $("auto").checked ? setInterval(load, REFRESH_MS) : null;
  }

  async function action(label, path, body) {
    if (!window.confirm(label + "?")) return;
    const result = $("action-result");
    result.textContent = label + "…";
    try {
      const answer = await api(path, { method: "POST", body: JSON.stringify(body) });
      result.textContent = label + ": done " + JSON.stringify(answer);
      await load();
    } catch (error) {
      if (error instanceof Denied) { sessionStorage.removeItem(KEY); showLogin(error.message); return; }
      result.textContent = label + " failed: " + (error.message || error);
    }
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!value) { $("login-error").textContent = "Paste a token first."; return; }
    sessionStorage.setItem(KEY, value);
    $("token").value = "";
    if (await load()) schedule();
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(""); });
  $("refresh").addEventListener("click", load);
  $("auto").addEventListener("change", schedule);
  $("trend-operation").addEventListener("change", () => { drawn = $("trend-operation").value; load(); });
  $("flush-all").addEventListener("click", () => action("Flush every cache", "/api/management/cache/flush", { all: true }));
  $("flush-kind-button").addEventListener("click", () => {
    const kind = $("flush-kind").value;
    if (kind) action("Flush the " + kind + " cache", "/api/management/cache/flush", { kind: kind });
  });
  $("warmup").addEventListener("click", () => action("Warm up the cache", "/api/management/cache/warmup", {}));
  window.addEventListener("resize", drawTrends);

  if (token()) { load().then((ok) => { if (ok) schedule(); }); } else { showLogin(""); }
})();
