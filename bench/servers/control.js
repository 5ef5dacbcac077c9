"use strict";
// What both benchmark workers share: their settings from the environment, and the line protocol
// with bench/run.js (READY <port> on stdout; `stats` on stdin answers STATS <json>).
const readline = require("node:readline");
const { monitorEventLoopDelay } = require("node:perf_hooks");

function int(name) {
  const v = Number(process.env[name]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(process.env[name])}`);
  return v;
}

function workerEnv() {
  const base = int("BENCH_PORT");
  return {
    base,
    port: base + int("WEROLL_WORKER_INDEX"),
    redisHost: process.env.BENCH_REDIS_HOST || "127.0.0.1",
    redisPort: int("BENCH_REDIS_PORT"),
  };
}

function serveControl(port, stats) {
  // How late a JS timer runs: the event-loop delay since the last `stats` (ms, 1 ms resolution).
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  process.stdout.write(`READY ${port}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (line.trim() !== "stats") return;
    const loopDelay = { max: delay.max / 1e6, p99: delay.percentile(99) / 1e6, mean: delay.mean / 1e6 };
    delay.reset();
    process.stdout.write(`STATS ${JSON.stringify({ ...stats(), memory: process.memoryUsage(), loopDelay })}\n`);
  });
  // The runner going away (stdin closed) ends the worker.
  rl.on("close", () => process.exit(0));
}

module.exports = { workerEnv, serveControl };
