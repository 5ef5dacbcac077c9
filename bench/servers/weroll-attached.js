"use strict";
// Benchmark worker: the weroll-native worker of weroll.js, attached to an app's own http
// server (Realtime `config.server`) instead of a port of its own. The app's server answers
// GET /hello itself; everything under /socket.io/ is the native engine's.
const http = require("node:http");
const { Realtime } = require("weroll-native");
const { workerEnv, serveControl } = require("./control");

async function main() {
  const { port: appPort, redisHost, redisPort } = workerEnv();
  const app = http.createServer((req, res) => res.end(req.url === "/hello" ? "hello" : "not here"));
  await new Promise((resolve, reject) => app.once("error", reject).listen(appPort, resolve));
  const server = Realtime.createServer({
    server: app,
    shakehand: false,
    cluster: { enable: true, redis: { host: redisHost, port: redisPort, key: "bench" } },
  });
  server.on("bcast", (socket, d) => server.broadcastToAll("bcast", d));
  server.on("echo", (socket, d) => socket.emit("echo", d));
  const port = await server.start();
  serveControl(port, () => server.io.stats());
}

main().catch((err) => {
  console.error(`weroll-native attached worker: ${err.stack || err}`);
  process.exit(1);
});
