"use strict";
// weroll-native: `require("weroll-native").Realtime` replaces `require("weroll/web/Realtime")`.
const realtime = require("./lib/realtime");
const io = require("./lib/io");
const { workerIndex } = require("./lib/worker");
const native = require("./lib/native");

/** weroll's Realtime module: `Realtime.createServer(config, noGlobal)`. */
const Realtime = { createServer: realtime.createServer, RealtimeServer: realtime.RealtimeServer };

module.exports = {
  Realtime,
  RealtimeServer: realtime.RealtimeServer,
  createServer: realtime.createServer,
  Server: io.Server,
  Namespace: io.Namespace,
  Socket: io.Socket,
  BroadcastOperator: io.BroadcastOperator,
  workerIndex,
  /** `"node"`: sockets run on Node's own event loop; `"thread"`: on a network thread beside it. */
  eventLoop: native.eventLoop(),
};
