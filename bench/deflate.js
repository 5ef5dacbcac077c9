"use strict";
// perMessageDeflate on websockets: weroll-native and socket.io 4.8, each with the extension off
// and on (socket.io's default threshold, 1024 bytes), one worker each.
//
//   node bench/deflate.js [--clients 200] [--echoers 20] [--size 4000] [--seconds 5] [--rate 20]
//
// Two loads, one after the other, with `ws` clients speaking Engine.IO v4 and offering
// permessage-deflate as socket.io-client does (threshold 1024):
// - echo: `echoers` clients each send `size` bytes of chat-like text and wait for it back;
// - broadcast: `clients` clients; one of them broadcasts `size` bytes `rate` times a second.
// Server CPU is read from /proc; bytes are those the servers wrote to the clients' sockets.
const WebSocket = require("ws");
const { startRedis, startCluster, sleep } = require("./lib/spawn");
const { cpuSeconds } = require("./lib/proc");
const { numericArgs } = require("./lib/args");

function args() {
  return numericArgs({ clients: 200, echoers: 20, size: 4000, seconds: 5, rate: 20 }, "node bench/deflate.js [--clients N] [--echoers N] [--size BYTES] [--seconds N] [--rate N]");
}

/**
 * Message `n`: words of a 1000-word vocabulary in an order of its own (a seeded generator), so
 * that messages compress as chat text does, and no message repeats the one before.
 */
function text(size, n) {
  let x = (n * 2654435761 + 1) >>> 0;
  const words = [];
  for (let len = 0; len < size; ) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const w = `w${x % 1000} `;
    words.push(w);
    len += w.length;
  }
  return `${n}:${words.join("")}`.slice(0, size);
}

/** An Engine.IO v4 websocket client joined to the main namespace; `onEvent(name, data)`. */
function client(port, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: { threshold: 1024 } });
    ws.on("error", reject);
    ws.on("message", (m) => {
      const s = m.toString();
      if (s === "2") return ws.send("3");
      if (s.startsWith("0")) return ws.send("40");
      if (s.startsWith("40")) return resolve(ws);
      if (s.startsWith("42")) {
        const [name, data] = JSON.parse(s.slice(2));
        onEvent(name, data);
      }
    });
  });
}

const received = (clients) => clients.reduce((n, ws) => n + ws._socket.bytesRead, 0);

async function echo(port, o, pids) {
  const waiting = new Map();
  const clients = await Promise.all(Array.from({ length: o.echoers }, (_, i) => client(port, (name, d) => name === "echo" && waiting.get(i)(d))));
  const before = { cpu: cpuSeconds(pids), bytes: received(clients) };
  const until = Date.now() + o.seconds * 1000;
  let n = 0;
  await Promise.all(
    clients.map(async (ws, i) => {
      for (let k = 0; Date.now() < until; k++) {
        const data = text(o.size, k * o.echoers + i);
        const back = new Promise((resolve) => waiting.set(i, resolve));
        ws.send(`42${JSON.stringify(["m", ["echo", data]])}`);
        if ((await back) !== data) throw new Error("echo came back altered");
        n++;
      }
    }),
  );
  const out = { roundTrips: n, cpuPer1k: ((cpuSeconds(pids) - before.cpu) / n) * 1e3, bytesPerMessage: (received(clients) - before.bytes) / n };
  for (const ws of clients) ws.terminate();
  return out;
}

async function broadcast(port, o, pids) {
  let deliveries = 0;
  const clients = await Promise.all(Array.from({ length: o.clients }, () => client(port, (name) => name === "bcast" && deliveries++)));
  const before = { cpu: cpuSeconds(pids), bytes: received(clients) };
  const sent = o.seconds * o.rate;
  for (let k = 0; k < sent; k++) {
    clients[0].send(`42${JSON.stringify(["m", ["bcast", text(o.size, k)]])}`);
    await sleep(1000 / o.rate);
  }
  const expected = sent * o.clients;
  const deadline = Date.now() + 10000;
  while (deliveries < expected && Date.now() < deadline) await sleep(20);
  const out = { deliveries, expected, cpuPer10k: ((cpuSeconds(pids) - before.cpu) / deliveries) * 1e4, bytesPerDelivery: (received(clients) - before.bytes) / deliveries };
  for (const ws of clients) ws.terminate();
  return out;
}

async function main() {
  const o = args();
  const redis = await startRedis();
  const rows = [];
  try {
    for (const kind of ["weroll", "socketio"]) {
      for (const deflate of ["0", "1"]) {
        process.env.BENCH_DEFLATE = deflate;
        const cluster = await startCluster(kind, 1, redis);
        try {
          await sleep(300);
          const e = await echo(cluster.ports[0], o, cluster.pids);
          const b = await broadcast(cluster.ports[0], o, cluster.pids);
          rows.push({ kind, deflate, e, b });
          console.log(
            `${kind}, perMessageDeflate ${deflate === "1" ? "on " : "off"}: echo ${e.roundTrips} round trips, server CPU ${e.cpuPer1k.toFixed(3)} s per 1k, ${Math.round(e.bytesPerMessage)} bytes per echo; ` +
              `broadcast ${b.deliveries}/${b.expected} deliveries, server CPU ${b.cpuPer10k.toFixed(3)} s per 10k, ${Math.round(b.bytesPerDelivery)} bytes per delivery`,
          );
        } finally {
          await cluster.stop();
        }
      }
    }
    const get = (kind, deflate) => rows.find((r) => r.kind === kind && r.deflate === deflate);
    for (const kind of ["weroll", "socketio"]) {
      const [off, on] = [get(kind, "0"), get(kind, "1")];
      console.log(`${kind}, deflate on / off: echo CPU ${(on.e.cpuPer1k / off.e.cpuPer1k).toFixed(2)}, broadcast CPU ${(on.b.cpuPer10k / off.b.cpuPer10k).toFixed(2)}, bytes ${(on.b.bytesPerDelivery / off.b.bytesPerDelivery).toFixed(2)}`);
    }
    const [w, s] = [get("weroll", "1"), get("socketio", "1")];
    console.log(`deflate on, weroll-native / socket.io 4.8: echo CPU ${(w.e.cpuPer1k / s.e.cpuPer1k).toFixed(2)}, broadcast CPU ${(w.b.cpuPer10k / s.b.cpuPer10k).toFixed(2)}`);
  } finally {
    await redis.stop();
  }
}

main().catch((err) => {
  console.error(`bench/deflate: ${err.stack || err}`);
  process.exit(1);
});
