"use strict";
// A cluster launcher that gives each worker a stable slot index (WEROLL_WORKER_INDEX) and
// re-forks a dead worker with the index it had, so it listens on the same port again.
const cluster = require("node:cluster");
const os = require("node:os");

/**
 * In the primary: forks `workers` processes running this script (or `exec`), re-forking any
 * that exits with the same index, unless the cluster is stopping. Returns a controller
 * `{ workers: Map<index, Worker>, stop(): Promise<void> }`. In a worker: returns null.
 */
function start(options = {}) {
  if (!cluster.isPrimary) return null;
  const count = Number(options.workers || process.env.WEROLL_WORKERS || os.availableParallelism());
  if (!Number.isInteger(count) || count < 1) throw new TypeError(`workers must be a positive integer, got ${options.workers}`);
  const respawnDelay = options.respawnDelay === undefined ? 200 : options.respawnDelay;
  if (options.exec) cluster.setupPrimary({ exec: options.exec, args: options.args || [] });
  const workers = new Map();
  const slotOf = new Map();
  let stopping = false;

  const fork = (index) => {
    const env = { ...(options.env || {}), WEROLL_WORKER_INDEX: String(index), WEROLL_WORKER_COUNT: String(count) };
    const w = cluster.fork(env);
    workers.set(index, w);
    slotOf.set(w.id, index);
    if (options.onFork) options.onFork(w, index);
    return w;
  };
  cluster.on("exit", (w, code, signal) => {
    const index = slotOf.get(w.id);
    if (index === undefined) return;
    slotOf.delete(w.id);
    if (workers.get(index) === w) workers.delete(index);
    if (stopping) return;
    if (options.onExit) options.onExit(w, index, code, signal);
    setTimeout(() => {
      if (!stopping) fork(index);
    }, respawnDelay);
  });
  for (let i = 0; i < count; i++) fork(i);

  const stop = () => {
    stopping = true;
    const all = [...workers.values()];
    return Promise.all(
      all.map(
        (w) =>
          new Promise((resolve) => {
            if (w.isDead()) return resolve();
            w.once("exit", resolve);
            w.kill("SIGTERM");
          }),
      ),
    ).then(() => undefined);
  };
  return { workers, stop, count };
}

module.exports = { start, isPrimary: cluster.isPrimary, isWorker: cluster.isWorker };
