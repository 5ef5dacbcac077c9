"use strict";
// socket.io's common server API (lib/io.js `Server`) with real socket.io clients 4.8 and 2.5.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const path = require("node:path");
const { execFile } = require("node:child_process");
const WebSocket = require("ws");
const { MODES, collect, connected, delay, expectNo, matrix, once, scoped, toBuffer, until, upgraded, waitFor } = require("./helpers");

const WS4 = MODES[0];
const POLL4 = { name: "v4-polling", version: 4, transports: ["polling"] };
const POLL2 = { name: "v2-polling", version: 2, transports: ["polling"] };

/** Connects a client of `mode` to `nsp` and resolves `{client, socket}` (the server side). */
async function join(scope, io, mode, opts = {}) {
  const nsp = io.of(opts.nsp || "/");
  const conn = once(nsp, "connection");
  const client = await scope.connected(mode, io.port, opts);
  const [socket] = await conn;
  return { client, socket };
}

/** `emit` with an ack, as a promise of the answer's arguments. */
function ask(emitter, ...args) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ack for "${args[0]}"`)), 3000);
    emitter.emit(...args, (...answer) => {
      clearTimeout(t);
      resolve(answer);
    });
  });
}

matrix("broadcast with acks: every recipient answers, or the timeout gives the answers so far", async (mode, scope) => {
  const io = await scope.io();
  const a = await join(scope, io, mode);
  const b = await join(scope, io, mode);
  a.client.on("q", (n, ack) => ack(n + 1));
  b.client.on("q", (n, ack) => ack(n + 2));
  const responses = await io.timeout(2000).emitWithAck("q", 10);
  assert.deepEqual(responses.sort(), [11, 12]);

  // The callback form, to one room.
  a.socket.join("r");
  const inRoom = await new Promise((resolve) => io.to("r").timeout(2000).emit("q", 1, (err, resp) => resolve([err, resp])));
  assert.deepEqual(inRoom, [null, [2]]);

  // A client that never answers: the timeout reports the answers that came.
  b.client.off("q");
  b.client.on("q", () => {});
  const late = await new Promise((resolve) => io.timeout(300).emit("q", 5, (err, resp) => resolve([err && err.message, resp])));
  assert.deepEqual(late, ["operation has timed out", [6]]);
  await assert.rejects(io.timeout(300).emitWithAck("q", 5), /operation has timed out/);

  // Nobody targeted: done at once, no answers.
  assert.deepEqual(await io.to("nobody").timeout(1000).emitWithAck("q", 1), []);
  // The per-socket acks still work beside them.
  a.client.on("p", (ack) => ack("pong"));
  assert.deepEqual(await ask(a.socket, "p"), ["pong"]);
});

matrix("io.use middlewares run in order before connection, see the handshake, and refuse with connect_error", async (mode, scope) => {
  const tokenOf = (socket) => (mode.version === 4 ? socket.handshake.auth.token : socket.handshake.query.token);
  const io = await scope.io({}, (io) => {
    io.use((socket, next) => {
      socket.data.order = ["a"];
      next();
    });
    io.use((socket, next) =>
      setTimeout(() => {
        socket.data.order.push("b");
        if (tokenOf(socket) === "good") return next();
        const err = new Error("not authorized");
        err.data = { code: 401 };
        next(err);
      }, 20),
    );
  });
  const creds = (token) => (mode.version === 4 ? { auth: { token } } : { query: { token } });
  const conns = collect(io.sockets, "connection");

  const { client, socket } = await join(scope, io, mode, creds("good"));
  assert.deepEqual(socket.data.order, ["a", "b"]);
  assert.equal(socket.connected, true);
  const up = once(socket, "up");
  client.emit("up", 1);
  assert.deepEqual(await up, [1]);
  const down = waitFor(client, "down");
  io.emit("down", 2);
  assert.equal(await down, 2);

  const bad = scope.clientMode(mode, io.port, creds("bad"));
  if (mode.version === 4) {
    const err = await waitFor(bad, "connect_error");
    assert.equal(err.message, "not authorized");
    assert.deepEqual(err.data, { code: 401 });
  } else {
    // socket.io 2 sends `err.data` (or the message) in an ERROR packet.
    assert.deepEqual(await waitFor(bad, "error"), { code: 401 });
  }
  assert.equal(bad.connected, false);
  const notThere = expectNo(bad, "down");
  io.emit("down", 3);
  await notThere;
  assert.equal(conns.length, 1, "a refused socket never reaches `connection`");
  assert.equal(io.sockets.sockets.size, 1);
  assert.equal(io.stats().sockets, 1);
});

matrix("a middleware that throws or refuses with a plain message; a namespace of its own", async (mode, scope) => {
  const io = await scope.io({}, (io) => {
    io.of("/admin").use(() => {
      throw new Error("boom");
    });
    io.of("/open").use((socket, next) => next());
  });
  const open = await join(scope, io, mode, { nsp: "/open" });
  assert.equal(open.socket.connected, true);
  const admin = scope.clientMode(mode, io.port, { nsp: "/admin" });
  if (mode.version === 4) {
    const err = await waitFor(admin, "connect_error");
    assert.equal(err.message, "boom");
  } else {
    assert.equal(await waitFor(admin, "error"), "boom");
  }
  assert.equal(io.of("/admin").sockets.size, 0);
});

test("a middleware that never answers: connectTimeout closes the v5 client", { timeout: 15000 }, scoped(async (scope) => {
  const io = await scope.io({ connectTimeout: 400 }, (io) => io.use(() => {}));
  const client = scope.clientMode(WS4, io.port);
  await until(() => io.stats().clients === 1, "the client's session is open");
  await until(() => io.stats().clients === 0, "the session closed by connectTimeout", 5000);
  assert.equal(client.connected, false);
  assert.equal(io.sockets.sockets.size, 0);
}));

matrix("io.of(\"/chat\") has its own connection event and traffic", async (mode, scope) => {
  const io = await scope.io({}, (io) => io.of("/chat"));
  const chat = io.of("/chat");
  const roots = collect(io.sockets, "connection");
  const conn = once(chat, "connection");
  const client = await scope.connected(mode, io.port, { nsp: "/chat" });
  const [socket] = await conn;
  assert.equal(socket.nsp, chat);
  assert.equal(socket.nsp.name, "/chat");
  assert.equal(socket.id, client.id);
  assert.ok(chat.sockets.has(socket.id));
  if (mode.version === 4) {
    await delay(100);
    assert.equal(roots.length, 0, "a v5 client connects only to the namespace it asked for");
  }

  const up = once(socket, "chat-up");
  client.emit("chat-up", "hi");
  assert.deepEqual(await up, ["hi"]);
  const down = waitFor(client, "chat-down");
  chat.emit("chat-down", { n: 1 });
  assert.deepEqual(await down, { n: 1 });
  const notRoot = expectNo(client, "root-only");
  io.emit("root-only", 1);
  await notRoot;
  client.on("q", (ack) => ack("a"));
  assert.deepEqual(await ask(socket, "q"), ["a"], "server → client ack in a namespace");
});

matrix("a client on / and /chat at once gets two sockets", async (mode, scope) => {
  const io = await scope.io({}, (io) => io.of("/chat"));
  const root = await join(scope, io, mode);
  const chatConn = once(io.of("/chat"), "connection");
  const chatClient = root.client.io.socket("/chat");
  scope.clients.push(chatClient);
  await connected(chatClient);
  const [chatSocket] = await chatConn;
  assert.notEqual(chatSocket.id, root.socket.id);
  const a = waitFor(root.client, "where");
  const b = waitFor(chatClient, "where");
  root.socket.emit("where", "/");
  chatSocket.emit("where", "/chat");
  assert.equal(await a, "/");
  assert.equal(await b, "/chat");

  // Leaving /chat keeps / connected.
  const left = waitFor(chatSocket, "disconnect");
  chatClient.disconnect();
  assert.equal(await left, "client namespace disconnect");
  const still = waitFor(root.client, "still");
  root.socket.emit("still", 1);
  assert.equal(await still, 1);
});

matrix("unknown namespace: an error, not a hang", async (mode, scope) => {
  const io = await scope.io();
  const client = scope.clientMode(mode, io.port, { nsp: "/nope" });
  const errors = collect(io.sockets, "connection");
  if (mode.version === 4) {
    const err = await waitFor(client, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  } else {
    // socket.io 2.x sent the message as a string; socket.io 4.x sends {message}.
    const err = await waitFor(client, "error");
    assert.equal(typeof err === "string" ? err : err && err.message, "Invalid namespace");
  }
  assert.equal(client.connected, false);
  if (mode.version === 4) assert.equal(errors.length, 0);
});

matrix("socket.handshake: headers, query, auth, address, time, issued, url", async (mode, scope) => {
  const io = await scope.io();
  const t0 = Date.now();
  const opts = {
    query: { foo: "bar", n: "1" },
    extraHeaders: { "x-test": "yes" },
  };
  // keys out of alphabetical order: the client's order must be kept
  if (mode.version === 4) opts.auth = { token: "abc", n: 2, deep: { z: 1, a: 2 } };
  else opts.transportOptions = { polling: { extraHeaders: opts.extraHeaders } };
  const { socket } = await join(scope, io, mode, opts);
  const h = socket.handshake;
  assert.equal(h.headers["x-test"], "yes");
  assert.equal(h.headers.host, `127.0.0.1:${io.port}`);
  assert.equal(h.query.foo, "bar");
  assert.equal(h.query.n, "1");
  assert.equal(h.query.EIO, mode.version === 4 ? "4" : "3");
  assert.equal(h.query.transport, mode.transports[0]);
  assert.deepEqual(h.auth, mode.version === 4 ? { token: "abc", n: 2, deep: { z: 1, a: 2 } } : {});
  if (mode.version === 4) {
    assert.deepEqual(Object.keys(h.auth), ["token", "n", "deep"]);
    assert.deepEqual(Object.keys(h.auth.deep), ["z", "a"]);
  }

  assert.match(h.address, /^(::ffff:)?127\.0\.0\.1$/);
  assert.equal(typeof h.issued, "number");
  assert.ok(h.issued >= t0 - 5 && h.issued <= Date.now(), `issued ${h.issued}`);
  assert.equal(typeof h.time, "string");
  assert.equal(new Date(h.time).getTime(), Math.floor(h.issued / 1000) * 1000);
  assert.match(h.url, /^\/socket\.io\/\?/);
  assert.match(h.url, /foo=bar/);
  assert.match(h.url, mode.version === 4 ? /EIO=4/ : /EIO=3/);
  assert.equal(h.secure, false);
  assert.equal(socket.handshake, h, "the handshake is computed once");
});

matrix("socket.join / leave / rooms", async (mode, scope) => {
  const io = await scope.io();
  const { client, socket } = await join(scope, io, mode);
  assert.deepEqual([...socket.rooms], [socket.id]);
  socket.join("a");
  socket.join(["b", "c"]);
  assert.deepEqual([...socket.rooms].sort(), [socket.id, "a", "b", "c"].sort());
  socket.leave("b");
  socket.leave("never-joined");
  assert.deepEqual([...socket.rooms].sort(), [socket.id, "a", "c"].sort());
  const inB = expectNo(client, "to-b");
  const inA = waitFor(client, "to-a");
  io.to("b").emit("to-b", 1);
  io.to("a").emit("to-a", 1);
  await Promise.all([inA, inB]);
  const gone = waitFor(socket, "disconnect");
  socket.disconnect();
  await gone;
  assert.deepEqual([...socket.rooms], []);
});

matrix("broadcasts: socket.broadcast, socket.to(room), io.to(room), io.except(room)", async (mode, scope) => {
  const io = await scope.io();
  const A = await join(scope, io, mode);
  const B = await join(scope, io, mode);
  const C = await join(scope, io, mode);
  A.socket.join("r");
  B.socket.join("r");
  C.socket.join("other");

  // socket.broadcast.emit: everyone but the sender.
  let got = [B, C].map((x) => waitFor(x.client, "b1"));
  let not = [expectNo(A.client, "b1")];
  A.socket.broadcast.emit("b1", 1);
  assert.deepEqual(await Promise.all(got), [1, 1]);
  await Promise.all(not);

  // socket.to(room).emit: the room, without the sender.
  got = [waitFor(B.client, "b2")];
  not = [expectNo(A.client, "b2"), expectNo(C.client, "b2")];
  A.socket.to("r").emit("b2", "x", 2);
  assert.deepEqual(await Promise.all(got), ["x"]);
  await Promise.all(not);

  // io.to(room).emit: the whole room.
  got = [A, B].map((x) => once(x.client, "b3"));
  not = [expectNo(C.client, "b3")];
  io.to("r").emit("b3", "y", { z: 1 });
  assert.deepEqual(await Promise.all(got), [
    ["y", { z: 1 }],
    ["y", { z: 1 }],
  ]);
  await Promise.all(not);

  // io.except(room).emit: everyone outside the room.
  got = [waitFor(C.client, "b4")];
  not = [expectNo(A.client, "b4"), expectNo(B.client, "b4")];
  io.except("r").emit("b4", 4);
  assert.deepEqual(await Promise.all(got), [4]);
  await Promise.all(not);

  // Union of rooms, each socket once; except on top.
  const many = [A, B, C].map((x) => collect(x.client, "b5"));
  io.to("r").to("other").emit("b5", 5);
  io.to(["r", "other"]).except("other").emit("b5", 6);
  io.in("r").except(A.socket.id).emit("b5", 7);
  await delay(300);
  assert.deepEqual(many.map((l) => l.map((a) => a[0])), [[5, 6], [5, 6, 7], [5]]);

  // socket.except(room) from a socket excludes the sender too.
  const ex = [A, B, C].map((x) => collect(x.client, "b6"));
  A.socket.except("other").emit("b6", 8);
  await delay(300);
  assert.deepEqual(ex.map((l) => l.length), [0, 1, 0]);
});

test("fetchSockets, socketsJoin, socketsLeave, disconnectSockets (local)", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  const A = await join(scope, io, WS4);
  const B = await join(scope, io, MODES[2]);
  const C = await join(scope, io, MODES[1]);
  A.socket.join("r");
  B.socket.join("r");
  A.socket.data.user = "alice";

  const all = await io.fetchSockets();
  assert.deepEqual(all.map((s) => s.id).sort(), [A.socket.id, B.socket.id, C.socket.id].sort());
  const inR = await io.in("r").fetchSockets();
  assert.deepEqual(inR.map((s) => s.id).sort(), [A.socket.id, B.socket.id].sort());
  const ra = inR.find((s) => s.id === A.socket.id);
  assert.ok(ra.rooms.has("r"));
  assert.ok(ra.handshake && ra.handshake.headers, "a fetched socket carries its handshake");
  const notR = await io.except("r").fetchSockets();
  assert.deepEqual(notR.map((s) => s.id), [C.socket.id]);

  // A fetched socket acts on the real one.
  const hello = waitFor(C.client, "direct");
  notR[0].emit("direct", "hi");
  assert.equal(await hello, "hi");
  notR[0].join("via-remote");
  await until(() => C.socket.rooms.has("via-remote"), "the fetched socket joined");

  io.in("r").socketsJoin(["r2", "r3"]);
  await until(() => A.socket.rooms.has("r2") && B.socket.rooms.has("r3"), "socketsJoin applied");
  assert.ok(!C.socket.rooms.has("r2"));
  io.socketsLeave("r3");
  await until(() => !A.socket.rooms.has("r3") && !B.socket.rooms.has("r3"), "socketsLeave applied");
  assert.ok(A.socket.rooms.has("r2"));

  const goneA = waitFor(A.client, "disconnect");
  const goneB = waitFor(B.client, "disconnect");
  const keepC = expectNo(C.client, "disconnect", 500);
  const serverReason = waitFor(A.socket, "disconnect");
  io.in("r2").disconnectSockets();
  assert.equal(await goneA, "io server disconnect");
  assert.equal(await goneB, "io server disconnect");
  assert.equal(await serverReason, "server namespace disconnect");
  await keepC;
  assert.deepEqual((await io.fetchSockets()).map((s) => s.id), [C.socket.id]);

  const goneC = waitFor(C.client, "disconnect");
  io.disconnectSockets(true);
  assert.equal(await goneC, "io server disconnect");
}));

matrix("socket.disconnect(): the client sees \"io server disconnect\"", async (mode, scope) => {
  const io = await scope.io();
  for (const close of [false, true]) {
    const { client, socket } = await join(scope, io, mode);
    const gone = waitFor(client, "disconnect");
    const reason = waitFor(socket, "disconnect");
    socket.disconnect(close);
    assert.equal(await gone, "io server disconnect", `disconnect(${close})`);
    assert.equal(await reason, "server namespace disconnect");
    assert.equal(socket.connected, false);
    assert.equal(socket.disconnected, true);
  }
});

// Deterministic variant over long-polling only: with a GET parked or not, the DISCONNECT
// packet must reach the client before the Engine.IO close, as socket.io's engine does.
for (const mode of [POLL4, POLL2]) {
  test(`socket.disconnect(true) over ${mode.name}: the DISCONNECT packet arrives before the close (10 rounds)`, { timeout: 15000 }, scoped(async (scope) => {
    const io = await scope.io();
    const reasons = [];
    for (let i = 0; i < 10; i++) {
      const { client, socket } = await join(scope, io, mode);
      await delay(i * 7);
      const gone = waitFor(client, "disconnect");
      socket.disconnect(true);
      reasons.push(await gone);
    }
    assert.deepEqual(reasons, Array(10).fill("io server disconnect"));
  }));
}

matrix("client disconnect reasons: \"client namespace disconnect\" and \"transport close\"", async (mode, scope) => {
  const io = await scope.io();
  const A = await join(scope, io, mode);
  const reasonA = waitFor(A.socket, "disconnect");
  A.client.disconnect();
  assert.equal(await reasonA, "client namespace disconnect");

  const B = await join(scope, io, mode);
  B.socket.join(["room-a", "room-b"]);
  const reasonB = waitFor(B.socket, "disconnect");
  // socket.io still lists the rooms in `disconnecting`, and has left them by `disconnect`.
  const roomsSeen = new Promise((resolve) => {
    B.socket.on("disconnecting", (reason) => resolve({ reason, rooms: [...B.socket.rooms].sort() }));
  });
  const roomsAfter = new Promise((resolve) => B.socket.on("disconnect", () => resolve([...B.socket.rooms])));
  // The whole Engine.IO connection goes away, with no Socket.IO DISCONNECT first.
  B.client.io.engine.close();
  assert.deepEqual(await roomsSeen, { reason: "transport close", rooms: [B.socket.id, "room-a", "room-b"].sort() });
  assert.equal(await reasonB, "transport close");
  assert.deepEqual(await roomsAfter, []);
});

/** One HTTP request to the test server; resolves the body. */
function httpText(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString()));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: no answer in 5 s`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// The upgrade step by step, as a client performs it: the server disconnects the socket after
// the probe and before the client's `5`. socket.io flushes the DISCONNECT over the new
// websocket once the upgrade completes; the client must see it, whatever the transport.
for (const eio of [4, 3]) {
  test(`disconnect(true) in the middle of the upgrade (EIO${eio}): the DISCONNECT still reaches the client`, { timeout: 10000 }, scoped(async (scope) => {
    const io = await scope.io();
    const conn = once(io.sockets, "connection");
    const base = `/socket.io/?EIO=${eio}&transport=polling`;
    const hs = await httpText(io.port, "GET", base);
    const sid = JSON.parse(hs.slice(hs.indexOf("{"), hs.indexOf("}") + 1)).sid;
    const poll = `${base}&sid=${encodeURIComponent(sid)}`;
    const seen = []; // Engine.IO packets the client received after the handshake, in order
    if (eio === 4) {
      assert.equal(await httpText(io.port, "POST", poll, "40"), "ok");
      seen.push(await httpText(io.port, "GET", poll));
    } else {
      // v3 connects `/` implicitly: "40" comes with the handshake or in the next poll.
      const rest = hs.slice(hs.indexOf("}") + 1);
      seen.push(rest.includes("40") ? rest : await httpText(io.port, "GET", poll));
    }
    const [socket] = await conn;
    assert.ok(seen.join().includes("40"), `connected: ${JSON.stringify(seen)}`);

    const ws = new WebSocket(`ws://127.0.0.1:${io.port}/socket.io/?EIO=${eio}&transport=websocket&sid=${encodeURIComponent(sid)}`);
    scope.defer(() => ws.terminate());
    ws.on("error", () => {});
    const wsClosed = once(ws, "close", 5000);
    ws.on("message", (d) => seen.push(`ws:${d}`));
    await once(ws, "open");
    ws.send("2probe");
    await until(() => seen.includes("ws:3probe"), "the probe answer");
    // The client's parked GET ends with a noop once the probe succeeded.
    const parked = httpText(io.port, "GET", poll).then((b) => seen.push(`poll:${b}`), () => {});
    await delay(50);
    const gone = waitFor(socket, "disconnect");
    socket.disconnect(true);
    assert.equal(await gone, "server namespace disconnect");
    await delay(50);
    if (ws.readyState === WebSocket.OPEN) ws.send("5");
    await parked;
    await wsClosed;
    assert.ok(
      seen.some((p) => /^(ws:41$|poll:.*41)/.test(p)),
      `the DISCONNECT packet (41) never reached the client; it saw ${JSON.stringify(seen)}`,
    );
  }));
}

// Over long-polling the client ends the session with an Engine.IO `close` packet; socket.io
// reports that as "transport close" too.
for (const mode of [POLL4, POLL2]) {
  test(`client closing the Engine.IO session over ${mode.name}: "transport close"`, { timeout: 10000 }, scoped(async (scope) => {
    const io = await scope.io();
    const { client, socket } = await join(scope, io, mode);
    const reason = waitFor(socket, "disconnect");
    client.io.engine.close();
    assert.equal(await reason, "transport close");
  }));
}

matrix("volatile and compress are accepted and deliver", async (mode, scope) => {
  const io = await scope.io();
  const { client, socket } = await join(scope, io, mode);
  await upgraded(client);
  await delay(100); // the server switches transports when the client's upgrade packet lands
  // One at a time on an idle connection: even socket.io, which may drop a volatile packet
  // while the transport is busy, delivers each of these.
  const sends = [
    () => socket.volatile.emit("v", 1),
    () => socket.compress(false).emit("v", 2),
    () => socket.volatile.compress(true).emit("v", 3),
    () => io.volatile.emit("v", 4),
    () => io.compress(false).emit("v", 5),
    () => io.local.emit("v", 6),
    () => io.to(socket.id).volatile.compress(true).emit("v", 7),
  ];
  for (let i = 0; i < sends.length; i++) {
    const got = waitFor(client, "v");
    assert.equal(sends[i](), true);
    assert.equal(await got, i + 1);
  }
});

matrix("variadic emits with several Buffers both ways", async (mode, scope) => {
  const io = await scope.io();
  const { client, socket } = await join(scope, io, mode);
  const bufs = [Buffer.from("one"), Buffer.alloc(3000, 2), Buffer.from([]), Buffer.from([9, 8, 7])];

  const up = once(socket, "many");
  client.emit("many", bufs[0], 1, bufs[1], { b: bufs[2], c: [bufs[3], "s"] }, null);
  const [u0, one, u1, obj, nil] = await up;
  assert.ok(Buffer.isBuffer(u0) && u0.equals(bufs[0]));
  assert.equal(one, 1);
  assert.ok(Buffer.isBuffer(u1) && u1.equals(bufs[1]));
  assert.ok(Buffer.isBuffer(obj.b) && obj.b.length === 0);
  assert.ok(obj.c[0].equals(bufs[3]));
  assert.equal(obj.c[1], "s");
  assert.equal(nil, null);

  const down = once(client, "many-down");
  socket.emit("many-down", ...bufs, "end", new Uint8Array([5, 6]));
  const args = await down;
  assert.equal(args.length, 6);
  for (let i = 0; i < 4; i++) assert.ok(toBuffer(args[i]).equals(bufs[i]), `buffer ${i}`);
  assert.equal(args[4], "end");
  assert.deepEqual([...toBuffer(args[5])], [5, 6]);

  const bc = once(client, "many-bc");
  io.emit("many-bc", bufs[3], { x: bufs[0] });
  const [b0, bx] = await bc;
  assert.ok(toBuffer(b0).equals(bufs[3]));
  assert.ok(toBuffer(bx.x).equals(bufs[0]));
});

// A burst emitted in one go must arrive whole and in order, without a later message to push
// it out, and without dropping the client: it reads as fast as it can (socket.io buffers).
async function burst(scope, io, mode, count, payload) {
  const { client, socket } = await join(scope, io, mode);
  let dropped = null;
  client.on("disconnect", (r) => (dropped = r));
  const got = [];
  client.on("burst", (i) => got.push(i));
  for (let i = 0; i < count; i++) socket.emit("burst", i, payload);
  await until(() => got.length === count || dropped, `${count} messages`, 2500).catch((err) => {
    throw new Error(`${err.message}: got ${got.length}, client ${dropped ? `dropped (${dropped})` : "connected"}`);
  });
  assert.equal(dropped, null, `the client was dropped after ${got.length}/${count} messages`);
  assert.deepEqual(got, Array.from({ length: count }, (_, i) => i));
}

matrix("a burst of 2000 small emits arrives whole", async (mode, scope) => {
  const io = await scope.io();
  await burst(scope, io, mode, 2000, "s");
}, { modes: [...MODES, POLL4, POLL2], timeout: 20000 });

matrix("a burst of 600 × 16 KiB arrives whole (more than the socket buffers take at once)", async (mode, scope) => {
  const io = await scope.io();
  await burst(scope, io, mode, 600, "y".repeat(16 * 1024));
}, { modes: [...MODES, POLL4, POLL2], timeout: 20000 });

matrix("emitWithAck, timeout().emit, and a client that never acks", async (mode, scope) => {
  const io = await scope.io();
  const { client, socket } = await join(scope, io, mode);
  client.on("double", (n, ack) => ack(n * 2));
  client.on("silent", () => {});

  assert.equal(await socket.emitWithAck("double", 21), 42);
  assert.equal(await socket.timeout(2000).emitWithAck("double", 2), 4);

  const withTimeout = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the timeout callback never ran")), 3000);
    socket.timeout(2000).emit("double", 5, (err, r) => {
      clearTimeout(t);
      resolve([err, r]);
    });
  });
  assert.deepEqual(withTimeout, [null, 10]);

  const t0 = Date.now();
  const timedOut = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the timeout callback never ran")), 3000);
    socket.timeout(200).emit("silent", 1, (err) => {
      clearTimeout(t);
      resolve(err);
    });
  });
  assert.ok(timedOut instanceof Error, "a never-acked emit fails after its timeout");
  assert.ok(Date.now() - t0 >= 190);
  await assert.rejects(socket.timeout(200).emitWithAck("silent", 2), Error);

  // The timeout flag applies to one emit only.
  assert.equal(await socket.emitWithAck("double", 1), 2);
  assert.throws(() => socket.emit("disconnect"), /reserved/);
});

test("client → server acks with data and binary", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  for (const mode of MODES) {
    const { client, socket } = await join(scope, io, mode);
    socket.on("sum", (...args) => {
      const ack = args.pop();
      ack(args.reduce((a, b) => a + b, 0), Buffer.from("ok"));
    });
    const [sum, bin] = await ask(client, "sum", 1, 2, 3);
    assert.equal(sum, 6, mode.name);
    assert.equal(toBuffer(bin).toString(), "ok", mode.name);
  }
}));

test("onAny sees every event with its arguments", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  const { client, socket } = await join(scope, io, WS4);
  const seen = [];
  socket.onAny((...args) => seen.push(args));
  const last = once(socket, "b");
  client.emit("a", 1);
  client.emit("b", { x: 2 });
  await last;
  assert.deepEqual(seen, [["a", 1], ["b", { x: 2 }]]);
}));

// Only a listening server keeps the process alive, like net.Server: a Server that was never
// started, or whose listen failed, must let a script end.
test("a server that never listened does not keep the process alive", { timeout: 15000 }, scoped(async (scope) => {
  const io = await scope.io();
  const root = path.join(__dirname, "..");
  const script = `
    const { Server, Realtime } = require(${JSON.stringify(root)});
    new Server();
    const busy = Realtime.createServer({ port: ${io.port}, shakehand: false, bindRetryMs: 1 }, true);
    busy.start().then(() => { console.log("started on a busy port?"); process.exit(2); }, () => console.log("refused"));
  `;
  const out = await new Promise((resolve, reject) => {
    const child = execFile(process.execPath, ["-e", script], { timeout: 8000 }, (err, stdout) => {
      if (err && err.killed) reject(new Error(`the script did not exit on its own (output ${JSON.stringify(stdout)})`));
      else if (err) reject(err);
      else resolve(stdout);
    });
    scope.defer(() => child.kill());
  });
  assert.equal(out.trim(), "refused");
}));
