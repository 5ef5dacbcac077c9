"use strict";
// The event loop designs (README "Event loop"): `node` (sockets on Node's own thread, replies of
// one batch corked into one write) is the default on Linux; `thread` (a network thread beside
// Node's) stays an option. What the node loop risks: order of a handler's emits, slow readers
// under a burst, handlers that throw, fan-out while handlers run, a close in the middle of a
// corked batch, every client generation and transport.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { execFile } = require("node:child_process");
const WebSocket = require("ws");
const { MODES, collect, delay, matrix, once, runNested, scoped, until } = require("./helpers");
const { eventLoop } = require("..");

const ROOT = path.join(__dirname, "..");
const POLLING = [
  { name: "v4-polling", version: 4, transports: ["polling"] },
  { name: "v2-polling", version: 2, transports: ["polling"] },
];
const ALL = [...MODES, ...POLLING];

/** Connects a client of `mode` and resolves `{client, socket}` (the server side). */
async function join(scope, io, mode, opts = {}) {
  const conn = once(io.of("/"), "connection");
  const client = await scope.connected(mode, io.port, opts);
  const [socket] = await conn;
  return { client, socket };
}

function run(file, args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 240000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test("the node loop is the default on Linux, and WEROLL_NATIVE_LOOP=thread selects the threaded design", async () => {
  const expected = process.platform === "linux" && process.env.WEROLL_NATIVE_LOOP !== "thread" ? "node" : "thread";
  assert.equal(eventLoop, expected);
  const probe = `process.stdout.write(require(${JSON.stringify(ROOT)}).eventLoop)`;
  const thread = await run("-e", [probe], { WEROLL_NATIVE_LOOP: "thread" });
  assert.equal(thread.stdout, "thread", thread.stderr);
  const node = await run("-e", [probe], { WEROLL_NATIVE_LOOP: "node" });
  assert.equal(node.stdout, process.platform === "linux" ? "node" : "thread", node.stderr);
});

matrix(
  "a handler's emits, acks and broadcasts reach the client in the order the handler made them",
  async (mode, scope) => {
    const io = await scope.io();
    io.on("connection", (s) => {
      s.on("go", (n, ack) => {
        for (let i = 0; i < n; i++) {
          if (i % 10 === 5) io.emit("seq", i);
          else s.emit("seq", i);
        }
        ack("done");
      });
    });
    const { client } = await join(scope, io, mode);
    const got = collect(client, "seq");
    const answer = await new Promise((resolve) => client.emit("go", 300, resolve));
    assert.equal(answer, "done");
    await until(() => got.length === 300, "all 300 emits");
    assert.deepEqual(
      got.map((a) => a[0]),
      Array.from({ length: 300 }, (_, i) => i),
    );
  },
  { modes: ALL },
);

matrix(
  "emits queued just before a disconnect in the same handler all arrive, then the disconnect",
  async (mode, scope) => {
    const io = await scope.io();
    io.on("connection", (s) => {
      s.on("bye", () => {
        s.emit("last", 1);
        s.emit("last", 2);
        s.emit("last", 3);
        s.disconnect(true);
      });
    });
    const { client, socket } = await join(scope, io, mode);
    const got = collect(client, "last");
    const serverGone = once(socket, "disconnect");
    const clientGone = once(client, "disconnect");
    client.emit("bye");
    const [[reason]] = await Promise.all([serverGone, clientGone]);
    assert.equal(reason, "server namespace disconnect");
    assert.deepEqual(
      got.map((a) => a[0]),
      [1, 2, 3],
    );
  },
  { modes: ALL },
);

matrix(
  "a broadcast to everyone while every client is calling handlers: nothing lost, every answer comes",
  async (mode, scope) => {
    const io = await scope.io();
    io.on("connection", (s) => {
      s.on("ping?", (i, ack) => ack(i));
      s.on("shout", (i) => io.emit("heard", i));
    });
    const clients = [];
    for (let i = 0; i < 8; i++) clients.push((await join(scope, io, mode)).client);
    const heard = clients.map((c) => collect(c, "heard"));
    const answers = clients.map(() => []);
    const ROUNDS = 40;
    await Promise.all(
      clients.map(async (c, k) => {
        for (let i = 0; i < ROUNDS; i++) {
          if (k === 0) c.emit("shout", i);
          answers[k].push(await new Promise((resolve) => c.emit("ping?", i, resolve)));
        }
      }),
    );
    for (const a of answers) assert.deepEqual(a, Array.from({ length: ROUNDS }, (_, i) => i));
    await until(() => heard.every((h) => h.length === ROUNDS), "every broadcast at every client");
    for (const h of heard) assert.deepEqual(h.map((x) => x[0]), Array.from({ length: ROUNDS }, (_, i) => i));
  },
  { modes: ALL, timeout: 30000 },
);

test(
  "a client that stops reading during a burst is dropped with a bounded queue; the others get every message",
  { timeout: 30000 },
  scoped(async (scope) => {
    const io = await scope.io({ maxQueuedBytes: 1 << 20 });
    const reasons = [];
    io.on("connection", (s) => s.on("disconnect", (r) => reasons.push(r)));
    const { client: good } = await join(scope, io, MODES[0]);
    // A raw Engine.IO v4 websocket client that connects to "/" and then stops reading.
    const conn = once(io.of("/"), "connection");
    const ws = new WebSocket(`ws://127.0.0.1:${io.port}/socket.io/?EIO=4&transport=websocket`);
    scope.defer(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once("error", reject);
      ws.on("message", (m) => {
        const t = m.toString();
        if (t.startsWith("0")) ws.send("40");
        if (t.startsWith("40")) resolve();
      });
    });
    await conn;
    ws._socket.pause();
    const got = collect(good, "chunk");
    const big = "x".repeat(64 * 1024);
    // Ten at a time: what one JavaScript turn queues leaves once it returns, and must fit the
    // queue bound of a client that reads.
    for (let i = 0; i < 200; i++) {
      io.emit("chunk", i, big);
      if (i % 10 === 9) await delay(2);
    }
    await until(() => got.length === 200, "all 200 chunks at the reading client", 15000);
    assert.deepEqual(got.map((a) => a[0]), Array.from({ length: 200 }, (_, i) => i));
    await until(() => reasons.length === 1, "the slow client dropped", 10000);
    assert.equal(reasons[0], "transport error");
    assert.equal(io.stats().clients, 1);
  }),
);

test(
  "a handler that throws reaches uncaughtException; the server keeps serving, on both loops",
  { timeout: 60000 },
  async () => {
    const script = `
      const { Server } = require(${JSON.stringify(ROOT)});
      const { io: connect } = require("socket.io-client");
      let uncaught = 0;
      process.on("uncaughtException", (e) => { if (e.message === "boom") uncaught++; else throw e; });
      (async () => {
        const io = new Server();
        io.on("connection", (s) => {
          s.on("boom", () => { throw new Error("boom"); });
          s.on("echo", (v, ack) => ack(v));
        });
        const port = await io.listen(0, "127.0.0.1");
        const c = connect("http://127.0.0.1:" + port, { transports: ["websocket"] });
        await new Promise((r) => c.once("connect", r));
        const answers = [];
        for (let i = 0; i < 3; i++) {
          c.emit("boom");
          answers.push(await new Promise((r) => c.emit("echo", i, r)));
        }
        c.close();
        await io.close();
        process.stdout.write(JSON.stringify({ uncaught, answers, loop: require(${JSON.stringify(ROOT)}).eventLoop }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    for (const loop of ["node", "thread"]) {
      const r = await run("-e", [script], { WEROLL_NATIVE_LOOP: loop });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out, { uncaught: 3, answers: [0, 1, 2], loop: process.platform === "linux" ? loop : "thread" });
    }
  },
);

test(
  "JavaScript timers keep running while a large broadcast goes out",
  { timeout: 60000 },
  scoped(async (scope) => {
    const io = await scope.io();
    const clients = [];
    for (let i = 0; i < 50; i++) clients.push((await join(scope, io, MODES[0])).client);
    const got = clients.map((c) => collect(c, "fan"));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    scope.defer(() => clearInterval(timer));
    const payload = "y".repeat(2048);
    const before = ticks;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50; i++) io.emit("fan", round * 50 + i, payload);
      await delay(5);
    }
    await until(() => got.every((g) => g.length === 1000), "every broadcast at every client", 20000);
    assert.ok(ticks > before, "the interval ran during the fan-out");
  }),
);

test("the existing socket.io and Realtime suites pass on the threaded design too", { timeout: 300000 }, () =>
  runNested(["socketio.test.js", "realtime.test.js"], { WEROLL_NATIVE_LOOP: "thread" }, 50),
);
