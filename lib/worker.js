"use strict";
// Which slot of the cluster this process serves: a stable index, so that a respawned worker
// listens on the same port as the one it replaces.
const cluster = require("node:cluster");

function parseIndex(v, what) {
  if (v === undefined || v === null || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * The worker index, first defined of: options.workerIndex, WEROLL_WORKER_INDEX (set by
 * weroll-native's cluster launcher), pm2's instance variable (NODE_APP_INSTANCE or the name in
 * options.instanceVar / PM2 `instance_var`), global.workerID (weroll), the Node cluster id
 * modulo WEROLL_WORKER_COUNT when known, else 0.
 */
function workerIndex(options = {}) {
  const explicit = parseIndex(options.workerIndex, "workerIndex");
  if (explicit !== undefined) return explicit;
  const env = process.env;
  const launcher = parseIndex(env.WEROLL_WORKER_INDEX, "WEROLL_WORKER_INDEX");
  if (launcher !== undefined) return launcher;
  const instanceVar = options.instanceVar || env.instance_var || "NODE_APP_INSTANCE";
  const pm2 = parseIndex(env[instanceVar], instanceVar);
  if (pm2 !== undefined) return pm2;
  if (global.workerID !== undefined && global.workerID !== null && global.workerID !== "") {
    const w = parseIndex(global.workerID, "global.workerID");
    if (w !== undefined) return w;
  }
  if (cluster.isWorker && cluster.worker) {
    const count = parseIndex(env.WEROLL_WORKER_COUNT, "WEROLL_WORKER_COUNT");
    if (count) return (cluster.worker.id - 1) % count;
    return cluster.worker.id - 1;
  }
  return 0;
}

module.exports = { workerIndex };
