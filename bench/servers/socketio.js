"use strict";
// Benchmark worker: socket.io 4.8 with the Redis adapter. One plain process per worker, on port
// BENCH_PORT + WEROLL_WORKER_INDEX. The app: client event `m` with ["bcast", d] broadcasts
// `bcast` d to everyone; ["echo", d] emits `echo` d back to the sender.
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const { workerEnv, serveControl } = require("./control");

async function main() {
  const { port, redisHost, redisPort } = workerEnv();
  const pub = createClient({ socket: { host: redisHost, port: redisPort } });
  const sub = pub.duplicate();
  pub.on("error", (err) => console.error(`socket.io worker: redis ${redisHost}:${redisPort}: ${err.message}`));
  sub.on("error", (err) => console.error(`socket.io worker: redis ${redisHost}:${redisPort}: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  // BENCH_DEFLATE=1 (bench/deflate.js): perMessageDeflate on, its default threshold (1024).
  const io = new Server(port, { adapter: createAdapter(pub, sub), perMessageDeflate: process.env.BENCH_DEFLATE === "1" });
  io.on("connection", (socket) => {
    socket.on("m", ([t, d]) => (t === "bcast" ? io.emit("bcast", d) : socket.emit("echo", d)));
  });
  serveControl(port, () => ({ clients: io.engine.clientsCount }));
}

main().catch((err) => {
  console.error(`socket.io worker: ${err.stack || err}`);
  process.exit(1);
});
