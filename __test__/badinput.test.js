"use strict";
// Hostile and broken peers: TCP garbage, bad Engine.IO requests, oversized payloads, malformed
// Socket.IO packets, and a websocket that never reads. The server must close the offender and
// keep serving everyone else.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const net = require("node:net");
const http = require("node:http");
const crypto = require("node:crypto");
const { MODES, once, rawExchange, request, scoped, until, waitFor, within } = require("./helpers");

const EioSocketV4 = require("engine.io-client").Socket;
// The Engine.IO v3 client that socket.io-client 2.x itself uses.
const eioV3 = require(require.resolve("engine.io-client", { paths: [require.resolve("socket.io-client-v2")] }));

const WS4 = MODES[0];
const WS2 = MODES[2];

/** A normal client round-trips an ack: the server still serves. */
async function stillServes(scope, io, mode = WS4) {
  const conn = once(io.sockets, "connection");
  const client = await scope.connected(mode, io.port);
  const [socket] = await conn;
  socket.on("echo", (v, ack) => ack(v));
  const answer = await within(new Promise((resolve) => client.emit("echo", "alive", resolve)), 3000, "echo ack");
  assert.equal(answer, "alive");
  client.close();
}

test("raw garbage on the TCP port: answered or closed, and the server keeps serving", { timeout: 20000 }, scoped(async (scope) => {
  const io = await scope.io();
  const random = crypto.randomBytes(4096);
  random[0] = 0; // not an HTTP token, whatever the rest says
  for (const garbage of [
    "GARBAGE\r\n\r\n",
    random,
    "GET /socket.io/?EIO=4&transport=polling HTTP/9.9\r\n\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello start
    "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost x\r\n\r\n",
  ]) {
    const answer = await rawExchange(io.port, garbage);
    assert.ok(answer === "" || /^HTTP\/1\.[01] 4\d\d /.test(answer), `garbage answered with ${JSON.stringify(answer.slice(0, 40))}`);
  }
  // A huge header: refused, or answered, but never a hang.
  const big = await rawExchange(io.port, `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${"a".repeat(1 << 20)}\r\n\r\n`);
  assert.ok(big === "" || /^HTTP\/1\.[01] \d\d\d /.test(big), `huge header answered with ${JSON.stringify(big.slice(0, 40))}`);
  // Connections that send a little and hang up, or never send at all.
  const idle = [];
  for (let i = 0; i < 20; i++) {
    const s = net.connect(io.port, "127.0.0.1");
    s.on("error", () => {});
    idle.push(s);
    if (i % 2) s.end("GET /socket.io/?EIO=4&tra");
  }
  scope.defer(() => idle.forEach((s) => s.destroy()));
  await stillServes(scope, io);
  await stillServes(scope, io, MODES[3]);
}));

test("Engine.IO HTTP errors: 400 with {code, message}", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  const cases = [
    ["GET", "/socket.io/?EIO=9&transport=polling", 5],
    ["GET", "/socket.io/?transport=polling", 5],
    ["GET", "/socket.io/?EIO=4&transport=carrier-pigeon", 0],
    ["GET", "/socket.io/?EIO=3&transport=flash", 0],
    ["GET", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA", 1],
    ["GET", "/socket.io/?EIO=4&transport=polling&sid=nope", 1],
    ["POST", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA", 1],
    ["POST", "/socket.io/?EIO=4&transport=polling", 2],
    ["GET", "/socket.io/?EIO=4&transport=websocket", 3],
  ];
  for (const [method, path, code] of cases) {
    const res = await request(io.port, method, path, method === "POST" ? "4hello" : undefined);
    assert.equal(res.status, 400, `${method} ${path} → ${res.status} ${res.body}`);
    assert.match(res.headers["content-type"], /application\/json/, `${method} ${path}`);
    const body = JSON.parse(res.body);
    assert.equal(body.code, code, `${method} ${path} → ${res.body}`);
    assert.equal(typeof body.message, "string");
  }
  const unsupported = JSON.parse((await request(io.port, "GET", "/socket.io/?EIO=9&transport=polling")).body);
  assert.deepEqual(unsupported, { code: 5, message: "Unsupported protocol version" });
  const other = await request(io.port, "GET", "/not-socket-io");
  assert.ok(other.status >= 400 && other.status < 500, `other path → ${other.status}`);
  await stillServes(scope, io);
}));

test("oversized polling POST: 413 and the session is closed", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io({ maxHttpBufferSize: 1000 });
  const hs = await request(io.port, "GET", "/socket.io/?EIO=4&transport=polling");
  assert.equal(hs.status, 200);
  assert.equal(hs.body[0], "0");
  const open = JSON.parse(hs.body.slice(1));
  assert.equal(open.maxPayload, 1000);
  const q = `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(open.sid)}`;

  const conn = once(io.sockets, "connection");
  assert.equal((await request(io.port, "POST", q, "40", { "content-type": "text/plain;charset=UTF-8" })).body, "ok");
  const [socket] = await conn;
  const first = await request(io.port, "GET", q);
  assert.match(first.body, /^40\{"sid":/);

  // Just under the limit is fine.
  const fits = `42["x","${"a".repeat(900)}"]`;
  const got = once(socket, "x");
  assert.equal((await request(io.port, "POST", q, fits, { "content-type": "text/plain;charset=UTF-8" })).status, 200);
  assert.equal((await got)[0].length, 900);

  const gone = waitFor(socket, "disconnect");
  const big = await request(io.port, "POST", q, `42["x","${"a".repeat(5000)}"]`, { "content-type": "text/plain;charset=UTF-8" });
  assert.equal(big.status, 413);
  assert.equal(await gone, "transport error");
  // The session is over: a late poll gets the close packet or "Session ID unknown".
  for (let i = 0; i < 3; i++) {
    const res = await request(io.port, "GET", q);
    if (res.status === 200) assert.equal(res.body, "1", "only the close packet may follow");
    else assert.deepEqual([res.status, JSON.parse(res.body).code], [400, 1]);
  }
  const post = await request(io.port, "POST", q, '42["x",1]', { "content-type": "text/plain;charset=UTF-8" });
  assert.notEqual(post.status, 200, "a closed session takes no more packets");
  await stillServes(scope, io);
}));

test("oversized websocket message: that client is closed", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io({ maxHttpBufferSize: 1000 });
  const conn = once(io.sockets, "connection");
  const client = await scope.connected(WS4, io.port);
  const [socket] = await conn;
  const got = once(socket, "small");
  client.emit("small", "a".repeat(500));
  await got;
  const gone = waitFor(client, "disconnect");
  const serverGone = waitFor(socket, "disconnect");
  client.emit("big", "a".repeat(5000));
  assert.equal(await gone, "transport close");
  await serverGone;
  await stillServes(scope, io);
}));

/** An Engine.IO-level client (no Socket.IO parser) connected to namespace `/`; resolves it and its server socket. */
async function rawSioClient(scope, io, eio) {
  let eng;
  if (eio === 4) {
    eng = new EioSocketV4(`ws://127.0.0.1:${io.port}`, { path: "/socket.io/", transports: ["websocket"] });
  } else {
    eng = eioV3(`ws://127.0.0.1:${io.port}`, { path: "/socket.io/", transports: ["websocket"] });
  }
  scope.defer(() => eng.close());
  const connectAnswer = waitFor(eng, "message");
  await waitFor(eng, "open");
  if (eio === 4) eng.send("0");
  const answer = String(await connectAnswer);
  assert.match(answer, /^0/, "the CONNECT answer");
  // v5 names the socket in the CONNECT answer; v4 uses the Engine.IO id.
  const id = eio === 4 ? JSON.parse(answer.slice(1)).sid : eng.id;
  const socket = await until(() => io.sockets.sockets.get(id), `the server socket ${id}`);
  return { eng, socket };
}

const MUST_CLOSE = [
  ["event name not a string", "2[1,2]"],
  ["event name null", "2[null]"],
  ["bad JSON", "2{bad"],
  ["unknown packet type", "9"],
  ["text where an attachment is due", '51-["a",{"_placeholder":true,"num":0}]', '2["x"]'],
  ["text where an attachment is due (no placeholder)", '51-["a"]', '2["x"]'],
  ["data not an array", '2"str"'],
  ["empty array", "2[]"],
  ["not JSON: bare word", '2["ev",nope]'],
  ["not JSON: undefined", '2["ev",undefined]'],
  ["not JSON: NaN", '2["ev",NaN]'],
  ["trailing garbage", '2["ev",1]]]'],
  ["bad ack id", '2abc["x"]'],
  ["ACK without id", "3"],
  ["CONNECT_ERROR from a client", '4{"message":"x"}'],
  ["empty message", ""],
  ["attachment index out of range", '51-["a",{"_placeholder":true,"num":5}]', Buffer.from([1])],
  ["binary with no packet waiting", Buffer.from([1, 2, 3])],
];

for (const eio of [4, 3]) {
  test(`malformed Socket.IO packets (EIO${eio}): that client is closed, others are served`, { timeout: 30000 }, scoped(async (scope) => {
    const io = await scope.io();
    const bystander = await scope.connected(eio === 4 ? WS4 : WS2, io.port);
    const heard = [];
    io.on("connection", (s) => s.onAny((ev) => heard.push(ev)));
    for (const [what, ...packets] of MUST_CLOSE) {
      const { eng, socket } = await rawSioClient(scope, io, eio);
      const closed = waitFor(eng, "close", 3000).catch(() => null);
      const serverSide = waitFor(socket, "disconnect", 3000).catch(() => null);
      for (const p of packets) eng.send(p);
      assert.notEqual(await closed, null, `${what}: the client was not closed`);
      assert.notEqual(await serverSide, null, `${what}: no disconnect on the server`);
      assert.equal(socket.connected, false, what);
    }
    assert.deepEqual(heard, [], "no malformed event reached a handler");
    // The bystander never noticed.
    assert.equal(bystander.connected, true);
    const echo = waitFor(bystander, "still");
    io.emit("still", "here");
    assert.equal(await echo, "here");
    await stillServes(scope, io, eio === 4 ? WS4 : WS2);
  }));
}

test("odd but valid payloads are delivered and do not hurt the server", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  const { eng, socket } = await rawSioClient(scope, io, 4);
  const deep = "[".repeat(50000) + "]".repeat(50000);
  const events = [];
  socket.onAny((ev, ...args) => events.push([ev, args.length]));
  for (const p of [
    `2["deep",${deep}]`,
    '2["unicode","\\u0000\\ud83d\\ude00é"]',
    '2["",1]',
    '2["__proto__",{"__proto__":{"polluted":true}}]',
    '2["m",["hello",{"x":1}]]',
  ]) {
    eng.send(p);
  }
  await until(() => events.length === 5 || !socket.connected, "the packets were handled");
  assert.equal({}.polluted, undefined, "no prototype pollution");
  await stillServes(scope, io);
}));

/** A websocket on a raw TCP connection: completes the handshake, connects `/`, then stops reading. */
async function stalledWebsocket(port) {
  const sock = net.connect(port, "127.0.0.1");
  sock.on("error", () => {});
  await once(sock, "connect");
  const key = crypto.randomBytes(16).toString("base64");
  sock.write(
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  const frames = [];
  let headerDone = false;
  const onData = (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    if (!headerDone) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      assert.match(buf.subarray(0, end).toString(), /^HTTP\/1\.1 101/);
      buf = buf.subarray(end + 4);
      headerDone = true;
    }
    // Small unmasked server frames only (what the handshake produces).
    while (buf.length >= 2 && (buf[1] & 0x7f) < 126 && buf.length >= 2 + (buf[1] & 0x7f)) {
      const len = buf[1] & 0x7f;
      frames.push(buf.subarray(2, 2 + len).toString());
      buf = buf.subarray(2 + len);
    }
  };
  sock.on("data", onData);
  await until(() => frames.length >= 1, "the Engine.IO open packet");
  assert.match(frames[0], /^0\{/);
  // A masked text frame "40": Socket.IO CONNECT to `/`.
  const payload = Buffer.from("40");
  const mask = crypto.randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
  await until(() => frames.some((f) => f.startsWith("40{")), "the CONNECT answer");
  sock.off("data", onData);
  sock.pause();
  return sock;
}

function rssMB() {
  return process.memoryUsage().rss / 1048576;
}

test("a websocket that never reads: the server stays responsive and memory stays bounded", { timeout: 45000 }, scoped(async (scope, t) => {
  const io = await scope.io();
  const conn = once(io.sockets, "connection");
  const stalled = await stalledWebsocket(io.port);
  scope.defer(() => stalled.destroy());
  const [stalledSocket] = await conn;
  const stalledGone = waitFor(stalledSocket, "disconnect", 40000).catch(() => null);

  const reader = await scope.connected(WS4, io.port);
  let received = 0;
  let readerGone = null;
  reader.on("flood", () => received++);
  reader.on("disconnect", (reason) => (readerGone = reason));

  // 256 MB: more than the 200 MB bound, so a server that buffered everything for the stalled
  // client would fail; one that drops it stays flat.
  const chunk = "x".repeat(16 * 1024);
  const total = 256 * 1024 * 1024;
  const count = Math.ceil(total / chunk.length);
  const base = rssMB();
  let peak = base;
  const started = Date.now();
  for (let sent = 0; sent < count; ) {
    for (let i = 0; i < 100 && sent < count; i++, sent++) io.emit("flood", chunk);
    // Let the healthy reader keep up, so what piles up is the stalled client's backlog.
    await until(() => received >= sent - 200 || readerGone, `the reader got ${sent - 200} messages`, 10000);
    assert.equal(readerGone, null, `the healthy reader was disconnected after ${received}/${sent} messages`);
    peak = Math.max(peak, rssMB());
  }
  await until(() => received === count || readerGone, "the reader got every message", 10000).catch((err) => {
    throw new Error(`${err.message}: ${received}/${count}, reader ${readerGone || "connected"}`);
  });
  assert.equal(readerGone, null, `the healthy reader was disconnected after ${received}/${count} messages`);
  const elapsed = Date.now() - started;

  // Still responsive: a fresh client connects and round-trips an ack quickly.
  const t0 = Date.now();
  await stillServes(scope, io);
  const rtt = Date.now() - t0;
  const after = rssMB();
  t.diagnostic(`flood of ${count} × 16 KiB in ${elapsed} ms; RSS base ${base.toFixed(0)} MB, peak ${peak.toFixed(0)} MB, after ${after.toFixed(0)} MB; new client round trip ${rtt} ms`);
  assert.ok(peak - base < 200, `RSS grew by ${(peak - base).toFixed(0)} MB while broadcasting 256 MB past a stalled reader`);
  assert.ok(rtt < 2000, `a new client needed ${rtt} ms`);
  // The stalled client is dropped rather than buffered forever.
  const reason = await stalledGone;
  assert.notEqual(reason, null, "the stalled client was never dropped");
  t.diagnostic(`stalled client dropped: ${reason}`);
}));
