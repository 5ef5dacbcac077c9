"use strict";
// Serving on the app's own http or https server (socket.io's `new Server(httpServer)` and
// weroll's `config.server`). Requests under `path` go to the native engine; every other
// request and upgrade stays with the app's own listeners.
//
// - A websocket upgrade hands its TCP socket to the native side once Node has parsed the
//   request head: frames never pass through JavaScript. A TLS socket stays in Node and is
//   piped through a loopback connection to the native side instead.
// - Any other request under `path` (long-polling, CORS preflight) crosses once each way: its
//   head and body in, the engine's answer out.
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const zlib = require("node:zlib");
const { pipeline } = require("node:stream");

let nextRequestId = 1;

/** What the native side needs of a request Node parsed. */
function head(req, socket) {
  return { method: req.method, url: req.url, rawHeaders: req.rawHeaders, remoteAddress: socket.remoteAddress || "", remotePort: socket.remotePort || 0 };
}

function drain(socket) {
  const parts = [];
  let chunk;
  while ((chunk = socket.read()) !== null) parts.push(chunk);
  return parts;
}

// socket.io's `serveClient`: the browser bundles under `path`, from the app's socket.io-client.
const CLIENT_FILES = new Set(["socket.io.min.js", "socket.io.min.js.map", "socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map", "socket.io.esm.min.js", "socket.io.esm.min.js.map", "socket.io.js", "socket.io.js.map"]);

/** The app's socket.io-client bundles: `{dir, version}`, or null when it has none. */
function clientDist() {
  const paths = [process.cwd(), ...(require.main ? require.main.paths : [])];
  try {
    const pkg = require.resolve("socket.io-client/package.json", { paths });
    const dir = path.join(path.dirname(pkg), "dist");
    const { version } = JSON.parse(fs.readFileSync(pkg, "utf8"));
    return fs.existsSync(dir) ? { dir, version } : null;
  } catch {
    return null;
  }
}

/** Serves a client bundle as socket.io does (ETag of the client version, compressed if asked). */
function serveFile(dist, file, req, res) {
  const etag = `"${dist.version}"`;
  const given = req.headers["if-none-match"];
  if (given === etag || given === `W/${etag}`) {
    res.writeHead(304).end();
    return;
  }
  res.setHeader("Cache-Control", "public, max-age=0");
  res.setHeader("Content-Type", `application/${file.endsWith(".map") ? "json" : "javascript"}; charset=utf-8`);
  res.setHeader("ETag", etag);
  const stream = fs.createReadStream(path.join(dist.dir, file));
  const accept = String(req.headers["accept-encoding"] || "");
  const done = (err) => err && res.end();
  if (/\bgzip\b/.test(accept)) {
    res.writeHead(200, { "content-encoding": "gzip" });
    pipeline(stream, zlib.createGzip(), res, done);
  } else {
    res.writeHead(200);
    pipeline(stream, res, done);
  }
}

/** Whether `url` is under `path` (`/socket.io`, `/socket.io/…`, `/socket.io?…`). */
function matcher(path) {
  const base = path.replace(/\/+$/, "") || "/";
  return (url) => {
    if (typeof url !== "string" || !url.startsWith(base)) return false;
    const next = url.charAt(base.length);
    return next === "" || next === "/" || next === "?";
  };
}

/**
 * Routes `srv`'s requests under `opts.path` to `native` once `ready` resolves. Returns a
 * function that removes the routing again.
 */
function attach(srv, native, ready, opts) {
  const base = (opts.path || "/socket.io").replace(/\/+$/, "");
  const matches = matcher(base);
  const dist = opts.serveClient === false ? null : clientDist();
  const maxBody = Number(opts.maxHttpBufferSize) > 0 ? Number(opts.maxHttpBufferSize) : 1e6;
  const destroyUpgrade = opts.destroyUpgrade !== false;
  const destroyUpgradeTimeout = Number(opts.destroyUpgradeTimeout) >= 0 ? Number(opts.destroyUpgradeTimeout) : 1000;
  let started = false;
  let failed = null;
  ready.then(
    () => (started = true),
    (err) => (failed = err),
  );
  const whenReady = (fn) => {
    if (started) fn();
    else if (failed) fn(failed);
    else ready.then(() => fn(), (err) => fn(err));
  };

  // Like engine.io: the app's request listeners move behind ours.
  const appListeners = srv.listeners("request").slice();
  srv.removeAllListeners("request");

  function onRequest(req, res) {
    if (!matches(req.url)) {
      for (const l of appListeners) l.call(srv, req, res);
      return;
    }
    if (req.method === "GET" && opts.serveClient !== false) {
      const file = req.url.slice(base.length + 1).split("?")[0];
      if (CLIENT_FILES.has(file)) {
        if (dist) serveFile(dist, file, req, res);
        else for (const l of appListeners) l.call(srv, req, res);
        return;
      }
    }
    const id = nextRequestId;
    nextRequestId = nextRequestId >= 0xffffffff ? 1 : nextRequestId + 1;
    const chunks = [];
    let size = 0;
    let answered = false;
    req.on("data", (c) => {
      // Beyond the limit the engine answers 413 from what it got; the rest is only drained.
      if (size <= maxBody) chunks.push(c);
      size += c.length;
    });
    req.on("error", () => {});
    res.on("close", () => {
      if (!answered) {
        answered = true;
        native.abortRequest(id);
      }
    });
    req.on("end", () =>
      whenReady((err) => {
        if (err || res.destroyed) {
          if (!res.headersSent && !res.destroyed) res.writeHead(503).end();
          return;
        }
        let p;
        try {
          p = native.httpRequest(id, head(req, req.socket), Buffer.concat(chunks));
        } catch {
          res.writeHead(500).end();
          return;
        }
        p.then(
          (reply) => {
            answered = true;
            if (res.destroyed) return;
            res.writeHead(reply.status, reply.headers);
            res.end(reply.body);
          },
          () => {
            answered = true;
            if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
          },
        );
      }),
    );
  }

  function onUpgrade(req, socket, bodyHead) {
    if (!matches(req.url)) {
      if (destroyUpgrade) {
        // As engine.io: an upgrade nobody answered dies.
        setTimeout(() => {
          if (socket.writable && socket.bytesWritten <= 0) {
            socket.on("error", () => {});
            socket.end();
          }
        }, destroyUpgradeTimeout).unref();
      }
      return;
    }
    socket.on("error", () => {});
    // Whatever arrives before the hand-over waits in the stream's buffer.
    socket.pause();
    whenReady((err) => {
      if (socket.destroyed) return;
      if (err) {
        socket.end("HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
        return;
      }
      const pre = Buffer.concat([bodyHead, ...drain(socket)]);
      const parsed = head(req, socket);
      try {
        const h = socket._handle;
        const fd = !socket.encrypted && h && typeof h.fd === "number" ? h.fd : -1;
        if (fd >= 0 && native.adoptUpgrade(fd, parsed, pre)) {
          // The native side holds its own descriptor of the socket; closing Node's writes nothing.
          socket.destroy();
          return;
        }
        // Node cannot wrap a socket handle from elsewhere on Windows: polling only there.
        if (process.platform === "win32") {
          socket.destroy();
          return;
        }
        bridge(socket, native.bridgeUpgrade(parsed, pre));
      } catch {
        socket.destroy();
      }
    });
  }

  function onClose() {
    detach();
  }

  srv.on("request", onRequest);
  srv.on("upgrade", onUpgrade);
  function detach() {
    srv.removeListener("request", onRequest);
    srv.removeListener("upgrade", onUpgrade);
    srv.removeListener("close", onClose);
    if (srv.listenerCount("request") === 0) for (const l of appListeners) srv.on("request", l);
  }
  return { detach, onClose };
}

/** Pipes a socket Node keeps (TLS) through the loopback connection `fd` to the native side. */
function bridge(socket, fd) {
  const inner = new net.Socket({ fd, readable: true, writable: true });
  inner.setNoDelay(true);
  inner.on("error", () => {});
  socket.pipe(inner);
  inner.pipe(socket);
  socket.resume();
  // The native side closed: let what it wrote reach the client first.
  inner.on("close", () => {
    socket.end();
    setTimeout(() => socket.destroy(), 5000).unref();
  });
  socket.on("close", () => inner.destroy());
}

module.exports = { attach, matcher };
