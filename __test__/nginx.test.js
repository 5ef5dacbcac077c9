"use strict";
// nginx in front of 4 workers (weroll's deployment: `upstream { ip_hash; ... }`, websocket
// upgrade headers, X-Forwarded-For): socket.io-client 2.x and 4.x connect through it over
// polling and upgrade to websocket, socket.info.ip is the client's address as nginx forwards it,
// and a broadcast reaches the clients of every worker. Clients connect from different
// 127.0.K.1 source addresses (ip_hash keys on the first three octets) to land on every worker.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const u = require("./fixtures/cluster-util.js");

const WORKERS = 4;
const redisBin = u.needBinary("redis-server");
const nginxBin = u.needBinary("nginx");

function nginxConf(dir, listenPort, base) {
  const servers = Array.from({ length: WORKERS }, (_, i) => `    server 127.0.0.1:${base + i};`).join("\n");
  const tmp = (name) => path.join(dir, name);
  return `daemon off;
master_process on;
worker_processes 1;
pid ${tmp("nginx.pid")};
error_log ${tmp("error.log")} info;
events { worker_connections 512; }
http {
  access_log ${tmp("access.log")};
  client_body_temp_path ${tmp("client_body")};
  proxy_temp_path ${tmp("proxy")};
  fastcgi_temp_path ${tmp("fastcgi")};
  uwsgi_temp_path ${tmp("uwsgi")};
  scgi_temp_path ${tmp("scgi")};
  map $http_upgrade $connection_upgrade {
    default upgrade;
    '' close;
  }
  upstream realtime {
    ip_hash;
${servers}
  }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://realtime;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 120s;
    }
  }
}
`;
}

describe("nginx (ip_hash) in front of 4 workers", { skip: redisBin.skip || nginxBin.skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const agents = [];
  let clients = [];
  let dir;
  let base;
  let nginxPort;
  let nginxLog = "";

  /** A client through nginx from source address `from` (127.0.K.1), polling then websocket. */
  function viaNginx(version, from, opts = {}) {
    const o = { transports: ["polling", "websocket"], ...opts };
    if (from) {
      const agent = new http.Agent({ localAddress: from });
      agents.push(agent);
      o.agent = agent;
    }
    const c = u.client(version, nginxPort, o);
    c.label = `v${version}@${from || "127.0.0.1"}`;
    clients.push(c);
    return c;
  }

  /** Resolves once `c` runs over a websocket (its engine upgraded). */
  function upgraded(c) {
    return u.until(() => c.io.engine && c.io.engine.transport && c.io.engine.transport.name === "websocket", `${c.label} upgrades to websocket`, 5000);
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-"));
    fs.chmodSync(dir, 0o755); // nginx workers may run as another user
    const redis = await new u.RedisServer(children).start();
    base = await u.freePorts(WORKERS);
    await u.startLauncher(children, { base, redisPort: redis.port, workers: WORKERS });
    nginxPort = await u.freePorts(1);
    const conf = path.join(dir, "nginx.conf");
    fs.writeFileSync(conf, nginxConf(dir, nginxPort, base));
    const child = children.track(spawn(nginxBin.path, ["-p", dir, "-c", conf, "-e", path.join(dir, "error.log")], { stdio: ["ignore", "pipe", "pipe"] }));
    child.stdout.on("data", (d) => (nginxLog += d));
    child.stderr.on("data", (d) => (nginxLog += d));
    await u.until(() => child.exitCode === null && u.canConnect(nginxPort), `nginx listens on ${nginxPort}`, 5000).catch((err) => {
      let log = nginxLog;
      try {
        log += fs.readFileSync(path.join(dir, "error.log"), "utf8");
      } catch {
        // no log yet
      }
      err.message += `\n${log}`;
      throw err;
    });
  });

  after(async () => {
    u.closeAll(clients);
    clients = [];
    for (const a of agents) a.destroy();
    await children.killAll();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const version of [4, 2]) {
    test(`socket.io-client ${version}.x connects through nginx over polling and upgrades to websocket`, async () => {
      const c = viaNginx(version, null);
      await u.connected(c);
      await u.shake(c, `v${version}`);
      await upgraded(c);
      assert.equal(c.io.engine.transport.name, "websocket");
      const info = await u.op(c, "info");
      assert.ok(info.port >= base && info.port < base + WORKERS, `served by a worker: ${info.port}`);
      assert.equal(info.ip, "127.0.0.1", "nginx forwards the client address");
      // After the upgrade, messages still flow both ways over the websocket.
      const t = `nginx-ws-v${version}`;
      await u.op(c, "send", { type: "evt", data: { tag: t } });
      await u.until(() => u.count(c, t) === 1, `${t} arrives`, 3000);
    });
  }

  for (const version of [4, 2]) {
    test(`socket.io-client ${version}.x: socket.info.ip is the first X-Forwarded-For entry`, async () => {
      const from = `127.0.${10 + version}.1`;
      const plain = viaNginx(version, from);
      await u.shake(plain, `ip${version}a`);
      let info = await u.op(plain, "info");
      assert.equal(info.forwarded, from, "nginx sets X-Forwarded-For to the client address");
      assert.equal(info.ip, from);

      const claimed = "203.0.113.7";
      const proxied = viaNginx(version, from, { extraHeaders: { "X-Forwarded-For": claimed } });
      await u.shake(proxied, `ip${version}b`);
      await upgraded(proxied);
      info = await u.op(proxied, "info");
      assert.equal(info.forwarded, `${claimed}, ${from}`, "nginx appends the client address ($proxy_add_x_forwarded_for)");
      assert.equal(info.ip, claimed);
    });
  }

  test("clients spread by ip_hash over every worker all get a broadcast exactly once", async () => {
    // Source addresses 127.0.K.1 until every worker has a client (ip_hash: first three octets).
    const spread = new Map();
    const list = [];
    for (let k = 20; k < 80 && spread.size < WORKERS; k++) {
      const version = k % 2 ? 2 : 4;
      const c = viaNginx(version, `127.0.${k}.1`);
      await u.shake(c, `h${k}`);
      const info = await u.op(c, "info");
      c.workerPort = info.port;
      if (!spread.has(info.port)) {
        spread.set(info.port, c);
        list.push(c);
      } else {
        c.close();
      }
    }
    assert.equal(spread.size, WORKERS, `ip_hash spread clients over ${[...spread.keys()]}`);
    // Sticky: a second client from the same address lands on the same worker.
    const first = list[0];
    const again = viaNginx(4, first.label.split("@")[1]);
    await u.shake(again, "sticky");
    assert.equal((await u.op(again, "info")).port, first.workerPort, "ip_hash is sticky per address");
    list.push(again);

    await Promise.all(list.map(upgraded));
    for (const from of [list[0], list[3]]) {
      const t = `nginx-all-${from.label}`;
      await u.op(from, "broadcastToAll", { type: "evt", data: { tag: t } });
      await u.expectDelivery(assert, list, list, t);
    }
  });
});
