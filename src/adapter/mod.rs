//! The cluster seam. A namespace hands every cross-server operation to its [`Adapter`] and
//! serves the other servers' operations through [`LocalNamespace`]. The [`local`] adapter has no
//! other servers; the [`redis`] adapter speaks `@socket.io/redis-adapter` 8.x over Redis. Nothing
//! above this module knows whether it runs clustered.

pub mod local;
pub mod msgpack;
pub mod redis;

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::protocol::Payload;

/// Flags of a broadcast (socket.io-adapter `BroadcastFlags`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Only this server's sockets: never published.
    pub local: bool,
    /// May be dropped for clients that are not ready.
    pub volatile: bool,
    /// socket.io's per-message compression hint (carried, not acted on).
    pub compress: Option<bool>,
}

/// Who a broadcast or bulk operation targets: sockets in any of `rooms` (everyone when empty),
/// minus sockets in any of `except`. A socket id is a room that holds that socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub flags: BroadcastFlags,
}

/// A socket as other servers see it (`fetchSockets()`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    pub id: String,
    pub rooms: Vec<String>,
    /// socket.io's `handshake` object.
    pub handshake: serde_json::Value,
    /// `socket.data`.
    pub data: serde_json::Value,
}

/// A failed cluster request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterError {
    /// Not every server answered within the timeout.
    Timeout { expected: usize, received: usize },
    /// The transport to the other servers is down.
    Unavailable(String),
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterError::Timeout { expected, received } => write!(
                f,
                "timeout reached: only {received} responses received out of {expected}"
            ),
            AdapterError::Unavailable(why) => write!(f, "cluster adapter unavailable: {why}"),
        }
    }
}

impl std::error::Error for AdapterError {}

/// What a namespace does for the adapter when another server asks (everything local only).
pub trait LocalNamespace: Send + Sync + 'static {
    /// Namespace name, with its leading slash.
    fn name(&self) -> &str;
    /// Delivers a broadcast from another server to this server's matching sockets.
    fn apply_broadcast(&self, data: Payload, opts: &BroadcastOptions);
    /// Makes the matching local sockets join `rooms`.
    fn apply_join(&self, opts: &BroadcastOptions, rooms: &[String]);
    /// Makes the matching local sockets leave `rooms`.
    fn apply_leave(&self, opts: &BroadcastOptions, rooms: &[String]);
    /// Disconnects the matching local sockets (`close`: also their underlying connection).
    fn apply_disconnect(&self, opts: &BroadcastOptions, close: bool);
    /// The matching local sockets.
    fn local_sockets(&self, opts: &BroadcastOptions) -> Vec<RemoteSocket>;
    /// Every room that has a local socket (socket ids excluded).
    fn local_rooms(&self) -> Vec<String>;
    /// Another server's `serverSideEmit`; when it wants an answer, send it through `ack`.
    fn on_server_side_emit(&self, args: Payload, ack: Option<oneshot::Sender<Payload>>);
}

/// The other servers, as one namespace sees them. Every method covers the *other* servers
/// only; the namespace does its own local part itself.
pub trait Adapter: Send + Sync + 'static {
    /// Publishes a broadcast for the other servers (not called for `flags.local`).
    fn broadcast(&self, data: &Payload, opts: &BroadcastOptions);
    /// `socketsJoin` on the other servers.
    fn sockets_join(&self, opts: &BroadcastOptions, rooms: &[String]);
    /// `socketsLeave` on the other servers.
    fn sockets_leave(&self, opts: &BroadcastOptions, rooms: &[String]);
    /// `disconnectSockets` on the other servers.
    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool);
    /// `fetchSockets` on the other servers.
    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>>;
    /// Rooms of the other servers.
    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<String>, AdapterError>>;
    /// `serverSideEmit` to the other servers. With `ack_timeout`, waits for one answer per
    /// other server and returns them; without, returns at once with no answers.
    fn server_side_emit(
        &self,
        args: &Payload,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>>;
    /// Number of servers in the cluster, this one included.
    fn server_count(&self) -> BoxFuture<'static, usize>;
    /// Leaves the cluster (unsubscribes).
    fn close(&self) -> BoxFuture<'static, ()>;
}

/// Makes one adapter per namespace.
pub trait AdapterFactory: Send + Sync + 'static {
    /// The adapter of namespace `nsp`. It calls back into the namespace through the weak
    /// reference, which dies when the server closes.
    fn create(&self, nsp: Weak<dyn LocalNamespace>) -> Arc<dyn Adapter>;
}
