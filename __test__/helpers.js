"use strict";
// Shared test utilities: real servers on loopback, real socket.io clients (4.8 and 2.5), and
// waits that always time out.
const { test } = require("node:test");
const { Realtime, Server } = require("..");

const ioV4 = require("socket.io-client");
const ioV2 = require("socket.io-client-v2");

/** The four client modes every Realtime behaviour is checked with. */
const MODES = [
  { name: "v4-websocket", version: 4, transports: ["websocket"] },
  { name: "v4-polling-upgrade", version: 4, transports: ["polling", "websocket"] },
  { name: "v2-websocket", version: 2, transports: ["websocket"] },
  { name: "v2-polling-upgrade", version: 2, transports: ["polling", "websocket"] },
];

const DEFAULT_WAIT = 3000;

/**
 * `WEROLL_TEST_ATTACH=1`: servers made here serve on an app's own http server (see `appServer`)
 * instead of a port of their own, and each scope checks the app's routes still answer.
 */
const ATTACHED = process.env.WEROLL_TEST_ATTACH === "1";

/**
 * An http server as an app has one: `GET /hello` answers `hello`, and a `ws` server on
 * `/other` echoes. Listening on loopback; resolves it.
 */
async function appServer(createServer = require("node:http").createServer, options = {}) {
  const { WebSocketServer } = require("ws");
  const srv = createServer(options, (req, res) => {
    if (req.method === "GET" && req.url === "/hello") res.end("hello");
    else res.writeHead(404).end("not here");
  });
  const wss = new WebSocketServer({ noServer: true });
  wss.on("connection", (ws) => ws.on("message", (m) => ws.send(`echo:${m}`)));
  srv.on("upgrade", (req, socket, head) => {
    if (req.url === "/other") wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  });
  srv.on("close", () => wss.close());
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return srv;
}

/** Checks the app's own routes of `appServer` answer: `GET /hello` and the `/other` websocket. */
async function checkApp(srv, { secure = false, ca } = {}) {
  const port = srv.address().port;
  const scheme = secure ? "https" : "http";
  const body = await new Promise((resolve, reject) => {
    const mod = require(secure ? "node:https" : "node:http");
    const req = mod.get(`${scheme}://127.0.0.1:${port}/hello`, { ca, agent: false }, (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve(`${res.statusCode} ${b}`));
    });
    req.on("error", reject);
    req.setTimeout(3000, () => req.destroy(new Error("GET /hello timed out")));
  });
  if (body !== "200 hello") throw new Error(`the app's GET /hello answered ${body}`);
  const WebSocket = require("ws");
  const echo = await new Promise((resolve, reject) => {
    const ws = new WebSocket(`${secure ? "wss" : "ws"}://127.0.0.1:${port}/other`, { ca });
    const timer = setTimeout(() => (ws.terminate(), reject(new Error("/other websocket timed out"))), 3000);
    ws.on("open", () => ws.send("x"));
    ws.on("message", (m) => {
      clearTimeout(timer);
      ws.close();
      resolve(String(m));
    });
    ws.on("error", (e) => (clearTimeout(timer), reject(e)));
  });
  if (echo !== "echo:x") throw new Error(`the app's /other websocket answered ${echo}`);
}

/** A Realtime config for `createServer`: `port: 0`, or in attached mode the app's server. */
async function realtimeConfig(config) {
  if (!ATTACHED || (config.port !== undefined && config.port !== 0) || config.server) return { port: 0, ...config };
  const { port, ...rest } = config;
  return { ...rest, server: await appServer() };
}

/** Starts `io` on a free loopback port, or in attached mode on an app's server; resolves the port. */
async function serveIo(io) {
  if (!ATTACHED) return within(io.listen(0, "127.0.0.1"), 5000, "io server listen");
  const srv = await appServer();
  io.attach(srv);
  return within(io.ready(), 5000, "io server attach");
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves the argument list of the next `ev` on `emitter`; rejects after `ms`. */
function once(emitter, ev, ms = DEFAULT_WAIT) {
  return new Promise((resolve, reject) => {
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      off(emitter, ev, on);
      reject(new Error(`timed out after ${ms} ms waiting for "${ev}"`));
    }, ms);
    emitter.once(ev, on);
  });
}

/** Resolves the first argument of the next `ev` on `emitter`; rejects after `ms`. */
async function waitFor(emitter, ev, ms = DEFAULT_WAIT) {
  return (await once(emitter, ev, ms))[0];
}

/** Resolves after `ms` if `ev` did not fire on `emitter`; rejects as soon as it does. */
function expectNo(emitter, ev, ms = 300) {
  return new Promise((resolve, reject) => {
    const on = (...args) => {
      clearTimeout(timer);
      reject(new Error(`unexpected "${ev}": ${safeJson(args)}`));
    };
    const timer = setTimeout(() => {
      off(emitter, ev, on);
      resolve();
    }, ms);
    emitter.once(ev, on);
  });
}

/** Collects every `ev` on `emitter` (argument lists) into the returned array. */
function collect(emitter, ev) {
  const got = [];
  emitter.on(ev, (...args) => got.push(args));
  return got;
}

/** Polls `cond()` until it is truthy; rejects with `what` after `ms`. */
async function until(cond, what, ms = DEFAULT_WAIT) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await delay(10);
  }
}

/** Rejects with `what` if `promise` does not settle within `ms`. */
function within(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function off(emitter, ev, fn) {
  if (typeof emitter.off === "function") emitter.off(ev, fn);
  else if (typeof emitter.removeListener === "function") emitter.removeListener(ev, fn);
}

function safeJson(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** Bytes of a binary the client received (Buffer in Node, ArrayBuffer, or a typed array). */
function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError(`not a binary: ${Object.prototype.toString.call(v)}`);
}

/**
 * A client of `version` (4 or 2) for `http://127.0.0.1:port` + `opts.nsp`.
 * `opts.transports` defaults to polling with upgrade; `forceNew` and no reconnection always.
 * Other options go to the client as they are (query, auth, extraHeaders, transportOptions…).
 */
function connect(version, port, opts = {}) {
  const { nsp = "", ...rest } = opts;
  const url = `http://127.0.0.1:${port}${nsp}`;
  const o = { forceNew: true, reconnection: false, timeout: 5000, ...rest };
  if (version === 4) return ioV4.io(url, o);
  if (version === 2) return ioV2(url, o);
  throw new Error(`unknown client version ${version}`);
}

/** `connect` for one of MODES. */
function connectMode(mode, port, opts = {}) {
  return connect(mode.version, port, { transports: mode.transports, ...opts });
}

/** Resolves once `client` is connected (rejects on connect_error / error / timeout). */
function connected(client, ms = DEFAULT_WAIT) {
  if (client.connected) return Promise.resolve(client);
  return new Promise((resolve, reject) => {
    const done = (err) => {
      clearTimeout(timer);
      off(client, "connect", onConnect);
      off(client, "connect_error", onError);
      off(client, "error", onError);
      if (err) reject(err);
      else resolve(client);
    };
    const onConnect = () => done();
    const onError = (e) => done(new Error(`connect failed: ${(e && e.message) || safeJson(e)}`));
    const timer = setTimeout(() => done(new Error(`timed out after ${ms} ms waiting for "connect"`)), ms);
    client.on("connect", onConnect);
    client.on("connect_error", onError);
    client.on("error", onError);
  });
}

/** The engine.io transport a client is on now ("polling" or "websocket"). */
function transportOf(client) {
  return client.io.engine.transport.name;
}

/** Resolves once `client` runs over a websocket (after the upgrade in polling modes). */
async function upgraded(client, ms = DEFAULT_WAIT) {
  const engine = client.io.engine;
  if (engine.transport.name === "websocket") return;
  await once(engine, "upgrade", ms);
}

/** Creates and starts a Realtime server (`port: 0` unless given); resolves `{ server, port }`. */
async function startRealtime(config = {}, noGlobal = true) {
  const server = Realtime.createServer(await realtimeConfig(config), noGlobal);
  const port = await within(server.start(), 5000, "Realtime server start");
  return { server, port };
}

/** Creates a socket.io-style Server over the native binding, `setup(io)`, listens; resolves `{ io, port }`. */
async function startIo(opts = {}, setup) {
  const io = new Server(opts);
  if (setup) setup(io);
  const port = await serveIo(io);
  return { io, port };
}

/**
 * Per-test resources: clients and servers created through it are closed by `close()`,
 * whatever the test did.
 */
class Scope {
  constructor() {
    this.clients = [];
    this.servers = [];
    this.closers = [];
    this.apps = [];
  }
  /**
   * A Realtime server, created with `noGlobal` (unless `global` is true) and `port: 0`, started
   * unless `start` is false; resolves it (bound port in `.port`).
   */
  async realtime(config = {}, { global: isGlobal = false, start = true } = {}) {
    const cfg = await realtimeConfig(config);
    const server = Realtime.createServer(cfg, !isGlobal);
    if (cfg.server) this.apps.push(cfg.server);
    this.servers.push(server);
    if (start) await within(server.start(), 5000, "Realtime server start");
    return server;
  }
  /** A socket.io-style Server over the native binding, listening on a free port (`.port`). */
  async io(opts = {}, setup) {
    const io = new Server(opts);
    this.servers.push(io);
    if (setup) setup(io);
    await serveIo(io);
    if (io._httpServer) this.apps.push(io._httpServer);
    return io;
  }
  /** A client (see `connect`), closed with the scope. */
  client(version, port, opts) {
    const c = connect(version, port, opts);
    this.clients.push(c);
    return c;
  }
  clientMode(mode, port, opts) {
    const c = connectMode(mode, port, opts);
    this.clients.push(c);
    return c;
  }
  /** A connected client of `mode`. */
  async connected(mode, port, opts) {
    return connected(this.clientMode(mode, port, opts));
  }
  /** Runs `fn` on close. */
  defer(fn) {
    this.closers.push(fn);
  }
  async close() {
    // Attached: whatever the test did on the shared port, the app's own routes still answer.
    let appError = null;
    for (const srv of this.apps.splice(0)) {
      if (!srv.listening) continue;
      await checkApp(srv).catch((err) => (appError = appError || err));
    }
    for (const c of this.clients.splice(0)) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    for (const fn of this.closers.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // best effort
      }
    }
    for (const s of this.servers.splice(0)) {
      await closeServer(s);
    }
    if (appError) throw appError;
  }
}

/** Closes a Realtime or io server; never hangs the test process. */
async function closeServer(server, ms = 5000) {
  try {
    await within(Promise.resolve(server.close()), ms, "server close");
  } catch (err) {
    // Keep the exit path alive even if close failed: unref so the process can end.
    try {
      if (typeof server.unref === "function") server.unref();
    } catch {
      // ignore
    }
    process.emitWarning(`closing a test server failed: ${err.message}`);
  }
}

/** One HTTP request to loopback `port`; resolves `{status, headers, body}` (body as a string). */
function request(port, method, path, body, headers = {}) {
  const http = require("node:http");
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, agent: false, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: raw.toString(), raw });
      });
      res.on("error", reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: no answer in 5 s`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Writes `data` on a raw TCP connection; resolves what came back once the server closed it. */
function rawExchange(port, data, ms = 3000) {
  const net = require("node:net");
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the server kept a garbage connection open for ${ms} ms`));
    }, ms);
    sock.on("connect", () => sock.write(data));
    sock.on("data", (c) => chunks.push(c));
    sock.on("error", () => {});
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
  });
}

/**
 * Runs test files in a child `node --test` with `env` added; asserts they all passed (more
 * than `atLeast`). For suites that must also pass in another mode (the threaded loop, attached).
 */
async function runNested(files, env, atLeast) {
  const assert = require("node:assert/strict");
  const { spawn } = require("node:child_process");
  const path = require("node:path");
  const child = spawn(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=tap", ...files.map((f) => path.join(__dirname, f))], {
    cwd: path.join(__dirname, ".."),
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT")), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const code = await new Promise((resolve) => child.on("exit", resolve));
  const count = (k) => Number((out.match(new RegExp(`^# ${k} (\\d+)`, "m")) || [])[1]);
  assert.equal(code, 0, out.split("\n").filter((l) => l.startsWith("not ok")).join("\n") || out.slice(-2000));
  assert.ok(count("pass") > atLeast, `only ${count("pass")} tests passed`);
  assert.equal(count("fail"), 0);
}

/** `t => body(scope, t)` with a Scope closed afterwards. */
function scoped(body) {
  return async (t) => {
    const scope = new Scope();
    try {
      await body(scope, t);
    } finally {
      await scope.close();
    }
  };
}

/** Declares `name [mode]` for each of MODES; `body(mode, scope, t)`. */
function matrix(name, body, { timeout = 15000, modes = MODES } = {}) {
  for (const mode of modes) {
    test(`${name} [${mode.name}]`, { timeout }, scoped((scope, t) => body(mode, scope, t)));
  }
}

module.exports = {
  ATTACHED,
  MODES,
  appServer,
  checkApp,
  Scope,
  closeServer,
  collect,
  connect,
  connectMode,
  connected,
  delay,
  expectNo,
  matrix,
  once,
  rawExchange,
  request,
  runNested,
  scoped,
  startIo,
  startRealtime,
  toBuffer,
  transportOf,
  until,
  upgraded,
  waitFor,
  within,
};
