"use strict";
// The streams mode (cluster.adapter: "streams"): @socket.io/redis-streams-adapter 0.3's wire
// format. The shared suite of fixtures/cluster-adapter-suite.js runs against a Node socket.io
// server with that adapter; then the stream itself: entries laid out as Node writes them, trimmed
// at maxLen, and broadcasts that survive Redis restarts and freezes (every worker reads on from
// its last entry), none lost, none twice, in order.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { createClient } = require("redis");
const u = require("./fixtures/cluster-util.js");
const { KEY, clusterAdapterSuite } = require("./fixtures/cluster-adapter-suite.js");

const redisBin = u.needBinary("redis-server");

describe("streams mode: 4 native workers and a Node server on one Redis 7", { skip: redisBin.skip, timeout: 90000 }, clusterAdapterSuite({ adapter: "streams", topology: "server" }));
describe("streams mode: 4 native workers and a Node server on a Redis Cluster", { skip: redisBin.skip, timeout: 120000 }, clusterAdapterSuite({ adapter: "streams", topology: "cluster" }));

describe("streams mode: the stream, and Redis going away", { skip: redisBin.skip, timeout: 90000 }, () => {
  const STREAM = "weroll-stream";
  const MAX_LEN = 300;
  const children = new u.Children();
  const redisProcess = new u.Children();
  let redis;
  let admin;
  let base;
  let clients = [];

  const connectAdmin = async () => {
    admin = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    admin.on("error", () => {});
    await u.within(admin.connect(), 5000, "node-redis connect");
  };

  before(async () => {
    redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(4);
    const config = { host: "127.0.0.1", port: redis.port, key: KEY, streamName: STREAM, maxLen: MAX_LEN };
    await Promise.all([0, 1, 2, 3].map((i) => u.forkWorker(children, i, { base, key: KEY, adapter: "streams", redis: config })));
    clients = [u.client(4, base), u.client(2, base + 1), u.client(4, base + 2), u.client(4, base + 3)];
    clients.forEach((c, i) => (c.label = `c${i}@${i}`));
    for (const [i, c] of clients.entries()) await u.shake(c, `st${i}`);
    await connectAdmin();
  });
  after(async () => {
    u.closeAll(clients);
    if (admin) await admin.quit().catch(() => {});
    await children.killAll();
    await redisProcess.killAll();
  });

  test("a broadcast is one entry: uid, nsp, type and data, in Node's order and encoding", async () => {
    const [c0, c1, c2, c3] = clients;
    await u.op(c1, "enterRoom", { room: "room-e" });
    const t = "entry-layout";
    await u.op(c0, "broadcastToRoom", { room: "room-e", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [c1], t);
    const entries = await admin.sendCommand(["XRANGE", STREAM, "-", "+"]);
    const mine = entries.filter(([, fields]) => fields.includes("3") && fields[7] && fields[7].includes(t));
    assert.equal(mine.length, 1, JSON.stringify(entries.slice(-5)));
    const [id, fields] = mine[0];
    assert.match(id, /^\d+-\d+$/);
    assert.deepEqual(fields.filter((_, i) => i % 2 === 0), ["uid", "nsp", "type", "data"]);
    assert.match(fields[1], /^[0-9a-f]{16}$/);
    assert.equal(fields[3], "/");
    assert.equal(fields[5], "3");
    const data = JSON.parse(fields[7]);
    assert.deepEqual(data.opts.rooms, ["room-e"]);
    assert.deepEqual(data.packet.data, ["evt", { tag: t }]);
    // The join that put c1 in room-e was an entry too (type 4 when another worker asks, or
    // nothing when the member's own worker joins it: local joins are not published).
    assert.equal(u.count(c2, t) + u.count(c3, t), 0);
  });

  test("the stream is trimmed near maxLen", async () => {
    const [c0, c1] = clients;
    for (let i = 0; i < MAX_LEN * 3; i++) c0.emit("m", ["op", { id: 0, what: "broadcastToAll", type: "evt", data: { tag: "fill", i } }]);
    await u.expectAll([c1], "fill", MAX_LEN * 3);
    const len = Number(await admin.sendCommand(["XLEN", STREAM]));
    // MAXLEN ~ trims whole radix-tree nodes (100 entries each by default).
    assert.ok(len >= MAX_LEN && len <= MAX_LEN + 100, `XLEN ${len}`);
  });

  for (const how of ["kill", "freeze"]) {
    test(`Redis ${how === "kill" ? "killed and restarted empty" : "frozen (SIGSTOP) for 2 s"} under traffic: every broadcast arrives once, in order`, async () => {
      await admin.quit().catch(() => {});
      admin = null;
      const [c0, c1, c2, c3] = clients;
      const tag = `streams-${how}`;
      const traffic = new u.Traffic([
        { tag: `${tag}-all`, sender: c0, what: "broadcastToAll", args: {} },
        { tag: `${tag}-to`, sender: c2, what: "sendTo", args: { clientID: c3.clientID } },
      ]);
      traffic.start();
      try {
        await u.delay(500);
        await u.outage(redis, how === "kill" ? "kill" : "stop", how === "kill" ? 1000 : 2000);
        await u.delay(1500);
      } finally {
        traffic.stop();
      }
      assert.ok(traffic.kinds[0].sent > 20, `sent ${traffic.kinds[0].sent}`);
      await u.expectAll([c1, c2, c3], `${tag}-all`, traffic.kinds[0].sent);
      await u.expectAll([c3], `${tag}-to`, traffic.kinds[1].sent);
      await connectAdmin();
    });
  }
});
