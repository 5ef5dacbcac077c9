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

/// A dropped socket, saved for connection state recovery by an adapter that keeps sessions
/// for the whole cluster ([`Adapter::keeps_sessions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub sid: String,
    /// The private id the client comes back with.
    pub pid: String,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// What JavaScript keeps of it (JSON: `{data, ...}`, `data` being `socket.data`).
    pub state_json: Option<String>,
    /// How long it is kept.
    pub ttl: Duration,
}

/// A session taken back by [`Adapter::restore_session`].
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSession {
    pub sid: String,
    /// Its rooms, its own id excluded.
    pub rooms: Vec<String>,
    pub state_json: Option<String>,
    /// The events it missed, in order, each with its offset as last argument.
    pub missed: Vec<Payload>,
}

/// A failed cluster request.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterError {
    /// Not every server answered within the timeout. `acks`: the `serverSideEmit` answers
    /// that did come (socket.io hands them to the callback with the error).
    Timeout {
        expected: usize,
        received: usize,
        acks: Vec<Payload>,
    },
    /// The transport to the other servers is down.
    Unavailable(String),
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterError::Timeout {
                expected, received, ..
            } => write!(
                f,
                "timeout reached: only {received} responses received out of {expected}"
            ),
            AdapterError::Unavailable(why) => write!(f, "cluster adapter unavailable: {why}"),
        }
    }
}

impl std::error::Error for AdapterError {}

/// The answers to one broadcast whose recipients acknowledge: how many clients each server
/// reached, and every client's acknowledgement. Complete once every server told its count and
/// that many acknowledgements came in.
pub struct AckCollector {
    state: std::sync::Mutex<AckState>,
    done: tokio::sync::Notify,
    /// Set for another server's broadcast: each answer goes straight there.
    forward: Option<Box<dyn Fn(Payload) + Send + Sync>>,
}

struct AckState {
    /// Servers (this one included) yet to tell how many clients they reached.
    servers_left: usize,
    expected: usize,
    responses: Vec<Payload>,
}

impl AckState {
    fn complete(&self) -> bool {
        self.servers_left == 0 && self.responses.len() >= self.expected
    }
}

impl AckCollector {
    /// A collector waiting for `servers` client counts.
    pub fn new(servers: usize) -> AckCollector {
        AckCollector {
            state: std::sync::Mutex::new(AckState {
                servers_left: servers,
                expected: 0,
                responses: Vec::new(),
            }),
            done: tokio::sync::Notify::new(),
            forward: None,
        }
    }

    /// A collector that hands every answer to `forward` (another server's broadcast).
    pub fn forwarding(forward: Box<dyn Fn(Payload) + Send + Sync>) -> AckCollector {
        AckCollector {
            forward: Some(forward),
            ..AckCollector::new(0)
        }
    }

    fn update(&self, f: impl FnOnce(&mut AckState)) {
        let complete = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s);
            s.complete()
        };
        if complete {
            self.done.notify_waiters();
        }
    }

    /// One server reached `n` clients.
    pub fn client_count(&self, n: usize) {
        self.update(|s| {
            s.servers_left = s.servers_left.saturating_sub(1);
            s.expected += n;
        });
    }

    /// One client's acknowledgement (its arguments).
    pub fn response(&self, data: Payload) {
        match &self.forward {
            Some(forward) => forward(data),
            None => self.update(|s| s.responses.push(data)),
        }
    }

    /// Waits until complete or `timeout`; returns whether it completed, and the answers.
    pub async fn wait(&self, timeout: Duration) -> (bool, Vec<Payload>) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.done.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if s.complete() {
                    return (true, std::mem::take(&mut s.responses));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                return (s.complete(), std::mem::take(&mut s.responses));
            }
        }
    }
}

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
    /// The matching local sockets with their `socket.data`, for another server's
    /// `fetchSockets()`. Without a way to read the data, as [`LocalNamespace::local_sockets`].
    fn local_sockets_with_data(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Vec<RemoteSocket>> {
        Box::pin(std::future::ready(self.local_sockets(opts)))
    }
    /// Every room that has a local socket (socket ids excluded).
    fn local_rooms(&self) -> Vec<String>;
    /// Another server's `serverSideEmit`; when it wants an answer, send it through `ack`.
    fn on_server_side_emit(&self, args: Payload, ack: Option<oneshot::Sender<Payload>>);
    /// Delivers another server's broadcast that asks for acknowledgements; each local answer
    /// (the client's arguments) goes to `forward`. Returns the ack id it went out with and the
    /// number of recipients; [`LocalNamespace::forget_broadcast_ack`] ends the wait.
    fn apply_broadcast_with_ack(
        &self,
        data: Payload,
        opts: &BroadcastOptions,
        forward: Box<dyn Fn(Payload) + Send + Sync>,
    ) -> (u64, usize) {
        drop(forward);
        self.apply_broadcast(data, opts);
        (0, 0)
    }
    /// No more answers are wanted for ack id `id` of [`LocalNamespace::apply_broadcast_with_ack`].
    fn forget_broadcast_ack(&self, _id: u64) {}
    /// Delivers another server's broadcast that the cluster gave `offset` (for connection
    /// state recovery, when on).
    fn apply_broadcast_at(&self, data: Payload, opts: &BroadcastOptions, offset: &str) {
        let _ = offset;
        self.apply_broadcast(data, opts);
    }
}

/// The other servers, as one namespace sees them. Every method covers the *other* servers
/// only; the namespace does its own local part itself.
pub trait Adapter: Send + Sync + 'static {
    /// Publishes a broadcast for the other servers (not called for `flags.local`).
    fn broadcast(&self, data: &Payload, opts: &BroadcastOptions);
    /// A broadcast whose recipients acknowledge, for the other servers: each of them reports
    /// its client count and every acknowledgement to `acks` (`data` carries ack id `id`).
    /// Returns whether the other servers were asked (each then owes `acks` a client count).
    fn broadcast_with_ack(
        &self,
        _data: &Payload,
        _opts: &BroadcastOptions,
        _id: u64,
        _acks: Arc<AckCollector>,
    ) -> BoxFuture<'static, bool> {
        Box::pin(async { false })
    }
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
    /// socket.io-redis 3's `customRequest(data)` (`args` holds the one argument): every other
    /// server's answer, as weroll 1.x's `invoke` gathers them. Only the classic mode speaks it.
    fn custom_request(
        &self,
        _args: &Payload,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        Box::pin(async {
            Err(AdapterError::Unavailable(
                "customRequest needs the classic Redis adapter".into(),
            ))
        })
    }
    /// A room got its first local member (`socket_id`: the room is a socket's own id). An
    /// adapter with a channel per room starts listening on it.
    fn room_created(&self, _room: &str, _socket_id: bool) {}
    /// The last local member of a room left.
    fn room_deleted(&self, _room: &str, _socket_id: bool) {}
    /// Leaves the cluster (unsubscribes).
    fn close(&self) -> BoxFuture<'static, ()>;

    /// Whether connection state recovery is kept by the cluster through this adapter: the
    /// offsets are its own ([`Adapter::broadcast_with_offset`]) and sessions are saved and
    /// taken back through it, so that a client recovers on any server.
    fn keeps_sessions(&self) -> bool {
        false
    }
    /// Publishes a recoverable broadcast for the other servers (instead of
    /// [`Adapter::broadcast`]) and resolves the offset the cluster gave it, or `None` when it
    /// has none (the local delivery then goes without).
    fn broadcast_with_offset(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Option<String>> {
        self.broadcast(data, opts);
        Box::pin(async { None })
    }
    /// Saves a socket's session for the cluster (dropped, or a checkpoint of a live one).
    fn persist_session(&self, _session: Session) {}
    /// Deletes the session saved under `pid` (its socket left for good).
    fn forget_session(&self, _pid: &str) {}
    /// Takes back the session saved under `pid` with what it missed after `offset`; `None`
    /// (a fresh session) when there is none, it expired, or the offset is unknown.
    fn restore_session(
        &self,
        _pid: &str,
        _offset: &str,
    ) -> BoxFuture<'static, Option<RestoredSession>> {
        Box::pin(async { None })
    }
}

/// Makes one adapter per namespace.
pub trait AdapterFactory: Send + Sync + 'static {
    /// The adapter of namespace `nsp`. It calls back into the namespace through the weak
    /// reference, which dies when the server closes.
    fn create(&self, nsp: Weak<dyn LocalNamespace>) -> Arc<dyn Adapter>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: u8) -> Payload {
        Payload {
            json: format!("[{n}]"),
            attachments: Vec::new(),
        }
    }

    #[tokio::test]
    async fn ack_collector_completes_when_every_server_counted_and_answered() {
        let c = Arc::new(AckCollector::new(2));
        c.client_count(1);
        c.response(answer(1));
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait(Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        c.client_count(2);
        c.response(answer(2));
        c.response(answer(3));
        let (complete, answers) = waiter.await.expect("waiter");
        assert!(complete);
        assert_eq!(answers.len(), 3);
    }

    #[tokio::test]
    async fn ack_collector_times_out_with_the_answers_so_far() {
        let c = AckCollector::new(1);
        c.client_count(2);
        c.response(answer(1));
        let (complete, answers) = c.wait(Duration::from_millis(50)).await;
        assert!(!complete);
        assert_eq!(answers.len(), 1);
        let (complete, answers) = AckCollector::new(0).wait(Duration::ZERO).await;
        assert!(complete && answers.is_empty());
    }

    #[test]
    fn a_forwarding_collector_hands_answers_on() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = AckCollector::forwarding(Box::new({
            let seen = seen.clone();
            move |p: Payload| seen.lock().expect("lock").push(p.json)
        }));
        c.response(answer(7));
        assert_eq!(*seen.lock().expect("lock"), ["[7]"]);
    }
}
