// The dashboard: charts of the logged distributions, every figure from GET /v1/stats.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const BUCKETS = 12;
  const PALETTE = ["#2f6fed", "#e8590c", "#12855b", "#c2255c", "#7048e8", "#0c8599", "#a61e4d", "#5c940d",
    "#d9480f", "#364fc7", "#087f5b", "#862e9c"];
  const W = 560, H = 220, PAD = { l: 40, r: 10, t: 10, b: 26 };
  const NS = "http://www.w3.org/2000/svg";
  let data = null, timer = null, loading = false;

  const status = (text, isError = false) => { $("status").textContent = text; $("status").classList.toggle("error", isError); };
  const iso = (ms) => encodeURIComponent(new Date(ms).toISOString());
  const hhmm = (ms, seconds) => new Date(ms).toLocaleString([], seconds > 86400
    ? { month: "short", day: "numeric", hour: "2-digit" } : { hour: "2-digit", minute: "2-digit", second: seconds <= 900 ? "2-digit" : undefined });

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function frame(maxY, yFormat, slices, seconds) {
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    for (const f of [0, 0.5, 1]) {
      const y = PAD.t + ih * (1 - f);
      svg.append(svgEl("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, stroke: "#e4e7ec" }));
      const label = svgEl("text", { x: PAD.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#667085" });
      label.textContent = yFormat(maxY * f);
      svg.append(label);
    }
    for (const i of [0, Math.floor(slices.length / 2), slices.length - 1]) {
      const x = PAD.l + iw * (i + 0.5) / slices.length;
      const label = svgEl("text", { x, y: H - 8, "text-anchor": "middle", "font-size": 10, fill: "#667085" });
      label.textContent = hhmm(slices[i].since, seconds);
      svg.append(label);
    }
    return { svg, iw, ih, x: (i) => PAD.l + iw * (i + 0.5) / slices.length, y: (v) => PAD.t + ih * (1 - v / (maxY || 1)) };
  }

  function legend(container, entries) {
    container.replaceChildren(...entries.map(([name, colour]) => VC.el("span", { style: `--c:${colour}`, text: name })));
  }

  function empty(container, text) {
    container.replaceChildren(VC.el("p", { class: "muted", text }));
  }

  function lineChart(container, legendBox, series, maxY, yFormat) {
    const { slices, seconds } = data;
    const f = frame(maxY, yFormat, slices, seconds);
    series.forEach(([name, values], k) => {
      const colour = PALETTE[k % PALETTE.length];
      let d = "";
      values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        d += (d && values[i - 1] !== null && values[i - 1] !== undefined ? "L" : "M") + f.x(i).toFixed(1) + "," + f.y(v).toFixed(1);
        f.svg.append(svgEl("circle", { class: "point", cx: f.x(i), cy: f.y(v), r: 2.5, fill: colour }));
      });
      if (d) f.svg.append(svgEl("path", { d, fill: "none", stroke: colour, "stroke-width": 2 }));
    });
    container.replaceChildren(f.svg);
    legend(legendBox, series.map(([name], k) => [name, PALETTE[k % PALETTE.length]]));
  }

  function groupsOf(stats, model) { return stats.groups.filter((g) => g.model === model); }

  function drawLabels(model) {
    const { parts, slices, seconds } = data;
    const labels = [...new Set(parts.flatMap((p) => groupsOf(p, model).map((g) => g.label)))].sort();
    const counts = parts.map((p) => {
      const c = {};
      for (const g of groupsOf(p, model)) c[g.label] = (c[g.label] || 0) + g.count;
      return c;
    });
    const totals = counts.map((c) => Object.values(c).reduce((a, b) => a + b, 0));
    const maxY = Math.max(1, ...totals);
    if (!labels.length) { empty($("chart-labels"), "No events of this model in the window."); legend($("legend-labels"), []); return; }
    const f = frame(maxY, (v) => Math.round(v).toString(), slices, seconds);
    const bw = f.iw / slices.length * 0.7;
    counts.forEach((c, i) => {
      let base = 0;
      labels.forEach((label, k) => {
        const n = c[label] || 0;
        if (!n) return;
        const rect = svgEl("rect", { class: "bar", x: f.x(i) - bw / 2, width: bw, y: f.y(base + n), height: f.y(base) - f.y(base + n), fill: PALETTE[k % PALETTE.length] });
        const title = svgEl("title"); title.textContent = `${label}: ${n}`; rect.append(title);
        f.svg.append(rect);
        base += n;
      });
    });
    $("chart-labels").replaceChildren(f.svg);
    legend($("legend-labels"), labels.map((l, k) => [l, PALETTE[k % PALETTE.length]]));
  }

  function drawConfidence(model) {
    const mean = [], below = [];
    for (const p of data.parts) {
      const gs = groupsOf(p, model);
      const n = gs.reduce((a, g) => a + g.count, 0);
      mean.push(n ? gs.reduce((a, g) => a + g.count * g.mean_top_probability, 0) / n : null);
      below.push(n ? gs.reduce((a, g) => a + g.count * g.share_below_confidence, 0) / n : null);
    }
    if (mean.every((v) => v === null)) { empty($("chart-confidence"), "No events of this model in the window."); legend($("legend-confidence"), []); return; }
    lineChart($("chart-confidence"), $("legend-confidence"),
      [["mean top probability", mean], [`share below ${data.confidence}`, below]], 1, (v) => v.toFixed(1));
  }

  function drawDrift(model) {
    const contexts = [...new Set(data.parts.flatMap((p) => p.drift.filter((d) => d.model === model).map((d) => d.context)))].sort();
    const series = contexts.map((context) => [context, data.parts.map((p) => {
      const d = p.drift.find((x) => x.model === model && x.context === context);
      return d ? d.total_variation : null;
    })]);
    if (!series.some(([, v]) => v.some((x) => x !== null))) {
      empty($("chart-drift"), "Drift needs events in two consecutive intervals."); legend($("legend-drift"), []); return;
    }
    lineChart($("chart-drift"), $("legend-drift"), series, 1, (v) => v.toFixed(1));
  }

  function table(node, head, rows) {
    const numeric = head.map((h) => h.endsWith("#"));
    node.replaceChildren(
      VC.el("thead", {}, VC.el("tr", {}, ...head.map((h, i) => VC.el("th", { class: numeric[i] ? "num" : "", text: h.replace(/#$/, "") })))),
      VC.el("tbody", {}, ...rows.map((r) => VC.el("tr", {}, ...r.map((v, i) => VC.el("td", { class: numeric[i] ? "num" : "", text: v }))))));
  }

  const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : v.toFixed(digits));

  function draw() {
    if (!data) return;
    const model = $("model").value;
    drawLabels(model);
    drawConfidence(model);
    drawDrift(model);
    const groups = data.whole.groups;
    table($("summary"), ["model", "context", "top label", "events#", "mean top p#", "mean entropy (nats)#", "share below#"],
      groups.length ? groups.map((g) => [g.model, g.context, g.label, String(g.count), fmt(g.mean_top_probability),
        fmt(g.mean_entropy), fmt(g.share_below_confidence)]) : [["no events in the window", "", "", "", "", "", ""]]);
    table($("drift-table"), ["model", "context", "events#", "before#", "total variation#", "JS (bits)#"],
      data.whole.drift.map((d) => [d.model, d.context, String(d.count), String(d.reference_count), fmt(d.total_variation), fmt(d.js_divergence)]));
  }

  function fillModels() {
    const models = [...new Set([data.whole, ...data.parts].flatMap((s) => s.groups.map((g) => g.model)))].sort();
    const current = $("model").value;
    $("model").replaceChildren(...models.map((m) => VC.el("option", { value: m, text: m })));
    if (models.includes(current)) $("model").value = current;
  }

  async function load() {
    if (loading) return;
    loading = true;
    const seconds = Number($("window").value);
    const confidence = Math.min(1, Math.max(0, Number($("confidence").value) || 0.5));
    const end = Date.now(), step = seconds * 1000 / BUCKETS;
    const slices = [...Array(BUCKETS).keys()].map((i) => ({ since: end - seconds * 1000 + i * step, until: end - seconds * 1000 + (i + 1) * step }));
    const ask = (since, until) => VC.api(`/v1/stats?since=${iso(since)}&until=${iso(until)}&confidence=${confidence}`);
    try {
      const [whole, ...parts] = await Promise.all([ask(end - seconds * 1000, end), ...slices.map((s) => ask(s.since, s.until))]);
      data = { whole, parts, slices, seconds, confidence };
      fillModels();
      draw();
      const events = whole.groups.reduce((a, g) => a + g.count, 0);
      status(`${events} model answers in the window · updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      status(error.status === 401 || error.status === 403 ? "Enter a read key: " + error.message : error.message, true);
    } finally {
      loading = false;
    }
  }

  function schedule() {
    clearInterval(timer);
    const every = Number($("refresh").value);
    if (every > 0) timer = setInterval(load, every * 1000);
  }

  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("reload").addEventListener("click", load);
  $("window").addEventListener("change", load);
  $("confidence").addEventListener("change", load);
  $("model").addEventListener("change", draw);
  $("refresh").addEventListener("change", schedule);
  VC.bindKeyInput($("key"), load);
  schedule();
  load();
})();
