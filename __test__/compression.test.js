"use strict";
// httpCompression: polling responses of at least `threshold` bytes (1024 by default, as
// socket.io) go gzip- or deflate-encoded to clients that accept it; smaller ones, clients that do
// not ask, and `httpCompression: false` get them as they are. Websocket traffic is untouched.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const zlib = require("node:zlib");
const h = require("./helpers.js");

const BIG = "x".repeat(5000);

/** A polling session on `port` whose first GET after CONNECT holds a 5 KB event. */
async function pollBig(port, headers) {
  const open = await h.request(port, "GET", "/socket.io/?EIO=4&transport=polling", undefined, headers);
  assert.equal(open.status, 200);
  const sid = JSON.parse(decode(open).slice(1)).sid;
  const post = await h.request(port, "POST", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, "40", { "content-type": "text/plain;charset=UTF-8" });
  assert.equal(post.status, 200);
  const answer = await h.request(port, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, undefined, headers);
  return { open, answer };
}

/** A response's body as the client reads it. */
function decode(res) {
  switch (res.headers["content-encoding"]) {
    case "gzip":
      return zlib.gunzipSync(res.raw).toString();
    case "deflate":
      return zlib.inflateSync(res.raw).toString();
    default:
      return res.body;
  }
}

const bigOnConnect = (io) => io.on("connection", (socket) => socket.emit("big", BIG));

test("a large polling response goes gzip-encoded to a client that accepts it, a small one as it is", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, bigOnConnect);
  const { open, answer } = await pollBig(port, { "accept-encoding": "gzip, deflate, br" });
  assert.equal(open.headers["content-encoding"], undefined, "the handshake is below the threshold");
  assert.equal(answer.headers["content-encoding"], "gzip");
  assert.ok(answer.raw.length < 500, `compressed to ${answer.raw.length} bytes`);
  assert.ok(decode(answer).includes(`42["big","${BIG}"]`), decode(answer).slice(0, 80));
}));

test("deflate when only it is accepted; nothing for a client that does not ask, or with httpCompression: false", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, bigOnConnect);
  const deflated = await pollBig(port, { "accept-encoding": "deflate" });
  assert.equal(deflated.answer.headers["content-encoding"], "deflate");
  assert.ok(decode(deflated.answer).includes(BIG));
  const plain = await pollBig(port, {});
  assert.equal(plain.answer.headers["content-encoding"], undefined);
  assert.ok(plain.answer.body.includes(BIG));
  const off = await scope.io({ httpCompression: false }, bigOnConnect);
  const uncompressed = await pollBig(off.port, { "accept-encoding": "gzip" });
  assert.equal(uncompressed.answer.headers["content-encoding"], undefined);
  assert.ok(uncompressed.answer.body.includes(BIG));
}));

test("httpCompression: {threshold} sets the size from which responses are encoded; bad values are refused", { timeout: 15000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({ httpCompression: { threshold: 20 } }, bigOnConnect);
  const { open } = await pollBig(port, { "accept-encoding": "gzip" });
  assert.equal(open.headers["content-encoding"], "gzip", "the handshake is above 20 bytes");
  assert.equal(JSON.parse(decode(open).slice(1)).upgrades.length, 1);
  const { Server } = require("..");
  for (const bad of [{ threshold: -1 }, "yes", 3]) {
    const s = new Server({ httpCompression: bad });
    await assert.rejects(s.listen(0), /httpCompression/);
    await s.close().catch(() => {});
  }
}));

test("socket.io-client 4.8 and 2.5 over polling, with large messages both ways", { timeout: 20000 }, h.scoped(async (scope) => {
  const { port } = await scope.io({}, (io) => io.on("connection", (socket) => socket.on("echo", (d, cb) => cb(d))));
  for (const version of [4, 2]) {
    const c = scope.client(version, port, { transports: ["polling"] });
    await h.connected(c);
    const back = await new Promise((resolve) => c.emit("echo", BIG, resolve));
    assert.equal(back, BIG, `v${version}`);
  }
}));
