"use strict";
// The processes a benchmark run starts: redis-server, the server workers and the loadgen
// processes, each with a bounded wait for the line that says it is ready.
const { spawn, execFileSync } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const readline = require("node:readline");

const BENCH = path.join(__dirname, "..");
const LOADGEN = path.join(BENCH, "loadgen", "target", "release", "weroll-bench-loadgen");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows a child's stdout line by line: `waitFor(test, ms, what)` resolves the first line,
 * from now on, for which `test(line)` is truthy (its value), and rejects when the child exits
 * or `ms` pass first.
 */
function follow(child, name) {
  const waiters = new Set();
  const tail = [];
  let exited = null;
  const rl = readline.createInterface({ input: child.stdout });
  rl.on("line", (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    for (const w of [...waiters]) {
      const v = w.test(line);
      if (v) {
        waiters.delete(w);
        w.resolve(v);
      }
    }
  });
  const errTail = [];
  if (child.stderr) {
    readline.createInterface({ input: child.stderr }).on("line", (line) => {
      errTail.push(line);
      if (errTail.length > 20) errTail.shift();
      if (process.env.BENCH_VERBOSE) console.error(`[${name}] ${line}`);
    });
  }
  child.on("exit", (code, signal) => {
    exited = `${name} exited (${signal || code})${errTail.length ? ": " + errTail.slice(-5).join(" | ") : ""}`;
    for (const w of waiters) w.reject(new Error(exited));
    waiters.clear();
  });
  function waitFor(test, ms, what) {
    if (exited) return Promise.reject(new Error(exited));
    return new Promise((resolve, reject) => {
      const w = { test, resolve, reject };
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`${name}: no ${what} within ${Math.round(ms / 1000)} s${errTail.length ? ": " + errTail.slice(-5).join(" | ") : ""}`));
      }, ms);
      w.resolve = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      w.reject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      waiters.add(w);
    });
  }
  return { waitFor, exited: () => exited, stderr: () => errTail.join("\n") };
}

/** Ends a child: closes its stdin (our stop signal), then SIGTERM, then SIGKILL. */
async function stopChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  try {
    child.stdin.end();
  } catch {}
  const timed = (ms) => Promise.race([gone.then(() => true), sleep(ms).then(() => false)]);
  if (await timed(graceMs)) return;
  child.kill("SIGTERM");
  if (await timed(graceMs)) return;
  child.kill("SIGKILL");
  await gone;
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "0.0.0.0", () => s.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive free ports below the ephemeral range (which the loadgen's many client
 * sockets use up), starting at a random base.
 */
async function freePorts(count) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 12000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports in 20000..32000`);
}

function redisVersion() {
  try {
    const m = /v=(\S+)/.exec(execFileSync("redis-server", ["--version"], { encoding: "utf8" }));
    return m ? m[1] : "unknown";
  } catch {
    return null;
  }
}

function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let buf = "";
    s.setTimeout(1000, () => s.destroy());
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      buf += d;
      if (buf.includes("PONG")) {
        s.end();
        resolve(true);
      }
    });
    s.on("error", () => resolve(false));
    s.on("close", () => resolve(buf.includes("PONG")));
  });
}

/** A private redis-server on a free port, no persistence. */
async function startRedis() {
  if (!redisVersion()) throw new Error("redis-server not found: install it (Debian: apt-get install redis-server)");
  const port = await freePorts(1);
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--maxclients", "1000"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const f = follow(child, "redis-server");
  for (let i = 0; i < 100 && !f.exited(); i++) {
    if (await redisPing(port)) return { port, pid: child.pid, stop: () => stopChild(child) };
    await sleep(100);
  }
  await stopChild(child);
  throw new Error(`redis-server on port ${port} did not answer PING: ${f.exited() || f.stderr()}`);
}

const WORKER_SCRIPTS = { socketio: "socketio.js", weroll: "weroll.js", attached: "weroll-attached.js", recovery: "weroll.js" };
/** Environment a kind adds to its workers. */
const WORKER_ENV = { recovery: { BENCH_RECOVERY: "1" } };

/**
 * A cluster of `count` workers of `kind` (socketio | weroll | attached | recovery) on ports base..base+count-1, all
 * on one Redis. Resolves `{ports, pids, stats(), stop()}` once every worker printed READY.
 */
async function startCluster(kind, count, redis) {
  const base = await freePorts(count);
  const script = path.join(BENCH, "servers", WORKER_SCRIPTS[kind]);
  const workers = [];
  const stopAll = () => Promise.all(workers.map((w) => stopChild(w.child)));
  try {
    for (let i = 0; i < count; i++) {
      // Under BENCH_PERF, V8 writes /tmp/perf-<pid>.map so perf can name JIT-compiled JS.
      const nodeArgs = process.env.BENCH_PERF ? ["--perf-basic-prof"] : [];
      const child = spawn(process.execPath, [...nodeArgs, script], {
        cwd: BENCH,
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, ...(WORKER_ENV[kind] || {}), BENCH_PORT: String(base), WEROLL_WORKER_INDEX: String(i), WEROLL_WORKER_COUNT: String(count), BENCH_REDIS_PORT: String(redis.port) },
      });
      workers.push({ child, lines: follow(child, `${kind} worker ${i}`) });
    }
    await Promise.all(workers.map((w) => w.lines.waitFor((l) => /^READY \d+/.test(l), 30000, "READY line")));
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    kind,
    ports: workers.map((_, i) => base + i),
    pids: workers.map((w) => w.child.pid),
    /** Each worker's own count of open connections. */
    async stats() {
      return Promise.all(
        workers.map(async (w) => {
          const p = w.lines.waitFor((l) => l.startsWith("STATS ") && JSON.parse(l.slice(6)), 30000, "STATS line");
          w.child.stdin.write("stats\n");
          return p;
        }),
      );
    },
    alive: () => workers.filter((w) => !w.lines.exited()).length,
    stop: stopAll,
  };
}

let nextBlock = 0;

/**
 * A /24 of source addresses no earlier loadgen of this run used (so no TIME_WAIT socket of an
 * earlier scenario is in the way): its first address, 127.(1+k/256).(k%256).1.
 */
function takeSources(n) {
  if (n > 254) throw new Error(`${n} source addresses do not fit in one /24`);
  const k = nextBlock++;
  return `127.${1 + Math.floor(k / 256)}.${k % 256}.1`;
}

/**
 * Loadgen processes for one scenario: `conns` connections of `mode` spread over `ports` and over
 * as many processes as `perProc` asks (the fd limit bounds each). Options are passed as flags.
 */
function startLoadgen(mode, { conns, ports, perProc, perSource, flags = {} }) {
  const procs = Math.max(1, Math.ceil(conns / perProc));
  const out = [];
  let offset = 0;
  for (let p = 0; p < procs; p++) {
    const n = Math.floor(conns / procs) + (p < conns % procs ? 1 : 0);
    const srcCount = Math.max(1, Math.ceil((n + 1) / perSource));
    const args = [mode, "--ports", ports.join(","), "--conns", String(n), "--offset", String(offset), "--src", takeSources(srcCount), "--src-count", String(srcCount)];
    for (const [k, v] of Object.entries(flags)) if (v !== undefined) args.push(`--${k}`, String(v));
    offset += n;
    const child = spawn(LOADGEN, args, { stdio: ["pipe", "pipe", "pipe"] });
    const lines = follow(child, `loadgen ${mode} #${p}`);
    out.push({ child, lines, conns: n });
  }
  const event = (name) => (l) => {
    if (!l.startsWith("{")) return null;
    const o = JSON.parse(l);
    return o.event === name ? o : null;
  };
  return {
    pids: out.map((o) => o.child.pid),
    procs,
    /** Resolves every process's `ready` line. */
    ready: (ms) => Promise.all(out.map((o) => o.lines.waitFor(event("ready"), ms, "ready line"))),
    /** Sends `go` and resolves every process's `result` line. */
    go(ms) {
      const results = out.map((o) => o.lines.waitFor(event("result"), ms, "result line"));
      for (const o of out) o.child.stdin.write("go\n");
      return Promise.all(results);
    },
    stop: () => Promise.all(out.map((o) => stopChild(o.child, 10000))),
  };
}

module.exports = { startRedis, startCluster, startLoadgen, redisVersion, stopChild, sleep, LOADGEN, BENCH };
