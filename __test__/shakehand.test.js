"use strict";
// weroll's shakehand: `$init`, guests, session checkers (Promise and callback, `_auth` and
// `_sess`), the timeout, and the `compress` (MessagePack) codec.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const notepack = require("notepack.io");
const { MODES, connected, expectNo, matrix, once, scoped, toBuffer, waitFor } = require("./helpers");

const WS4 = MODES[0];
const WS2 = MODES[2];

/** Connects a client; resolves it with the server-side socket. */
async function join(scope, mode, server) {
  const conn = once(server, "connection");
  const client = await scope.connected(mode, server.port);
  const [socket] = await conn;
  return { client, socket };
}

/** Sends `$init` with `data`; resolves what the server answered in its own `$init`. */
async function shake(client, data) {
  const init = waitFor(client, "$init");
  client.emit("$init", data);
  return init;
}

/** A checker that counts its calls: userids "ok-*" pass, others fail. */
function promiseChecker() {
  const calls = [];
  return {
    calls,
    check(auth) {
      calls.push(auth);
      const userid = typeof auth === "string" ? auth : auth && auth.userid;
      return new Promise((resolve, reject) => {
        setTimeout(() => {
          if (String(userid).startsWith("ok-")) resolve({ userid, tag: "p" });
          else reject(new Error("bad token"));
        }, 10);
      });
    },
  };
}

function callbackChecker() {
  const calls = [];
  return {
    calls,
    check(auth, cb) {
      calls.push(auth);
      const userid = typeof auth === "string" ? auth : auth && auth.userid;
      setTimeout(() => {
        if (String(userid).startsWith("ok-")) cb(null, { userid, tag: "cb" });
        else cb(new Error("bad token"));
      }, 10);
    },
  };
}

test("shakehand is on by default (config.shakehand != false): no $init until the client sends one", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({ allowGuest: true });
  const success = [];
  server.on("shakeHandSuccess", (s) => success.push(s));
  const { client, socket } = await join(scope, WS4, server);
  await expectNo(client, "$init", 300);
  assert.deepEqual(success, []);
  assert.equal(socket.shaken, undefined);
  const init = await shake(client, {});
  assert.equal(init.clientID, client.id);
  assert.equal(success.length, 1);
}));

test("by default a client that never sends $init is dropped after shakehandTimeout", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({ shakehandTimeout: 300 });
  const failed = once(server, "shakeHandFail");
  const t0 = Date.now();
  const { client } = await join(scope, WS4, server);
  const reason = await waitFor(client, "disconnect", 3000);
  const waited = Date.now() - t0;
  await failed;
  assert.ok(waited >= 250, `dropped after ${waited} ms, expected about 300`);
  assert.ok(waited < 2500, `dropped after ${waited} ms, expected about 300`);
  assert.equal(reason, "io server disconnect");
}));

matrix("shakehand: false succeeds at once and sends $init {time, socketID, clientID}", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false });
  const success = once(server, "shakeHandSuccess");
  const client = scope.clientMode(mode, server.port);
  const init = waitFor(client, "$init");
  await connected(client);
  const data = await init;
  const [socket] = await success;
  assert.deepEqual(Object.keys(data).sort(), ["clientID", "socketID", "time"]);
  assert.equal(data.socketID, client.id);
  assert.equal(data.clientID, client.id);
  assert.ok(Math.abs(Date.now() - data.time) < 5000);
  assert.equal(socket.clientID, client.id);
  assert.ok(socket.rooms.has(`###${client.id}`));
});

matrix("shakehand on + allowGuest: $init {} makes a guest", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, allowGuest: true });
  const { client, socket } = await join(scope, mode, server);
  const complete = once(server, "shakeHandComplete");
  const data = await shake(client, {});
  const [s, ok] = await complete;
  assert.equal(s, socket);
  assert.equal(ok, true);
  assert.equal(data.clientID, client.id);
  assert.equal(data.socketID, client.id);
  assert.equal(socket.clientID, socket.id);
  assert.ok(socket.rooms.has(`###${socket.id}`));
  // A second $init is ignored.
  const again = expectNo(server, "shakeHandStart", 300);
  client.emit("$init", {});
  await again;
});

test("$init with an ack callback gets the init data as the answer", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({ shakehand: true, allowGuest: true });
  const { client } = await join(scope, WS4, server);
  const answer = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no ack for $init")), 3000);
    client.emit("$init", {}, (r) => {
      clearTimeout(t);
      resolve(r);
    });
  });
  assert.equal(answer.clientID, client.id);
  assert.equal(answer.socketID, client.id);
}));

matrix("shakehand on, no guests, no auth: shakeHandFail and disconnected", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, allowGuest: false });
  const { client, socket } = await join(scope, mode, server);
  const failed = once(server, "shakeHandFail");
  const gone = waitFor(client, "disconnect");
  const noInit = expectNo(client, "$init", 500);
  client.emit("$init", {});
  const [s] = await failed;
  assert.equal(s, socket);
  assert.equal(await gone, "io server disconnect");
  await noInit.catch((err) => {
    throw new Error(`a failed shakehand must not send $init: ${err.message}`);
  });
  assert.equal(socket.connected, false);
});

matrix("shakehandTimeout: no $init within 300 ms → disconnected", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: true, allowGuest: true, shakehandTimeout: 300 });
  const failed = once(server, "shakeHandFail", 3000);
  const t0 = Date.now();
  const { client } = await join(scope, mode, server);
  await waitFor(client, "disconnect", 3000);
  const waited = Date.now() - t0;
  await failed;
  assert.ok(waited >= 250 && waited < 2500, `dropped after ${waited} ms, expected about 300`);
}, { modes: [WS4, WS2, MODES[1], MODES[3]] });

for (const [style, make] of [
  ["Promise", promiseChecker],
  ["callback", callbackChecker],
]) {
  matrix(`session checker (${style}) with _auth: clientID = userid, ###userid room, sendTo reaches it`, async (mode, scope) => {
    const session = make();
    const server = await scope.realtime({ shakehand: true, session });
    const { client, socket } = await join(scope, mode, server);
    const t0 = Date.now();
    const data = await shake(client, { _auth: "ok-alice" });
    assert.deepEqual(session.calls, ["ok-alice"]);
    assert.equal(data.clientID, "ok-alice");
    assert.equal(data.socketID, client.id);
    assert.equal(socket.clientID, "ok-alice");
    assert.equal(socket.info.session.userid, "ok-alice");
    assert.equal(socket.info.session.tag, style === "Promise" ? "p" : "cb");
    assert.ok(socket.info.shakeHandTime >= t0);
    assert.ok(socket.rooms.has("###ok-alice"));

    const dm = waitFor(client, "dm");
    server.sendTo("ok-alice", "dm", { hi: 1 });
    assert.deepEqual(await dm, { hi: 1 });
    assert.deepEqual(server.getConnectionsByClientID("ok-alice", false), [socket.id]);
  }, { modes: style === "Promise" ? MODES : [WS4, WS2] });

  test(`session checker (${style}) with _sess object`, { timeout: 10000 }, scoped(async (scope) => {
    const session = make();
    const server = await scope.realtime({ shakehand: true, session });
    const { client, socket } = await join(scope, WS4, server);
    const data = await shake(client, { _sess: { userid: "ok-bob", token: "t" } });
    assert.deepEqual(session.calls, [{ userid: "ok-bob", token: "t" }]);
    assert.equal(data.clientID, "ok-bob");
    assert.equal(socket.clientID, "ok-bob");
  }));

  matrix(`session checker (${style}) refusing, no guests → disconnected`, async (mode, scope) => {
    const session = make();
    const server = await scope.realtime({ shakehand: true, session, allowGuest: false });
    const { client } = await join(scope, mode, server);
    const failed = once(server, "shakeHandFail");
    const gone = waitFor(client, "disconnect");
    client.emit("$init", { _auth: "evil" });
    await failed;
    await gone;
    assert.deepEqual(session.calls, ["evil"]);
  }, { modes: [WS4, WS2] });
}

test("session checker refusing with allowGuest → a guest", { timeout: 10000 }, scoped(async (scope) => {
  const session = promiseChecker();
  const server = await scope.realtime({ shakehand: true, session, allowGuest: true });
  const { client, socket } = await join(scope, WS2, server);
  const data = await shake(client, { _auth: "evil" });
  assert.equal(data.clientID, client.id);
  assert.equal(socket.clientID, socket.id);
  assert.equal(socket.info.session, undefined);
}));

test("weroll's 3-argument Session.check(userid, token, cb) with _sess", { timeout: 10000 }, scoped(async (scope) => {
  const calls = [];
  const session = {
    check(userid, token, cb) {
      calls.push([userid, token]);
      setImmediate(() => cb(null, { userid, token }));
    },
  };
  const server = await scope.realtime({ shakehand: true, session });
  const { client, socket } = await join(scope, WS4, server);
  const data = await shake(client, { _sess: { userid: "u-3", token: "tok" } });
  assert.deepEqual(calls, [["u-3", "tok"]]);
  assert.equal(data.clientID, "u-3");
  assert.equal(socket.info.session.token, "tok");
}));

test("a checker that throws or returns nothing fails the shakehand", { timeout: 10000 }, scoped(async (scope) => {
  const server = await scope.realtime({
    shakehand: true,
    session: {
      check(auth) {
        if (auth === "throw") throw new Error("boom");
        return Promise.resolve(null);
      },
    },
  });
  for (const auth of ["throw", "null"]) {
    const { client } = await join(scope, WS4, server);
    const failed = once(server, "shakeHandFail");
    const gone = waitFor(client, "disconnect");
    client.emit("$init", { _auth: auth });
    await failed;
    await gone;
  }
}));

matrix("compress: true sends each fired argument as MessagePack", async (mode, scope) => {
  const server = await scope.realtime({ shakehand: false, compress: true });
  const client = scope.clientMode(mode, server.port);
  const initP = waitFor(client, "$init");
  const conn = once(server, "connection");
  await connected(client);
  const [socket] = await conn;

  const init = await initP;
  assert.ok(!Object.prototype.hasOwnProperty.call(Object(init), "clientID"), "$init is fired, so it is packed too");
  const initData = notepack.decode(toBuffer(init));
  assert.equal(initData.clientID, client.id);
  assert.equal(initData.socketID, client.id);

  const value = { a: 1, s: "é€😀", list: [1, 2.5, null, true], nested: { deep: "x".repeat(300) } };
  const fired = once(client, "fired");
  socket.fire("fired", value, "str", 7);
  const args = await fired;
  assert.equal(args.length, 3);
  assert.deepEqual(notepack.decode(toBuffer(args[0])), value);
  assert.equal(notepack.decode(toBuffer(args[1])), "str");
  assert.equal(notepack.decode(toBuffer(args[2])), 7);

  for (const [name, send] of [
    ["sendTo", () => server.sendTo(client.id, "c1", value)],
    ["broadcastToAll", () => server.broadcastToAll("c1", value)],
    ["helper.send", () => socket.helper.send("c1", value)],
    ["helper.broadcast", () => socket.helper.broadcast("c1", value)],
  ]) {
    const got = waitFor(client, "c1");
    send();
    assert.deepEqual(notepack.decode(toBuffer(await got)), value, name);
  }

  // socket.emit stays plain JSON.
  const plain = waitFor(client, "plain");
  socket.emit("plain", value);
  assert.deepEqual(await plain, value);
}, { modes: [WS4, MODES[1], WS2, MODES[3]] });
