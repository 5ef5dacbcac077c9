"use strict";
// socket.io's common server API (Server, Namespace, Socket, BroadcastOperator) over the native
// server. Sockets, rooms and broadcasts live in Rust; this file only runs handlers.
const { EventEmitter } = require("node:events");
const querystring = require("node:querystring");
const native = require("./native");
const { encode, decode } = require("./codec");
const { attach: attachTo } = require("./attach");
const { JsCounters, prometheusText } = require("./metrics");

/** The reserved server-side event through which servers ask each other for their metrics. */
const METRICS_EVENT = "weroll-native:metrics";

const emitLocal = EventEmitter.prototype.emit;
const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);
// Reasons a dropped socket is kept for connection state recovery (socket.io's list).
const SAVED_REASONS = new Set(["transport error", "transport close", "forced close", "ping timeout", "server shutting down", "forced server close"]);
/** Events of the Server itself; any other listener goes to the main namespace, as in socket.io. */
const SERVER_EVENTS = new Set(["error", "listening", "close", "adapter", "new_namespace", "newListener", "removeListener"]);
const KIND = { CONNECTION: 0, EVENT: 1, ACK: 2, DISCONNECT: 3, SERVER_SIDE_EMIT: 4, ADAPTER_STATUS: 5, UPGRADE: 6, ROOMS: 7, SOCKET_DATA: 8 };
/** Adapter events that need the native side to tell of room changes. */
const ROOM_EVENTS = new Set(["join-room", "leave-room"]);

function toList(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v.map(String) : v instanceof Set ? [...v].map(String) : [String(v)];
}

/** Server options the native side reads as they are (socket.io's names). */
const SERVER_OPTIONS = [
  "path",
  "pingInterval",
  "pingTimeout",
  "upgradeTimeout",
  "maxHttpBufferSize",
  "connectTimeout",
  "transports",
  "cors",
  "bindRetryMs",
  "maxQueuedFrames",
  "maxQueuedBytes",
  "httpCompression",
  "perMessageDeflate",
];

/** The `SERVER_OPTIONS` of `o` (undefined ones stay undefined and take the native default). */
function pickOptions(o) {
  const out = {};
  for (const k of SERVER_OPTIONS) out[k] = o[k];
  return out;
}

/** An http/https (or any net) server to attach to, as opposed to an options object. */
function isHttpServer(v) {
  return !!v && typeof v === "object" && typeof v.listen === "function" && typeof v.on === "function" && typeof v.address === "function";
}

function rethrow(err) {
  process.nextTick(() => {
    throw err;
  });
}

/** Targets of a broadcast: `to`/`in`/`except`, `local`, then `emit` and the bulk operations. */
class BroadcastOperator {
  constructor(nsp, rooms = new Set(), exceptRooms = new Set(), flags = {}) {
    this.nsp = nsp;
    this.rooms = rooms;
    this.exceptRooms = exceptRooms;
    this.flags = flags;
  }
  to(room) {
    const rooms = new Set(this.rooms);
    for (const r of toList(room)) rooms.add(r);
    return new BroadcastOperator(this.nsp, rooms, this.exceptRooms, this.flags);
  }
  in(room) {
    return this.to(room);
  }
  except(room) {
    const ex = new Set(this.exceptRooms);
    for (const r of toList(room)) ex.add(r);
    return new BroadcastOperator(this.nsp, this.rooms, ex, this.flags);
  }
  get local() {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, { ...this.flags, local: true });
  }
  get volatile() {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, { ...this.flags, volatile: true });
  }
  compress(c) {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, { ...this.flags, compress: !!c });
  }
  timeout(ms) {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, { ...this.flags, timeout: ms });
  }
  _args() {
    return [this.rooms.size ? [...this.rooms] : null, this.exceptRooms.size ? [...this.exceptRooms] : null, !!this.flags.local];
  }
  /**
   * Emits to every targeted socket of the cluster. A function as last argument asks every
   * recipient to acknowledge: it gets `(err, responses)` once all answered, or an "operation has
   * timed out" error with the answers so far after `timeout(ms)`.
   */
  emit(ev, ...args) {
    if (RESERVED.has(ev)) throw new Error(`"${ev}" is a reserved event name`);
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    // Not serving yet: nobody to reach (socket.io's broadcast to no one).
    if (!this.nsp.server._nativeReady) {
      if (cb) process.nextTick(() => cb.call(this, null, []));
      return true;
    }
    const { data, attachments } = encode([ev, ...args]);
    const [rooms, except, local] = this._args();
    const native = this.nsp.server._native;
    if (!cb) {
      native.broadcast(this.nsp.name, data, attachments, rooms, except, local);
      return true;
    }
    const timeout = this.flags.timeout === undefined ? 0 : Number(this.flags.timeout);
    native.broadcastWithAck(this.nsp.name, data, attachments, rooms, except, local, timeout).then(
      (r) => {
        const responses = r.responses.map((p) => decode(p.data, p.attachments)[0]);
        cb.call(this, r.complete ? null : new Error("operation has timed out"), responses);
      },
      (err) => cb.call(this, err, []),
    );
    return true;
  }
  /** `emit` with acknowledgements, as a Promise of the responses (rejects on timeout). */
  emitWithAck(ev, ...args) {
    return new Promise((resolve, reject) => {
      this.emit(ev, ...args, (err, responses) => (err ? reject(err) : resolve(responses)));
    });
  }
  /** The targeted sockets of the cluster (remote ones as plain descriptions that can act). */
  async fetchSockets() {
    const [rooms, except, local] = this._args();
    const json = await this.nsp.server._native.fetchSockets(this.nsp.name, rooms, except, local);
    // As socket.io: this server's sockets are the Socket objects themselves (with their data).
    return JSON.parse(json).map((d) => this.nsp._sockets.get(d.id) || new RemoteSocket(this.nsp, d));
  }
  socketsJoin(room) {
    const [rooms, except, local] = this._args();
    this.nsp.server._native.socketsJoin(this.nsp.name, rooms, except, local, toList(room), true);
  }
  socketsLeave(room) {
    const [rooms, except, local] = this._args();
    this.nsp.server._native.socketsJoin(this.nsp.name, rooms, except, local, toList(room), false);
  }
  disconnectSockets(close = false) {
    const [rooms, except, local] = this._args();
    this.nsp.server._native.disconnectSockets(this.nsp.name, rooms, except, local, !!close);
  }
}

/** A socket of any server of the cluster, as `fetchSockets()` returns it. */
class RemoteSocket {
  constructor(nsp, d) {
    this.nsp = nsp;
    this.id = d.id;
    this.handshake = d.handshake;
    this.rooms = new Set(d.rooms);
    // Native servers do not send `socket.data` with their sockets; Node servers do.
    this.data = d.data === null || d.data === undefined ? {} : d.data;
  }
  emit(ev, ...args) {
    return new BroadcastOperator(this.nsp, new Set([this.id])).emit(ev, ...args);
  }
  join(room) {
    new BroadcastOperator(this.nsp, new Set([this.id])).socketsJoin(room);
  }
  leave(room) {
    new BroadcastOperator(this.nsp, new Set([this.id])).socketsLeave(room);
  }
  disconnect(close = false) {
    new BroadcastOperator(this.nsp, new Set([this.id])).disconnectSockets(close);
    return this;
  }
}

/** One client in one namespace. `on` hears the client; `emit` talks to it. */
class Socket extends EventEmitter {
  constructor(nsp, id, peer) {
    super();
    this.nsp = nsp;
    this.server = nsp.server;
    this.id = id;
    this.connected = true;
    this.data = {};
    // {address, port, forwarded}: what every connection needs; the rest of the handshake is
    // fetched from the native side on first use.
    this._peer = peer;
    this._handshake = null;
    this._acks = null;
    this._ackSeq = 0;
    this._any = null;
    this._anyOut = null;
    this._conn = null;
    this._flags = null;
    this._leftRooms = null;
    this._welcomed = false;
    /** Connection state recovery gave this socket back (same id, rooms, data, missed events). */
    this.recovered = false;
  }
  /** What connection state recovery keeps of this socket in JavaScript while it is away. */
  _saveState() {
    return { data: this.data };
  }
  _loadState(state) {
    if (state.data !== undefined && state.data !== null) this.data = state.data;
  }
  /** Tells the native side what recovery keeps of this live socket (for a cluster that checkpoints it). */
  _checkpoint() {
    let state;
    try {
      state = JSON.stringify(this._saveState());
    } catch {
      return;
    }
    this.server._native.checkpoint(this.nsp.name, this.id, state);
  }
  get disconnected() {
    return !this.connected;
  }
  /** socket.io's handshake: headers, query, auth, address, time, issued, url, secure, xdomain. */
  get handshake() {
    if (!this._handshake) {
      const json = this.server._started ? this.server._native.handshake(this.id) : null;
      const p = this._peer;
      const h = json ? JSON.parse(json) : { headers: {}, query: "", address: p.address, port: p.port, issued: Date.now(), url: "", secure: false, xdomain: false, auth: {} };
      h.query = Object.assign(Object.create(null), querystring.parse(h.query || ""));
      h.time = new Date(h.issued).toString();
      this._handshake = h;
    }
    return this._handshake;
  }
  /** The peer: `{address, port, forwarded}` (`forwarded` is the x-forwarded-for header). */
  get peer() {
    return this._peer;
  }
  /** A minimal `socket.request`: headers, url, and the peer address as `connection.remoteAddress`. */
  get request() {
    const h = this.handshake;
    const conn = { remoteAddress: this._peer.address, remotePort: this._peer.port };
    return { headers: h.headers, url: h.url, connection: conn, socket: conn };
  }
  /** The Engine.IO connection: `transport.name`, an `upgrade` event, `remoteAddress`, `close()`. */
  get conn() {
    if (!this._conn) this._conn = this.server.engine._connOf(this);
    return this._conn;
  }
  /** socket.io's `socket.client`: the connection's id, the connection and its request. */
  get client() {
    const conn = this.conn;
    return { id: conn.id, conn, request: this.request };
  }
  get rooms() {
    if (this._leftRooms) return new Set([this.id, ...this._leftRooms]);
    if (!this.connected) return new Set();
    return new Set([this.id, ...this.server._native.socketRooms(this.id)]);
  }
  get broadcast() {
    return new BroadcastOperator(this.nsp, new Set(), new Set([this.id]));
  }
  to(room) {
    return this.broadcast.to(room);
  }
  in(room) {
    return this.to(room);
  }
  except(room) {
    return this.broadcast.except(room);
  }
  get volatile() {
    return this;
  }
  compress() {
    return this;
  }
  timeout(ms) {
    this._flags = { timeout: ms };
    return this;
  }
  /** Emits to this client; a function as last argument receives the client's acknowledgement. */
  emit(ev, ...args) {
    if (RESERVED.has(ev)) throw new Error(`"${ev}" is a reserved event name`);
    let ackId = null;
    const flags = this._flags;
    this._flags = null;
    if (typeof args[args.length - 1] === "function") {
      let fn = args.pop();
      ackId = ++this._ackSeq;
      if (!this._acks) this._acks = new Map();
      if (flags && flags.timeout !== undefined) {
        const user = fn;
        const id = ackId;
        const timer = setTimeout(() => {
          if (this._acks && this._acks.delete(id)) user(new Error("operation has timed out"));
        }, flags.timeout);
        fn = (...resp) => {
          clearTimeout(timer);
          user(null, ...resp);
        };
      }
      this._acks.set(ackId, fn);
    }
    if (this._anyOut) for (const fn of [...this._anyOut]) fn.apply(this, [ev, ...args]);
    const { data, attachments } = encode([ev, ...args]);
    this.server._native.emit(this.id, data, attachments, ackId);
    return true;
  }
  emitWithAck(ev, ...args) {
    const flags = this._flags;
    return new Promise((resolve, reject) => {
      this._flags = flags;
      const cb = flags && flags.timeout !== undefined ? (err, ...r) => (err ? reject(err) : resolve(r[0])) : (r) => resolve(r);
      this.emit(ev, ...args, cb);
    });
  }
  /** Sends without listeners' bookkeeping (socket.io's `send`). */
  send(...args) {
    return this.emit("message", ...args);
  }
  write(...args) {
    return this.send(...args);
  }
  join(rooms) {
    if (this.connected) this.server._native.join(this.id, toList(rooms));
  }
  leave(room) {
    if (this.connected) this.server._native.leave(this.id, String(room));
  }
  /** Disconnects this socket; `close` also closes the underlying connection. */
  disconnect(close = false) {
    if (this.connected) this.server._native.disconnect(this.id, !!close);
    return this;
  }
  onAny(fn) {
    (this._any || (this._any = [])).push(fn);
    return this;
  }
  prependAny(fn) {
    (this._any || (this._any = [])).unshift(fn);
    return this;
  }
  offAny(fn) {
    if (!this._any) return this;
    if (!fn) this._any = null;
    else this._any = this._any.filter((f) => f !== fn);
    return this;
  }
  listenersAny() {
    return this._any ? [...this._any] : [];
  }
  /** Listeners of what this socket emits itself (broadcasts, sent natively, are not seen here). */
  onAnyOutgoing(fn) {
    (this._anyOut || (this._anyOut = [])).push(fn);
    return this;
  }
  prependAnyOutgoing(fn) {
    (this._anyOut || (this._anyOut = [])).unshift(fn);
    return this;
  }
  offAnyOutgoing(fn) {
    if (!this._anyOut) return this;
    if (!fn) this._anyOut = null;
    else this._anyOut = this._anyOut.filter((f) => f !== fn);
    return this;
  }
  listenersAnyOutgoing() {
    return this._anyOut ? [...this._anyOut] : [];
  }
  /** Decodes a client payload; one that cannot be decoded closes that client, as socket.io does. */
  _decode(data, attachments) {
    try {
      return decode(data, attachments);
    } catch {
      this.disconnect(true);
      return null;
    }
  }
  _onEvent(data, attachments, id) {
    const args = this._decode(data, attachments);
    if (!args) return;
    if (id !== undefined && id !== null) {
      let sent = false;
      args.push((...resp) => {
        if (sent || !this.connected) return;
        sent = true;
        const enc = encode(resp);
        this.server._native.ack(this.id, id, enc.data, enc.attachments);
      });
    }
    this._dispatch(args);
  }
  /** Hands a client event (`[name, ...args, ack?]`) to the listeners. */
  _dispatch(args) {
    if (this._any) for (const fn of [...this._any]) fn.apply(this, args);
    emitLocal.apply(this, args);
  }
  _onAck(id, data, attachments) {
    const fn = this._acks && this._acks.get(id);
    if (!fn) return;
    this._acks.delete(id);
    const args = this._decode(data, attachments);
    if (args) fn.apply(this, args);
  }
  _onDisconnect(reason, rooms) {
    // socket.io still lists the rooms in `disconnecting`, and has left them by `disconnect`.
    this._leftRooms = rooms || [];
    this.connected = false;
    this._acks = null;
    emitLocal.call(this, "disconnecting", reason);
    this._leftRooms = null;
    emitLocal.call(this, "disconnect", reason);
  }
}

/** A namespace: `connection` events, broadcasts and cluster-wide operations. */
class Namespace extends EventEmitter {
  constructor(server, name) {
    super();
    this.server = server;
    this.name = name;
    this._sockets = new Map();
    // Lazy: the native side tells of a socket only when it first sends something or is asked
    // for (see _setAnnounce); `sockets` then asks for the rest before answering.
    this._announce = { lazy: false, welcome: null };
    this._onSocket = null;
    this._fns = [];
    this.adapter = new NamespaceAdapter(this);
    this._roomsWatched = false;
  }
  /** The native side tells of every room change in this namespace from now on. */
  _watchRooms() {
    this._roomsWatched = true;
    if (this.server._nativeReady) this.server._native.watchRooms(this.name, true);
  }
  _op() {
    return new BroadcastOperator(this);
  }
  to(room) {
    return this._op().to(room);
  }
  in(room) {
    return this._op().in(room);
  }
  except(room) {
    return this._op().except(room);
  }
  get local() {
    return this._op().local;
  }
  get volatile() {
    return this._op().volatile;
  }
  compress(c) {
    return this._op().compress(c);
  }
  timeout(ms) {
    return this._op().timeout(ms);
  }
  /** Broadcasts to every socket of this namespace on every server. */
  emit(ev, ...args) {
    return this._op().emit(ev, ...args);
  }
  send(...args) {
    return this.emit("message", ...args);
  }
  write(...args) {
    return this.send(...args);
  }
  /** Broadcasts and resolves every recipient's acknowledgement (use `timeout(ms)` first). */
  emitWithAck(ev, ...args) {
    return this._op().emitWithAck(ev, ...args);
  }
  fetchSockets() {
    return this._op().fetchSockets();
  }
  socketsJoin(room) {
    return this._op().socketsJoin(room);
  }
  socketsLeave(room) {
    return this._op().socketsLeave(room);
  }
  disconnectSockets(close) {
    return this._op().disconnectSockets(close);
  }
  /**
   * Emits to the other servers of the cluster; a function as last argument receives
   * `(err, responses)` with one response per other server.
   */
  serverSideEmit(ev, ...args) {
    if (RESERVED.has(ev)) throw new Error(`"${ev}" is a reserved event name`);
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    const { data, attachments } = encode([ev, ...args]);
    const timeout = cb ? (this._flags && this._flags.timeout) || this.server._requestsTimeout : undefined;
    const counters = this.server._counters;
    const p = this.server._native.serverSideEmit(this.name, data, attachments, timeout).catch((err) => counters.request(err));
    if (cb) {
      p.then(
        (r) => {
          const answers = r.answers.map((a) => decode(a.data, a.attachments)[0]);
          if (!r.error) return cb(null, answers);
          // As socket.io: the timeout error with the answers that did come.
          counters.requestTimeouts++;
          cb(new Error(r.error), answers);
        },
        (err) => cb(err, []),
      );
    } else {
      p.catch(() => {});
    }
    return true;
  }
  /** socket.io-redis 3's `customRequest(data)` (weroll 1.x's invoke): the other servers' answers. */
  _customRequest(data) {
    const counters = this.server._counters;
    return this.server._native.customRequest(this.name, JSON.stringify([data]), this.server._requestsTimeout).then(
      (r) => {
        if (r.error) {
          counters.requestTimeouts++;
          throw new Error(r.error);
        }
        return r.answers.map((a) => decode(a.data, a.attachments)[0]);
      },
      (err) => {
        counters.request(err);
        throw err;
      },
    );
  }
  serverSideEmitWithAck(ev, ...args) {
    return new Promise((resolve, reject) => this.serverSideEmit(ev, ...args, (err, r) => (err ? reject(err) : resolve(r))));
  }
  // (EventEmitter's `newListener` would go through the broadcasting `emit`.)
  on(ev, fn) {
    this._listening(ev);
    return super.on(ev, fn);
  }
  addListener(ev, fn) {
    return this.on(ev, fn);
  }
  once(ev, fn) {
    this._listening(ev);
    return super.once(ev, fn);
  }
  prependListener(ev, fn) {
    this._listening(ev);
    return super.prependListener(ev, fn);
  }
  /** A `connection` listener needs every socket as it connects: no more lazy announcing. */
  _listening(ev) {
    if (ev === "connection" || ev === "connect") this._eager();
  }
  /** Every socket gets its object as it connects from now on (the native welcome stays). */
  _eager() {
    if (this._announce.lazy) this._setAnnounce(false, this._announce.welcome);
  }
  /**
   * Adds a middleware: `fn(socket, next)` runs for every new socket before it connects;
   * `next(err)` turns it away (the client gets `connect_error` with `err.message` and
   * `err.data`).
   */
  use(fn) {
    if (typeof fn !== "function") throw new TypeError("a middleware must be a function");
    this._fns.push(fn);
    this._eager();
    if (this.server._started) this.server._native.setGated(this.name, true);
    return this;
  }
  /** Runs the middlewares over a socket waiting to connect; `done(err)` once. */
  _runMiddlewares(socket, done) {
    const fns = this._fns.slice();
    let i = 0;
    const step = (err) => {
      if (err || i === fns.length) return done(err || null);
      const fn = fns[i++];
      let called = false;
      try {
        fn(socket, (e) => {
          if (called) return;
          called = true;
          step(e);
        });
      } catch (e) {
        if (!called) {
          called = true;
          step(e instanceof Error ? e : new Error(String(e)));
        }
      }
    };
    step(null);
  }
  /** The connected sockets of this namespace on this server, by id. */
  get sockets() {
    if (this._announce.lazy) this._announcePending(null);
    return this._sockets;
  }
  /**
   * Lazy (true): sockets are created here only when they first send something or are asked
   * for, so idle connections cost no JS memory; `connection` listeners turn it off. `welcome`
   * ({roomPrefix, event}) has the native side join each new socket to `roomPrefix + id` and
   * emit `event` with `{time, socketID, clientID}` itself.
   */
  _setAnnounce(lazy, welcome) {
    this._announce = { lazy: !!lazy, welcome: welcome || null };
    if (this.server._started) this._applyAnnounce();
    if (!lazy) this._announcePending(null);
  }
  _applyAnnounce() {
    const { lazy, welcome } = this._announce;
    this.server._native.setAnnounce(this.name, lazy, welcome ? welcome.roomPrefix : null, welcome ? welcome.event : null);
  }
  /** Creates the sockets the native side has not told of yet (all, or the one with id `sid`). */
  _announcePending(sid) {
    if (!this.server._started) return;
    for (const ev of JSON.parse(this.server._native.announce(this.name, sid).json)) this._connect(ev);
  }
  /** `ev`: a connection entry `[0, sid, nsp, address, port, forwarded, time, welcomed]`. */
  _connect(ev) {
    const sid = ev[1];
    if (this._sockets.has(sid)) return this._sockets.get(sid);
    const socket = new this.server._Socket(this, sid, { address: ev[3], port: ev[4], forwarded: ev[5] === null ? undefined : ev[5], time: ev[6] });
    socket._welcomed = ev[7] === true;
    if (ev[9] === true) {
      socket.recovered = true;
      // ev[10]: what the cluster kept of it (recovered from another server, or this one).
      if (ev[10]) socket._loadState(ev[10]);
      else this.server._restoreState(socket);
    }
    if (ev[8] === true) {
      // Waiting for the middlewares: not connected, not listed, until they let it in.
      socket.connected = false;
      this._runMiddlewares(socket, (err) => {
        const native = this.server._native;
        if (err) {
          const data = err.data === undefined ? null : JSON.stringify(err.data);
          native.refuse(sid, String(err.message === undefined ? err : err.message), data);
        } else if (native.accept(sid)) {
          socket.connected = true;
          this._admit(socket);
        }
      });
      return socket;
    }
    return this._admit(socket);
  }
  _admit(socket) {
    const sid = socket.id;
    this._sockets.set(sid, socket);
    this.server._sockets.set(sid, socket);
    // Watched engine: a new connection is told before its socket (as engine.io's come first).
    if (this.server._engineWatched && !socket._conn) socket._conn = this.server.engine._connOf(socket);
    if (this._roomsWatched) this.adapter.emit("join-room", sid, sid);
    // An owner layered on top (Realtime) hears of every socket first, lazy or not.
    if (this._onSocket) this._onSocket(socket);
    if (!socket.connected) return socket;
    emitLocal.call(this, "connection", socket);
    emitLocal.call(this, "connect", socket);
    return socket;
  }
  _serverSideEmit(data, attachments, token) {
    const args = decode(data, attachments);
    if (args[0] === METRICS_EVENT) {
      // Another server gathers the cluster's metrics: answer, never the app's listeners.
      if (token !== undefined && token !== null) {
        const enc = encode([{ address: this.server._address(), metrics: this.server.metrics() }]);
        this.server._native.reply(token, enc.data, enc.attachments);
      }
      return;
    }
    if (token !== undefined && token !== null) {
      let sent = false;
      args.push((...resp) => {
        if (sent) return;
        sent = true;
        const enc = encode(resp);
        this.server._native.reply(token, enc.data, enc.attachments);
      });
    }
    emitLocal.apply(this, args);
  }
}

/** `{sid: socket.data}` of the sockets `sids` of `ns`, as JSON; data that cannot be written is left out. */
function socketData(ns, sids) {
  const parts = [];
  for (const sid of sids) {
    const s = ns && ns._sockets.get(sid);
    if (!s || s.data === undefined) continue;
    try {
      const json = JSON.stringify(s.data);
      if (json !== undefined) parts.push(`${JSON.stringify(sid)}:${json}`);
    } catch {
      // circular or BigInt: the socket goes without its data
    }
  }
  return `{${parts.join(",")}}`;
}

/**
 * A namespace's adapter as socket.io's tools use it: `allRooms()`, `serverCount()`,
 * `sockets(rooms)`, and the `join-room` / `leave-room` events (`(room, id)`), which the native
 * side reports only once someone listens.
 */
class NamespaceAdapter extends EventEmitter {
  constructor(nsp) {
    super();
    this.nsp = nsp;
    this.on("newListener", (ev) => {
      if (ROOM_EVENTS.has(ev) && !nsp._roomsWatched) nsp._watchRooms();
    });
  }
  allRooms() {
    return this.nsp.server._native.allRooms(this.nsp.name).then((r) => new Set(r));
  }
  serverCount() {
    return this.nsp.server._native.serverCount(this.nsp.name);
  }
  async sockets(rooms) {
    return new Set((await this.nsp.in(toList(rooms)).local.fetchSockets()).map((s) => s.id));
  }
}

/** One Engine.IO connection, as `socket.conn` and the engine's `connection` event give it. */
class Connection extends EventEmitter {
  constructor(id, transport, socket) {
    super();
    this.id = id;
    this.transport = { name: transport };
    this.remoteAddress = socket._peer.address;
    this.protocol = socket.handshake.eio;
    this._server = socket.server;
    this._sockets = new Set([socket.id]);
  }
  get readyState() {
    return this._sockets.size ? "open" : "closed";
  }
  /** Closes the connection (every socket on it). */
  close() {
    for (const sid of this._sockets) {
      const s = this._server._sockets.get(sid);
      if (s) s.disconnect(true);
    }
  }
  _left(sid, reason) {
    if (!this._sockets.delete(sid) || this._sockets.size) return;
    const engine = this._server._engine;
    if (engine && engine._conns.get(this.id) === this) engine._conns.delete(this.id);
    emitLocal.call(this, "close", reason);
  }
}

/**
 * socket.io's `io.engine` as monitoring tools (the admin UI) read it: `clientsCount`, and a
 * `connection` event per Engine.IO connection as its first socket connects, with the
 * connection's `upgrade` and `close`. Packets stay native: instead, while the admin UI's event
 * buffer is there (`io._eventBuffer`), the native counters of events and bytes are added to it
 * every second.
 */
class Engine extends EventEmitter {
  constructor(server) {
    super();
    this._server = server;
    this._conns = new Map();
    this._upgradesWatched = false;
    this._feed = null;
    this.on("newListener", (ev) => {
      if (ev === "connection") server._watchEngine();
    });
  }
  get clientsCount() {
    return this._server._nativeReady ? this._server._native.stats().clients : 0;
  }
  /** The connection under `socket`, told as a `connection` the first time one of its sockets asks. */
  _connOf(socket) {
    const server = this._server;
    if (!this._upgradesWatched) {
      this._upgradesWatched = true;
      if (server._nativeReady) server._native.watchUpgrades(true);
    }
    const info = socket.connected && server._nativeReady ? server._native.socketConn(socket.id) : null;
    if (!info) {
      // Gone already: a closed connection of its own.
      const c = new Connection(`closed:${socket.id}`, "polling", socket);
      c._sockets.clear();
      return c;
    }
    const [id, transport] = info;
    let conn = this._conns.get(id);
    if (conn) {
      conn._sockets.add(socket.id);
      return conn;
    }
    conn = new Connection(id, transport, socket);
    this._conns.set(id, conn);
    emitLocal.call(this, "connection", conn);
    return conn;
  }
  _upgraded(id) {
    const conn = this._conns.get(id);
    if (!conn || conn.transport.name === "websocket") return;
    conn.transport = { name: "websocket" };
    emitLocal.call(conn, "upgrade", conn.transport);
  }
  /** Adds the native traffic counters to the admin UI's event buffer, once a second. */
  _startFeed() {
    if (this._feed) return;
    let last = null;
    this._feed = setInterval(() => {
      const buffer = this._server._eventBuffer;
      if (!this._server._nativeReady || !buffer || typeof buffer.push !== "function") return;
      const m = JSON.parse(this._server._native.metrics());
      if (!m) return;
      if (last) {
        const add = (type, n) => n > 0 && buffer.push(type, undefined, n);
        add("packetsIn", m.eventsIn - last.eventsIn);
        add("packetsOut", m.eventsOut - last.eventsOut);
        add("bytesIn", m.bytesIn - last.bytesIn);
        add("bytesOut", m.bytesOut - last.bytesOut);
      }
      last = m;
    }, 1000);
    this._feed.unref();
  }
  _stopFeed() {
    if (this._feed) clearInterval(this._feed);
    this._feed = null;
  }
}

/** socket.io's Server over the native engine. */
class Server extends EventEmitter {
  /**
   * socket.io's signatures: `new Server(opts)`, `new Server(port, opts)` (listens natively on
   * that port) and `new Server(httpServer, opts)` (serves on the app's own http/https server).
   */
  constructor(srv, opts) {
    super();
    if (srv && typeof srv === "object" && !isHttpServer(srv)) {
      opts = srv;
      srv = undefined;
    }
    opts = opts || {};
    this.opts = opts;
    this._requestsTimeout = opts.requestsTimeout || 5000;
    this._nsps = new Map();
    this._sockets = new Map();
    this._Socket = opts.socketClass || Socket;
    // Event batches: `(json, buffers, queuedAt)` from the node loop, a `{json, buffers, queuedAt}`
    // object from the threaded design.
    this._native = new native.NativeServer((batch, buffers, queuedAt) => (typeof batch === "string" ? this._onEvents(batch, buffers, queuedAt) : this._onEvents(batch.json, batch.buffers, batch.queuedAt)));
    // Like a net.Server, only a listening server keeps the process alive.
    this._native.unref();
    this._keepAlive = true;
    this._started = false;
    this.sockets = this.of("/");
    this._httpServer = null;
    this._attachment = null;
    this._startPromise = null;
    // Connection state recovery: socket.io's option; what JavaScript keeps of dropped sockets.
    const csr = opts.connectionStateRecovery;
    this._recovery = csr && typeof csr === "object" ? { maxDisconnectionDuration: 120000, skipMiddlewares: true, ...csr } : null;
    this._saved = new Map();
    this._sweepTimer = null;
    this._counters = new JsCounters();
    this._engine = null;
    this._engineWatched = false;
    this._nativeReady = false;
    if (srv !== undefined && srv !== null) this.attach(srv);
  }
  /**
   * socket.io's `io.engine`, as far as tools read it: `clientsCount`, and `connection` events
   * with each connection's transport, `upgrade` and `close` (see `Engine`).
   */
  get engine() {
    if (!this._engine) this._engine = new Engine(this);
    return this._engine;
  }
  /** Someone listens to the engine's connections: every socket gets its object as it connects. */
  _watchEngine() {
    if (this._engineWatched) return;
    this._engineWatched = true;
    for (const ns of this._nsps.values()) ns._eager();
    this.engine._startFeed();
  }
  /**
   * socket.io's `attach(httpServer | port, opts)`: serves on the app's http/https server (the
   * requests under `path`; everything else stays the app's), or listens natively on `port`.
   * Returns the server; `ready()` resolves once it serves.
   */
  attach(srv, opts) {
    if (this._started) throw new Error("already started");
    if (opts && typeof opts === "object") this.opts = { ...this.opts, ...opts };
    if (!isHttpServer(srv)) {
      const port = srv === undefined || srv === null ? 0 : Number(srv);
      this._startPromise = this.listen(port);
      this._startPromise.catch((err) => this._startFailed(err));
      return this;
    }
    if (this.opts.tls) throw new Error("tls is for a port of its own; an https server brings its own TLS");
    const cfg = this._nativeConfig();
    this._httpServer = srv;
    this._started = true;
    const addr = srv.address();
    if (addr && typeof addr === "object") this.port = addr.port;
    else srv.once("listening", () => (this.port = srv.address() && srv.address().port));
    this._startPromise = this._native.startAttached(JSON.stringify(cfg), [...this._nsps.keys()]).then(() => {
      this._applyNamespaces();
      return this.port;
    });
    this._attachment = attachTo(srv, this._native, this._startPromise, this.opts);
    srv.on("close", this._attachment.onClose);
    // The app's server closing closes this one (what socket.io's engine does).
    this._onHttpClose = () => {
      if (!this._closing) this._closeNative().catch(rethrow);
    };
    srv.on("close", this._onHttpClose);
    this._startPromise.catch((err) => this._startFailed(err));
    return this;
  }
  /** Resolves the port once the server serves (after `attach`, `listen` or the constructor). */
  ready() {
    this._readyObserved = true;
    return this._startPromise || Promise.reject(new Error("not started"));
  }
  /** A start nobody awaits (`attach`, the constructor) fails as an `error` event or throws. */
  _startFailed(err) {
    if (this._attachment) {
      this._attachment.detach();
      this._attachment = null;
    }
    if (this.listenerCount("error")) super.emit("error", err);
    else if (!this._readyObserved) rethrow(err);
  }
  of(name) {
    if (typeof name !== "string") throw new TypeError("namespace name must be a string");
    if (name[0] !== "/") name = "/" + name;
    let ns = this._nsps.get(name);
    if (!ns) {
      ns = new Namespace(this, name);
      this._nsps.set(name, ns);
      if (this._started) this._native.of(name);
      if (this._engineWatched) ns._eager();
      emitLocal.call(this, "new_namespace", ns);
    }
    return ns;
  }
  // As socket.io: listeners go to the main namespace (`connection`, serverSideEmit events),
  // except this server's own events.
  on(ev, fn) {
    if (SERVER_EVENTS.has(ev)) return super.on(ev, fn);
    this.sockets.on(ev, fn);
    return this;
  }
  addListener(ev, fn) {
    return this.on(ev, fn);
  }
  once(ev, fn) {
    if (SERVER_EVENTS.has(ev)) return super.once(ev, fn);
    this.sockets.once(ev, fn);
    return this;
  }
  off(ev, fn) {
    if (SERVER_EVENTS.has(ev)) return super.off(ev, fn);
    this.sockets.off(ev, fn);
    return this;
  }
  removeListener(ev, fn) {
    return this.off(ev, fn);
  }
  listenerCount(ev) {
    return SERVER_EVENTS.has(ev) ? super.listenerCount(ev) : this.sockets.listenerCount(ev);
  }
  to(room) {
    return this.sockets.to(room);
  }
  in(room) {
    return this.sockets.in(room);
  }
  except(room) {
    return this.sockets.except(room);
  }
  get local() {
    return this.sockets.local;
  }
  get volatile() {
    return this.sockets.volatile;
  }
  compress(c) {
    return this.sockets.compress(c);
  }
  timeout(ms) {
    return this.sockets.timeout(ms);
  }
  emit(ev, ...args) {
    if (ev === "error" || ev === "listening" || ev === "close" || ev === "adapter") return super.emit(ev, ...args);
    return this.sockets.emit(ev, ...args);
  }
  send(...args) {
    return this.sockets.send(...args);
  }
  emitWithAck(...args) {
    return this.sockets.emitWithAck(...args);
  }
  fetchSockets() {
    return this.sockets.fetchSockets();
  }
  socketsJoin(r) {
    return this.sockets.socketsJoin(r);
  }
  socketsLeave(r) {
    return this.sockets.socketsLeave(r);
  }
  disconnectSockets(c) {
    return this.sockets.disconnectSockets(c);
  }
  serverSideEmit(...args) {
    return this.sockets.serverSideEmit(...args);
  }
  serverSideEmitWithAck(...args) {
    return this.sockets.serverSideEmitWithAck(...args);
  }
  /** Adds a middleware to the main namespace (see Namespace#use). */
  use(fn) {
    this.sockets.use(fn);
    return this;
  }
  /** The socket with this id, on this server. */
  socket(id) {
    let s = this._sockets.get(id);
    if (!s && typeof id === "string") {
      for (const ns of this._nsps.values()) {
        if (!ns._announce.lazy) continue;
        ns._announcePending(id);
        if ((s = this._sockets.get(id))) break;
      }
    }
    return s;
  }
  /**
   * Starts listening on its own port; resolves the bound port. Extra native options: `redis`,
   * `host`. With an http/https server instead of a port it is `attach` (and returns the server).
   */
  listen(port, host) {
    if (isHttpServer(port)) return this.attach(port, host);
    return this._listen(port, host);
  }
  async _listen(port, host) {
    if (this._started) throw new Error("already started");
    const o = this.opts;
    const cfg = this._nativeConfig();
    this._started = true;
    if (this._keepAlive) this._native.ref();
    try {
      this.port = await this._native.start(JSON.stringify(cfg), [...this._nsps.keys()], host || o.host || "0.0.0.0", port);
      this._applyNamespaces();
    } catch (err) {
      this._started = false;
      this._native.unref();
      throw err;
    }
    return this.port;
  }
  /** Keeps what JavaScript knows of a dropped socket (its `data`) for recovery. */
  _saveState(socket) {
    this._saved.set(socket.id, { state: socket._saveState(), at: Date.now() });
    if (!this._sweepTimer) {
      const every = Math.min(60000, Math.max(100, this._recovery.maxDisconnectionDuration));
      this._sweepTimer = setInterval(() => {
        const limit = Date.now() - this._recovery.maxDisconnectionDuration;
        for (const [sid, e] of this._saved) if (e.at < limit) this._saved.delete(sid);
        if (!this._saved.size) {
          clearInterval(this._sweepTimer);
          this._sweepTimer = null;
        }
      }, every);
      this._sweepTimer.unref();
    }
  }
  /** Hands a dropped socket's session to the cluster, which keeps it (streams mode). */
  _persistState(socket, pid, rooms) {
    let state = null;
    try {
      state = JSON.stringify(socket._saveState());
    } catch (err) {
      this.emit("error", new Error(`connection state recovery: socket.data of ${socket.id} cannot be kept (${err.message})`));
    }
    this._native.persistSession(socket.nsp.name, socket.id, pid, rooms, state);
  }
  _restoreState(socket) {
    const e = this._saved.get(socket.id);
    if (!e) return;
    this._saved.delete(socket.id);
    if (e.at >= Date.now() - this._recovery.maxDisconnectionDuration) socket._loadState(e.state);
  }
  _nativeConfig() {
    const o = this.opts;
    const cfg = pickOptions(o);
    if (this._recovery) {
      const r = this._recovery;
      cfg.connectionStateRecovery = { maxDisconnectionDuration: Number(r.maxDisconnectionDuration), skipMiddlewares: r.skipMiddlewares !== false, maxPackets: r.maxPackets, maxBytes: r.maxBytes };
    }
    cfg.allowEIO3 = o.allowEIO3 === undefined ? true : !!o.allowEIO3;
    cfg.redis = o.redis;
    cfg.publicAddress = o.publicAddress;
    cfg.presenceInterval = o.presenceInterval;
    // TLS on its own port: PEM text (Buffers or strings, as Node's `https` takes them).
    if (o.tls) {
      const pem = (v, k) => {
        const list = Array.isArray(v) ? v : [v];
        if (!list.length || list.some((x) => typeof x !== "string" && !Buffer.isBuffer(x))) throw new TypeError(`tls.${k} must be PEM text (a string or Buffer)`);
        return list.map(String).join("\n");
      };
      cfg.tls = { key: pem(o.tls.key, "key"), cert: pem(o.tls.cert, "cert") };
    }
    return cfg;
  }
  _applyNamespaces() {
    this._nativeReady = true;
    for (const ns of this._nsps.values()) {
      if (ns._announce.lazy || ns._announce.welcome) ns._applyAnnounce();
      if (ns._fns.length) this._native.setGated(ns.name, true);
      if (ns._roomsWatched) this._native.watchRooms(ns.name, true);
    }
    if (this._engine && this._engine._upgradesWatched) this._native.watchUpgrades(true);
  }
  /**
   * Closes every client and leaves the cluster. Attached to an http server, it also closes
   * that server, as socket.io does (`fn` is then called when it has closed).
   */
  async close(fn) {
    const srv = this._httpServer;
    this._closing = true;
    await this._closeNative();
    if (srv) {
      srv.removeListener("close", this._onHttpClose);
      await new Promise((resolve) =>
        srv.close((err) => {
          if (typeof fn === "function") fn(err);
          resolve();
        }),
      );
    } else if (typeof fn === "function") fn();
  }
  async _closeNative() {
    this._closing = true;
    if (this._startPromise) await this._startPromise.catch(() => {});
    if (this._attachment) {
      this._attachment.detach();
      this._attachment = null;
    }
    if (this._engine) this._engine._stopFeed();
    await this._native.close();
    super.emit("close");
  }
  ref() {
    this._keepAlive = true;
    if (this._started) this._native.ref();
    return this;
  }
  unref() {
    this._keepAlive = false;
    this._native.unref();
    return this;
  }
  /**
   * This server's metrics: connections by transport and Engine.IO version, sockets and rooms
   * per namespace, events and bytes both ways, broadcasts and deliveries, slow clients dropped,
   * handshake errors, Redis outages, cluster request timeouts, shakehand failures, and the
   * histogram of the delay from an event's arrival to its handler.
   */
  metrics() {
    const native = this._started ? JSON.parse(this._native.metrics()) : null;
    const empty = { connections: { polling: { 3: 0, 4: 0 }, websocket: { 3: 0, 4: 0 } }, sessionsOpened: 0, handshakeErrors: 0, slowClientsDropped: 0, eventsIn: 0, bytesIn: 0, eventsOut: 0, bytesOut: 0, broadcasts: 0, deliveries: 0, namespaces: [] };
    return { ...(native || empty), ...this._counters.snapshot() };
  }
  /** This server's address as the cluster knows it. */
  _address() {
    return this.opts.publicAddress || `127.0.0.1:${this.port}`;
  }
  /** Every server's metrics, gathered over the cluster adapter: `[{address, metrics}]`, this one first. */
  async clusterMetrics() {
    const self = { address: this._address(), metrics: this.metrics() };
    // A server that does not answer within requestsTimeout (one that is down, a Node
    // socket.io server) is left out; the others' answers still count.
    const others = await new Promise((resolve) => this.sockets.serverSideEmit(METRICS_EVENT, (err, answers) => resolve(answers || [])));
    return [self, ...others.filter((o) => o && o.metrics)];
  }
  /** Prometheus text exposition of `metrics()`; `{cluster: true}` resolves every server's, labelled `server`. */
  metricsText(opts = {}) {
    if (opts.cluster) return this.clusterMetrics().then((list) => prometheusText(list.map((s) => ({ labels: { server: s.address }, metrics: s.metrics }))));
    return prometheusText([{ labels: {}, metrics: this.metrics() }]);
  }
  /** A `(req, res)` handler that answers the Prometheus text (mount it at `/metrics`). */
  metricsHandler(opts = {}) {
    return (req, res) => {
      Promise.resolve(this.metricsText(opts)).then(
        (text) => {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
          res.end(text);
        },
        (err) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(`${err.message}\n`);
        },
      );
    };
  }
  /** Connection counters of this server: `{clients, sockets}`. */
  stats() {
    return this._native.stats();
  }
  /**
   * The Redis adapter's offline queue: `{queued, queuedBytes, delivered, dropped, outages}`,
   * or null without Redis.
   */
  offlineQueue() {
    return this._native.offlineQueue() || null;
  }
  /**
   * One batch of native events: their JSON text (the entry layout is in binding.d.ts), the
   * binary attachments, and when the oldest was queued.
   */
  _onEvents(json, buffers, queuedAt) {
    let list;
    try {
      list = JSON.parse(json);
    } catch (err) {
      rethrow(new Error(`weroll-native: unreadable event batch: ${err.message}`));
      return;
    }
    this._counters.batch(queuedAt, list.length);
    const slice = (first, count) => (count > 0 && buffers ? buffers.slice(first, first + count) : undefined);
    for (let i = 0; i < list.length; i++) {
      const ev = list[i];
      try {
        switch (ev[0]) {
          case KIND.CONNECTION: {
            const ns = this._nsps.get(ev[2]);
            if (ns) ns._connect(ev);
            break;
          }
          case KIND.EVENT: {
            const s = this._sockets.get(ev[1]);
            if (s) s._onEvent(ev[2], slice(ev[4], ev[5]), ev[3]);
            break;
          }
          case KIND.ACK: {
            const s = this._sockets.get(ev[1]);
            if (s) s._onAck(ev[2], ev[3], slice(ev[4], ev[5]));
            break;
          }
          case KIND.DISCONNECT: {
            const s = this._sockets.get(ev[1]);
            if (s) {
              this._sockets.delete(ev[1]);
              s.nsp._sockets.delete(ev[1]);
              if (s._conn) s._conn._left(s.id, ev[2]);
              if (s.nsp._roomsWatched) for (const room of [...ev[3], s.id]) s.nsp.adapter.emit("leave-room", room, s.id);
              // ev[4]: the private id the cluster keeps the session under (streams mode).
              if (ev[4]) this._persistState(s, ev[4], ev[3]);
              else if (this._recovery && SAVED_REASONS.has(ev[2])) this._saveState(s);
              s._onDisconnect(ev[2], ev[3]);
            }
            break;
          }
          case KIND.SERVER_SIDE_EMIT: {
            const ns = this._nsps.get(ev[1]);
            if (ns) ns._serverSideEmit(ev[2], slice(ev[4], ev[5]), ev[3]);
            break;
          }
          case KIND.SOCKET_DATA:
            // Another server fetches these sockets: their `data`, as JSON.
            this._native.reply(ev[2], socketData(this._nsps.get(ev[1]), ev[3]));
            break;
          case KIND.UPGRADE:
            if (this._engine) this._engine._upgraded(ev[1]);
            break;
          case KIND.ROOMS: {
            const ns = this._nsps.get(ev[1]);
            if (ns) for (const room of ev[3]) ns.adapter.emit(ev[4] ? "join-room" : "leave-room", room, ev[2]);
            break;
          }
          case KIND.ADAPTER_STATUS:
            this._counters.adapter(ev[1]);
            super.emit("adapter", { up: ev[1], detail: ev[2] });
            break;
        }
      } catch (err) {
        rethrow(err);
      }
    }
  }
}

module.exports = { Server, Namespace, Socket, BroadcastOperator, RemoteSocket, pickOptions };
