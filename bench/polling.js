"use strict";
// Long-polling echo: the same weroll-native worker on its own port and attached to an app's
// http server (`bench/servers/weroll-attached.js`), and socket.io 4.8 for comparison. Attached, every polling request is parsed
// by Node and crosses to the native engine and back once; this measures what that costs.
//
//   node bench/polling.js [--sessions 20] [--seconds 5] [--size 0] [--gzip 0]
//
// Each session is a socket.io v4 client spoken directly over HTTP keep-alive: POST
// `42["m",["echo",n]]` (with `--size`, n followed by that many bytes of text), then GET until the
// echo comes back. With `--gzip 1` the client accepts gzip, so the servers' httpCompression (on
// by default in both, from 1024 bytes) encodes the larger answers. Server CPU is read from /proc;
// the bytes per answer are those on the wire.
const http = require("node:http");
const zlib = require("node:zlib");
const { startRedis, startCluster, sleep } = require("./lib/spawn");
const { cpuSeconds } = require("./lib/proc");
const { numericArgs } = require("./lib/args");

function args() {
  return numericArgs({ sessions: 20, seconds: 5, size: 0, gzip: 0 }, "node bench/polling.js [--sessions N] [--seconds N] [--size BYTES] [--gzip 0|1]");
}

/** Bytes of the answers on the wire, and how many there were. */
const wire = { bytes: 0, answers: 0 };

function request(agent, port, method, path, body, gzip) {
  return new Promise((resolve, reject) => {
    const headers = body ? { "content-type": "text/plain;charset=UTF-8" } : {};
    if (gzip) headers["accept-encoding"] = "gzip";
    const req = http.request({ host: "127.0.0.1", port, method, path, agent, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        if (method === "GET") {
          wire.bytes += raw.length;
          wire.answers++;
        }
        const b = res.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(raw).toString() : raw.toString();
        return res.statusCode === 200 ? resolve(b) : reject(new Error(`${method} ${res.statusCode} ${b}`));
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function session(port, until, counts, o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const base = "/socket.io/?EIO=4&transport=polling";
  const open = await request(agent, port, "GET", base, undefined, o.gzip);
  const q = `${base}&sid=${encodeURIComponent(JSON.parse(open.slice(1)).sid)}`;
  await request(agent, port, "POST", q, "40");
  await request(agent, port, "GET", q, undefined, o.gzip);
  // Text that compresses as chat messages do, not as one repeated byte.
  const pad = o.size ? ":" + Array.from({ length: Math.ceil(o.size / 8) }, (_, i) => `w${(i * 7919) % 1000}`.padEnd(8, " ")).join("").slice(0, o.size) : "";
  for (let n = 0; Date.now() < until; n++) {
    const data = o.size ? JSON.stringify(`${n}${pad}`) : String(n);
    await request(agent, port, "POST", q, `42["m",["echo",${data}]]`);
    let got = "";
    while (!got.includes(`42["echo",${data}]`)) {
      got = await request(agent, port, "GET", q, undefined, o.gzip);
      if (got === "2") await request(agent, port, "POST", q, "3");
    }
    counts.n++;
  }
  agent.destroy();
}

async function run(kind, redis, o) {
  const cluster = await startCluster(kind, 1, redis);
  try {
    await sleep(500);
    const counts = { n: 0 };
    wire.bytes = 0;
    wire.answers = 0;
    const before = cpuSeconds(cluster.pids);
    const start = Date.now();
    const until = start + o.seconds * 1000;
    await Promise.all(Array.from({ length: o.sessions }, () => session(cluster.ports[0], until, counts, o)));
    const cpu = cpuSeconds(cluster.pids) - before;
    const secs = (Date.now() - start) / 1000;
    return { roundTrips: counts.n, rate: counts.n / secs, cpuPer10k: (cpu / counts.n) * 1e4, bytesPerAnswer: wire.bytes / Math.max(1, wire.answers) };
  } finally {
    await cluster.stop();
  }
}

async function main() {
  const o = args();
  const redis = await startRedis();
  try {
    const out = {};
    for (const kind of ["weroll", "attached", "socketio"]) {
      out[kind] = await run(kind, redis, o);
      console.log(`${kind}: ${out[kind].roundTrips} polling round trips, ${Math.round(out[kind].rate)}/s, server CPU ${out[kind].cpuPer10k.toFixed(3)} s per 10k, ${Math.round(out[kind].bytesPerAnswer)} bytes per answer`);
    }
    console.log(`attached / own port, CPU per round trip: ${(out.attached.cpuPer10k / out.weroll.cpuPer10k).toFixed(2)}`);
    console.log(`attached / socket.io 4.8, CPU per round trip: ${(out.attached.cpuPer10k / out.socketio.cpuPer10k).toFixed(2)}`);
    console.log(`own port / socket.io 4.8, CPU per round trip: ${(out.weroll.cpuPer10k / out.socketio.cpuPer10k).toFixed(2)}`);
  } finally {
    await redis.stop();
  }
}

main().catch((err) => {
  console.error(`bench/polling: ${err.stack || err}`);
  process.exit(1);
});
