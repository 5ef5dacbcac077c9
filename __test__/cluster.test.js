"use strict";
// weroll-native/cluster: 4 workers on base..base+3 (the port = base + worker index rule), a
// worker killed with SIGKILL comes back on its own port, and — with redis-server installed —
// the workers form one cluster through the Redis adapter.
const test = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const cluster = require("node:cluster");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { io } = require("socket.io-client");
const launcher = require("weroll-native/cluster");
const { findBinary, isCI } = require("../scripts/setup.js");
const { startRedis } = require("../examples/demo.js");
const { canConnect, freePorts, nextEvent: waitFor } = require("./fixtures/cluster-util.js");

const WORKERS = 4;
const TIMEOUT = 10000;

/** A connected socket.io-client 4 socket (polling, then the websocket upgrade). */
function connect(port) {
  const socket = io(`http://127.0.0.1:${port}`, { reconnection: false, timeout: TIMEOUT, forceNew: true });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      socket.off("connect_error");
      resolve(socket);
    });
    socket.once("connect_error", (err) => {
      socket.close();
      reject(new Error(`cannot connect to port ${port}: ${err.message}`));
    });
  });
}

/**
 * Runs nginx with examples/nginx.conf, its worker ports moved to `base..`, listening on `port`.
 * Resolves `{ port, stop() }` once nginx accepts connections.
 */
async function startNginx(bin, base, port) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-nginx-"));
  let conf = fs.readFileSync(path.join(__dirname, "..", "examples", "nginx.conf"), "utf8");
  conf = conf.replace(/127\.0\.0\.1:300([1-4])/g, (_, i) => `127.0.0.1:${base + Number(i) - 1}`);
  conf = conf.replace("listen 8080;", `listen 127.0.0.1:${port};`);
  for (let i = 0; i < WORKERS; i++) assert.ok(conf.includes(`127.0.0.1:${base + i};`), `examples/nginx.conf lists worker port 300${i + 1}`);
  assert.ok(conf.includes(`listen 127.0.0.1:${port};`), "examples/nginx.conf listens on 8080");
  // writable places for an unprivileged nginx
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((k) => `${k}_temp_path ${dir}/${k};`).join(" ");
  conf = conf.replace("http {", `http {\n    access_log off; ${temp}`);
  const file = path.join(dir, "nginx.conf");
  fs.writeFileSync(file, conf);
  const child = spawn(bin, ["-e", "stderr", "-p", dir, "-c", file, "-g", `daemon off; pid ${dir}/nginx.pid;`], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  try {
    const deadline = Date.now() + TIMEOUT;
    while (!(await canConnect(port))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`nginx did not start: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    child.kill("SIGKILL"); // never leave an nginx behind to keep the test process alive
    throw err;
  }
  const stop = () => {
    if (child.exitCode !== null) return Promise.resolve();
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGQUIT");
    return exited.then(() => fs.rmSync(dir, { recursive: true, force: true }));
  };
  return { port, stop };
}

/** Asks the worker behind `socket` who it is. */
async function whoami(socket) {
  const reply = waitFor(socket, "whoami");
  socket.emit("m", ["whoami"]);
  return (await reply)[0];
}

test("cluster launcher: stable per-worker ports, respawn on the same port", async (t) => {
  let redis = null;
  if (findBinary("redis-server")) {
    redis = await startRedis();
  } else {
    assert.ok(!isCI(), "redis-server is required in CI");
    t.diagnostic("redis-server is not installed: workers run without the Redis adapter (port rule and respawn only)");
  }
  const base = await freePorts(WORKERS);
  const clients = [];
  let ctl = null;
  t.after(async () => {
    for (const c of clients) c.close();
    if (ctl) await ctl.stop();
    if (redis) redis.child.kill("SIGTERM");
  });

  const ready = new Map(); // index -> {ready: port, pid}
  const onMessage = (worker, msg) => {
    if (msg && msg.ready) ready.set(msg.index, msg);
  };
  cluster.on("message", onMessage);
  t.after(() => cluster.off("message", onMessage));
  const allUp = waitFor(cluster, "message", () => ready.size === WORKERS, 30000);
  const env = { BASE_PORT: String(base) };
  if (redis) env.REDIS_PORT = String(redis.port);
  ctl = launcher.start({
    workers: WORKERS,
    exec: path.join(__dirname, "fixtures", "cluster-worker.js"),
    env,
    respawnDelay: 100,
  });
  await allUp;

  await t.test("worker i listens on base + i", () => {
    for (let i = 0; i < WORKERS; i++) assert.strictEqual(ready.get(i).ready, base + i, `worker ${i}`);
  });

  await t.test("every port accepts socket.io-client 4 connections", async () => {
    for (let i = 0; i < WORKERS; i++) {
      const socket = await connect(base + i);
      clients.push(socket);
      const me = await whoami(socket);
      assert.deepStrictEqual([me.index, me.port], [i, base + i]);
    }
  });

  const nginx = findBinary("nginx");
  await t.test("nginx with examples/nginx.conf keeps a polling client on one worker", { skip: !nginx && !isCI() && "nginx is not installed" }, async () => {
    assert.ok(nginx, "nginx is required in CI");
    const proxy = await startNginx(nginx, base, await freePorts(1));
    t.after(() => proxy.stop());
    for (const transports of [["polling"], ["polling", "websocket"]]) {
      const socket = io(`http://127.0.0.1:${proxy.port}`, { transports, reconnection: false, forceNew: true });
      try {
        await waitFor(socket, "connect");
        const seen = new Set();
        for (let i = 0; i < 5; i++) seen.add((await whoami(socket)).index);
        assert.strictEqual(seen.size, 1, `${transports} session stayed on one worker`);
      } finally {
        socket.close();
      }
    }
    await proxy.stop();
  });

  await t.test("a broadcast reaches the clients of every worker", { skip: !redis && "needs redis-server" }, async () => {
    const heard = clients.map((c) => waitFor(c, "said", (m) => m.data === "hello"));
    clients[0].emit("m", ["say", "hello"]);
    const got = await Promise.all(heard);
    assert.deepStrictEqual(got.map(([m]) => m.index), [0, 0, 0, 0]);
  });

  await t.test("servers() lists every worker", { skip: !redis && "needs redis-server" }, async () => {
    const reply = waitFor(clients[1], "servers");
    clients[1].emit("m", ["servers"]);
    const [list] = await reply;
    const ports = list.map((s) => Number(s.address.split(":").pop())).sort();
    assert.deepStrictEqual(ports, [base, base + 1, base + 2, base + 3]);
  });

  await t.test("a worker killed with SIGKILL comes back on the same port", async () => {
    const victim = 2;
    const old = ready.get(victim);
    const dropped = waitFor(clients[victim], "disconnect");
    const back = waitFor(cluster, "message", (w, msg) => msg && msg.ready && msg.index === victim && msg.pid !== old.pid, 20000);
    ctl.workers.get(victim).process.kill("SIGKILL");
    await dropped;
    const [, msg] = await back;
    assert.strictEqual(msg.ready, base + victim);
    const socket = await connect(base + victim);
    clients.push(socket);
    const me = await whoami(socket);
    assert.deepStrictEqual([me.index, me.port, me.pid], [victim, base + victim, msg.pid]);
  });

  await t.test("stop() ends every worker without respawning them", async () => {
    const workers = [...ctl.workers.values()];
    await ctl.stop();
    ctl = null;
    assert.ok(workers.every((w) => w.isDead()));
    await new Promise((r) => setTimeout(r, 300));
    assert.strictEqual(Object.keys(cluster.workers).length, 0);
    for (let i = 0; i < WORKERS; i++) assert.ok(!(await canConnect(base + i)), `port ${base + i} is closed`);
  });
});
