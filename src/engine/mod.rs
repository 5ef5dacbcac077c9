//! Engine.IO server: HTTP long-polling (hyper) and websocket (tokio-tungstenite), the
//! handshake, the polling→websocket upgrade, heartbeats, and v3/v4 framing.
//!
//! The layer above (Socket.IO) sees only [`EngineHandler`] callbacks and [`Connection`]s: it
//! sends [`Frame`]s (encoded once, cheap to clone for every recipient) and receives
//! [`Incoming`] messages. It never learns which transport a client is on.

mod attach;
mod config;
mod connection;
mod deflate;
mod http;
pub mod packet;
mod session;
mod stream;
mod websocket;

pub use attach::{HostReply, RequestHead};
pub use config::{tls_config, Cors, CorsOrigin, EngineConfig};
pub use connection::{CloseReason, Connection, Frame, Handshake, Incoming};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use connection::control;
use packet::EnginePacket;
use session::{Core, Sessions};

/// Engine.IO protocol revision a client speaks (query `EIO=3` or `EIO=4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioVersion {
    /// socket.io-client 1.x/2.x: client pings, `<len>:<packet>` polling payloads.
    V3,
    /// socket.io-client 3.x/4.x: server pings, `\x1e`-separated polling payloads.
    V4,
}

/// What the Socket.IO layer implements to hear from the engine. Calls for one connection never
/// overlap and arrive in order: `on_open`, then any `on_message`, then exactly one `on_close`.
pub trait EngineHandler: Send + Sync + 'static {
    /// Per-connection state of the layer above, stored inside the [`Connection`].
    type Data: Default + Send + Sync + 'static;

    /// A session is established (after the handshake response has been queued).
    fn on_open(&self, conn: &Arc<Connection<Self::Data>>);
    /// A `message` packet arrived (text without its `4` type prefix, or binary).
    fn on_message(&self, conn: &Arc<Connection<Self::Data>>, msg: Incoming);
    /// The session ended; the connection can no longer send.
    fn on_close(&self, conn: &Arc<Connection<Self::Data>>, reason: CloseReason);
    /// A polling session moved to websocket.
    fn on_upgrade(&self, _conn: &Arc<Connection<Self::Data>>) {}
}

/// Bytes tungstenite asks for per read and keeps allocated per websocket for good: small,
/// because every idle connection pays for it. Syscalls still read up to 8 KiB (see
/// `stream.rs`), and a large message still grows the buffer to its size.
const WS_READ_BUFFER: usize = 64;
/// tungstenite hands every frame straight to the stream, whose own buffer gathers a batch
/// until the flush and is freed afterwards.
const WS_WRITE_BUFFER: usize = 0;

/// A TLS client that has not finished its handshake within this time is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Engine.IO server: owns sessions and runs the accept loop.
pub struct Engine<H: EngineHandler> {
    config: EngineConfig,
    handler: Arc<H>,
    core: Arc<Core>,
    sessions: Sessions<H::Data>,
    ws_config: WebSocketConfig,
    /// Sessions whose `on_close` has not run yet.
    open: AtomicUsize,
    /// Signalled after every `on_close` (for [`Engine::close_all`]).
    closed: tokio::sync::Notify,
    /// Set by [`Engine::close_all`]: new handshakes are refused.
    shutting_down: AtomicBool,
    ticker_started: AtomicBool,
    counters: Counters,
}

/// What the engine counts as it goes (relaxed atomics, one add per event).
#[derive(Default)]
struct Counters {
    opened: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    slow_drops: std::sync::atomic::AtomicU64,
}

/// The engine's figures for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Sessions opened since start.
    pub opened: u64,
    /// Requests answered with an Engine.IO error (400/403).
    pub refused: u64,
    /// Clients dropped because their queue outgrew `maxQueuedFrames`/`maxQueuedBytes`.
    pub slow_drops: u64,
    /// Open sessions by transport and protocol: polling v3, polling v4, websocket v3, websocket v4.
    pub polling_v3: u64,
    pub polling_v4: u64,
    pub websocket_v3: u64,
    pub websocket_v4: u64,
}

impl<H: EngineHandler> Engine<H> {
    /// Creates an engine; nothing listens until [`Engine::serve`].
    pub fn new(config: EngineConfig, handler: Arc<H>) -> Arc<Self> {
        let grace_ms = duration_ms(config.ping_timeout).max(1);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(WS_WRITE_BUFFER)
            .max_message_size(Some(config.max_payload))
            .max_frame_size(Some(config.max_payload));
        Arc::new(Engine {
            core: Arc::new(Core::new(
                config.max_queued_frames,
                config.max_queued_bytes,
                grace_ms,
            )),
            sessions: Sessions::new(),
            ws_config,
            open: AtomicUsize::new(0),
            closed: tokio::sync::Notify::new(),
            shutting_down: AtomicBool::new(false),
            ticker_started: AtomicBool::new(false),
            counters: Counters::default(),
            config,
            handler,
        })
    }

    /// Serves connections accepted on `listener` until `shutdown` turns true; then stops
    /// accepting and returns. Connections already open stay open until [`Engine::close_all`].
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        self.start_ticker();
        if *shutdown.borrow_and_update() {
            return;
        }
        let mut watch_shutdown = true;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Engine.IO packets are small and latency-bound.
                        let _ = stream.set_nodelay(true);
                        match &self.config.tls {
                            None => {
                                tokio::spawn(
                                    self.clone().serve_http(stream::NetStream::Tcp(stream), peer),
                                );
                            }
                            Some(tls) => {
                                tokio::spawn(self.clone().serve_tls(tls.clone(), stream, peer));
                            }
                        }
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
                changed = shutdown.changed(), if watch_shutdown => match changed {
                    Ok(()) => {
                        if *shutdown.borrow_and_update() {
                            return;
                        }
                    }
                    // The sender is gone, so nothing can ask us to stop any more.
                    Err(_) => watch_shutdown = false,
                },
            }
        }
    }

    /// The TLS handshake of a connection to the engine's own port, then HTTP over it. A client
    /// that does not finish the handshake in time is dropped.
    async fn serve_tls(
        self: Arc<Self>,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        if let Ok(Ok(tls)) =
            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
        {
            self.serve_http(stream::NetStream::Tls(Box::new(tls)), peer)
                .await;
        }
    }

    /// Closes every session (sends the Engine.IO close packet where the transport allows) and
    /// waits until their `on_close` ran.
    pub async fn close_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for conn in self.sessions.snapshot() {
            conn.close(CloseReason::ServerClose);
        }
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The engine's counters, and its open sessions by transport and protocol.
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = EngineMetrics {
            opened: self.counters.opened.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            slow_drops: self.counters.slow_drops.load(Ordering::Relaxed),
            ..Default::default()
        };
        for conn in self.sessions.snapshot() {
            let slot = match (conn.is_websocket(), conn.version()) {
                (false, EioVersion::V3) => &mut m.polling_v3,
                (false, EioVersion::V4) => &mut m.polling_v4,
                (true, EioVersion::V3) => &mut m.websocket_v3,
                (true, EioVersion::V4) => &mut m.websocket_v4,
            };
            *slot += 1;
        }
        m
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Creates a session and makes it reachable by sid. The caller runs `on_open` and then
    /// clears `dispatching`.
    fn create_session(
        &self,
        version: EioVersion,
        handshake: Handshake,
        websocket: bool,
    ) -> Arc<Connection<H::Data>> {
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        let now = self.core.now_ms();
        let first_timer = match version {
            EioVersion::V4 => duration_ms(self.config.ping_interval),
            EioVersion::V3 => {
                duration_ms(self.config.ping_interval) + duration_ms(self.config.ping_timeout)
            }
        };
        // Counted before it becomes visible, so `close_all` never sees it listed but uncounted.
        self.open.fetch_add(1, Ordering::SeqCst);
        let conn = self.sessions.insert_new(|sid| {
            let conn = Connection::new(
                sid,
                version,
                handshake,
                websocket,
                self.core.clone(),
                H::Data::default(),
            );
            self.core
                .schedule(&conn.timer_at, now.saturating_add(first_timer));
            Arc::new(conn)
        });
        // Pairs with `close_all`, which sets the flag before listing sessions: a session
        // inserted after that listing sees the flag here.
        if self.shutting_down.load(Ordering::SeqCst) {
            conn.close(CloseReason::ServerClose);
        }
        conn
    }

    /// The open packet for a new session.
    fn open_frame(&self, conn: &Connection<H::Data>, websocket: bool) -> Frame {
        let v4 = conn.version() == EioVersion::V4;
        Frame::Text(
            packet::open_packet(
                conn.id(),
                !websocket && self.config.allow_websocket,
                self.config.ping_interval.as_millis(),
                self.config.ping_timeout.as_millis(),
                v4.then_some(self.config.max_payload),
            )
            .into(),
        )
    }

    /// Acts on one packet from the client. Returns false once the session is closing, so
    /// the caller stops delivering what follows.
    fn handle_packet(&self, conn: &Arc<Connection<H::Data>>, packet: EnginePacket) -> bool {
        let v3 = conn.version() == EioVersion::V3;
        if v3 {
            // engine.io 3 counts any packet as a sign of life, not only pings.
            let deadline = self.core.now_ms()
                + duration_ms(self.config.ping_interval)
                + duration_ms(self.config.ping_timeout);
            self.core.schedule(&conn.timer_at, deadline);
        }
        match packet {
            EnginePacket::Message(msg) => self.handler.on_message(conn, msg),
            EnginePacket::Ping(_) if v3 => conn.push_control(control::PONG),
            EnginePacket::Pong(_) if !v3 => {
                let mut st = conn.lock();
                if st.awaiting_pong && st.closing.is_none() {
                    st.awaiting_pong = false;
                    let next = self.core.now_ms() + duration_ms(self.config.ping_interval);
                    self.core.schedule(&conn.timer_at, next);
                }
            }
            // Heartbeats go one way per revision; engine.io drops a client that reverses them.
            EnginePacket::Ping(_) | EnginePacket::Pong(_) => {
                conn.close(CloseReason::TransportError)
            }
            EnginePacket::Close => conn.close(CloseReason::ForcedClose),
            EnginePacket::Open | EnginePacket::Upgrade | EnginePacket::Noop => {}
        }
        conn.lock().closing.is_none()
    }

    /// Runs `on_close` for a polling session if it is closing and no handler call is running.
    fn finish_polling(&self, conn: &Arc<Connection<H::Data>>) {
        if let Some(reason) = conn.claim_close(false) {
            self.closed_session(conn, reason);
        }
    }

    fn closed_session(&self, conn: &Arc<Connection<H::Data>>, reason: CloseReason) {
        if reason == CloseReason::SlowClient {
            self.counters.slow_drops.fetch_add(1, Ordering::Relaxed);
        }
        self.handler.on_close(conn, reason);
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Ends a handler call started with `dispatching = true`; runs a close that came meanwhile.
    fn end_dispatch(&self, conn: &Arc<Connection<H::Data>>) {
        conn.lock().dispatching = false;
        self.finish_polling(conn);
    }

    /// One engine task per engine drives every heartbeat and deferred close: no timer per
    /// connection.
    fn start_ticker(self: &Arc<Self>) {
        if self.ticker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let shortest = self
            .config
            .ping_interval
            .min(self.config.ping_timeout)
            .max(Duration::from_millis(1));
        // Timers fire when due, but sweeps (each looks at every session) are at least this far
        // apart, so many connections with spread-out timers cost a few sweeps a second.
        let gap = (shortest / 20).clamp(Duration::from_millis(2), Duration::from_millis(250));
        let weak = Arc::downgrade(self);
        let core = self.core.clone();
        tokio::spawn(ticker(weak, core, gap));
    }

    /// Heartbeats: sends v4 pings, expires silent sessions, forgets closed polling sessions.
    fn sweep(&self) {
        let now = self.core.now_ms();
        self.core.sweeping();
        let earliest = self
            .sessions
            .for_each_due(now, |conn| self.on_timer(conn, now));
        self.core.swept(earliest);
    }

    fn on_timer(&self, conn: &Arc<Connection<H::Data>>, now: u64) {
        let mut st = conn.lock();
        if st.closing.is_some() {
            let (finalized, websocket) = (st.finalized, st.websocket);
            drop(st);
            if websocket {
                // Its task removes it; stop looking at it meanwhile.
                conn.timer_at.store(u64::MAX, Ordering::Relaxed);
            } else if finalized {
                conn.timer_at.store(u64::MAX, Ordering::Relaxed);
                self.sessions.remove(&conn.sid());
            } else {
                self.finish_polling(conn);
            }
            return;
        }
        if conn.version() == EioVersion::V4 && !st.awaiting_pong {
            st.awaiting_pong = true;
            // Counted from when the ping was due, so a late sweep does not add up.
            let due = conn.timer_at.load(Ordering::Relaxed).min(now);
            self.core
                .schedule(&conn.timer_at, due + duration_ms(self.config.ping_timeout));
            drop(st);
            conn.push_control(control::PING);
            return;
        }
        drop(st);
        conn.close(CloseReason::PingTimeout);
        self.finish_polling(conn);
    }

    /// Closes a session whose heartbeat deadline passed before the engine task got to it, so
    /// a request arriving after the deadline never finds the session alive.
    fn expire_if_late(&self, conn: &Arc<Connection<H::Data>>) {
        let late = {
            let st = conn.lock();
            st.closing.is_none()
                && (conn.version() == EioVersion::V3 || st.awaiting_pong)
                && conn.timer_at.load(Ordering::Relaxed) <= self.core.now_ms()
        };
        if late {
            conn.close(CloseReason::PingTimeout);
        }
    }

    fn reap(&self) {
        for sid in self.core.take_reaps() {
            if let Some(conn) = self.sessions.get(&sid) {
                self.finish_polling(&conn);
            }
        }
    }
}

/// The engine task: sweeps the timers when the earliest is due (and at least once a second),
/// reaps closed polling sessions when asked.
async fn ticker<H: EngineHandler>(weak: Weak<Engine<H>>, core: Arc<Core>, gap: Duration) {
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let due = tokio::time::Instant::from_std(core.next_due(Duration::from_secs(1)));
        let at = due.max(last_sweep + gap);
        let sweep = tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = core.wake.notified() => false,
        };
        let Some(engine) = weak.upgrade() else {
            return;
        };
        engine.reap();
        if sweep {
            last_sweep = tokio::time::Instant::now();
            engine.sweep();
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

/// Wall-clock time in ms since the Unix epoch (handshake times, `$init`'s `time`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Binds `addr` with `SO_REUSEADDR` (so a respawned worker can take over its port at once).
/// Not on Windows, where that option lets a second listener share a port in use.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
