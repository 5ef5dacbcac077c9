// weroll-native/cluster: forks workers with a stable index, re-forked with the same index.
import type { Worker } from "node:cluster";

export interface ClusterOptions {
  /** Number of workers; default env `WEROLL_WORKERS`, else the number of CPUs. */
  workers?: number;
  /** Script the workers run; default the primary's own script. */
  exec?: string;
  /** Arguments for `exec`. */
  args?: string[];
  /** Extra environment of every worker (besides `WEROLL_WORKER_INDEX` / `WEROLL_WORKER_COUNT`). */
  env?: Record<string, string | undefined>;
  /** ms before a dead worker is forked again, default 200. */
  respawnDelay?: number;
  /** Called for every fork, the first ones and the respawns. */
  onFork?: (worker: Worker, index: number) => void;
  /** Called when a worker exits while the cluster runs (it is then forked again). */
  onExit?: (worker: Worker, index: number, code: number, signal: string | null) => void;
}

export interface ClusterController {
  /** The live worker of each index. */
  readonly workers: Map<number, Worker>;
  readonly count: number;
  /** Stops respawning and ends every worker with SIGTERM; resolves when all have exited. */
  stop(): Promise<void>;
}

/** In the primary: forks the workers and returns their controller. In a worker: null. */
export declare function start(options?: ClusterOptions): ClusterController | null;
export declare const isPrimary: boolean;
export declare const isWorker: boolean;
