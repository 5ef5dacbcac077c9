"use strict";
// What TLS costs on each way of serving it: websocket echo through the JS handler over
//   plain     – weroll-native on its own port, no TLS (the reference)
//   native    – weroll-native's own TLS listener (`tls: {key, cert}`, rustls)
//   attached  – attached to an `https.Server`: TLS in Node, frames piped to the native side
// and socket.io 4.8 on an `https.Server` for comparison. Server CPU per round trip is read
// from /proc; the clients (Node `ws`) run in this process.
//
//   node bench/tls.js [--clients 50] [--seconds 5]
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawn, execFileSync } = require("node:child_process");
const WebSocket = require("ws");
const { cpuSeconds } = require("./lib/proc");
const { numericArgs } = require("./lib/args");

function args() {
  return numericArgs({ clients: 50, seconds: 5 }, "node bench/tls.js [--clients N] [--seconds N]");
}

/** The server of one mode, in a child process; resolves `{port, pid, stop}`. */
function startServer(mode, dir) {
  const script = `
    const fs = require("node:fs");
    const https = require("node:https");
    const key = fs.readFileSync(${JSON.stringify(path.join(dir, "key.pem"))});
    const cert = fs.readFileSync(${JSON.stringify(path.join(dir, "cert.pem"))});
    const mode = ${JSON.stringify(mode)};
    const echo = (io) => io.on("connection", (s) => s.on("m", (d) => s.emit("echo", d[1])));
    (async () => {
      let port;
      if (mode === "socketio") {
        const srv = https.createServer({ key, cert });
        echo(new (require("socket.io").Server)(srv, { transports: ["websocket"] }));
        await new Promise((r) => srv.listen(0, "127.0.0.1", r));
        port = srv.address().port;
      } else {
        const { Server } = require("weroll-native");
        if (mode === "attached") {
          const srv = https.createServer({ key, cert });
          await new Promise((r) => srv.listen(0, "127.0.0.1", r));
          const io = new Server(srv);
          echo(io);
          port = await io.ready();
        } else {
          const io = new Server(mode === "native" ? { tls: { key, cert } } : {});
          echo(io);
          port = await io.listen(0, "127.0.0.1");
        }
      }
      console.log("READY " + port);
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ["-e", script], { cwd: __dirname, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) resolve({ port: Number(m[1]), pid: child.pid, stop: () => child.kill("SIGKILL") });
    });
    child.on("exit", (code) => reject(new Error(`${mode} server exited (${code})`)));
  });
}

async function client(url, ca, until, counts) {
  const ws = new WebSocket(url, { ca });
  await new Promise((resolve, reject) => {
    ws.once("error", reject);
    ws.on("message", function first(m) {
      if (String(m).startsWith("0")) ws.send("40");
      else if (String(m).startsWith("40")) {
        ws.off("message", first);
        resolve();
      }
    });
  });
  let n = 0;
  await new Promise((resolve) => {
    ws.on("message", (m) => {
      const s = String(m);
      if (s === "2") return ws.send("3");
      if (!s.startsWith('42["echo"')) return;
      counts.n++;
      if (Date.now() >= until) return resolve();
      ws.send(`42["m",["echo",${++n}]]`);
    });
    ws.send(`42["m",["echo",${n}]]`);
  });
  ws.terminate();
}

async function main() {
  const o = args();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-bench-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")], { stdio: "pipe" });
  const ca = fs.readFileSync(path.join(dir, "cert.pem"));
  const results = {};
  try {
    for (const mode of ["plain", "native", "attached", "socketio"]) {
      const server = await startServer(mode, dir);
      try {
        const scheme = mode === "plain" ? "ws" : "wss";
        const url = `${scheme}://127.0.0.1:${server.port}/socket.io/?EIO=4&transport=websocket`;
        const counts = { n: 0 };
        // Connect first, then count only the echo phase.
        const before = cpuSeconds([server.pid]);
        const start = Date.now();
        const until = start + o.seconds * 1000;
        await Promise.all(Array.from({ length: o.clients }, () => client(url, ca, until, counts)));
        const cpu = cpuSeconds([server.pid]) - before;
        results[mode] = { roundTrips: counts.n, cpuPer100k: (cpu / counts.n) * 1e5, rate: counts.n / ((Date.now() - start) / 1000) };
        console.log(`${mode}: ${counts.n} round trips, ${Math.round(results[mode].rate)}/s, server CPU ${results[mode].cpuPer100k.toFixed(2)} s per 100k`);
      } finally {
        server.stop();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const ref = results.plain.cpuPer100k;
  for (const m of ["native", "attached", "socketio"]) console.log(`${m} / plain weroll-native: ${(results[m].cpuPer100k / ref).toFixed(2)}x CPU per round trip`);
}

main().catch((err) => {
  console.error(`bench/tls: ${err.stack || err}`);
  process.exit(1);
});
