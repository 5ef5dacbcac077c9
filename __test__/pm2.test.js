"use strict";
// pm2 cluster mode (`instances: 4`) with a private PM2_HOME: each instance listens on
// PORT + NODE_APP_INSTANCE, the four form one cluster through Redis, and `pm2 reload` (one
// instance after the other; the new one retries its port until the old one lets it go) leaves
// every port served again.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFile } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const u = require("./fixtures/cluster-util.js");

const PM2 = path.join(u.ROOT, "node_modules", ".bin", "pm2");
const APP = path.join(__dirname, "fixtures", "pm2-app.js");
const NAME = "weroll-pm2-test";
const INSTANCES = 4;

const redisBin = u.needBinary("redis-server");

describe("pm2 cluster mode, 4 instances", { skip: redisBin.skip, timeout: 85000 }, () => {
  const children = new u.Children();
  let home;
  let redis;
  let base;
  let clients = [];
  const appPids = new Set();

  function pm2(args, ms = 30000) {
    const env = { ...process.env, PM2_HOME: home, PM2_GRACEFUL_TIMEOUT: "4000" };
    for (const k of ["NODE_APP_INSTANCE", "WEROLL_WORKER_INDEX", "NODE_TEST_CONTEXT", "NODE_OPTIONS"]) delete env[k];
    return new Promise((resolve, reject) => {
      execFile(PM2, args, { env, timeout: ms, cwd: home }, (err, stdout, stderr) => {
        if (err) {
          err.message += `\npm2 ${args.join(" ")}:\n${stdout}\n${stderr}`;
          reject(err);
        } else resolve(stdout);
      });
    });
  }

  async function instances() {
    const list = JSON.parse(await pm2(["jlist"]));
    const mine = list.filter((p) => p.name === NAME);
    for (const p of mine) if (p.pid) appPids.add(p.pid);
    return mine;
  }

  function appLogs() {
    const dir = path.join(home, "logs");
    try {
      return fs
        .readdirSync(dir)
        .map((f) => `--- ${f}\n${fs.readFileSync(path.join(dir, f), "utf8").slice(-1500)}`)
        .join("\n");
    } catch {
      return "(no logs)";
    }
  }

  /** A client per port (v4 and v2 alternating), shaken as user-<port offset>. */
  async function connectAll() {
    const list = [];
    for (let i = 0; i < INSTANCES; i++) {
      const c = u.client(i % 2 ? 2 : 4, base + i, { transports: ["polling", "websocket"] });
      c.label = `port+${i}`;
      list.push(c);
      clients.push(c);
    }
    await Promise.all(list.map((c, i) => u.shake(c, i)));
    return list;
  }

  async function waitServed(ms) {
    await u.until(async () => (await Promise.all([0, 1, 2, 3].map((i) => u.canConnect(base + i)))).every(Boolean), `ports ${base}..${base + 3} accept connections`, ms, 100).catch((err) => {
      err.message += `\n${appLogs()}`;
      throw err;
    });
  }

  before(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), "pm2-"));
    redis = await new u.RedisServer(children).start();
    base = await u.freePorts(INSTANCES);
    const ecosystem = {
      apps: [
        {
          name: NAME,
          script: APP,
          instances: INSTANCES,
          exec_mode: "cluster",
          env: { PORT: String(base), REDIS_PORT: String(redis.port) },
          // The app never fires cluster "listening" (its listener is native): pm2 hands over
          // to the new instance after listen_timeout.
          listen_timeout: 1500,
          kill_timeout: 3000,
          max_restarts: 3,
        },
      ],
    };
    const file = path.join(home, "ecosystem.config.js");
    fs.writeFileSync(file, `module.exports = ${JSON.stringify(ecosystem, null, 2)};\n`);
    await pm2(["start", file]);
    await waitServed(20000);
  });

  after(async () => {
    u.closeAll(clients);
    clients = [];
    if (home) {
      await pm2(["kill"], 20000).catch(() => {});
      let daemon = NaN;
      try {
        daemon = Number(fs.readFileSync(path.join(home, "pm2.pid"), "utf8"));
      } catch {
        // no pid file: the daemon is gone
      }
      for (const pid of [daemon, ...appPids]) if (Number.isInteger(pid) && u.alive(pid)) process.kill(pid, "SIGKILL");
    }
    await children.killAll();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test("instances 0..3 listen on PORT + NODE_APP_INSTANCE and a broadcast from one reaches all four", async () => {
    const list = await instances();
    assert.equal(list.length, INSTANCES);
    assert.deepEqual(list.map((p) => Number(p.pm2_env.NODE_APP_INSTANCE)).sort(), [0, 1, 2, 3]);
    const cs = await connectAll();
    const infos = await Promise.all(cs.map((c) => u.op(c, "info")));
    assert.deepEqual(infos.map((i) => i.port), [base, base + 1, base + 2, base + 3]);
    assert.equal(new Set(infos.map((i) => i.pid)).size, INSTANCES, "four processes");
    for (const i of infos) assert.ok(appPids.has(i.pid), `pid ${i.pid} is one of pm2's`);
    for (const from of [cs[0], cs[3]]) {
      const t = `pm2-all-${from.label}`;
      await u.op(from, "broadcastToAll", { type: "evt", data: { tag: t } });
      await u.expectDelivery(assert, cs, cs, t);
    }
  });

  test("pm2 reload: every port is served again by a new process, none stays dead", { timeout: 60000 }, async (t) => {
    const before = await Promise.all(clients.filter((c) => c.connected).map((c) => u.op(c, "info")));
    const oldPids = new Map(before.map((i) => [i.port, i.pid]));
    assert.equal(oldPids.size, INSTANCES);

    // Poll every port while pm2 reloads: the longest run of refused connections per port.
    const outage = new Map([0, 1, 2, 3].map((i) => [base + i, { longest: 0, downSince: null, downs: 0 }]));
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const now = Date.now();
        await Promise.all(
          [...outage].map(async ([port, o]) => {
            const up = await u.canConnect(port, "127.0.0.1", 300);
            if (!up && o.downSince === null) {
              o.downSince = now;
              o.downs++;
            }
            if (up && o.downSince !== null) {
              o.longest = Math.max(o.longest, Date.now() - o.downSince);
              o.downSince = null;
            }
          }),
        );
        await u.delay(50);
      }
    })();
    try {
      await pm2(["reload", NAME], 45000);
      // The last instance may still be binding when the CLI returns.
      await waitServed(10000);
    } finally {
      polling = false;
      await poller;
    }
    // Close the outages the poller saw begin but, having stopped, not end.
    for (const [port, o] of outage) {
      if (o.downSince !== null && (await u.canConnect(port))) {
        o.longest = Math.max(o.longest, Date.now() - o.downSince);
        o.downSince = null;
      }
    }
    t.diagnostic(`refused during reload: ${[...outage].map(([port, o]) => `${port}: ${o.downs}x, longest ${o.longest} ms`).join("; ")}`);
    for (const [port, o] of outage) {
      assert.equal(o.downSince, null, `port ${port} is dead after the reload`);
      assert.ok(o.longest < 5000, `port ${port} was refused for ${o.longest} ms`);
    }

    const cs = await connectAll();
    const infos = await Promise.all(cs.map((c) => u.op(c, "info")));
    assert.deepEqual(infos.map((i) => i.port), [base, base + 1, base + 2, base + 3]);
    for (const i of infos) assert.notEqual(i.pid, oldPids.get(i.port), `port ${i.port} is served by a new process`);
    for (const pid of oldPids.values()) await u.until(() => !u.alive(pid), `old instance ${pid} exits`, 10000, 100);
    const list = await instances();
    assert.deepEqual(list.map((p) => p.pm2_env.status), Array(INSTANCES).fill("online"));
    const tag = "pm2-after-reload";
    await u.op(cs[1], "broadcastToAll", { type: "evt", data: { tag } });
    await u.expectDelivery(assert, cs, cs, tag);
  });
});
