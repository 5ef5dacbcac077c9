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

test("chat page in Chromium: polling, websocket upgrade, messages both ways", { skip: !chromium && !isCI() && "chromium is not installed (apt-get install chromium)" }, async (t) => {
  assert.ok(chromium, "chromium is required in CI (apt-get install chromium)");
  const { chromium: playwright } = require("playwright-core");

  const app = await startApp({ basePort: await freePorts(1), httpPort: 0 });
  const browser = await playwright.launch({
    executablePath: chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
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
  assert.deepStrictEqual(errors, []);
});
