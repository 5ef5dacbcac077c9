"use strict";
// Metrics: the figures move as clients connect, send, receive and get dropped; the Prometheus
// text parses with a real parser and says what metrics() says; the handler serves it; a
// cluster's metrics come from every worker.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const parse = require("parse-prometheus-text-format");
const { Server, Realtime } = require("..");
const { MODES, once, request, scoped, until, within } = require("./helpers");
const u = require("./fixtures/cluster-util");

/** The value of `name` (with these labels) in parsed Prometheus families. */
function sample(families, name, labels = {}) {
  const f = families.find((x) => x.name === name);
  assert.ok(f, `family ${name}`);
  const m = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => (x.labels || {})[k] === v));
  assert.ok(m, `${name} ${JSON.stringify(labels)}`);
  return Number(m.value);
}

test("metrics move with connections, events, broadcasts, rooms, refusals and slow clients; the Prometheus text agrees", { timeout: 20000 }, scoped(async (scope) => {
  const io = await scope.io({ maxQueuedFrames: 16 }, (io) =>
    io.on("connection", (s) => {
      s.join("r");
      s.on("echo", (v, ack) => ack(v));
    }),
  );
  const zero = io.metrics();
  assert.equal(zero.sessionsOpened, 0);
  const ws4 = await scope.connected(MODES[0], io.port);
  const poll2 = await scope.connected(MODES[3], io.port, { transports: ["polling"] });
  await until(() => io.metrics().namespaces[0].sockets === 2, "two sockets", 3000);
  let m = io.metrics();
  assert.equal(m.connections.websocket["4"], 1);
  assert.equal(m.connections.polling["3"], 1);
  assert.equal(m.sessionsOpened, 2);
  assert.deepEqual(m.namespaces, [{ name: "/", sockets: 2, rooms: 1 }]);
  for (let i = 0; i < 3; i++) await within(new Promise((r) => ws4.emit("echo", "x".repeat(100), r)), 3000, "echo");
  m = io.metrics();
  assert.equal(m.eventsIn, 3);
  assert.ok(m.bytesIn >= 300, `bytesIn ${m.bytesIn}`);
  assert.ok(m.eventsOut >= 3, "the acks went out");
  assert.ok(m.handlerDelay.count >= 3, "the events' delay to their handler is measured");
  const got = once(poll2, "news");
  io.to("r").emit("news", "all of you");
  await got;
  m = io.metrics();
  assert.equal(m.broadcasts, 1);
  assert.equal(m.deliveries, 2);
  // A refused request.
  assert.equal((await request(io.port, "GET", "/socket.io/?EIO=9&transport=polling")).status, 400);
  assert.equal(io.metrics().handshakeErrors, 1);
  // A polling client that never polls again: its queue outgrows maxQueuedFrames and it is dropped.
  const known = new Set(io.sockets.sockets.keys());
  const hs = await request(io.port, "GET", "/socket.io/?EIO=4&transport=polling");
  const q = `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(JSON.parse(hs.body.slice(1)).sid)}`;
  await request(io.port, "POST", q, "40");
  await until(() => io.sockets.sockets.size === 3, "the silent client connected", 3000);
  const silent = [...io.sockets.sockets.keys()].find((id) => !known.has(id));
  for (let i = 0; i < 100; i++) io.to(silent).emit("flood", i);
  await until(() => io.metrics().slowClientsDropped === 1, "the slow client counted", 5000);

  // The Prometheus text says the same, and parses.
  m = io.metrics();
  const families = parse(io.metricsText());
  assert.equal(sample(families, "weroll_native_connections", { transport: "websocket", eio: "4" }), m.connections.websocket["4"]);
  assert.equal(sample(families, "weroll_native_sockets", { namespace: "/" }), m.namespaces[0].sockets);
  assert.equal(sample(families, "weroll_native_events_received_total"), m.eventsIn);
  assert.equal(sample(families, "weroll_native_deliveries_total"), m.deliveries);
  assert.equal(sample(families, "weroll_native_slow_clients_dropped_total"), 1);
  assert.equal(sample(families, "weroll_native_handshake_errors_total"), 1);
  const hist = families.find((f) => f.name === "weroll_native_handler_delay_seconds");
  assert.equal(hist.type, "HISTOGRAM");
  assert.equal(Number(hist.metrics[0].count), m.handlerDelay.count);
}));

test("metricsHandler serves the text at /metrics of the app's own server", { timeout: 10000 }, scoped(async (scope) => {
  const io = await scope.io();
  const app = http.createServer((req, res) => (req.url === "/metrics" ? io.metricsHandler()(req, res) : res.writeHead(404).end()));
  await new Promise((r) => app.listen(0, "127.0.0.1", r));
  scope.defer(() => new Promise((r) => app.close(r)));
  await scope.connected(MODES[1], io.port);
  const res = await request(app.address().port, "GET", "/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers["content-type"], /^text\/plain; version=0\.0\.4/);
  const families = parse(res.body);
  assert.equal(sample(families, "weroll_native_sessions_opened_total"), 1);
}));

test("a cluster's metrics: every worker's, over Redis, labelled by worker; Realtime counts shakehand failures", { timeout: 30000, skip: u.needBinary("redis-server").skip }, scoped(async (scope) => {
  const redisProcess = new u.Children();
  scope.defer(() => redisProcess.killAll());
  const redis = await new u.RedisServer(redisProcess).start();
  const base = await u.freePorts(2);
  const session = { check: (auth, cb) => (auth === "good" ? cb(null, { userid: "x" }) : cb(new Error("bad token"))) };
  const workers = [];
  // Closers run last-deferred first: the workers leave Redis before it stops.
  scope.defer(() => Promise.all(workers.map((w) => w.close())));
  for (const workerIndex of [0, 1]) {
    const w = Realtime.createServer({ port: base, host: "127.0.0.1", shakehand: true, shakehandTimeout: 3000, session, requestsTimeout: 3000, cluster: { enable: true, workerIndex, redis: { host: "127.0.0.1", port: redis.port, key: "metrics" } } }, true);
    workers.push(w);
    await w.start();
  }
  await until(async () => (await workers[0].servers()).length === 2, "both workers listed", 10000);
  const c = await scope.connected(MODES[2], base + 1);
  const gone = once(c, "disconnect", 5000);
  c.emit("$init", { _auth: "bad" });
  await gone;
  assert.equal(workers[1].metrics().shakehandFailures, 1);
  const list = await workers[0].clusterMetrics();
  assert.deepEqual(list.map((s) => s.address).sort(), [`127.0.0.1:${base}`, `127.0.0.1:${base + 1}`]);
  const families = parse(await workers[0].metricsText({ cluster: true }));
  assert.equal(sample(families, "weroll_native_shakehand_failures_total", { server: `127.0.0.1:${base + 1}` }), 1);
  assert.equal(sample(families, "weroll_native_shakehand_failures_total", { server: `127.0.0.1:${base}` }), 0);
  assert.equal(sample(families, "weroll_native_redis_up", { server: `127.0.0.1:${base}` }), 1);
}));

test("serverSideEmit with ack: a server that does not answer gives socket.io's timeout error with the answers that came, and counts", { timeout: 30000, skip: u.needBinary("redis-server").skip }, scoped(async (scope) => {
  const redisProcess = new u.Children();
  scope.defer(() => redisProcess.killAll());
  const redis = await new u.RedisServer(redisProcess).start();
  const servers = [];
  scope.defer(() => Promise.all(servers.map((s) => s.close())));
  for (let i = 0; i < 3; i++) {
    const io = new Server({ redis: { host: "127.0.0.1", port: redis.port, key: "sse-timeout" }, requestsTimeout: 1000 });
    // The third server hears the event but never answers.
    io.on("ask", (n, cb) => (i === 2 ? undefined : cb(`answer ${i}:${n}`)));
    await io.listen(0, "127.0.0.1");
    servers.push(io);
  }
  await until(async () => (await servers[0].sockets.adapter.serverCount()) === 3, "three servers", 10000);
  const [err, answers] = await within(new Promise((resolve) => servers[0].serverSideEmit("ask", 7, (e, a) => resolve([e, a]))), 5000, "the callback");
  assert.match(String(err && err.message), /timeout reached: only 1 responses received out of 2/);
  assert.deepEqual(answers, ["answer 1:7"]);
  assert.equal(servers[0].metrics().requestTimeouts, 1);
  await assert.rejects(servers[0].serverSideEmitWithAck("ask", 8), /timeout reached/);
}));
