"use strict";
// Classic vs sharded pub/sub vs the stream with room-scoped traffic: 4 native workers on one redis-server, R
// rooms whose members are on one or two workers, each room broadcast to by a worker with no
// members (so every delivery crosses Redis). For each mode: receivers' latency (p50/p99),
// workers' CPU per delivery, Redis CPU and bytes Redis sent per broadcast, and which workers a
// room broadcast reached (from Redis: subscribers of each room channel). Writes
// bench/MODES.md. `node bench/modes/run.js [--quick]`; loopback only, every wait bounded.
const fs = require("node:fs");
const path = require("node:path");
const { fork } = require("node:child_process");
const net = require("node:net");
const { io: connect } = require("socket.io-client");
const { startRedis, redisVersion } = require("../lib/spawn");
const { cpuSeconds } = require("../lib/proc");

const QUICK = process.argv.includes("--quick");
const WORKERS = 4;
const ROOMS = 40;
const PER_WORKER = QUICK ? 2 : 5; // members of a room on each of its workers
const RATE = QUICK ? 200 : 800; // broadcasts per second, all workers together
const SECONDS = QUICK ? 3 : 10;
const MODES = [
  { name: "classic", adapter: "classic" },
  { name: "sharded static", adapter: "sharded", mode: "static" },
  { name: "sharded dynamic", adapter: "sharded", mode: "dynamic" },
  { name: "streams", adapter: "streams" },
  { name: "streams + recovery", adapter: "streams", recovery: true },
];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Room k's members live on worker k % 4, and for odd k also on worker (k + 1) % 4. */
const homes = (k) => (k % 2 ? [k % WORKERS, (k + 1) % WORKERS] : [k % WORKERS]);
/** Room k is broadcast to by a worker where it has no members. */
const sender = (k) => (k + 2) % WORKERS;

function redisCommand(port, args) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let buf = "";
    const timer = setTimeout(() => (s.destroy(), reject(new Error("redis timeout"))), 3000);
    s.on("data", (d) => {
      buf += d;
      if (/\r\n$/.test(buf) && (buf[0] !== "$" || buf.split("\r\n").length >= 3) && (buf[0] !== "*" || buf.endsWith("\r\n"))) {
        clearTimeout(timer);
        s.end();
        resolve(buf);
      }
    });
    s.on("error", reject);
    s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(""));
  });
}
async function redisInfo(port) {
  const text = await redisCommand(port, ["INFO", "all"]);
  const field = (k) => Number((new RegExp(`^${k}:([\\d.]+)`, "m").exec(text) || [])[1] || 0);
  return { cpu: field("used_cpu_sys") + field("used_cpu_user"), out: field("total_net_output_bytes") };
}
async function subscribers(port, channel, sharded) {
  const reply = await redisCommand(port, ["PUBSUB", sharded ? "SHARDNUMSUB" : "NUMSUB", channel]);
  return Number((/:(\d+)\r\n$/.exec(reply) || [])[1] || 0);
}

async function startWorkers(mode, redisPort, base) {
  const workers = [];
  for (let i = 0; i < WORKERS; i++) {
    const env = { ...process.env, BENCH_PORT: String(base), WEROLL_WORKER_INDEX: String(i), BENCH_REDIS_PORT: String(redisPort), BENCH_ADAPTER: mode.adapter };
    if (mode.mode) env.BENCH_SUBSCRIPTION_MODE = mode.mode;
    if (mode.recovery) env.BENCH_RECOVERY = "1";
    const child = fork(path.join(__dirname, "worker.js"), [], { env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    workers.push(child);
  }
  await Promise.all(
    workers.map(
      (w) =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("worker did not start")), 15000);
          w.on("message", (m) => m.ev === "ready" && (clearTimeout(t), (w.pid2 = m.pid), resolve()));
          w.on("exit", (c) => reject(new Error(`worker exited ${c}`)));
        }),
    ),
  );
  return workers;
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

async function runMode(mode, redisPort, base) {
  const workers = await startWorkers(mode, redisPort, base);
  const clients = [];
  const latencies = [];
  let delivered = 0;
  for (let k = 0; k < ROOMS; k++) {
    for (const w of homes(k)) {
      for (let m = 0; m < PER_WORKER; m++) {
        const c = connect(`http://127.0.0.1:${base + w}`, { transports: ["websocket"], forceNew: true, reconnection: false });
        c.on("evt", (d) => {
          delivered++;
          latencies.push(performance.timeOrigin + performance.now() - d.t);
        });
        clients.push(c);
        await new Promise((resolve, reject) => (c.once("connect", resolve), c.once("connect_error", reject)));
        c.emit("m", ["join", `room-${k}`]);
      }
    }
  }
  await sleep(1500);
  const sharded = mode.adapter === "sharded";
  const channel = (k) => (sharded ? `modes#/#room-${k}#` : mode.adapter === "streams" ? "modes#/#" : "modes-request#/#");
  const reach = [];
  for (let k = 0; k < 4; k++) reach.push(await subscribers(redisPort, channel(k), sharded));
  const expectedPerBroadcast = (k) => homes(k).length * PER_WORKER;
  const pids = workers.map((w) => w.pid);
  const cpu0 = cpuSeconds(pids);
  const r0 = await redisInfo(redisPort);
  latencies.length = 0;
  delivered = 0;
  const sentBy = await Promise.all(
    workers.map(
      (w, i) =>
        new Promise((resolve) => {
          const rooms = [];
          for (let k = 0; k < ROOMS; k++) if (sender(k) === i) rooms.push(`room-${k}`);
          w.once("message", (m) => resolve(m.n || 0));
          w.send({ cmd: "send", rooms, rate: RATE / WORKERS, ms: SECONDS * 1000 });
        }),
    ),
  );
  await sleep(1000);
  const cpu = cpuSeconds(pids) - cpu0;
  const r1 = await redisInfo(redisPort);
  const broadcasts = sentBy.reduce((a, b) => a + b, 0);
  // Rooms alternate one and two homes: the deliveries each broadcast owes, on average.
  let owed = 0;
  for (let k = 0; k < ROOMS; k++) owed += expectedPerBroadcast(k);
  const expected = Math.round((broadcasts * owed) / ROOMS);
  latencies.sort((a, b) => a - b);
  for (const c of clients) c.close();
  for (const w of workers) w.send({ cmd: "stop" });
  await Promise.all(workers.map((w) => new Promise((resolve) => (w.exitCode !== null ? resolve() : w.once("exit", resolve)))));
  return {
    mode: mode.name,
    broadcasts,
    delivered,
    expected,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuPerDelivery: (cpu / Math.max(1, delivered)) * 1e6,
    redisCpuPerBroadcast: ((r1.cpu - r0.cpu) / Math.max(1, broadcasts)) * 1e6,
    redisBytesPerBroadcast: (r1.out - r0.out) / Math.max(1, broadcasts),
    reach,
  };
}

async function main() {
  const redis = await startRedis();
  const rows = [];
  try {
    for (const mode of MODES) {
      const base = 30000 + Math.floor(Math.random() * 1000) * 4;
      process.stderr.write(`mode ${mode.name}...\n`);
      rows.push(await runMode(mode, redis.port, base));
    }
  } finally {
    await redis.stop();
  }
  const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  const lines = [
    "# Classic vs sharded pub/sub vs streams: room-scoped traffic on 4 workers",
    "",
    `Written by \`bench/modes/run.js\`${QUICK ? " --quick" : ""} on ${new Date().toISOString().slice(0, 10)}; redis-server ${redisVersion()}.`,
    "",
    `${ROOMS} rooms, each with ${PER_WORKER} members on one worker (even rooms) or on two (odd rooms); every room is broadcast to by a worker where it has no members, ${RATE} broadcasts/s in all for ${SECONDS} s, so every delivery crosses Redis. Latency is from the broadcast call to the client's handler (the clients run in the bench process); CPU is the 4 workers' utime+stime from /proc; Redis figures are from INFO (CPU and bytes sent, per broadcast).`,
    "",
    "| mode | broadcasts | deliveries (expected) | p50 ms | p99 ms | worker CPU µs / delivery | Redis CPU µs / broadcast | Redis bytes sent / broadcast | subscribers of rooms 0–3's channel |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${r.broadcasts} | ${r.delivered} (${r.expected}) | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.cpuPerDelivery)} | ${f(r.redisCpuPerBroadcast)} | ${f(r.redisBytesPerBroadcast, 0)} | ${r.mode === "classic" ? `(all 4 on the pattern; NUMSUB of the request channel: ${r.reach[0]})` : r.mode.startsWith("streams") ? `(all 4 read the stream; NUMSUB of the namespace's channel: ${r.reach[0]})` : r.reach.join(", ")} |`,
    ),
    "",
    "In the classic mode every broadcast goes to every worker's pattern subscription; in the sharded static mode every broadcast goes to every worker through the namespace's shard channel; in the dynamic mode a room broadcast goes to the room's own channel, whose subscribers are exactly the workers with members (1 or 2 here), which is what the bytes Redis sends per broadcast show. In the streams mode every broadcast is one entry appended to the stream, which every worker reads (XREAD BLOCK, up to 100 entries a call) from the last entry it read; with recovery on, each local delivery also waits for its entry id, which is the offset clients get.",
    "",
  ];
  const out = path.join(__dirname, "..", QUICK ? "out" : ".", QUICK ? "MODES-quick.md" : "MODES.md");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, lines.join("\n"));
  process.stdout.write(lines.join("\n") + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
