"use strict";
// One worker of the classic-vs-sharded benchmark: a Realtime server in the cluster mode named by
// BENCH_ADAPTER ("classic" | "sharded", with BENCH_SUBSCRIPTION_MODE, | "streams", with BENCH_RECOVERY). Clients send
// `m` ["join", room]; the runner, over IPC, has the worker broadcast to its rooms at a rate.
const { Realtime } = require("weroll-native");

const base = Number(process.env.BENCH_PORT);
const cluster = {
  enable: true,
  redis: { host: "127.0.0.1", port: Number(process.env.BENCH_REDIS_PORT), key: "modes" },
  adapter: process.env.BENCH_ADAPTER || "classic",
};
if (process.env.BENCH_SUBSCRIPTION_MODE) cluster.subscriptionMode = process.env.BENCH_SUBSCRIPTION_MODE;
const connectionStateRecovery = process.env.BENCH_RECOVERY ? { maxDisconnectionDuration: 120000 } : undefined;

async function main() {
  const server = Realtime.createServer({ port: base, host: "127.0.0.1", shakehand: false, cluster, connectionStateRecovery }, true);
  server.on("join", (socket, room) => socket.helper.enterRoom(room));
  const port = await server.start();
  process.on("message", (msg) => {
    if (msg.cmd === "send") {
      // `rate` broadcasts a second to `rooms` in turn, for `ms`; each carries its send time.
      const every = 1000 / msg.rate;
      const end = Date.now() + msg.ms;
      let i = 0;
      let next = performance.now();
      const tick = () => {
        if (Date.now() >= end) return process.send({ ev: "sent", n: i });
        const now = performance.now();
        while (next <= now) {
          const room = msg.rooms[i % msg.rooms.length];
          server.broadcastToRoom(room, "evt", { t: performance.timeOrigin + performance.now(), i });
          i++;
          next += every;
        }
        setTimeout(tick, Math.max(0, next - performance.now()));
      };
      tick();
    } else if (msg.cmd === "stop") {
      server.close().finally(() => process.exit(0));
    }
  });
  process.send({ ev: "ready", port, pid: process.pid });
}

main().catch((err) => {
  console.error(`modes worker: ${err.stack || err}`);
  process.exit(1);
});
