//! Engine.IO server: HTTP long-polling (hyper) and websocket (tokio-tungstenite), the
//! handshake, the polling→websocket upgrade, heartbeats, and v3/v4 framing.
//!
//! The layer above (Socket.IO) sees only [`EngineHandler`] callbacks and [`Connection`]s: it
//! sends [`Frame`]s (encoded once, cheap to clone for every recipient) and receives
//! [`Incoming`] messages. It never learns which transport a client is on.

mod config;
mod connection;
pub mod packet;

pub use config::{Cors, CorsOrigin, EngineConfig};
pub use connection::{CloseReason, Connection, Frame, Handshake, Incoming};

use std::net::SocketAddr;
use std::sync::Arc;

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
}

/// The Engine.IO server: owns sessions and runs the accept loop.
pub struct Engine<H: EngineHandler> {
    config: EngineConfig,
    handler: Arc<H>,
}

impl<H: EngineHandler> Engine<H> {
    /// Creates an engine; nothing listens until [`Engine::serve`].
    pub fn new(config: EngineConfig, handler: Arc<H>) -> Arc<Self> {
        Arc::new(Engine { config, handler })
    }

    /// Serves connections accepted on `listener` until `shutdown` turns true; then stops
    /// accepting and returns. Connections already open stay open until [`Engine::close_all`].
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let _ = (listener, shutdown, &self.config, &self.handler);
        todo!("engine::Engine::serve")
    }

    /// Closes every session (sends the Engine.IO close packet where the transport allows) and
    /// waits until their `on_close` ran.
    pub async fn close_all(&self) {
        todo!("engine::Engine::close_all")
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        todo!("engine::Engine::session_count")
    }
}

/// Binds `addr` with `SO_REUSEADDR` (so a respawned worker can take over its port at once).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
