"use strict";
// Serving on the app's own port: `new Server(httpServer)`, `io.attach`, `io.listen(httpServer)`
// and Realtime's `config.server`, beside the app's own routes and its own websocket server.
// Requests under the path reach the native engine; websockets leave Node entirely.
const { describe, test, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const net = require("node:net");
const http = require("node:http");
const https = require("node:https");
const crypto = require("node:crypto");
const { execFileSync } = require("node:child_process");
const { Server, Realtime } = require("..");
const { MODES, appServer, checkApp, connectMode, connected, once, rawExchange, request, runNested, scoped, until, upgraded, within } = require("./helpers");
const u = require("./fixtures/cluster-util");


/** Writes `data` on a raw connection; resolves the status line of the answer. */
function rawStatus(port, data, ms = 4000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer in ${ms} ms`));
    }, ms);
    sock.on("connect", () => sock.write(data));
    sock.on("data", (c) => {
      got += c.toString("latin1");
      if (got.includes("\r\n")) {
        clearTimeout(timer);
        sock.destroy();
        resolve(got.split("\r\n")[0]);
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => (clearTimeout(timer), resolve(got.split("\r\n")[0])));
  });
}

function openFds() {
  return fs.readdirSync("/proc/self/fd").length;
}

/** A connected client that answers `echo` acks round-trips one; resolves the answer. */
function echo(client, value) {
  return within(new Promise((resolve) => client.emit("echo", value, resolve)), 3000, "echo ack");
}

function echoServer(io) {
  io.on("connection", (s) => {
    s.on("echo", (v, ack) => ack(v));
    s.emit("hi", "from the server");
  });
}

test("socket.io-client 4.8 and 2.5, websocket-only and polling with upgrade, on the app's port; its routes keep answering", { timeout: 30000 }, scoped(async (scope) => {
  const srv = await appServer();
  const io = new Server(srv);
  scope.servers.push(io);
  echoServer(io);
  assert.equal(await within(io.ready(), 5000, "attach"), srv.address().port);
  assert.equal(io.port, srv.address().port);
  for (const mode of MODES) {
    const client = scope.clientMode(mode, io.port);
    const hi = once(client, "hi");
    await connected(client);
    assert.deepEqual(await hi, ["from the server"], mode.name);
    await upgraded(client);
    const value = { mode: mode.name, text: "héllo ✓", bin: Buffer.from([1, 2, 3]) };
    const back = await echo(client, value);
    assert.deepEqual({ ...back, bin: Buffer.from(back.bin) }, value, mode.name);
    await checkApp(srv);
    client.close();
  }
}));

test("an upgraded websocket leaves Node's http server: its connection is the native side's", { timeout: 20000 }, scoped(async (scope) => {
  const srv = await appServer();
  const io = new Server(srv);
  scope.servers.push(io);
  echoServer(io);
  await io.ready();
  const count = () => new Promise((resolve) => srv.getConnections((err, n) => resolve(err ? -1 : n)));
  await until(async () => (await count()) === 0, "no connection before", 3000);
  const clients = [];
  for (let i = 0; i < 10; i++) clients.push(await scope.connected(i % 2 ? MODES[0] : MODES[2], io.port));
  // Node no longer counts them, yet every one still round-trips.
  await until(async () => (await count()) === 0, "Node's server holds no websocket", 3000);
  for (const c of clients) assert.equal(await echo(c, "still here"), "still here");
  assert.equal(io.stats().sockets, 10);
}));

test("an Express app: its routes, bodies and 404s untouched, socket.io on the same port", { timeout: 20000 }, scoped(async (scope) => {
  const express = require("express");
  const app = express();
  app.use(express.json());
  app.get("/hello", (req, res) => res.send("hello"));
  app.post("/api/sum", (req, res) => res.json({ sum: req.body.a + req.body.b }));
  const srv = http.createServer(app);
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const io = new Server(srv, { cors: { origin: "*" } });
  scope.servers.push(io);
  echoServer(io);
  await io.ready();
  const port = srv.address().port;
  assert.equal((await request(port, "GET", "/hello")).body, "hello");
  const sum = await request(port, "POST", "/api/sum", JSON.stringify({ a: 2, b: 40 }), { "content-type": "application/json" });
  assert.deepEqual(JSON.parse(sum.body), { sum: 42 });
  assert.equal((await request(port, "GET", "/nowhere")).status, 404);
  // `/socket.iox` is not socket.io's: Express answers it.
  assert.equal((await request(port, "GET", "/socket.iox")).status, 404);
  const hs = await request(port, "GET", "/socket.io/?EIO=4&transport=polling", undefined, { origin: "http://app.example" });
  assert.equal(hs.status, 200);
  assert.equal(hs.headers["access-control-allow-origin"], "*");
  for (const mode of [MODES[1], MODES[3]]) {
    const c = await scope.connected(mode, port);
    await upgraded(c);
    assert.equal(await echo(c, mode.name), mode.name);
  }
}));

/** Every client generation and transport over https to `port` (trusting `cert`): a greeting, the upgrade, `big` both ways. */
async function secureClients(scope, port, cert, big) {
  for (const mode of MODES) {
    const url = `https://127.0.0.1:${port}`;
    const o = { forceNew: true, reconnection: false, transports: mode.transports, ca: cert, rejectUnauthorized: true, agent: false };
    const client = mode.version === 4 ? require("socket.io-client").io(url, o) : require("socket.io-client-v2")(url, o);
    scope.clients.push(client);
    const hi = once(client, "hi");
    await connected(client, 5000);
    await hi;
    await upgraded(client);
    assert.equal(await echo(client, big), big, `${mode.name}: a large message both ways`);
    client.close();
  }
}

test("an https server with a throwaway certificate: polling and websockets over Node's TLS", { timeout: 30000, skip: u.needBinary("openssl").skip }, scoped(async (scope) => {
  const { key, cert } = throwawayCert(scope);
  const srv = await appServer(https.createServer, { key, cert });
  const io = new Server(srv);
  scope.servers.push(io);
  echoServer(io);
  await io.ready();
  const port = srv.address().port;
  await checkApp(srv, { secure: true, ca: cert });
  await secureClients(scope, port, cert, "x".repeat(200000));
  await checkApp(srv, { secure: true, ca: cert });
}));

/** A throwaway self-signed certificate for 127.0.0.1 and localhost: `{key, cert, dir}`. */
function throwawayCert(scope) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-tls-"));
  scope.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = (n) => path.join(dir, n);
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", f("key.pem"), "-out", f("cert.pem")], { stdio: "pipe" });
  return { key: fs.readFileSync(f("key.pem")), cert: fs.readFileSync(f("cert.pem")) };
}

test("the native TLS listener (tls: {key, cert}): every client generation and transport over rustls", { timeout: 30000, skip: u.needBinary("openssl").skip }, scoped(async (scope) => {
  const { key, cert } = throwawayCert(scope);
  const io = new Server({ tls: { key, cert } });
  scope.servers.push(io);
  echoServer(io);
  const port = await io.listen(0, "127.0.0.1");
  await secureClients(scope, port, cert, "é".repeat(150000));
  // Plain HTTP on the TLS port gets no answer, and the port keeps serving.
  const plain = await rawExchange(port, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").catch((e) => e.message);
  assert.ok(!/^HTTP\/1\.1 200/.test(plain), `plain HTTP answered: ${plain.slice(0, 40)}`);
  // A client that never finishes its TLS handshake does not hold the port up.
  const silent = net.connect(port, "127.0.0.1");
  silent.on("error", () => {});
  scope.defer(() => silent.destroy());
  const again = require("socket.io-client").io(`https://127.0.0.1:${port}`, { forceNew: true, reconnection: false, transports: ["websocket"], ca: cert });
  scope.clients.push(again);
  await connected(again, 5000);
  assert.equal(await echo(again, "ok"), "ok");

  // Realtime takes `tls` the same way.
  const rt = Realtime.createServer({ port: 0, shakehand: false, tls: { key: key.toString(), cert: cert.toString() } }, true);
  scope.servers.push(rt);
  rt.on("hello", (socket, data) => socket.fire("hello_back", data));
  const rtPort = await rt.start();
  const c = require("socket.io-client-v2")(`https://127.0.0.1:${rtPort}`, { forceNew: true, reconnection: false, transports: ["websocket"], ca: cert });
  scope.clients.push(c);
  await connected(c, 5000);
  const back = once(c, "hello_back");
  c.emit("m", ["hello", { tls: true }]);
  assert.deepEqual((await back)[0], { tls: true });
}));

test("bad TLS settings fail start with an error naming the part", { timeout: 10000, skip: u.needBinary("openssl").skip }, scoped(async (scope) => {
  const { key, cert } = throwawayCert(scope);
  await assert.rejects(new Server({ tls: { key: "not a key", cert } }).listen(0, "127.0.0.1"), /tls\.key: no PEM private key found/);
  await assert.rejects(new Server({ tls: { key, cert: "nope" } }).listen(0, "127.0.0.1"), /tls\.cert: no PEM certificate found/);
  await assert.rejects(async () => new Server({ tls: { key: 42, cert } }).listen(0, "127.0.0.1"), /tls\.key must be PEM text/);
  const srv = await appServer();
  scope.defer(() => new Promise((r) => srv.close(r)));
  assert.throws(() => new Server({ tls: { key, cert } }).attach(srv), /an https server brings its own TLS/);
}));

/** Engine.IO answers of `port` to a fixed list of requests, with session ids blanked. */
async function protocolAnswers(port) {
  const out = [];
  const norm = (r) => ({ status: r.status, type: r.headers["content-type"] || null, body: r.body.replace(/"sid":"[^"]+"/g, '"sid":"*"') });
  for (const [method, url, body] of [
    ["GET", "/socket.io/?EIO=9&transport=polling"],
    ["GET", "/socket.io/?EIO=4&transport=carrier-pigeon"],
    ["GET", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA"],
    ["POST", "/socket.io/?EIO=4&transport=polling", "40"],
    ["GET", "/socket.io/?EIO=4&transport=websocket"],
    ["GET", "/socket.io/?EIO=4&transport=polling&j=1"],
    ["PUT", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA"],
  ]) {
    out.push([method, url, norm(await request(port, method, url, body))]);
  }
  // A session: handshake, CONNECT, the CONNECT reply, a message, a ping answered by the client.
  const hs = await request(port, "GET", "/socket.io/?EIO=4&transport=polling");
  out.push(["handshake", norm(hs)]);
  const sid = JSON.parse(hs.body.slice(1)).sid;
  const q = `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  out.push(["connect", norm(await request(port, "POST", q, "40", { "content-type": "text/plain;charset=UTF-8" }))]);
  out.push(["connected", norm(await request(port, "GET", q))]);
  out.push(["message", norm(await request(port, "POST", q, '42["echo","a"]\x1e42["echo","b",1]'))]);
  out.push(["binary POST", norm(await request(port, "POST", q, "40", { "content-type": "application/octet-stream" }))]);
  out.push(["after", norm(await request(port, "GET", q))]);
  // A websocket upgrade for a session that does not exist, and one without a key.
  const key = crypto.randomBytes(16).toString("base64");
  out.push(["ws unknown sid", await rawStatus(port, `GET /socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`)]);
  out.push(["ws no key", await rawStatus(port, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")]);
  // A websocket session opened directly: the open packet, then the CONNECT reply.
  const ws = new (require("ws"))(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  ws.on("message", (m) => {
    frames.push(String(m).replace(/"sid":"[^"]+"/g, '"sid":"*"'));
    if (frames.length === 1) ws.send("40");
  });
  await until(() => frames.length >= 2, "websocket open and CONNECT reply", 3000);
  ws.close();
  out.push(["ws session", frames]);
  return out;
}

test("the shared port answers the Engine.IO protocol exactly as the native port does", { timeout: 30000 }, scoped(async (scope) => {
  const setup = (io) => io.on("connection", (s) => s.on("echo", () => {}));
  const own = await scope.io({ pingInterval: 60000 }, setup);
  const srv = await appServer();
  const attached = new Server(srv, { pingInterval: 60000 });
  scope.servers.push(attached);
  setup(attached);
  await attached.ready();
  const a = await protocolAnswers(own.port);
  const b = await protocolAnswers(srv.address().port);
  assert.deepEqual(b, a);
  // And it is the protocol: spot checks of what both said.
  assert.equal(a[0][2].status, 400);
  assert.deepEqual(JSON.parse(a[0][2].body), { code: 5, message: "Unsupported protocol version" });
  assert.match(a.find((x) => x[0] === "ws unknown sid")[1], /^HTTP\/1\.1 400 /);
  assert.match(a.find((x) => x[0] === "ws session")[1][0], /^0\{"sid":"\*","upgrades":\[\],/);
  await checkApp(srv);
}));

test("bad input on the shared port never stops the app's routes or socket.io", { timeout: 30000 }, scoped(async (scope) => {
  const srv = await appServer();
  const io = new Server(srv, { maxHttpBufferSize: 1000 });
  scope.servers.push(io);
  echoServer(io);
  await io.ready();
  const port = srv.address().port;
  const random = crypto.randomBytes(4096);
  random[0] = 0;
  for (const garbage of [
    "GARBAGE\r\n\r\n",
    random,
    "GET /socket.io/?EIO=4&transport=polling HTTP/9.9\r\n\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    // An upgrade whose websocket then sends garbage instead of frames.
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString("base64")}\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff`,
    // Oversized upgrade head: Node refuses it before anyone sees it.
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Big: ${"a".repeat(1 << 17)}\r\n\r\n`,
  ]) {
    const answer = await rawExchange(port, garbage);
    assert.ok(answer === "" || /^HTTP\/1\.[01] (4\d\d|101) /.test(answer), `answered ${JSON.stringify(answer.slice(0, 40))}`);
  }
  // Oversized polling body: 413, the app unharmed.
  const hs = await request(port, "GET", "/socket.io/?EIO=4&transport=polling");
  const sid = JSON.parse(hs.body.slice(1)).sid;
  const big = await request(port, "POST", `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, "4" + "a".repeat(200000));
  assert.equal(big.status, 413);
  // Half requests left hanging, and some that hang up midway.
  const idle = [];
  for (let i = 0; i < 20; i++) {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    idle.push(s);
    if (i % 2) s.end("GET /socket.io/?EIO=4&tra");
    else s.write("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: web");
  }
  scope.defer(() => idle.forEach((s) => s.destroy()));
  await checkApp(srv);
  for (const mode of [MODES[0], MODES[3]]) {
    const c = await scope.connected(mode, port);
    assert.equal(await echo(c, "alive"), "alive");
  }
}));

test("a long-poll whose client goes away ends its session, as on the native port", { timeout: 15000 }, scoped(async (scope) => {
  const srv = await appServer();
  const io = new Server(srv);
  scope.servers.push(io);
  const disconnected = [];
  io.on("connection", (s) => s.on("disconnect", (r) => disconnected.push(r)));
  await io.ready();
  const port = srv.address().port;
  const hs = await request(port, "GET", "/socket.io/?EIO=4&transport=polling");
  const q = `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(JSON.parse(hs.body.slice(1)).sid)}`;
  await request(port, "POST", q, "40");
  assert.match((await request(port, "GET", q)).body, /^40/);
  // A GET that waits, and its client hangs up.
  const req = http.request({ host: "127.0.0.1", port, path: q, agent: false });
  req.on("error", () => {});
  req.end();
  await new Promise((r) => setTimeout(r, 200));
  req.destroy();
  await until(() => disconnected.length === 1, "the socket disconnected", 5000);
  assert.equal(disconnected[0], "transport error");
  assert.equal((await request(port, "GET", q)).status, 400);
}));

test("io.close() closes the attached http server, as socket.io's does; the app's server closing closes io", { timeout: 20000 }, async () => {
  const srv = await appServer();
  const io = new Server(srv);
  echoServer(io);
  await io.ready();
  const c = await connected(connectMode(MODES[0], io.port));
  const gone = once(c, "disconnect", 5000);
  let cb = false;
  await within(io.close(() => (cb = true)), 5000, "io.close");
  assert.equal(cb, true, "close callback called");
  assert.equal(srv.listening, false, "the http server no longer listens");
  // As socket.io 4: the server shuts down without a DISCONNECT packet.
  assert.equal((await gone)[0], "transport close");

  const srv2 = await appServer();
  const io2 = new Server(srv2);
  echoServer(io2);
  await io2.ready();
  const closed = once(io2, "close", 5000);
  const c2 = await connected(connectMode(MODES[1], io2.port));
  await upgraded(c2);
  const gone2 = once(c2, "disconnect", 5000);
  srv2.close();
  await closed;
  assert.equal((await gone2)[0], "transport close");
  c.close();
  c2.close();
});

test("no descriptor leaks: many connections of every kind come and go", { timeout: 60000, skip: process.platform !== "linux" && "counts /proc/self/fd" }, scoped(async (scope) => {
  const srv = await appServer();
  const io = new Server(srv);
  scope.servers.push(io);
  echoServer(io);
  await io.ready();
  const warm = await connected(connectMode(MODES[0], io.port));
  warm.close();
  await until(() => io.stats().clients === 0, "warm-up gone", 5000);
  await new Promise((r) => setTimeout(r, 300));
  const before = openFds();
  for (let round = 0; round < 3; round++) {
    const clients = [];
    for (let i = 0; i < 24; i++) clients.push(connectMode(MODES[i % MODES.length], io.port));
    await Promise.all(clients.map((c) => connected(c, 5000)));
    await Promise.all(clients.map((c) => upgraded(c)));
    await Promise.all(clients.map((c) => echo(c, round)));
    // Half leave politely, half lose their TCP connection.
    clients.forEach((c, i) => {
      const ws = c.io.engine.transport.ws;
      if (i % 2 === 0 && ws && typeof ws.terminate === "function") ws.terminate();
      else c.close();
    });
    clients.forEach((c) => c.close());
    await until(() => io.stats().clients === 0, "every client gone", 10000);
  }
  await until(() => openFds() <= before, `descriptors back to ${before} (now ${openFds()})`, 10000);
}));

test("Realtime config.server: weroll's Realtime on the app's own server and port", { timeout: 20000 }, scoped(async (scope) => {
  const srv = await appServer();
  const server = Realtime.createServer({ server: srv, shakehand: false }, true);
  scope.servers.push(server);
  server.on("hello", (socket, data) => socket.fire("hello_back", { got: data }));
  const port = await within(server.start(), 5000, "Realtime start");
  assert.equal(port, srv.address().port);
  assert.equal(server.port, port);
  for (const mode of [MODES[1], MODES[2]]) {
    const c = await scope.connected(mode, port);
    const back = once(c, "hello_back");
    c.emit("m", ["hello", { n: 1 }]);
    assert.deepEqual((await back)[0], { got: { n: 1 } });
  }
  // As socket.io's serveClient: the app's socket.io-client bundle under the path.
  const bundle = await request(port, "GET", "/socket.io/socket.io.min.js");
  assert.equal(bundle.status, 200);
  assert.match(bundle.headers["content-type"], /application\/javascript/);
  const version = require("socket.io-client/package.json").version;
  assert.equal(bundle.headers.etag, `"${version}"`);
  assert.equal(bundle.body, fs.readFileSync(path.join(path.dirname(require.resolve("socket.io-client/package.json")), "dist", "socket.io.min.js"), "utf8"));
  assert.equal((await request(port, "GET", "/socket.io/socket.io.min.js", undefined, { "if-none-match": `"${version}"` })).status, 304);
  await checkApp(srv);
  // The cluster needs no port of its own either; an http server given where none is expected is refused clearly.
  assert.throws(() => Realtime.createServer({ server: {}, shakehand: false }, true), /config\.server must be an http or https server/);
}));

test("socket.io's signatures: new Server(port), attach(port), listen(httpServer), a custom path", { timeout: 20000 }, scoped(async (scope) => {
  const p1 = await u.freePorts(2);
  const p2 = p1 + 1;
  const a = new Server(p1);
  scope.servers.push(a);
  echoServer(a);
  assert.equal(await a.ready(), p1);
  assert.equal(await echo(await scope.connected(MODES[0], p1), 1), 1);
  const b = new Server().attach(p2);
  scope.servers.push(b);
  echoServer(b);
  assert.equal(await b.ready(), p2);
  assert.equal(await echo(await scope.connected(MODES[2], p2), 2), 2);

  const srv = await appServer();
  const c = new Server({ path: "/rt" });
  scope.servers.push(c);
  echoServer(c);
  assert.equal(c.listen(srv), c, "listen(httpServer) returns the server, as socket.io's");
  await c.ready();
  const port = srv.address().port;
  // `/socket.io/` is the app's now.
  assert.equal((await request(port, "GET", "/socket.io/?EIO=4&transport=polling")).body, "not here");
  const client = await scope.connected(MODES[1], port, { path: "/rt" });
  await upgraded(client);
  assert.equal(await echo(client, 3), 3);
  await checkApp(srv);
  // A Server attached to a server that is not listening yet takes its port once it does.
  const later = http.createServer();
  const d = new Server(later);
  scope.servers.push(d);
  echoServer(d);
  await d.ready();
  await new Promise((r) => later.listen(0, "127.0.0.1", r));
  assert.equal(d.port, later.address().port);
  assert.equal(await echo(await scope.connected(MODES[0], d.port), 4), 4);
}));

describe("a Redis cluster of workers attached to their apps' http servers", { skip: u.needBinary("redis-server").skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  let clients = [];
  after(async () => {
    u.closeAll(clients);
    await children.killAll();
    await redisProcess.killAll();
  });

  test("sendTo, rooms, broadcasts and kick cross workers; each app's route keeps answering", async () => {
    const redis = await new u.RedisServer(redisProcess).start();
    const base = await u.freePorts(2);
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: "attached", extra: { TEST_ATTACH: "1" } })));
    for (const i of [0, 1]) assert.equal((await request(base + i, "GET", "/hello")).body, `hello from ${base + i}`);
    const a = u.client(4, base, { transports: ["websocket"] });
    const b = u.client(2, base + 1, { transports: ["polling", "websocket"] });
    const c = u.client(4, base + 1, { transports: ["polling", "websocket"] });
    clients = [a, b, c];
    await u.shake(a, "a");
    await u.shake(b, "b");
    await u.shake(c, "c");
    assert.equal((await u.op(a, "info")).port, base);
    assert.equal((await u.op(b, "info")).port, base + 1);
    await u.op(a, "sendTo", { clientID: "ub", type: "evt", data: { tag: "to-b" } });
    await u.expectDelivery(assert, clients, [b], "to-b");
    await u.op(c, "enterRoom", { room: "r" });
    await u.op(a, "broadcastToRoom", { room: "r", type: "evt", data: { tag: "room" } });
    await u.expectDelivery(assert, clients, [c], "room");
    await u.op(b, "broadcastToAll", { type: "evt", data: { tag: "all" } });
    await u.expectDelivery(assert, clients, [a, b, c], "all");
    const gone = new Promise((resolve) => c.once("disconnect", resolve));
    assert.equal(await u.op(a, "kick", { clientID: "uc", data: { tag: "bye" } }), 1);
    await u.expectDelivery(assert, clients, [c], "bye", { ev: "$kick" });
    await within(gone, 5000, "the kicked client disconnected");
    for (const i of [0, 1]) assert.equal((await request(base + i, "GET", "/hello")).body, `hello from ${base + i}`);
  });
});

test("the socket.io, Realtime, hostile-input and compression suites pass attached to an app's http server", { timeout: 600000 }, () =>
  runNested(["socketio.test.js", "realtime.test.js", "badinput.test.js", "compression.test.js"], { WEROLL_TEST_ATTACH: "1" }, 100),
);
