"use strict";
// A weroll-style worker: a Realtime server on `PORT + worker index` with a small chat, and an
// HTTP server that serves the chat page and tells the page which worker to connect to.
// The same file runs under examples/cluster.js, pm2 (examples/ecosystem.config.js), the demo,
// and alone (`node examples/app.js`).
//
// Environment:
//   PORT        Realtime base port (default 3001); worker i listens on PORT + i
//   HTTP_PORT   chat page port (default PORT - 1); cluster workers share it
//   REDIS_URL   or REDIS_HOST / REDIS_PORT: join the cluster through Redis; without them each
//               worker is on its own (broadcasts reach only its own clients)
//   WEROLL_WORKER_COUNT  number of workers, for the round-robin fallback of GET /pick
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { Realtime, workerIndex } = require("weroll-native");

const PAGE = path.join(__dirname, "public", "index.html");
const CLIENT = path.join(path.dirname(require.resolve("socket.io-client/package.json")), "dist", "socket.io.min.js");
const ROOM = /^[\w-]{1,32}$/;

/** `{url}` or `{host, port}` from the environment, or undefined (no cluster). */
function redisFromEnv(env = process.env) {
  if (env.REDIS_URL) return { url: env.REDIS_URL };
  if (env.REDIS_HOST || env.REDIS_PORT) return { host: env.REDIS_HOST || "127.0.0.1", port: Number(env.REDIS_PORT || 6379) };
  return undefined;
}

function realtimeConfig(basePort, redis) {
  const config = {
    port: basePort,
    shakehand: false,
    // The page is served from another port; list its origin instead of "*" in production.
    cors: { origin: process.env.CORS_ORIGIN || "*" },
  };
  if (redis) config.cluster = { enable: true, redis };
  else config.port = basePort + workerIndex(); // the same port rule as cluster mode
  return config;
}

function chat(realtime, index) {
  realtime.on("shakeHandSuccess", (socket) => {
    socket.helper.enterRoom("lobby");
    socket.fire("welcome", { worker: index, port: realtime.port, id: socket.id, room: "lobby" });
  });
  realtime.on("join", (socket, data) => {
    const room = data && data.room;
    if (typeof room !== "string" || !ROOM.test(room)) return;
    for (const r of socket.rooms) if (r !== socket.id && !r.startsWith("###")) socket.helper.leaveRoom(r);
    socket.helper.enterRoom(room);
    socket.fire("joined", { room });
  });
  // A client's `socket.emit("m", ["chat", {text, room?}])` lands here.
  realtime.on("chat", (socket, data) => {
    const text = data && typeof data.text === "string" ? data.text.trim().slice(0, 500) : "";
    if (!text) return;
    const msg = { text, from: socket.id, worker: index, port: realtime.port, time: Date.now() };
    if (data.room && ROOM.test(data.room)) {
      msg.room = data.room;
      realtime.broadcastToRoom(data.room, "chat", msg);
    } else {
      realtime.broadcastToAll("chat", msg);
    }
  });
}

/** GET /pick: the least loaded worker's port (Realtime.pickServer), else round robin. */
function picker(realtime, basePort, count, index) {
  let next = index;
  return async () => {
    try {
      const address = await realtime.pickServer();
      const port = address && Number(address.slice(address.lastIndexOf(":") + 1));
      if (port) return { port, address, via: "pickServer" };
    } catch {
      // Redis unreachable right now: fall through
    }
    const port = count > 1 ? basePort + (next++ % count) : realtime.port;
    return { port, via: "round-robin" };
  };
}

/** GET /servers: the live workers and their connection counts (Realtime.servers). */
function lister(realtime) {
  return async () => {
    let list = [];
    try {
      list = await realtime.servers();
    } catch {
      // Redis unreachable right now: this worker alone
    }
    if (!list.length) list = [{ address: `127.0.0.1:${realtime.port}`, connections: realtime.io.stats().clients }];
    return list.sort((a, b) => a.address.localeCompare(b.address, undefined, { numeric: true }));
  };
}

function httpServer(pick, list) {
  const send = (res, status, type, body) => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };
  return http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (req.method !== "GET") return send(res, 405, "text/plain", "method not allowed\n");
    if (url.pathname === "/" || url.pathname === "/index.html") {
      return fs.readFile(PAGE, (err, body) => (err ? send(res, 500, "text/plain", `${err.message}\n`) : send(res, 200, "text/html; charset=utf-8", body)));
    }
    if (url.pathname === "/socket.io.min.js") {
      return fs.readFile(CLIENT, (err, body) => (err ? send(res, 500, "text/plain", `${err.message}\n`) : send(res, 200, "text/javascript", body)));
    }
    if (url.pathname === "/servers") {
      return list().then(
        (l) => send(res, 200, "application/json", JSON.stringify(l)),
        (err) => send(res, 500, "application/json", JSON.stringify({ error: err.message })),
      );
    }
    if (url.pathname === "/pick") {
      // Behind a proxy (examples/nginx.conf) the page connects to the proxy, which picks a worker.
      if (req.headers["x-forwarded-for"]) return send(res, 200, "application/json", JSON.stringify({ via: "proxy" }));
      return pick().then(
        (p) => send(res, 200, "application/json", JSON.stringify(p)),
        (err) => send(res, 500, "application/json", JSON.stringify({ error: err.message })),
      );
    }
    send(res, 404, "text/plain", "not found\n");
  });
}

/**
 * Starts one worker: `{realtime, http, port, httpPort, close()}`.
 * Options: basePort, httpPort (0: any), redis (`{url}` / `{host, port}` / undefined), workers.
 */
async function startApp(options = {}) {
  const basePort = options.basePort === undefined ? 3001 : options.basePort;
  const count = options.workers || 1;
  const index = workerIndex();
  const realtime = Realtime.createServer(realtimeConfig(basePort, options.redis));
  chat(realtime, index);
  await realtime.start();
  const server = httpServer(picker(realtime, basePort, count, index), lister(realtime));
  const httpPort = options.httpPort === undefined ? basePort - 1 : options.httpPort;
  try {
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(httpPort, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await realtime.close();
    throw new Error(`chat page: cannot listen on port ${httpPort}: ${err.message}`);
  }
  const close = async () => {
    server.closeAllConnections();
    await Promise.all([realtime.close(), new Promise((resolve) => server.close(() => resolve()))]);
  };
  return { realtime, http: server, port: realtime.port, httpPort: server.address().port, close };
}

async function main() {
  const env = process.env;
  const basePort = Number(env.PORT || 3001);
  const app = await startApp({
    basePort,
    httpPort: env.HTTP_PORT === undefined ? undefined : Number(env.HTTP_PORT),
    redis: redisFromEnv(env),
    workers: Number(env.WEROLL_WORKER_COUNT || 1),
  });
  const mode = app.realtime.config.cluster ? " (cluster)" : "";
  console.log(`[worker ${workerIndex()}] realtime on port ${app.port}${mode}, page on port ${app.httpPort}`);
  if (process.send) process.send("ready"); // tells the primary (examples/demo.js) this worker is up
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  process.on("disconnect", shutdown); // the cluster primary went away
}

// Run when started as a program: directly, as a Node cluster worker, or by pm2 (which loads
// the file from its own wrapper, so require.main is not this module there).
if (require.main === module || process.env.pm_id !== undefined) {
  main().catch((err) => {
    console.error(`[worker ${workerIndex()}] ${err.message}`);
    process.exit(1);
  });
}

module.exports = { startApp, redisFromEnv };
