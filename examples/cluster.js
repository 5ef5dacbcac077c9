"use strict";
// Runs examples/app.js as a 4-worker cluster with weroll-native's launcher:
//
//   REDIS_PORT=6379 node examples/cluster.js
//
// Each worker gets a stable index (0..3) in WEROLL_WORKER_INDEX, so worker i always listens on
// PORT + i, and a worker that dies is forked again with the same index, on the same port — the
// port list in nginx's upstream (examples/nginx.conf) stays valid.
const path = require("node:path");
const launcher = require("weroll-native/cluster");

const ctl = launcher.start({
  workers: Number(process.env.WORKERS || 4),
  exec: path.join(__dirname, "app.js"),
  env: { PORT: process.env.PORT || "3001" },
  onExit: (worker, index, code, signal) => console.error(`worker ${index} exited (${signal || code}); restarting it`),
});

const stop = () => ctl.stop().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
