"use strict";
// The streams mode (cluster.adapter: "streams"): @socket.io/redis-streams-adapter 0.3's wire
// format. The shared suite of fixtures/cluster-adapter-suite.js runs against a Node socket.io
// server with that adapter; then the stream itself: entries laid out as Node writes them, trimmed
// at maxLen, and broadcasts that survive Redis restarts and freezes (every worker reads on from
// its last entry), none lost, none twice, in order.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { createClient } = require("redis");
const u = require("./fixtures/cluster-util.js");
const { KEY, clusterAdapterSuite } = require("./fixtures/cluster-adapter-suite.js");

const redisBin = u.needBinary("redis-server");

describe("streams mode: 4 native workers and a Node server on one Redis 7", { skip: redisBin.skip, timeout: 90000 }, clusterAdapterSuite({ adapter: "streams", topology: "server" }));
describe("streams mode: 4 native workers and a Node server on a Redis Cluster", { skip: redisBin.skip, timeout: 120000 }, clusterAdapterSuite({ adapter: "streams", topology: "cluster" }));

describe("streams mode: the stream, and Redis going away", { skip: redisBin.skip, timeout: 90000 }, () => {
  const STREAM = "weroll-stream";
  const MAX_LEN = 300;
  const children = new u.Children();
  const redisProcess = new u.Children();
  let redis;
  let admin;
  let base;
  let clients = [];

  const connectAdmin = async () => {
    admin = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    admin.on("error", () => {});
    await u.within(admin.connect(), 5000, "node-redis connect");
  };

  before(async () => {
    redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(4);
    const config = { host: "127.0.0.1", port: redis.port, key: KEY, streamName: STREAM, maxLen: MAX_LEN };
    await Promise.all([0, 1, 2, 3].map((i) => u.forkWorker(children, i, { base, key: KEY, adapter: "streams", redis: config })));
    clients = [u.client(4, base), u.client(2, base + 1), u.client(4, base + 2), u.client(4, base + 3)];
    clients.forEach((c, i) => (c.label = `c${i}@${i}`));
    for (const [i, c] of clients.entries()) await u.shake(c, `st${i}`);
    await connectAdmin();
  });
  after(async () => {
    u.closeAll(clients);
    if (admin) await admin.quit().catch(() => {});
    await children.killAll();
    await redisProcess.killAll();
  });

  test("a broadcast is one entry: uid, nsp, type and data, in Node's order and encoding", async () => {
    const [c0, c1, c2, c3] = clients;
    await u.op(c1, "enterRoom", { room: "room-e" });
    const t = "entry-layout";
    await u.op(c0, "broadcastToRoom", { room: "room-e", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [c1], t);
    const entries = await admin.sendCommand(["XRANGE", STREAM, "-", "+"]);
    const mine = entries.filter(([, fields]) => fields.includes("3") && fields[7] && fields[7].includes(t));
    assert.equal(mine.length, 1, JSON.stringify(entries.slice(-5)));
    const [id, fields] = mine[0];
    assert.match(id, /^\d+-\d+$/);
    assert.deepEqual(fields.filter((_, i) => i % 2 === 0), ["uid", "nsp", "type", "data"]);
    assert.match(fields[1], /^[0-9a-f]{16}$/);
    assert.equal(fields[3], "/");
    assert.equal(fields[5], "3");
    const data = JSON.parse(fields[7]);
    assert.deepEqual(data.opts.rooms, ["room-e"]);
    assert.deepEqual(data.packet.data, ["evt", { tag: t }]);
    // The join that put c1 in room-e was an entry too (type 4 when another worker asks, or
    // nothing when the member's own worker joins it: local joins are not published).
    assert.equal(u.count(c2, t) + u.count(c3, t), 0);
  });

  test("the stream is trimmed near maxLen", async () => {
    const [c0, c1] = clients;
    // In rounds of 100: a reader more than maxLen entries behind would skip what was trimmed.
    for (let round = 0; round < 9; round++) {
      for (let i = round * 100; i < (round + 1) * 100; i++) c0.emit("m", ["op", { id: 0, what: "broadcastToAll", type: "evt", data: { tag: "fill", i } }]);
      await u.until(() => u.count(c1, "fill") >= (round + 1) * 100, `round ${round} read`, 10000);
    }
    await u.expectAll([c1], "fill", 900);
    const len = Number(await admin.sendCommand(["XLEN", STREAM]));
    // MAXLEN ~ trims whole radix-tree nodes (100 entries each by default).
    assert.ok(len >= MAX_LEN && len <= MAX_LEN + 100, `XLEN ${len}`);
  });

  for (const how of ["kill", "freeze"]) {
    test(`Redis ${how === "kill" ? "killed and restarted empty" : "frozen (SIGSTOP) for 2 s"} under traffic: every broadcast arrives once, in order`, async () => {
      await admin.quit().catch(() => {});
      admin = null;
      const [c0, c1, c2, c3] = clients;
      const tag = `streams-${how}`;
      const traffic = new u.Traffic([
        { tag: `${tag}-all`, sender: c0, what: "broadcastToAll", args: {} },
        { tag: `${tag}-to`, sender: c2, what: "sendTo", args: { clientID: c3.clientID } },
      ]);
      traffic.start();
      try {
        await u.delay(500);
        await u.outage(redis, how === "kill" ? "kill" : "stop", how === "kill" ? 1000 : 2000);
        await u.delay(1500);
      } finally {
        traffic.stop();
      }
      assert.ok(traffic.kinds[0].sent > 20, `sent ${traffic.kinds[0].sent}`);
      await u.expectAll([c1, c2, c3], `${tag}-all`, traffic.kinds[0].sent);
      await u.expectAll([c3], `${tag}-to`, traffic.kinds[1].sent);
      await connectAdmin();
    });
  }
});

describe("streams mode: connection state recovery on any server of the cluster", { skip: redisBin.skip, timeout: 90000 }, () => {
  const http = require("node:http");
  const { Server: NodeServer } = require("socket.io");
  const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
  const children = new u.Children();
  const redisProcess = new u.Children();
  const clients = [];
  const redisClients = [];
  let base;
  let io;
  let nodePort;
  let b;
  let redisPort;
  const recoveryEnv = { TEST_RECOVERY: JSON.stringify({ maxDisconnectionDuration: 5000 }) };

  before(async () => {
    const redis = await new u.RedisServer(redisProcess).start();
    redisPort = redis.port;
    base = await u.freePorts(2);
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort, key: KEY, adapter: "streams", extra: recoveryEnv })));
    const pub = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    pub.on("error", () => {});
    redisClients.push(pub);
    await pub.connect();
    const httpServer = http.createServer();
    io = new NodeServer(httpServer, { connectionStateRecovery: { maxDisconnectionDuration: 5000 } });
    io.adapter(createStreamsAdapter(pub, { channelPrefix: KEY }));
    io.on("connection", (socket) => {
      socket.on("join", (room, cb) => {
        socket.join(room);
        cb(socket.id);
      });
    });
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    nodePort = httpServer.address().port;
    b = u.client(2, base + 1);
    b.label = "b";
    clients.push(b);
    await u.shake(b, "b");
  });
  after(async () => {
    u.closeAll(clients);
    if (io) await u.within(new Promise((resolve) => io.close(() => resolve())), 5000, "Node io.close").catch(() => {});
    for (const c of redisClients) await c.quit().catch(() => {});
    await children.killAll();
    await redisProcess.killAll();
  });

  /** A socket.io-client 4.8 on `port` that, once cut, comes back a second later on `backPort`. */
  const mover = (port, label, transports = ["websocket"]) => {
    const c = u.client(4, port, { transports, reconnection: true, reconnectionDelay: 1000, reconnectionDelayMax: 1000, randomizationFactor: 0 });
    c.label = label;
    clients.push(c);
    return c;
  };
  /**
   * Cuts `c`'s transport, runs `meanwhile` while it is away, and waits until it is back on
   * `backPort`; with `cut` false, `meanwhile` is what cuts it (its server killed, say).
   */
  const moveWhileAway = async (c, backPort, meanwhile, cut = true) => {
    const away = new Promise((resolve) => c.once("disconnect", resolve));
    const back = new Promise((resolve) => c.once("connect", resolve));
    c.io.uri = `http://127.0.0.1:${backPort}`;
    if (cut) c.io.engine.close();
    else await meanwhile();
    await away;
    if (!cut) return u.within(back, 5000, `${c.label} reconnects`);
    // Its server must have saved it before the others broadcast.
    await u.delay(200);
    await meanwhile();
    await u.within(back, 5000, `${c.label} reconnects`);
  };
  const tags = (c) => c.got.filter((g) => g.ev === "evt").map((g) => g.data.tag);

  for (const [n, transports] of [["a", ["websocket"]], ["p", ["polling"]]]) test(`a client cut from worker 0 recovers on worker 1 over ${transports[0]}: same id, rooms, clientID, every missed event once, in order`, async () => {
    const a = mover(base, n, transports);
    await u.shake(a, n);
    await u.op(a, "enterRoom", { room: "news" });
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: `${n}-before` } });
    await u.until(() => u.count(a, `${n}-before`) === 1 && u.count(b, `${n}-before`) === 1, "a and b got it", 5000);
    const id = a.id;
    await moveWhileAway(a, base + 1, async () => {
      await u.op(b, "broadcastToAll", { type: "evt", data: { tag: `${n}-all` } });
      await u.op(b, "sendTo", { clientID: `u${n}`, type: "evt", data: { tag: `${n}-direct` } });
      await u.op(b, "broadcastToRoom", { room: "news", type: "evt", data: { tag: `${n}-news` } });
      await u.op(b, "broadcastToRoom", { room: "sport", type: "evt", data: { tag: `${n}-sport` } });
      io.emit("evt", { tag: `${n}-from-node` });
    });
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    const info = await u.op(a, "info");
    assert.equal(info.port, base + 1, "now on worker 1");
    assert.equal(info.clientID, `u${n}`, "its clientID came along");
    assert.ok(info.rooms.includes("news") && info.rooms.includes(`###u${n}`), info.rooms.join(" "));
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: `${n}-after` } });
    await u.until(() => u.count(a, `${n}-after`) === 1, "a hears live traffic again", 5000);
    assert.deepEqual(tags(a), ["before", "all", "direct", "news", "from-node", "after"].map((t) => `${n}-${t}`));
    // The session was taken: the same pid again gives a fresh one.
    assert.equal(a.got.filter((g) => g.ev === "$init").length, 1, "not asked to shake hands again");
  });

  test("across Node and native servers both ways, with the same offsets", async () => {
    const n = u.client(4, nodePort, { reconnection: true, reconnectionDelay: 1000, reconnectionDelayMax: 1000, randomizationFactor: 0 });
    n.label = "n";
    clients.push(n);
    await u.connected(n);
    await new Promise((resolve) => n.emit("join", "news", resolve));
    io.emit("evt", { tag: "n-before" });
    await u.until(() => u.count(n, "n-before") === 1, "n got n-before", 5000);
    const id = n.id;
    // Node → native worker 0.
    await moveWhileAway(n, base, async () => {
      await u.op(b, "broadcastToRoom", { room: "news", type: "evt", data: { tag: "n-news" } });
      io.emit("evt", { tag: "n-node" });
    });
    assert.equal(n.recovered, true);
    assert.equal(n.id, id);
    await u.until(() => u.count(n, "n-node") === 1, "n got what Node sent", 5000);
    // native worker 0 → Node.
    await moveWhileAway(n, nodePort, async () => {
      await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "n-all" } });
    });
    assert.equal(n.recovered, true);
    assert.equal(n.id, id);
    const sockets = await io.in("news").fetchSockets();
    assert.ok(sockets.some((s) => s.id === id), "back in its room on Node");
    await u.until(() => u.count(n, "n-all") === 1, "n got n-all", 5000);
    assert.deepEqual(tags(n), ["n-before", "n-news", "n-node", "n-all"]);
  });

  test("a worker SIGKILLed: its client recovers on another worker, clientID and rooms from the last checkpoint", async () => {
    const w = await u.forkWorker(children, 0, { base: await u.freePorts(1), redisPort, key: KEY, adapter: "streams", extra: recoveryEnv });
    const a = mover(w.port, "k");
    await u.shake(a, "k");
    await u.op(a, "enterRoom", { room: "news" });
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "k-before" } });
    await u.until(() => u.count(a, "k-before") === 1, "k got k-before", 5000);
    const id = a.id;
    // The checkpoint of its join (within 250 ms) must be in Redis before the crash.
    await u.delay(600);
    await moveWhileAway(a, base + 1, async () => {
      w.child.kill("SIGKILL");
      await u.delay(100);
      await u.op(b, "broadcastToRoom", { room: "news", type: "evt", data: { tag: "k-news" } });
      await u.op(b, "sendTo", { clientID: "uk", type: "evt", data: { tag: "k-direct" } });
    }, false);
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    const info = await u.op(a, "info");
    assert.equal(info.clientID, "uk");
    assert.ok(info.rooms.includes("news") && info.rooms.includes("###uk"), info.rooms.join(" "));
    assert.deepEqual(tags(a), ["k-before", "k-news", "k-direct"]);
  });

  test("bad recovery input gives a fresh session on a native worker", async () => {
    const { io: ioV4 } = require("socket.io-client");
    for (const auth of [{ pid: "forged", offset: "1-0" }, { pid: "x", offset: "not-an-id" }, { pid: 42, offset: 7 }, { pid: "y", offset: "99999999999999-0" }]) {
      const c = ioV4(`http://127.0.0.1:${base}`, { forceNew: true, reconnection: false, transports: ["websocket"], auth });
      clients.push(c);
      await u.connected(c);
      assert.equal(c.recovered, false, JSON.stringify(auth));
      c.close();
    }
  });
});
