"use strict";
// A rolling migration from weroll 1.x: workers 0 and 2 run the original weroll 1.7.5 (socket.io
// 1.7, socket.io-redis 3.1, from npm), workers 1 and 3 weroll-native with cluster.legacyInvoke,
// on one redis-server, with socket.io-client 2.5 as weroll 1.x's clients. sendTo, rooms and
// broadcasts cross both ways; kick and invoke (socket.io-redis 3's customRequest) too.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { fork } = require("node:child_process");
const u = require("./fixtures/cluster-util.js");

const redisBin = u.needBinary("redis-server");
const KEY = "migrate";
const OLD_WORKER = path.join(__dirname, "fixtures", "weroll1-worker.js");

/** Forks an original weroll 1.7 worker; resolves its port once it listens. */
function forkOld(children, index, base, redisPort) {
  const env = { ...process.env, TEST_BASE_PORT: String(base), TEST_REDIS_PORT: String(redisPort), TEST_REDIS_KEY: KEY, WEROLL_WORKER_INDEX: String(index) };
  delete env.NODE_TEST_CONTEXT;
  const child = children.track(fork(OLD_WORKER, [], { env, stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  return u.within(
    new Promise((resolve, reject) => {
      child.on("message", (m) => m && m.ev === "ready" && resolve(m.port));
      child.once("exit", (code) => reject(new Error(`weroll 1.7 worker exited (${code})`)));
    }),
    15000,
    `weroll 1.7 worker ${index} listens`,
  );
}

describe("rolling migration: weroll 1.7 and weroll-native workers on one Redis", { skip: redisBin.skip, timeout: 90000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const clients = [];
  const at = {};
  let base;

  before(async () => {
    const redis = await new u.RedisServer(redisProcess).start();
    base = await u.freePorts(4);
    await Promise.all([
      forkOld(children, 0, base, redis.port),
      forkOld(children, 2, base, redis.port),
      ...[1, 3].map((i) => u.forkWorker(children, i, { base, redisPort: redis.port, key: KEY, extra: { TEST_LEGACY_INVOKE: "1" } })),
    ]);
    for (const i of [0, 1, 2, 3]) {
      const c = u.client(2, base + i, { transports: ["websocket"] });
      c.label = `${i % 2 ? "native" : "old"}@${i}`;
      at[i] = c;
      clients.push(c);
      if (i % 2) await u.shake(c, `m${i}`);
      else {
        // weroll 1.7 without shakehand: `$init` names the clientID (the socket id).
        const init = u.nextEvent(c, "$init", () => true, 5000);
        await u.connected(c);
        const [data] = await init;
        c.clientID = data.clientID;
      }
    }
  });
  after(async () => {
    u.closeAll(clients);
    await children.killAll();
    await redisProcess.killAll();
  });

  test("sendTo, room and namespace broadcasts cross between old and native workers both ways", async () => {
    let t = "native-to-old";
    await u.op(at[1], "sendTo", { clientID: at[2].clientID, type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [at[2]], t);
    t = "old-to-native";
    await u.op(at[0], "sendTo", { clientID: at[3].clientID, type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [at[3]], t);
    await u.op(at[0], "enterRoom", { room: "mixed" });
    await u.op(at[3], "enterRoom", { room: "mixed" });
    t = "room-from-native";
    await u.op(at[1], "broadcastToRoom", { room: "mixed", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [at[0], at[3]], t);
    t = "room-from-old";
    await u.op(at[2], "broadcastToRoom", { room: "mixed", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, [at[0], at[3]], t);
    t = "all-from-old";
    await u.op(at[2], "broadcastToAll", { type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, clients, t);
    t = "all-from-native";
    await u.op(at[3], "broadcastToAll", { type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, clients, clients, t);
  });

  test("invoke from a native worker runs on every worker, old ones included, and gathers the answers", async () => {
    const results = await u.op(at[1], "invoke", { method: "mark", args: ["from-native", 7] });
    // This worker's result first, then one per other worker: the native one's, and the old
    // ones' (socket.io-redis 3 answers weroll 1.7's hook with nothing).
    assert.equal(results.length, 4, JSON.stringify(results));
    for (const i of [0, 2]) assert.deepEqual(await u.op(at[i], "marks"), [["from-native", 7]], `old worker ${i} ran it`);
    const ports = await u.op(at[3], "invoke", { method: "port" });
    assert.deepEqual(ports.filter((p) => typeof p === "number").sort(), [base + 1, base + 3]);
  });

  test("kick from a native worker reaches a client of an old worker, and the other way", async () => {
    let victim = at[2];
    let gone = u.nextEvent(victim, "disconnect", () => true, 8000);
    await u.op(at[1], "kick", { clientID: victim.clientID, data: { tag: "kick-old" } });
    await gone;
    assert.equal(u.count(victim, "kick-old", "$kick"), 1);
    victim = at[3];
    gone = u.nextEvent(victim, "disconnect", () => true, 8000);
    await u.op(at[0], "kick", { clientID: victim.clientID, data: { tag: "kick-native" } });
    await gone;
    assert.equal(u.count(victim, "kick-native", "$kick"), 1);
  });
});
