"use strict";
// weroll's Realtime API over the native server, with real socket.io clients 4.8 and 2.5, each
// over a websocket and over polling with upgrade.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { Realtime } = require("..");
const MODES_WS4 = { name: "v4-websocket", version: 4, transports: ["websocket"] };
const {
  collect,
  connected,
  delay,
  expectNo,
  matrix,
  once,
  scoped,
  toBuffer,
  transportOf,
  until,
  upgraded,
  waitFor,
} = require("./helpers");

/** A Realtime server that accepts every `$init` whose `_auth` is a user id. */
const BY_USERID = { check: (auth) => Promise.resolve({ userid: String(auth) }) };

/** Connects a client and waits for the server-side socket too. */
async function join(scope, mode, server, opts) {
  const conn = once(server, "connection");
  const client = await scope.connected(mode, server.port, opts);
  const [socket] = await conn;
  assert.equal(socket.id, client.id, "the server socket id is the client's socket id");
  return { client, socket };
}

/** Connects and shakes hands with `_auth: userid`; resolves once the client has its `$init`. */
async function joinAs(scope, mode, server, userid) {
  const client = scope.clientMode(mode, server.port);
  const success = once(server, "shakeHandSuccess");
  await connected(client);
  const init = waitFor(client, "$init");
  client.emit("$init", { _auth: userid });
  const [socket] = await success;
  const data = await init;
  assert.equal(data.clientID, userid);
  return { client, socket };
}

// With no shakehand, no codec, no hooks and no listener that wants every connection, an idle
// connection lives natively only: the native side joins it to `###<id>` and sends `$init`, and the
// socket object is made when the client first sends something or the app asks for it.
matrix("idle sockets stay native until used: $init, sendTo, broadcast, routing, lookups, kick", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const client = scope.clientMode(mode, server.port);
    const init = waitFor(client, "$init");
    await connected(client);
    const data = await init;
    assert.equal(data.socketID, client.id);
    assert.equal(data.clientID, client.id);
    assert.ok(Math.abs(Date.now() - data.time) < 5000);
    clients.push(client);
  }
  await until(() => server.io.stats().sockets === 3, "three native sockets");
  assert.equal(server._sockets.size, 0, "no socket object for an idle connection");

  // sendTo(clientID) reaches the ###<id> room joined natively; broadcasts reach everyone.
  const news = waitFor(clients[1], "news");
  server.sendTo(clients[1].id, "news", { a: 1 });
  assert.deepEqual(await news, { a: 1 });
  const all = Promise.all(clients.map((c) => waitFor(c, "all")));
  server.broadcastToAll("all", 7);
  assert.deepEqual(await all, [7, 7, 7]);
  assert.equal(server._sockets.size, 0, "sending makes no socket object");

  // A message routes to its handler with a socket that has the connection's facts.
  const hello = once(server, "hello");
  clients[0].emit("m", ["hello", { x: 1 }]);
  const [s0, d0] = await hello;
  assert.deepEqual(d0, { x: 1 });
  assert.equal(s0.id, clients[0].id);
  assert.equal(s0.clientID, clients[0].id);
  assert.equal(s0.shaken, true);
  assert.equal(s0.info.ip, "127.0.0.1");
  assert.ok(s0.info.connectTime <= Date.now() && Date.now() - s0.info.connectTime < 10000);
  assert.deepEqual([...s0.rooms].sort(), [s0.id, `###${s0.id}`].sort());
  const back = waitFor(clients[0], "pong");
  s0.emit("pong", 1);
  assert.equal(await back, 1);
  assert.equal(server._sockets.size, 1);

  // The ###<id> room joined natively is a room like any other: allRooms, except, leave, join.
  const own = `###${s0.id}`;
  assert.ok((await server.io.sockets.adapter.allRooms()).has(own));
  const others = Promise.all([1, 2].map((i) => waitFor(clients[i], "others")));
  const notMe = expectNo(clients[0], "others");
  server.io.except(own).emit("others", 1);
  await others;
  await notMe;
  s0.leave(own);
  assert.deepEqual([...s0.rooms], [s0.id]);
  const none = expectNo(clients[0], "solo");
  server.sendTo(s0.id, "solo", 1);
  await none;
  s0.join(own);
  assert.deepEqual([...s0.rooms].sort(), [s0.id, own].sort());
  const solo = waitFor(clients[0], "solo");
  server.sendTo(s0.id, "solo", 2);
  assert.equal(await solo, 2);
  assert.deepEqual((await server.io.in(own).fetchSockets()).map((s) => s.id), [s0.id]);

  // Lookups by id or clientID make the object on demand.
  assert.equal(server.getClientIDBySocketID(clients[2].id), clients[2].id);
  assert.deepEqual(server.getConnectionsByClientID(clients[2].id), [clients[2].id]);
  assert.equal(server.getSocketInstanceBySocketID(clients[2].id).id, clients[2].id);
  assert.equal(server.io.sockets.sockets.size, 3, "io.sockets.sockets lists every socket");

  // kick reaches a socket the app never touched.
  const id1 = clients[1].id;
  const kicked = waitFor(clients[1], "$kick");
  const gone1 = waitFor(clients[1], "disconnect");
  assert.equal(await server.kick(clients[1].id, { why: "test" }), 1);
  assert.deepEqual(await kicked, { why: "test" });
  await gone1;
  await until(() => server.io.stats().sockets === 2 && !server._sockets.has(id1), "the kicked socket gone");

  // A `disconnect` listener added later sees every socket from then on.
  const left = once(server, "disconnect");
  const id2 = clients[2].id;
  clients[2].disconnect();
  const [s2] = await left;
  assert.equal(s2.id, id2);
  await until(() => server.io.stats().sockets === 1, "one socket left");
});

matrix("connects, gets $init and the server sees connection then shakeHandSuccess", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false }, { start: false });
  const events = [];
  for (const ev of ["start", "connection", "shakeHandStart", "shakeHandSuccess", "shakeHandFail"]) {
    server.on(ev, () => events.push(ev));
  }
  const started = waitFor(server, "start");
  const port = await server.start();
  assert.equal(typeof port, "number");
  assert.ok(port > 0);
  assert.equal(server.port, port);
  assert.ok(await started, "start carries the io server");

  const client = scope.clientMode(mode, port);
  const init = waitFor(client, "$init");
  await connected(client);
  const data = await init;
  assert.equal(data.socketID, client.id);
  assert.equal(data.clientID, client.id);
  assert.equal(typeof data.time, "number");
  assert.ok(Math.abs(Date.now() - data.time) < 5000);
  assert.deepEqual(events, ["start", "connection", "shakeHandSuccess"]);

  // In the polling modes the client moves to a websocket; the session must survive the upgrade.
  await upgraded(client);
  assert.equal(transportOf(client), "websocket");
  const hello = once(server, "after-upgrade");
  client.emit("m", ["after-upgrade", { n: 1 }]);
  const [socket, payload] = await hello;
  assert.equal(socket.id, client.id);
  assert.deepEqual(payload, { n: 1 });
});

matrix("`m` routes [type, data] to server.emit(type, socket, data)", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);
  const hello = once(server, "hello");
  client.emit("m", ["hello", { a: 1, s: "é€😀" }]);
  const [s, data] = await hello;
  assert.equal(s, socket);
  assert.deepEqual(data, { a: 1, s: "é€😀" });

  // Not an array / no string type: ignored, the connection stays.
  client.emit("m", "nope");
  client.emit("m", [42, 1]);
  const again = once(server, "again");
  client.emit("m", ["again"]);
  const [, none] = await again;
  assert.equal(none, undefined);
  assert.equal(client.connected, true);
});

matrix("emits both ways: client events, socket.emit, socket.fire", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);

  const got = once(socket, "up");
  client.emit("up", 1, "two", { three: [3] }, null, true);
  assert.deepEqual(await got, [1, "two", { three: [3] }, null, true]);

  const down = once(client, "down");
  socket.emit("down", { x: 1 }, [2, "b"], "c");
  assert.deepEqual(await down, [{ x: 1 }, [2, "b"], "c"]);

  const fired = once(client, "fired");
  socket.fire("fired", { y: 2 }, "z");
  assert.deepEqual(await fired, [{ y: 2 }, "z"], "without compress, fire is a plain emit");

  // Many messages keep their order.
  const seq = collect(client, "seq");
  for (let i = 0; i < 200; i++) socket.emit("seq", i);
  await until(() => seq.length === 200, "200 ordered messages arrived");
  assert.deepEqual(
    seq.map((a) => a[0]),
    Array.from({ length: 200 }, (_, i) => i),
  );
  const upSeq = collect(socket, "useq");
  for (let i = 0; i < 200; i++) client.emit("useq", i);
  await until(() => upSeq.length === 200, "200 ordered client messages arrived");
  assert.deepEqual(
    upSeq.map((a) => a[0]),
    Array.from({ length: 200 }, (_, i) => i),
  );
});

matrix("acks both ways", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);

  socket.on("x", (n, ack) => {
    assert.equal(typeof ack, "function", "the ack function comes last");
    ack(n + 1, "ok", { n });
  });
  const answer = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no ack from the server")), 3000);
    client.emit("x", 1, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
  assert.deepEqual(answer, [2, "ok", { n: 1 }]);

  // No ack asked: no function is passed.
  const plain = once(socket, "plain");
  client.emit("plain", 5);
  assert.deepEqual(await plain, [5]);

  client.on("y", (q, ack) => ack(`${q}!`, 7));
  const back = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no ack from the client")), 3000);
    socket.emit("y", "q", (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
  assert.deepEqual(back, ["q!", 7]);

  // Several acks in flight resolve to their own callers.
  client.on("double", (n, ack) => setTimeout(() => ack(n * 2), 30 - n));
  const results = await Promise.all(
    [1, 2, 3, 4, 5].map(
      (n) =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`no ack for ${n}`)), 3000);
          socket.emit("double", n, (r) => {
            clearTimeout(t);
            resolve(r);
          });
        }),
    ),
  );
  assert.deepEqual(results, [2, 4, 6, 8, 10]);
});

matrix("binary both ways, in events and acks", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);
  const a = Buffer.from([0, 1, 2, 255]);
  const b = Buffer.alloc(70000, 7);
  const empty = Buffer.alloc(0);

  const got = once(socket, "bin");
  client.emit("bin", a, "text", { nested: b, list: [empty] });
  const [ga, text, obj] = await got;
  assert.ok(Buffer.isBuffer(ga), "a client binary arrives as a Buffer");
  assert.deepEqual(ga, a);
  assert.equal(text, "text");
  assert.ok(Buffer.isBuffer(obj.nested));
  assert.ok(b.equals(obj.nested));
  assert.ok(Buffer.isBuffer(obj.list[0]));
  assert.equal(obj.list[0].length, 0);

  const down = once(client, "bin-down");
  socket.emit("bin-down", a, { deep: [b] }, 3);
  const [da, dobj, three] = await down;
  assert.ok(toBuffer(da).equals(a));
  assert.ok(toBuffer(dobj.deep[0]).equals(b));
  assert.equal(three, 3);

  socket.on("bin-ack", (ack) => ack(Buffer.from("pong"), "x"));
  const [ackBin, x] = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no binary ack")), 3000);
    client.emit("bin-ack", (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
  assert.equal(toBuffer(ackBin).toString(), "pong");
  assert.equal(x, "x");

  client.on("ask-bin", (ack) => ack(Buffer.from("from client")));
  const fromClient = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no binary ack from the client")), 3000);
    socket.emit("ask-bin", (r) => {
      clearTimeout(t);
      resolve(r);
    });
  });
  assert.ok(Buffer.isBuffer(fromClient));
  assert.equal(fromClient.toString(), "from client");
});

matrix("rooms: enterRoom/leaveRoom (callback and promise) and broadcastToRoom", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const A = await join(scope, mode, server);
  const B = await join(scope, mode, server);
  const C = await join(scope, mode, server);

  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("enterRoom callback never called")), 3000);
    const ret = A.socket.helper.enterRoom("lobby", (err) => {
      clearTimeout(t);
      if (err) reject(err);
      else resolve();
    });
    assert.ok(ret === undefined || typeof ret.then === "function");
  });
  await B.socket.helper.enterRoom("lobby");
  assert.ok(A.socket.rooms.has("lobby"));
  assert.ok(B.socket.rooms.has("lobby"));
  assert.ok(!C.socket.rooms.has("lobby"));

  const ga = waitFor(A.client, "news");
  const gb = waitFor(B.client, "news");
  const nc = expectNo(C.client, "news");
  server.broadcastToRoom("lobby", "news", { n: 1 });
  assert.deepEqual(await ga, { n: 1 });
  assert.deepEqual(await gb, { n: 1 });
  await nc;

  const hb = waitFor(B.client, "helper-news");
  const ha = waitFor(A.client, "helper-news");
  C.socket.helper.broadcastToRoom("lobby", "helper-news", "hi");
  assert.equal(await ha, "hi");
  assert.equal(await hb, "hi");

  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("leaveRoom callback never called")), 3000);
    A.socket.helper.leaveRoom("lobby", (err) => {
      clearTimeout(t);
      if (err) reject(err);
      else resolve();
    });
  });
  assert.ok(!A.socket.rooms.has("lobby"));
  const gb2 = waitFor(B.client, "news2");
  const na = expectNo(A.client, "news2");
  server.broadcastToRoom("lobby", "news2", 2);
  assert.equal(await gb2, 2);
  await na;

  await B.socket.helper.leaveRoom("lobby");
  const nb = expectNo(B.client, "news3");
  server.broadcastToRoom("lobby", "news3", 3);
  await nb;
});

matrix("helper: send / sendTo reach every connection of a clientID", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, session: BY_USERID });
  const u1a = await joinAs(scope, mode, server, "u1");
  const u1b = await joinAs(scope, mode, server, "u1");
  const u2 = await joinAs(scope, mode, server, "u2");
  assert.equal(u1a.socket.clientID, "u1");
  assert.equal(u1b.socket.clientID, "u1");
  assert.notEqual(u1a.socket.id, u1b.socket.id);

  const a = waitFor(u1a.client, "self");
  const b = waitFor(u1b.client, "self");
  const n2 = expectNo(u2.client, "self");
  u1a.socket.helper.send("self", { from: "a" });
  assert.deepEqual(await a, { from: "a" });
  assert.deepEqual(await b, { from: "a" });
  await n2;

  const to2 = waitFor(u2.client, "dm");
  const n1a = expectNo(u1a.client, "dm");
  const n1b = expectNo(u1b.client, "dm");
  u1b.socket.helper.sendTo("u2", "dm", "hello u2");
  assert.equal(await to2, "hello u2");
  await Promise.all([n1a, n1b]);
});

matrix("helper: broadcast, broadcastWithoutSender, broadcastToRoomWithoutSender", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const A = await join(scope, mode, server);
  const B = await join(scope, mode, server);
  const C = await join(scope, mode, server);

  const all = [A, B, C].map((x) => waitFor(x.client, "all"));
  A.socket.helper.broadcast("all", 1);
  assert.deepEqual(await Promise.all(all), [1, 1, 1]);

  const others = [B, C].map((x) => waitFor(x.client, "others"));
  const notA = expectNo(A.client, "others");
  A.socket.helper.broadcastWithoutSender("others", "o");
  assert.deepEqual(await Promise.all(others), ["o", "o"]);
  await notA;

  await A.socket.helper.enterRoom("r");
  await B.socket.helper.enterRoom("r");
  const toB = waitFor(B.client, "room-others");
  const notA2 = expectNo(A.client, "room-others");
  const notC = expectNo(C.client, "room-others");
  A.socket.helper.broadcastToRoomWithoutSender("r", "room-others", { r: 1 });
  assert.deepEqual(await toB, { r: 1 });
  await Promise.all([notA2, notC]);
});

matrix("helper.kick: $kick with data, then disconnected about a second later", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);
  const kicked = waitFor(client, "$kick", 3000);
  const gone = waitFor(client, "disconnect", 4000);
  const serverGone = once(server, "disconnect", 4000);
  const t0 = Date.now();
  socket.helper.kick({ reason: "bye" });
  assert.deepEqual(await kicked, { reason: "bye" });
  const tKick = Date.now();
  assert.equal(client.connected, true, "still connected right after $kick");
  assert.equal(await gone, "io server disconnect", "a kicked client must not reconnect on its own");
  const waited = Date.now() - t0;
  assert.ok(waited >= 800, `disconnected after ${waited} ms, expected about 1000`);
  assert.ok(waited < 3000, `disconnected after ${waited} ms, expected about 1000`);
  assert.ok(tKick - t0 < 800, "$kick arrives before the disconnect");
  const [s] = await serverGone;
  assert.equal(s, socket);
});

matrix("server: sendTo, broadcastToRoom, broadcastToAll", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, session: BY_USERID });
  const u1 = await joinAs(scope, mode, server, "u1");
  const u2 = await joinAs(scope, mode, server, "u2");

  const d1 = waitFor(u1.client, "direct");
  const n2 = expectNo(u2.client, "direct");
  server.sendTo("u1", "direct", { k: "v" });
  assert.deepEqual(await d1, { k: "v" });
  await n2;

  await u2.socket.helper.enterRoom("room2");
  const r2 = waitFor(u2.client, "rb");
  const nr1 = expectNo(u1.client, "rb");
  server.broadcastToRoom("room2", "rb", [1, 2]);
  assert.deepEqual(await r2, [1, 2]);
  await nr1;

  const all = [u1, u2].map((x) => waitFor(x.client, "everyone"));
  server.broadcastToAll("everyone", "!");
  assert.deepEqual(await Promise.all(all), ["!", "!"]);
});

matrix("server.kick(clientID, data) kicks every connection of that clientID", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, session: BY_USERID });
  const a = await joinAs(scope, mode, server, "bad");
  const b = await joinAs(scope, mode, server, "bad");
  const good = await joinAs(scope, mode, server, "good");
  const ka = waitFor(a.client, "$kick");
  const kb = waitFor(b.client, "$kick");
  const goneA = waitFor(a.client, "disconnect", 4000);
  const goneB = waitFor(b.client, "disconnect", 4000);
  const notGood = expectNo(good.client, "$kick", 1500);
  const n = await server.kick("bad", { why: "spam" });
  assert.equal(n, 2, "kick resolves the number of kicked connections");
  assert.deepEqual(await ka, { why: "spam" });
  assert.deepEqual(await kb, { why: "spam" });
  await Promise.all([goneA, goneB, notGood]);
  assert.equal(good.client.connected, true);
  assert.deepEqual(server.getConnectionsByClientID("bad", false), []);
});

matrix("server lookups by clientID and socket id", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, session: BY_USERID });
  const a = await joinAs(scope, mode, server, "42");
  const b = await joinAs(scope, mode, server, "42");

  const ids = server.getConnectionsByClientID("42", false);
  assert.deepEqual([...ids].sort(), [a.socket.id, b.socket.id].sort());
  const sockets = server.getConnectionsByClientID("42", true);
  assert.equal(sockets.length, 2);
  assert.ok(sockets.includes(a.socket) && sockets.includes(b.socket));
  assert.deepEqual(server.getConnectionsByClientID(42, false).sort(), ids.sort(), "a numeric clientID matches too");
  assert.deepEqual(server.getConnectionsByClientID("nobody", true), []);

  assert.equal(server.getClientIDBySocketID(a.socket.id), "42");
  assert.equal(server.getSocketInstanceBySocketID(a.socket.id), a.socket);
  assert.equal(server.getClientConnectionBySocketID(b.socket.id), b.socket);
  assert.equal(server.getClientIDBySocketID("no-such-id"), null);
  assert.equal(server.getSocketInstanceBySocketID("no-such-id"), null);

  const gone = once(server, "disconnect");
  a.client.close();
  const [s] = await gone;
  assert.equal(s, a.socket);
  assert.equal(server.getSocketInstanceBySocketID(a.socket.id), null);
  assert.deepEqual(server.getConnectionsByClientID("42", false), [b.socket.id]);
});

matrix("socket.info: id, ip, port, connectTime", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const before = Date.now();
  const { client, socket } = await join(scope, mode, server);
  const info = socket.info;
  assert.equal(info.id, socket.id);
  assert.equal(info.ip, "127.0.0.1");
  assert.equal(typeof info.port, "number");
  assert.ok(info.port > 0 && info.port !== server.port);
  assert.ok(info.connectTime >= before && info.connectTime <= Date.now());
  if (mode.transports.length === 1) {
    // Over a websocket the handshake request is the websocket's own TCP connection.
    const ws = client.io.engine.transport.ws;
    const local = ws && ws._socket && ws._socket.localPort;
    if (local) assert.equal(info.port, local);
  }
  assert.equal(socket.clientID, socket.id);
});

matrix("socket.info.ip honours x-forwarded-for", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const extraHeaders = { "x-forwarded-for": "10.9.8.7, 192.168.0.1" };
  const opts = mode.version === 4 ? { extraHeaders } : { extraHeaders, transportOptions: { polling: { extraHeaders } } };
  const { socket } = await join(scope, mode, server, opts);
  assert.equal(socket.info.ip, "10.9.8.7");

  const mapped = { "x-forwarded-for": "::ffff:172.16.0.9" };
  const opts2 = mode.version === 4 ? { extraHeaders: mapped } : { extraHeaders: mapped, transportOptions: { polling: { extraHeaders: mapped } } };
  const second = await join(scope, mode, server, opts2);
  assert.equal(second.socket.info.ip, "172.16.0.9", "the ::ffff: prefix is stripped");
});

matrix("shakehand events: start, complete, success for a guest; fail without guest", async (mode, scope) => {
  const guests = await scope.realtime({ shakehand: true, allowGuest: true });
  const order = [];
  for (const ev of ["connection", "shakeHandStart", "shakeHandComplete", "shakeHandSuccess", "shakeHandFail", "disconnect"]) {
    guests.on(ev, (s, ok) => order.push(ok === undefined ? ev : `${ev}:${ok}`));
  }
  const client = await scope.connected(mode, guests.port);
  const init = waitFor(client, "$init");
  const success = once(guests, "shakeHandSuccess");
  client.emit("$init", {});
  const data = await init;
  const [socket] = await success;
  assert.equal(data.clientID, client.id);
  assert.equal(socket.clientID, client.id);
  assert.deepEqual(order, ["connection", "shakeHandStart", "shakeHandComplete:true", "shakeHandSuccess"]);

  const strict = await scope.realtime({ shakehand: true, allowGuest: false });
  const order2 = [];
  for (const ev of ["shakeHandStart", "shakeHandComplete", "shakeHandSuccess", "shakeHandFail", "disconnect"]) {
    strict.on(ev, (s, ok) => order2.push(ok === undefined ? ev : `${ev}:${ok}`));
  }
  const c2 = await scope.connected(mode, strict.port);
  const gone = waitFor(c2, "disconnect");
  const failed = once(strict, "shakeHandFail");
  c2.emit("$init", {});
  await failed;
  await gone;
  await until(() => order2.includes("disconnect"), "the server saw the disconnect");
  assert.deepEqual(order2, ["shakeHandStart", "shakeHandComplete:false", "shakeHandFail", "disconnect"]);
});

matrix("disconnect event when the client leaves", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const { client, socket } = await join(scope, mode, server);
  await socket.helper.enterRoom("bye-room");
  const gone = once(server, "disconnect");
  client.close();
  const [s] = await gone;
  assert.equal(s, socket);
  assert.equal(socket.connected, false);
  assert.equal(server.getSocketInstanceBySocketID(socket.id), null);
  // Emitting to a gone socket is harmless.
  socket.emit("late", 1);
  server.broadcastToRoom("bye-room", "late", 1);
  server.sendTo(socket.id, "late", 1);
});

test("registerProducer + invoke in a single process", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({ shakehand: false });
  server.registerProducer("add", (a, b) => a + b);
  server.registerProducer("slowEcho", async (v) => {
    await delay(20);
    return { v };
  });
  server.registerProducer("boom", () => {
    throw new Error("exploded");
  });
  assert.deepEqual(await server.invoke("add", [1, 2]), [3]);
  assert.deepEqual(await server.invoke("slowEcho", ["x"]), [{ v: "x" }]);

  const viaCb = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("invoke callback never called")), 3000);
    server.invoke("add", [20, 22], (err, r) => {
      clearTimeout(t);
      if (err) reject(err);
      else resolve(r);
    });
  });
  assert.deepEqual(viaCb, [42]);

  await assert.rejects(server.invoke("noSuchMethod", []), /noSuchMethod/);
  const cbErr = await new Promise((resolve) => {
    const t = setTimeout(() => resolve(new Error("invoke callback never called")), 3000);
    server.invoke("noSuchMethod", [], (err, r) => {
      clearTimeout(t);
      resolve(err ? err : new Error(`resolved ${JSON.stringify(r)}`));
    });
  });
  assert.match(cbErr.message, /noSuchMethod/);
  await assert.rejects(server.invoke("boom", []), /exploded/);
  assert.throws(() => server.registerProducer("bad", 5), TypeError);

  // Built-in producer.
  const { client } = await join(scope, { version: 4, transports: ["websocket"] }, server);
  assert.deepEqual(await server.invoke("getClientIDBySocketID", [client.id]), [client.id]);
  assert.deepEqual(await server.invoke("getClientIDBySocketID", ["nobody"]), [null]);
}));

test("global Realtime getter unless noGlobal", { timeout: 10000 }, scoped(async (scope) => {
  const had = Object.getOwnPropertyDescriptor(global, "Realtime");
  scope.defer(() => {
    if (had) Object.defineProperty(global, "Realtime", had);
    else delete global.Realtime;
  });
  delete global.Realtime;
  const quiet = Realtime.createServer({ port: 0, shakehand: false }, true);
  assert.equal(global.Realtime, undefined, "noGlobal leaves the global alone");
  const server = await scope.realtime({ shakehand: false }, { global: true });
  assert.equal(global.Realtime, server);
  const desc = Object.getOwnPropertyDescriptor(global, "Realtime");
  assert.equal(typeof desc.get, "function", "a getter on global");
  Realtime.createServer({ port: 0, shakehand: false }, true);
  assert.equal(global.Realtime, server, "a later noGlobal server does not replace it");
  assert.notEqual(global.Realtime, quiet);

  // The global is the very server: its methods work.
  const c = await scope.connected({ version: 4, transports: ["websocket"] }, global.Realtime.port);
  const got = waitFor(c, "via-global");
  global.Realtime.broadcastToAll("via-global", 1);
  assert.equal(await got, 1);
}));

test("start() twice is an error; methods before start throw", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({ shakehand: false }, { start: false });
  assert.throws(() => server.broadcastToAll("x", 1), /not started/);
  await server.start();
  let second;
  try {
    second = server.start();
  } catch (err) {
    second = Promise.reject(err);
  }
  await assert.rejects(second, /already started/);
}));

test("a port in use: start() rejects naming the port and emits error", { timeout: 10000 }, scoped(async (scope) => {
  const first = await scope.realtime({ shakehand: false });
  const second = await scope.realtime({ shakehand: false, port: first.port, bindRetryMs: 1 }, { start: false });
  const errors = [];
  second.on("error", (err) => errors.push(err));
  let started;
  try {
    started = second.start();
  } catch (err) {
    started = Promise.reject(err);
  }
  const err = await started.then(
    () => null,
    (e) => e,
  );
  assert.ok(err instanceof Error, "start() on a busy port must fail");
  assert.match(err.message, new RegExp(String(first.port)));
  assert.equal(errors.length, 1);
  assert.equal(errors[0], err);
  // The first server is unaffected.
  const { client } = await join(scope, MODES_WS4, first);
  assert.equal(client.connected, true);
}));
