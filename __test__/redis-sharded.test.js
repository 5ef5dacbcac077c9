"use strict";
// The sharded mode (cluster.adapter: "sharded"): the shared suite of
// fixtures/cluster-adapter-suite.js against Node's createShardedAdapter, on one redis-server 7
// and on a Redis Cluster; in the dynamic mode a room's channel is subscribed by exactly the
// servers with members, in the static mode there are no room channels; a Redis blip loses nothing.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { createClient } = require("redis");
const u = require("./fixtures/cluster-util.js");
const { KEY, clusterAdapterSuite, shardChannels } = require("./fixtures/cluster-adapter-suite.js");

const redisBin = u.needBinary("redis-server");

describe("sharded mode: 4 native workers and a Node server on one Redis 7", { skip: redisBin.skip, timeout: 90000 }, clusterAdapterSuite({ adapter: "sharded", topology: "server" }));
describe("sharded mode: 4 native workers and a Node server on a Redis Cluster", { skip: redisBin.skip, timeout: 120000 }, clusterAdapterSuite({ adapter: "sharded", topology: "cluster" }));

describe("sharded mode, static subscriptions, through a Redis blip", { skip: redisBin.skip, timeout: 60000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  let redis;
  let admin;
  let base;
  let clients = [];

  before(async () => {
    redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(2);
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: KEY, adapter: "sharded", subscriptionMode: "static" })));
    clients = [u.client(4, base), u.client(2, base + 1), u.client(4, base + 1)];
    clients.forEach((c, i) => (c.label = `c${i}`));
    for (const [i, c] of clients.entries()) await u.shake(c, `s${i}`);
  });
  after(async () => {
    u.closeAll(clients);
    if (admin) await admin.quit().catch(() => {});
    await children.killAll();
    await redisProcess.killAll();
  });

  test("no room channels in the static mode; room broadcasts still reach members", async () => {
    const [c0, c1, c2] = clients;
    await u.op(c1, "enterRoom", { room: "room-s" });
    admin = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    admin.on("error", () => {});
    await admin.connect();
    const channels = await shardChannels(admin);
    assert.ok(channels.includes(`${KEY}#/#`), channels.join(" "));
    assert.ok(!channels.some((ch) => ch.includes("room-s") || ch.includes("###")), `no room channel: ${channels.join(" ")}`);
    const t = "static-room";
    await u.op(c0, "broadcastToRoom", { room: "room-s", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [c1], t);
    assert.equal(u.count(c2, t), 0);
  });

  test("Redis killed for 1 s under traffic: every message arrives once, in order", async () => {
    await admin.quit().catch(() => {});
    admin = null;
    const [c0, c1, c2] = clients;
    const traffic = new u.Traffic([{ tag: "sharded-blip", sender: c0, what: "broadcastToAll", args: {} }]);
    traffic.start();
    try {
      await u.delay(500);
      await u.outage(redis, "kill", 1000);
      await u.delay(1500);
    } finally {
      traffic.stop();
    }
    await u.expectAll([c1, c2], "sharded-blip", traffic.kinds[0].sent);
  });
});

describe("sharded mode refuses what it cannot do", () => {
  test("an unknown cluster.adapter or subscriptionMode is an error naming the key", async () => {
    const { Realtime } = require("..");
    for (const [cluster, error] of [
      [{ adapter: "rivers" }, /cluster\.adapter must be "classic", "sharded" or "streams"/],
      [{ adapter: "sharded", subscriptionMode: "sometimes" }, /cluster\.subscriptionMode must be/],
    ]) {
      const server = Realtime.createServer(
        { port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, redis: { host: "127.0.0.1", port: 1 }, ...cluster } },
        true,
      );
      server.on("error", () => {});
      await assert.rejects(server.start(), error);
      await server.close().catch(() => {});
    }
  });

  test("a Redis without sharded pub/sub (as before 7.0) makes start() fail naming cluster.adapter", { skip: redisBin.skip, timeout: 30000 }, async () => {
    // Only Redis 7 is installable here: this one refuses PUBSUB SHARDNUMSUB (and SPUBLISH,
    // SSUBSCRIBE) as unknown commands, which is what a Redis 6 answers.
    const { Realtime } = require("..");
    const children = new u.Children();
    const redis = await new u.RedisServer(children, 0, ["--rename-command", "PUBSUB", "", "--rename-command", "SPUBLISH", "", "--rename-command", "SSUBSCRIBE", ""]).start();
    try {
      const sharded = Realtime.createServer(
        { port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, adapter: "sharded", redis: { host: "127.0.0.1", port: redis.port } } },
        true,
      );
      sharded.on("error", () => {});
      await assert.rejects(sharded.start(), /cluster\.adapter: "sharded" needs Redis 7\.0 or newer/);
      await sharded.close().catch(() => {});
    } finally {
      await redis.stop();
      await children.killAll();
    }
  });
});
