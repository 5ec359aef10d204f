// The leaderboard page: vanilla JS over the board embedded as JSON (see leaderboard/html.py).
// All text from the data goes through textContent (never innerHTML): prompts and outputs are data.
"use strict";

(function () {
  const DOC = JSON.parse(document.getElementById("board-data").textContent);
  const BOARD = DOC.board;
  const BENCHMARKS = DOC.benchmarks; // [{name, title, categories, scale}]
  const ENTRIES = new Map(BOARD.entries.map((e) => [e.id, e]));
  const MAIN_GROUP = (BOARD.groups.find((g) => g.main) || BOARD.groups[0] || {}).id;
  const FONT = getComputedStyle(document.documentElement).fontFamily;
  const COLORS = ["#2f5fd0", "#d0562f", "#2f9e5b", "#9b3fb5", "#c9a300", "#1aa3b8", "#b83a6d", "#6b6b6b"];

  const state = {
    group: MAIN_GROUP,
    showAll: false,
    sort: { key: "rank", dir: 1 },
    selected: [], // entry ids, in the order they were ticked (colours follow it)
    questions: null, // the drill-down document, parsed when the drill-down first opens
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

  // Every sortable column: key (data-key of its header), label, value(entry) for sorting, and
  // cell(entry) for display; `ci(entry)` where an interval exists.
  function columns() {
    const cols = [
      { key: "rank", label: "#", value: (e) => e.rank, cell: (e) => (e.rank === null ? "-" : e.rank + (e.tied_with_above ? "≈" : "")) },
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
    return cols;
  }

  function modelCell(entry) {
    const p = entry.provenance.details;
    const about = [
      "evaluation " + entry.id,
      entry.revision ? "revision " + entry.revision : null,
      entry.started_at ? "started " + entry.started_at : null,
      p.jaster_template ? "jaster template " + p.jaster_template : null,
      p.judge ? "MT-bench judge " + p.judge : null,
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
      const th = el("th", { "data-key": col.key, class: col.cls, "aria-sort": sorted }, col.label);
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
        ? "Group " + group.id + " was measured differently from the main group (" + group.differs.join(", ") + "); its ranks are its own."
        : "";
  }

  function sortBy(key) {
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key: key, dir: key === "rank" || key === "model" ? 1 : -1 }; // scores: best first
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

  // ---- runtime vs Overall ----------------------------------------------------------------------

  function renderScatter() {
    const rows = visibleEntries().filter((e) => e.overall !== null && e.runtime_seconds !== null);
    const xs = rows.map((e) => e.runtime_seconds);
    const spread = xs.length ? Math.max(...xs) / Math.max(Math.min(...xs), 1e-9) : 1;
    const trace = {
      type: "scatter",
      mode: "markers+text",
      x: xs,
      y: rows.map((e) => e.overall),
      text: rows.map((e) => e.model.split("/").pop()),
      textposition: "top center",
      customdata: rows.map((e) => e.model),
      hovertemplate: "%{customdata}<br>runtime %{x:.0f}s<br>" + BOARD.formula + " %{y:.4f}<extra></extra>",
      error_y: {
        type: "data",
        symmetric: false,
        array: rows.map((e) => (e.overall_ci ? e.overall_ci.high - e.overall : 0)),
        arrayminus: rows.map((e) => (e.overall_ci ? e.overall - e.overall_ci.low : 0)),
      },
      marker: {
        size: rows.map((e) => (state.selected.includes(e.id) ? 14 : 9)),
        color: rows.map((e) => (state.selected.includes(e.id) ? colorOf(e.id) : "#9aa3b2")),
        symbol: rows.map((e) => (e.state === "ranked" ? "circle" : "x")),
      },
    };
    Plotly.react("scatter", [trace], {
      font: { family: FONT },
      xaxis: { title: { text: "runtime (s)" }, type: spread > 20 ? "log" : "linear" },
      yaxis: { title: { text: BOARD.formula } },
      margin: { l: 60, r: 20, t: 20, b: 50 },
    }, { displaylogo: false, responsive: true });
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
    if (!answer) return null;
    if (answer.metrics && answer.metrics.score !== undefined) return answer.metrics.score;
    const valid = (answer.turns || []).filter((t) => t.valid);
    return valid.length ? valid.reduce((s, t) => s + t.rating, 0) / valid.length : null;
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

  function questionCard(i) {
    const doc = state.questions;
    const q = doc.questions[i];
    const card = el("article", { class: "question", "data-benchmark": q.b, "data-stratum": q.s, "data-id": q.id },
      el("header", { text: q.b + " · " + q.s + " · " + q.id }));
    const selected = state.selected.map((id) => ENTRIES.get(id)).filter(Boolean);
    if (q.turns && q.turns.length) {
      q.turns.forEach((question, t) => {
        card.append(el("h4", { text: "Turn " + (t + 1) + " question" }), el("pre", { class: "prompt", text: question }));
        for (const e of selected) {
          const answer = (doc.answers[e.id] || {})[i];
          const turn = answer && answer.turns ? answer.turns[t] : null;
          const box = el("div", { class: "answer", "data-entry": e.id, style: "border-color:" + colorOf(e.id) },
            el("h4", { text: e.model }));
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
    for (const e of selected) {
      const answer = (doc.answers[e.id] || {})[i];
      const box = el("div", { class: "answer", "data-entry": e.id, style: "border-color:" + colorOf(e.id) }, el("h4", { text: e.model }));
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
    list.replaceChildren(...matches.slice(0, state.shown).map(questionCard));
    const total = state.questions.questions.length;
    document.getElementById("dd-count").textContent = matches.length + " of " + total + " questions" + (state.selected.length ? "" : " (tick models to see their answers)");
    document.getElementById("dd-more").hidden = matches.length <= state.shown;
  }

  // ---- page ------------------------------------------------------------------------------------

  function renderHeader() {
    document.getElementById("formula").textContent =
      BOARD.formula + " = " + BOARD.formula_description + ". Intervals: " + Math.round(BOARD.confidence * 100) +
      "% percentile bootstrap over questions (" + BOARD.resamples + " resamples, seed " + BOARD.seed + ")" +
      (BOARD.include_all ? "; capped, synthetic-judge and degraded runs included (marked)." : ".");
    for (const node of document.querySelectorAll(".formula-name")) node.textContent = BOARD.formula;
    const list = document.getElementById("warnings");
    list.replaceChildren(...BOARD.warnings.map((w) => el("li", { text: w })));
    if (BOARD.groups.length > 1) {
      document.getElementById("group-control").hidden = false;
      const sel = document.getElementById("group");
      sel.replaceChildren(...BOARD.groups.map((g) => el("option", { value: g.id, text: g.id + (g.main ? " (main)" : " (differs: " + g.differs.join(", ") + ")") })));
      sel.value = state.group;
      sel.addEventListener("change", () => { state.group = sel.value; renderTable(); renderScatter(); });
    }
  }

  function init() {
    state.selected = BOARD.entries.filter((e) => e.state === "ranked" && e.group === MAIN_GROUP).slice(0, 3).map((e) => e.id);
    renderHeader();
    renderTable();
    renderRadars();
    renderVerdict();
    renderScatter();
    document.getElementById("show-all").addEventListener("change", (ev) => { state.showAll = ev.target.checked; renderTable(); renderScatter(); });
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
  window.nejumiLeaderboard = { state: state, select: select, sortBy: sortBy, board: BOARD };
  init();
})();
