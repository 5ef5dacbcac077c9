"use strict";
// The sharded mode (cluster.adapter: "sharded"): 4 native workers and a Node socket.io 4.8
// server with @socket.io/redis-adapter's createShardedAdapter on one redis-server 7, with
// socket.io-client 4.x and 2.x. The weroll API works across the native workers, broadcasts
// (namespace-wide, to a room, binary) cross both ways, fetchSockets, serverSideEmit and
// broadcasts with acks span Node and native servers; in the dynamic mode a room's channel is
// subscribed by exactly the servers with members, in the static mode there are no room
// channels; a Redis blip loses nothing.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { Server: NodeServer } = require("socket.io");
const { createShardedAdapter } = require("@socket.io/redis-adapter");
const { createClient, createCluster } = require("redis");
const u = require("./fixtures/cluster-util.js");

const redisBin = u.needBinary("redis-server");
const KEY = "shard";

/** Shard channels and their subscriber counts, as Redis sees them. */
async function shardChannels(client, pattern = `${KEY}#*`) {
  const channels = await client.sendCommand(["PUBSUB", "SHARDCHANNELS", pattern]);
  return channels.sort();
}
/** Subscribers of a shard channel, added up over `clients` (one per master of a Cluster). */
async function shardNumSub(clients, channel) {
  let n = 0;
  for (const client of [].concat(clients)) n += Number((await client.sendCommand(["PUBSUB", "SHARDNUMSUB", channel]))[1]);
  return n;
}

/** `topology`: "server" (one redis-server 7) or "cluster" (a Redis Cluster of 3 masters + 3 replicas). */
const shardedSuite = (topology) => () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const redisClients = [];
  let redis;
  let base;
  let io;
  let httpServer;
  let admin;
  let cluster;
  const byName = {};
  let native = [];
  let nodeClients = [];
  let all = [];
  let tagSeq = 0;
  const tag = (what) => `${what}-${++tagSeq}`;
  const evt = (t, extra = {}) => ({ type: "evt", data: { tag: t, ...extra } });
  const ids = (...cs) => cs.map((c) => c.socketID).sort();

  before(async () => {
    base = await u.freePorts(4);
    const redisClient = async (port) => {
      const c = createClient({ url: `redis://127.0.0.1:${port}` });
      c.on("error", () => {});
      redisClients.push(c);
      await u.within(c.connect(), 5000, "node-redis connect");
      return c;
    };
    let pub;
    if (topology === "cluster") {
      cluster = await new u.RedisCluster(redisProcess).start();
      const seeds = cluster.seeds();
      await Promise.all([0, 1, 2, 3].map((i) => u.forkWorker(children, i, { base, key: KEY, adapter: "sharded", redis: { cluster: [seeds[i]], key: KEY } })));
      admin = [];
      for (const m of await cluster.masters()) admin.push(await redisClient(m.port));
      pub = createCluster({ rootNodes: cluster.seeds(1).map((n) => ({ url: `redis://${n.host}:${n.port}` })) });
      pub.on("error", () => {});
      redisClients.push(pub);
      await u.within(pub.connect(), 10000, "node-redis cluster connect");
    } else {
      redis = await new u.RedisServer(redisProcess).start();
      await Promise.all([0, 1, 2, 3].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: KEY, adapter: "sharded" })));
      admin = await redisClient(redis.port);
      pub = await redisClient(redis.port);
    }
    const sub = pub.duplicate();
    sub.on("error", () => {});
    redisClients.push(sub);
    await sub.connect();
    httpServer = http.createServer();
    io = new NodeServer(httpServer, { allowEIO3: true });
    io.adapter(createShardedAdapter(pub, sub, { channelPrefix: KEY }));
    io.on("connection", (socket) => {
      socket.on("join", (room, cb) => {
        socket.join(room);
        cb(socket.id);
      });
      socket.on("leave", (room, cb) => {
        socket.leave(room);
        cb();
      });
    });
    io.on("whoami", (...args) => args.pop()({ node: true, args }));
    // A Node server taking part in weroll's invoke (as a worker that has no producers).
    io.on("weroll:invoke", (method, args, cb) => cb && cb({ result: method === "kick" ? 0 : "node" }));
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

    // Native clients (clientIDs u1..u8), two per worker, one of each generation.
    for (let i = 0; i < 4; i++) {
      for (const [version, transports] of [
        [4, ["websocket"]],
        [2, ["polling", "websocket"]],
      ]) {
        const c = u.client(version, base + i, { transports });
        c.label = `v${version}@${i}`;
        byName[c.label] = c;
        native.push(c);
        await u.shake(c, native.length);
      }
    }
    for (const version of [4, 2]) {
      const c = u.client(version, httpServer.address().port, { transports: ["polling", "websocket"] });
      c.label = `v${version}@node`;
      byName[c.label] = c;
      await u.connected(c);
      c.socketID = await new Promise((resolve) => c.emit("join", `own-${c.label}`, resolve));
      nodeClients.push(c);
    }
    all = native.concat(nodeClients);
    await u.until(async () => (await io.of("/").adapter.serverCount()) === 5, "Node counts 5 servers", 5000);
  });
  after(async () => {
    u.closeAll(all);
    if (io) await u.within(new Promise((resolve) => io.close(() => resolve())), 5000, "Node io.close").catch(() => {});
    for (const c of redisClients) await u.within(c.quit(), 3000, "node-redis quit").catch(() => c.disconnect().catch(() => {}));
    await children.killAll();
    if (cluster) await cluster.stop();
    await redisProcess.killAll();
  });

  test("every server counts the others by SHARDNUMSUB; servers() lists the native workers", async () => {
    assert.equal(await shardNumSub(admin, `${KEY}#/#`), 5);
    const servers = await u.op(byName["v4@0"], "servers");
    assert.deepEqual(servers.map((s) => s.address).sort(), [0, 1, 2, 3].map((i) => `127.0.0.1:${base + i}`).sort());
  });

  test("sendTo, helper.send and kick reach a clientID's connections on other workers", async () => {
    const from = byName["v4@0"];
    const target = byName["v2@3"];
    let t = tag("sendTo");
    await u.op(from, "sendTo", { clientID: target.clientID, ...evt(t) });
    await u.expectDelivery(assert, all, [target], t);
    t = tag("helperSendTo");
    await u.op(byName["v2@1"], "helperSendTo", { clientID: byName["v4@2"].clientID, ...evt(t) });
    await u.expectDelivery(assert, all, [byName["v4@2"]], t);
  });

  test("native and Node broadcasts reach every client of every server once", async () => {
    let t = tag("native-all");
    await u.op(byName["v2@2"], "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    t = tag("node-all");
    io.emit("evt", { tag: t });
    await u.expectDelivery(assert, all, all, t);
  });

  test("room broadcasts go through the room's channel, subscribed by exactly the servers with members", async () => {
    const members = [byName["v4@1"], byName["v2@3"]];
    for (const m of members) await u.op(m, "enterRoom", { room: "room-x" });
    await new Promise((resolve) => nodeClients[0].emit("join", "room-x", resolve));
    const channel = `${KEY}#/#room-x#`;
    await u.until(async () => (await shardNumSub(admin, channel)) === 3, "workers 1 and 3 and Node subscribe room-x's channel", 5000);
    const inRoom = members.concat(nodeClients[0]);
    let t = tag("native-room");
    await u.op(byName["v4@0"], "broadcastToRoom", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, all, inRoom, t);
    t = tag("node-room");
    io.to("room-x").emit("evt", { tag: t });
    await u.expectDelivery(assert, all, inRoom, t);
    // Binary both ways.
    t = tag("node-binary");
    io.to("room-x").emit("evt", { tag: t, bin: Buffer.from([1, 2, 3]) });
    await u.expectDelivery(assert, all, inRoom, t);
    for (const c of members) {
      const got = c.got.find((g) => g.data && g.data.tag === t);
      assert.deepEqual([...new Uint8Array(got.data.bin)], [1, 2, 3], `${c.label} got the bytes`);
    }
    t = tag("native-binary");
    members[0].emit("m", ["op", { id: 0, what: "broadcastToRoom", room: "room-x", type: "evt", data: { tag: t, bin: Buffer.from([4, 5]) } }]);
    await u.expectDelivery(assert, all, inRoom, t);
    const atNode = nodeClients[0].got.find((g) => g.data && g.data.tag === t);
    assert.deepEqual([...new Uint8Array(atNode.data.bin)], [4, 5], "Node's client got the bytes");
    // The last member of a worker leaves: that worker leaves the room's channel.
    await u.op(members[1], "leaveRoom", { room: "room-x" });
    await u.until(async () => (await shardNumSub(admin, channel)) === 2, "worker 3 left room-x's channel", 5000);
    t = tag("after-leave");
    await u.op(byName["v4@0"], "broadcastToRoom", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, all, [members[0], nodeClients[0]], t);
  });

  test("fetchSockets and the cluster lookups see every server's sockets", async () => {
    const fromNative = await u.op(byName["v4@2"], "fetchSockets", {});
    assert.deepEqual(fromNative, ids(...all));
    const fromNode = (await u.within(io.fetchSockets(), 3000, "Node fetchSockets")).map((s) => s.id).sort();
    assert.deepEqual(fromNode, ids(...all));
    const inRoom = (await io.in("room-x").fetchSockets()).map((s) => s.id).sort();
    assert.deepEqual(inRoom, ids(byName["v4@1"], nodeClients[0]));
    const target = byName["v2@1"];
    assert.deepEqual(await u.op(byName["v4@3"], "getClusterConnectionsByClientID", { clientID: target.clientID }), [target.socketID]);
    assert.deepEqual(await u.op(byName["v4@3"], "getClusterRoomMembers", { room: "room-x" }), ids(byName["v4@1"], nodeClients[0]));
  });

  test("serverSideEmit with acks and weroll's invoke span Node and native servers", async () => {
    const answers = await u.within(io.serverSideEmitWithAck("whoami", "from-node"), 4000, "Node serverSideEmitWithAck");
    assert.deepEqual(answers.map((a) => a.port).sort(), [0, 1, 2, 3].map((i) => base + i));
    const fromNative = await u.op(byName["v4@1"], "serverSideEmit", { event: "whoami", args: ["from-native"] });
    assert.equal(fromNative.length, 4, JSON.stringify(fromNative));
    assert.equal(fromNative.filter((a) => a.node).length, 1, "Node answered");
    const ports = await u.op(byName["v4@0"], "invoke", { method: "port" });
    assert.deepEqual([...ports].sort(), [...[0, 1, 2, 3].map((i) => base + i), "node"].sort());
  });

  test("broadcasts with acks gather every client's answer, from either side", async () => {
    for (const c of all) c.on("ack-me", (...args) => args.pop()(c.label));
    const labels = all.map((c) => c.label).sort();
    const fromNode = await u.within(io.timeout(3000).emitWithAck("ack-me"), 5000, "Node emitWithAck");
    assert.deepEqual([...fromNode].sort(), labels);
    const fromNative = await u.op(byName["v2@2"], "broadcastWithAck", { type: "ack-me" });
    assert.deepEqual(fromNative, labels);
  });

  test("kick disconnects a clientID's connection on another worker", async () => {
    const victim = byName["v4@3"];
    const gone = u.nextEvent(victim, "disconnect", () => true, 5000);
    const t = tag("kick");
    await u.op(byName["v2@0"], "kick", { clientID: victim.clientID, data: { tag: t } });
    await gone;
    assert.equal(u.count(victim, t, "$kick"), 1);
  });
};

describe("sharded mode: 4 native workers and a Node server on one Redis 7", { skip: redisBin.skip, timeout: 90000 }, shardedSuite("server"));
describe("sharded mode: 4 native workers and a Node server on a Redis Cluster", { skip: redisBin.skip, timeout: 120000 }, shardedSuite("cluster"));

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
      [{ adapter: "streams" }, /cluster\.adapter must be "classic" or "sharded"/],
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
