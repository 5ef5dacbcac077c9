"use strict";
// The Redis cluster adapter end to end: 4 native workers (weroll-native/cluster launcher, one
// redis-server), socket.io-client 4.x and 2.x clients spread over the 4 ports. Every
// cluster-wide Realtime method delivers exactly once to the right clients and to no one else;
// Redis going away and coming back (or freezing) does not stop local delivery, cross-worker
// delivery resumes exactly once, no worker dies; pickServer() follows the workers' load and
// forgets a dead worker.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { isDeepStrictEqual } = require("node:util");
const u = require("./fixtures/cluster-util.js");

const redisBin = u.needBinary("redis-server");
const children = new u.Children();
const redisProcess = new u.Children(); // stopped last, after the workers left it
let redis = null;

before(async () => {
  if (redisBin.skip) return;
  redis = await new u.RedisServer(redisProcess).start();
});
after(async () => {
  await children.killAll();
  await redisProcess.killAll();
});

describe("4 workers through the launcher", { skip: redisBin.skip, timeout: 60000 }, () => {
  const PRESENCE_MS = 1000;
  // Long enough for a detector set to twice requestsTimeout (2 × 3000 ms) plus its check interval.
  const FROZEN_FOR = 9000;
  let base;
  let launcher;
  let all = [];
  const extra = []; // clients outside `all`, closed with it
  const byName = {};
  // name, user, worker index, client version, transports
  const LAYOUT = [
    ["a1", 1, 0, 4, ["websocket"]],
    ["a2", 1, 2, 2, ["polling", "websocket"]], // same clientID as a1, other worker
    ["b", 2, 1, 2, ["websocket"]],
    ["c", 3, 2, 4, ["polling", "websocket"]],
    ["d", 4, 3, 4, ["websocket"]],
    ["e", 5, 3, 2, ["polling", "websocket"]],
    ["f", 6, 0, 2, ["websocket"]],
    ["g", 7, 1, 4, ["polling"]],
  ];
  let tagSeq = 0;
  const tag = (what) => `${what}-${++tagSeq}`;
  const evt = (t) => ({ type: "evt", data: { tag: t } });
  const except = (...skip) => all.filter((c) => !skip.includes(c));

  before(async () => {
    base = await u.freePorts(4);
    launcher = await u.startLauncher(children, { base, redisPort: redis.port, presenceMs: PRESENCE_MS });
    for (const [name, user, index, version, transports] of LAYOUT) {
      const c = u.client(version, base + index, { transports });
      c.label = name;
      byName[name] = c;
      all.push(c);
    }
    await Promise.all(all.map((c, i) => u.shake(c, LAYOUT[i][1])));
  });
  after(async () => {
    u.closeAll(all.concat(extra));
    all = [];
  });

  test("worker i listens on base + i and every client shook hands with its clientID", async () => {
    const ports = launcher.seen("ready").map((m) => m.port).sort((x, y) => x - y);
    assert.deepEqual(ports, [base, base + 1, base + 2, base + 3]);
    for (const [name, user, index] of LAYOUT) {
      const c = byName[name];
      assert.equal(c.clientID, `u${user}`, name);
      const info = await u.op(c, "info");
      assert.equal(info.port, base + index, `${name} is served by worker ${index}`);
      assert.equal(info.socketID, c.socketID);
    }
  });

  test("sendTo(clientID) reaches each connection of that clientID on every worker once", async () => {
    const { a1, a2, b, f } = byName;
    let t = tag("sendTo-remote");
    await u.op(b, "sendTo", { clientID: "u1", ...evt(t) }); // from a worker without u1
    await u.expectDelivery(assert, all, [a1, a2], t);
    t = tag("sendTo-local");
    await u.op(f, "sendTo", { clientID: "u1", ...evt(t) }); // from a1's worker
    await u.expectDelivery(assert, all, [a1, a2], t);
    t = tag("sendTo-nobody");
    await u.op(f, "sendTo", { clientID: "u404", ...evt(t) });
    await u.delay(300);
    assert.deepEqual(all.map((c) => u.count(c, t)), all.map(() => 0));
  });

  test("socket.helper.send / helper.sendTo reach every connection of the clientID", async () => {
    const { a1, a2, b, d } = byName;
    let t = tag("helper-send");
    await u.op(a1, "send", evt(t));
    await u.expectDelivery(assert, all, [a1, a2], t);
    t = tag("helper-sendTo");
    await u.op(d, "helperSendTo", { clientID: "u2", ...evt(t) });
    await u.expectDelivery(assert, all, [b], t);
  });

  test("broadcastToRoom reaches the room's members on every worker", async () => {
    const { a1, b, c, e, g } = byName;
    for (const m of [a1, c, e, g]) await u.op(m, "enterRoom", { room: "room-x" });
    let t = tag("room");
    await u.op(b, "broadcastToRoom", { room: "room-x", ...evt(t) }); // b is not a member
    await u.expectDelivery(assert, all, [a1, c, e, g], t);
    t = tag("helper-room");
    await u.op(c, "helperBroadcastToRoom", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, all, [a1, c, e, g], t);
  });

  test("broadcastToAll / helper.broadcast reach every client once", async () => {
    const { b, d } = byName;
    let t = tag("all");
    await u.op(d, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    t = tag("helper-all");
    await u.op(b, "helperBroadcast", evt(t));
    await u.expectDelivery(assert, all, all, t);
  });

  test("broadcastWithoutSender skips only the sender (same clientID elsewhere still gets it)", async () => {
    const { a1, c } = byName;
    let t = tag("without-sender");
    await u.op(c, "broadcastWithoutSender", evt(t));
    await u.expectDelivery(assert, all, except(c), t);
    t = tag("without-sender-a1");
    await u.op(a1, "broadcastWithoutSender", evt(t)); // a2 shares a1's clientID, and gets it
    await u.expectDelivery(assert, all, except(a1), t);
  });

  test("broadcastToRoomWithoutSender skips only the sender", async () => {
    const { a1, c, e, g } = byName;
    const t = tag("room-without-sender");
    await u.op(a1, "broadcastToRoomWithoutSender", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, all, [c, e, g], t);
  });

  test("getClusterConnectionsByClientID / getClusterRoomMembers list every worker's sockets", async () => {
    const { a1, a2, b, c, d, e, f, g } = byName;
    const sorted = (...cs) => cs.map((x) => x.socketID).sort();
    assert.deepEqual(await u.op(d, "getClusterConnectionsByClientID", { clientID: "u1" }), sorted(a1, a2));
    assert.deepEqual(await u.op(f, "getClusterConnectionsByClientID", { clientID: "u1" }), sorted(a1, a2));
    assert.deepEqual(await u.op(f, "getConnectionsByClientID", { clientID: "u1" }), sorted(a1), "local only");
    assert.deepEqual(await u.op(b, "getClusterConnectionsByClientID", { clientID: "u404" }), []);
    assert.deepEqual(await u.op(b, "getClusterRoomMembers", { room: "room-x" }), sorted(a1, c, e, g));
    assert.deepEqual(await u.op(e, "getClusterRoomMembers", { room: "nobody-here" }), []);
  });

  test("a burst of messages to a client on another worker arrives complete and in order", async () => {
    const { a1, a2, d } = byName;
    const n = 300;
    const t = tag("burst");
    await u.op(d, "burst", { clientID: "u1", type: "evt", tag: t, n });
    const seq = (c) => c.got.filter((g) => g.ev === "evt" && g.data.tag === t).map((g) => g.data.i);
    await u.until(() => seq(a1).length >= n && seq(a2).length >= n, `${n} messages reach a1 and a2`, 10000);
    await u.delay(300);
    const want = Array.from({ length: n }, (_, i) => i);
    assert.deepEqual(seq(a1), want, "a1 (v4, other worker): every message once, in order");
    assert.deepEqual(seq(a2), want, "a2 (v2, other worker): every message once, in order");
    for (const c of except(a1, a2)) assert.equal(u.count(c, t), 0, c.label);
  });

  test("invoke runs a producer on every worker; unknown or failing methods are errors", async () => {
    const { b, d } = byName;
    const ports = [base, base + 1, base + 2, base + 3];
    const r = await u.op(b, "invoke", { method: "port" });
    assert.equal(r.length, 4, JSON.stringify(r));
    assert.equal(r[0], base + 1, "the invoking worker's own result first");
    assert.deepEqual([...r].sort((x, y) => x - y), ports);
    const viaCallback = await u.op(d, "invokeCallback", { method: "port" });
    assert.deepEqual([...viaCallback].sort((x, y) => x - y), ports);
    await assert.rejects(u.op(d, "invoke", { method: "noSuchMethod" }), /no such method: noSuchMethod/);
    await assert.rejects(u.op(d, "invokeCallback", { method: "noSuchMethod" }), /no such method/);
    await assert.rejects(u.op(b, "invoke", { method: "fail" }), /producer failed on/);
  });

  test("Redis stopped and restarted: local delivery goes on, cross-worker delivery resumes, no worker dies", { timeout: 45000 }, async () => {
    const { a1, d, e, f } = byName;
    const pids = launcher.seen("ready").map((m) => m.pid);
    // A client to kick while Redis is down (on the same worker as d).
    const doomed = u.client(4, base + 3);
    doomed.label = "doomed";
    extra.push(doomed);
    await u.shake(doomed, 99);
    const mark = launcher.messages.length;
    const after = () => launcher.messages.slice(mark).filter((m) => m && m.ev === "adapter");

    await redis.stop();
    await u.until(() => new Set(after().filter((m) => !m.up).map((m) => m.port)).size === 4, "every worker reports the adapter down", 10000);

    // Local delivery while Redis is down: a worker's own clients, several times.
    for (let i = 0; i < 3; i++) {
      let t = tag("down-local-sendTo");
      await u.op(a1, "sendTo", { clientID: "u6", ...evt(t) });
      await u.until(() => u.count(f, t) === 1, `${t} reached f on a1's worker`, 3000);
      t = tag("down-local-all");
      await u.op(d, "broadcastToAll", evt(t));
      await u.until(() => u.count(d, t) === 1 && u.count(e, t) === 1, `${t} reached d and e on their own worker`, 3000);
      await u.delay(200);
    }
    // kick() still kicks (and counts) the worker's own connections.
    const doomedGone = u.nextEvent(doomed, "disconnect", () => true, 5000);
    assert.equal(await u.op(d, "kick", { clientID: "u99", data: { tag: "down-kick" } }), 1, "kick counts the local connection");
    await doomedGone;
    assert.equal(u.count(doomed, "down-kick", "$kick"), 1);

    await redis.start(); // same port
    const restarted = Date.now();
    await u.until(
      () => {
        const seen = after();
        const up = new Set();
        for (const port of [base, base + 1, base + 2, base + 3]) {
          const down = seen.findIndex((m) => m.port === port && !m.up);
          if (down >= 0 && seen.slice(down + 1).some((m) => m.port === port && m.up)) up.add(port);
        }
        return up.size === 4;
      },
      "every worker reports the adapter down, then up again",
      20000,
    );

    // Cross-worker: a broadcast from worker 0 reaches worker 3's client again.
    const probes = [];
    await u.until(
      async () => {
        const t = tag("resume");
        probes.push(t);
        await u.op(f, "broadcastToAll", evt(t));
        await u.delay(200);
        return probes.some((p) => u.count(d, p) > 0);
      },
      "cross-worker delivery resumes",
      15000,
      0,
    );
    const resumedAfter = Date.now() - restarted;
    assert.ok(resumedAfter < 15000, `resumed after ${resumedAfter} ms`);
    await u.delay(300);

    // Once back: exactly once again (no duplicate subscriptions), requests answered.
    const t = tag("after-restart");
    await u.op(byName.b, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    const t2 = tag("after-restart-sendTo");
    await u.op(d, "sendTo", { clientID: "u1", ...evt(t2) });
    await u.expectDelivery(assert, all, [a1, byName.a2], t2);
    const r = await u.op(e, "invoke", { method: "port" });
    assert.equal(r.length, 4);
    // The restarted Redis lost the presence entries; the workers write them again.
    await u.until(async () => (await u.op(e, "servers")).length === 4, "servers() lists the 4 workers again", PRESENCE_MS + 3000, 100);

    assert.deepEqual(launcher.seen("exit"), [], "no worker exited");
    assert.ok(pids.every(u.alive), "every worker process is alive");
    assert.ok(all.every((c) => c.connected), "every client is still connected");
  });

  // Redis frozen (SIGSTOP): the TCP connections stay open but nothing answers, as with a hung
  // server or a network path that silently drops packets.
  const frozen = { adapterEvents: null };
  test("Redis frozen: local delivery stays immediate, requests fail within requestsTimeout, exactly once after it thaws", { timeout: 30000 }, async () => {
    const { a1, d, e, f } = byName;
    const mark = launcher.messages.length;
    redis.child.kill("SIGSTOP");
    try {
      const until = Date.now() + FROZEN_FOR;
      while (Date.now() < until) {
        const t = tag("frozen-local");
        const sent = Date.now();
        await u.op(a1, "sendTo", { clientID: "u6", ...evt(t) });
        await u.until(() => u.count(f, t) === 1, `${t} reaches f on a1's worker`, 1000);
        assert.ok(Date.now() - sent < 1000, "local delivery does not wait for Redis");
        const asked = Date.now();
        await assert.rejects(u.op(e, "invoke", { method: "port" }, 10000), /timed out|unavailable|down/i);
        assert.ok(Date.now() - asked < 3000 + 1500, `invoke gave up after ${Date.now() - asked} ms (requestsTimeout 3000)`);
      }
    } finally {
      frozen.adapterEvents = launcher.messages.slice(mark).filter((m) => m && m.ev === "adapter");
      redis.child.kill("SIGCONT");
    }
    // Thawed: cross-worker delivery works, exactly once (whatever was queued meanwhile).
    await u.until(async () => {
      const t = tag("thawed");
      await u.op(d, "broadcastToAll", evt(t));
      await u.delay(300);
      return all.every((c) => u.count(c, t) === 1);
    }, "cross-worker delivery after the thaw", 15000, 0);
    const t = tag("thawed-once");
    await u.op(byName.b, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    assert.deepEqual(launcher.seen("exit"), [], "no worker exited");
  });

  test(
    "a frozen Redis is reported down (`adapter` event) within twice requestsTimeout",
    () => {
      assert.ok(frozen.adapterEvents, "the frozen-Redis test ran");
      const down = new Set(frozen.adapterEvents.filter((m) => !m.up).map((m) => m.port));
      assert.equal(down.size, 4, `workers that reported the frozen Redis down: ${[...down]}`);
    },
  );

  test("kick(clientID) sends $kick to each of its connections on every worker, then disconnects them", async () => {
    const { a1, a2, e } = byName;
    const t = tag("kick");
    const closed = [a1, a2].map((c) => u.nextEvent(c, "disconnect", () => true, 5000));
    const kicked = await u.op(e, "kick", { clientID: "u1", data: { tag: t } });
    assert.equal(kicked, 2, "kick counts both connections");
    await u.expectDelivery(assert, all, [a1, a2], t, { ev: "$kick" });
    await Promise.all(closed);
    await u.delay(300);
    assert.deepEqual(
      all.filter((c) => c.connected).map((c) => c.label),
      except(a1, a2).map((c) => c.label),
      "only u1's connections are gone",
    );
    assert.deepEqual(await u.op(e, "getClusterConnectionsByClientID", { clientID: "u1" }), []);
    for (const c of all) for (const g of c.got) assert.ok(g.ev !== "$kick" || g.data.tag === t, `${c.label}: stray $kick`);
  });
});

describe("pickServer() with workers reporting their load", { skip: redisBin.skip, timeout: 30000 }, () => {
  // Forked directly (no launcher, so a killed worker stays dead), on their own key prefix.
  const PRESENCE_MS = 200;
  let base;
  let workers = [];
  const clients = [];
  const addr = (i) => `127.0.0.1:${base + i}`;
  const connectTo = async (i, n) => {
    for (let k = 0; k < n; k++) {
      const c = u.client(4, base + i);
      clients.push(c);
      await u.shake(c, `${i}x${k}`);
    }
  };

  before(async () => {
    base = await u.freePorts(4);
    workers = await Promise.all([0, 1, 2, 3].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "picktest", presenceMs: PRESENCE_MS })));
  });
  after(async () => {
    u.closeAll(clients);
    await Promise.all(workers.map((w) => u.stopChild(w.child)));
  });

  test("prefers the worker with the fewest connections; a SIGKILLed worker disappears once its entry lapses", async () => {
    await connectTo(0, 3); // clients[0] asks
    await connectTo(1, 2);
    await connectTo(2, 1);
    const asker = clients[0];
    const load = async () => Object.fromEntries((await u.op(asker, "servers")).map((s) => [s.address, s.connections]));
    const want1 = { [addr(0)]: 3, [addr(1)]: 2, [addr(2)]: 1, [addr(3)]: 0 };
    await u.until(async () => isDeepStrictEqual(await load(), want1), `servers() reports ${JSON.stringify(want1)}`, 5000, 50).catch(async (err) => {
      err.message += `; last: ${JSON.stringify(await load())}`;
      throw err;
    });
    assert.equal(await u.op(asker, "pickServer"), addr(3));

    await connectTo(3, 3);
    await u.until(async () => (await load())[addr(3)] === 3, "worker 3's load is reported", 5000, 50);
    assert.equal(await u.op(asker, "pickServer"), addr(2));

    const victim = workers[2];
    const gone = new Promise((resolve) => victim.child.once("exit", resolve));
    victim.child.kill("SIGKILL");
    await u.within(gone, 5000, "worker 2 exits");
    const killedAt = Date.now();
    await u.until(async () => !(addr(2) in (await load())), "worker 2 drops out of servers()", 5000, 50);
    const lapse = Date.now() - killedAt;
    assert.ok(lapse <= 3 * PRESENCE_MS + 1500, `the entry lapsed after ${lapse} ms`);
    assert.deepEqual(Object.keys(await load()).sort(), [addr(0), addr(1), addr(3)].sort());
    assert.equal(await u.op(asker, "pickServer"), addr(1));
  });
});

describe("pickServer() spreads new clients at once (the default 5 s report)", { skip: redisBin.skip, timeout: 30000 }, () => {
  let base;
  let workers = [];
  const clients = [];
  before(async () => {
    base = await u.freePorts(2);
    workers = await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "picknow" })));
  });
  after(async () => {
    u.closeAll(clients);
    await Promise.all(workers.map((w) => u.stopChild(w.child)));
  });

  test("two pages a second apart land on different idle workers, whichever worker picks", async () => {
    const addr = (i) => `127.0.0.1:${base + i}`;
    const askers = [];
    for (const i of [0, 1]) {
      const c = u.client(4, base + i);
      clients.push(c);
      await u.shake(c, `asker${i}`);
      askers.push(c);
    }
    const load = async () => Object.fromEntries((await u.op(askers[0], "servers")).map((s) => [s.address, s.connections]));
    await u.until(async () => isDeepStrictEqual(await load(), { [addr(0)]: 1, [addr(1)]: 1 }), "both workers report their asker", 5000, 50);
    // One worker picking twice in a row: its own first pick counts.
    const first = await u.op(askers[0], "pickServer");
    const second = await u.op(askers[0], "pickServer");
    assert.notEqual(second, first, "the same worker picked one address twice");
    // A page opened on the first pick connects; a second later the other worker picks.
    const page = u.client(2, Number(first.split(":")[1]));
    clients.push(page);
    await u.shake(page, "page1");
    await new Promise((r) => setTimeout(r, 1000));
    const third = await u.op(askers[1], "pickServer");
    assert.notEqual(third, first, `the other worker sent the second page to the worker of the first (${JSON.stringify(await load())})`);
  });
});

describe("idle sockets that live natively, across two workers", { skip: redisBin.skip, timeout: 30000 }, () => {
  const { Realtime } = require("..");
  let servers = [];
  let clients = [];
  after(async () => {
    u.closeAll(clients);
    for (const s of servers) await u.within(s.close(), 5000, "Realtime close").catch(() => {});
  });

  test("sendTo, broadcasts, cluster lookups and kick reach sockets no worker made a JS object for", async () => {
    const base = await u.freePorts(2);
    servers = [0, 1].map((workerIndex) =>
      Realtime.createServer(
        {
          port: base,
          host: "127.0.0.1",
          shakehand: false,
          requestsTimeout: 3000,
          cluster: { enable: true, workerIndex, redis: { host: "127.0.0.1", port: redis.port, key: "lazy" } },
        },
        true,
      ),
    );
    assert.deepEqual(await Promise.all(servers.map((s) => s.start())), [base, base + 1]);
    await u.until(async () => (await servers[0].io.sockets.adapter.serverCount()) === 2, "both workers see each other", 5000);
    // a: 4.x on worker 0; b: 2.x on worker 1.
    const a = u.client(4, base);
    const b = u.client(2, base + 1, { transports: ["polling", "websocket"] });
    clients = [a, b];
    for (const c of clients) {
      await u.connected(c);
      await u.until(() => c.got.some((g) => g.ev === "$init"), "$init from the native side", 5000);
      c.socketID = c.got.find((g) => g.ev === "$init").data.socketID;
    }
    assert.equal(servers[1]._sockets.size, 0, "worker 1 made no socket object for b");

    await servers[0].sendTo(b.socketID, "evt", { tag: "to-b" });
    await u.expectDelivery(assert, clients, [b], "to-b");
    servers[1].broadcastToAll("evt", { tag: "all" });
    await u.expectDelivery(assert, clients, [a, b], "all");
    assert.deepEqual(await servers[0].getClusterConnectionsByClientID(b.socketID), [b.socketID]);
    assert.deepEqual(await servers[0].getClusterRoomMembers(`###${a.socketID}`), [a.socketID]);
    assert.equal(servers[1]._sockets.size, 0, "still no socket object for b");

    const gone = new Promise((resolve) => b.on("disconnect", resolve));
    assert.equal(await servers[0].kick(b.socketID, { tag: "bye" }), 1);
    await u.expectDelivery(assert, clients, [b], "bye", { ev: "$kick" });
    await u.within(gone, 5000, "b disconnected after the kick");
    await u.until(() => servers[1].io.stats().sockets === 0, "worker 1 has no socket left", 5000);
  });
});

// Redis over TLS (`tls: {ca}` or `rediss://`): a redis-server with a TLS port and a certificate
// from a throwaway CA made with openssl; two workers broadcast to each other through it. A worker
// that does not trust that CA (system roots only) fails to start, naming the server.
const openssl = u.needBinary("openssl");
describe("Redis over TLS", { skip: redisBin.skip || openssl.skip, timeout: 30000 }, () => {
  const { Realtime } = require("..");
  const fs = require("node:fs");
  const os = require("node:os");
  const path = require("node:path");
  const { execFileSync } = require("node:child_process");
  const tlsRedisProcess = new u.Children();
  let dir;
  let tlsPort;
  let tlsRedis;
  let servers = [];
  let clients = [];
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-tls-"));
    const f = (name) => path.join(dir, name);
    const run = (...args) => execFileSync("openssl", args, { stdio: "pipe" });
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", f("ca.key"), "-out", f("ca.crt"));
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f("server.key"), "-out", f("server.csr"));
    fs.writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    run("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f("ext.cnf"), "-out", f("server.crt"));
    tlsPort = await u.freePorts(1);
    const tlsArgs = ["--tls-port", String(tlsPort), "--tls-cert-file", f("server.crt"), "--tls-key-file", f("server.key"), "--tls-ca-cert-file", f("ca.crt"), "--tls-auth-clients", "no"];
    tlsRedis = await new u.RedisServer(tlsRedisProcess, undefined, tlsArgs).start();
  });
  after(async () => {
    u.closeAll(clients);
    for (const s of servers) await u.within(s.close(), 5000, "Realtime close").catch(() => {});
    await tlsRedisProcess.killAll();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("two workers broadcast through a TLS-only connection; an untrusted certificate is refused", async () => {
    const ca = fs.readFileSync(path.join(dir, "ca.crt"), "utf8");
    const base = await u.freePorts(2);
    const redisFor = [
      { host: "localhost", port: tlsPort, key: "tls", tls: { ca } },
      { url: `rediss://127.0.0.1:${tlsPort}`, key: "tls", option: { tls: { ca: [ca] } } },
    ];
    servers = [0, 1].map((workerIndex) =>
      Realtime.createServer(
        { port: base, host: "127.0.0.1", shakehand: false, cluster: { enable: true, workerIndex, redis: redisFor[workerIndex] } },
        true,
      ),
    );
    assert.deepEqual(await Promise.all(servers.map((s) => s.start())), [base, base + 1]);
    await u.until(async () => (await servers[0].io.sockets.adapter.serverCount()) === 2, "both workers see each other over TLS", 5000);
    const a = u.client(4, base);
    const b = u.client(2, base + 1);
    clients = [a, b];
    for (const c of clients) await u.connected(c);
    servers[0].broadcastToAll("evt", { tag: "over-tls" });
    await u.expectDelivery(assert, clients, [a, b], "over-tls");

    // A blip of the TLS Redis: what is broadcast meanwhile waits, and arrives once it is back.
    const gone = new Promise((resolve) => tlsRedis.child.once("exit", resolve));
    tlsRedis.child.kill("SIGKILL");
    await gone;
    await u.until(() => servers[0].offlineQueue().outages === 1, "worker 0 sees the outage", 5000);
    for (let i = 0; i < 5; i++) servers[0].broadcastToAll("evt", { tag: "tls-blip" });
    await u.until(() => u.count(a, "tls-blip") === 5, "local delivery during the blip", 3000);
    assert.equal(u.count(b, "tls-blip"), 0, "worker 1 gets nothing while Redis is away");
    await tlsRedis.start();
    await u.until(() => u.count(b, "tls-blip") === 5, "the queued broadcasts reach worker 1 over TLS once Redis is back", 15000);
    await u.delay(300);
    assert.deepEqual([u.count(a, "tls-blip"), u.count(b, "tls-blip")], [5, 5]);

    // The same server, trusting only the system's roots: the handshake fails and start() says so.
    const untrusting = Realtime.createServer(
      { port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, redis: { url: `rediss://localhost:${tlsPort}` } } },
      true,
    );
    await assert.rejects(u.within(untrusting.start(), 10000, "start() with an untrusted certificate"), (err) => {
      assert.match(err.message, new RegExp(`localhost:${tlsPort}`));
      return true;
    });
    await untrusting.close().catch(() => {});
  });
});
