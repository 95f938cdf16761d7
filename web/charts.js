// Small SVG charts, no dependencies: line/scatter charts with several series,
// and stacked bars. Each returns an <svg class="chart"> element.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f6fed", "#e4572e", "#29a36a", "#a259d9", "#f2a541", "#17a2b8", "#d63384", "#6c757d"];

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return ticks;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "K";
    if (a >= 10 || v === 0) return v.toFixed(0);
    return v.toPrecision(2);
  }

  function frame(opts, xs, ys) {
    const W = opts.width || 520, H = opts.height || 300, m = { l: 56, r: 14, t: 22, b: 40 };
    const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "" });
    if (opts.title) el("text", { x: m.l, y: 14, "font-weight": 600, fill: "#1d2330" }, svg).textContent = opts.title;
    const xlo = opts.xMin ?? Math.min(...xs), xhi = Math.max(...xs);
    const ylo = opts.yMin ?? Math.min(0, ...ys), yhi = Math.max(...ys);
    const xt = niceTicks(xlo, xhi, 6), yt = niceTicks(ylo, yhi, 5);
    const x0 = Math.min(xlo, xt[0]), x1 = Math.max(xhi, xt[xt.length - 1]);
    const y0 = Math.min(ylo, yt[0]), y1 = Math.max(yhi, yt[yt.length - 1]);
    const sx = v => m.l + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - m.l - m.r);
    const sy = v => H - m.b - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (H - m.t - m.b);
    const grid = el("g", { class: "grid" }, svg), axis = el("g", { class: "axis" }, svg);
    for (const t of yt) {
      el("line", { x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t) }, grid);
      el("text", { x: m.l - 6, y: sy(t) + 4, "text-anchor": "end" }, axis).textContent = fmt(t);
    }
    if (!opts.categories) {
      for (const t of xt) el("text", { x: sx(t), y: H - m.b + 16, "text-anchor": "middle" }, axis).textContent = fmt(t);
    }
    el("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, axis);
    el("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, axis);
    if (opts.xLabel) el("text", { x: (W + m.l) / 2, y: H - 6, "text-anchor": "middle" }, axis).textContent = opts.xLabel;
    if (opts.yLabel) el("text", { x: 12, y: (H) / 2, transform: `rotate(-90 12 ${H / 2})`, "text-anchor": "middle" }, axis).textContent = opts.yLabel;
    return { svg, sx, sy, m, W, H };
  }

  /** series: [{name, points: [[x, y], ...]}] */
  function line(opts) {
    const pts = opts.series.flatMap(s => s.points).filter(p => isFinite(p[0]) && isFinite(p[1]));
    if (!pts.length) return empty(opts.title);
    const f = frame(opts, pts.map(p => p[0]), pts.map(p => p[1]));
    opts.series.forEach((s, i) => {
      const c = s.color || PALETTE[i % PALETTE.length];
      const good = s.points.filter(p => isFinite(p[0]) && isFinite(p[1])).sort((a, b) => a[0] - b[0]);
      if (good.length > 1 && !opts.scatterOnly) {
        el("polyline", { points: good.map(p => `${f.sx(p[0])},${f.sy(p[1])}`).join(" "), fill: "none", stroke: c, "stroke-width": 1.8 }, f.svg);
      }
      if (!opts.noDots) for (const p of good) {
        const d = el("circle", { cx: f.sx(p[0]), cy: f.sy(p[1]), r: 3.2, fill: c }, f.svg);
        el("title", {}, d).textContent = `${s.name}: ${fmt(p[0])}, ${p[1].toFixed(2)}${p[2] ? " (" + p[2] + ")" : ""}`;
      }
    });
    return withLegend(f.svg, opts.series.map((s, i) => [s.name, s.color || PALETTE[i % PALETTE.length]]));
  }

  /** categories: [label], stacks: [{name, values: [per category]}] */
  function stacked(opts) {
    const totals = opts.categories.map((_, i) => opts.stacks.reduce((a, s) => a + (s.values[i] || 0), 0));
    if (!totals.length) return empty(opts.title);
    const f = frame({ ...opts, categories: true, xMin: 0 }, [0, opts.categories.length], [0, ...totals]);
    const bw = (f.W - f.m.l - f.m.r) / opts.categories.length;
    opts.categories.forEach((cat, i) => {
      let acc = 0;
      const x = f.m.l + i * bw + bw * 0.15;
      opts.stacks.forEach((s, k) => {
        const v = s.values[i] || 0;
        const yTop = f.sy(acc + v), yBot = f.sy(acc);
        const r = el("rect", { x, y: yTop, width: bw * 0.7, height: Math.max(0, yBot - yTop), fill: PALETTE[k % PALETTE.length] }, f.svg);
        el("title", {}, r).textContent = `${cat} ${s.name}: ${v.toFixed(1)}`;
        acc += v;
      });
      el("text", { x: x + bw * 0.35, y: f.H - f.m.b + 16, "text-anchor": "middle" }, f.svg).textContent = cat;
    });
    return withLegend(f.svg, opts.stacks.map((s, k) => [s.name, PALETTE[k % PALETTE.length]]));
  }

  function withLegend(svg, items) {
    const box = document.createElement("div");
    box.appendChild(svg);
    const lg = document.createElement("div");
    lg.className = "legend";
    for (const [name, c] of items) {
      const s = document.createElement("span");
      s.style.setProperty("--c", c);
      s.textContent = name;
      lg.appendChild(s);
    }
    box.appendChild(lg);
    return box;
  }

  function empty(title) {
    const d = document.createElement("p");
    d.className = "muted";
    d.textContent = `${title || "Chart"}: no data`;
    return d;
  }

  return { line, stacked, PALETTE };
})();
