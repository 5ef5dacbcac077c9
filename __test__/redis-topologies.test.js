"use strict";
// The Redis adapter (classic mode; the failover suites also in the sharded and streams modes)
// over a Redis Cluster (3 masters + 3 replicas) and over Redis Sentinel
// (a master, a replica, 3 sentinels), with real redis-server processes and socket.io-client 4.x
// and 2.x clients spread over the native workers:
// - on a Cluster, every cluster-wide Realtime method delivers exactly once, the workers find the
//   whole cluster from one seed each, their presence keys follow a migrated slot, and a Node
//   socket.io server with @socket.io/redis-adapter over a node-redis cluster client hears the
//   native workers and is heard by them;
// - a master killed (its replica promoted) or slots migrated mid-traffic: no worker dies, local
//   delivery never pauses, cross-worker delivery comes back by itself within a bound, and the
//   offline queue makes up for the gap: every message once, in order;
// - on Sentinel, the same methods, then a SENTINEL FAILOVER and a killed master mid-traffic,
//   after which the workers are on the new master only; passwords for the sentinels and for
//   the master are told apart;
// - a seed that is not a cluster node, a master name the sentinels do not know, and `db` on a
//   cluster are refused by start(), naming the key, quickly, leaving no process or connection.
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { Server: NodeServer } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createCluster } = require("redis");
const u = require("./fixtures/cluster-util.js");

const redisBin = u.needBinary("redis-server");
const cliBin = u.needBinary("redis-cli");
const skip = redisBin.skip || cliBin.skip;
const EVERY = 50; // ms between two messages of one kind
const RESUME_WITHIN = 15000; // cross-worker delivery is back this long after a failover started
const LOCAL_GAP = 1500; // the longest pause local delivery may take (messages every EVERY ms)
const range = (n) => Array.from({ length: n }, (_, i) => i);

/**
 * Clients asking their worker, every EVERY ms, for one cluster operation each; message `i` of a
 * kind carries `{tag, i}` and was sent at `sentAt[i]`. `kinds`: [{tag, sender, what, args}].
 */
class Traffic {
  constructor(kinds) {
    this.kinds = kinds.map((k) => ({ ...k, sent: 0, sentAt: [] }));
    this.timer = null;
  }
  start() {
    this.timer = setInterval(() => {
      for (const k of this.kinds) {
        const i = k.sent++;
        k.sentAt.push(Date.now());
        k.sender.emit("m", ["op", { id: 0, what: k.what, ...k.args, type: "evt", data: { tag: k.tag, i } }]);
      }
    }, EVERY);
  }
  stop() {
    clearInterval(this.timer);
  }
}

/** Records when each "evt" reaches `c`: `c.arrivals` = [{tag, i, at}]. */
function timed(c) {
  c.arrivals = [];
  c.on("evt", (d) => d && d.tag !== undefined && c.arrivals.push({ tag: d.tag, i: d.i, at: Date.now() }));
  return c;
}

/** The `i` of every "evt" with `tag` that `c` received, in arrival order. */
const seq = (c, tag) => c.got.filter((g) => g.ev === "evt" && g.data && g.data.tag === tag).map((g) => g.data.i);

/** Waits until the last message of `kind` reached every one of `receivers` (or `ms` passed). */
async function drained(receivers, kind, ms = 10000) {
  const last = kind.sent - 1;
  await u.until(() => receivers.every((c) => seq(c, kind.tag).includes(last)), `the last ${kind.tag} reaches ${receivers.map((c) => c.label).join(", ")}`, ms).catch((err) => {
    err.message += ` — missing at: ${receivers.filter((c) => !seq(c, kind.tag).includes(last)).map((c) => c.label).join(", ")}`;
    throw err;
  });
  await u.delay(300);
}

/** Every message of `kind` reached each of `receivers` once, in order. */
function expectEvery(receivers, kind) {
  for (const c of receivers) assert.deepEqual(seq(c, kind.tag), range(kind.sent), `${c.label}: every ${kind.tag} message once, in order`);
}

/** The longest time between two arrivals of `kind` at `c`, in ms. */
function longestGap(c, kind) {
  const at = c.arrivals.filter((a) => a.tag === kind.tag).map((a) => a.at);
  return at.slice(1).reduce((max, t, k) => Math.max(max, t - at[k]), 0);
}

/**
 * What a disruption starting at `startAt` may cost each of `receivers`: messages sent after
 * `startAt`, as one run, that ends (the first message after it arrives) within RESUME_WITHIN;
 * and no message takes longer than RESUME_WITHIN to arrive. Nothing arrives out of order, and
 * nothing twice, except at most `twice` messages each right after its first copy (a master that
 * dies after carrying out a write whose answer it never sent: the write is made again on the new
 * master, README "A Redis outage"). Returns the messages lost and the longest delay, per receiver.
 */
function expectResumed(receivers, kind, startAt, twice = 0) {
  const lost = {};
  for (const c of receivers) {
    const delays = c.arrivals.filter((a) => a.tag === kind.tag).map((a) => a.at - kind.sentAt[a.i]);
    const slowest = Math.max(0, ...delays);
    assert.ok(slowest <= RESUME_WITHIN, `${c.label}: a ${kind.tag} message took ${slowest} ms to arrive (bound ${RESUME_WITHIN} ms)`);
    const got = seq(c, kind.tag);
    assert.ok(got.length - new Set(got).size <= twice, `${c.label}: no ${kind.tag} message twice (${got.length - new Set(got).size} duplicates${twice ? `, at most ${twice} allowed` : ""})`);
    assert.deepEqual(got, [...got].sort((a, b) => a - b), `${c.label}: ${kind.tag} messages in order`);
    const missing = range(kind.sent).filter((i) => !got.includes(i));
    lost[c.label] = `${missing.length} lost, ${slowest} ms`;
    if (!missing.length) continue;
    const first = missing[0];
    const end = missing[missing.length - 1];
    assert.ok(kind.sentAt[first] >= startAt - 2 * EVERY, `${c.label}: ${kind.tag} #${first} lost, sent before the disruption`);
    assert.deepEqual(missing, range(end - first + 1).map((k) => first + k), `${c.label}: the lost ${kind.tag} messages are one run (${missing.join(",")})`);
    assert.ok(end + 1 < kind.sent, `${c.label}: nothing of ${kind.tag} arrived after the disruption (${missing.length} lost)`);
    const resumed = c.arrivals.find((a) => a.tag === kind.tag && a.i === end + 1);
    const after = resumed.at - startAt;
    assert.ok(after <= RESUME_WITHIN, `${c.label}: ${kind.tag} resumed ${after} ms after the disruption began (bound ${RESUME_WITHIN} ms)`);
  }
  return lost;
}

/** The worker processes are all running and none reported an error. */
function expectAlive(procs) {
  for (const [i, p] of procs.entries()) {
    assert.equal(p.child.exitCode, null, `worker ${i} exited`);
    assert.equal(p.child.signalCode, null, `worker ${i} was killed`);
    assert.ok(u.alive(p.pid), `worker ${i} is alive`);
    assert.deepEqual(p.seen("error"), [], `worker ${i} reported no error`);
  }
}

/** Tries `op` until it succeeds and `ok(result)` holds; resolves the result. */
async function eventually(c, what, args, ok, label, ms = RESUME_WITHIN) {
  let last;
  return u.until(
    async () => {
      try {
        const r = await u.op(c, what, args);
        last = JSON.stringify(r);
        return ok(r) && { r };
      } catch (err) {
        last = err.message;
        return false;
      }
    },
    label,
    ms,
    200,
  ).then(({ r }) => r, (err) => {
    err.message += ` (last: ${last})`;
    throw err;
  });
}

/**
 * A client per LAYOUT row ([name, user, worker index, version, transports]) on `base` + index,
 * shaken hands; resolves {all, byName}.
 */
async function connectLayout(base, layout) {
  const all = [];
  const byName = {};
  for (const [name, user, index, version, transports] of layout) {
    const c = timed(u.client(version, base + index, { transports }));
    c.label = name;
    byName[name] = c;
    all.push(c);
  }
  await Promise.all(all.map((c, i) => u.shake(c, layout[i][1])));
  return { all, byName };
}

describe("Redis Cluster (3 masters + 3 replicas): 4 native workers and a Node server", { skip, timeout: 90000 }, () => {
  const children = new u.Children();
  const redisProcess = new u.Children();
  const KEY = "topo";
  let cluster;
  let base;
  let procs = [];
  let all = [];
  let byName = {};
  let tagSeq = 0;
  const tag = (what) => `${what}-${++tagSeq}`;
  const evt = (t) => ({ type: "evt", data: { tag: t } });
  const LAYOUT = [
    ["a1", 1, 0, 4, ["websocket"]],
    ["a2", 1, 2, 2, ["polling", "websocket"]], // same clientID as a1, other worker
    ["b", 2, 1, 2, ["websocket"]],
    ["c", 3, 2, 4, ["polling", "websocket"]],
    ["d", 4, 3, 4, ["websocket"]],
    ["e", 5, 3, 2, ["polling", "websocket"]],
    ["f", 6, 1, 4, ["polling"]],
  ];
  // The Node server joins for the last tests only: it does not answer Realtime's invoke.
  const node = { io: null, http: null, redis: [], client: null };

  before(async () => {
    cluster = await new u.RedisCluster(redisProcess).start();
    base = await u.freePorts(4);
    // One seed each (a master for workers 0-2, a replica for worker 3): the rest is discovered.
    const seeds = cluster.seeds();
    procs = await Promise.all(range(4).map((i) => u.forkWorker(children, i, { base, key: KEY, presenceMs: 500, redis: { cluster: [seeds[i]], key: KEY } })));
    ({ all, byName } = await connectLayout(base, LAYOUT));
  });
  after(async () => {
    u.closeAll(all);
    if (node.client) node.client.close();
    if (node.io) await u.within(new Promise((resolve) => node.io.close(() => resolve())), 5000, "Node io.close").catch(() => {});
    for (const c of node.redis) await u.within(c.quit(), 3000, "node-redis quit").catch(() => c.disconnect().catch(() => {}));
    await children.killAll();
    if (cluster) await cluster.stop();
    await redisProcess.killAll();
  });

  test("every worker lists the 4 workers (servers, pickServer) and invoke reaches them all", async () => {
    const addrs = range(4).map((i) => `127.0.0.1:${base + i}`).sort();
    for (const name of ["a1", "b", "c", "d"]) {
      const c = byName[name];
      await eventually(c, "servers", {}, (r) => r.length === 4, `${name}'s worker lists 4 servers`, 5000);
      assert.deepEqual((await u.op(c, "servers")).map((s) => s.address).sort(), addrs, name);
      assert.ok(addrs.includes(await u.op(c, "pickServer")), `${name}: pickServer names a worker`);
    }
    const ports = await u.op(byName.b, "invoke", { method: "port" });
    assert.equal(ports[0], base + 1, "the invoking worker's own result first");
    assert.deepEqual([...ports].sort((x, y) => x - y), range(4).map((i) => base + i));
    await assert.rejects(u.op(byName.d, "invoke", { method: "fail" }), /producer failed on/);
  });

  test("the workers' presence keys share one slot; moved to another master, servers() still lists the 4", async () => {
    const keys = await cluster.keys(`*${KEY}#presence*`);
    assert.equal(keys.length, 4, JSON.stringify(keys));
    const slots = [...new Set(await Promise.all(keys.map((k) => cluster.keySlot(k.key))))];
    assert.equal(slots.length, 1, `one hash slot for every presence key: ${JSON.stringify(keys)}`);
    const target = (await cluster.masters()).find((m) => m.port !== keys[0].port);
    await cluster.moveSlots(slots, target.port);
    const moved = await cluster.keys(`*${KEY}#presence*`);
    assert.ok(moved.length && moved.every((k) => k.port === target.port), `the presence keys are on ${target.port}: ${JSON.stringify(moved)}`);
    for (const name of ["a1", "e"]) {
      const r = await eventually(byName[name], "servers", {}, (x) => x.length === 4, `${name}'s worker lists 4 servers after the move`, 5000);
      assert.equal(r.length, 4, name);
    }
    // The workers keep writing them on the new master (each entry lives 3 presence periods).
    await u.delay(2000);
    const rewritten = await cluster.keys(`*${KEY}#presence*`);
    assert.deepEqual(rewritten.map((k) => k.port), [target.port, target.port, target.port, target.port], JSON.stringify(rewritten));
  });

  test("sendTo(clientID) reaches each connection of that clientID on every worker once", async () => {
    const { a1, a2, b, f } = byName;
    let t = tag("sendTo-remote");
    await u.op(b, "sendTo", { clientID: "u1", ...evt(t) });
    await u.expectDelivery(assert, all, [a1, a2], t);
    t = tag("sendTo-2");
    await u.op(a1, "sendTo", { clientID: "u2", ...evt(t) });
    await u.expectDelivery(assert, all, [b], t);
    t = tag("sendTo-nobody");
    await u.op(f, "sendTo", { clientID: "u404", ...evt(t) });
    await u.delay(300);
    assert.deepEqual(all.map((c) => u.count(c, t)), all.map(() => 0));
  });

  test("broadcastToAll / broadcastToRoom / broadcastWithoutSender reach the right clients once", async () => {
    const { a1, b, c, d, e, f } = byName;
    let t = tag("all");
    await u.op(d, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, all, all, t);
    for (const m of [a1, c, e, f]) await u.op(m, "enterRoom", { room: "room-x" });
    t = tag("room");
    await u.op(b, "broadcastToRoom", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, all, [a1, c, e, f], t);
    t = tag("without-sender");
    await u.op(c, "broadcastWithoutSender", evt(t));
    await u.expectDelivery(assert, all, all.filter((x) => x !== c), t);
  });

  test("getClusterConnectionsByClientID / getClusterRoomMembers / fetchSockets see every worker", async () => {
    const { a1, a2, b, c, d, e, f } = byName;
    const ids = (...cs) => cs.map((x) => x.socketID).sort();
    assert.deepEqual(await u.op(d, "getClusterConnectionsByClientID", { clientID: "u1" }), ids(a1, a2));
    assert.deepEqual(await u.op(b, "getClusterConnectionsByClientID", { clientID: "u404" }), []);
    assert.deepEqual(await u.op(b, "getClusterRoomMembers", { room: "room-x" }), ids(a1, c, e, f));
    assert.deepEqual(await u.op(e, "fetchSockets"), ids(...all));
    assert.deepEqual(await u.op(a1, "fetchSockets", { room: "room-x" }), ids(a1, c, e, f));
  });

  test("a burst to a client on another worker arrives complete and in order", async () => {
    const { b, d } = byName;
    const n = 300;
    const t = tag("burst");
    await u.op(d, "burst", { clientID: "u2", type: "evt", tag: t, n });
    await u.until(() => seq(b, t).length >= n, `${n} messages reach b`, 10000);
    await u.delay(300);
    assert.deepEqual(seq(b, t), range(n));
  });

  test("kick(clientID) sends $kick to its connections on every worker, then disconnects them", async () => {
    const { a1, a2, e } = byName;
    const t = tag("kick");
    const closed = [a1, a2].map((c) => u.nextEvent(c, "disconnect", () => true, 5000));
    assert.equal(await u.op(e, "kick", { clientID: "u1", data: { tag: t } }), 2, "kick counts both connections");
    await u.expectDelivery(assert, all, [a1, a2], t, { ev: "$kick" });
    await Promise.all(closed);
    assert.deepEqual(await u.op(e, "getClusterConnectionsByClientID", { clientID: "u1" }), []);
    all = all.filter((c) => c !== a1 && c !== a2);
    assert.ok(all.every((c) => c.connected), "the other clients stay");
  });

  test("a Node socket.io server (redis-adapter over a node-redis cluster client) and the workers hear each other", async () => {
    const pub = createCluster({ rootNodes: cluster.seeds(1).map((s) => ({ url: `redis://${s.host}:${s.port}` })) });
    pub.on("error", () => {});
    node.redis.push(pub);
    const sub = pub.duplicate();
    sub.on("error", () => {});
    node.redis.push(sub);
    await u.within(Promise.all([pub.connect(), sub.connect()]), 10000, "node-redis cluster connect");
    node.http = http.createServer();
    node.io = new NodeServer(node.http);
    node.io.adapter(createAdapter(pub, sub, { key: KEY, requestsTimeout: 3000 }));
    node.io.on("connection", (socket) => socket.on("join", (room, cb) => (socket.join(room), cb(socket.id))));
    await new Promise((resolve) => node.http.listen(0, "127.0.0.1", resolve));
    const n = timed(u.client(4, node.http.address().port));
    n.label = "node client";
    node.client = n;
    await u.connected(n);
    await new Promise((resolve) => n.emit("join", "room-x", resolve));
    const everyone = [...all, n];
    const { b, c, d, e, f } = byName;
    // node-redis subscribes on its own schedule: wait until a native broadcast reaches Node.
    await u.until(
      async () => {
        const t = tag("probe");
        await u.op(d, "broadcastToAll", evt(t));
        await u.delay(200);
        return u.count(n, t) > 0;
      },
      "a native broadcast reaches the Node server's client",
      10000,
      0,
    );
    let t = tag("native-all");
    await u.op(b, "broadcastToAll", evt(t));
    await u.expectDelivery(assert, everyone, everyone, t);
    t = tag("native-room");
    await u.op(d, "broadcastToRoom", { room: "room-x", ...evt(t) });
    await u.expectDelivery(assert, everyone, [c, e, f, n], t);
    t = tag("node-all");
    node.io.emit("evt", { tag: t });
    await u.expectDelivery(assert, everyone, everyone, t);
    t = tag("node-room");
    node.io.to("room-x").emit("evt", { tag: t });
    await u.expectDelivery(assert, everyone, [c, e, f, n], t);
    t = tag("node-to-clientID");
    node.io.to("###u2").emit("evt", { tag: t }); // weroll's clientID room
    await u.expectDelivery(assert, everyone, [b], t);
  });

  test("a native fetchSockets counts the Node server and includes its socket", async () => {
    assert.ok(node.client, "the Node server is up");
    const ids = [...all.map((c) => c.socketID), node.client.id].sort();
    assert.deepEqual(await u.op(byName.d, "fetchSockets"), ids);
    assert.deepEqual(await u.op(byName.b, "fetchSockets", { room: "room-x" }), [...["c", "e", "f"].map((x) => byName[x].socketID), node.client.id].sort());
  });
});

/**
 * Three native workers with a v4 (websocket) and a v2 (polling, then websocket) receiver each,
 * and senders on worker 0 asking for broadcastToAll, sendTo and broadcastToRoom every EVERY ms.
 * `disrupt()` runs mid-traffic and resolves when it began; `check(run)` then checks delivery.
 */
function trafficRig({ redis, key, adapter }) {
  const rig = { children: new u.Children(), procs: [], senders: [], receivers: [], local: [], remote: [], targets: [], roomMembers: [], run: 0 };
  rig.start = async () => {
    rig.base = await u.freePorts(3);
    rig.procs = await Promise.all(range(3).map((i) => u.forkWorker(rig.children, i, { base: rig.base, key, adapter, presenceMs: 500, redis: redis() })));
    for (const name of ["s0", "s1"]) {
      const c = timed(u.client(4, rig.base));
      c.label = name;
      await u.shake(c, name);
      rig.senders.push(c);
    }
    for (let i = 0; i < 3; i++) {
      const r4 = timed(u.client(4, rig.base + i));
      r4.label = `r4@${i}`;
      const r2 = timed(u.client(2, rig.base + i, { transports: ["polling", "websocket"] }));
      r2.label = `r2@${i}`;
      await u.shake(r4, `r4x${i}`);
      await u.shake(r2, "target"); // one clientID on every worker
      await u.op(r4, "enterRoom", { room: "traffic-room" });
      rig.receivers.push(r4, r2);
      (i === 0 ? rig.local : rig.remote).push(r4, r2);
      rig.targets.push(r2);
      rig.roomMembers.push(r4);
    }
    await eventually(rig.senders[0], "servers", {}, (r) => r.length === 3, "3 workers listed", 10000);
  };
  rig.stop = async () => {
    u.closeAll([...rig.senders, ...rig.receivers]);
    await rig.children.killAll();
  };
  /** Runs `disrupt` under traffic; resolves {kinds, startAt, result}. */
  rig.underTraffic = async (name, disrupt, { settle = 3000, inFlight = 0 } = {}) => {
    rig.run++;
    const t = (kind) => `${name}-${rig.run}-${kind}`;
    const [s0, s1] = rig.senders;
    const traffic = new Traffic([
      { tag: t("all"), sender: s0, what: "broadcastToAll", args: {} },
      { tag: t("to"), sender: s0, what: "sendTo", args: { clientID: "utarget" } },
      { tag: t("room"), sender: s1, what: "broadcastToRoom", args: { room: "traffic-room" } },
    ]);
    traffic.start();
    let startAt;
    let result;
    try {
      await u.delay(1000);
      startAt = Date.now();
      result = await disrupt();
      // Once the topology settled, traffic goes on long enough for delivery to come back.
      await u.delay(settle);
    } finally {
      traffic.stop();
    }
    const [all, to, room] = traffic.kinds;
    assert.ok(all.sent >= 40, `${all.sent} messages of each kind sent`);
    // Every receiver gets the last messages, whatever was lost.
    await drained(rig.receivers, all, 15000);
    await drained(rig.targets, to, 15000);
    await drained(rig.roomMembers, room, 15000);
    // Local delivery (the senders' own worker) never stops: every message, once, in order,
    // without a pause.
    expectEvery(rig.local, all);
    for (const c of rig.local) assert.ok(longestGap(c, all) < LOCAL_GAP, `${c.label}: local delivery paused for ${longestGap(c, all)} ms`);
    expectEvery([rig.targets[0]], to);
    expectEvery([rig.roomMembers[0]], room);
    // A killed master (`inFlight`) may also have carried out a write it never answered.
    const lost = {
      all: expectResumed(rig.remote, all, startAt, inFlight),
      to: expectResumed(rig.targets.slice(1), to, startAt, inFlight),
      room: expectResumed(rig.roomMembers.slice(1), room, startAt, inFlight),
    };
    expectAlive(rig.procs);
    assert.ok(rig.receivers.every((c) => c.connected), "every receiver is still connected");
    // What is published while a connection is replaced waits in the offline queue: nothing is
    // lost, beyond resuming within the bound. A master SIGKILLed can take with it what it had
    // accepted and not yet passed on (pub/sub keeps nothing; README "What a failover costs"):
    // `inFlight` such messages of a kind (one run, sent after the kill began, see
    // expectResumed), at most.
    for (const [kind, per] of Object.entries(lost))
      for (const [label, v] of Object.entries(per)) assert.ok(Number(v.split(" ")[0]) <= inFlight, `${label}: ${kind} messages lost (${JSON.stringify(lost)}; at most ${inFlight} may be in flight)`);
    return { kinds: traffic.kinds, startAt, result, lost };
  };
  /** Requests (invoke, servers) answer again, from every worker, with every worker. */
  rig.requestsWork = async () => {
    const ports = range(3).map((i) => rig.base + i);
    for (const c of [rig.senders[0], rig.receivers[2], rig.receivers[4]]) {
      const r = await eventually(c, "invoke", { method: "port" }, (x) => x.length === 3, `invoke from ${c.label} answers with 3 workers`);
      assert.deepEqual([...r].sort((x, y) => x - y), ports);
      await eventually(c, "servers", {}, (x) => x.length === 3, `servers() from ${c.label} lists 3 workers`);
    }
    // And exactly once again, across the workers.
    const t = `after-${rig.run}`;
    await u.op(rig.receivers[2], "broadcastToAll", { type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, [...rig.senders, ...rig.receivers], [...rig.senders, ...rig.receivers], t);
  };
  return rig;
}

for (const [mode, key] of [
  ["classic", "topofail"],
  ["sharded", "shardfail"],
  ["streams", "streamfail"],
]) {
describe(`Redis Cluster, ${mode} mode: a killed master and migrating slots under steady traffic`, { skip, timeout: 120000 }, () => {
  const redisProcess = new u.Children();
  let cluster;
  const rig = trafficRig({ key, adapter: mode === "classic" ? undefined : mode, redis: () => ({ cluster: cluster.seeds(), key }) });

  before(async () => {
    cluster = await new u.RedisCluster(redisProcess).start();
    await rig.start();
  });
  after(async () => {
    await rig.stop();
    if (cluster) await cluster.stop();
    await redisProcess.killAll();
  });

  test("a master SIGKILLed, its replica promoted: no worker dies, delivery resumes, at most what was in flight lost or twice", { timeout: 60000 }, async (t) => {
    // Kill the master holding the stream (streams mode), else the most of the workers'
    // subscriber connections.
    const conns = await cluster.connections();
    const masters = await cluster.masters();
    const on = (m, f) => conns.filter((c) => c.node === m.port && f(c)).length;
    const load = (m) => on(m, (c) => c.cmd === "xread") * 10000 + on(m, (c) => c.psub + c.sub > 0) * 100 + on(m, () => true);
    const victim = masters.reduce((best, m, i) => (load(m) > load(masters[best]) ? i : best), 0);
    t.diagnostic(`connections per node: ${JSON.stringify(conns.map((c) => `${c.node}:${c.cmd}${c.psub + c.sub ? "(sub)" : ""}`))}; killing ${masters[victim].port}`);
    assert.ok(load(masters[victim]) > 0, "the killed master holds connections of the workers");
    // One message of a kind every 50 ms: what the master held when it died is one or two.
    const { result, lost } = await rig.underTraffic("kill", () => cluster.killMaster(victim), { inFlight: 2 });
    t.diagnostic(`killed ${result.killed}, promoted ${result.promoted}; per receiver: ${JSON.stringify(lost)}`);
    await rig.requestsWork();
  });

  test("slots migrated (redis-cli reshard, and the presence keys' slots) mid-traffic: every message once, in order", { timeout: 60000 }, async (t) => {
    const { lost } = await rig.underTraffic(
      "reshard",
      async () => {
        const masters = await cluster.masters();
        await cluster.reshard(masters[0].port, masters[1].port, 300);
        const keys = await cluster.keys(`*${key}#presence*`);
        const slots = [...new Set(await Promise.all(keys.map((k) => cluster.keySlot(k.key))))];
        const owners = await cluster.masters();
        // The presence keys' slot moves to the next master.
        for (const slot of slots) {
          const i = owners.findIndex((m) => m.ranges.some(([a, b]) => slot >= a && slot <= b));
          await cluster.moveSlots([slot], owners[(i + 1) % owners.length].port);
        }
        assert.equal(keys.length, 3, `the 3 workers' presence keys: ${JSON.stringify(keys)}`);
        t.diagnostic(`moved 300 slots, then slot ${slots.join(", ")} of ${keys.length} presence keys`);
      },
      { settle: 2000 },
    );
    t.diagnostic(`per receiver: ${JSON.stringify(lost)}`);
    await rig.requestsWork();
  });
});
}

for (const [mode, key] of [
  ["classic", "toposent"],
  ["streams", "streamsent"],
]) {
describe(`Redis Sentinel (master, replica, 3 sentinels): native workers, ${mode} mode`, { skip: redisBin.skip, timeout: 120000 }, () => {
  const redisProcess = new u.Children();
  let sentinels;
  const rig = trafficRig({ key, adapter: mode === "classic" ? undefined : mode, redis: () => ({ sentinel: { name: sentinels.name, nodes: sentinels.nodes() }, key }) });

  before(async () => {
    sentinels = await new u.RedisSentinelSet(redisProcess).start();
    await rig.start();
  });
  after(async () => {
    await rig.stop();
    if (sentinels) await sentinels.stop();
    await redisProcess.killAll();
  });

  test("sendTo, broadcasts, invoke and fetchSockets across the workers, exactly once", async () => {
    const everyone = [...rig.senders, ...rig.receivers];
    const [s0] = rig.senders;
    let t = "sent-to";
    await u.op(rig.receivers[4], "sendTo", { clientID: "utarget", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, everyone, rig.targets, t);
    t = "sent-all";
    await u.op(rig.receivers[3], "broadcastToAll", { type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, everyone, everyone, t);
    t = "sent-room";
    await u.op(s0, "broadcastToRoom", { room: "traffic-room", type: "evt", data: { tag: t } });
    await u.expectDelivery(assert, everyone, rig.roomMembers, t);
    const ports = await u.op(rig.receivers[2], "invoke", { method: "port" });
    assert.deepEqual([...ports].sort((x, y) => x - y), range(3).map((i) => rig.base + i));
    assert.deepEqual(await u.op(s0, "getClusterConnectionsByClientID", { clientID: "utarget" }), rig.targets.map((c) => c.socketID).sort());
    assert.deepEqual(await u.op(s0, "fetchSockets"), everyone.map((c) => c.socketID).sort());
  });

  /** The workers are connected to the master the sentinels name, and none to the other server. */
  async function onTheMaster(ms = 100) {
    const { port } = await sentinels.master();
    const other = sentinels.data.find((s) => s.port !== port);
    let last = "";
    await u.until(
      async () => {
        const onMaster = await u.clientConnections(port);
        const onOther = other.child ? await u.clientConnections(other.port).catch(() => []) : [];
        last = `${onMaster.length} on the master ${port}, on ${other.port}: ${onOther.join(" | ")}`;
        // At least a publisher and a subscriber per worker.
        return onMaster.length >= 2 * rig.procs.length && onOther.length === 0;
      },
      "the workers are connected to the master only",
      ms,
      100,
    ).catch((err) => {
      err.message += ` (${last})`;
      throw err;
    });
  }

  test("the workers use the master the sentinels name", () => onTheMaster());

  test("SENTINEL FAILOVER under traffic: no worker dies, nothing lost or twice, requests work again", { timeout: 60000 }, async (t) => {
    const { result, lost } = await rig.underTraffic("failover", () => sentinels.failover());
    t.diagnostic(`master ${result.from} → ${result.to}; per receiver: ${JSON.stringify(lost)}`);
    await rig.requestsWork();
    // Nobody stayed on the old master, now a replica.
    await onTheMaster(5000);
  });

  test("the master SIGKILLed, the replica promoted: no worker dies, at most what was in flight lost or twice, requests work again", { timeout: 60000 }, async (t) => {
    const { result, lost } = await rig.underTraffic("kill", () => sentinels.killMaster(), { inFlight: 2 });
    t.diagnostic(`killed ${result.killed}, promoted ${result.promoted}; per receiver: ${JSON.stringify(lost)}`);
    await rig.requestsWork();
    await onTheMaster(5000);
  });
});
}

describe("Redis Sentinel with passwords: sentinel.password for the sentinels, password for the master", { skip: redisBin.skip, timeout: 60000 }, () => {
  const { Realtime } = require("..");
  const children = new u.Children();
  const redisProcess = new u.Children();
  let sentinels;
  let clients = [];
  const shape = (sentinelPassword, password) => ({ sentinel: { name: sentinels.name, nodes: sentinels.nodes(), password: sentinelPassword }, password, key: "topoauth" });

  before(async () => {
    sentinels = await new u.RedisSentinelSet(redisProcess, { password: "master-secret", sentinelPassword: "sentinel-secret" }).start();
  });
  after(async () => {
    u.closeAll(clients);
    await children.killAll();
    if (sentinels) await sentinels.stop();
    await redisProcess.killAll();
  });

  test("two workers broadcast and answer requests through the authenticated master", async () => {
    const base = await u.freePorts(2);
    await Promise.all([0, 1].map((i) => u.forkWorker(children, i, { base, key: "topoauth", redis: shape("sentinel-secret", "master-secret") })));
    const a = u.client(4, base);
    const b = u.client(2, base + 1, { transports: ["polling", "websocket"] });
    a.label = "a";
    b.label = "b";
    clients = [a, b];
    await u.shake(a, "a");
    await u.shake(b, "b");
    await u.op(a, "broadcastToAll", { type: "evt", data: { tag: "auth-all" } });
    await u.expectDelivery(assert, clients, clients, "auth-all");
    await u.op(b, "sendTo", { clientID: "ua", type: "evt", data: { tag: "auth-to" } });
    await u.expectDelivery(assert, clients, [a], "auth-to");
    assert.deepEqual([...(await u.op(b, "invoke", { method: "port" }))].sort((x, y) => x - y), [base, base + 1]);
  });

  for (const [what, sentinelPassword, password] of [
    ["a wrong sentinel password", "nope", "master-secret"],
    ["the two passwords swapped", "master-secret", "sentinel-secret"],
    ["a wrong master password", "sentinel-secret", "nope"],
  ]) {
    test(`${what}: start() rejects within a few seconds, saying authentication failed`, async (t) => {
      const server = Realtime.createServer({ port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, redis: shape(sentinelPassword, password) } }, true);
      server.on("error", () => {});
      const asked = Date.now();
      await assert.rejects(u.within(server.start(), 15000, "start()"), (err) => {
        t.diagnostic(err.message);
        assert.match(err.message, /cluster\.redis/);
        assert.match(err.message, /WRONGPASS|NOAUTH|auth|password/i);
        return true;
      });
      assert.ok(Date.now() - asked < 10000, `refused after ${Date.now() - asked} ms`);
      await u.within(server.close(), 5000, "close()").catch(() => {});
    });
  }
});

describe("cluster.redis topologies that cannot work are refused by start()", { skip, timeout: 60000 }, () => {
  const { Realtime } = require("..");
  const children = new u.Children();
  const redisProcess = new u.Children();
  let standalone;
  let sentinels;

  before(async () => {
    standalone = await new u.RedisServer(redisProcess).start();
    sentinels = await new u.RedisSentinelSet(redisProcess).start();
  });
  after(async () => {
    await children.killAll();
    if (sentinels) await sentinels.stop();
    await redisProcess.killAll();
  });

  const connectionsTo = (port) => u.clientConnections(port);

  /** start() of an in-process server with `redis` rejects with `error` within `ms`; closes it. */
  async function refused(redis, error, ms = 5000) {
    const server = Realtime.createServer({ port: await u.freePorts(1), host: "127.0.0.1", shakehand: false, cluster: { enable: true, redis } }, true);
    server.on("error", () => {});
    const asked = Date.now();
    await assert.rejects(u.within(server.start(), ms + 5000, "start()"), error);
    const took = Date.now() - asked;
    assert.ok(took < ms, `refused after ${took} ms`);
    await u.within(server.close(), 5000, "close() after a refused start").catch(() => {});
    return took;
  }

  /** A forked worker with `redis` reports `error` and exits; nothing of it is left. */
  async function workerRefused(redis, error) {
    const base = await u.freePorts(1);
    await assert.rejects(u.forkWorker(children, 0, { base, redis }), (err) => {
      assert.match(err.message, error);
      return true;
    });
    await u.until(() => children.list.size === 0, "the refused worker exited", 5000);
    assert.ok(await u.portFree(base), `nothing listens on ${base}`);
  }

  test("a cluster seed that is a standalone redis-server: the error names cluster.redis.cluster and the seed", async () => {
    const redis = { cluster: [{ host: "127.0.0.1", port: standalone.port }] };
    // Tried, not refused as a shape: the error names the seed that is no cluster node.
    const error = new RegExp(`^(?!.*not supported).*cluster\\.redis\\.cluster.*127\\.0\\.0\\.1:${standalone.port}`, "s");
    await refused(redis, error);
    await workerRefused(redis, error);
    await u.until(async () => (await connectionsTo(standalone.port)).length === 0, "no connection to the standalone server is left", 3000).catch(async (err) => {
      err.message += `: ${(await connectionsTo(standalone.port)).join(" | ")}`;
      throw err;
    });
  });

  test("a master name the sentinels do not know: the error names cluster.redis.sentinel.name and the name", async () => {
    const redis = { sentinel: { name: "nosuchmaster", nodes: sentinels.nodes() } };
    const error = /^(?!.*not supported).*cluster\.redis\.sentinel\.name.*nosuchmaster/s;
    await refused(redis, error);
    await workerRefused(redis, error);
    const { port } = await sentinels.master();
    const left = async () => [...(await Promise.all(sentinels.nodes().map((n) => connectionsTo(n.port)))).flat(), ...(await connectionsTo(port))];
    await u.until(async () => (await left()).length === 0, "no connection to the sentinels or the master is left", 3000).catch(async (err) => {
      err.message += `: ${(await left()).join(" | ")}`;
      throw err;
    });
  });

  test("db on a Redis Cluster is refused, naming cluster.redis.db", async () => {
    await refused({ cluster: [{ host: "127.0.0.1", port: standalone.port }], db: 1 }, /cluster\.redis\.db/, 1000);
  });
});
