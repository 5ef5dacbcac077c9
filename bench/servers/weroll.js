"use strict";
// Benchmark worker: weroll-native's Realtime API, clustered over Redis. WEROLL_WORKER_INDEX
// picks the port (BENCH_PORT + index). The app: client event `m` with ["bcast", d] broadcasts
// `bcast` d to everyone; ["echo", d] emits `echo` d back to the sender.
const { Realtime } = require("weroll-native");
const { workerEnv, serveControl } = require("./control");

async function main() {
  const { base, redisHost, redisPort } = workerEnv();
  const server = Realtime.createServer({
    port: base,
    shakehand: false,
    cluster: { enable: true, redis: { host: redisHost, port: redisPort, key: "bench" } },
    // BENCH_RECOVERY=1 (server kind `recovery`): connection state recovery on.
    connectionStateRecovery: process.env.BENCH_RECOVERY === "1" ? {} : undefined,
    // BENCH_DEFLATE=1 (bench/deflate.js): perMessageDeflate on, socket.io's default threshold.
    perMessageDeflate: process.env.BENCH_DEFLATE === "1",
  });
  server.on("bcast", (socket, d) => server.broadcastToAll("bcast", d));
  server.on("echo", (socket, d) => socket.emit("echo", d));
  const port = await server.start();
  serveControl(port, () => server.io.stats());
}

main().catch((err) => {
  console.error(`weroll-native worker: ${err.stack || err}`);
  process.exit(1);
});
