// The leaderboard page: vanilla JS over the board embedded as JSON (see leaderboard/html.py).
// All text from the data goes through textContent (never innerHTML): prompts and outputs are data.
"use strict";

(function () {
  const DOC = JSON.parse(document.getElementById("board-data").textContent);
  const BOARD = DOC.board;
  // [{name, title, categories, scale, stratum, unit, shown: [{key, label}]}]: what each benchmark's
  // reader declares (leaderboard/html.py); nothing below names a benchmark.
  const BENCHMARKS = DOC.benchmarks;
  const ENTRIES = new Map(BOARD.entries.map((e) => [e.id, e]));
  const MAIN_GROUP = (BOARD.groups.find((g) => g.main) || BOARD.groups[0] || {}).id;
  const FONT = getComputedStyle(document.documentElement).fontFamily;
  const COLORS = ["#2f5fd0", "#d0562f", "#2f9e5b", "#9b3fb5", "#c9a300", "#1aa3b8", "#b83a6d", "#6b6b6b"];

  const state = {
    group: MAIN_GROUP,
    showAll: false,
    sort: { key: "rank", dir: 1 },
    selected: [], // entry ids, in the order they were ticked (colours follow it)
    questions: null, // the drill-down document, parsed when the drill-down (or the diff) first opens
    diff: null, // {a, b, filter: {b, s} | null, shown, result}: the two evaluations compared
    shown: 50,
  };

  // ---- helpers ---------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = (v, digits = 4) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));

  function runtime(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    if (seconds < 120) return seconds.toFixed(0) + "s";
    if (seconds < 7200) return (seconds / 60).toFixed(1) + "m";
    return (seconds / 3600).toFixed(1) + "h";
  }

  // Cost figures (entry.cost: leaderboard/model.py, api/v1alpha1/cost.py). Unknown is "—", never 0:
  // an evaluation without a cost record, a judge without a price, GPU-seconds held outside the cluster.
  const UNKNOWN = "—";
  const gpuHours = (e) => (e.cost && e.cost.gpu_seconds_held !== null ? e.cost.gpu_seconds_held / 3600 : null);
  const judgeCost = (e) => (e.cost && e.cost.judge_cost !== null ? e.cost.judge_cost : null);
  const money = (e) => (judgeCost(e) === null ? UNKNOWN : (judgeCost(e).toFixed(2) + " " + (e.cost.currency || "")).trim());
  // The runtime scatter's second axis: one of these against the formula (the select above the chart).
  const COST_AXES = {
    gpu_hours: { label: "GPU-hours held", value: gpuHours, hover: "%{x:.2f} GPU-h" },
    judge_cost: { label: "judge cost", value: judgeCost, hover: "judge %{x:.2f}" },
  };

  function marks(entry) {
    const out = [];
    if (entry.capped) out.push("capped");
    if (entry.synthetic_judge) out.push("synthetic judge");
    if (entry.degraded) out.push("degraded");
    return out;
  }

  function colorOf(id) {
    const i = state.selected.indexOf(id);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }

  // ---- columns ---------------------------------------------------------------------------------

  // "1–3", "2" for a single rank, "-" without one (an entry without per-question data, or unranked).
  function rankText(interval) {
    if (!interval) return "-";
    return interval.low === interval.high ? String(interval.low) : interval.low + "–" + interval.high;
  }

  // Every sortable column: key (data-key of its header), label, value(entry) for sorting, and
  // cell(entry) for display; `ci(entry)` where an interval exists; `title` for its header.
  function columns() {
    const cols = [
      { key: "rank", label: "#", value: (e) => e.rank, cell: (e) => (e.rank === null ? "-" : e.rank + (e.tied_with_above ? "≈" : "")) },
      {
        key: "ranks",
        label: "ranks",
        title: "the ranks taken across the bootstrap resamples",
        // best rank first, then the narrower interval
        value: (e) => (e.rank_interval ? e.rank_interval.low * 1e6 + e.rank_interval.high : null),
        cell: (e) => rankText(e.rank_interval),
      },
      { key: "model", label: "model", cls: "model", value: (e) => e.model, cell: modelCell },
      { key: "overall", label: BOARD.formula, value: (e) => e.overall, ci: (e) => e.overall_ci },
    ];
    for (const b of BENCHMARKS) {
      cols.push({
        key: b.name,
        label: b.title,
        value: (e) => (e.benchmarks[b.name] ? e.benchmarks[b.name].avg : null),
        ci: (e) => (e.benchmarks[b.name] ? e.benchmarks[b.name].ci : null),
      });
    }
    for (const b of BENCHMARKS) {
      for (const c of b.categories) {
        cols.push({
          key: b.name + ":" + c,
          label: b.name + " " + c,
          value: (e) => (e.benchmarks[b.name] ? e.benchmarks[b.name].categories[c] : null),
          ci: (e) => (e.benchmarks[b.name] ? e.benchmarks[b.name].category_ci[c] : null),
        });
      }
    }
    cols.push({ key: "runtime", label: "runtime", value: (e) => e.runtime_seconds, cell: (e) => runtime(e.runtime_seconds) });
    cols.push({
      key: "gpu_hours",
      label: "GPU-h",
      title: "GPU-hours held: the wall time of the Jobs that held GPUs × their GPUs",
      value: gpuHours,
      cell: (e) => (gpuHours(e) === null ? UNKNOWN : gpuHours(e).toFixed(2)),
    });
    cols.push({
      key: "judge_cost",
      label: "judge cost",
      title: "the judge's tokens at the price table's prices",
      value: judgeCost,
      cell: money,
    });
    return cols;
  }

  // The provenance details each benchmark shows beside a model ("<label> <value>"), each key once.
  function shownDetails(details) {
    const seen = new Set();
    const out = [];
    for (const b of BENCHMARKS) {
      for (const d of b.shown || []) {
        if (seen.has(d.key)) continue;
        seen.add(d.key);
        if (details[d.key] !== null && details[d.key] !== undefined) out.push(d.label + " " + details[d.key]);
      }
    }
    return out;
  }

  function modelCell(entry) {
    const p = entry.provenance.details;
    const about = [
      "evaluation " + entry.id,
      entry.revision ? "revision " + entry.revision : null,
      entry.started_at ? "started " + entry.started_at : null,
      ...shownDetails(p),
      "protocol group " + entry.group,
      entry.source,
    ].filter(Boolean).join("\n");
    const cell = el("span", { title: about }, entry.model);
    for (const m of marks(entry)) cell.append(el("span", { class: "mark", text: m }));
    if (entry.state !== "ranked") cell.append(el("span", { class: "mark", text: entry.state, title: entry.reasons.join("; ") }));
    return cell;
  }

  // ---- ranking table ---------------------------------------------------------------------------

  function visibleEntries() {
    return BOARD.entries.filter((e) => e.group === state.group && (state.showAll || e.state === "ranked"));
  }

  function sortedEntries() {
    const col = columns().find((c) => c.key === state.sort.key) || columns()[0];
    const rows = visibleEntries().slice();
    rows.sort((a, b) => {
      const va = col.value(a);
      const vb = col.value(b);
      if (va === vb) return (a.rank || 1e9) - (b.rank || 1e9);
      if (va === null || va === undefined) return 1; // missing values last, either direction
      if (vb === null || vb === undefined) return -1;
      if (typeof va === "string") return state.sort.dir * va.localeCompare(vb);
      return state.sort.dir * (va - vb);
    });
    return rows;
  }

  function renderTable() {
    const table = document.getElementById("ranking");
    const cols = columns();
    const head = el("tr", {}, el("th", { "data-key": "select", title: "compare" }, "✓"));
    for (const col of cols) {
      const sorted = state.sort.key === col.key ? (state.sort.dir > 0 ? "ascending" : "descending") : null;
      const th = el("th", { "data-key": col.key, class: col.cls, "aria-sort": sorted, title: col.title }, col.label);
      th.addEventListener("click", () => sortBy(col.key));
      head.append(th);
    }
    table.tHead.replaceChildren(head);
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const entry of sortedEntries()) {
      const box = el("input", { type: "checkbox", "data-entry": entry.id, "aria-label": "compare " + entry.model });
      box.checked = state.selected.includes(entry.id);
      box.addEventListener("change", () => select(entry.id, box.checked));
      const classes = [entry.state === "ranked" ? "" : "unranked", box.checked ? "selected" : ""].join(" ").trim();
      const tr = el("tr", { "data-entry": entry.id, class: classes || null }, el("td", {}, box));
      for (const col of cols) {
        const td = el("td", { class: col.cls, "data-key": col.key });
        if (col.cell) td.append(col.cell(entry));
        else td.append(fmt(col.value(entry)));
        const ci = col.ci ? col.ci(entry) : null;
        if (ci) td.append(el("span", { class: "ci", text: "[" + fmt(ci.low) + ", " + fmt(ci.high) + "]" }));
        tr.append(td);
      }
      body.append(tr);
    }
    const group = BOARD.groups.find((g) => g.id === state.group);
    const note = document.getElementById("group-note");
    note.textContent =
      group && !group.main
        ? "Group " + group.id + " " + group.note + "; its ranks are its own."
        : "";
  }

  function sortBy(key) {
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key: key, dir: ["rank", "ranks", "model", "gpu_hours", "judge_cost"].includes(key) ? 1 : -1 }; // scores: best first, costs: cheapest first
    renderTable();
  }

  // ---- selection -------------------------------------------------------------------------------

  function select(id, on) {
    const has = state.selected.includes(id);
    if (on && !has) state.selected.push(id);
    if (!on && has) state.selected = state.selected.filter((x) => x !== id);
    renderTable();
    renderRadars();
    renderVerdict();
    renderScatter();
    renderTokens();
    if (state.questions) renderDrill();
  }

  // ---- radar charts ----------------------------------------------------------------------------

  function renderRadars() {
    const host = document.getElementById("radars");
    for (const b of BENCHMARKS) {
      if (!b.categories.length) continue;
      const id = "radar-" + b.name;
      let div = document.getElementById(id);
      if (!div) {
        div = el("div", { id: id, class: "radar", "data-benchmark": b.name });
        host.append(div);
      }
      const traces = state.selected
        .map((eid) => ENTRIES.get(eid))
        .filter((e) => e && e.benchmarks[b.name])
        .map((e) => {
          const cats = e.benchmarks[b.name].categories;
          const r = b.categories.map((c) => (cats[c] === null || cats[c] === undefined ? null : cats[c]));
          return {
            type: "scatterpolar",
            name: e.model,
            r: r.concat([r[0]]),
            theta: b.categories.concat([b.categories[0]]),
            fill: "toself",
            opacity: 0.55,
            line: { color: colorOf(e.id) },
            hovertemplate: "%{theta}: %{r:.4f}<extra>" + e.model.replace(/</g, "&lt;") + "</extra>",
          };
        });
      const layout = {
        title: { text: b.title + " by category" },
        font: { family: FONT },
        polar: { radialaxis: { range: [0, b.scale], angle: 90 } },
        showlegend: true,
        legend: { orientation: "h", y: -0.15 },
        margin: { l: 40, r: 40, t: 60, b: 40 },
        annotations: traces.length ? [] : [{ text: "tick models in the table", showarrow: false, x: 0.5, y: 0.5, xref: "paper", yref: "paper" }],
      };
      Plotly.react(div, traces, layout, { displaylogo: false, responsive: true });
    }
  }

  // ---- paired-bootstrap verdict ----------------------------------------------------------------

  function comparison(a, b, metric) {
    for (const c of BOARD.comparisons) {
      if (c.metric !== metric) continue;
      if (c.a === a && c.b === b) return c;
      if (c.a === b && c.b === a) {
        return {
          a: a, b: b, metric: metric, shared_questions: c.shared_questions, distinguishable: c.distinguishable,
          diff: c.diff === null ? null : -c.diff,
          ci: c.ci ? { low: -c.ci.high, high: -c.ci.low } : null,
          a_better: c.b_better, b_better: c.a_better,
        };
      }
    }
    return null;
  }

  function renderVerdict() {
    const host = document.getElementById("verdict");
    host.replaceChildren();
    if (state.selected.length !== 2) {
      host.append(el("p", { class: "note", text: "Tick exactly two models for the paired-bootstrap verdict (" + state.selected.length + " ticked)." }));
      return;
    }
    const [a, b] = state.selected.map((id) => ENTRIES.get(id));
    if (a.group !== b.group) {
      host.append(el("p", { class: "verdict-incomparable", text: a.model + " and " + b.model + " were measured under different protocols (groups " + a.group + " and " + b.group + "): no verdict." }));
      return;
    }
    const metrics = [BOARD.formula].concat(BENCHMARKS.map((x) => x.name));
    const title = (m) => (m === BOARD.formula ? m : (BENCHMARKS.find((x) => x.name === m) || { title: m }).title);
    const table = el("table", { id: "verdict-table" },
      el("tr", {}, el("th", { text: "" }), el("th", { text: "A − B" }), el("th", { text: Math.round(BOARD.confidence * 100) + "% CI" }),
        el("th", { text: "share A > B" }), el("th", { text: "questions" }), el("th", { text: "verdict" })));
    let any = false;
    for (const m of metrics) {
      const c = comparison(a.id, b.id, m);
      if (!c) continue;
      any = true;
      const verdict = c.distinguishable === null ? "no interval" : c.distinguishable ? "distinguishable" : "not distinguishable from noise";
      table.append(el("tr", { "data-metric": m },
        el("td", { text: title(m) }),
        el("td", { text: c.diff === null ? "-" : (c.diff >= 0 ? "+" : "") + fmt(c.diff) }),
        el("td", { text: c.ci ? "[" + fmt(c.ci.low) + ", " + fmt(c.ci.high) + "]" : "-" }),
        el("td", { text: c.a_better === null ? "-" : (100 * c.a_better).toFixed(1) + "%" }),
        el("td", { text: String(c.shared_questions) }),
        el("td", { class: c.distinguishable ? "yes" : "no", text: verdict })));
    }
    host.append(el("p", {}, "A = " + a.model + " (" + a.id + "), B = " + b.model + " (" + b.id + ")"));
    if (any) host.append(table);
    else host.append(el("p", { class: "note", text: "No per-question data shared by these two evaluations." }));
  }

  // ---- runtime and cost vs Overall -------------------------------------------------------------

  // Two panels sharing the formula's axis: runtime (left, x) and a cost (right, x2: GPU-hours held
  // or the judge's cost, as the select says). An evaluation whose cost is unknown has no point on
  // the right (the note counts them): an unknown is never drawn at 0.
  function renderScatter() {
    const rows = visibleEntries().filter((e) => e.overall !== null);
    const timed = rows.filter((e) => e.runtime_seconds !== null);
    const axis = COST_AXES[document.getElementById("scatter-cost").value] || COST_AXES.gpu_hours;
    const costed = rows.filter((e) => axis.value(e) !== null);
    const trace = (list, xs, xaxis, hover) => ({
      type: "scatter",
      mode: "markers+text",
      xaxis: xaxis,
      x: xs,
      y: list.map((e) => e.overall),
      text: list.map((e) => e.model.split("/").pop()),
      textposition: "top center",
      customdata: list.map((e) => e.model),
      hovertemplate: "%{customdata}<br>" + hover + "<br>" + BOARD.formula + " %{y:.4f}<extra></extra>",
      error_y: {
        type: "data",
        symmetric: false,
        array: list.map((e) => (e.overall_ci ? e.overall_ci.high - e.overall : 0)),
        arrayminus: list.map((e) => (e.overall_ci ? e.overall - e.overall_ci.low : 0)),
      },
      marker: {
        size: list.map((e) => (state.selected.includes(e.id) ? 14 : 9)),
        color: list.map((e) => (state.selected.includes(e.id) ? colorOf(e.id) : "#9aa3b2")),
        symbol: list.map((e) => (e.state === "ranked" ? "circle" : "x")),
      },
    });
    const spreadOf = (xs) => (xs.length ? Math.max(...xs) / Math.max(Math.min(...xs), 1e-9) : 1);
    const times = timed.map((e) => e.runtime_seconds);
    const costs = costed.map(axis.value);
    const currencies = [...new Set(costed.map((e) => (e.cost && e.cost.currency) || ""))].filter(Boolean);
    const costLabel = axis === COST_AXES.judge_cost && currencies.length ? axis.label + " (" + currencies.join(", ") + ")" : axis.label;
    Plotly.react("scatter", [
      trace(timed, times, "x", "runtime %{x:.0f}s"),
      trace(costed, costs, "x2", axis.hover),
    ], {
      font: { family: FONT },
      showlegend: false,
      xaxis: { domain: [0, 0.47], title: { text: "runtime (s)" }, type: spreadOf(times) > 20 ? "log" : "linear" },
      xaxis2: { domain: [0.53, 1], anchor: "y", title: { text: costLabel }, type: spreadOf(costs) > 20 ? "log" : "linear", rangemode: "tozero" },
      yaxis: { title: { text: BOARD.formula } },
      margin: { l: 60, r: 20, t: 20, b: 50 },
    }, { displaylogo: false, responsive: true });
    const missing = rows.length - costed.length;
    document.getElementById("scatter-note").textContent =
      "Left: wall-clock runtime; right: " + axis.label + " (the GPU-hours the evaluation's GPU Jobs held, or its judge's tokens at the price table's prices)." +
      (missing ? " " + missing + " evaluation(s) without a known " + axis.label + " have no point on the right (" + UNKNOWN + " in the table, never 0)." : "");
  }

  // ---- per-question drill-down -----------------------------------------------------------------

  // The questions are gzip+base64 (a fifth of their size as text): decompressed by the browser's
  // DecompressionStream the first time the drill-down opens, then kept.
  let decoding = null;
  function decodeQuestions() {
    if (state.questions) return Promise.resolve(state.questions);
    if (!decoding) {
      const b64 = document.getElementById("questions-data").textContent.trim();
      const bytes = Uint8Array.fromBase64 ? Uint8Array.fromBase64(b64) : Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      decoding = new Response(stream).text().then((text) => {
        state.questions = JSON.parse(text);
        const benchmarks = [...new Set(state.questions.questions.map((q) => q.b))];
        const sel = document.getElementById("dd-benchmark");
        sel.replaceChildren(el("option", { value: "", text: "all" }), ...benchmarks.map((b) => el("option", { value: b, text: b })));
        fillStrata();
        return state.questions;
      });
    }
    return decoding;
  }

  function loadQuestions() {
    return state.questions; // decoded before any drill-down rendering (decodeQuestions)
  }

  function fillStrata() {
    const bench = document.getElementById("dd-benchmark").value;
    const strata = [...new Set(state.questions.questions.filter((q) => !bench || q.b === bench).map((q) => q.s))];
    document.getElementById("dd-stratum").replaceChildren(el("option", { value: "", text: "all" }), ...strata.map((s) => el("option", { value: s, text: s })));
  }

  function answerText(answer) {
    if (!answer) return "";
    const parts = [answer.output || "", answer.pred || "", answer.prompt || ""];
    for (const t of answer.turns || []) parts.push(t.answer || "", t.judgment || "");
    return parts.join("\n");
  }

  function answerScore(q, answer) {
    const u = answerUnits(answer);
    return u ? u[0] / u[1] : null;
  }

  function matchingQuestions() {
    const doc = loadQuestions();
    const bench = document.getElementById("dd-benchmark").value;
    const stratum = document.getElementById("dd-stratum").value;
    const needle = document.getElementById("dd-search").value.trim().toLowerCase();
    const out = [];
    doc.questions.forEach((q, i) => {
      if (bench && q.b !== bench) return;
      if (stratum && q.s !== stratum) return;
      if (needle) {
        let hay = [q.prompt, q.gold || "", ...(q.turns || [])].join("\n");
        for (const id of state.selected) hay += "\n" + answerText((doc.answers[id] || {})[i]);
        if (!hay.toLowerCase().includes(needle)) return;
      }
      out.push(i);
    });
    if (document.getElementById("dd-order").value === "spread") {
      const spread = (i) => {
        const scores = state.selected.map((id) => answerScore(doc.questions[i], (doc.answers[id] || {})[i])).filter((s) => s !== null);
        return scores.length > 1 ? Math.max(...scores) - Math.min(...scores) : -1;
      };
      out.sort((x, y) => spread(y) - spread(x));
    }
    return out;
  }

  function metricLine(metrics) {
    return Object.entries(metrics || {})
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => k + " " + (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : v))
      .join(" · ");
  }

  // One question with the answers of `sides` ([{entry, name, color}]; default: the ticked models).
  function questionCard(i, sides) {
    const doc = state.questions;
    const q = doc.questions[i];
    const card = el("article", { class: "question", "data-benchmark": q.b, "data-stratum": q.s, "data-id": q.id },
      el("header", { text: q.b + " · " + q.s + " · " + q.id }));
    const selected = sides || state.selected.map((id) => ENTRIES.get(id)).filter(Boolean)
      .map((e) => ({ entry: e, name: e.model, color: colorOf(e.id) }));
    if (q.turns && q.turns.length) {
      q.turns.forEach((question, t) => {
        card.append(el("h4", { text: "Turn " + (t + 1) + " question" }), el("pre", { class: "prompt", text: question }));
        for (const side of selected) {
          const e = side.entry;
          const answer = (doc.answers[e.id] || {})[i];
          const turn = answer && answer.turns ? answer.turns[t] : null;
          const box = el("div", { class: "answer", "data-entry": e.id, style: "border-color:" + side.color },
            el("h4", { text: side.name }));
          if (!turn) box.append(el("p", { class: "note", text: "not answered in this evaluation" }));
          else {
            box.append(el("pre", { class: "output", text: turn.answer || "" }));
            const rating = el("span", { class: "rating" + (turn.valid ? "" : " invalid"), text: turn.valid ? "rating " + turn.rating : "invalid judgment" });
            box.append(el("p", { class: "metrics" }, rating, turn.judge ? " · judge " + turn.judge : ""));
            box.append(el("pre", { class: "judgment", text: turn.judgment || "" }));
          }
          card.append(box);
        }
      });
      return card;
    }
    card.append(el("h4", { text: "Prompt" }), el("pre", { class: "prompt", text: q.prompt }));
    if (q.gold !== null && q.gold !== undefined) card.append(el("h4", { text: "Gold" }), el("pre", { class: "gold", text: q.gold }));
    for (const side of selected) {
      const e = side.entry;
      const answer = (doc.answers[e.id] || {})[i];
      const box = el("div", { class: "answer", "data-entry": e.id, style: "border-color:" + side.color }, el("h4", { text: side.name }));
      if (!answer) box.append(el("p", { class: "note", text: "not answered in this evaluation" }));
      else {
        if (answer.prompt) box.append(el("p", { class: "note", text: "prompted differently:" }), el("pre", { text: answer.prompt }));
        box.append(el("pre", { class: "output", text: answer.output || "" }));
        if (answer.pred !== undefined && answer.pred !== answer.output) box.append(el("p", { class: "metrics", text: "pred: " + answer.pred }));
        box.append(el("p", { class: "metrics", text: metricLine(answer.metrics) + (answer.error ? " · error: " + answer.error : "") }));
      }
      card.append(box);
    }
    return card;
  }

  function renderDrill() {
    const matches = matchingQuestions();
    const list = document.getElementById("dd-list");
    list.replaceChildren(...matches.slice(0, state.shown).map((i) => questionCard(i)));
    const total = state.questions.questions.length;
    document.getElementById("dd-count").textContent = matches.length + " of " + total + " questions" + (state.selected.length ? "" : " (tick models to see their answers)");
    document.getElementById("dd-more").hidden = matches.length <= state.shown;
  }

  // ---- tokens per evaluation -------------------------------------------------------------------

  // x labels, one per row and unique: the model's last path part, with the start time where the
  // model has several evaluations shown (plotly merges equal category labels into one bar).
  function barLabels(rows) {
    const count = new Map();
    for (const e of rows) count.set(e.model, (count.get(e.model) || 0) + 1);
    const seen = new Map();
    return rows.map((e) => {
      let text = e.model.split("/").pop();
      if (count.get(e.model) > 1) text += " @" + (e.started_at ? e.started_at.slice(0, 16).replace("T", " ") : e.id);
      const n = (seen.get(text) || 0) + 1;
      seen.set(text, n);
      return n > 1 ? text + " (" + n + ")" : text;
    });
  }

  function clearNote(id) {
    for (const note of document.getElementById(id).querySelectorAll(".no-data")) note.remove();
  }

  function noTokens(id, text) {
    const el = document.getElementById(id);
    Plotly.purge(el);
    el.textContent = "";
    const p = document.createElement("p");
    p.className = "note no-data";
    p.textContent = text;
    el.appendChild(p);
  }

  function renderTokens() {
    const shown = visibleEntries();
    const rows = shown.filter((e) => e.usage);
    const x = barLabels(rows);
    const hover = rows.map((e) => e.model + "<br>" + e.id);
    const colors = rows.map((e) => (state.selected.includes(e.id) ? colorOf(e.id) : "#9aa3b2"));
    const layout = (title) => ({
      title: { text: title },
      font: { family: FONT },
      xaxis: { tickangle: -30, automargin: true },
      yaxis: { title: { text: "tokens" }, rangemode: "tozero" },
      margin: { l: 70, r: 20, t: 50, b: 40 },
      showlegend: false,
    });
    const config = { displaylogo: false, responsive: true };
    // A chart of nothing but zeros is no chart: where no evaluation shown records these tokens, the
    // place says so instead of drawing empty axes.
    const judged = rows.some((e) => e.usage.judge_tokens > 0);
    clearNote("judge-tokens");
    clearNote("model-tokens");
    if (judged) {
      Plotly.react("judge-tokens", [{
        type: "bar", name: "judge tokens", x: x, y: rows.map((e) => e.usage.judge_tokens), customdata: hover,
        marker: { color: colors }, hovertemplate: "%{customdata}<br>judge tokens %{y:,}<extra></extra>",
      }], layout("Judge tokens (prompt + completion)"), config);
    } else {
      noTokens("judge-tokens", "Judge tokens: no evaluation shown records any (no token data).");
    }
    const modelTokens = rows.some((e) => e.usage.prompt_tokens > 0 || e.usage.completion_tokens > 0);
    if (modelTokens) {
      const model = layout("Model tokens (prompt + completion, stacked)");
      model.barmode = "stack";
      model.showlegend = true;
      model.legend = { orientation: "h", y: 1.08 };
      Plotly.react("model-tokens", [
        { type: "bar", name: "prompt", x: x, y: rows.map((e) => e.usage.prompt_tokens), customdata: hover, marker: { color: "#2f5fd0" }, hovertemplate: "%{customdata}<br>prompt tokens %{y:,}<extra></extra>" },
        { type: "bar", name: "completion", x: x, y: rows.map((e) => e.usage.completion_tokens), customdata: hover, marker: { color: "#d0562f" }, hovertemplate: "%{customdata}<br>completion tokens %{y:,}<extra></extra>" },
      ], model, config);
    } else {
      noTokens("model-tokens", "Model tokens: no evaluation shown records any (no token data).");
    }
    const missing = shown.length - rows.length;
    document.getElementById("tokens-note").textContent =
      "One bar per evaluation shown in the table (tick “show evaluations that are not ranked” for all), as its summary's usage records them; ticked models in their colour." +
      (missing ? " " + missing + " evaluation(s) without a token record left out." : "");
  }

  // ---- two evaluations question by question ----------------------------------------------------

  const TOLERANCE = 1e-9; // as leaderboard/diff.py: closer scores are equal (char F1 is a float)
  const SIDE_COLORS = ["#6b6b6b", "#2f5fd0"];

  function entryLabel(e) {
    const when = e.started_at ? e.started_at.slice(0, 16).replace("T", " ") : e.id;
    return e.model + " · " + when + (e.revision ? " · rev " + e.revision.slice(0, 8) : "") + (e.state === "ranked" ? "" : " · " + e.state);
  }

  // The default pair: a model's two latest evaluations (a ranked model's first), else the top two.
  function defaultPair() {
    const byModel = new Map();
    for (const e of BOARD.entries) {
      if (!byModel.has(e.model)) byModel.set(e.model, []);
      byModel.get(e.model).push(e);
    }
    const models = [...byModel.keys()].sort((x, y) => {
      const rx = byModel.get(x).some((e) => e.state === "ranked") ? 0 : 1;
      const ry = byModel.get(y).some((e) => e.state === "ranked") ? 0 : 1;
      return rx - ry;
    });
    for (const m of models) {
      const runs = byModel.get(m).slice().sort((x, y) => (y.started_at || "").localeCompare(x.started_at || ""));
      if (runs.length > 1) return [runs[1].id, runs[0].id];
    }
    const ids = BOARD.entries.map((e) => e.id);
    return [ids[1] || ids[0], ids[0]];
  }

  function fillDiffSelects() {
    const options = BOARD.entries.slice().sort((x, y) => x.model.localeCompare(y.model) || (x.started_at || "").localeCompare(y.started_at || ""));
    for (const id of ["diff-a", "diff-b"]) {
      document.getElementById(id).replaceChildren(...options.map((e) => el("option", { value: e.id, text: entryLabel(e) })));
    }
    const [a, b] = defaultPair();
    document.getElementById("diff-a").value = a;
    document.getElementById("diff-b").value = b;
  }

  // A question's score as [sum, count], as its benchmark's design pools it (a sample's metric
  // value and 1; a judged question's valid ratings and how many), or null where the evaluation has
  // no score for it: the `u` the page's data carries with every answer.
  function answerUnits(answer) {
    return answer && answer.u ? answer.u : null;
  }

  // A → B per benchmark and stratum: [{name, strata: [{stratum, shared, only_a, only_b, improved,
  // regressed, unchanged, a, b, flipped: [{i, a, b}]}], total}] (the same definitions as diff.py).
  function computeDiff(aId, bId) {
    const doc = state.questions;
    const A = doc.answers[aId] || {};
    const B = doc.answers[bId] || {};
    const benches = new Map();
    doc.questions.forEach((q, i) => {
      const ua = answerUnits(A[i]);
      const ub = answerUnits(B[i]);
      if (!ua && !ub) return;
      if (!benches.has(q.b)) benches.set(q.b, { name: q.b, strata: new Map() });
      const strata = benches.get(q.b).strata;
      if (!strata.has(q.s)) strata.set(q.s, { stratum: q.s, shared: 0, only_a: 0, only_b: 0, improved: 0, regressed: 0, unchanged: 0, sa: 0, ca: 0, sb: 0, cb: 0, flipped: [] });
      const s = strata.get(q.s);
      if (!ub) { s.only_a++; return; }
      if (!ua) { s.only_b++; return; }
      s.shared++;
      s.sa += ua[0]; s.ca += ua[1]; s.sb += ub[0]; s.cb += ub[1];
      const a = ua[0] / ua[1];
      const b = ub[0] / ub[1];
      if (b - a > TOLERANCE) { s.improved++; s.flipped.push({ i: i, a: a, b: b }); }
      else if (a - b > TOLERANCE) { s.regressed++; s.flipped.push({ i: i, a: a, b: b }); }
      else s.unchanged++;
    });
    const out = [];
    for (const bench of benches.values()) {
      const strata = [...bench.strata.values()];
      for (const s of strata) {
        s.a = s.ca ? s.sa / s.ca : null;
        s.b = s.cb ? s.sb / s.cb : null;
      }
      const total = { shared: 0, only_a: 0, only_b: 0, improved: 0, regressed: 0, unchanged: 0 };
      for (const s of strata) for (const k of Object.keys(total)) total[k] += s[k];
      out.push({ name: bench.name, strata: strata, total: total });
    }
    return out;
  }

  function shortScore(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(3);
  }

  function renderDiff() {
    const host = document.getElementById("diff-result");
    const aId = document.getElementById("diff-a").value;
    const bId = document.getElementById("diff-b").value;
    const a = ENTRIES.get(aId);
    const b = ENTRIES.get(bId);
    host.replaceChildren();
    if (!a || !b) return;
    if (aId === bId) {
      host.append(el("p", { class: "note", text: "A and B are the same evaluation: pick two." }));
      return;
    }
    if (!state.diff || state.diff.a !== aId || state.diff.b !== bId) {
      state.diff = { a: aId, b: bId, filter: null, shown: 100, result: computeDiff(aId, bId) };
    }
    const result = state.diff.result.filter((x) => x.total.shared > 0);
    host.append(el("p", { id: "diff-sides" }, "A = " + entryLabel(a) + " (" + a.id + "), B = " + entryLabel(b) + " (" + b.id + ")"));
    if (a.group !== b.group) {
      host.append(el("p", { class: "verdict-incomparable", text: "A and B were measured under different protocols (groups " + a.group + " and " + b.group + "): the differences mix the model's with the protocol's." }));
    }
    for (const x of state.diff.result) {
      if (x.total.shared === 0) host.append(el("p", { class: "note", text: x.name + ": no question scored by both (A " + x.total.only_a + ", B " + x.total.only_b + ")." }));
    }
    if (!result.length) {
      host.append(el("p", { class: "note", text: "No per-question data shared by these two evaluations." }));
      return;
    }
    const strataNoun = [...new Set(result.map((x) => (BENCHMARKS.find((m) => m.name === x.name) || { stratum: "category" }).stratum))].join(" / ");
    const head = el("tr", {}, ...["benchmark", strataNoun, "shared", "improved", "regressed", "unchanged", "A", "B", "Δ (B − A)"]
      .map((t, k) => el("th", { class: k < 2 ? "stratum" : null, text: t })));
    const table = el("table", { id: "diff-table" }, el("thead", {}, head));
    const body = el("tbody");
    const signed = (v) => (v === null || v === undefined ? "-" : (v >= 0 ? "+" : "") + fmt(v));
    const counts = (row, s) => {
      row.append(
        el("td", { "data-col": "shared", text: String(s.shared) }),
        el("td", { "data-col": "improved", class: s.improved ? "up" : null, text: String(s.improved) }),
        el("td", { "data-col": "regressed", class: s.regressed ? "down" : null, text: String(s.regressed) }),
        el("td", { "data-col": "unchanged", text: String(s.unchanged) }));
    };
    for (const x of result) {
      const title = (BENCHMARKS.find((m) => m.name === x.name) || { title: x.name }).title;
      const c = comparison(bId, aId, x.name); // the board's paired bootstrap, B − A (same group only)
      const total = el("tr", { class: "total stratum-row", "data-benchmark": x.name, "data-stratum": "" },
        el("td", { class: "stratum", text: title }), el("td", { class: "stratum", text: "all" }));
      counts(total, x.total);
      const entryScore = (e) => (e.benchmarks[x.name] ? e.benchmarks[x.name].avg : null);
      total.append(el("td", { text: fmt(entryScore(a)) }), el("td", { text: fmt(entryScore(b)) }),
        el("td", { text: c && c.diff !== null ? signed(c.diff) + (c.ci ? " [" + signed(c.ci.low) + ", " + signed(c.ci.high) + "]" : "") : "-",
          title: c ? "paired bootstrap over the " + c.shared_questions + " questions both answered" + (c.distinguishable ? ": distinguishable" : ": not distinguishable from noise") : "A and B are not compared on the board (different groups, or beyond its pairwise limit)" }));
      body.append(total);
      for (const s of x.strata) {
        const row = el("tr", { class: "stratum-row", "data-benchmark": x.name, "data-stratum": s.stratum },
          el("td", { class: "stratum", text: x.name }), el("td", { class: "stratum", text: s.stratum }));
        counts(row, s);
        row.append(el("td", { text: fmt(s.a) }), el("td", { text: fmt(s.b) }),
          el("td", { text: s.a === null || s.b === null ? "-" : signed(s.b - s.a) }));
        body.append(row);
      }
    }
    table.append(body);
    for (const row of body.querySelectorAll("tr.stratum-row")) {
      const f = state.diff.filter;
      if (f && f.b === row.dataset.benchmark && f.s === row.dataset.stratum) row.classList.add("active");
      row.addEventListener("click", () => {
        const same = state.diff.filter && state.diff.filter.b === row.dataset.benchmark && state.diff.filter.s === row.dataset.stratum;
        state.diff.filter = same ? null : { b: row.dataset.benchmark, s: row.dataset.stratum };
        state.diff.shown = 100;
        renderDiff();
      });
    }
    host.append(el("p", { class: "note", text: "Total rows: each evaluation's benchmark score as recorded, and the board's paired-bootstrap Δ with its " + Math.round(BOARD.confidence * 100) + "% interval where the two are compared on the board." }));
    host.append(el("div", { class: "table-wrap" }, table));
    host.append(renderFlipped(result, a, b));
  }

  function renderFlipped(result, a, b) {
    const doc = state.questions;
    const f = state.diff.filter;
    const flips = [];
    for (const x of result) {
      if (f && f.b !== x.name) continue;
      for (const s of x.strata) {
        if (f && f.s && f.s !== s.stratum) continue;
        flips.push(...s.flipped);
      }
    }
    const box = el("div", { id: "diff-flipped" });
    const where = f ? " in " + f.b + (f.s ? " · " + f.s : "") : "";
    const heading = el("h3", { text: flips.length + " flipped question" + (flips.length === 1 ? "" : "s") + where + " " });
    if (f) {
      const all = el("button", { type: "button", class: "link", text: "(show all)" });
      all.addEventListener("click", () => { state.diff.filter = null; renderDiff(); });
      heading.append(all);
    }
    box.append(heading);
    const sides = [
      { entry: a, name: "A: " + entryLabel(a), color: SIDE_COLORS[0] },
      { entry: b, name: "B: " + entryLabel(b), color: SIDE_COLORS[1] },
    ];
    const list = el("ul");
    for (const flip of flips.slice(0, state.diff.shown)) {
      const q = doc.questions[flip.i];
      const dir = flip.b > flip.a ? "improved" : "regressed";
      const item = el("li", { "data-benchmark": q.b, "data-stratum": q.s, "data-id": q.id, "data-dir": dir });
      const button = el("button", { type: "button", class: "flip", "aria-expanded": "false" },
        (dir === "improved" ? "↑ " : "↓ ") + q.b + " · " + q.s + " · " + q.id + ": " + shortScore(flip.a) + " → " + shortScore(flip.b));
      button.addEventListener("click", () => {
        const open = item.querySelector("article.question");
        if (open) { open.remove(); button.setAttribute("aria-expanded", "false"); return; }
        item.append(questionCard(flip.i, sides));
        button.setAttribute("aria-expanded", "true");
      });
      item.append(button);
      list.append(item);
    }
    box.append(list);
    if (flips.length > state.diff.shown) {
      const more = el("button", { type: "button", id: "diff-more", text: "show more (" + (flips.length - state.diff.shown) + " left)" });
      more.addEventListener("click", () => { state.diff.shown += 100; renderDiff(); });
      box.append(more);
    }
    return box;
  }

  function refreshDiff() {
    if (document.getElementById("diff").open) decodeQuestions().then(renderDiff);
  }

  // ---- page ------------------------------------------------------------------------------------

  function renderUnits() {
    const parts = BENCHMARKS.filter((b) => b.unit).map((b) => b.title + ": " + b.unit);
    document.getElementById("diff-units").textContent = parts.length ? " (" + parts.join("; ") + ")" : "";
  }

  function renderHeader() {
    const names = { capped: "capped", synthetic_judge: "synthetic-judge", degraded: "degraded" };
    // `include` names the kinds ranked anyway; a board written before it had only `include_all`
    const kinds = BOARD.include || (BOARD.include_all ? Object.keys(names) : []);
    const included = kinds.map((k) => names[k] || k);
    document.getElementById("formula").textContent =
      BOARD.formula + " = " + BOARD.formula_description + ". Intervals: " + Math.round(BOARD.confidence * 100) +
      "% percentile bootstrap over questions (" + BOARD.resamples + " resamples, seed " + BOARD.seed + ")" +
      (included.length ? "; " + included.join(", ") + " runs included (marked)." : ".");
    for (const node of document.querySelectorAll(".formula-name")) node.textContent = BOARD.formula;
    for (const node of document.querySelectorAll(".confidence")) node.textContent = Math.round(BOARD.confidence * 100) + "%";
    const list = document.getElementById("warnings");
    list.replaceChildren(...BOARD.warnings.map((w) => el("li", { text: w })));
    if (BOARD.groups.length > 1) {
      document.getElementById("group-control").hidden = false;
      const sel = document.getElementById("group");
      sel.replaceChildren(...BOARD.groups.map((g) => el("option", { value: g.id, text: g.id + (g.main ? " (main)" : " — " + g.note) })));
      sel.value = state.group;
      sel.addEventListener("change", () => { state.group = sel.value; renderTable(); renderScatter(); renderTokens(); });
    }
  }

  function init() {
    state.selected = BOARD.entries.filter((e) => e.state === "ranked" && e.group === MAIN_GROUP).slice(0, 3).map((e) => e.id);
    renderHeader();
    renderUnits();
    renderTable();
    renderRadars();
    renderVerdict();
    renderScatter();
    renderTokens();
    document.getElementById("scatter-cost").addEventListener("change", renderScatter);
    document.getElementById("show-all").addEventListener("change", (ev) => { state.showAll = ev.target.checked; renderTable(); renderScatter(); renderTokens(); });
    fillDiffSelects();
    document.getElementById("diff").addEventListener("toggle", refreshDiff);
    document.getElementById("diff-a").addEventListener("change", refreshDiff);
    document.getElementById("diff-b").addEventListener("change", refreshDiff);
    document.getElementById("diff-swap").addEventListener("click", () => {
      const sa = document.getElementById("diff-a");
      const sb = document.getElementById("diff-b");
      [sa.value, sb.value] = [sb.value, sa.value];
      refreshDiff();
    });
    const drill = document.getElementById("drilldown");
    drill.addEventListener("toggle", () => { if (drill.open) decodeQuestions().then(renderDrill); });
    const rerender = () => { state.shown = 50; if (state.questions) renderDrill(); };
    document.getElementById("dd-benchmark").addEventListener("change", () => { fillStrata(); rerender(); });
    document.getElementById("dd-stratum").addEventListener("change", rerender);
    document.getElementById("dd-order").addEventListener("change", rerender);
    let timer = null;
    document.getElementById("dd-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(rerender, 150); });
    document.getElementById("dd-more").addEventListener("click", () => { state.shown += 50; renderDrill(); });
  }

  // For people poking at the page from the console, and for the browser tests.
  window.nejumiLeaderboard = { state: state, select: select, sortBy: sortBy, board: BOARD, computeDiff: computeDiff, rankText: rankText };
  init();
})();
