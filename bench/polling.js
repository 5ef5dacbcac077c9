"use strict";
// Long-polling echo: the same weroll-native worker on its own port and attached to an app's
// http server (`bench/servers/weroll-attached.js`), and socket.io 4.8 for comparison. Attached, every polling request is parsed
// by Node and crosses to the native engine and back once; this measures what that costs.
//
//   node bench/polling.js [--sessions 20] [--seconds 5]
//
// Each session is a socket.io v4 client spoken directly over HTTP keep-alive: POST
// `42["m",["echo",n]]`, then GET until the echo comes back. Server CPU is read from /proc.
const http = require("node:http");
const { startRedis, startCluster, sleep } = require("./lib/spawn");
const { cpuSeconds } = require("./lib/proc");
const { numericArgs } = require("./lib/args");

function args() {
  return numericArgs({ sessions: 20, seconds: 5 }, "node bench/polling.js [--sessions N] [--seconds N]");
}

function request(agent, port, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, agent, headers: body ? { "content-type": "text/plain;charset=UTF-8" } : {} }, (res) => {
      let b = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (b += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(b) : reject(new Error(`${method} ${res.statusCode} ${b}`))));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function session(port, until, counts) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const base = "/socket.io/?EIO=4&transport=polling";
  const open = await request(agent, port, "GET", base);
  const q = `${base}&sid=${encodeURIComponent(JSON.parse(open.slice(1)).sid)}`;
  await request(agent, port, "POST", q, "40");
  await request(agent, port, "GET", q);
  for (let n = 0; Date.now() < until; n++) {
    await request(agent, port, "POST", q, `42["m",["echo",${n}]]`);
    let got = "";
    while (!got.includes(`42["echo",${n}]`)) {
      got = await request(agent, port, "GET", q);
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
    const before = cpuSeconds(cluster.pids);
    const start = Date.now();
    const until = start + o.seconds * 1000;
    await Promise.all(Array.from({ length: o.sessions }, () => session(cluster.ports[0], until, counts)));
    const cpu = cpuSeconds(cluster.pids) - before;
    const secs = (Date.now() - start) / 1000;
    return { roundTrips: counts.n, rate: counts.n / secs, cpuPer10k: (cpu / counts.n) * 1e4 };
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
      console.log(`${kind}: ${out[kind].roundTrips} polling round trips, ${Math.round(out[kind].rate)}/s, server CPU ${out[kind].cpuPer10k.toFixed(3)} s per 10k`);
    }
    console.log(`attached / own port, CPU per round trip: ${(out.attached.cpuPer10k / out.weroll.cpuPer10k).toFixed(2)}`);
    console.log(`attached / socket.io 4.8, CPU per round trip: ${(out.attached.cpuPer10k / out.socketio.cpuPer10k).toFixed(2)}`);
  } finally {
    await redis.stop();
  }
}

main().catch((err) => {
  console.error(`bench/polling: ${err.stack || err}`);
  process.exit(1);
});
