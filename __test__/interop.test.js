"use strict";
// One Redis, three kinds of peers: two native workers (weroll Realtime, key "realtime"), a
// plain Node socket.io 4.8 server with @socket.io/redis-adapter 8.3 (same key) and a
// @socket.io/redis-emitter 5.1. Broadcasts cross in both directions, Node's cluster requests
// (fetchSockets, serverSideEmit with acks, allRooms) are answered by the native workers well
// before Node's requestsTimeout, and the emitter's room operations act on native sockets.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { Server: NodeServer } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");
const u = require("./fixtures/cluster-util.js");

const KEY = "realtime"; // weroll's default prefix; Node's default would be "socket.io"
// Node waits this long for every server's answer; the checks below allow much less, so a
// native worker that does not answer fails them instead of just slowing them down.
const NODE_REQUESTS_TIMEOUT = 6000;
const ANSWER_WITHIN = 2500;

const redisBin = u.needBinary("redis-server");

describe("native workers, a Node socket.io server and the emitter on one Redis", { skip: redisBin.skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisClients = [];
  let redis;
  let base;
  let workers;
  let io;
  let httpServer;
  let emitter;
  let nodePort;
  const clients = {};
  let all = [];
  let tagSeq = 0;
  const tag = (what) => `${what}-${++tagSeq}`;
  const evt = (t) => ({ type: "evt", data: { tag: t } });
  const members = (...cs) => cs.map((c) => c.socketID).sort();
  const redisUrl = () => `redis://127.0.0.1:${redis.port}`;

  async function redisClient() {
    const c = createClient({ url: redisUrl() });
    c.on("error", () => {}); // reported through failing commands
    redisClients.push(c);
    await u.within(c.connect(), 5000, "node-redis connect");
    return c;
  }

  before(async () => {
    redis = await new u.RedisServer(children).start();
    base = await u.freePorts(2);
    workers = await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port })));

    const pub = await redisClient();
    const sub = await redisClient();
    httpServer = http.createServer();
    io = new NodeServer(httpServer, { allowEIO3: true });
    io.adapter(createAdapter(pub, sub, { key: KEY, requestsTimeout: NODE_REQUESTS_TIMEOUT }));
    io.on("connection", (socket) => {
      socket.on("join", (room, cb) => {
        socket.join(room);
        cb(socket.id);
      });
    });
    io.on("whoami", (...args) => {
      const cb = args.pop();
      cb({ node: true, args });
    });
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    nodePort = httpServer.address().port;
    emitter = new Emitter(await redisClient(), { key: KEY });

    // Native clients shake hands (clientIDs u1..u3); Node clients just connect.
    const native = [
      ["n0", 4, base, ["websocket"], 1],
      ["n1", 2, base + 1, ["polling", "websocket"], 2],
      ["n2", 4, base + 1, ["polling", "websocket"], 3],
    ];
    for (const [name, version, port, transports, user] of native) {
      const c = u.client(version, port, { transports });
      c.label = name;
      clients[name] = c;
      all.push(c);
      await u.shake(c, user);
    }
    for (const [name, version] of [
      ["m0", 4],
      ["m1", 2],
    ]) {
      const c = u.client(version, nodePort, { transports: ["polling", "websocket"] });
      c.label = name;
      clients[name] = c;
      all.push(c);
      await u.connected(c);
      // Node's socket id, as the server knows it (the v2 client's own id differs).
      c.socketID = await new Promise((resolve) => c.emit("join", `own-${name}`, resolve));
    }
    const { n0, n2, m0 } = clients;
    await u.op(n0, "enterRoom", { room: "mixed" });
    await u.op(n2, "enterRoom", { room: "mixed" });
    await new Promise((resolve) => m0.emit("join", "mixed", resolve));
    // Node answers every request itself too: wait until it counts all three servers.
    await u.until(async () => (await io.of("/").adapter.serverCount()) === 3, "Node's adapter counts 3 servers", 5000);
  });

  after(async () => {
    u.closeAll(all);
    all = [];
    if (io) await u.within(new Promise((resolve) => io.close(() => resolve())), 5000, "Node io.close").catch(() => {});
    for (const c of redisClients) await u.within(c.quit(), 3000, "node-redis quit").catch(() => c.disconnect().catch(() => {}));
    await children.killAll();
  });

  test("Node io.emit and io.to(room).emit reach native clients (and Node's) exactly once", async () => {
    const { n0, n2, m0 } = clients;
    let t = tag("node-all");
    io.emit("evt", { tag: t });
    await u.expectDelivery(assert, all, all, t);
    t = tag("node-room");
    io.to("mixed").emit("evt", { tag: t });
    await u.expectDelivery(assert, all, [n0, n2, m0], t);
    t = tag("node-except");
    io.to("mixed").except(n2.socketID).emit("evt", { tag: t });
    await u.expectDelivery(assert, all, [n0, m0], t);
  });

  test("native broadcastToAll / broadcastToRoom reach the Node server's clients exactly once", async () => {
    const { n0, n1, n2, m0 } = clients;
    let t = tag("native-all");
    await u.op(n1, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    t = tag("native-room");
    await u.op(n1, "broadcastToRoom", { room: "mixed", ...evt(t) });
    await u.expectDelivery(assert, all, [n0, n2, m0], t);
  });

  test("binary and Date payloads cross between Node, the emitter and native workers", async () => {
    const bin = Buffer.from([0, 1, 2, 253, 254, 255]);
    const when = new Date(Date.UTC(2020, 1, 2, 3, 4, 5, 678));
    const check = (t, source) => {
      for (const c of all) {
        const got = c.got.filter((g) => g.ev === "evt" && g.data.tag === t);
        assert.equal(got.length, 1, `${c.label} got ${t} once`);
        const d = got[0].data;
        assert.ok(Buffer.isBuffer(d.bin) || d.bin instanceof ArrayBuffer, `${c.label}: binary from ${source} is binary, got ${JSON.stringify(d.bin)}`);
        assert.deepEqual(Buffer.from(d.bin), bin, `${c.label}: bytes from ${source}`);
        if ("when" in d) assert.equal(d.when, when.toISOString(), `${c.label}: Date from ${source} arrives as socket.io serializes it`);
      }
    };
    let t = tag("bin-node");
    io.emit("evt", { tag: t, bin, when });
    await u.until(() => all.every((c) => u.count(c, t) >= 1), `${t} reaches everyone`, 5000);
    await u.delay(300);
    check(t, "Node");

    t = tag("bin-emitter");
    emitter.emit("evt", { tag: t, bin, when });
    await u.until(() => all.every((c) => u.count(c, t) >= 1), `${t} reaches everyone`, 5000);
    await u.delay(300);
    check(t, "the emitter");

    t = tag("bin-native");
    await u.op(clients.n1, "broadcastToAll", { type: "evt", data: { tag: t, bin } }); // n1 is a 2.x client
    await u.until(() => all.every((c) => u.count(c, t) >= 1), `${t} reaches everyone`, 5000);
    await u.delay(300);
    check(t, "a native worker");
  });

  test("Node io.fetchSockets() includes the native sockets, with their rooms, in time", async () => {
    const { n0, n1, n2, m0, m1 } = clients;
    const sockets = await u.within(io.fetchSockets(), ANSWER_WITHIN, "Node io.fetchSockets()");
    assert.deepEqual(sockets.map((s) => s.id).sort(), members(n0, n1, n2, m0, m1));
    const remote = sockets.find((s) => s.id === n0.socketID);
    assert.ok(remote.rooms.has("mixed") && remote.rooms.has("###u1"), `rooms of n0: ${[...remote.rooms]}`);
    const inRoom = await u.within(io.in("mixed").fetchSockets(), ANSWER_WITHIN, "Node io.in(room).fetchSockets()");
    assert.deepEqual(inRoom.map((s) => s.id).sort(), members(n0, n2, m0));
  });

  test("Node io.serverSideEmit with an ack gets one answer from each native worker", async () => {
    const answers = await u.within(
      new Promise((resolve, reject) => io.serverSideEmit("whoami", "hi", (err, r) => (err ? reject(err) : resolve(r)))),
      ANSWER_WITHIN,
      "Node serverSideEmit ack",
    );
    assert.deepEqual(answers.map((a) => a.port).sort(), [base, base + 1]);
    for (const a of answers) assert.deepEqual(a.args, ["hi"]);
  });

  test("Node adapter.allRooms() completes and holds the native rooms", async () => {
    const rooms = await u.within(io.of("/").adapter.allRooms(), ANSWER_WITHIN, "Node allRooms()");
    for (const r of ["mixed", "###u1", "###u2", "###u3", "own-m0", "own-m1"]) assert.ok(rooms.has(r), `allRooms() lacks ${r}: ${[...rooms]}`);
  });

  test("native fetchSockets / allRooms / serverSideEmit see the Node server", async () => {
    const { n0, n1, n2, m0, m1 } = clients;
    assert.deepEqual(await u.op(n0, "fetchSockets"), members(n0, n1, n2, m0, m1));
    assert.deepEqual(await u.op(n1, "fetchSockets", { room: "mixed" }), members(n0, n2, m0));
    assert.deepEqual(await u.op(n1, "getClusterRoomMembers", { room: "own-m1" }), members(m1));
    const rooms = await u.op(n2, "allRooms");
    for (const r of ["mixed", "own-m0", "own-m1", "###u1"]) assert.ok(rooms.includes(r), `native allRooms() lacks ${r}`);
    const answers = await u.op(n0, "serverSideEmit", { event: "whoami", args: ["yo"] });
    assert.equal(answers.length, 2, JSON.stringify(answers));
    assert.deepEqual(answers.find((a) => a.node), { node: true, args: ["yo"] });
    assert.equal(answers.find((a) => !a.node).port, base + 1);
  });

  test("broadcasts with acks gather every client's answer across native workers and Node, both ways", async () => {
    const heard = new Map(all.map((c) => [c, 0]));
    const listeners = all.map((c) => {
      const fn = (data, cb) => {
        heard.set(c, heard.get(c) + 1);
        if (typeof cb === "function") cb(c.label);
      };
      c.on("ackme", fn);
      return () => c.off("ackme", fn);
    });
    const labels = all.map((c) => c.label).sort();
    try {
      const acks = await u.within(
        new Promise((resolve, reject) => io.timeout(ANSWER_WITHIN).emit("ackme", { x: 1 }, (err, r) => (err ? reject(err) : resolve(r)))),
        ANSWER_WITHIN + 1000,
        "Node broadcast with acks",
      );
      assert.deepEqual([...acks].sort(), labels, "Node hears from the native workers' clients too");
      await u.delay(300);
      assert.deepEqual(all.map((c) => heard.get(c)), all.map(() => 1), "each client got the event once");

      const fromNative = await u.within(u.op(clients.n1, "broadcastWithAck", { type: "ackme", data: { x: 2 } }), ANSWER_WITHIN, "native emitWithAck");
      assert.deepEqual(fromNative, labels, "a native worker hears from the other worker's and Node's clients");
      await u.delay(300);
      assert.deepEqual(all.map((c) => heard.get(c)), all.map(() => 2), "each client got it once more");
    } finally {
      for (const off of listeners) off();
    }
  });

  test("Node io.in(room).socketsJoin / socketsLeave act on native sockets", async () => {
    const { n0, n1, n2, m0 } = clients;
    const roomOf = (room) => u.op(n1, "getClusterRoomMembers", { room });
    io.in("mixed").socketsJoin("node-joined");
    await u.until(async () => (await roomOf("node-joined")).length === 3, "Node joined mixed's members to node-joined", 5000, 50);
    assert.deepEqual(await roomOf("node-joined"), members(n0, n2, m0));
    io.in("node-joined").socketsLeave("node-joined");
    await u.until(async () => (await roomOf("node-joined")).length === 0, "Node made them leave node-joined", 5000, 50);
  });

  test("the emitter's emit and to(room).emit reach native clients exactly once", async () => {
    const { n0, n2, m0 } = clients;
    let t = tag("emitter-all");
    emitter.emit("evt", { tag: t });
    await u.expectDelivery(assert, all, all, t);
    t = tag("emitter-room");
    emitter.to("mixed").emit("evt", { tag: t });
    await u.expectDelivery(assert, all, [n0, n2, m0], t);
    t = tag("emitter-clientID");
    emitter.to("###u2").emit("evt", { tag: t });
    await u.expectDelivery(assert, all, [clients.n1], t);
  });

  test("the emitter's socketsJoin / socketsLeave / disconnectSockets act on native sockets", async () => {
    const { n0, n1, n2, m0 } = clients;
    const roomOf = (room) => u.op(n1, "getClusterRoomMembers", { room });
    emitter.in("mixed").socketsJoin("by-emitter");
    await u.until(async () => (await roomOf("by-emitter")).length === 3, "the emitter joined mixed's members to by-emitter", 5000, 50);
    assert.deepEqual(await roomOf("by-emitter"), members(n0, n2, m0));
    const t = tag("joined-room");
    await u.op(n1, "broadcastToRoom", { room: "by-emitter", ...evt(t) });
    await u.expectDelivery(assert, all, [n0, n2, m0], t);

    emitter.in("by-emitter").except("###u1").socketsLeave("by-emitter");
    await u.until(async () => (await roomOf("by-emitter")).length === 1, "the emitter made them leave by-emitter", 5000, 50);
    assert.deepEqual(await roomOf("by-emitter"), members(n0));

    const closed = u.nextEvent(n2, "disconnect", () => true, 5000);
    emitter.in("###u3").disconnectSockets(true);
    await closed;
    await u.delay(300);
    assert.deepEqual(
      all.filter((c) => c.connected).map((c) => c.label),
      ["n0", "n1", "m0", "m1"],
      "only n2 was disconnected",
    );
  });
});

test("fetchSockets() across servers carries socket.data: native to native, native to Node, Node to native", { skip: redisBin.skip, timeout: 30000 }, async () => {
  const { Server } = require("..");
  const children = new u.Children();
  const closers = [];
  try {
    const redis = await new u.RedisServer(children).start();
    const natives = [];
    for (let i = 0; i < 2; i++) {
      const s = new Server({ redis: { host: "127.0.0.1", port: redis.port, key: "data" } });
      s.use((socket, next) => {
        socket.data = { user: `user-${i}`, since: i };
        next();
      });
      s.on("connection", (socket) => {
        socket.data.nested = { on: i };
      });
      const port = await u.within(s.listen(0, "127.0.0.1"), 5000, "listen");
      closers.push(() => s.close());
      natives.push({ s, port });
    }
    const pub = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", () => {});
    await Promise.all([pub.connect(), sub.connect()]);
    closers.push(() => Promise.all([pub.quit(), sub.quit()]).catch(() => {}));
    const httpServer = http.createServer();
    const node = new NodeServer(httpServer, {});
    node.adapter(createAdapter(pub, sub, { key: "data", requestsTimeout: 3000 }));
    node.on("connection", (socket) => (socket.data = { user: "node-user" }));
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => node.close(() => resolve())));
    const { io: ioc } = require("socket.io-client");
    const clients = [natives[0].port, natives[1].port, httpServer.address().port].map((port) => ioc(`http://127.0.0.1:${port}`, { forceNew: true, reconnection: false, transports: ["websocket"] }));
    closers.push(() => clients.forEach((c) => c.close()));
    await Promise.all(clients.map((c) => u.within(new Promise((resolve) => c.on("connect", resolve)), 5000, "connect")));
    await u.until(async () => (await natives[0].s.of("/").adapter.serverCount()) === 3, "the three servers see each other", 10000);
    const expected = { [clients[0].id]: { user: "user-0", since: 0, nested: { on: 0 } }, [clients[1].id]: { user: "user-1", since: 1, nested: { on: 1 } }, [clients[2].id]: { user: "node-user" } };
    const dataOf = (sockets) => Object.fromEntries(sockets.map((s) => [s.id, s.data]));
    assert.deepEqual(dataOf(await natives[0].s.fetchSockets()), expected, "native 0's view");
    assert.deepEqual(dataOf(await natives[1].s.fetchSockets()), expected, "native 1's view");
    assert.deepEqual(dataOf(await node.fetchSockets()), expected, "the Node server's view");
    // Data changed in place shows in the next fetch.
    natives[1].s.sockets.sockets.get(clients[1].id).data.user = "renamed";
    const again = dataOf(await node.fetchSockets());
    assert.equal(again[clients[1].id].user, "renamed");
  } finally {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
    await children.killAll();
  }
});
