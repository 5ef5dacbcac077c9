//! Engine.IO settings (names follow socket.io's server options).

use std::time::Duration;

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Request path, with leading and trailing slash: `/socket.io/`.
    pub path: String,
    /// `pingInterval` (ms in the handshake), default 25 s.
    pub ping_interval: Duration,
    /// `pingTimeout`, default 20 s.
    pub ping_timeout: Duration,
    /// How long a polling session may take to finish a websocket upgrade, default 10 s.
    pub upgrade_timeout: Duration,
    /// `maxHttpBufferSize`: largest message / polling body accepted, default 1e6 bytes.
    pub max_payload: usize,
    /// Whether long-polling is offered.
    pub allow_polling: bool,
    /// Whether websocket is offered.
    pub allow_websocket: bool,
    /// Whether Engine.IO v3 clients (socket.io-client 2.x) are accepted.
    pub allow_eio3: bool,
    /// Largest number of frames queued for one client before it is dropped as too slow.
    pub max_queued_frames: usize,
    /// Largest number of bytes queued for one client before it is dropped as too slow (shared
    /// broadcast frames count for every client that holds them).
    pub max_queued_bytes: usize,
    /// CORS for polling requests; `None` sends no CORS headers.
    pub cors: Option<Cors>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            allow_polling: true,
            allow_websocket: true,
            allow_eio3: true,
            max_queued_frames: 65_536,
            max_queued_bytes: 32 << 20,
            cors: None,
        }
    }
}

/// Which origins may make cross-origin polling requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `*`
    Any,
    /// Echo the request's `Origin` back (socket.io's `origin: true`).
    Reflect,
    /// Only these exact origins.
    List(Vec<String>),
}

/// CORS answer for polling requests and their OPTIONS preflight.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `Access-Control-Allow-Origin`.
    pub origin: CorsOrigin,
    /// Sends `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods` on preflight; empty means the `cors` package default.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers` on preflight; empty reflects the requested headers.
    pub allowed_headers: Vec<String>,
}
