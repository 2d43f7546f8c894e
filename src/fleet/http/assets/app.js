// sensorlog dashboard: one card per board, values and charts updated from /events.
// Everything is built with textContent (device names and values come from the network).
"use strict";
(function () {
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#bf3989", "#57606a"];
  const state = { boards: new Map(), bucket: 30, window: 3600, serverSkewMs: 0, last: null };
  window.sensorlog = state; // for tests and the curious: state.boards.get(name).chart

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function bytes(n) {
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }

  function nowServer() { return Date.now() + state.serverSkewMs; }

  function card(b) {
    const root = el("section", "board");
    root.dataset.device = b.device;
    const h = el("h2");
    const name = el("span", "name", b.device);
    const status = el("span", "status");
    h.append(name, status);
    const facts = el("div", "facts");
    const seen = el("span", "seen"), rate = el("span", "rate"), peer = el("span", "peer"),
      ack = el("span", "ack"), usual = el("span", "usual");
    facts.append(seen, rate, usual, peer, ack);
    const table = el("table", "latest");
    const chartBox = el("div", "chart");
    root.append(h, facts, table, chartBox);
    document.getElementById("boards").append(root);
    const c = { root, status, seen, rate, peer, ack, usual, table, chartBox, fields: [], series: new Map(), chart: null, data: null, view: b, visible: true, dirty: false, cells: new Map() };
    if (observer) {
      c.visible = false;
      observer.observe(root);
      root._card = c;
    }
    return c;
  }

  // Charts off screen are not redrawn (a hundred boards cost no more than the few in view);
  // they catch up when scrolled into view.
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      const c = e.target._card;
      c.visible = e.isIntersecting;
      if (c.visible && c.dirty) drawChart(c);
    }
  }) : null;

  function buildData(c) {
    const times = new Set();
    for (const pts of c.series.values()) for (const p of pts) times.add(p[0]);
    const xs = Array.from(times).sort((a, b) => a - b);
    const idx = new Map(xs.map((t, i) => [t, i]));
    const cols = c.fields.map((f) => {
      const col = new Array(xs.length).fill(null);
      for (const p of c.series.get(f) || []) col[idx.get(p[0])] = p[1];
      return col;
    });
    return [xs, ...cols];
  }

  function drawChart(c) {
    if (c.fields.length === 0) return;
    if (!c.visible) {
      c.dirty = true;
      return;
    }
    c.dirty = false;
    c.data = buildData(c);
    const width = Math.max(200, c.chartBox.clientWidth || 320);
    if (c.chart && c.chart.series.length === c.fields.length + 1) {
      c.chart.setData(c.data);
      return;
    }
    if (c.chart) c.chart.destroy();
    const opts = {
      width, height: 160,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          // Always the chart window (or less, since start), ending now. The ends come from
          // the data, not from uPlot's min/max: for a single point uPlot pads a time axis
          // by 86,400,000 s, which put the only point of a new board off-screen (issue 19).
          range: (u) => {
            const xs = u.data[0];
            const first = xs.length ? xs[0] : null;
            const last = xs.length ? xs[xs.length - 1] : 0;
            const hi = Math.max(last, Math.floor(nowServer() / 1000));
            return [Math.max(hi - state.window, Math.min(first ?? hi, hi - 60)), hi];
          },
        },
      },
      series: [{}].concat(c.fields.map((f, i) => ({ label: f, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { size: 4 } }))),
    };
    c.chart = new uPlot(opts, c.data, c.chartBox);
  }

  function addPoint(c, field, t, v) {
    let pts = c.series.get(field);
    if (!pts) {
      pts = [];
      c.series.set(field, pts);
    }
    const last = pts[pts.length - 1];
    if (last && Math.floor(last[0] / state.bucket) === Math.floor(t / state.bucket)) {
      if (last[0] === t && last[1] === v) return false;
      last[0] = t; last[1] = v;
    } else if (!last || t > last[0]) {
      pts.push([t, v]);
    } else {
      return false;
    }
    while (pts.length && pts[0][0] + state.window < t) pts.shift();
    return true;
  }

  function update(b, withSeries) {
    let c = state.boards.get(b.device);
    if (!c) {
      c = card(b);
      state.boards.set(b.device, c);
    }
    const before = c.view;
    c.view = b;
    const cls = b.status === "ok" ? "ok" : b.status === "silent" ? "silent" : "unseen";
    c.root.className = "board " + cls;
    c.root.dataset.status = b.status;
    c.status.textContent = b.status;
    c.rate.textContent = b.readings_per_min + " readings/min";
    c.peer.textContent = b.peer ? "peer " + b.peer : "";
    c.ack.textContent = b.last_seen_unix_ms ? (b.ack ? "acks on" : "acks off") : "";
    c.usual.textContent = b.usual_interval_secs ? "every " + b.usual_interval_secs + " s" : "";
    // Latest values: a row per field, its value cell updated in place.
    for (const f of b.latest) {
      let v = c.cells.get(f.field);
      if (!v) {
        const tr = el("tr");
        v = el("td", "value");
        v.dataset.field = f.field;
        tr.append(el("td", "field", f.field), v);
        c.table.append(tr);
        c.cells.set(f.field, v);
      }
      if (v.textContent !== f.value) v.textContent = f.value;
    }
    let changed = false;
    if (withSeries && b.series) {
      for (const s of b.series) {
        c.series.set(s.field, s.points.map((p) => [p[0], p[1]]));
        if (!c.fields.includes(s.field)) c.fields.push(s.field);
      }
      changed = true;
    } else if (b.last_seen_unix_ms && (!before || before.last_seen_unix_ms !== b.last_seen_unix_ms)) {
      const t = Math.floor(b.last_seen_unix_ms / 1000);
      for (const f of b.latest) {
        if (!f.number) continue;
        const v = Number(f.value);
        if (!Number.isFinite(v)) continue;
        if (!c.fields.includes(f.field)) c.fields.push(f.field);
        changed = addPoint(c, f.field, t, v) || changed;
      }
    }
    if (changed) drawChart(c);
  }

  function tick() {
    const now = nowServer();
    for (const c of state.boards.values()) {
      const b = c.view;
      c.seen.textContent = b.last_seen_unix_ms ? "last seen " + ago(now - b.last_seen_unix_ms)
        : b.last_seen_previous_run ? "last seen " + b.last_seen_previous_run + " (earlier run)" : "";
    }
    const o = state.last;
    if (!o) return;
    const t = o.totals;
    const parts = [
      t.boards + " boards (" + t.ok + " ok, " + t.silent + " silent" + (t.unseen ? ", " + t.unseen + " not seen since start" : "") + ")",
      Math.round(t.readings_per_min) + " readings/min",
      "CSV " + bytes(o.csv.bytes),
    ];
    if (o.sheets) {
      parts.push("Sheets backlog " + (o.sheets.backlog_rows === null ? "?" : o.sheets.backlog_rows) + " rows");
      parts.push("last upload " + (o.sheets.last_upload_unix_ms ? ago(now - o.sheets.last_upload_unix_ms) : "none yet"));
    } else {
      parts.push("Sheets off");
    }
    if (o.shown < t.boards) parts.push("showing " + o.shown + " (see /api/boards)");
    // A board that puts a counter or the time in its name (see boards.new_name_burst).
    if (t.untracked_readings) parts.push(t.untracked_readings + " readings under new names not tracked (boards.new_name_burst)");
    document.getElementById("totals").textContent = parts.join(" · ");
    // Refused connections by reason and real address: many from one address is a NAT
    // (raise server.max_connections_per_ip) or a flood (see the README's troubleshooting).
    const r = document.getElementById("refused");
    const refused = o.refused || [];
    r.hidden = refused.length === 0;
    r.textContent = refused.length === 0 ? "" : "Refused: " + refused.slice(0, 5)
      .map((x) => x.address + " " + x.reason.replace(/_/g, " ") + " ×" + x.count + " (last " + ago(now - x.last_unix_ms) + ")")
      .join(" · ");
  }

  function apply(o, withSeries) {
    state.serverSkewMs = o.now_unix_ms - Date.now();
    state.bucket = o.bucket_secs;
    state.window = o.chart_window_secs;
    state.last = o;
    for (const b of o.boards) update(b, withSeries);
    tick();
  }

  function connect() {
    const es = new EventSource("/events");
    const conn = document.getElementById("conn");
    es.addEventListener("overview", (ev) => {
      conn.textContent = "live";
      apply(JSON.parse(ev.data), false);
    });
    es.onerror = () => { conn.textContent = "reconnecting…"; };
  }

  window.addEventListener("resize", () => {
    for (const c of state.boards.values()) if (c.chart) c.chart.setSize({ width: Math.max(200, c.chartBox.clientWidth), height: 160 });
  });

  fetch("/api/boards?series=1")
    .then((r) => r.json())
    .then((o) => apply(o, true))
    .catch(() => {})
    .finally(connect);
  setInterval(tick, 1000);
})();
