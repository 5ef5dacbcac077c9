"use strict";
// `npm run demo`: a 4-worker chat cluster on this machine.
//   - a private redis-server on a free port (or the Redis at REDIS_URL),
//   - 4 workers (examples/app.js) forked by weroll-native's cluster launcher, each a Realtime
//     server on PORT + index (3001..3004) joined through the Redis adapter,
//   - the chat page on HTTP_PORT (3000), shared by the workers.
// Ctrl-C stops the workers and the private redis-server.
const cluster = require("node:cluster");
const { spawn } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const { findBinary } = require("../scripts/setup.js");

const WORKERS = Number(process.env.WORKERS || 4);
const BASE = Number(process.env.PORT || 3001);
const HTTP_PORT = Number(process.env.HTTP_PORT || BASE - 1);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const sock = net.connect(port, "127.0.0.1");
      sock.once("connect", () => {
        sock.destroy();
        resolve();
      });
      sock.once("error", () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`redis-server did not open port ${port} within ${ms} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** Starts a throwaway redis-server (no persistence) on a free local port. */
async function startRedis() {
  const bin = findBinary("redis-server");
  if (!bin) throw new Error("redis-server is not installed (apt-get install redis-server), or set REDIS_URL");
  const port = await freePort();
  const child = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((_, reject) => child.once("exit", (code) => reject(new Error(`redis-server exited with code ${code}`))));
  await Promise.race([waitForPort(port, 5000), exited]);
  return { port, child };
}

async function main() {
  let redis = null;
  const env = { PORT: String(BASE), HTTP_PORT: String(HTTP_PORT) };
  if (process.env.REDIS_URL) {
    env.REDIS_URL = process.env.REDIS_URL;
  } else {
    redis = await startRedis();
    env.REDIS_HOST = "127.0.0.1";
    env.REDIS_PORT = String(redis.port);
  }
  console.log(`redis: ${env.REDIS_URL || `redis-server on 127.0.0.1:${redis.port}`}`);

  let ctl = null;
  let stopping = false;
  const stop = (code) => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(code || 1), 5000);
    force.unref();
    Promise.resolve(ctl && ctl.stop())
      .then(() => {
        if (redis && redis.child.exitCode === null) {
          redis.child.kill("SIGTERM");
          return new Promise((resolve) => redis.child.once("exit", resolve));
        }
      })
      .then(() => {
        console.log("demo stopped");
        process.exit(code);
      });
  };
  process.on("SIGINT", () => stop(0));
  process.on("SIGTERM", () => stop(0));
  if (redis) redis.child.once("exit", () => stopping || (console.error("redis-server stopped"), stop(1)));

  const ready = new Set();
  cluster.on("message", (worker, msg) => {
    if (msg !== "ready") return;
    ready.add(worker.id);
    if (ready.size === WORKERS) {
      console.log(`\n${WORKERS} workers up: realtime ports ${BASE}..${BASE + WORKERS - 1}`);
      console.log(`chat: http://localhost:${HTTP_PORT}/   (open it in two browser windows; Ctrl-C to stop)\n`);
    }
  });
  ctl = require("weroll-native/cluster").start({
    workers: WORKERS,
    exec: path.join(__dirname, "app.js"),
    env,
    onExit(worker, index, code, signal) {
      if (ready.size < WORKERS) {
        console.error(`worker ${index} exited (${signal || `code ${code}`}) before the cluster was up; stopping`);
        stop(1);
      } else {
        console.error(`worker ${index} exited (${signal || `code ${code}`}); starting it again on port ${BASE + index}`);
      }
    },
  });
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`demo: ${err.message}`);
    process.exit(1);
  });
}

module.exports = { startRedis, freePort };
