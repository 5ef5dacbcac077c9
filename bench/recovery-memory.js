"use strict";
// Memory of connection state recovery: RSS per kept event. A weroll-native server with
// recovery on broadcasts `--events` events of about `--bytes` bytes (kept whether or not anyone
// is away, as socket.io keeps them), and the growth of its RSS is divided by what it keeps.
//
//   node --expose-gc bench/recovery-memory.js [--events 100000] [--bytes 100]
const { Server } = require("weroll-native");
const { numericArgs } = require("./lib/args");

function args() {
  return numericArgs({ events: 100000, bytes: 100 }, "node --expose-gc bench/recovery-memory.js [--events N] [--bytes N]");
}

async function main() {
  const o = args();
  const io = new Server({ connectionStateRecovery: { maxPackets: o.events, maxBytes: 1 << 30 } });
  await io.listen(0, "127.0.0.1");
  const text = "x".repeat(Math.max(0, o.bytes - 20));
  const settle = async () => {
    if (global.gc) global.gc();
    await new Promise((r) => setTimeout(r, 300));
    return process.memoryUsage().rss;
  };
  const before = await settle();
  for (let i = 0; i < o.events; i++) {
    io.emit("msg", { i, text });
    if (i % 5000 === 4999) await new Promise((r) => setImmediate(r));
  }
  const after = await settle();
  const kept = io.stats().recovery;
  console.log(`${kept.packets} events kept, ${(kept.bytes / kept.packets).toFixed(0)} bytes each as counted; RSS +${((after - before) / 1048576).toFixed(1)} MiB = ${((after - before) / kept.packets).toFixed(0)} bytes per kept event`);
  await io.close();
}

main().catch((err) => {
  console.error(`bench/recovery-memory: ${err.stack || err}`);
  process.exit(1);
});
