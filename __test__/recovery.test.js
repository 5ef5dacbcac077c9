"use strict";
// Connection state recovery (socket.io's `connectionStateRecovery`), with real socket.io-client
// 4.8: a client whose transport drops comes back within the window with its id, rooms and data,
// and gets every event it missed exactly once, in order, and none it was not meant to get.
const { describe, test, after } = require("node:test");
const assert = require("node:assert/strict");
const { Server, Realtime } = require("..");
const { once, scoped, until, within, delay } = require("./helpers");
const u = require("./fixtures/cluster-util");

const ioV4 = require("socket.io-client");
const ioV2 = require("socket.io-client-v2");

const CSR = { maxDisconnectionDuration: 2000 };

/** A v4 client that reconnects quickly and records every event (without its offset). */
function client(scope, port, opts = {}) {
  const c = ioV4.io(`http://127.0.0.1:${port}`, { forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 50, timeout: 3000, ...opts });
  scope.clients.push(c);
  c.got = [];
  c.onAny((ev, ...args) => c.got.push([ev, ...args]));
  return c;
}

function connectOnce(c, ms = 5000) {
  return within(new Promise((resolve) => c.once("connect", resolve)), ms, "connect");
}

/** Events `c` got, without the trailing offset, after index `from`. */
function received(c, from = 0) {
  return c.got.slice(from).map(([ev, ...args]) => [ev, ...(typeof args[args.length - 1] === "string" && c._pid ? args.slice(0, -1) : args)]);
}

const CUTS = {
  "engine.close()": (c) => c.io.engine.close(),
  "a killed TCP connection": (c) => {
    const t = c.io.engine.transport;
    if (t.ws && t.ws._socket) t.ws._socket.destroy();
    else c.io.engine.close();
  },
};

async function server(scope, opts = {}, setup) {
  const io = new Server({ connectionStateRecovery: CSR, pingInterval: 300, pingTimeout: 300, ...opts });
  scope.servers.push(io);
  if (setup) setup(io);
  await io.listen(0, "127.0.0.1");
  return io;
}

for (const transports of [["websocket"], ["polling"]]) {
  for (const [cutName, cut] of Object.entries(CUTS)) {
    test(`recovery over ${transports[0]}, cut by ${cutName}: missed events once, in order, and only its own`, { timeout: 20000 }, scoped(async (scope) => {
      const serverSide = [];
      const io = await server(scope, {}, (io) =>
        io.on("connection", (s) => {
          serverSide.push({ id: s.id, recovered: s.recovered, data: { ...s.data }, rooms: [...s.rooms].sort() });
          if (!s.recovered) {
            s.join("mine");
            s.data.user = "alice";
          }
        }),
      );
      const c = client(scope, io.port, { transports });
      await connectOnce(c);
      const id = c.id;
      io.emit("live", 0);
      await until(() => c.got.length === 1, "the first event", 3000);
      const disconnected = once(c, "disconnect", 5000);
      cut(c);
      await disconnected;
      // The server must have seen the drop before emitting "while away".
      await until(() => io.sockets.sockets.size === 0, "the server saw the drop", 5000);
      io.emit("all", 1);
      io.to("mine").emit("room", 2);
      io.to("elsewhere").emit("not-mine", 3);
      io.to(id).emit("private", 4);
      io.except("mine").emit("not-for-mine", 5);
      io.to("mine").except(id).emit("room-but-not-me", 6);
      io.emit("all", 7, { nested: ["x"] });
      await connectOnce(c, 5000);
      io.emit("after", 8);
      await until(() => c.got.some(([ev]) => ev === "after"), "the live event after reconnecting", 3000);
      await delay(100);
      assert.equal(c.recovered, true, "client: recovered");
      assert.equal(c.id, id, "same id");
      const events = c.got.map(([ev, ...args]) => [ev, ...args.slice(0, -1)]);
      assert.deepEqual(events, [["live", 0], ["all", 1], ["room", 2], ["private", 4], ["all", 7, { nested: ["x"] }], ["after", 8]]);
      // Every event carried a distinct offset as its last argument.
      const offsets = c.got.map((g) => g[g.length - 1]);
      assert.ok(offsets.every((o) => typeof o === "string"), JSON.stringify(offsets));
      assert.equal(new Set(offsets).size, offsets.length);
      assert.equal(serverSide.length, 2);
      assert.deepEqual(serverSide[1], { id, recovered: true, data: { user: "alice" }, rooms: [id, "mine"].sort() });
      // The recovered socket is the server's socket in every way: its rooms receive.
      io.to("mine").emit("room-again", 9);
      await until(() => c.got.some(([ev]) => ev === "room-again"), "a room broadcast after recovery", 3000);
    }));
  }
}

test("after maxDisconnectionDuration: a new session (new id, no rooms, nothing replayed)", { timeout: 20000 }, scoped(async (scope) => {
  const io = await server(scope, { connectionStateRecovery: { maxDisconnectionDuration: 300 } }, (io) => io.on("connection", (s) => s.join("mine")));
  const c = client(scope, io.port, { transports: ["websocket"], reconnection: false });
  await connectOnce(c);
  const id = c.id;
  io.emit("live", 0);
  await until(() => c.got.length === 1, "the first event", 3000);
  c.io.engine.close();
  await until(() => io.sockets.sockets.size === 0, "the server saw the drop", 5000);
  io.to("mine").emit("missed", 1);
  await delay(600);
  c.connect();
  await connectOnce(c);
  await delay(200);
  assert.equal(c.recovered, false);
  assert.notEqual(c.id, id);
  assert.deepEqual(c.got.map((g) => g[0]), ["live"]);
}));

test("a client that disconnects itself is not kept; socket.io-client 2.5 with recovery on connects as before", { timeout: 20000 }, scoped(async (scope) => {
  const io = await server(scope, {}, (io) => io.on("connection", (s) => s.on("echo", (v, ack) => ack(v))));
  const c = client(scope, io.port, { transports: ["websocket"], reconnection: false });
  await connectOnce(c);
  io.emit("live", 0);
  await until(() => c.got.length === 1, "the first event", 3000);
  c.disconnect();
  await until(() => io.sockets.sockets.size === 0, "gone", 3000);
  await delay(100);
  assert.equal(io.stats().recovery.sessions, 0, "a client namespace disconnect is not saved");
  c.connect();
  await connectOnce(c);
  assert.equal(c.recovered, false);

  const old = ioV2(`http://127.0.0.1:${io.port}`, { forceNew: true, reconnection: false, transports: ["websocket"] });
  scope.clients.push(old);
  await within(new Promise((r) => old.once("connect", r)), 3000, "v2 connect");
  assert.equal(await within(new Promise((r) => old.emit("echo", "v2", r)), 3000, "v2 echo"), "v2");
  const got = once(old, "hi");
  io.emit("hi", "there");
  // As with socket.io: the offset is one more argument for clients that do not recover.
  const args = await got;
  assert.equal(args[0], "there");
  assert.equal(typeof args[1], "string");
}));

test("bad recovery input: a forged pid, a garbage or future offset, a live socket's pid give a fresh session", { timeout: 20000 }, scoped(async (scope) => {
  const io = await server(scope, {}, (io) => io.on("connection", (s) => s.join(`room-${s.handshake.auth.tag || "none"}`)));
  const a = client(scope, io.port, { transports: ["websocket"], reconnection: false, auth: { tag: "a" } });
  await connectOnce(a);
  io.emit("live", 0);
  await until(() => a.got.length === 1, "a's first event", 3000);
  const offset = a.got[0][a.got[0].length - 1];
  const pid = a._pid;
  assert.equal(typeof pid, "string");
  const future = offset.replace(/[0-9a-f]+$/, (n) => (parseInt(n, 16) + 1000).toString(16));
  for (const auth of [
    { pid: "forged-forged-forged", offset },
    { pid, offset: "garbage" },
    { pid, offset: future },
    { pid, offset: 42 },
    { pid: { $ne: null }, offset },
    { pid, offset }, // a's own pid while a is still connected
  ]) {
    const b = client(scope, io.port, { transports: ["websocket"], reconnection: false, auth: { ...auth, tag: "b" } });
    await connectOnce(b);
    assert.equal(b.recovered, false, JSON.stringify(auth));
    assert.notEqual(b.id, a.id, JSON.stringify(auth));
    const s = io.sockets.sockets.get(b.id);
    assert.deepEqual([...s.rooms].sort(), [b.id, "room-b"].sort(), "b got none of a's rooms");
    b.close();
  }
  // a is untouched.
  assert.equal(a.connected, true);
  assert.deepEqual([...io.sockets.sockets.get(a.id).rooms].sort(), [a.id, "room-a"].sort());
}));

test("each event is kept once, not once per recipient, and the kept events are bounded", { timeout: 20000 }, scoped(async (scope) => {
  const io = await server(scope, { connectionStateRecovery: { ...CSR, maxPackets: 50 } });
  const clients = [];
  for (let i = 0; i < 20; i++) clients.push(client(scope, io.port, { transports: ["websocket"] }));
  await Promise.all(clients.map((c) => connectOnce(c)));
  const before = io.stats().recovery.packets;
  for (let i = 0; i < 30; i++) io.emit("b", i);
  await until(() => clients.every((c) => c.got.length === 30), "every broadcast at every client", 5000);
  assert.equal(io.stats().recovery.packets - before, 30, "30 broadcasts to 20 clients: 30 kept");
  for (let i = 0; i < 100; i++) io.emit("b", i);
  assert.equal(io.stats().recovery.packets, 50, "at most maxPackets kept");
}));

test("middlewares: skipped for a recovered socket by default, run with skipMiddlewares: false", { timeout: 20000 }, scoped(async (scope) => {
  for (const skipMiddlewares of [true, false]) {
    const ran = [];
    const io = await server(scope, { connectionStateRecovery: { ...CSR, skipMiddlewares } }, (io) =>
      io.use((socket, next) => {
        ran.push(socket.recovered);
        next();
      }),
    );
    const c = client(scope, io.port, { transports: ["websocket"] });
    await connectOnce(c);
    io.emit("live", 0);
    await until(() => c.got.length === 1, "the first event", 3000);
    c.io.engine.close();
    await connectOnce(c);
    assert.equal(c.recovered, true);
    assert.deepEqual(ran, skipMiddlewares ? [false] : [false, true], `skipMiddlewares ${skipMiddlewares}`);
  }
}));

test("Realtime: a recovered client keeps its clientID and ###clientID room, and is not asked to shake hands again", { timeout: 20000 }, scoped(async (scope) => {
  const session = { check: (auth, cb) => cb(null, { userid: String(auth).replace("token-", "") }) };
  const server = Realtime.createServer({ port: 0, shakehand: true, shakehandTimeout: 600, session, connectionStateRecovery: CSR, pingInterval: 300, pingTimeout: 300 }, true);
  scope.servers.push(server);
  const events = [];
  server.on("connection", (s) => events.push(["connection", s.id, s.recovered]));
  server.on("shakeHandSuccess", (s) => events.push(["shaken", s.clientID]));
  server.on("ping", (socket, data) => socket.fire("pong", { clientID: socket.clientID, data }));
  const port = await server.start();
  const c = client(scope, port, { transports: ["websocket"] });
  await connectOnce(c);
  const init = once(c, "$init");
  c.emit("$init", { _auth: "token-bob" });
  assert.equal((await init)[0].clientID, "bob");
  const id = c.id;
  c.io.engine.close();
  await until(() => server.io.sockets.sockets.size === 0, "the drop seen", 5000);
  server.sendTo("bob", "note", { n: 1 });
  await connectOnce(c);
  await until(() => c.got.some(([ev]) => ev === "note"), "the missed sendTo", 3000);
  assert.equal(c.recovered, true);
  assert.equal(c.id, id);
  const pong = once(c, "pong");
  c.emit("m", ["ping", 1]);
  assert.deepEqual((await pong)[0], { clientID: "bob", data: 1 });
  server.sendTo("bob", "note", { n: 2 });
  await until(() => c.got.filter(([ev]) => ev === "note").length === 2, "sendTo reaches the recovered socket", 3000);
  assert.deepEqual(events, [["connection", id, false], ["shaken", "bob"], ["connection", id, true]]);
  await delay(900);
  assert.equal(c.connected, true, "no shakehand timeout after recovery");
}));

describe("recovery in a Redis cluster: what other workers broadcast while the client was away", { skip: u.needBinary("redis-server").skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const clients = [];
  after(async () => {
    u.closeAll(clients);
    await children.killAll();
    await redisProcess.killAll();
  });

  test("a client back on its worker gets the cross-worker broadcasts, sendTo and room traffic it missed, once each", async () => {
    const redis = await new u.RedisServer(redisProcess).start();
    const base = await u.freePorts(2);
    const extra = { TEST_RECOVERY: JSON.stringify({ maxDisconnectionDuration: 5000 }) };
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "csr", extra })));
    // Back after a second: long enough for the others to broadcast meanwhile.
    const a = u.client(4, base, { reconnection: true, reconnectionDelay: 1000, reconnectionDelayMax: 1000, randomizationFactor: 0 });
    const b = u.client(2, base + 1);
    clients.push(a, b);
    await u.shake(a, "a");
    await u.shake(b, "b");
    await u.op(a, "enterRoom", { room: "news" });
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "before" } });
    await u.expectDelivery(assert, clients, [a, b], "before");
    const id = a.id;
    const away = new Promise((resolve) => a.once("disconnect", resolve));
    const back = new Promise((resolve) => a.once("connect", resolve));
    a.io.engine.close();
    await away;
    // Worker 0 must have noticed before the others broadcast.
    await delay(200);
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "all" } });
    await u.op(b, "sendTo", { clientID: "ua", type: "evt", data: { tag: "direct" } });
    await u.op(b, "broadcastToRoom", { room: "news", type: "evt", data: { tag: "news" } });
    await u.op(b, "broadcastToRoom", { room: "sport", type: "evt", data: { tag: "sport" } });
    await within(back, 5000, "a reconnects");
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "after" } });
    await u.until(() => u.count(a, "after") === 1, "a hears live traffic again", 5000);
    assert.deepEqual(
      a.got.filter((g) => g.ev === "evt").map((g) => g.data.tag),
      ["before", "all", "direct", "news", "after"],
    );
    // Its clientID and room are back: the cluster reaches it by both.
    await u.op(b, "sendTo", { clientID: "ua", type: "evt", data: { tag: "direct2" } });
    await u.op(b, "broadcastToRoom", { room: "news", type: "evt", data: { tag: "news2" } });
    await u.until(() => u.count(a, "direct2") === 1 && u.count(a, "news2") === 1, "sendTo and room after recovery", 5000);
  });
});
