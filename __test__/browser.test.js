"use strict";
// The demo's chat page in headless Chromium: it connects over polling, upgrades to websocket,
// shows a message a Node client sends, and its own message reaches the Node client.
const test = require("node:test");
const assert = require("node:assert");
const { io } = require("socket.io-client");
const { findChromium, isCI } = require("../scripts/setup.js");
const { startApp } = require("../examples/app.js");
const { freePorts, nextEvent } = require("./fixtures/cluster-util.js");

const TIMEOUT = 15000;
const chromium = findChromium();
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** Headless Chromium, as every test here runs it. */
function launchChromium() {
  const { chromium: playwright } = require("playwright-core");
  return playwright.launch({ executablePath: chromium, headless: true, args: CHROMIUM_ARGS });
}

/** An http server on loopback whose every page is an empty document running `bundle` (a client build). */
async function bundlePage(bundle) {
  const http = require("node:http");
  const fs = require("node:fs");
  const script = fs.readFileSync(require.resolve(bundle), "utf8");
  const server = http.createServer((req, res) => {
    res.setHeader("content-type", "text/html; charset=utf-8");
    res.end(`<!doctype html><meta charset="utf-8"><script>${script.replace(/<\/script/g, "<\\/script")}</script>`);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

test("chat page in Chromium: polling, websocket upgrade, messages both ways", { skip: !chromium && !isCI() && "chromium is not installed (apt-get install chromium)" }, async (t) => {
  assert.ok(chromium, "chromium is required in CI (apt-get install chromium)");

  const app = await startApp({ basePort: await freePorts(1), httpPort: 0 });
  const browser = await launchChromium();
  const node = io(`http://127.0.0.1:${app.port}`, { transports: ["websocket"], reconnection: false });
  const welcomed = nextEvent(node, "welcome", undefined, TIMEOUT);
  t.after(async () => {
    node.close();
    await browser.close();
    await app.close();
  });

  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  const realtimeRequests = [];
  page.on("request", (req) => realtimeRequests.push(req.url()));
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));

  await page.goto(`http://127.0.0.1:${app.httpPort}/`);
  await page.waitForFunction(() => window.socket && window.socket.connected, null, { timeout: TIMEOUT });
  await page.waitForFunction(() => window.socket.io.engine.transport.name === "websocket", null, { timeout: TIMEOUT });
  assert.strictEqual(await page.evaluate(() => window.socket.io.engine.transport.name), "websocket");
  assert.ok(
    realtimeRequests.some((u) => u.includes(`:${app.port}/socket.io/`) && u.includes("transport=polling")),
    `the page first connected over polling: ${realtimeRequests.join(" ")}`,
  );
  assert.ok(sockets.some((u) => u.includes(`:${app.port}/socket.io/`) && u.includes("transport=websocket")), "then upgraded to a websocket");
  assert.strictEqual(await page.textContent("#port"), String(app.port));
  await page.waitForFunction(() => document.getElementById("transport").textContent === "websocket", null, { timeout: TIMEOUT });

  // a Node client in the same room talks to the page
  await welcomed;
  node.emit("m", ["chat", { text: "hello from node", room: "lobby" }]);
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("hello from node"), null, { timeout: TIMEOUT });

  // and hears the page
  const heard = nextEvent(node, "chat", (m) => m.text === "hello from chromium", TIMEOUT);
  await page.fill("#text", "hello from chromium");
  await page.press("#text", "Enter");
  const [msg] = await heard;
  assert.strictEqual(msg.room, "lobby");
  assert.strictEqual(msg.port, app.port);
  // The live panel lists this worker with both connections (the page's and the Node client's).
  await page.waitForFunction((port) => document.getElementById("workers").textContent.includes(`:${port}: 2 connections`), app.port, { timeout: TIMEOUT });
  assert.strictEqual(await page.getAttribute("#workers li.mine", "class"), "mine");
  assert.deepStrictEqual(errors, []);
});

// The browser bundles of older clients over long-polling only, where text and binary travel in
// polling payloads: socket.io-client 1.x (engine.io-parser 1.x encodes text differently) and
// 2.x, the latter also with `forceBase64` (it asks for `b64=1` on the handshake only).
const LEGACY = [
  { name: "socket.io-client 1.7", bundle: "socket.io-client-v1/dist/socket.io.js", opts: {} },
  { name: "socket.io-client 2.5", bundle: "socket.io-client-v2/dist/socket.io.js", opts: {} },
  { name: "socket.io-client 2.5, forceBase64", bundle: "socket.io-client-v2/dist/socket.io.js", opts: { forceBase64: true } },
];
for (const client of LEGACY) {
  test(`${client.name} in Chromium over long-polling: non-ASCII text and binary both ways`, { skip: !chromium && !isCI() && "chromium is not installed (apt-get install chromium)" }, async (t) => {
    assert.ok(chromium, "chromium is required in CI (apt-get install chromium)");
    const { Server } = require("..");

    const io = new Server({ cors: { origin: true, credentials: true } });
    const port = await io.listen(0, "127.0.0.1");
    const TEXT = "é漢😀 ñ";
    const received = new Promise((resolve) => {
      io.on("connection", (socket) => {
        socket.on("up", (text, bin, ack) => {
          resolve({ text, bin: [...bin] });
          ack("ok " + text);
          socket.emit("down", TEXT, { bin: Buffer.from([1, 2, 250]) });
        });
      });
    });
    const page_ = await bundlePage(client.bundle);
    const browser = await launchChromium();
    t.after(async () => {
      await browser.close();
      page_.close();
      await io.close();
    });
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(`http://127.0.0.1:${page_.address().port}/`);
    const got = page.evaluate(
      ({ url, text, opts }) =>
        new Promise((resolve, reject) => {
          const socket = io(url, Object.assign({ transports: ["polling"], reconnection: false }, opts));
          const out = {};
          socket.on("error", (e) => reject(new Error("client error: " + e)));
          socket.on("connect", () => {
            socket.emit("up", text, new Uint8Array([7, 200, 9]).buffer, (answer) => {
              out.ack = answer;
            });
          });
          socket.on("down", (t, o) => {
            out.text = t;
            out.bin = Array.from(new Uint8Array(o.bin));
            out.transport = socket.io.engine.transport.name;
            setTimeout(() => resolve(out), 50);
          });
          setTimeout(() => reject(new Error("timed out: " + JSON.stringify(out))), 10000);
        }),
      { url: `http://127.0.0.1:${port}`, text: TEXT, opts: client.opts },
    );
    const [fromPage, atServer] = await Promise.all([got, received]);
    assert.deepStrictEqual(atServer, { text: TEXT, bin: [7, 200, 9] });
    assert.deepStrictEqual(fromPage, { ack: "ok " + TEXT, text: TEXT, bin: [1, 2, 250], transport: "polling" });
    assert.deepStrictEqual(errors, []);
  });
}

// perMessageDeflate with Chromium's own permessage-deflate: a large message each way travels
// compressed (counted on the wire by a TCP proxy in front of the server) and arrives intact.
test("socket.io-client 4.8 in Chromium with perMessageDeflate: large messages compressed both ways", { skip: !chromium && !isCI() && "chromium is not installed (apt-get install chromium)" }, async (t) => {
  assert.ok(chromium, "chromium is required in CI (apt-get install chromium)");
  const net = require("node:net");
  const { Server } = require("..");

  const io = new Server({ perMessageDeflate: true, cors: { origin: true } });
  const port = await io.listen(0, "127.0.0.1");
  const BIG = JSON.stringify(Array.from({ length: 900 }, (_, i) => ({ id: i, name: `user-${(i * 7919) % 10007}`, online: i % 3 === 0 })));
  io.on("connection", (socket) => socket.on("echo", (d, ack) => ack(d)));
  const counts = { up: 0, down: 0 };
  const proxy = net.createServer((c) => {
    const s = net.connect(port, "127.0.0.1");
    c.on("data", (d) => ((counts.up += d.length), s.write(d)));
    s.on("data", (d) => ((counts.down += d.length), c.write(d)));
    for (const x of [c, s]) x.on("error", () => {});
    c.on("close", () => s.destroy());
    s.on("close", () => c.destroy());
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  const page_ = await bundlePage("socket.io-client/dist/socket.io.js");
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    page_.close();
    proxy.close();
    await io.close();
  });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${page_.address().port}/`);
  const back = await page.evaluate(
    ({ url, big }) =>
      new Promise((resolve, reject) => {
        const socket = io(url, { transports: ["websocket"], reconnection: false });
        socket.on("connect_error", (e) => reject(new Error("connect_error: " + e.message)));
        socket.on("connect", async () => {
          const answers = [];
          for (let i = 0; i < 5; i++) answers.push(await new Promise((r) => socket.emit("echo", big, r)));
          resolve(answers.every((a) => a === big));
        });
        setTimeout(() => reject(new Error("timed out")), 10000);
      }),
    { url: `http://127.0.0.1:${proxy.address().port}`, big: BIG },
  );
  assert.strictEqual(back, true, "every echo came back intact");
  const sent = 5 * BIG.length;
  assert.ok(counts.up < sent / 3, `Chromium → server: ${counts.up} bytes on the wire for ${sent}`);
  assert.ok(counts.down < sent / 3, `server → Chromium: ${counts.down} bytes on the wire for ${sent}`);
});
