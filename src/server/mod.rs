//! Socket.IO server core: namespaces, sockets, rooms and broadcasts.
//!
//! It sits on the engine ([`crate::engine`]) through [`EngineHandler`], speaks packets through
//! [`crate::protocol`], and reaches other servers only through each namespace's
//! [`crate::adapter::Adapter`]. What JavaScript must hear leaves through an [`EventSink`].

mod client;
mod handshake;
mod namespace;
mod recovery;
mod socket;

pub use client::ClientState;
pub use namespace::{Namespace, Welcome};
pub use recovery::RecoveryConfig;
pub use socket::Socket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::adapter::{AdapterError, AdapterFactory, BroadcastOptions, RemoteSocket};
use crate::engine::{self, CloseReason, Connection, Engine, EngineConfig, EngineHandler, Incoming};
use crate::protocol::Payload;

/// Settings of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Engine.IO settings.
    pub engine: EngineConfig,
    /// How long a v5 client may take to send its first CONNECT (socket.io `connectTimeout`).
    pub connect_timeout: Duration,
    /// Wakes the writers of a large local fan-out in slices (`None`: all at once).
    pub fanout_slices: Option<FanoutSlices>,
    /// Connection state recovery (`None`: off, socket.io's default).
    pub recovery: Option<RecoveryConfig>,
}

/// A local fan-out to more than `size` sockets wakes their writers `size` at a time, each
/// slice once `turn()` resolves. When the runtime runs on Node's thread, this keeps a large
/// broadcast from holding JavaScript for its whole length.
#[derive(Debug, Clone, Copy)]
pub struct FanoutSlices {
    pub size: usize,
    /// Resolves once the thread that drives the runtime has done other work.
    pub turn: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_millis(45_000),
            fanout_slices: None,
            recovery: None,
        }
    }
}

/// What the server reports to JavaScript. Events of one socket arrive in order.
#[derive(Debug)]
pub enum ServerEvent {
    /// A socket connected to a namespace (in a lazy namespace: first sent something, see
    /// [`Namespace::set_announce`]). Only what weroll reads on every connection travels here
    /// (peer address, port, `x-forwarded-for`, handshake time in ms since the epoch); the full
    /// handshake is fetched on demand with [`Socket::handshake_json`]. `welcomed`: the
    /// namespace's [`Welcome`] was done natively.
    Connection {
        sid: Arc<str>,
        nsp: Arc<str>,
        address: String,
        port: u16,
        forwarded: Option<String>,
        time: u64,
        welcomed: bool,
        /// Waiting for JavaScript's middlewares: answer with [`Socket::accept`] or
        /// [`Socket::refuse`].
        pending: bool,
        /// Connection state recovery gave this socket back (same id, rooms, missed events).
        recovered: bool,
        /// What JavaScript kept of a recovered socket, when the cluster kept it (JSON).
        state: Option<String>,
    },
    /// The client emitted an event; `ack` is set when it asked for an acknowledgement.
    Event {
        sid: Arc<str>,
        data: Payload,
        ack: Option<u64>,
    },
    /// The client acknowledged an event the server emitted with ack id `id`.
    Ack {
        sid: Arc<str>,
        id: u64,
        data: Payload,
    },
    /// The socket left (reason in socket.io's words); `rooms` it was in, its own id excluded.
    Disconnect {
        sid: Arc<str>,
        reason: &'static str,
        rooms: Vec<Arc<str>>,
        /// The private id to save the socket's session under for the cluster
        /// ([`Server::persist_session`]), when connection state recovery keeps it there.
        save_as: Option<Arc<str>>,
    },
    /// Another server's `serverSideEmit`; answer with [`Server::reply`] when `reply` is set.
    ServerSideEmit {
        nsp: Arc<str>,
        data: Payload,
        reply: Option<u64>,
    },
    /// Another server fetches these sockets of `nsp`: answer `{sid: socket.data}` (JSON) with
    /// [`Server::reply`].
    SocketData {
        nsp: Arc<str>,
        token: u64,
        sids: Vec<String>,
    },
    /// An Engine.IO connection (its id, not a socket's) moved from polling to websocket. Only
    /// while [`Server::watch_upgrades`] is on.
    Upgrade { eid: String },
    /// A socket joined (or left) rooms, whoever asked. Only for a namespace whose rooms are
    /// watched ([`Server::watch_rooms`]).
    Rooms {
        nsp: Arc<str>,
        sid: Arc<str>,
        rooms: Vec<Arc<str>>,
        joined: bool,
    },
}

/// Where server events go (the binding batches them into JavaScript).
pub trait EventSink: Send + Sync + 'static {
    /// Queues one event.
    fn push(&self, event: ServerEvent);
}

/// Shared state of a server: everything the engine's callbacks and the binding's commands touch.
pub struct ServerCore {
    config: ServerConfig,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    sockets: RwLock<HashMap<Arc<str>, Arc<Socket>>>,
    sink: Arc<dyn EventSink>,
    adapters: Arc<dyn AdapterFactory>,
    replies: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    next_reply: AtomicU64,
    /// The runtime the server was made on, for work started from outside it (a fan-out's later
    /// slices, when the broadcast came from a JavaScript call).
    runtime: Option<tokio::runtime::Handle>,
    /// Connection state recovery, when on.
    recovery: Option<Arc<recovery::Recovery>>,
    /// Recovered sockets waiting to connect (their rooms and missed events), by socket id.
    restoring: Mutex<HashMap<Arc<str>, recovery::Restored>>,
    /// What JavaScript kept of sockets the cluster gave back, until JavaScript hears of them.
    recovered_states: Mutex<HashMap<Arc<str>, String>>,
    /// Traffic counters for metrics.
    pub(crate) traffic: Traffic,
    /// Whether upgrades are told to JavaScript ([`ServerEvent::Upgrade`]).
    watch_upgrades: AtomicBool,
}

/// Socket.IO traffic counters (relaxed atomics: one add per event or per broadcast, never per
/// recipient).
#[derive(Default)]
pub(crate) struct Traffic {
    pub(crate) events_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) events_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) broadcasts: AtomicU64,
    pub(crate) deliveries: AtomicU64,
}

impl Traffic {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` recipients of `frames`, counted as events and bytes sent.
    pub(crate) fn sent(&self, frames: &[crate::engine::Frame], n: u64) {
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        Self::add(&self.events_out, n);
        Self::add(&self.bytes_out, bytes * n);
    }

    /// A broadcast delivered to `n` local recipients.
    pub(crate) fn broadcast(&self, frames: &[crate::engine::Frame], n: u64) {
        self.sent(frames, n);
        Self::add(&self.broadcasts, 1);
        Self::add(&self.deliveries, n);
    }
}

/// What a server has done and holds now, for metrics.
#[derive(Debug, Default, Clone)]
pub struct ServerMetrics {
    pub engine: engine::EngineMetrics,
    /// Events received from clients, and their bytes (JSON text and attachments).
    pub events_in: u64,
    pub bytes_in: u64,
    /// Events sent to clients (each recipient counts), and their bytes.
    pub events_out: u64,
    pub bytes_out: u64,
    /// Broadcasts delivered here (from this server or another), and the deliveries they made.
    pub broadcasts: u64,
    pub deliveries: u64,
    /// Per namespace: name, connected sockets, rooms.
    pub namespaces: Vec<(String, u64, u64)>,
}

/// A Socket.IO server: one engine, its namespaces and their adapters.
pub struct Server {
    core: Arc<ServerCore>,
    engine: Arc<Engine<ServerCore>>,
    shutdown: watch::Sender<bool>,
    local_addr: OnceLock<SocketAddr>,
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// A server with the root namespace `/` declared. Nothing listens until [`Server::listen`].
    pub fn new(
        config: ServerConfig,
        sink: Arc<dyn EventSink>,
        adapters: Arc<dyn AdapterFactory>,
    ) -> Server {
        let core = Arc::new(ServerCore {
            config: config.clone(),
            namespaces: RwLock::new(HashMap::new()),
            sockets: RwLock::new(HashMap::new()),
            sink,
            adapters,
            replies: Mutex::new(HashMap::new()),
            next_reply: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::try_current().ok(),
            recovery: config
                .recovery
                .clone()
                .map(|c| Arc::new(recovery::Recovery::new(c))),
            restoring: Mutex::new(HashMap::new()),
            recovered_states: Mutex::new(HashMap::new()),
            traffic: Traffic::default(),
            watch_upgrades: AtomicBool::new(false),
        });
        if let (Some(rec), Some(rt)) = (&core.recovery, &core.runtime) {
            // Sessions and events older than the window go, like socket.io's minute sweep.
            let weak = Arc::downgrade(rec);
            let every = rec
                .config
                .max_disconnection
                .clamp(Duration::from_millis(100), Duration::from_secs(60));
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(rec) => rec.sweep(),
                        None => return,
                    }
                }
            });
        }
        core.of("/");
        let engine = Engine::new(config.engine, core.clone());
        let (shutdown, _) = watch::channel(false);
        Server {
            core,
            engine,
            shutdown,
            local_addr: OnceLock::new(),
        }
    }

    /// Binds `addr` and serves it. A port in use is retried for `retry` (a respawned worker
    /// may start while its predecessor still holds the port). Returns the bound address.
    pub async fn listen(&self, addr: SocketAddr, retry: Duration) -> std::io::Result<SocketAddr> {
        if self.local_addr.get().is_some() {
            return Err(std::io::Error::other("server is already listening"));
        }
        let deadline = tokio::time::Instant::now() + retry;
        let listener = loop {
            match engine::bind(addr) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let bound = listener.local_addr()?;
        let _ = self.local_addr.set(bound);
        tokio::spawn(
            self.engine
                .clone()
                .serve(listener, self.shutdown.subscribe()),
        );
        Ok(bound)
    }

    /// Serves no port of its own: the host hands over the requests under the engine's path
    /// ([`Server::adopt_upgrade`], [`Server::serve_request`]).
    pub fn attach(&self) {
        self.engine.start_attached();
    }

    /// A websocket upgrade request the host parsed, with its TCP connection and the bytes
    /// read past the head: served as a connection to the server's own port would be.
    pub fn adopt_upgrade(
        &self,
        stream: std::net::TcpStream,
        head: engine::RequestHead,
        pre: Vec<u8>,
        peer: SocketAddr,
    ) -> std::io::Result<()> {
        let runtime = self
            .core
            .spawner()
            .ok_or_else(|| std::io::Error::other("no runtime"))?;
        stream.set_nonblocking(true)?;
        let engine = self.engine.clone();
        runtime.spawn(async move {
            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                engine.serve_upgrade(stream, head, pre, peer).await;
            }
        });
        Ok(())
    }

    /// Answers a request the host parsed and collected (long-polling, CORS preflight).
    pub async fn serve_request(
        &self,
        head: engine::RequestHead,
        body: bytes::Bytes,
        peer: SocketAddr,
    ) -> engine::HostReply {
        self.engine.clone().serve_request(head, body, peer).await
    }

    /// Stops listening, closes every client and leaves the cluster.
    pub async fn close(&self) {
        let _ = self.shutdown.send(true);
        self.engine.close_all().await;
        let namespaces: Vec<Arc<Namespace>> =
            read(&self.core.namespaces).values().cloned().collect();
        for ns in namespaces {
            ns.adapter().close().await;
        }
        lock(&self.core.replies).clear();
    }

    /// Counters and current figures for metrics.
    pub fn metrics(&self) -> ServerMetrics {
        let t = &self.core.traffic;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let namespaces = read(&self.core.namespaces)
            .values()
            .map(|ns| {
                (
                    ns.name().to_string(),
                    ns.socket_count() as u64,
                    ns.room_count() as u64,
                )
            })
            .collect();
        ServerMetrics {
            engine: self.engine.metrics(),
            events_in: get(&t.events_in),
            bytes_in: get(&t.bytes_in),
            events_out: get(&t.events_out),
            bytes_out: get(&t.bytes_out),
            broadcasts: get(&t.broadcasts),
            deliveries: get(&t.deliveries),
            namespaces,
        }
    }

    /// Connection state recovery's events kept, their bytes, and saved sockets.
    pub fn recovery_stats(&self) -> Option<(usize, usize, usize)> {
        self.core.recovery().map(|r| r.stats())
    }

    /// Number of open Engine.IO sessions.
    pub fn client_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Declares (or returns) the namespace `name`.
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        self.core.of(name)
    }

    /// The namespace `name`, if declared.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        read(&self.core.namespaces).get(name).cloned()
    }

    /// The connected socket with id `sid`.
    pub fn socket(&self, sid: &str) -> Option<Arc<Socket>> {
        read(&self.core.sockets).get(sid).cloned()
    }

    /// Tells JavaScript of every websocket upgrade from now on ([`ServerEvent::Upgrade`]), or
    /// stops.
    pub fn watch_upgrades(&self, on: bool) {
        self.core.watch_upgrades.store(on, Ordering::Relaxed);
    }

    /// Tells JavaScript of every room a socket of `nsp` joins or leaves from now on
    /// ([`ServerEvent::Rooms`]), or stops.
    pub fn watch_rooms(&self, nsp: &str, on: bool) {
        if let Some(ns) = self.namespace(nsp) {
            ns.watch_rooms(on);
        }
    }

    /// Number of connected sockets over all namespaces.
    pub fn socket_count(&self) -> usize {
        read(&self.core.sockets).len()
    }

    /// Server-side disconnect of one socket; `close` also closes its connection.
    pub fn disconnect(&self, sid: &str, close: bool) -> bool {
        match self.socket(sid) {
            Some(s) => {
                s.disconnect(close);
                true
            }
            None => false,
        }
    }

    /// Sends the answer to another server's `serverSideEmit` (token from the event).
    pub fn reply(&self, token: u64, data: Payload) -> bool {
        match lock(&self.core.replies).remove(&token) {
            Some(tx) => tx.send(data).is_ok(),
            None => false,
        }
    }

    /// `fetchSockets()` over the cluster.
    pub async fn fetch_sockets(
        &self,
        nsp: &str,
        opts: BroadcastOptions,
    ) -> Result<Vec<RemoteSocket>, AdapterError> {
        let ns = self.namespace_or_err(nsp)?;
        let mut all = crate::adapter::LocalNamespace::local_sockets(&*ns, &opts);
        if !opts.flags.local {
            all.extend(ns.adapter().fetch_sockets(&opts).await?);
        }
        Ok(all)
    }

    /// Every room over the cluster (socket ids excluded).
    pub async fn all_rooms(&self, nsp: &str) -> Result<Vec<String>, AdapterError> {
        let ns = self.namespace_or_err(nsp)?;
        let mut rooms = crate::adapter::LocalNamespace::local_rooms(&*ns);
        rooms.extend(ns.adapter().all_rooms().await?);
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// `serverSideEmit` to the other servers; with `ack_timeout`, their answers.
    pub async fn server_side_emit(
        &self,
        nsp: &str,
        data: Payload,
        ack_timeout: Option<Duration>,
    ) -> Result<Vec<Payload>, AdapterError> {
        let ns = self.namespace_or_err(nsp)?;
        ns.adapter().server_side_emit(&data, ack_timeout).await
    }

    /// socket.io-redis 3's `customRequest` to the other servers (`data` holds its argument).
    pub async fn custom_request(
        &self,
        nsp: &str,
        data: Payload,
        timeout: Duration,
    ) -> Result<Vec<Payload>, AdapterError> {
        let ns = self.namespace_or_err(nsp)?;
        ns.adapter().custom_request(&data, timeout).await
    }

    /// Number of servers in the cluster.
    pub async fn server_count(&self, nsp: &str) -> usize {
        match self.namespace(nsp) {
            Some(ns) => ns.adapter().server_count().await,
            None => 1,
        }
    }

    fn namespace_or_err(&self, nsp: &str) -> Result<Arc<Namespace>, AdapterError> {
        self.namespace(nsp)
            .ok_or_else(|| AdapterError::Unavailable(format!("unknown namespace {nsp}")))
    }
}

impl ServerCore {
    pub(crate) fn recovery(&self) -> Option<&Arc<recovery::Recovery>> {
        self.recovery.as_ref()
    }

    /// Where to spawn work: the server's runtime, or the one of the caller.
    pub(crate) fn spawner(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    }

    /// The frames of an event without ack for `target`, encoded once. With recovery on, the
    /// event carries an offset as its last argument and is kept once for whoever misses it.
    pub(crate) fn event_frames(
        &self,
        nsp: &Arc<str>,
        data: &Payload,
        target: recovery::Target<'_>,
    ) -> Vec<engine::Frame> {
        let offset = self.recovery.as_ref().and_then(|rec| {
            let (seq, offset) = rec.next_offset();
            recovery::with_offset(&data.json, &offset).map(|j| (seq, j))
        });
        let json = offset
            .as_ref()
            .map_or(data.json.as_str(), |(_, j)| j.as_str());
        let frames = socket::encoded_event(nsp, None, json, data);
        if let (Some((seq, _)), Some(rec)) = (&offset, &self.recovery) {
            rec.keep(*seq, nsp, target, &frames);
        }
        frames
    }

    pub(crate) fn set_restoring(&self, sid: Arc<str>, restored: recovery::Restored) {
        lock(&self.restoring).insert(sid, restored);
    }

    pub(crate) fn take_restoring(&self, sid: &str) -> Option<recovery::Restored> {
        lock(&self.restoring).remove(sid)
    }

    pub(crate) fn set_recovered_state(&self, sid: Arc<str>, state: String) {
        lock(&self.recovered_states).insert(sid, state);
    }

    pub(crate) fn take_recovered_state(&self, sid: &str) -> Option<String> {
        lock(&self.recovered_states).remove(sid)
    }
    fn of(self: &Arc<Self>, name: &str) -> Arc<Namespace> {
        if let Some(ns) = read(&self.namespaces).get(name) {
            return ns.clone();
        }
        let mut map = write(&self.namespaces);
        map.entry(name.to_string())
            .or_insert_with(|| Namespace::new(name, Arc::downgrade(self), &*self.adapters))
            .clone()
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        read(&self.namespaces).get(name).cloned()
    }

    pub(crate) fn register(&self, socket: &Arc<Socket>) {
        write(&self.sockets).insert(socket.id.clone(), socket.clone());
    }

    pub(crate) fn unregister(&self, sid: &str) {
        write(&self.sockets).remove(sid);
    }

    pub(crate) fn emit(&self, event: ServerEvent) {
        self.sink.push(event);
    }

    /// Tells JavaScript `event(token)` and waits up to `timeout` for its answer, which comes
    /// through [`Server::reply`] with that token; `None` past that (the token is forgotten).
    pub(crate) fn ask(
        self: &Arc<Self>,
        event: impl FnOnce(u64) -> ServerEvent,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Option<Payload>> + Send + 'static {
        let token = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.replies).insert(token, tx);
        self.emit(event(token));
        let weak = Arc::downgrade(self);
        async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => Some(answer),
                _ => {
                    if let Some(core) = weak.upgrade() {
                        lock(&core.replies).remove(&token);
                    }
                    None
                }
            }
        }
    }
}

impl EngineHandler for ServerCore {
    type Data = ClientState;

    fn on_open(&self, conn: &Arc<Connection<ClientState>>) {
        client::on_open(self, conn);
    }

    fn on_message(&self, conn: &Arc<Connection<ClientState>>, msg: Incoming) {
        client::on_message(self, conn, msg);
    }

    fn on_close(&self, conn: &Arc<Connection<ClientState>>, reason: CloseReason) {
        client::on_close(self, conn, reason);
    }

    fn on_upgrade(&self, conn: &Arc<Connection<ClientState>>) {
        if self.watch_upgrades.load(Ordering::Relaxed) {
            self.emit(ServerEvent::Upgrade {
                eid: conn.id().to_string(),
            });
        }
    }
}
