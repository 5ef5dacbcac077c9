"use strict";
// bench/RESULTS.md and the ratio plot (a hand-written SVG) from one run's figures.
const fs = require("node:fs");
const path = require("node:path");

const KiB = 1024;
const MiB = 1024 * 1024;

function num(v, digits = 0) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
const ms = (us) => (us === null || us === undefined ? "–" : num(us / 1000, us < 10000 ? 2 : 1));
const ratioText = (r) => (r === null || r === undefined || !Number.isFinite(r) ? "–" : r >= 100 ? num(r, 0) : r >= 10 ? num(r, 1) : r >= 1 ? num(r, 2) : num(r, 3));

/** What keeps a weroll-native figure from counting: lost messages, refused or dropped clients. */
function deliveryProblem(r) {
  const p = [];
  if (r.failed) p.push(`${r.failed} connections failed`);
  if (r.dropped) p.push(`${r.dropped} dropped`);
  if (r.missing) p.push(`${num(r.missing)} deliveries missing`);
  if (r.sent !== undefined && r.sent < r.toSend) p.push(`only ${r.sent}/${r.toSend} sent`);
  return p.join(", ") || null;
}
function holdProblem(r) {
  const p = [];
  if (r.connected < r.requested) p.push(`${num(r.requested - r.connected)} of ${num(r.requested)} never connected`);
  if (r.dropped) p.push(`${num(r.dropped)} dropped`);
  if (r.held < r.requested) p.push(`${num(r.held)} held`);
  return p.join(", ") || null;
}

/**
 * The issue's targets: `ratio` is weroll-native's figure over socket.io's; `le` targets are met
 * at or below `limit`, the others at or above it.
 */
const TARGETS = [
  { id: "idle", name: "server RSS per idle connection", goal: "≤ 1/5", le: true, limit: 0.2, metric: (r) => r.rssPerConn, unit: (v) => `${num(v / KiB, 1)} KiB`, problem: holdProblem },
  { id: "bcast", name: "server CPU per million broadcast deliveries", goal: "≤ 1/10", le: true, limit: 0.1, metric: (r) => r.serverCpuPerMillion, unit: (v) => `${num(v, 2)} s`, problem: deliveryProblem },
  { id: "burst", name: "server CPU per million deliveries, burst fan-out", goal: "≤ 1/10", le: true, limit: 0.1, metric: (r) => r.serverCpuPerMillion, unit: (v) => `${num(v, 2)} s`, problem: deliveryProblem },
  { id: "floor", name: "paced fan-out CPU per delivery over the floor's", goal: "≤ 1.25× the floor", le: true, limit: 1.25, metric: (r) => r.serverCpuPerMillion, unit: (v) => `${num(v, 2)} s`, problem: deliveryProblem },
  ...[
    ["echo", "light"],
    ["echoMid", "moderate"],
    ["echoHeavy", "heavy"],
  ].map(([id, load]) => ({ id, name: `echo round trips per server CPU second, ${load} load`, goal: "≥ 2×", le: false, limit: 2, metric: (r) => r.roundTripsPerCpuSecond, unit: (v) => num(v), problem: (r) => (r.failed || r.dropped ? `${r.failed} failed, ${r.dropped} dropped` : null) })),
  { id: "xworker", name: "cross-worker broadcast p99 latency", goal: "≤ 1/2", le: true, limit: 0.5, metric: (r) => r.p99, unit: (v) => `${ms(v)} ms`, problem: deliveryProblem },
  { id: "max", name: "connections held with 4 workers, RSS per connection", goal: "all held, ≤ 1/5", le: true, limit: 0.2, metric: (r) => r.rssPerConn, unit: (v) => `${num(v / KiB, 1)} KiB`, problem: holdProblem },
];

for (const t of TARGETS) {
  if (t.id === "floor") {
    // weroll-native's paced fan-out (scenario 2) against the floor program's, same sockets and rate.
    t.evaluate = (results) => {
      const fl = results.floor && results.floor.floor;
      const w = results.bcast && results.bcast.weroll;
      if (!fl) return null;
      const out = { target: t, sio: null, wn: w && !w.error ? t.metric(w) : null, ratio: null, notes: [`floor ${num(fl.serverCpuPerMillion, 2)} s per million`] };
      if (fl.error) return { ...out, status: "not compared", notes: [`floor: ${fl.error}`] };
      if (!w) return { ...out, status: "not compared (scenario 2 not run)" };
      if (w.error) return { ...out, status: "missed", notes: [`weroll-native: ${w.error}`] };
      out.ratio = out.wn / fl.serverCpuPerMillion;
      const wp = t.problem(w);
      if (wp) return { ...out, status: "missed", notes: [...out.notes, `weroll-native: ${wp}`] };
      return { ...out, status: out.ratio <= t.limit ? "met" : "missed" };
    };
    continue;
  }
  t.evaluate = (results) => {
    const s = results[t.id] && results[t.id].socketio;
    const w = results[t.id] && results[t.id].weroll;
    if (!s && !w) return null;
    const out = { target: t, sio: s ? t.metric(s) : null, wn: w ? t.metric(w) : null, ratio: null, notes: [] };
    if (t.id === "max" && w && !w.error) out.name = `${num(w.requested)} connections held with ${w.workers} workers, RSS per connection`;
    if (!w) return { ...out, status: "not run" };
    if (w.error) return { ...out, status: "missed", notes: [`weroll-native: ${w.error}`] };
    if (!s) return { ...out, status: "not compared (socket.io not run)" };
    if (s.error) return { ...out, status: "not compared", notes: [`socket.io: ${s.error}`] };
    const sp = t.problem(s);
    if (sp) out.notes.push(`socket.io: ${sp}`);
    const wp = t.problem(w);
    if (out.sio > 0 && Number.isFinite(out.wn)) out.ratio = out.wn / out.sio;
    if (wp) return { ...out, status: "missed", notes: [...out.notes, `weroll-native: ${wp}`] };
    if (out.ratio === null) return { ...out, status: "not compared" };
    const met = t.le ? out.ratio <= t.limit : out.ratio >= t.limit;
    return { ...out, status: met ? "met" : "missed" };
  };
}

/** Rows of one scenario's table: [label, value(r), ratio?]. */
function idleRows(holdLabel) {
  return [
    ["workers", (r) => num(r.workers)],
    ["connections asked", (r) => num(r.requested)],
    ["connected (failed)", (r) => `${num(r.connected)} (${num(r.failed)})`],
    ["connect time, s (rate/s)", (r) => `${num(r.connectSeconds, 1)} (${num(r.connectRate)})`],
    ["open on the servers after connect", (r) => num(r.serverClients)],
    [holdLabel, (r) => `${num(r.held)} / ${num(r.dropped)}`],
    ["open on the servers after the hold", (r) => num(r.serverClientsAfterHold)],
    ["server RSS before, MiB", (r) => num(r.rssBefore / MiB, 1)],
    ["server RSS after connect, MiB", (r) => num(r.rssAfter / MiB, 1)],
    ["**server RSS per connection, KiB**", (r) => num(r.rssPerConn / KiB, 2), (r) => r.rssPerConn],
    ["  of which V8 heap used / V8 heap reserved, KiB", (r) => `${num(r.breakdown.heapUsed / KiB, 2)} / ${num(r.breakdown.heapTotal / KiB, 2)}`],
    ["  the rest (RSS growth − V8 heap used growth: native, buffers), KiB", (r) => num(r.breakdown.outsideHeap / KiB, 2), (r) => r.breakdown.outsideHeap],
    ["server RSS per connection after the hold, KiB", (r) => num(r.rssPerConnAfterHold / KiB, 2), (r) => r.rssPerConnAfterHold],
    ["server CPU to accept, ms per 1000 connections", (r) => num((r.cpuConnect / r.connected) * 1e6, 1), (r) => r.cpuConnect / r.connected],
    ["loadgen processes, RSS per connection, KiB", (r) => `${num(r.loadgenProcs)}, ${num(r.loadgenRssPerConn / KiB, 2)}`],
  ];
}
const latencyRows = [
  ["latency p50, ms", (r) => ms(r.p50), (r) => r.p50],
  ["latency p90, ms", (r) => ms(r.p90), (r) => r.p90],
  ["latency p99, ms", (r) => ms(r.p99), (r) => r.p99],
  ["latency p99.9, ms", (r) => ms(r.p999), (r) => r.p999],
  ["latency max, ms", (r) => ms(r.max), (r) => r.max],
];
const ORDER = ["idle", "bcast", "burst", "floor", "echo", "echoMid", "echoHeavy", "xworker", "max"];
const SCENARIOS = [
  {
    id: "idle",
    title: (c) => `1. Idle connections: ${num(c.idleConns)} on 2 workers, held ${c.idleHold} s`,
    rows: idleRows("held / dropped during the hold"),
  },
  {
    id: "bcast",
    title: (c) => `2. Broadcast fan-out: ${num(c.bcastConns)} clients + 1 sender on worker 0, ${c.bcastRate} broadcasts/s for ${c.bcastDuration} s`,
    rows: [
      ["clients (incl. the sender) connected", (r) => `${num(r.connected)} / ${num(r.clients)}`],
      ["broadcasts sent (rate/s)", (r) => `${num(r.sent)} (${num(r.sendRate, 1)})`],
      ["deliveries expected / received", (r) => `${num(r.expected)} / ${num(r.received)}`],
      ["deliveries missing (clients short)", (r) => `${num(r.missing)} (${num(r.clientsShort)})`],
      ["delivery window, s", (r) => num(r.windowSeconds, 2)],
      ["deliveries per second (wall)", (r) => num(r.deliveriesPerSecond), (r) => r.deliveriesPerSecond],
      ["server CPU, s (kernel share)", (r) => `${num(r.serverCpu, 2)} (${num(r.serverSysShare * 100)} %)`, (r) => r.serverCpu],
      ["**server CPU per million deliveries, s**", (r) => num(r.serverCpuPerMillion, 3), (r) => r.serverCpuPerMillion],
      ["  of which user space (kernel time left out), s", (r) => num(r.serverCpuPerMillion * (1 - r.serverSysShare), 3), (r) => r.serverCpuPerMillion * (1 - r.serverSysShare)],
      ["Redis CPU, s", (r) => num(r.redisCpu, 2)],
      ...latencyRows.filter(([l]) => !l.includes("p90")),
      ["loadgen busy (CPU s / wall s)", (r) => `${num(r.loadgenBusy * 100)} %`],
    ],
  },
  {
    id: "burst",
    title: (c) => `2b. Burst fan-out: ${num(c.burstConns)} clients + 1 sender, ${c.burstWindow} broadcasts in flight, ${num(c.burstRate * c.burstDuration)} in all`,
    rows: [
      ["clients (incl. the sender) connected", (r) => `${num(r.connected)} / ${num(r.clients)}`],
      ["broadcasts sent (rate/s)", (r) => `${num(r.sent)} (${num(r.sendRate, 1)})`],
      ["deliveries expected / received", (r) => `${num(r.expected)} / ${num(r.received)}`],
      ["deliveries missing (clients short)", (r) => `${num(r.missing)} (${num(r.clientsShort)})`],
      ["deliveries per second (wall)", (r) => num(r.deliveriesPerSecond), (r) => r.deliveriesPerSecond],
      ["server CPU, s (kernel share)", (r) => `${num(r.serverCpu, 2)} (${num(r.serverSysShare * 100)} %)`, (r) => r.serverCpu],
      ["**server CPU per million deliveries, s**", (r) => num(r.serverCpuPerMillion, 3), (r) => r.serverCpuPerMillion],
      ["  of which user space (kernel time left out), s", (r) => num(r.serverCpuPerMillion * (1 - r.serverSysShare), 3), (r) => r.serverCpuPerMillion * (1 - r.serverSysShare)],
      ["worker 0 JS event-loop delay p99 / max, ms", (r) => `${num(r.loopDelayP99, 1)} / ${num(r.loopDelayMax, 1)}`, (r) => r.loopDelayMax],
      ...latencyRows.filter(([l]) => !l.includes("p90")),
      ["loadgen busy (CPU s / wall s)", (r) => `${num(r.loadgenBusy * 100)} %`],
    ],
  },
  {
    id: "floor",
    title: (c) => `2c. The floor: one thread writes the same pre-built frame to ${num(c.bcastConns)} loopback sockets, ${c.bcastRate}/s for ${c.bcastDuration} s (bench/loadgen/src/bin/floor.rs)`,
    single: "floor",
    rows: [
      ["deliveries (frame bytes)", (r) => `${num(r.deliveries)} (${num(r.frameBytes)})`],
      ["CPU, s (kernel share)", (r) => `${num(r.serverCpu, 3)} (${num(r.serverSysShare * 100)} %)`],
      ["**CPU per million deliveries, s**", (r) => num(r.serverCpuPerMillion, 3)],
    ],
  },
  ...[
    ["echo", "3a", "echoConns", "echoDepth"],
    ["echoMid", "3b", "echoMidConns", "echoMidDepth"],
    ["echoHeavy", "3c", "echoHeavyConns", "echoHeavyDepth"],
  ].map(([id, n, conns, depth]) => ({
    id,
    title: (c) => `${n}. Echo through the JS handler: ${num(c[conns])} clients on 2 workers, ${c[depth]} in flight each, ${c.echoDuration} s`,
    rows: echoRows(),
  })),
];

function echoRows() {
  return [
      ["clients connected", (r) => num(r.connected)],
      ["round trips", (r) => num(r.roundTrips)],
      ["round trips per second (wall)", (r) => num(r.rate), (r) => r.rate],
      ["latency p50, ms", (r) => ms(r.p50), (r) => r.p50],
      ["latency p99, ms", (r) => ms(r.p99), (r) => r.p99],
      ["server CPU, s (kernel share)", (r) => `${num(r.serverCpu, 2)} (${num(r.serverSysShare * 100)} %)`],
      ["server CPU per 100k round trips, s", (r) => num(r.cpuPer100k, 3), (r) => r.cpuPer100k],
      ["**round trips per server CPU second**", (r) => num(r.roundTripsPerCpuSecond), (r) => r.roundTripsPerCpuSecond],
      ["round trips per server user-space CPU second", (r) => num(r.roundTripsPerCpuSecond / (1 - r.serverSysShare)), (r) => r.roundTripsPerCpuSecond / (1 - r.serverSysShare)],
      ["loadgen busy (CPU s / wall s)", (r) => `${num(r.loadgenBusy * 100)} %`],
  ];
}

SCENARIOS.push(
  {
    id: "xworker",
    title: (c) => `4. Cross-worker broadcast through Redis: sender on worker 0, ${num(c.xConns)} receivers on worker 1, ${c.xRate}/s for ${c.xDuration} s${c.xRepeats > 1 ? `, ${c.xRepeats} runs (the run of median p99 shown)` : ""}`,
    rows: [
      ["p99 of each run, ms", (r) => (r.p99Runs ? r.p99Runs.map(ms).join(", ") : ms(r.p99))],
      ["broadcasts sent (rate/s)", (r) => `${num(r.sent)} (${num(r.sendRate, 1)})`],
      ["deliveries expected / received (all clients)", (r) => `${num(r.expected)} / ${num(r.received)}`],
      ["deliveries missing", (r) => num(r.missing)],
      ["receiver latency p50, ms", (r) => ms(r.p50), (r) => r.p50],
      ["receiver latency p90, ms", (r) => ms(r.p90), (r) => r.p90],
      ["**receiver latency p99, ms**", (r) => ms(r.p99), (r) => r.p99],
      ["receiver latency p99.9, ms", (r) => ms(r.p999), (r) => r.p999],
      ["receiver latency max, ms", (r) => ms(r.max), (r) => r.max],
      ["server CPU, s", (r) => num(r.serverCpu, 2)],
      ["Redis CPU, s", (r) => num(r.redisCpu, 2)],
    ],
  },
  {
    id: "max",
    title: (c) => `5. Most concurrent connections: ${num(c.maxConns)} on ${c.maxWorkers} workers, held ${c.maxHold} s`,
    rows: idleRows("held / dropped during the hold"),
  },
);
SCENARIOS.sort((a, b) => ORDER.indexOf(a.id) - ORDER.indexOf(b.id));

function cell(fn, r) {
  if (!r) return "not run";
  if (r.error) return "error";
  try {
    return fn(r);
  } catch {
    return "–";
  }
}

function scenarioTable(sc, res) {
  if (sc.single) {
    const r = res[sc.single];
    const lines = ["| | figure |", "|---|---:|"];
    for (const [label, value] of sc.rows) lines.push(`| ${label} | ${cell(value, r)} |`);
    return lines.join("\n");
  }
  const s = res.socketio;
  const w = res.weroll;
  const lines = ["| | socket.io | weroll-native | ratio (weroll-native / socket.io) |", "|---|---:|---:|---:|"];
  for (const [label, value, metric] of sc.rows) {
    let ratio = "";
    if (metric && s && w && !s.error && !w.error) {
      const a = metric(s);
      const b = metric(w);
      if (Number.isFinite(a) && Number.isFinite(b) && a !== 0) ratio = ratioText(b / a);
    }
    lines.push(`| ${label} | ${cell(value, s)} | ${cell(value, w)} | ${ratio} |`);
  }
  lines.push(`| 1-min load average before | ${cell((r) => num(r.loadBefore, 2), s)} | ${cell((r) => num(r.loadBefore, 2), w)} | |`);
  for (const [name, r] of [["socket.io", s], ["weroll-native", w]]) {
    if (r && r.error) lines.push("", `${name} failed: \`${r.error.replace(/`/g, "'").slice(0, 400)}\``);
    else if (r && r.firstError) lines.push("", `${name}, first client error: \`${String(r.firstError).replace(/`/g, "'").slice(0, 300)}\``);
  }
  return lines.join("\n");
}

/** Bars of how far each ratio is from its goal (log scale; right of the line = met). */
function svg(evals) {
  const rows = evals.filter(Boolean);
  const W = 800;
  const rowH = 46;
  const left = 390;
  const plotW = 300;
  const top = 56;
  const H = top + rows.length * rowH + 40;
  const span = 2; // decades each side of the goal
  const x = (score) => left + plotW / 2 + (Math.max(-span, Math.min(span, Math.log10(score))) / span) * (plotW / 2);
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">weroll-native vs socket.io: distance from each target</text>`,
    `<text x="${W / 2}" y="38" text-anchor="middle" fill="#555">bar = how many times better (right, green) or worse (left, red) than the target ratio; log scale</text>`,
  ];
  for (const d of [-2, -1, 0, 1, 2]) {
    const gx = left + plotW / 2 + (d / span) * (plotW / 2);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + rows.length * rowH}" stroke="${d === 0 ? "#000" : "#ddd"}" stroke-width="${d === 0 ? 1.5 : 1}"/>`);
    out.push(`<text x="${gx}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555">${d === 0 ? "target" : (d > 0 ? "" : "1/") + 10 ** Math.abs(d) + "×"}</text>`);
  }
  rows.forEach((e, i) => {
    const y = top + i * rowH;
    const t = e.target;
    out.push(`<text x="8" y="${y + 16}" font-weight="bold">${esc(e.name || t.name)}</text>`);
    out.push(`<text x="8" y="${y + 32}" fill="#555">target ${esc(t.goal)}: ${esc(e.status)}</text>`);
    if (e.ratio !== null && Number.isFinite(e.ratio) && e.ratio > 0) {
      const score = t.le ? t.limit / e.ratio : e.ratio / t.limit;
      const x0 = x(1);
      const x1 = x(score);
      const color = e.status === "met" ? "#2e9e44" : "#d0453a";
      out.push(`<rect x="${Math.min(x0, x1)}" y="${y + 6}" width="${Math.max(2, Math.abs(x1 - x0))}" height="24" fill="${color}"/>`);
      out.push(`<text x="${left + plotW + 8}" y="${y + 22}">ratio ${esc(ratioText(e.ratio))}</text>`);
    } else {
      out.push(`<text x="${left + plotW / 2 + 8}" y="${y + 22}" fill="#d0453a">no ratio</text>`);
    }
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** weroll-native as it is vs as `kind` (attached, recovery on): server CPU per unit of work. */
function comparisonTable(results, kind, limit, labels) {
  const metrics = {
    bcast: ["paced fan-out, CPU s per million deliveries", (r) => r.serverCpuPerMillion, (v) => num(v, 2)],
    burst: ["burst fan-out, CPU s per million deliveries", (r) => r.serverCpuPerMillion, (v) => num(v, 2)],
    echo: ["echo 20 × 1, CPU s per 100k round trips", (r) => (r.serverCpu / r.roundTrips) * 1e5, (v) => num(v, 2)],
    echoMid: ["echo 100 × 1, CPU s per 100k round trips", (r) => (r.serverCpu / r.roundTrips) * 1e5, (v) => num(v, 2)],
    echoHeavy: ["echo 500 × 4, CPU s per 100k round trips", (r) => (r.serverCpu / r.roundTrips) * 1e5, (v) => num(v, 2)],
    idle: ["RSS per idle connection, KiB", (r) => r.rssPerConn / KiB, (v) => num(v, 1)],
  };
  const rows = [];
  for (const [id, [label, metric, fmt]] of Object.entries(metrics)) {
    const own = results[id] && results[id].weroll;
    const att = results[id] && results[id][kind];
    if (!own || !att) continue;
    if (own.error || att.error) {
      rows.push(`| ${label} | ${own.error ? "failed" : fmt(metric(own))} | ${att.error ? "failed" : fmt(metric(att))} | – | **missed** |`);
      continue;
    }
    const a = metric(own);
    const b = metric(att);
    const ratio = a > 0 ? b / a : null;
    const problem = deliveryProblem(att);
    rows.push(`| ${label} | ${fmt(a)} | ${fmt(b)} | ${ratioText(ratio)} | **${problem ? "missed: " + problem : ratio !== null && ratio <= limit ? "met" : "missed"}** |`);
  }
  if (!rows.length) return null;
  return [`| figure | ${labels[0]} | ${labels[1]} | ratio | ≤ ${limit} |`, "|---|---:|---:|---:|---|", ...rows].join("\n");
}

function writeReport(report, outFile) {
  const { machine: m, cfg: c, results } = report;
  const evals = TARGETS.map((t) => t.evaluate(results));
  const svgName = report.mode === "quick" ? "ratios-quick.svg" : "ratios.svg";
  const L = [];
  L.push(`# weroll-native vs socket.io: benchmark results (${report.mode} run)`);
  L.push("");
  L.push(`Written by \`bench/run.js\` on ${report.date.slice(0, 10)}; the run took ${num(report.seconds)} s. Command: \`${report.command}\`.`);
  L.push("");
  L.push("Both servers run the same app as Redis-clustered workers (2, or 4 for scenario 5) on one redis-server that the bench starts; the load comes from `bench/loadgen` (Rust, Engine.IO v4 websockets spoken directly). CPU seconds are utime+stime of each worker's process tree and RSS is VmRSS, both read from /proc; the loadgen, Redis and the servers share the same cores, so wall-clock rates are shown but the per-CPU-second figures are the ones compared.");
  L.push("");
  L.push("On loopback a `send()` also runs the receiving socket's TCP input (and the wake-up of the loadgen thread) in the sender's context, so each server is charged kernel time for the client side of every message it writes; the \"kernel share\" rows show how much of the server CPU is kernel time, and the \"user space\" rows leave it out (for reading only: the targets use the full figure).");
  L.push("");
  L.push("## Machine and versions");
  L.push("");
  L.push("| | |", "|---|---|");
  L.push(`| CPU | ${m.nproc} × ${m.model} |`);
  L.push(`| memory | ${num(m.memGiB, 1)} GiB |`);
  L.push(`| kernel | ${m.kernel} (open files limit ${m.fdLimit}) |`);
  if (report.loadAverage) L.push(`| load average (1, 5, 15 min) | ${report.loadAverage.start.map((v) => num(v, 2)).join(", ")} at the start, ${report.loadAverage.end.map((v) => num(v, 2)).join(", ")} at the end (other work on the machine shows here) |`);
  L.push(`| node | ${m.node} |`);
  L.push(`| socket.io | ${m.socketio} (@socket.io/redis-adapter ${m.redisAdapter}, redis client ${m.redisClient}) |`);
  L.push(`| redis-server | ${m.redisServer} |`);
  L.push(`| weroll-native | git ${m.weroll} |`);
  L.push(`| loadgen | ${m.rustc} |`);
  L.push("");
  L.push("## Targets");
  L.push("");
  L.push("| target | socket.io | weroll-native | ratio | goal | status |", "|---|---:|---:|---:|---|---|");
  for (const e of evals) {
    if (!e) continue;
    const t = e.target;
    const notes = e.notes && e.notes.length ? ` (${e.notes.join("; ")})` : "";
    L.push(`| ${e.name || t.name} | ${e.sio === null ? "–" : t.unit(e.sio)} | ${e.wn === null ? "–" : t.unit(e.wn)} | ${ratioText(e.ratio)} | ${t.goal} | **${e.status}**${notes} |`);
  }
  L.push("");
  L.push(`![distance of each ratio from its target](${svgName})`);
  L.push("");
  for (const sc of SCENARIOS) {
    if (!results[sc.id]) continue;
    L.push(`## ${sc.title(c)}`);
    L.push("");
    L.push(scenarioTable(sc, results[sc.id]));
    L.push("");
  }
  const attached = comparisonTable(results, "attached", 1.05, ["own port", "attached"]);
  if (attached) {
    L.push("## Attached to an app's http server vs a port of its own");
    L.push("");
    L.push("The same weroll-native workers, once on their own port and once attached to an `http.Server` that also answers the app's own route (Realtime `config.server`): websockets are handed to the native side once Node parsed their upgrade request, so their frames never pass through JavaScript. Target: within 5 %.");
    L.push("");
    L.push(attached);
    L.push("");
  }
  const recovery = comparisonTable(results, "recovery", 1.15, ["recovery off", "recovery on"]);
  if (recovery) {
    L.push("## Connection state recovery on vs off");
    L.push("");
    L.push("The same weroll-native workers with `connectionStateRecovery` off and on (defaults: 120 s, at most 100,000 events or 64 MiB kept): with it on, every broadcast gets an offset and is kept once for whoever misses it. Target: at most 15 % more CPU per delivery.");
    L.push("");
    L.push(recovery);
    L.push("");
  }
  // The profile (perf, strace, context switches) is measured by hand: bench/PROFILE.md.
  const profile = path.join(__dirname, "..", "PROFILE.md");
  if (fs.existsSync(profile)) {
    L.push(fs.readFileSync(profile, "utf8").trim().replace(/^# /, "## "));
    L.push("");
  }
  L.push("## Settings");
  L.push("");
  L.push("Each can be changed with `--<name> N` (kebab-case) or `BENCH_<NAME>=N`; `--quick` starts from small numbers.");
  L.push("");
  L.push("```");
  for (const [k, v] of Object.entries(c)) L.push(`${k} = ${v}`);
  L.push("```");
  L.push("");
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, L.join("\n"));
  const svgFile = path.join(path.dirname(outFile), svgName);
  fs.writeFileSync(svgFile, svg(evals.map((e) => e && { ...e })));
  return [outFile, svgFile];
}

module.exports = { writeReport, TARGETS };
