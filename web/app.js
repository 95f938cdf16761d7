// The results page: stored runs, one run with its tables and charts, and
// comparisons. Hash routes: #/  #/run/ID  #/compare/ID,ID,...
"use strict";

const app = document.getElementById("app");
const statusEl = document.getElementById("status");

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

/** Replaces the page's content; nested arrays and nulls are allowed. */
function render(...items) {
  app.replaceChildren(...items.flat(Infinity).filter(x => x !== null && x !== undefined && x !== false));
}

async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function table(columns, rows, opts = {}) {
  const t = h("table", { id: opts.id, class: opts.class });
  t.appendChild(h("thead", {}, h("tr", {}, columns.map(c => h("th", {}, c)))));
  const tb = h("tbody");
  for (const r of rows) {
    const tr = h("tr", { class: r.rowClass });
    (r.cells || r).forEach((c, i) => {
      const cell = c instanceof Node ? c : String(c ?? "");
      const cls = typeof c === "number" ? "num" : (cell === "✓" ? "pass" : cell === "✗" ? "fail" : undefined);
      tr.appendChild(h("td", { class: cls }, cell));
    });
    tb.appendChild(tr);
  }
  t.appendChild(tb);
  return t;
}

const fmt = (v, d = 1) => (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toFixed(d);
const mean = a => a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN;
const pixels = r => r.images && r.images.length ? r.images[0].width * r.images[0].height : 0;

function statusBadge(s) {
  const v = s.verdict_passed === true ? " ✓" : s.verdict_passed === false ? " ✗" : "";
  const cls = s.status === "completed" && s.verdict_passed !== false ? "pass" : (s.status === "running" ? "" : "fail");
  return h("span", { class: cls }, s.status + v);
}

function modelCell(s) {
  const note = [s.model_quantization, s.model_synthetic ? "synthetic" : ""].filter(x => x).join(", ");
  return h("span", {}, s.model_name, " ", note ? h("span", { class: "badge" + (s.model_synthetic ? " synthetic" : "") }, note) : null);
}

// --- the runs list ---

async function viewRuns(params) {
  const q = new URLSearchParams(params);
  const [facets, data] = await Promise.all([api("/api/facets"), api("/api/runs?" + q.toString())]);
  const select = (name, values) => h("label", {}, name,
    h("select", { name, onchange: applyFilters }, h("option", { value: "" }, "all"),
      values.map(v => h("option", { value: v, selected: q.get(name) === v }, v))));
  function applyFilters() {
    const f = new URLSearchParams();
    for (const el of app.querySelectorAll(".filters select, .filters input")) if (el.value) f.set(el.name, el.value);
    location.hash = "#/?" + f.toString();
  }
  const selected = new Set();
  const compareBtn = h("button", { disabled: true, onclick: () => { location.hash = "#/compare/" + [...selected].sort((a, b) => a - b).join(","); } }, "Compare selected");
  const rows = data.runs.map(r => ({
    cells: [
      h("input", { type: "checkbox", onchange: e => { e.target.checked ? selected.add(r.id) : selected.delete(r.id); compareBtn.disabled = selected.size < 2; } }),
      h("a", { href: `#/run/${r.id}` }, String(r.id)), r.started_at.replace("T", " ").slice(0, 19), statusBadge(r),
      `${r.plugin_name} ${r.plugin_version}`, modelCell(r), engineText(r), r.requests,
    ],
  }));
  const offset = Number(q.get("offset") || 0), limit = Number(q.get("limit") || 200);
  const page = (o) => { const p = new URLSearchParams(q); p.set("offset", String(Math.max(0, o))); location.hash = "#/?" + p.toString(); };
  render(
    h("h1", {}, "Runs"),
    h("div", { class: "filters" },
      select("plugin", facets.plugins), select("model", facets.models), select("device", facets.devices), select("status", facets.statuses),
      h("label", {}, "since", h("input", { type: "date", name: "since", value: q.get("since") || "", onchange: applyFilters })),
      compareBtn),
    data.runs.length ? table(["", "Run", "Started (UTC)", "Status", "Plugin", "Model", "Engine", "Requests"], rows, { id: "runs-table" })
      : h("p", { class: "muted" }, "No runs yet. Record one with `host run --plugin resolution_sweep.wasm`."),
    h("p", { class: "muted" }, `${data.runs.length ? offset + 1 : 0}–${offset + data.runs.length} of ${data.total} runs `,
      offset > 0 ? h("button", { onclick: () => page(offset - limit) }, "‹ newer") : null, " ",
      offset + data.runs.length < data.total ? h("button", { onclick: () => page(offset + limit) }, "older ›") : null),
  );
}

// --- one run ---

const engineText = s => s.endpoint ? `server at ${s.endpoint}` + (s.device && s.device !== s.endpoint ? ` (${s.device})` : "") : `${s.backend} · ${s.device}`;

function byLabel(requests) {
  const groups = new Map();
  for (const r of requests) {
    if (r.warmup || r.error) continue;
    if (!groups.has(r.label)) groups.set(r.label, []);
    groups.get(r.label).push(r);
  }
  return [...groups.entries()].map(([label, rs]) => ({
    label, rs, pixels: pixels(rs[0]),
    time: mean(rs.map(r => r.total_ms / 1e3)), tokens: mean(rs.map(r => r.output_tokens)),
    ttft: mean(rs.map(r => r.ttft_ms)), decode: mean(rs.map(r => r.decode_tok_s).filter(x => x !== null)),
    pre: mean(rs.map(r => r.preprocess_ms)), vision: mean(rs.map(r => r.vision_ms)),
    prefill: mean(rs.map(r => r.prefill_ms)), decodeMs: mean(rs.map(r => r.decode_ms)),
  }));
}

const quantile = (a, q) => {
  if (!a.length) return NaN;
  const v = [...a].sort((x, y) => x - y), i = (v.length - 1) * q, lo = Math.floor(i);
  return v[lo] + (v[Math.min(lo + 1, v.length - 1)] - v[lo]) * (i - lo);
};

// Load levels: labels whose requests ran at the same time (a serving sweep's
// `c=N` and `rate=R`), each as output throughput over the level's span and
// its median latencies.
function loadLevels(groups) {
  const levels = [];
  for (const g of groups) {
    const rs = g.rs.filter(r => r.sent_at_ms !== null && r.sent_at_ms !== undefined);
    if (rs.length < 2) continue;
    const spans = rs.map(r => [r.sent_at_ms, r.sent_at_ms + r.total_ms]).sort((a, b) => a[0] - b[0]);
    let overlap = false, end = -Infinity;
    for (const [a, b] of spans) { if (a < end) overlap = true; end = Math.max(end, b); }
    if (!overlap) continue;
    const span = (end - spans[0][0]) / 1e3;
    const tokens = rs.reduce((t, r) => t + r.output_tokens, 0);
    levels.push({ label: g.label, tokS: tokens / span, e2e: quantile(rs.map(r => r.total_ms), 0.5), ttft: quantile(rs.map(r => r.ttft_ms), 0.5) });
  }
  return levels;
}

function loadCharts(runs) {
  const series = (f) => runs.map(({ name, levels }) => ({ name, points: levels.map(l => [l.tokS, f(l), l.label]) }));
  return [
    h("div", { class: "card" }, Charts.line({ title: "Median end-to-end latency against output throughput", xLabel: "output tok/s", yLabel: "ms", xMin: 0, series: series(l => l.e2e) })),
    h("div", { class: "card" }, Charts.line({ title: "Median TTFT against output throughput", xLabel: "output tok/s", yLabel: "ms", xMin: 0, series: series(l => l.ttft) })),
  ];
}

function runCharts(groups, requests) {
  const withPx = groups.filter(g => g.pixels > 0);
  const charts = h("div", { class: "grid" });
  const levels = loadLevels(groups);
  if (levels.length) for (const c of loadCharts([{ name: "load levels", levels }])) charts.appendChild(c);
  if (withPx.length && !levels.length) {
    charts.appendChild(h("div", { class: "card" }, Charts.line({ title: "Speed against pixels", xLabel: "pixels", yLabel: "tok/s",
      series: [{ name: "Speed (tokens / request time)", points: withPx.map(g => [g.pixels, g.tokens / g.time, g.label]) },
               { name: "Decode tok/s", points: withPx.map(g => [g.pixels, g.decode, g.label]) }] })));
    charts.appendChild(h("div", { class: "card" }, Charts.line({ title: "TTFT against pixels", xLabel: "pixels", yLabel: "ms",
      series: [{ name: "TTFT", points: withPx.map(g => [g.pixels, g.ttft, g.label]) }] })));
  }
  if (groups.length) {
    charts.appendChild(h("div", { class: "card" }, Charts.stacked({ title: "Stage breakdown per request (ms)", yLabel: "ms",
      categories: groups.map(g => g.label),
      stacks: [{ name: "preprocess", values: groups.map(g => g.pre) }, { name: "vision", values: groups.map(g => g.vision) },
               { name: "prefill", values: groups.map(g => g.prefill) }, { name: "decode", values: groups.map(g => g.decodeMs) }] })));
    charts.appendChild(h("div", { class: "card" }, Charts.line({ title: "Per-token timeline (first measured request per label)",
      xLabel: "output token", yLabel: "ms since request start", noDots: true,
      series: groups.map(g => ({ name: g.label, points: (g.rs[0].token_times_ms || []).map((t, i) => [i + 1, t]) })) })));
  }
  return charts;
}

// What the host sampled while the run ran: memory in one chart, GPU
// utilisation and power in another.
function sampleCharts(samples) {
  const series = new Map();
  for (const x of samples) {
    if (!series.has(x.name)) series.set(x.name, []);
    series.get(x.name).push([x.t_ms / 1e3, x.value]);
  }
  const pick = (test, scale) => [...series.entries()].filter(([n]) => test(n))
    .map(([name, pts]) => ({ name, points: pts.map(([t, v]) => [t, v * scale]) }));
  const memory = pick(n => n.endsWith("_bytes"), 1 / 2 ** 20);
  const gpu = pick(n => n.endsWith(".utilization_pct") || n.endsWith(".power_w"), 1);
  const charts = h("div", { class: "grid", id: "telemetry" });
  if (memory.length) charts.appendChild(h("div", { class: "card" }, Charts.line({ title: "Memory over the run (MiB)", xLabel: "s", yLabel: "MiB", xMin: 0, noDots: true, series: memory })));
  if (gpu.length) charts.appendChild(h("div", { class: "card" }, Charts.line({ title: "GPU utilisation (%) and power (W)", xLabel: "s", yLabel: "% or W", xMin: 0, noDots: true, series: gpu })));
  return charts;
}

async function viewRun(id) {
  const d = await api(`/api/runs/${encodeURIComponent(id)}`);
  const s = d.summary;
  const groups = byLabel(d.requests);
  const meta = h("dl", { class: "meta" },
    h("dt", {}, "status"), h("dd", {}, statusBadge(s), s.error ? h("span", { class: "fail" }, " " + s.error) : null),
    d.verdict_summary ? [h("dt", {}, "verdict"), h("dd", { class: s.verdict_passed ? "pass" : "fail" }, (s.verdict_passed ? "PASS " : "FAIL ") + d.verdict_summary)] : null,
    h("dt", {}, "started"), h("dd", {}, s.started_at + (s.ended_at ? ` → ${s.ended_at}` : "")),
    h("dt", {}, "plugin"), h("dd", {}, `${s.plugin_name} ${s.plugin_version} (${d.plugin_wit}, blake3 ${d.plugin_blake3.slice(0, 16)}…)`),
    h("dt", {}, "model"), h("dd", {}, modelCell(s), ` ${d.model_path}`),
    h("dt", {}, "engine"), h("dd", {}, s.endpoint ? `${engineText(s)}; measured by host ${s.host_version} (${d.host_commit})` : `MLX ${d.mlx_version}, ${s.backend}, ${s.device}; host ${s.host_version} (${d.host_commit})`),
    h("dt", {}, "machine"), h("dd", {}, `${d.machine.cpu || ""}, ${d.machine.cores || "?"} cores, ${fmt((d.machine.memory_bytes || 0) / 2 ** 30)} GiB`),
    h("dt", {}, "params"), h("dd", {}, h("code", {}, JSON.stringify(d.params))),
  );
  // A server does not report stages, image tokens or memory: dashes.
  const known = (r, v) => r.remote ? "–" : v;
  const reqRows = d.requests.map(r => ({
    rowClass: r.error ? "failed" : r.warmup ? "warmup" : undefined,
    cells: [r.seq, r.label + (r.warmup ? " (warm-up)" : ""), r.images.map(i => `${i.width}x${i.height}`).join(", "),
      known(r, r.image_tokens), r.prompt_tokens, r.output_tokens, known(r, fmt(r.preprocess_ms)), known(r, fmt(r.vision_ms)), fmt(r.ttft_ms), fmt(r.total_ms),
      fmt(r.speed_tok_s), fmt(r.decode_tok_s), fmt(r.itl_p50_ms, 2), fmt(r.itl_p99_ms, 2), `${r.cache_prefix} ${r.cache_reused_tokens}`,
      known(r, fmt(r.peak_memory_bytes / 1e6)), r.error ? `${r.error_kind}: ${r.error}`.slice(0, 120) : r.output_preview.slice(0, 60)],
  }));
  render(
    h("h1", {}, `Run ${s.id}: ${s.plugin_name}`),
    s.model_synthetic ? h("p", { class: "muted" }, "Synthetic (random) weights: outputs are meaningless, timings are real.") : null,
    meta,
    h("p", {}, "Export: ", ["md", "csv", "json"].map(f => [h("a", { href: `/api/runs/${s.id}/export?format=${f}` }, f), " "])),
    // The plugin's own "Results" table, or the store's, made from the measured requests.
    d.resolution_table && !d.tables.some(t => t.name === "Results")
      ? [h("h2", {}, "Results (from the stored requests)"),
         table(d.resolution_table.columns, d.resolution_table.rows, { id: "resolution-table" })] : null,
    groups.length ? [h("h2", {}, "Charts"), runCharts(groups, d.requests)] : null,
    d.samples && d.samples.length ? [h("h2", {}, "Telemetry"), sampleCharts(d.samples)] : null,
    d.tables.map(t => [h("h2", {}, t.name), table(t.columns, t.rows, { class: "plugin-table" })]),
    d.notes.length ? [h("h2", {}, "Notes"), d.notes.map(n => h("p", {}, n.replace(/\*\*/g, "")))] : null,
    d.metrics.length ? [h("h2", {}, "Metrics"), table(["Metric", "Value", "Unit"], d.metrics.map(m => [m.name, m.value, m.unit]))] : null,
    d.requests.length ? [h("h2", {}, `Requests (${d.requests.length})`), table(["#", "Label", "Images", "Image tok", "Prompt tok", "Out tok",
      "Preproc ms", "Vision ms", "TTFT ms", "Total ms", "Speed", "Decode tok/s", "ITL p50", "ITL p99", "Cache", "Peak MB", "Output or error"], reqRows)] : null,
    d.logs.length ? [h("h2", {}, "Log"), h("pre", {}, d.logs.map(l => `${l.at} ${l.level} ${l.message}`).join("\n"))] : null,
  );
}

// --- comparison ---

async function viewCompare(ids) {
  const d = await api(`/api/compare?ids=${encodeURIComponent(ids)}`);
  const series = (f) => d.requests.map((r, i) => ({ name: `run ${r.id}`, points: byLabel(r.requests).filter(g => g.pixels > 0).map(g => [g.pixels, f(g), g.label]) }));
  const cmp = d.comparison;
  const loads = d.requests.map(r => ({ name: `run ${r.id}`, levels: loadLevels(byLabel(r.requests)) }));
  const rows = cmp.figures.map(f => [f.label, f.figure, ...f.values.map((v, i) => {
    if (!v) return "–";
    let c = v[2] > 1 ? `${fmt(v[0], 2)} ± ${fmt(v[1], 2)} (n=${v[2]})` : fmt(v[0], 2);
    if (i > 0 && f.ratios[i]) c += ` ×${fmt(f.ratios[i], 2)}` + (f.significant[i] === true ? " beyond noise" : f.significant[i] === false ? " within noise" : "");
    return c;
  })]);
  render(
    h("h1", {}, "Comparison"),
    table(["Run", "Plugin", "Model", "Engine", "Started"], d.runs.map(s => [h("a", { href: `#/run/${s.id}` }, String(s.id)), s.plugin_name, modelCell(s), engineText(s), s.started_at])),
    loads.some(l => l.levels.length) ? h("div", { class: "grid", id: "compare-load" }, loadCharts(loads)) : null,
    h("div", { class: "grid" },
      h("div", { class: "card" }, Charts.line({ title: "Speed against pixels", xLabel: "pixels", yLabel: "tok/s", series: series(g => g.tokens / g.time) })),
      h("div", { class: "card" }, Charts.line({ title: "TTFT against pixels", xLabel: "pixels", yLabel: "ms", series: series(g => g.ttft) })),
      h("div", { class: "card" }, Charts.line({ title: "Decode speed against pixels", xLabel: "pixels", yLabel: "tok/s", series: series(g => g.decode) }))),
    h("h2", {}, "Figures (first run is the base; noise: |Δ| > 2·combined standard error)"),
    table(["Label", "Figure", ...cmp.runs.map((id, i) => i ? `run ${id}` : `run ${id} (base)`)], rows, { id: "compare-table" }),
  );
}

async function route() {
  const hash = location.hash || "#/";
  statusEl.textContent = "";
  try {
    let m;
    if ((m = hash.match(/^#\/run\/(\d+)/))) await viewRun(m[1]);
    else if ((m = hash.match(/^#\/compare\/([\d,]+)/))) await viewCompare(m[1]);
    else await viewRuns(Object.fromEntries(new URLSearchParams(hash.split("?")[1] || "")));
  } catch (e) {
    render(h("h1", {}, "Error"), h("p", { class: "error" }, String(e.message || e)), h("p", {}, h("a", { href: "#/" }, "Back to the runs")));
  }
  document.body.dataset.ready = "1";
}

window.addEventListener("hashchange", route);
route();
