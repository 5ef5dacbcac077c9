"use strict";
// A Redis blip loses nothing (the classic adapter's offline queue): under steady cross-worker
// traffic from clients (broadcastToAll, sendTo, broadcastToRoom, numbered per kind), Redis is
// SIGKILLed and restarted, or frozen with SIGSTOP/SIGCONT, for 1 s and for 5 s, with 2 and with
// 4 native workers and socket.io-client 4.x and 2.x receivers on every worker. Every receiver
// gets every message once, in the order sent; no worker dies. Requests fail fast while Redis
// is away, a kick waits for it, an outage longer than a small queue drops the oldest messages
// (counted, logged once, memory bounded), and a Node socket.io server with
// @socket.io/redis-adapter in the same cluster gets what the native workers published meanwhile.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { Server: NodeServer } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const u = require("./fixtures/cluster-util.js");

const redisBin = u.needBinary("redis-server");
const { EVERY, outage, Traffic, seq, range, expectAll } = u;

/**
 * `workers` native workers on one redis-server, with a v4 (websocket) and a v2 (polling, then
 * websocket) receiver on each, and two senders on worker 0.
 */
function clusterSuite(workers, redisShape) {
  return () => {
    const children = new u.Children();
    const redisProcess = new u.Children();
    let redis;
    let base;
    let procs = [];
    let senders;
    let receivers = [];
    let roomMembers = [];
    let targets = [];
    let run = 0;

    before(async () => {
      redis = await new u.RedisServer(redisProcess).start();
      base = await u.freePorts(workers);
      procs = await Promise.all(range(workers).map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: `blip${workers}`, redisShape })));
      const sender = (name) => {
        const c = u.client(4, base);
        c.label = name;
        return c;
      };
      senders = [sender("s0"), sender("s1")];
      await u.shake(senders[0], "s0");
      await u.shake(senders[1], "s1");
      for (let i = 0; i < workers; i++) {
        const r4 = u.client(4, base + i);
        r4.label = `r4@${i}`;
        const r2 = u.client(2, base + i, { transports: ["polling", "websocket"] });
        r2.label = `r2@${i}`;
        await u.shake(r4, `r4x${i}`);
        await u.shake(r2, "target"); // one clientID on every worker
        await u.op(r4, "enterRoom", { room: "blip-room" });
        receivers.push(r4, r2);
        roomMembers.push(r4);
        targets.push(r2);
      }
      await u.until(async () => (await u.op(senders[0], "servers")).length === workers, `${workers} workers listed`, 10000, 100);
    });
    after(async () => {
      u.closeAll([...senders, ...receivers]);
      await children.killAll();
      await redisProcess.killAll();
    });

    async function blip(how, ms) {
      run++;
      const t = (kind) => `${how}${ms}-${run}-${kind}`;
      const [s0, s1] = senders;
      const traffic = new Traffic([
        { tag: t("all"), sender: s0, what: "broadcastToAll", args: {} },
        { tag: t("to"), sender: s0, what: "sendTo", args: { clientID: "utarget" } },
        { tag: t("room"), sender: s1, what: "broadcastToRoom", args: { room: "blip-room" } },
      ]);
      const mark = procs.map((p) => p.messages.length);
      traffic.start();
      try {
        await u.delay(500);
        await outage(redis, how, ms);
        await u.delay(1500);
      } finally {
        traffic.stop();
      }
      const [all, to, room] = traffic.kinds;
      assert.ok(all.sent >= (ms + 2000) / EVERY - 10, `${all.sent} messages of each kind sent`);
      await expectAll(receivers, all.tag, all.sent);
      await expectAll(targets, to.tag, to.sent);
      await expectAll(roomMembers, room.tag, room.sent);
      for (const [i, p] of procs.entries()) {
        assert.deepEqual(p.seen("exit"), [], `worker ${i} did not exit`);
        assert.ok(u.alive(p.pid), `worker ${i} is alive`);
      }
      if (how === "kill" || ms >= 5000) {
        // Long enough to be noticed: every worker reported it, and is back.
        for (const [i, p] of procs.entries()) {
          const events = p.messages.slice(mark[i]).filter((m) => m && m.ev === "adapter");
          assert.ok(events.some((m) => !m.up), `worker ${i} reported the adapter down`);
          assert.ok(events.length && events[events.length - 1].up, `worker ${i} reported it up again`);
        }
      }
      const stats = await u.op(s0, "offlineQueue");
      assert.equal(stats.queued, 0, "nothing left in worker 0's offline queue");
      assert.equal(stats.dropped, 0, "nothing dropped");
      assert.ok(receivers.every((c) => c.connected), "every receiver is still connected");
    }

    test("Redis killed for 1 s: every message arrives once, in order", { timeout: 40000 }, () => blip("kill", 1000));
    test("Redis killed for 5 s: every message arrives once, in order", { timeout: 40000 }, () => blip("kill", 5000));
    test("Redis frozen for 1 s: every message arrives once, in order", { timeout: 40000 }, () => blip("stop", 1000));
    test("Redis frozen for 5 s: every message arrives once, in order", { timeout: 40000 }, () => blip("stop", 5000));

    if (workers === 2) {
      test("while Redis is down, requests fail at once and a kick waits for Redis", { timeout: 40000 }, async () => {
        const [s0] = senders;
        const doomed = u.client(4, base + 1);
        doomed.label = "doomed";
        await u.shake(doomed, "doomed");
        const mark = procs[0].messages.length;
        const gone = new Promise((resolve) => redis.child.once("exit", resolve));
        redis.child.kill("SIGKILL");
        await gone;
        try {
          await u.until(() => procs[0].messages.slice(mark).some((m) => m && m.ev === "adapter" && !m.up), "worker 0 reports the adapter down", 5000);
          for (const what of ["invoke", "getClusterConnectionsByClientID", "fetchSockets"]) {
            const asked = Date.now();
            await assert.rejects(u.op(s0, what, { method: "port", clientID: "udoomed" }), /unavailable.*down/i, what);
            assert.ok(Date.now() - asked < 1000, `${what} failed after ${Date.now() - asked} ms (requestsTimeout 3000)`);
          }
          // Only worker 0's own connections can be counted now; worker 1's is kicked later.
          assert.equal(await u.op(s0, "kick", { clientID: "udoomed", data: { tag: "late-kick" } }), 0);
          await u.delay(500);
          assert.ok(doomed.connected, "not kicked while Redis is down");
        } finally {
          await redis.start();
        }
        await u.until(() => u.count(doomed, "late-kick", "$kick") === 1, "the kick reaches worker 1 once Redis is back", 15000);
        await u.until(() => !doomed.connected, "the kicked client is disconnected", 5000);
        // Requests work again.
        const ports = await u.op(s0, "invoke", { method: "port" });
        assert.deepEqual([...ports].sort(), [base, base + 1]);
      });
    }
  };
}

describe("Redis blips under steady traffic, 2 workers ({host, port})", { skip: redisBin.skip, timeout: 180000 }, clusterSuite(2));
describe("Redis blips under steady traffic, 4 workers ({url})", { skip: redisBin.skip, timeout: 180000 }, clusterSuite(4, "url"));

describe("an outage longer than the offline queue ({\"*\": {host, port, option}})", { skip: redisBin.skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const MAX_BYTES = 4000;
  let redis;
  let base;
  let procs;
  let sender;
  let receiver;

  before(async () => {
    redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(2);
    procs = await Promise.all(
      [0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "blipfull", offlineQueue: { maxBytes: MAX_BYTES }, redisShape: "star", captureStderr: true })),
    );
    sender = u.client(4, base);
    receiver = u.client(2, base + 1);
    receiver.label = "receiver";
    await u.shake(sender, "s");
    await u.shake(receiver, "r");
  });
  after(async () => {
    u.closeAll([sender, receiver]);
    await children.killAll();
    await redisProcess.killAll();
  });

  test("drops the oldest messages, counts and logs them once, delivers the rest in order", async () => {
    const tag = "overflow";
    const traffic = new Traffic([{ tag, sender, what: "broadcastToAll", args: {}, pad: "x".repeat(200) }]);
    let peak = 0;
    traffic.start();
    try {
      await u.delay(500);
      const gone = new Promise((resolve) => redis.child.once("exit", resolve));
      redis.child.kill("SIGKILL");
      await gone;
      for (let k = 0; k < 10; k++) {
        await u.delay(300);
        peak = Math.max(peak, (await u.op(sender, "offlineQueue")).queuedBytes);
      }
      await redis.start();
      await u.delay(1500);
    } finally {
      traffic.stop();
    }
    const n = traffic.kinds[0].sent;
    await u.until(() => seq(receiver, tag).includes(n - 1), "the last message arrives", 15000);
    await u.delay(300);
    const got = seq(receiver, tag);
    const stats = await u.op(sender, "offlineQueue");
    assert.ok(peak > 0 && peak <= MAX_BYTES, `the queue stayed within its limit (peak ${peak} bytes)`);
    assert.ok(stats.dropped > 0, "messages were dropped");
    // What is missing is one run of the oldest messages of the outage; the rest came in order.
    const missing = range(n).filter((i) => !got.includes(i));
    assert.equal(missing.length, stats.dropped, "every missing message is counted as dropped");
    assert.deepEqual(missing, range(missing.length).map((k) => missing[0] + k), "the dropped messages are one run");
    assert.deepEqual(got, range(n).filter((i) => !missing.includes(i)), "the rest once, in order");
    assert.ok(stats.delivered > 0, "queued messages were published late");
    const log = procs[0].stderr;
    assert.equal(log.match(/offline queue full/g)?.length, 1, "the overflow is logged once");
    const over = log.match(/Redis outage over after \d+ ms: (\d+) messages published late, (\d+) dropped/g) || [];
    assert.equal(over.length, 1, `one summary line for the outage: ${log}`);
    assert.ok(new RegExp(`, ${stats.dropped} dropped`).test(over[0]), over[0]);
  });
});

describe("a Node socket.io server in the cluster during an outage ({pub, sub})", { skip: redisBin.skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const redisClients = [];
  let redis;
  let base;
  let io;
  let httpServer;
  let sender;
  let nativeReceiver;
  let nodeReceiver;

  before(async () => {
    redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(2);
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "realtime", redisShape: "pubsub" })));
    const redisClient = async () => {
      const c = createClient({ url: `redis://127.0.0.1:${redis.port}` });
      c.on("error", () => {}); // node-redis reconnects by itself
      redisClients.push(c);
      await u.within(c.connect(), 5000, "node-redis connect");
      return c;
    };
    const pub = await redisClient();
    const sub = await redisClient();
    httpServer = http.createServer();
    io = new NodeServer(httpServer);
    io.adapter(createAdapter(pub, sub, { key: "realtime", requestsTimeout: 3000 }));
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    sender = u.client(4, base);
    nativeReceiver = u.client(2, base + 1);
    nativeReceiver.label = "native receiver";
    nodeReceiver = u.client(4, httpServer.address().port);
    nodeReceiver.label = "Node's client";
    await u.shake(sender, "s");
    await u.shake(nativeReceiver, "r");
    await u.connected(nodeReceiver);
    await u.until(async () => (await io.of("/").adapter.serverCount()) === 3, "Node's adapter counts 3 servers", 5000);
  });
  after(async () => {
    u.closeAll([sender, nativeReceiver, nodeReceiver]);
    if (io) await u.within(new Promise((resolve) => io.close(() => resolve())), 5000, "Node io.close").catch(() => {});
    for (const c of redisClients) await u.within(c.quit(), 3000, "node-redis quit").catch(() => c.disconnect().catch(() => {}));
    await children.killAll();
    await redisProcess.killAll();
  });

  test("what native workers publish while Redis is down reaches Node's clients afterwards, in order", async () => {
    const tag = "to-node";
    const traffic = new Traffic([{ tag, sender, what: "broadcastToAll", args: {} }]);
    traffic.start();
    try {
      await u.delay(500);
      await outage(redis, "kill", 3000);
      await u.delay(1500);
    } finally {
      traffic.stop();
    }
    const n = traffic.kinds[0].sent;
    await expectAll([nodeReceiver, nativeReceiver], tag, n);
  });
});

describe("cluster.redis shapes that are not one Redis server", () => {
  const { Realtime } = require("..");
  const shapes = [
    [{ sentinels: [{ host: "127.0.0.1", port: 26379 }], name: "mymaster" }, /cluster\.redis\.sentinels: Redis Sentinel is given as \{sentinel:/],
    [{ nodes: [{ host: "127.0.0.1", port: 7000 }] }, /cluster\.redis\.nodes: a Redis Cluster is given as \{cluster:/],
    [{ hosts: ["127.0.0.1:6379"] }, /cluster\.redis: unknown shape \(keys hosts\)/],
    [{ "*": { server: "127.0.0.1" } }, /cluster\.redis\.\*: unknown shape \(keys server\)/],
    [{ host: "127.0.0.1", offlineQueue: "big" }, /cluster\.redis\.offlineQueue must be/],
  ];
  for (const [redis, error] of shapes) {
    test(`start() refuses ${JSON.stringify(redis)} with a clear error`, async () => {
      const server = Realtime.createServer({ port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, redis } }, true);
      server.on("error", () => {});
      const asked = Date.now();
      await assert.rejects(server.start(), error);
      assert.ok(Date.now() - asked < 1000, "refused before connecting anywhere");
      await server.close().catch(() => {});
    });
  }
});

test("close() during a Redis outage does not wait for Redis: the server stops serving at once", { skip: redisBin.skip, timeout: 30000 }, async () => {
  const { Server } = require("..");
  const kids = new u.Children();
  try {
    const redis = await new u.RedisServer(kids).start();
    const io = new Server({ redis: { host: "127.0.0.1", port: redis.port, key: "close-down" } });
    const port = await io.listen(0, "127.0.0.1");
    await redis.stop();
    await u.delay(200);
    const asked = Date.now();
    await io.close();
    const took = Date.now() - asked;
    assert.ok(took < 1500, `close() took ${took} ms with Redis down`);
    const answered = await new Promise((resolve) => http.get({ host: "127.0.0.1", port, path: "/socket.io/?EIO=4&transport=polling" }, () => resolve(true)).on("error", () => resolve(false)));
    assert.equal(answered, false, "no longer serving");
  } finally {
    await kids.killAll();
  }
});
