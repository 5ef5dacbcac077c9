"use strict";
// What the kernel says a process tree costs: CPU seconds (utime+stime of every process in the
// tree, threads included) and resident memory (VmRSS), read from /proc.
const fs = require("node:fs");
const { execFileSync } = require("node:child_process");

let ticks = 0;
function clockTicks() {
  if (!ticks) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** `{ppid, cpuTicks}` of one process, or null once it is gone. */
function stat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name is in parentheses and may hold spaces: fields start after the last ")".
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
  const ppid = Number(f[1]);
  const user = Number(f[11]) + Number(f[13]);
  const sys = Number(f[12]) + Number(f[14]);
  return { ppid, user, sys, cpuTicks: user + sys };
}

/** `roots` and all their live descendants. */
function tree(roots) {
  const children = new Map();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(name);
    if (!s) continue;
    if (!children.has(s.ppid)) children.set(s.ppid, []);
    children.get(s.ppid).push(Number(name));
  }
  const out = [];
  const todo = [...roots];
  const seen = new Set();
  while (todo.length) {
    const pid = todo.pop();
    if (seen.has(pid)) continue;
    seen.add(pid);
    out.push(pid);
    for (const c of children.get(pid) || []) todo.push(c);
  }
  return out;
}

/** CPU seconds `{user, sys, total}` (reaped children included) used so far by the trees of `pids`. */
function cpuTimes(pids) {
  let user = 0;
  let sys = 0;
  for (const pid of tree(pids)) {
    const s = stat(pid);
    if (s) {
      user += s.user;
      sys += s.sys;
    }
  }
  const hz = clockTicks();
  return { user: user / hz, sys: sys / hz, total: (user + sys) / hz };
}

/** CPU seconds (user + system) used so far by the trees of `pids`. */
function cpuSeconds(pids) {
  return cpuTimes(pids).total;
}

function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Resident bytes of the trees of `pids`. */
function rssBytes(pids) {
  let total = 0;
  for (const pid of tree(pids)) total += rssOf(pid);
  return total;
}

/** A snapshot of both, for before/after differences. */
function sample(pids) {
  return { at: process.hrtime.bigint(), cpu: cpuSeconds(pids), rss: rssBytes(pids) };
}

/** CPU seconds and wall seconds between two samples. */
function delta(a, b) {
  return { cpu: b.cpu - a.cpu, wall: Number(b.at - a.at) / 1e9 };
}

module.exports = { cpuTimes, cpuSeconds, rssBytes, sample, delta };
