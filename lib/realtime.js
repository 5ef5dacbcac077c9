"use strict";
// weroll's Realtime API (web/Realtime.js + net/Websocket.js) over the native server.
const { EventEmitter } = require("node:events");
const { Server, Socket, pickOptions } = require("./io");
const { workerIndex } = require("./worker");
const native = require("./native");

const INVOKE_EVENT = "weroll:invoke";
/** How a weroll 1.x worker's `invoke` (socket.io-redis 3's customRequest) reaches this one. */
const CUSTOM_REQUEST_EVENT = "socket.io-redis:customRequest";
/** How a cluster request that could not be sent (Redis away) fails. */
const UNAVAILABLE = /cluster adapter unavailable/;
/** Keys of `cluster` that choose the adapter and set its mode's options (also read in `cluster.redis`). */
const MODE_KEYS = ["adapter", "subscriptionMode", "streamName", "streamCount", "maxLen", "readCount", "blockTimeInMs", "sessionKeyPrefix"];
// Server events that must see every connection as it comes and goes.
const EVERY_SOCKET_EVENTS = new Set(["connection", "disconnect", "shakeHandStart", "shakeHandComplete", "shakeHandSuccess", "shakeHandFail"]);

function clone(o) {
  return o && typeof o === "object" ? JSON.parse(JSON.stringify(o)) : o;
}

function check(cond, key, what) {
  if (!cond) throw new TypeError(`Realtime config.${key} ${what}`);
}

function validate(config) {
  check(config && typeof config === "object", "", "must be an object");
  const c = config;
  const ms = (k) => c[k] === undefined || (Number.isFinite(c[k]) && c[k] > 0);
  if (c.cluster && c.cluster.enable) {
    check(c.port !== undefined || c.server, "port", "must be set for cluster (must set port number for cluster.)");
    const every = c.cluster.presenceInterval;
    check(every === undefined || (Number.isInteger(every) && every > 0), "cluster.presenceInterval", `must be a positive integer (ms), got ${JSON.stringify(every)}`);
    check(c.cluster.redis && typeof c.cluster.redis === "object", "cluster.redis", "must be an object ({host, port}, {\"*\": {...}}, {pub, sub} or {url})");
  }
  check(c.port === undefined || (Number.isInteger(Number(c.port)) && Number(c.port) >= 0 && Number(c.port) <= 65535), "port", `must be an integer in 0..65535, got ${JSON.stringify(c.port)}`);
  for (const k of ["shakehandTimeout", "pingInterval", "pingTimeout", "connectTimeout", "maxHttpBufferSize", "upgradeTimeout"]) {
    check(ms(k), k, `must be a positive number, got ${JSON.stringify(c[k])}`);
  }
  check(c.session === undefined || c.session === null || typeof c.session.check === "function", "session", "must have a check(auth, callback) function");
  check(!c.server || (typeof c.server.on === "function" && typeof c.server.address === "function"), "server", "must be an http or https server");
  check(c.adpater === undefined || typeof c.adpater === "function", "adpater", "must be a class (constructor)");
  check(c.path === undefined || (typeof c.path === "string" && c.path[0] === "/"), "path", "must be a string starting with '/'");
  check(c.transports === undefined || Array.isArray(c.transports), "transports", "must be an array");
}

/** How long one of this worker's `pickServer()` answers counts as a connection to come. */
const PICK_MEMORY_MS = 2000;

function clientIP(peer) {
  let ip = peer.forwarded ? String(peer.forwarded).split(",")[0].trim() : peer.address || "";
  if (ip.startsWith("::ffff:")) ip = ip.slice(7);
  return ip;
}

function loadDefaultSession() {
  try {
    const Session = require("weroll/model/Session");
    return Session.getSharedInstance ? Session.getSharedInstance() : Session;
  } catch {
    return null;
  }
}

/** Calls `session.check` in any of weroll's styles; resolves the session payload or null. */
function checkSession(session, data) {
  return new Promise((resolve) => {
    let done = false;
    const cb = (err, payload) => {
      if (done) return;
      done = true;
      resolve(!err && payload ? payload : null);
    };
    try {
      let ret;
      if (data._auth !== undefined && data._auth !== null) {
        ret = session.check(data._auth, cb);
      } else {
        const s = data._sess;
        ret = session.check.length >= 3 ? session.check(s.userid, s.token, cb) : session.check(s, cb);
      }
      if (ret && typeof ret.then === "function") {
        ret.then(
          (payload) => cb(null, payload),
          (err) => cb(err || new Error("rejected")),
        );
      }
    } catch (err) {
      cb(err);
    }
  });
}

/** socket.helper: weroll's per-socket helpers (one small object, methods on the prototype). */
class Helper {
  constructor(socket) {
    this.socket = socket;
  }
  get _server() {
    return this.socket.server._realtime;
  }
  enterRoom(room, cb) {
    return settle(() => this.socket.join(room), cb);
  }
  leaveRoom(room, cb) {
    return settle(() => this.socket.leave(room), cb);
  }
  /** To every connection of this socket's clientID, on every worker. */
  send(type, ...data) {
    this._server.broadcastToRoom(`###${this.socket.clientID}`, type, ...data);
  }
  /** To every connection of `clientID`, on every worker. */
  sendTo(clientID, type, ...data) {
    this._server.broadcastToRoom(`###${clientID}`, type, ...data);
  }
  broadcast(type, ...data) {
    this._server.broadcastToAll(type, ...data);
  }
  broadcastWithoutSender(type, ...data) {
    this._server._fire(this.socket.broadcast, type, data);
  }
  broadcastToRoom(room, type, ...data) {
    this._server.broadcastToRoom(room, type, ...data);
  }
  broadcastToRoomWithoutSender(room, type, ...data) {
    this._server._fire(this.socket.broadcast.to(room), type, data);
  }
  /** Sends `$kick` with `data`, then disconnects about a second later. */
  kick(data) {
    const socket = this.socket;
    socket.fire("$kick", data);
    setTimeout(() => socket.disconnect(true), 1000).unref();
  }
}

function settle(fn, cb) {
  let err = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (typeof cb === "function") {
    cb(err);
    return Promise.resolve();
  }
  return err ? Promise.reject(err) : Promise.resolve();
}

/** A socket as weroll apps see it: socket.io's socket plus clientID, info, helper and fire. */
class RealtimeSocket extends Socket {
  constructor(nsp, id, peer) {
    super(nsp, id, peer);
    this.clientID = id;
    this.info = { id, ip: clientIP(peer), port: peer.port, connectTime: peer.time || Date.now() };
    this._helper = null;
  }
  get helper() {
    return this._helper || (this._helper = new Helper(this));
  }
  /** Emits through the `compress` codec (MessagePack per argument when on). */
  fire(type, ...args) {
    return this.server._realtime._fire(this, type, args);
  }
  close() {
    return this.disconnect(true);
  }
  _saveState() {
    return { ...super._saveState(), clientID: this.clientID, shaken: this.shaken, session: this.info.session, shakeHandTime: this.info.shakeHandTime };
  }
  _loadState(state) {
    super._loadState(state);
    this.clientID = state.clientID;
    this.shaken = state.shaken;
    this.info.session = state.session;
    this.info.shakeHandTime = state.shakeHandTime;
  }
  _dispatch(args) {
    // weroll's message routing: client `m` with [type, data] -> server.emit(type, socket, data)
    if (args[0] === "m") {
      const msg = args[1];
      if (Array.isArray(msg) && typeof msg[0] === "string") this.server._realtime._route(this, msg);
    } else if (args[0] === "$init") {
      this.server._realtime._onInit(this, args[1], typeof args[2] === "function" ? args[2] : undefined);
    }
    super._dispatch(args);
  }
  _onDisconnect(reason) {
    super._onDisconnect(reason);
    this.server._realtime._onDisconnect(this);
  }
}

/** One Realtime server: weroll's Websocket + Realtime over weroll-native. */
class RealtimeServer extends EventEmitter {
  constructor(config) {
    super();
    validate(config);
    this.config = config;
    this.debug = !!(config.debug || (global.VARS && global.VARS.debug));
    this.io = null;
    this.port = undefined;
    this.__producers = Object.create(null);
    this._sockets = new Map();
    this.registerProducer("getClientIDBySocketID", (id) => this.getClientIDBySocketID(id));
    this.registerProducer("kick", (clientID, data) => this._kickLocal(clientID, data));
    // weroll's extension point: a class whose instance may override the handshake steps
    // (shakehand(socket, data, cb(flag)), shakehandSuccess(socket), shakehandFail(socket),
    // connect(socket, cb), disconnect(socket)).
    this.hooks = config.adpater ? new config.adpater(this) : null;
    this.on("newListener", (ev) => {
      if (EVERY_SOCKET_EVENTS.has(ev)) this._everySocket();
    });
  }

  /**
   * Whether idle connections can live natively only: no shakehand, no codec, no hooks and no
   * listener that wants every connection. Then the native side joins `###<id>` and sends `$init`
   * itself, and a socket object is made only when the client sends something or the app asks
   * for it. A later listener of those events turns this off.
   */
  _canBeLazy() {
    const c = this.config;
    return c.shakehand === false && !c.compress && !this.hooks && !this.debug && ![...EVERY_SOCKET_EVENTS].some((e) => this.listenerCount(e) > 0);
  }
  _everySocket() {
    if (this.io && this.io.sockets._announce.lazy) this.io.sockets._setAnnounce(false, null);
  }
  /** The socket object of `id` made now if the native side has not told of it yet. */
  _announce(id) {
    if (!this.io || !this.io.sockets._announce.lazy || id === undefined || id === null) return;
    const sid = String(id);
    if (!this._sockets.has(sid)) this.io.sockets._announcePending(sid);
  }

  _hook(name, ...args) {
    const h = this.hooks;
    return h && typeof h[name] === "function" ? h[name](...args) : undefined;
  }

  traceLog(...args) {
    if (this.debug) console.log("<Realtime>", ...args);
  }
  traceError(...args) {
    if (this.debug) console.error("<Realtime>", ...args);
  }
  traceInfo(...args) {
    if (this.debug) console.info("<Realtime>", ...args);
  }

  /** The socket.io-style options handed to the native server. */
  _ioOptions() {
    const c = this.config;
    const opts = pickOptions(c);
    opts.host = c.host;
    opts.requestsTimeout = c.requestsTimeout;
    opts.tls = c.tls;
    opts.connectionStateRecovery = c.connectionStateRecovery;
    if (c.cluster && c.cluster.enable) {
      const redis = clone(c.cluster.redis);
      redis.key = redis.key || redis.prefix || c.cluster.key || c.cluster.prefix || "realtime";
      if (c.requestsTimeout && !redis.requestsTimeout) redis.requestsTimeout = c.requestsTimeout;
      if (c.cluster.offlineQueue !== undefined && redis.offlineQueue === undefined) redis.offlineQueue = c.cluster.offlineQueue;
      // "classic" (default), "sharded" or "streams", and the options of the sharded and streams modes.
      for (const k of MODE_KEYS) if (c.cluster[k] !== undefined && redis[k] === undefined) redis[k] = c.cluster[k];
      opts.redis = redis;
      const host = c.publicHost || process.env.WEROLL_PUBLIC_HOST || "127.0.0.1";
      opts.publicAddress = c.publicAddress || `${host}:${this.port}`;
      opts.presenceInterval = c.cluster.presenceInterval;
    }
    return opts;
  }

  /** Starts listening. Resolves the port; a failure rejects and is emitted as `error`. */
  start() {
    if (this.io) throw new Error("already started");
    const c = this.config;
    let port = c.port === undefined ? 80 : Number(c.port);
    if (c.server) {
      // As weroll: the app's server is the Realtime server, on its port.
      const addr = c.server.address();
      port = addr && typeof addr === "object" ? addr.port : undefined;
    } else if (c.cluster && c.cluster.enable) {
      const index = workerIndex(c.cluster);
      if (global.workerID === undefined) global.workerID = index;
      port += index;
      if (port > 65535) throw new RangeError(`Realtime port ${c.port} + worker index ${index} exceeds 65535`);
    }
    this.port = port;
    const io = new Server({ ...this._ioOptions(), socketClass: RealtimeSocket });
    io._realtime = this;
    this.io = io;
    io.fire = (type, ...args) => this._fire(io, type, args);
    io.on("adapter", (s) => {
      this.traceInfo(`cluster adapter ${s.up ? "connected" : "disconnected"}: ${s.detail}`);
      this.emit("adapter", s);
    });
    // Not a `connection` listener: that would make every socket a JS object at once.
    io.sockets._onSocket = (socket) => this._onConnection(socket);
    if (this._canBeLazy()) io.sockets._setAnnounce(true, { roomPrefix: "###", event: "$init" });
    io.sockets.on(INVOKE_EVENT, (method, args, cb) => this._invokeLocal(method, args).then((r) => cb && cb(r)));
    // weroll 1.x's hook: `["invoke", [method, args]]`, answered with the producer's result.
    io.sockets.on(CUSTOM_REQUEST_EVENT, (data, cb) => {
      if (!Array.isArray(data) || data[0] !== "invoke" || !Array.isArray(data[1])) return cb && cb(null);
      this._invokeLocal(data[1][0], data[1][1]).then((r) => cb && cb(r.result === undefined ? null : r.result));
    });
    const started = c.server ? io.attach(c.server).ready() : io.listen(port, c.host);
    return started.then(
      (bound) => {
        this.port = bound;
        this.traceLog(`instance start at port: ${bound}`);
        this.emit("start", io);
        return bound;
      },
      (cause) => {
        this.io = null;
        const err = new Error(`Realtime failed to listen on port ${port}: ${cause.message}`);
        err.port = port;
        err.cause = cause;
        if (/in use/i.test(cause.message)) err.code = "EADDRINUSE";
        if (this.listenerCount("error")) this.emit("error", err);
        throw err;
      },
    );
  }

  /** Closes every client, leaves the cluster; the process may then exit. */
  async close() {
    if (!this.io) return;
    const io = this.io;
    this.io = null;
    await io.close();
    this.emit("close");
  }

  ref() {
    if (this.io) this.io.ref();
    return this;
  }
  unref() {
    if (this.io) this.io.unref();
    return this;
  }

  /** Encodes arguments as `compress` asks (MessagePack) or leaves them as they are. */
  _zip(args) {
    if (!this.config.compress) return args;
    return args.map((a) => (a === undefined ? a : native.msgpackEncode(JSON.stringify(a === undefined ? null : a))));
  }

  _fire(target, type, args) {
    return target.emit(type, ...this._zip(args));
  }

  _onConnection(socket) {
    this._sockets.set(socket.id, socket);
    if (this.debug) this.traceLog(`client *${socket.id}* connected from ${socket.info.ip}:${socket.info.port}`);
    this._hook("connect", socket, () => {});
    const config = this.config;
    this.emit("connection", socket);
    if (!socket.connected) return;
    // Recovered (connection state recovery): clientID, rooms and the shakehand are back as
    // they were; the client is not asked again.
    if (socket.recovered && socket.shaken) return;

    if (config.shakehand !== false) {
      socket.initTimer = setTimeout(() => this._shakehandFail(socket), config.shakehandTimeout || 15000);
    } else {
      this._shakehandSuccess(socket);
    }
  }

  /** The client's `$init` (shakehand request): `{_auth}` or `{_sess}`, maybe with an ack. */
  _onInit(socket, data, ack) {
    if (this.config.shakehand === false || socket.shaken !== undefined || socket._shaking) return;
    socket._shaking = true;
    clearTimeout(socket.initTimer);
    socket.initTimer = undefined;
    this.emit("shakeHandStart", socket);
    this._shakehand(socket, data).then((ok) => {
      socket._shaking = false;
      if (!socket.connected) return;
      this.emit("shakeHandComplete", socket, ok);
      if (ok) {
        this._shakehandSuccess(socket, ack);
      } else {
        if (typeof ack === "function") ack({ error: "shakehand failed" });
        this._shakehandFail(socket);
      }
    });
  }

  _route(socket, msg) {
    if (this.debug) this.traceLog(`get message from client *${socket.id}*`);
    this.emit(msg[0], socket, msg[1]);
  }

  _onDisconnect(socket) {
    clearTimeout(socket.initTimer);
    this._sockets.delete(socket.id);
    if (this.debug) this.traceLog(`client *${socket.id}* disconnected...`);
    this.emit("disconnect", socket);
    this._hook("disconnect", socket);
    socket.clientID = null;
    socket.info.session = null;
    socket.info.shakeHandTime = null;
  }

  async _shakehand(socket, data) {
    const config = this.config;
    if (this.hooks && typeof this.hooks.shakehand === "function") {
      return new Promise((resolve) => {
        const r = this.hooks.shakehand(socket, data, (flag) => resolve(!!flag));
        if (r && typeof r.then === "function") r.then((flag) => resolve(!!flag), () => resolve(false));
      });
    }
    const hasAuth = data && typeof data === "object" && ((data._auth !== undefined && data._auth !== null && data._auth !== "") || (data._sess && typeof data._sess === "object"));
    if (!hasAuth) return !!config.allowGuest;
    const session = config.session || loadDefaultSession();
    if (!session) {
      this.traceError("no session checker: set config.session = { check(auth, cb) }");
      return !!config.allowGuest;
    }
    const payload = await checkSession(session, data);
    if (payload) {
      socket.info.session = payload;
      socket.info.shakeHandTime = Date.now();
      return true;
    }
    return !!config.allowGuest;
  }

  _shakehandSuccess(socket, ack) {
    clearTimeout(socket.initTimer);
    socket.initTimer = undefined;
    const session = socket.info.session;
    socket.clientID = (session && session.userid !== undefined && session.userid !== null ? String(session.userid) : null) || socket.id;
    socket.shaken = true;
    // A welcomed socket was joined and sent `$init` by the native side already.
    if (!socket._welcomed || socket.clientID !== socket.id) {
      socket.join(`###${socket.clientID}`);
      const init = { time: Date.now(), socketID: socket.id, clientID: socket.clientID };
      socket.fire("$init", init);
      if (typeof ack === "function") ack(init);
    }
    // A cluster that keeps recovery sessions (streams mode) checkpoints live ones: with this, a
    // client whose worker dies recovers elsewhere with its clientID.
    if (this.io._recovery) socket._checkpoint();
    if (this.debug) this.traceLog(`client *${socket.clientID}* shakehand success.`);
    this._hook("shakehandSuccess", socket);
    this.emit("shakeHandSuccess", socket);
  }

  _shakehandFail(socket) {
    if (this.io) this.io._counters.shakehandFailures++;
    clearTimeout(socket.initTimer);
    socket.initTimer = undefined;
    if (socket.shaken === undefined) socket.shaken = false;
    this.traceLog(`client *${socket.id}* shakehand failed`);
    if (!socket.connected) return;
    this._hook("shakehandFail", socket);
    this.emit("shakeHandFail", socket);
    socket.disconnect(true);
  }

  _requireStarted() {
    if (!this.io) throw new Error("Realtime server is not started");
    return this.io;
  }

  /** To every connection of `clientID`, on every worker. */
  sendTo(clientID, type, ...data) {
    this.broadcastToRoom(`###${clientID}`, type, ...data);
  }
  /** To every socket in `room`, on every worker. */
  broadcastToRoom(room, type, ...data) {
    this._fire(this._requireStarted().in(room), type, data);
  }
  /** To every socket, on every worker. */
  broadcastToAll(type, ...data) {
    this._fire(this._requireStarted().sockets, type, data);
  }
  /** Sends `$kick` with `data` to every connection of `clientID` on every worker, then disconnects them. */
  kick(clientID, data) {
    // This worker's connections are kicked even when the other workers cannot be reached.
    const local = this._kickLocal(clientID, data);
    return this._invokeRemote("kick", [clientID, data]).then(
      (remote) => remote.reduce((n, r) => n + ((r && r.result) || 0), local),
      (err) => {
        if (UNAVAILABLE.test(err.message) && this.io) {
          // Redis is away: the kick waits in the offline queue without an answer, and the
          // other workers carry it out once Redis is back. Only local kicks are counted.
          this.io.sockets.serverSideEmit(INVOKE_EVENT, "kick", [clientID, data]);
        } else {
          this.traceError("kick error --->", err.message);
        }
        return local;
      },
    );
  }
  _kickLocal(clientID, data) {
    this._announce(clientID);
    let n = 0;
    for (const socket of this._sockets.values()) {
      if (socket.clientID === String(clientID) || socket.clientID === clientID) {
        socket.helper.kick(data);
        n++;
      }
    }
    return n;
  }

  /** This worker's connections of `clientID` (socket objects when `needSocketInstance`, else ids). */
  getConnectionsByClientID(clientID, needSocketInstance) {
    this._announce(clientID);
    const out = [];
    for (const socket of this._sockets.values()) {
      if (socket.clientID === clientID || socket.clientID === String(clientID)) out.push(needSocketInstance ? socket : socket.id);
    }
    return out;
  }
  /** Every worker's socket ids of `clientID`. */
  async getClusterConnectionsByClientID(clientID) {
    const sockets = await this._requireStarted().in(`###${clientID}`).fetchSockets();
    return sockets.map((s) => s.id);
  }
  /** Every worker's socket ids in `room`. */
  async getClusterRoomMembers(room) {
    const sockets = await this._requireStarted().in(room).fetchSockets();
    return sockets.map((s) => s.id);
  }
  getClientIDBySocketID(id) {
    this._announce(id);
    const s = this._sockets.get(id);
    return s ? s.clientID : null;
  }
  getSocketInstanceBySocketID(id) {
    this._announce(id);
    return this._sockets.get(id) || null;
  }
  getClientConnectionBySocketID(id) {
    return this.getSocketInstanceBySocketID(id);
  }
  /** Live workers of the cluster: `[{address, connections}]`. */
  async servers() {
    const io = this._requireStarted();
    return JSON.parse(await io._native.servers());
  }
  /**
   * The Redis adapter's offline queue: `{queued, queuedBytes, delivered, dropped, outages}`
   * (what waits for Redis now, and counts since start), or null without a cluster.
   */
  offlineQueue() {
    return this._requireStarted().offlineQueue();
  }
  /** The least loaded live worker's address, or null. */
  async pickServer() {
    const list = await this.servers();
    if (!list.length) return null;
    // The registry learns of a client only once it connects: picks of the last seconds count
    // as the connections they are about to become, so a burst of pages spreads out.
    const now = Date.now();
    const picks = this._picks || (this._picks = new Map());
    for (const [addr, times] of picks) {
      const live = times.filter((t) => now - t < PICK_MEMORY_MS);
      if (live.length) picks.set(addr, live);
      else picks.delete(addr);
    }
    const load = (s) => s.connections + (picks.get(s.address) || []).length;
    let best = list[0];
    for (const s of list) if (load(s) < load(best)) best = s;
    picks.set(best.address, [...(picks.get(best.address) || []), now]);
    return best.address;
  }

  /** This worker's metrics (see the socket.io-style `Server#metrics`). */
  metrics() {
    return this._requireStarted().metrics();
  }
  /** Every worker's metrics, gathered over Redis: `[{address, metrics}]`. */
  clusterMetrics() {
    return this._requireStarted().clusterMetrics();
  }
  /** Prometheus text of this worker's metrics, or (`{cluster: true}`) every worker's. */
  metricsText(opts) {
    return this._requireStarted().metricsText(opts);
  }
  /** A `(req, res)` handler answering `metricsText(opts)`, to mount at `/metrics`. */
  metricsHandler(opts) {
    return (req, res) => this._requireStarted().metricsHandler(opts)(req, res);
  }

  /** Registers `fn` under `name`, callable from every worker with `invoke`. */
  registerProducer(name, fn) {
    if (typeof fn !== "function") throw new TypeError(`registerProducer(${name}): not a function`);
    this.__producers[name] = fn.bind(this);
  }

  async _invokeLocal(method, args) {
    const fn = this.__producers[method];
    if (!fn) {
      this.traceError("be invoked error: no such method --->", method);
      return { error: `no such method: ${method}` };
    }
    try {
      const r = await fn(...(Array.isArray(args) ? args : [args]));
      return { result: r === undefined ? null : r };
    } catch (err) {
      return { error: String((err && err.message) || err) };
    }
  }

  /** The other workers' `{result}` / `{error}` answers to producer `method`. */
  _invokeRemote(method, args) {
    const io = this.io;
    if (!io) return Promise.resolve([]);
    if (this.config.cluster && this.config.cluster.legacyInvoke) {
      // During a migration from weroll 1.x: as its invoke, socket.io-redis 3's customRequest,
      // which weroll 1.x workers answer too.
      return io.sockets._customRequest(["invoke", [method, args === undefined ? [] : args]]).then((answers) => answers.map((result) => ({ result })));
    }
    return new Promise((resolve, reject) =>
      io.sockets.serverSideEmit(INVOKE_EVENT, method, args === undefined ? [] : args, (err, r) => (err ? reject(err) : resolve(r))),
    );
  }

  /**
   * Runs producer `method` with `args` on every worker and gathers each worker's result.
   * Resolves (and calls `callBack(null, results)`) with the results, this worker's first.
   * An unknown method or a failing producer rejects with its error.
   */
  invoke(method, args, callBack) {
    const run = async () => {
      const local = await this._invokeLocal(method, args);
      const remote = await this._invokeRemote(method, args);
      const all = [local, ...remote];
      const failed = all.find((r) => r && r.error);
      if (failed) throw new Error(`invoke ${method}: ${failed.error}`);
      return all.map((r) => (r ? r.result : null));
    };
    const p = run();
    if (typeof callBack === "function") {
      p.then((r) => callBack(null, r), (e) => callBack(e));
      return p.catch(() => undefined);
    }
    return p;
  }
}

/** weroll's `Realtime.createServer(config, noGlobal)`. */
function createServer(config, noGlobal) {
  const server = new RealtimeServer(config);
  if (!noGlobal) {
    Object.defineProperty(global, "Realtime", { configurable: true, enumerable: false, get: () => server });
  }
  return server;
}

module.exports = { createServer, RealtimeServer, RealtimeSocket };
