// Types of weroll-native: weroll's Realtime API, and the socket.io-style server under it.

import { EventEmitter } from "node:events";

// ---------------------------------------------------------------------------------------------
// Configuration

/** One Redis endpoint: `{host, port}`, a `url` (`redis://user:pass@host:port/db`), or both. */
export interface RedisEndpoint {
  host?: string;
  port?: number | string;
  url?: string;
  username?: string;
  password?: string;
  db?: number;
  /** node_redis-style options as weroll passed them (`auth_pass`, `db`…). */
  option?: Record<string, unknown>;
  /** TLS: `true` (the system's trusted roots) or the CA to trust and the name to check. */
  tls?: RedisTls;
}

/** TLS to Redis (`rediss://` URLs turn it on too). */
export type RedisTls = boolean | { ca?: string | string[]; servername?: string };

/**
 * `config.cluster.redis`: one endpoint for both connections, `{"*": endpoint}`, or
 * `{pub, sub}`; `key` / `prefix` name the channel prefix (default `"realtime"`; use
 * `"socket.io"` to share a cluster with Node servers on @socket.io/redis-adapter's default).
 */
/** A Redis server as a list entry: `{host, port}` or `"host:port"`. */
export type RedisNode = { host?: string; port: number | string } | string;

/** Credentials and TLS of a Redis Cluster's nodes or of a Sentinel-managed master. */
export interface RedisAuth {
  username?: string;
  password?: string;
  tls?: RedisTls;
}

/** A Redis Cluster, found through seed nodes (the rest is discovered). */
export interface RedisClusterTopology extends RedisAuth {
  cluster: RedisNode[];
}

/** The master the sentinels know as `name`; `sentinel.username/password` authenticate to them. */
export interface RedisSentinelTopology extends RedisAuth {
  sentinel: { name: string; nodes: RedisNode[]; username?: string; password?: string };
  db?: number;
}

export type RealtimeRedisConfig = (
  | RedisEndpoint
  | { "*": RedisEndpoint }
  | { pub: RedisEndpoint; sub: RedisEndpoint }
  | RedisClusterTopology
  | RedisSentinelTopology
) & ClusterModeOptions & {
  key?: string;
  prefix?: string;
  /** How long cluster requests (fetchSockets, serverSideEmit with ack, invoke) wait, ms. */
  requestsTimeout?: number;
  /** What is kept of the messages published while Redis is away (see {@link OfflineQueueConfig}). */
  offlineQueue?: OfflineQueueConfig;
};

/**
 * The offline queue of the Redis adapter: messages published while Redis is unreachable wait,
 * in order, and are published once it is back and the other servers have subscribed again.
 * `true` (the defaults), `false` (disabled: such messages are dropped), a number of bytes, or
 * the settings one by one.
 */
export type OfflineQueueConfig =
  | boolean
  | number
  | {
      /** Bytes kept at most; the oldest messages are dropped beyond it (default 8 MiB). */
      maxBytes?: number;
      /** A message older than this when Redis is back is dropped, ms (default 60000). */
      maxAge?: number;
      /** How long to wait for the other servers to subscribe again after a reconnection, ms (default 5000). */
      flushWait?: number;
    };

/** What the offline queue holds now, and counts since the server started. */
export interface OfflineQueueStats {
  queued: number;
  queuedBytes: number;
  /** Messages published late, once Redis was back. */
  delivered: number;
  /** Messages dropped (queue full, too old, or queue disabled). */
  dropped: number;
  outages: number;
}

/** Which adapter the servers use, and its mode's options (in `cluster`, or in `redis`). */
export interface ClusterModeOptions {
  /**
   * `"classic"` (default: PUBLISH/PSUBSCRIBE, as `createAdapter`), `"sharded"` (Redis 7, as
   * `createShardedAdapter`) or `"streams"` (a Redis stream, as `@socket.io/redis-streams-adapter`:
   * nothing lost across Redis restarts, connection state recovery on any server).
   */
  adapter?: "classic" | "sharded" | "streams";
  /** Sharded mode: which room channels a server subscribes to (default `"dynamic"`). */
  subscriptionMode?: "static" | "dynamic" | "dynamic-private";
  /** Streams mode: the stream's key (default `"socket.io"`). */
  streamName?: string;
  /** Streams mode: entries the stream keeps, about (default 10000). */
  maxLen?: number;
  /** Streams mode: entries read at once (default 100). */
  readCount?: number;
  /** Streams mode: how long one read waits, ms (default 5000). */
  blockTimeInMs?: number;
  /** Streams mode: prefix of the saved sessions' keys (default `"sio:session:"`). */
  sessionKeyPrefix?: string;
  /** Streams mode: only 1 is supported. */
  streamCount?: 1;
}

/** `config.cluster`. */
export interface RealtimeClusterConfig extends ClusterModeOptions {
  /** Listen on `port + worker index` and join the other workers through Redis. */
  enable: boolean;
  redis?: RealtimeRedisConfig;
  /** Channel prefix when `redis` does not name one. */
  key?: string;
  prefix?: string;
  /** Overrides the worker index (see {@link workerIndex}). */
  workerIndex?: number;
  /** pm2's `instance_var`, when it is not `NODE_APP_INSTANCE`. */
  instanceVar?: string;
  /** How often a worker reports its load for `servers()` / `pickServer()`, ms (default 5000). */
  presenceInterval?: number;
  /** The Redis adapter's offline queue, when `redis` does not set it. */
  offlineQueue?: OfflineQueueConfig;
  /**
   * During a migration from weroll 1.x: `invoke` and `kick` go as socket.io-redis 3's
   * `customRequest`, which weroll 1.x workers answer too (classic mode; see the README).
   */
  legacyInvoke?: boolean;
}

/** Checks a shakehand's credentials; may answer through `callback` or a returned Promise. */
export interface RealtimeSession {
  check(auth: any, callback: (err: any, payload?: RealtimeSessionPayload | null) => void): void | Promise<RealtimeSessionPayload | null | undefined>;
}

/** What a session check yields; `userid` becomes the socket's `clientID`. */
export interface RealtimeSessionPayload {
  userid?: string | number;
  [key: string]: any;
}

/** CORS for the polling transport and the websocket handshake. */
export interface CorsOptions {
  /** `true` reflects the request's origin; `"*"` allows any; else the allowed origins. */
  origin?: boolean | string | string[];
  credentials?: boolean;
  methods?: string[];
  allowedHeaders?: string[];
}

/** Options of the native server, shared by {@link RealtimeConfig} and {@link ServerOptions}. */
export interface EngineOptions {
  /** Request path of the server, default `"/socket.io/"`. */
  path?: string;
  /** ms between pings, default 25000. */
  pingInterval?: number;
  /** ms to wait for a pong, default 20000. */
  pingTimeout?: number;
  /** ms an upgrade to websocket may take, default 10000. */
  upgradeTimeout?: number;
  /** Largest message accepted, bytes, default 1e6. */
  maxHttpBufferSize?: number;
  /**
   * Polling responses of at least `threshold` bytes go gzip- or deflate-encoded to clients that
   * accept it (default: on, 1024 bytes, as socket.io); `false` turns it off.
   */
  httpCompression?: boolean | { threshold?: number };
  /**
   * Websocket messages of at least `threshold` bytes go compressed (permessage-deflate) to
   * clients that offer it, and they may compress theirs. Default: off, as socket.io; `true` means
   * a threshold of 1024 bytes. Negotiated without context takeover, so it keeps no compressor
   * state per connection and a broadcast is compressed once for all its recipients.
   */
  perMessageDeflate?: boolean | { threshold?: number };
  /** ms a client has to join a namespace after connecting, default 45000. */
  connectTimeout?: number;
  cors?: CorsOptions;
  /** Allowed transports, default both. */
  transports?: Array<"polling" | "websocket">;
  /** Interface to listen on, default `"0.0.0.0"`. */
  host?: string;
  /** ms cluster requests wait for the other servers, default 5000. */
  requestsTimeout?: number;
  /** How long to retry a bind while the port is still in use (pm2 reload, fast respawn), ms, default 5000. */
  bindRetryMs?: number;
  /** Frames queued per client before it is dropped as too slow (default 65536). */
  maxQueuedFrames?: number;
  /** Bytes queued per client before it is dropped as too slow (default 32 MiB). */
  maxQueuedBytes?: number;
}

/** `Realtime.createServer(config)`: weroll's keys and the native server's options. */
export interface RealtimeConfig extends EngineOptions {
  /** Listening port; in cluster mode the base port (worker i listens on `port + i`). Default 80. */
  port?: number;
  /** socket.io's connection state recovery for Realtime clients (socket.io-client 4.6+). */
  connectionStateRecovery?: ConnectionStateRecovery;
  /** TLS on the Realtime port itself (rustls): PEM text or Buffers. */
  tls?: { key: string | Buffer | Array<string | Buffer>; cert: string | Buffer | Array<string | Buffer> };
  /** Trace logging (falls back to `global.VARS.debug`). */
  debug?: boolean;
  /** Accept clients without a valid session as guests. Default false. */
  allowGuest?: boolean;
  /** Require the `$init` shakehand after connecting (default true; false: shaken at once). */
  shakehand?: boolean;
  /** ms to wait for `$init`, default 15000. */
  shakehandTimeout?: number;
  /** Send `fire`d arguments and broadcasts as MessagePack instead of JSON. */
  compress?: boolean;
  cluster?: RealtimeClusterConfig;
  /** Session checker; default weroll's `model/Session` when it is installed. */
  session?: RealtimeSession | null;
  /**
   * The app's own `http.Server` or `https.Server` (as weroll): Realtime serves on its port
   * (requests under `path`; everything else stays the app's) and `port` is not needed.
   */
  server?: import("node:http").Server | import("node:https").Server;
  /** weroll's extension point (sic): a class whose instance may override the handshake steps. */
  adpater?: new (server: RealtimeServer) => RealtimeHooks;
  /** Address other workers and `pickServer()` report for this one, default `host:port`. */
  publicAddress?: string;
  /** Host part of the default `publicAddress` (also env `WEROLL_PUBLIC_HOST`), default `127.0.0.1`. */
  publicHost?: string;
}

/** What a `config.adpater` instance may implement; each is optional. */
export interface RealtimeHooks {
  /** Decides the shakehand: call `callback(ok)` or resolve a boolean. */
  shakehand?(socket: RealtimeSocket, data: any, callback: (ok: boolean) => void): void | Promise<boolean>;
  shakehandSuccess?(socket: RealtimeSocket): void;
  shakehandFail?(socket: RealtimeSocket): void;
  connect?(socket: RealtimeSocket, callback: () => void): void;
  disconnect?(socket: RealtimeSocket): void;
}

// ---------------------------------------------------------------------------------------------
// socket.io-style server (lib/io.js)

/** `socket.handshake`, as in socket.io. */
export interface Handshake {
  headers: Record<string, string | undefined>;
  query: Record<string, string | string[] | undefined>;
  auth: Record<string, any>;
  /** The peer address (`::ffff:` kept for IPv4-mapped peers). */
  address: string;
  port: number;
  /** `new Date(issued).toString()`. */
  time: string;
  issued: number;
  url: string;
  secure: boolean;
  xdomain: boolean;
  /** Engine.IO protocol of the client: 3 (socket.io-client 2.x) or 4. */
  eio: 3 | 4;
}

/** Options of `new Server(opts)`. */
export interface ServerOptions extends EngineOptions {
  /** Accept Engine.IO v3 (socket.io-client 2.x) clients, default true. */
  allowEIO3?: boolean;
  /** Join a cluster through Redis (same shape as weroll's `cluster.redis`). */
  redis?: RealtimeRedisConfig;
  /** Address the other servers see for this one. */
  publicAddress?: string;
  /** Frames queued per client before it is dropped as too slow. */
  maxQueuedFrames?: number;
  /** Bytes queued per client before it is dropped as too slow. */
  maxQueuedBytes?: number;
  /** How often this server reports its load to the cluster, ms. */
  presenceInterval?: number;
  /** The class of the sockets this server creates (a subclass of {@link Socket}). */
  socketClass?: new (nsp: Namespace, id: string, peer: Peer) => Socket;
  /** socket.io's connection state recovery (off when absent); see the README. */
  connectionStateRecovery?: ConnectionStateRecovery;
  /** TLS on its own port (rustls): PEM text or Buffers, as `https.createServer` takes them. */
  tls?: { key: string | Buffer | Array<string | Buffer>; cert: string | Buffer | Array<string | Buffer> };
  /** Attached: serve the app's socket.io-client browser bundles under `path` (as socket.io), default true. */
  serveClient?: boolean;
  /** Attached: end upgrades outside `path` that nobody answered (as engine.io), default true. */
  destroyUpgrade?: boolean;
  /** Attached: how long such an upgrade may wait for another listener, ms (default 1000). */
  destroyUpgradeTimeout?: number;
}

/** The peer of a connection, known without fetching the whole handshake. */
export interface Peer {
  address: string;
  port: number;
  /** The `x-forwarded-for` header, if any. */
  forwarded?: string;
}

/** Cluster adapter status, from the `adapter` event. */
export interface AdapterStatus {
  up: boolean;
  detail: string;
}

/** One server of the cluster, as `servers()` lists it. */
export interface ClusterServer {
  address: string;
  connections: number;
}

type RoomList = string | string[] | Set<string>;

/** Targets of a broadcast: rooms, exceptions, flags. */
export declare class BroadcastOperator {
  readonly nsp: Namespace;
  readonly rooms: Set<string>;
  readonly exceptRooms: Set<string>;
  to(room: RoomList): BroadcastOperator;
  in(room: RoomList): BroadcastOperator;
  except(room: RoomList): BroadcastOperator;
  /** Only this server's sockets. */
  readonly local: BroadcastOperator;
  readonly volatile: BroadcastOperator;
  compress(compress: boolean): BroadcastOperator;
  /** How long a broadcast with acknowledgements waits for them. */
  timeout(ms: number): BroadcastOperator;
  /**
   * Emits to every targeted socket of the cluster. A function as last argument asks each
   * recipient to acknowledge: `(err, responses)` once all answered, or an "operation has timed
   * out" error with the answers so far after `timeout(ms)`.
   */
  emit(event: string, ...args: any[]): true;
  /** `emit` asking for acknowledgements, as a Promise of the responses. */
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: RoomList): void;
  socketsLeave(room: RoomList): void;
  disconnectSockets(close?: boolean): void;
}

/** A socket of any server of the cluster, as `fetchSockets()` returns it. */
export interface RemoteSocket {
  readonly id: string;
  readonly handshake: Handshake;
  readonly rooms: Set<string>;
  readonly data: any;
  emit(event: string, ...args: any[]): true;
  join(room: RoomList): void;
  leave(room: RoomList): void;
  disconnect(close?: boolean): this;
}

/** One client in one namespace: `on` hears the client, `emit` talks to it. */
/** What `metrics()` returns. */
export interface Metrics {
  connections: { polling: { 3: number; 4: number }; websocket: { 3: number; 4: number } };
  namespaces: Array<{ name: string; sockets: number; rooms: number }>;
  sessionsOpened: number;
  handshakeErrors: number;
  slowClientsDropped: number;
  eventsIn: number;
  bytesIn: number;
  eventsOut: number;
  bytesOut: number;
  broadcasts: number;
  deliveries: number;
  shakehandFailures: number;
  adapter: { up: boolean | null; disconnects: number; reconnects: number };
  requestTimeouts: number;
  /** Cumulative buckets `[upper bound in seconds, count]`, the last one `"+Inf"`. */
  handlerDelay: { buckets: Array<[number | "+Inf", number]>; sum: number; count: number };
}

/** socket.io's `connectionStateRecovery`, plus the bounds of what is kept. */
export interface ConnectionStateRecovery {
  /** How long a dropped socket and the events it may miss are kept, ms (default 120000). */
  maxDisconnectionDuration?: number;
  /** A recovered socket skips the `use()` middlewares (default true). */
  skipMiddlewares?: boolean;
  /** At most this many events are kept, oldest dropped first (default 100000). */
  maxPackets?: number;
  /** At most this many bytes of events are kept (default 64 MiB). */
  maxBytes?: number;
}

export declare class Socket extends EventEmitter {
  readonly id: string;
  /** Connection state recovery gave this socket back: same id, rooms and data, missed events sent. */
  readonly recovered: boolean;
  readonly nsp: Namespace;
  readonly server: Server;
  readonly connected: boolean;
  readonly disconnected: boolean;
  /** Free storage, also visible through `fetchSockets()`. */
  data: any;
  /** socket.io's handshake (fetched from the native side on first use). */
  readonly handshake: Handshake;
  readonly peer: Peer;
  readonly request: {
    headers: Handshake["headers"];
    url: string;
    connection: { remoteAddress: string; remotePort: number };
    socket: { remoteAddress: string; remotePort: number };
  };
  /** The Engine.IO connection under the socket. */
  readonly conn: EngineConnection;
  /** socket.io's `socket.client`: the connection's id, the connection, its request. */
  readonly client: { id: string; conn: EngineConnection; request: Socket["request"] };
  /** Its own id and every room it joined. */
  readonly rooms: Set<string>;
  /** Every other socket. */
  readonly broadcast: BroadcastOperator;
  to(room: RoomList): BroadcastOperator;
  in(room: RoomList): BroadcastOperator;
  except(room: RoomList): BroadcastOperator;
  readonly volatile: this;
  compress(compress?: boolean): this;
  /** The next `emit` with a callback gives up after `ms` (the callback gets an error first). */
  timeout(ms: number): this;
  /** Emits to this client; a function as last argument receives its acknowledgement. */
  emit(event: string, ...args: any[]): boolean;
  emitWithAck(event: string, ...args: any[]): Promise<any>;
  send(...args: any[]): boolean;
  write(...args: any[]): boolean;
  join(rooms: string | string[]): void;
  leave(room: string): void;
  /** Leaves the namespace; `close` also closes the connection. */
  disconnect(close?: boolean): this;
  onAny(listener: (event: string, ...args: any[]) => void): this;
  prependAny(listener: (event: string, ...args: any[]) => void): this;
  offAny(listener?: (event: string, ...args: any[]) => void): this;
  listenersAny(): Array<(event: string, ...args: any[]) => void>;
  /** Listeners of what this socket emits itself (broadcasts go out natively, unseen here). */
  onAnyOutgoing(listener: (event: string, ...args: any[]) => void): this;
  prependAnyOutgoing(listener: (event: string, ...args: any[]) => void): this;
  offAnyOutgoing(listener?: (event: string, ...args: any[]) => void): this;
  listenersAnyOutgoing(): Array<(event: string, ...args: any[]) => void>;
  on(event: "disconnect" | "disconnecting", listener: (reason: string) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: "disconnect" | "disconnecting", listener: (reason: string) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
}

/** A namespace: its sockets, broadcasts and cluster-wide operations. */
export declare class Namespace extends EventEmitter {
  readonly name: string;
  readonly server: Server;
  /** This server's sockets of the namespace. */
  readonly sockets: Map<string, Socket>;
  readonly adapter: NamespaceAdapter;
  to(room: RoomList): BroadcastOperator;
  in(room: RoomList): BroadcastOperator;
  except(room: RoomList): BroadcastOperator;
  readonly local: BroadcastOperator;
  readonly volatile: BroadcastOperator;
  compress(compress: boolean): BroadcastOperator;
  timeout(ms: number): BroadcastOperator;
  /** Broadcasts to every socket of the namespace on every server. */
  emit(event: string, ...args: any[]): boolean;
  /** Broadcasts asking for acknowledgements (`timeout(ms).emitWithAck(...)`). */
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  send(...args: any[]): boolean;
  write(...args: any[]): boolean;
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: RoomList): void;
  socketsLeave(room: RoomList): void;
  disconnectSockets(close?: boolean): void;
  /** To the other servers; a function as last argument gets `(err, responses)`. */
  serverSideEmit(event: string, ...args: any[]): true;
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>;
  /**
   * A middleware run for every new socket before it connects; `next(err)` turns the socket
   * away (the client gets `connect_error` with `err.message` and `err.data`).
   */
  use(fn: Middleware): this;
  on(event: "connection" | "connect", listener: (socket: Socket) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
}

/**
 * A namespace's adapter as socket.io's tools use it. `join-room` / `leave-room` (`(room, id)`)
 * are reported by the native side once something listens.
 */
export interface NamespaceAdapter extends EventEmitter {
  readonly nsp: Namespace;
  allRooms(): Promise<Set<string>>;
  serverCount(): Promise<number>;
  sockets(rooms: RoomList): Promise<Set<string>>;
  on(event: "join-room" | "leave-room", listener: (room: string, id: string) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** One Engine.IO connection (`socket.conn`, and the engine's `connection` event). */
export interface EngineConnection extends EventEmitter {
  readonly id: string;
  /** `polling` until the connection upgrades (then an `upgrade` event). */
  readonly transport: { name: "polling" | "websocket" };
  readonly remoteAddress: string;
  readonly protocol: 3 | 4;
  readonly readyState: "open" | "closed";
  /** Closes the connection and every socket on it. */
  close(): void;
  on(event: "upgrade", listener: (transport: { name: "websocket" }) => void): this;
  on(event: "close", listener: (reason: string) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * socket.io's `io.engine` as monitoring tools read it: the open connections' count, and a
 * `connection` event per Engine.IO connection as its first socket connects.
 */
export interface Engine extends EventEmitter {
  readonly clientsCount: number;
  on(event: "connection", listener: (conn: EngineConnection) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** `io.use` / `namespace.use`: call `next()` to let the socket in, `next(err)` to refuse it. */
export type Middleware = (socket: Socket, next: (err?: Error & { data?: any }) => void) => void;

/** socket.io's `Server`, over the native engine. */
export declare class Server extends EventEmitter {
  /**
   * socket.io's signatures: options only (then `listen`/`attach`), a port (listens natively on
   * it), or the app's http/https server (serves on its port beside the app's own routes).
   */
  constructor(opts?: ServerOptions);
  constructor(srv: number | import("node:http").Server | import("node:https").Server, opts?: ServerOptions);
  readonly opts: ServerOptions;
  /** The main namespace `/`. */
  readonly sockets: Namespace;
  /** The bound port, once `listen` resolved. */
  readonly port?: number;
  /** socket.io's `io.engine`, as far as tools read it (the admin UI). */
  readonly engine: Engine;
  of(name: string): Namespace;
  to(room: RoomList): BroadcastOperator;
  in(room: RoomList): BroadcastOperator;
  except(room: RoomList): BroadcastOperator;
  readonly local: BroadcastOperator;
  /** Same as `sockets.volatile`. */
  readonly volatile: BroadcastOperator;
  /** Same as `sockets.compress(c)`. */
  compress(compress: boolean): BroadcastOperator;
  /** Same as `sockets.timeout(ms)`. */
  timeout(ms: number): BroadcastOperator;
  /** Broadcasts to every socket of `/` (`error`, `listening`, `close`, `adapter` are local events). */
  emit(event: string, ...args: any[]): boolean;
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  send(...args: any[]): boolean;
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: RoomList): void;
  socketsLeave(room: RoomList): void;
  disconnectSockets(close?: boolean): void;
  serverSideEmit(event: string, ...args: any[]): true;
  /** A middleware for the main namespace (see `Namespace.use`). */
  use(fn: Middleware): this;
  /** This server's socket with that id. */
  socket(id: string): Socket | undefined;
  /** Starts listening; resolves the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /** Same as `attach(srv, opts)`: returns the server, as socket.io's. */
  listen(srv: import("node:http").Server | import("node:https").Server, opts?: ServerOptions): this;
  /**
   * Serves on the app's http/https server (requests under `path` go to the native engine,
   * websockets leave Node; the rest stays with the app's listeners), or listens natively on
   * `port`. Returns the server; `ready()` tells when it serves.
   */
  attach(srv: number | import("node:http").Server | import("node:https").Server, opts?: ServerOptions): this;
  /** Resolves the port once the server serves (after the constructor, `attach` or `listen`). */
  ready(): Promise<number>;
  /**
   * Closes every client and leaves the cluster. Attached to an http server, closes that server
   * too, as socket.io does; `fn` is called once it has closed.
   */
  close(fn?: (err?: Error) => void): Promise<void>;
  ref(): this;
  unref(): this;
  /** This server's metrics (see the README's Metrics section). */
  metrics(): Metrics;
  /** Every server's metrics over the cluster adapter, this one first. */
  clusterMetrics(): Promise<Array<{ address: string; metrics: Metrics }>>;
  /** Prometheus text of `metrics()`, or (`{cluster: true}`) of every server's. */
  metricsText(): string;
  metricsText(opts: { cluster: true }): Promise<string>;
  /** A `(req, res)` handler that answers `metricsText(opts)`. */
  metricsHandler(opts?: { cluster?: boolean }): (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void;
  /** Open Engine.IO sessions and connected sockets of this server. */
  stats(): { clients: number; sockets: number; recovery: { packets: number; bytes: number; sessions: number } | null };
  /** The Redis adapter's offline queue, or null without Redis. */
  offlineQueue(): OfflineQueueStats | null;
  on(event: "connection" | "connect", listener: (socket: Socket) => void): this;
  on(event: "adapter", listener: (status: AdapterStatus) => void): this;
  on(event: "close", listener: () => void): this;
  on(event: "new_namespace", listener: (nsp: Namespace) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

// ---------------------------------------------------------------------------------------------
// weroll Realtime (lib/realtime.js)

/** `socket.info`. */
export interface RealtimeSocketInfo {
  id: string;
  /** Client address; `x-forwarded-for` wins, `::ffff:` stripped. */
  ip: string;
  port: number;
  connectTime: number;
  /** The session payload after a successful shakehand. */
  session?: RealtimeSessionPayload | null;
  shakeHandTime?: number | null;
}

/** `socket.helper`: weroll's per-socket shortcuts (all broadcasts are cluster-wide). */
export interface RealtimeHelper {
  enterRoom(room: string, callback?: (err: Error | null) => void): Promise<void>;
  leaveRoom(room: string, callback?: (err: Error | null) => void): Promise<void>;
  /** To every connection of this socket's clientID. */
  send(type: string, ...data: any[]): void;
  /** To every connection of another clientID. */
  sendTo(clientID: string, type: string, ...data: any[]): void;
  broadcast(type: string, ...data: any[]): void;
  broadcastWithoutSender(type: string, ...data: any[]): void;
  broadcastToRoom(room: string, type: string, ...data: any[]): void;
  broadcastToRoomWithoutSender(room: string, type: string, ...data: any[]): void;
  /** Emits `$kick` with `data`, then disconnects about a second later. */
  kick(data?: any): void;
}

/** A Realtime connection: a {@link Socket} with weroll's additions. */
export interface RealtimeSocket extends Socket {
  /** `session.userid` after a shakehand, else the socket id; null once disconnected. */
  clientID: string | null;
  info: RealtimeSocketInfo;
  helper: RealtimeHelper;
  /** true after a successful shakehand, false after a failed one. */
  shaken?: boolean;
  /** Emits through the `compress` codec. */
  fire(type: string, ...args: any[]): boolean;
  /** Disconnects and closes the connection. */
  close(): void;
}

/** The error `start()` rejects with (and emits as `error`) when it cannot listen. */
export interface RealtimeListenError extends Error {
  port: number;
  code?: "EADDRINUSE";
  cause: Error;
}

/** A producer registered with `registerProducer`, run on every worker by `invoke`. */
export type RealtimeProducer = (...args: any[]) => any;

/** One Realtime server (weroll's `Realtime` object). */
export declare class RealtimeServer extends EventEmitter {
  constructor(config: RealtimeConfig);
  readonly config: RealtimeConfig;
  debug: boolean;
  /** The `config.adpater` instance, or null. */
  readonly hooks: RealtimeHooks | null;
  /** The socket.io-style server, once started. */
  readonly io: Server | null;
  /** The listening port (base + worker index in cluster mode). */
  readonly port: number | undefined;
  /**
   * Starts listening; resolves the port. Rejects (and emits `error`) when it cannot listen;
   * throws when already started.
   */
  start(): Promise<number>;
  /** Closes every client and leaves the cluster. */
  close(): Promise<void>;
  ref(): this;
  unref(): this;
  traceLog(...args: any[]): void;
  traceError(...args: any[]): void;
  traceInfo(...args: any[]): void;
  /** To every connection of `clientID`, on every worker. */
  sendTo(clientID: string, type: string, ...data: any[]): void;
  /** To every socket in `room`, on every worker. */
  broadcastToRoom(room: string, type: string, ...data: any[]): void;
  /** To every socket, on every worker. */
  broadcastToAll(type: string, ...data: any[]): void;
  /** `$kick` then disconnect every connection of `clientID` on every worker; resolves how many. */
  kick(clientID: string, data?: any): Promise<number>;
  /** This worker's connections of `clientID`. */
  getConnectionsByClientID(clientID: string, needSocketInstance: true): RealtimeSocket[];
  getConnectionsByClientID(clientID: string, needSocketInstance?: false): string[];
  /** Every worker's socket ids of `clientID`. */
  getClusterConnectionsByClientID(clientID: string): Promise<string[]>;
  /** Every worker's socket ids in `room`. */
  getClusterRoomMembers(room: string): Promise<string[]>;
  getClientIDBySocketID(id: string): string | null;
  getSocketInstanceBySocketID(id: string): RealtimeSocket | null;
  getClientConnectionBySocketID(id: string): RealtimeSocket | null;
  /** Live workers of the cluster (empty without Redis). */
  servers(): Promise<ClusterServer[]>;
  /** Address (`host:port`) of the least loaded live worker, or null. */
  pickServer(): Promise<string | null>;
  /** This worker's metrics (see `Server.metrics`). */
  metrics(): Metrics;
  /** Every worker's metrics over Redis, this one first. */
  clusterMetrics(): Promise<Array<{ address: string; metrics: Metrics }>>;
  /** Prometheus text of this worker's metrics, or (`{cluster: true}`) of every worker's. */
  metricsText(): string;
  metricsText(opts: { cluster: true }): Promise<string>;
  /** A `(req, res)` handler answering `metricsText(opts)`, to mount at `/metrics`. */
  metricsHandler(opts?: { cluster?: boolean }): (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void;
  /** The Redis adapter's offline queue, or null without a cluster. */
  offlineQueue(): OfflineQueueStats | null;
  /** Registers `fn` under `name`, callable on every worker with `invoke`. */
  registerProducer(name: string, fn: RealtimeProducer): void;
  /** Runs producer `method` on every worker; resolves their results, this worker's first. */
  invoke(method: string, args?: any, callBack?: (err: Error | null, results?: any[]) => void): Promise<any[]>;

  on(event: "start", listener: (io: Server) => void): this;
  on(event: "connection" | "disconnect" | "shakeHandStart" | "shakeHandSuccess" | "shakeHandFail", listener: (socket: RealtimeSocket) => void): this;
  on(event: "shakeHandComplete", listener: (socket: RealtimeSocket, ok: boolean) => void): this;
  on(event: "error", listener: (err: RealtimeListenError) => void): this;
  on(event: "adapter", listener: (status: AdapterStatus) => void): this;
  on(event: "close", listener: () => void): this;
  /** A client's `emit("m", [type, data])`. */
  on(type: string, listener: (socket: RealtimeSocket, data: any) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: "start", listener: (io: Server) => void): this;
  once(event: "connection" | "disconnect" | "shakeHandStart" | "shakeHandSuccess" | "shakeHandFail", listener: (socket: RealtimeSocket) => void): this;
  once(event: "shakeHandComplete", listener: (socket: RealtimeSocket, ok: boolean) => void): this;
  once(event: "error", listener: (err: RealtimeListenError) => void): this;
  once(event: "adapter", listener: (status: AdapterStatus) => void): this;
  once(event: "close", listener: () => void): this;
  once(type: string, listener: (socket: RealtimeSocket, data: any) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** weroll's `Realtime.createServer(config, noGlobal)`; unless `noGlobal`, also the global `Realtime`. */
export declare function createServer(config: RealtimeConfig, noGlobal?: boolean): RealtimeServer;

type RealtimeServerClass = typeof RealtimeServer;
type RealtimeServerInstance = RealtimeServer;

/** weroll's Realtime module (`require("weroll/web/Realtime")`). */
export declare namespace Realtime {
  function createServer(config: RealtimeConfig, noGlobal?: boolean): RealtimeServerInstance;
  const RealtimeServer: RealtimeServerClass;
  type RealtimeServer = RealtimeServerInstance;
}

/** Options of {@link workerIndex}. */
export interface WorkerIndexOptions {
  workerIndex?: number;
  instanceVar?: string;
}

/**
 * This process's stable slot in the cluster, first defined of: `options.workerIndex`,
 * `WEROLL_WORKER_INDEX` (weroll-native/cluster), pm2's `NODE_APP_INSTANCE` (or `instanceVar`),
 * `global.workerID`, the Node cluster id modulo `WEROLL_WORKER_COUNT`, else 0.
 */
export declare function workerIndex(options?: WorkerIndexOptions): number;

declare global {
  /** The last server `Realtime.createServer` made without `noGlobal` (weroll's global). */
  var Realtime: RealtimeServer;
}

/**
 * Which design drives this process's sockets: `"node"` runs them on Node's own event loop (the
 * JavaScript thread; the default on Linux), `"thread"` on a network thread beside it (set
 * `WEROLL_NATIVE_LOOP=thread`, and the only design elsewhere).
 */
export declare const eventLoop: "node" | "thread";
