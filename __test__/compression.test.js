"use strict";
// httpCompression: polling responses of at least `threshold` bytes (1024 by default, as
// socket.io) go gzip- or deflate-encoded to clients that accept it; smaller ones, clients that do
// not ask, and `httpCompression: false` get them as they are.
// perMessageDeflate (off by default, as socket.io): websocket messages of at least `threshold`
// bytes go compressed to clients that offer permessage-deflate, and theirs come back compressed;
// measured on the wire through a counting TCP proxy.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const zlib = require("node:zlib");
const h = require("./helpers.js");

const BIG = "x".repeat(5000);

/** A polling session on `port` whose first GET after CONNECT holds a 5 KB event. */
async function pollBig(port, headers) {
  const open = await h.request(port, "GET", "/socket.io/?EIO=4&transport=polling", undefined, headers);
  assert.equal(open.status, 200);
  const sid = JSON.parse(decode(open).slice(1)).sid;
  const post = await h.request(port, "POST", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, "40", { "content-type": "text/plain;charset=UTF-8" });
  assert.equal(post.status, 200);
  const answer = await h.request(port, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, undefined, headers);
  return { open, answer };
}

/** A response's body as the client reads it. */
function decode(res) {
  switch (res.headers["content-encoding"]) {
    case "gzip":
      return zlib.gunzipSync(res.raw).toString();
    case "deflate":
      return zlib.inflateSync(res.raw).toString();
    default:
      return res.body;
  }
}

const bigOnConnect = (io) => io.on("connection", (socket) => socket.emit("big", BIG));

test("a large polling response goes gzip-encoded to a client that accepts it, a small one as it is", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, bigOnConnect);
  const { open, answer } = await pollBig(port, { "accept-encoding": "gzip, deflate, br" });
  assert.equal(open.headers["content-encoding"], undefined, "the handshake is below the threshold");
  assert.equal(answer.headers["content-encoding"], "gzip");
  assert.ok(answer.raw.length < 500, `compressed to ${answer.raw.length} bytes`);
  assert.ok(decode(answer).includes(`42["big","${BIG}"]`), decode(answer).slice(0, 80));
}));

test("deflate when only it is accepted; nothing for a client that does not ask, or with httpCompression: false", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, bigOnConnect);
  const deflated = await pollBig(port, { "accept-encoding": "deflate" });
  assert.equal(deflated.answer.headers["content-encoding"], "deflate");
  assert.ok(decode(deflated.answer).includes(BIG));
  const plain = await pollBig(port, {});
  assert.equal(plain.answer.headers["content-encoding"], undefined);
  assert.ok(plain.answer.body.includes(BIG));
  const off = await scope.io({ httpCompression: false }, bigOnConnect);
  const uncompressed = await pollBig(off.port, { "accept-encoding": "gzip" });
  assert.equal(uncompressed.answer.headers["content-encoding"], undefined);
  assert.ok(uncompressed.answer.body.includes(BIG));
}));

test("httpCompression: {threshold} sets the size from which responses are encoded; bad values are refused", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({ httpCompression: { threshold: 20 } }, bigOnConnect);
  const { open } = await pollBig(port, { "accept-encoding": "gzip" });
  assert.equal(open.headers["content-encoding"], "gzip", "the handshake is above 20 bytes");
  assert.equal(JSON.parse(decode(open).slice(1)).upgrades.length, 1);
  const { Server } = require("..");
  for (const bad of [{ threshold: -1 }, "yes", 3]) {
    const s = new Server({ httpCompression: bad });
    await assert.rejects(s.listen(0), /httpCompression/);
    await s.close().catch(() => {});
  }
}));

test("socket.io-client 4.8 and 2.5 over polling, with large messages both ways", { timeout: 20000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, (io) => io.on("connection", (socket) => socket.on("echo", (d, cb) => cb(d))));
  for (const version of [4, 2]) {
    const c = scope.client(version, port, { transports: ["polling"] });
    await h.connected(c);
    const back = await new Promise((resolve) => c.emit("echo", BIG, resolve));
    assert.equal(back, BIG, `v${version}`);
  }
}));

// ---- perMessageDeflate: websocket messages ----

const net = require("node:net");
const WebSocket = require("ws");
const ioV1 = require("socket.io-client-v1");

/** A chat-like payload of about 40 KB that deflate shrinks several times, not a hundredfold. */
const ROSTER = JSON.stringify(Array.from({ length: 900 }, (_, i) => ({ id: i, name: `user-${i * 7919 % 10007}`, online: i % 3 === 0 })));

/** A TCP proxy to `port` that counts the bytes each way; closed with the scope. */
async function countingProxy(scope, port) {
  const counts = { up: 0, down: 0 };
  const sockets = new Set();
  const proxy = net.createServer((client) => {
    const server = net.connect(port, "127.0.0.1");
    for (const s of [client, server]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.on("data", (d) => ((counts.up += d.length), server.write(d)));
    server.on("data", (d) => ((counts.down += d.length), client.write(d)));
    client.on("close", () => server.destroy());
    server.on("close", () => client.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  scope.defer(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => proxy.close(resolve));
  });
  return { port: proxy.address().port, counts };
}

/** socket.io-client `version` (4, 2 or 1) on a websocket only. */
function wsClient(scope, version, port, opts = {}) {
  if (version !== 1) return scope.client(version, port, { transports: ["websocket"], ...opts });
  const c = ioV1(`http://127.0.0.1:${port}`, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts });
  scope.defer(() => c.disconnect());
  return c;
}

const echoServer = (io) => io.on("connection", (socket) => socket.on("echo", (d, cb) => cb(d)));

/** Echoes `payload` `n` times through `c`, checking every answer. */
async function echoes(c, payload, n) {
  for (let i = 0; i < n; i++) {
    const back = await h.within(new Promise((resolve) => c.emit("echo", payload, resolve)), 5000, "echo");
    assert.deepEqual(back, payload);
  }
}

for (const version of [4, 2, 1]) {
  test(`perMessageDeflate with socket.io-client ${version === 4 ? "4.8" : version === 2 ? "2.5" : "1.7"}: large messages go compressed both ways, small ones as they are; off, nothing is`, { timeout: 20000 }, h.scoped(async (scope) => {
    const on = await scope.io({ perMessageDeflate: true }, echoServer);
    const off = await scope.io({}, echoServer);
    const wire = {};
    for (const [name, io] of [["on", on], ["off", off]]) {
      const proxy = await countingProxy(scope, io.port);
      const c = wsClient(scope, version, proxy.port);
      await h.connected(c);
      const before = { ...proxy.counts };
      await echoes(c, ROSTER, 5);
      wire[name] = { up: proxy.counts.up - before.up, down: proxy.counts.down - before.down };
      // Small messages (below the threshold) go as they are, in order; binary ones work too.
      const got = [];
      const beforeSmall = { ...proxy.counts };
      await Promise.all(Array.from({ length: 50 }, (_, i) => new Promise((resolve) => c.emit("echo", `small ${i}`, (d) => (got.push(d), resolve())))));
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `small ${i}`));
      wire[name].small = [proxy.counts.up - beforeSmall.up, proxy.counts.down - beforeSmall.down];
      if (version !== 1) {
        const bin = Buffer.alloc(20000, 7);
        const back = await new Promise((resolve) => c.emit("echo", bin, resolve));
        assert.ok(Buffer.from(back).equals(bin), `v${version} binary`);
      }
    }
    const sent = 5 * ROSTER.length;
    assert.ok(wire.off.up > sent && wire.off.down > sent, `uncompressed: ${JSON.stringify(wire.off)} for ${sent} bytes each way`);
    assert.ok(wire.on.up < sent / 3, `client → server: ${wire.on.up} bytes for ${sent}`);
    assert.ok(wire.on.down < sent / 3, `server → client: ${wire.on.down} bytes for ${sent}`);
    assert.deepEqual(wire.on.small, wire.off.small, "small messages are the same bytes either way");
  }));
}

test("perMessageDeflate after a polling → websocket upgrade (socket.io-client 4.8 and 2.5): compressed both ways", { timeout: 20000 }, h.scoped(async (scope) => {
  const io = await scope.io({ perMessageDeflate: true }, echoServer);
  for (const version of [4, 2]) {
    const proxy = await countingProxy(scope, io.port);
    const c = scope.client(version, proxy.port, { transports: ["polling", "websocket"] });
    await h.connected(c);
    await h.upgraded(c);
    const before = { ...proxy.counts };
    await echoes(c, ROSTER, 5);
    const sent = 5 * ROSTER.length;
    const up = proxy.counts.up - before.up;
    const down = proxy.counts.down - before.down;
    assert.equal(h.transportOf(c), "websocket");
    assert.ok(up < sent / 3 && down < sent / 3, `v${version}: ${up} bytes up, ${down} down for ${sent} each way`);
  }
}));

test("perMessageDeflate: one broadcast reaches deflating, upgraded, plain websocket and polling clients alike; the threshold and bad values", { timeout: 20000 }, h.scoped(async (scope) => {
  const io = await scope.io({ perMessageDeflate: { threshold: 100 } }, (io) => io.on("connection", (socket) => socket.on("shout", (d) => io.emit("news", d))));
  const clients = [];
  const kinds = [{ transports: ["polling"] }, { transports: ["websocket"], perMessageDeflate: false }, { transports: ["websocket"] }, { transports: ["polling", "websocket"] }];
  for (let i = 0; i < 16; i++) clients.push(scope.client(i % 2 ? 4 : 2, io.port, kinds[i % 4]));
  await Promise.all(clients.map((c) => h.connected(c)));
  // The upgraded ones agree on deflate on their websocket too.
  await Promise.all(clients.filter((_, i) => i % 4 === 3).map((c) => h.upgraded(c)));
  const received = clients.map((c) => h.collect(c, "news"));
  const messages = [ROSTER, "short", ROSTER.slice(0, 500), ROSTER];
  for (const m of messages) clients[2].emit("shout", m);
  await h.until(() => received.every((r) => r.length === messages.length), "every client gets every broadcast");
  for (const [i, r] of received.entries()) assert.ok(r.every((args, k) => args[0] === messages[k]), `client ${i} got the broadcasts as sent`);
  // {threshold: 100}: a 500-byte message goes compressed.
  const proxy = await countingProxy(scope, io.port);
  const c = scope.client(4, proxy.port, { transports: ["websocket"] });
  await h.connected(c);
  const small = ROSTER.slice(0, 600);
  const before = proxy.counts.down;
  c.emit("shout", small);
  await h.waitFor(c, "news");
  assert.ok(proxy.counts.down - before < 400, `${proxy.counts.down - before} bytes for a ${small.length}-byte broadcast`);
  const { Server } = require("..");
  for (const bad of [{ threshold: -1 }, "yes", 3]) {
    const s = new Server({ perMessageDeflate: bad });
    await assert.rejects(s.listen(0), /perMessageDeflate/);
    await s.close().catch(() => {});
  }
}));

/** A websocket to `port` (Engine.IO v4) with ws's deflate offer; resolves once open. */
async function rawWs(port, opts = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: { threshold: 0 }, ...opts });
  ws.on("error", () => {});
  await h.within(new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("close", () => reject(new Error("closed before open"))))), 3000, "websocket open");
  return ws;
}

const closed = (ws) => (ws.readyState === WebSocket.CLOSED ? Promise.resolve() : h.within(new Promise((resolve) => ws.once("close", resolve)), 3000, "the server closing the websocket"));

test("perMessageDeflate: a message that inflates past maxHttpBufferSize, bad deflate data, and compressed frames without the extension close that client only", { timeout: 20000 }, h.scoped(async (scope) => {
  const io = await scope.io({ perMessageDeflate: true, maxHttpBufferSize: 100000 }, echoServer);
  const bystander = scope.client(4, io.port, { transports: ["websocket"] });
  await h.connected(bystander);
  // What was agreed, as ws reads it.
  const ws = await rawWs(io.port);
  assert.match(ws.extensions, /^permessage-deflate/);
  // A bomb: 5 MB of one letter, a few KB on the wire.
  ws.send("4" + "a".repeat(5e6));
  await closed(ws);
  // Not deflate data, with the compression bit set (written by hand on a raw socket).
  const key = Buffer.from("dGhlIHNhbXBsZSBub25jZQ==");
  for (const extensions of ["permessage-deflate", null]) {
    const sock = net.connect(io.port, "127.0.0.1");
    sock.on("error", () => {});
    const head = [`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1`, `Host: 127.0.0.1`, `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Key: ${key}`, `Sec-WebSocket-Version: 13`];
    if (extensions) head.push(`Sec-WebSocket-Extensions: ${extensions}`);
    sock.write(head.join("\r\n") + "\r\n\r\n");
    const response = await h.within(new Promise((resolve) => sock.once("data", (d) => resolve(d.toString()))), 3000, "101");
    assert.match(response, /^HTTP\/1.1 101/);
    const agreed = /^sec-websocket-extensions: (.*)$/im.exec(response);
    assert.equal(agreed && agreed[1].trim(), extensions && "permessage-deflate; server_no_context_takeover; client_no_context_takeover", response);
    const junk = Buffer.alloc(40, 0xff);
    const frame = Buffer.concat([Buffer.from([0xc1, 0x80 | junk.length, 0, 0, 0, 0]), junk]);
    sock.write(frame);
    await h.within(new Promise((resolve) => (sock.destroyed ? resolve() : sock.once("close", resolve))), 3000, `the server dropping the bad frame (${extensions || "no extension"})`);
  }
  // The server and its other client are unharmed.
  await echoes(bystander, ROSTER, 2);
}));
