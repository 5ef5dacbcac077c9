"use strict";
// socket.io's admin UI (@socket.io/admin-ui 0.5) over weroll-native: `instrument(io)` on two
// native servers clustered over a real redis-server, as an admin client sees them (stats, sockets,
// rooms, live events, commands); and the UI's own page (its bundled build) in headless Chromium,
// connected to one worker of a real 2-worker Node cluster, listing both workers, the sockets of
// both and their rooms.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const { instrument } = require("@socket.io/admin-ui");
const { io: ioc } = require("socket.io-client");
const { Server } = require("..");
const { findChromium, isCI } = require("../scripts/setup.js");
const { scoped, until, within, connected, once } = require("./helpers");
const u = require("./fixtures/cluster-util");

const chromium = findChromium();
const redisSkip = u.needBinary("redis-server").skip;

/** Two native servers on one Redis (its port in `.redisPort`), each instrumented, each with an app that joins rooms. */
async function cluster(scope) {
  const redisProcess = new u.Children();
  scope.defer(() => redisProcess.killAll());
  const redis = await new u.RedisServer(redisProcess).start();
  const servers = [];
  for (let i = 0; i < 2; i++) {
    const io = new Server({ redis: { host: "127.0.0.1", port: redis.port, key: "admin" }, cors: { origin: true, credentials: true } });
    scope.servers.push(io);
    instrument(io, { auth: false, serverId: `native-${i}`, mode: "development" });
    io.on("connection", (socket) => {
      socket.on("join", (room, ack) => {
        socket.join(room);
        ack();
      });
      socket.on("hello", (ack) => ack(`hello from ${i}`));
    });
    io.of("/chat").on("connection", (socket) => socket.join("chat-room"));
    io.port = await within(io.listen(0, "127.0.0.1"), 5000, "listen");
    servers.push(io);
  }
  // Both servers see each other before the clients come.
  await until(async () => (await servers[0].of("/").adapter.serverCount()) === 2, "the two servers see each other", 10000);
  servers.redisPort = redis.port;
  return servers;
}

/** A Node socket.io 4.8 server with @socket.io/redis-adapter in the same cluster, instrumented too. */
async function nodeServer(scope, redisPort) {
  const { Server: NodeServer } = require("socket.io");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("redis");
  const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  const io = new NodeServer(httpServer);
  io.adapter(createAdapter(pub, sub, { key: "admin" }));
  instrument(io, { auth: false, serverId: "node", mode: "development" });
  io.on("connection", (socket) => {
    socket.data.from = "node";
    socket.join("room-node");
  });
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  scope.defer(async () => {
    await new Promise((resolve) => io.close(() => resolve()));
    // admin-ui's 2-second stats timer outlives io.close(); its publishes must not meet closed clients.
    io.of("/admin").emit = () => true;
    await Promise.all([pub.quit(), sub.quit()]).catch(() => {});
  });
  io.port = httpServer.address().port;
  return io;
}

/** An app client on `port` that joined `room`. */
async function member(scope, port, room, opts = {}) {
  const c = scope.client(4, port, opts);
  await connected(c);
  await within(new Promise((resolve) => c.emit("join", room, resolve)), 3000, "join");
  return c;
}

/** An admin client as the UI opens it (websocket, namespace /admin); resolves it with what it heard first. */
async function adminClient(scope, port) {
  const admin = ioc(`http://127.0.0.1:${port}/admin`, { forceNew: true, reconnection: false, transports: ["websocket"] });
  scope.defer(() => admin.close());
  const heard = { stats: new Map(), events: [] };
  admin.on("server_stats", (s) => heard.stats.set(s.serverId, s));
  for (const ev of ["socket_connected", "socket_disconnected", "socket_updated", "room_joined", "room_left", "event_received", "event_sent"]) {
    admin.on(ev, (...args) => heard.events.push([ev, ...args]));
  }
  const config = once(admin, "config", 5000);
  const all = once(admin, "all_sockets", 5000);
  await connected(admin, 5000);
  heard.config = (await config)[0];
  heard.sockets = (await all)[0];
  return { admin, heard };
}

test("instrument(io) on two clustered native servers: stats of both, every socket with its rooms, live events, and the UI's commands", { timeout: 60000, skip: redisSkip }, scoped(async (scope) => {
  const [a, b] = await cluster(scope);
  const onA = await member(scope, a.port, "room-a", { transports: ["websocket"] });
  const onB = await member(scope, b.port, "room-b", { transports: ["polling", "websocket"] });
  await once(onB.io.engine, "upgrade", 5000).catch(() => {});
  const chatter = scope.client(4, b.port, { nsp: "/chat", transports: ["websocket"] });
  await connected(chatter);

  const { admin, heard } = await adminClient(scope, a.port);
  assert.ok(heard.config.supportedFeatures.includes("MJOIN") && heard.config.supportedFeatures.includes("ALL_EVENTS"), JSON.stringify(heard.config));
  // Every socket of the cluster, in every namespace, with its rooms, transport and client id.
  const byId = new Map(heard.sockets.map((s) => [s.id, s]));
  const sa = byId.get(onA.id);
  const sb = byId.get(onB.id);
  assert.ok(sa && sb, `both app sockets listed: ${[...byId.keys()]}`);
  assert.ok(sa.rooms.includes("room-a") && sb.rooms.includes("room-b"), JSON.stringify([sa.rooms, sb.rooms]));
  assert.equal(sa.nsp, "/");
  assert.equal(sa.transport, "websocket");
  assert.equal(sa.clientId, onA.io.engine.id.slice(0, 12));
  // The other server's socket, with what its server's JavaScript holds (socket.data).
  assert.equal(sb.clientId, onB.io.engine.id.slice(0, 12));
  assert.equal(sb.transport, "websocket");
  assert.ok(heard.sockets.some((s) => s.nsp === "/chat" && s.rooms.includes("chat-room")), "the /chat socket on the other server");
  assert.equal(sa.handshake.address, "127.0.0.1");
  // Both servers report, each with its own clients.
  await until(() => heard.stats.has("native-0") && heard.stats.has("native-1"), "server_stats from both servers", 6000);
  const s0 = heard.stats.get("native-0");
  assert.equal(s0.clientsCount, 2, "the app client and the admin UI on server 0");
  assert.ok(s0.namespaces.some((n) => n.name === "/admin") && s0.namespaces.some((n) => n.name === "/"), JSON.stringify(s0.namespaces));
  // Traffic shows in the aggregated events (the native counters, fed every second).
  await within(new Promise((resolve) => onA.emit("hello", resolve)), 3000, "hello");
  await until(() => [...heard.stats.values()].some((s) => s.aggregatedEvents.some((e) => e.type === "packetsIn")), "packetsIn in the aggregated events", 6000);

  // Live: a new socket, its room joins, its events both ways, its upgrade and its departure.
  const late = scope.client(4, a.port, { transports: ["polling", "websocket"] });
  await connected(late);
  await until(() => heard.events.some(([ev, s]) => ev === "socket_connected" && s.id === late.id), "socket_connected for the new socket");
  await within(new Promise((resolve) => late.emit("join", "room-late", resolve)), 3000, "join");
  await until(() => heard.events.some(([ev, nsp, room, id]) => ev === "room_joined" && nsp === "/" && room === "room-late" && id === late.id), "room_joined");
  await until(() => heard.events.some(([ev, s]) => ev === "socket_updated" && s.id === late.id && s.transport === "websocket"), "the upgrade to websocket");
  await until(() => heard.events.some(([ev, nsp, id, args]) => ev === "event_received" && id === late.id && args[0] === "join"), "event_received");
  const lateId = late.id;
  late.close();
  await until(() => heard.events.some(([ev, nsp, id]) => ev === "socket_disconnected" && id === lateId), "socket_disconnected");
  await until(() => heard.events.some(([ev, nsp, room, id]) => ev === "room_left" && room === "room-late" && id === lateId), "room_left on disconnect");

  // The UI's commands act on the whole cluster: join, emit, leave, disconnect.
  admin.emit("join", "/", "everyone", "");
  await until(async () => (await a.in("everyone").fetchSockets()).length === 2, "both app sockets joined 'everyone'");
  const got = [once(onA, "notice", 3000), once(onB, "notice", 3000)];
  admin.emit("emit", "/", "everyone", "notice", "from the admin UI");
  assert.deepEqual((await Promise.all(got)).map((g) => g[0]), ["from the admin UI", "from the admin UI"]);
  admin.emit("leave", "/", "everyone", "room-b");
  await until(async () => (await a.in("everyone").fetchSockets()).length === 1, "the room-b socket left 'everyone'");
  const gone = once(onB, "disconnect", 3000);
  admin.emit("_disconnect", "/", false, "room-b");
  assert.equal((await gone)[0], "io server disconnect");
}));

test("a Node socket.io server with the redis adapter in the cluster: the admin UI on either side sees the other's server, sockets and socket.data", { timeout: 60000, skip: redisSkip }, scoped(async (scope) => {
  const natives = await cluster(scope);
  const node = await nodeServer(scope, natives.redisPort);
  await until(async () => (await natives[0].of("/").adapter.serverCount()) === 3, "the three servers see each other", 10000);
  const onNative = await member(scope, natives[1].port, "room-native", { transports: ["websocket"] });
  const onNode = scope.client(4, node.port, { transports: ["websocket"] });
  await connected(onNode);
  // From a native server: the Node server's stats and socket.
  const fromNative = await adminClient(scope, natives[0].port);
  await until(() => ["native-0", "native-1", "node"].every((id) => fromNative.heard.stats.has(id)), "server_stats of all three, on the native side", 6000);
  const nodeSocket = fromNative.heard.sockets.find((x) => x.id === onNode.id);
  assert.ok(nodeSocket, "the Node server's socket is listed");
  assert.ok(nodeSocket.rooms.includes("room-node"));
  assert.equal(nodeSocket.data.from, "node");
  assert.equal(nodeSocket.clientId, onNode.io.engine.id.slice(0, 12));
  // From the Node server: the native servers' stats and sockets, with what their JavaScript holds.
  const fromNode = await adminClient(scope, node.port);
  await until(() => ["native-0", "native-1", "node"].every((id) => fromNode.heard.stats.has(id)), "server_stats of all three, on the Node side", 6000);
  const nativeSocket = fromNode.heard.sockets.find((x) => x.id === onNative.id);
  assert.ok(nativeSocket, "the native server's socket is listed by the Node server");
  assert.ok(nativeSocket.rooms.includes("room-native"));
  assert.equal(nativeSocket.clientId, onNative.io.engine.id.slice(0, 12));
  assert.equal(nativeSocket.transport, "websocket");
  // A command from the Node side reaches the native socket.
  const got = once(onNative, "notice", 3000);
  fromNode.admin.emit("emit", "/", "room-native", "notice", "from the Node side");
  assert.deepEqual(await got, ["from the Node side"]);
}));

/** Two `cluster` workers (fixtures/admin-cluster.js) on a fresh Redis; resolves their ports and pids. */
async function clusterWorkers(scope) {
  const { fork } = require("node:child_process");
  const children = new u.Children();
  scope.defer(() => children.killAll());
  const redis = await new u.RedisServer(children).start();
  const base = await u.freePorts(2);
  const primary = children.track(fork(path.join(__dirname, "fixtures", "admin-cluster.js"), [], { env: { ...process.env, BASE: String(base), REDIS_PORT: String(redis.port) }, stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  const ready = [];
  await within(
    new Promise((resolve, reject) => {
      primary.on("message", (m) => {
        if (m && m.ev === "error") reject(new Error(`worker: ${m.message}`));
        if (m && m.ev === "ready" && ready.push(m) === 2) resolve();
      });
      primary.on("exit", (code) => reject(new Error(`the cluster primary exited (${code})`)));
    }),
    15000,
    "two cluster workers ready",
  );
  return ready.sort((x, y) => x.port - y.port);
}

test("the admin UI's page in Chromium, on a 2-worker cluster: both workers, the sockets of both and their rooms", { timeout: 60000, skip: redisSkip || (!chromium && !isCI() && "chromium is not installed (apt-get install chromium)") }, scoped(async (scope) => {
  assert.ok(chromium, "chromium is required in CI (apt-get install chromium)");
  const { chromium: playwright } = require("playwright-core");
  const [a, b] = await clusterWorkers(scope);
  const onA = await member(scope, a.port, "room-alpha", { transports: ["websocket"] });
  const onB = await member(scope, b.port, "room-beta", { transports: ["polling", "websocket"] });

  // The UI's bundled build, served as it is.
  const root = path.join(path.dirname(require.resolve("@socket.io/admin-ui/package.json")), "ui", "dist");
  const types = { ".html": "text/html", ".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };
  const site = http.createServer((req, res) => {
    const file = path.join(root, decodeURIComponent(req.url.split("?")[0]) === "/" ? "index.html" : path.normalize(decodeURIComponent(req.url.split("?")[0])));
    if (!file.startsWith(root) || !fs.existsSync(file)) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  scope.defer(() => new Promise((resolve) => site.close(resolve)));

  const browser = await playwright.launch({
    executablePath: chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  scope.defer(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  // Fonts and icons come from CDNs this machine does not reach: refused at once.
  await page.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
  const origin = `http://127.0.0.1:${site.address().port}`;
  await page.goto(`${origin}/`);
  await page.evaluate((url) => {
    localStorage.setItem("server_url", url);
    localStorage.setItem("ws_only", "true");
    localStorage.setItem("path", "/socket.io");
    localStorage.setItem("namespace", "/admin");
  }, `http://127.0.0.1:${a.port}`);
  const text = () => page.evaluate(() => document.body.innerText);
  const shows = async (what, strings) => {
    try {
      await page.waitForFunction((list) => list.every((s) => document.body.innerText.includes(s)), strings, { timeout: 15000 });
    } catch {
      assert.fail(`the ${what} page shows ${JSON.stringify(strings)}; it shows:\n${(await text()).slice(0, 1500)}`);
    }
  };
  await page.goto(`${origin}/#/servers/`);
  await page.reload();
  // Named as admin-ui names cluster workers: host#pid.
  const host = require("node:os").hostname();
  await shows("servers", [`${host}#${a.pid}`, `${host}#${b.pid}`]);
  await page.goto(`${origin}/#/sockets/`);
  await page.reload();
  await shows("sockets", [onA.id, onB.id]);
  await page.goto(`${origin}/#/rooms/`);
  await page.reload();
  await shows("rooms", ["room-alpha", "room-beta"]);
  assert.deepEqual(errors, []);
}));

test("instrument(realtime.io) on a Realtime server: its sockets with their rooms, and its stats", { timeout: 30000 }, scoped(async (scope) => {
  const server = await scope.realtime({ shakehand: false });
  instrument(server.io, { auth: false, serverId: "realtime", mode: "development" });
  const c = scope.client(2, server.port, { transports: ["polling", "websocket"] });
  await connected(c);
  const { heard } = await adminClient(scope, server.port);
  const mine = heard.sockets.find((s) => s.nsp === "/" && s.id !== undefined && s.handshake && s.rooms.length);
  assert.ok(mine, JSON.stringify(heard.sockets));
  assert.ok(mine.rooms.includes(mine.id), JSON.stringify(mine.rooms));
  await until(() => heard.stats.has("realtime"), "server_stats", 5000);
  assert.equal(heard.stats.get("realtime").clientsCount, 2);
}));

test("instrument(io, {auth: {type: 'basic'}}): wrong credentials refused, right ones get a session id that logs in again", { timeout: 30000 }, scoped(async (scope) => {
  const bcrypt = require("bcryptjs");
  const io = await scope.io({}, (io) => instrument(io, { auth: { type: "basic", username: "admin", password: bcrypt.hashSync("secret", 4) } }));
  const url = `http://127.0.0.1:${io.port}/admin`;
  const open = (auth) => {
    const c = ioc(url, { forceNew: true, reconnection: false, transports: ["websocket"], auth });
    scope.defer(() => c.close());
    return c;
  };
  const bad = open({ username: "admin", password: "nope" });
  const [err] = await once(bad, "connect_error", 5000);
  assert.equal(err.message, "invalid credentials");
  const good = open({ username: "admin", password: "secret" });
  const session = once(good, "session", 5000);
  const config = once(good, "config", 5000);
  await connected(good, 5000);
  const [sessionId] = await session;
  assert.match(sessionId, /^[0-9a-f]{16}$/);
  assert.ok((await config)[0].supportedFeatures.includes("EMIT"));
  const again = open({ sessionId });
  await connected(again, 5000);
}));
