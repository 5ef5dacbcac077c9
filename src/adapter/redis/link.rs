//! The publishing side of the Redis connection: an ordered, bounded, never-blocking publish
//! queue, direct commands with a deadline, connection status tracking, a liveness check of both
//! connections and throttled logging.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::Client;
use fred::error::ErrorKind;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::Options;
use fred::types::ClientState;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adapter::AdapterError;

/// Messages waiting to be handed to Redis; beyond this, publishes are dropped (and logged).
const OUTBOX_CAPACITY: usize = 4096;
/// Publishes awaiting Redis' reply at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Shortest interval between two log lines of the same kind.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// How often each connection is checked with a `PING`.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Bounds of the time a `PING` may take before its connection counts as dead.
const PING_DEADLINE_MIN: Duration = Duration::from_secs(2);
const PING_DEADLINE_MAX: Duration = Duration::from_secs(10);

/// Writes one line to stderr.
pub fn log(message: &str) {
    eprintln!("[weroll-native] redis adapter: {message}");
}

/// A log line that repeats at most once per [`LOG_EVERY`], counting what it held back.
#[derive(Default)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// Logs `message()` unless a line was logged recently; then only counts it.
    pub fn log(&self, message: impl FnOnce() -> String) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < LOG_EVERY => state.1 += 1,
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                drop(state);
                if held > 0 {
                    log(&format!(
                        "{} ({held} similar messages suppressed)",
                        message()
                    ));
                } else {
                    log(&message());
                }
            }
        }
    }
}

struct Outgoing {
    channel: String,
    body: Bytes,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The publisher connection shared by every namespace of a factory.
pub struct Link {
    client: Client,
    status: Arc<StatusTracker>,
    outbox: mpsc::Sender<Outgoing>,
    /// Runtime the adapter's tasks run on.
    pub runtime: Handle,
    /// Deadline of each Redis command and of cluster requests.
    pub requests_timeout: Duration,
    overflow: Throttle,
}

impl Link {
    /// Wraps a connected client and starts the task that drains the publish queue in order.
    pub fn start(
        client: Client,
        status: Arc<StatusTracker>,
        runtime: Handle,
        requests_timeout: Duration,
    ) -> (Arc<Link>, JoinHandle<()>) {
        let (outbox, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let task = runtime.spawn(run_publisher(
            client.clone(),
            rx,
            command_options(requests_timeout),
            Arc::new(Throttle::default()),
        ));
        let link = Link {
            client,
            status,
            outbox,
            runtime,
            requests_timeout,
            overflow: Throttle::default(),
        };
        (Arc::new(link), task)
    }

    /// Options of a direct command: fail at once when disconnected, give up after the timeout.
    pub fn options(&self) -> Options {
        command_options(self.requests_timeout)
    }

    /// `Err(Unavailable)` at once while the publisher connection is known to be down (the
    /// client itself only notices when it starts reconnecting, and would queue commands).
    pub fn check(&self) -> Result<(), AdapterError> {
        if self.status.is_up(Role::Publisher) {
            Ok(())
        } else {
            Err(AdapterError::Unavailable(
                "the connection to Redis is down".into(),
            ))
        }
    }

    /// Publishes without waiting. When Redis is down the message is dropped and logged;
    /// when the queue is full (Redis slower than the server) likewise.
    pub fn publish(&self, channel: String, body: impl Into<Bytes>) {
        if self.check().is_err() {
            self.overflow
                .log(|| format!("Redis is down, dropped a message for {channel}"));
            return;
        }
        let item = Outgoing {
            channel,
            body: body.into(),
            done: None,
        };
        if let Err(e) = self.outbox.try_send(item) {
            let channel = match &e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => {
                    o.channel.clone()
                }
            };
            self.overflow
                .log(|| format!("publish queue full or closed, dropped a message for {channel}"));
        }
    }

    /// Publishes in order with the queued messages and waits until Redis accepted it.
    pub async fn publish_confirmed(
        &self,
        channel: String,
        body: impl Into<Bytes>,
    ) -> Result<(), AdapterError> {
        self.check()?;
        let (tx, rx) = oneshot::channel();
        let item = Outgoing {
            channel,
            body: body.into(),
            done: Some(tx),
        };
        self.outbox
            .try_send(item)
            .map_err(|_| AdapterError::Unavailable("publish queue full or closed".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AdapterError::Unavailable(e)),
            Err(_) => Err(AdapterError::Unavailable("adapter closed".into())),
        }
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`), i.e. servers in the namespace.
    pub async fn numsub(&self, channel: &str) -> Result<usize, AdapterError> {
        self.check()?;
        let reply: fred::types::Value = self
            .client
            .with_options(&self.options())
            .pubsub_numsub(channel)
            .await
            .map_err(unavailable)?;
        Ok(numsub_count(&reply))
    }
}

/// `PUBSUB NUMSUB ch` answers `[ch, n]` (or a map `{ch: n}` over RESP3).
fn numsub_count(reply: &fred::types::Value) -> usize {
    use fred::types::Value as V;
    let n = match reply {
        V::Array(items) => items.get(1).and_then(V::as_u64),
        V::Map(map) => map.values().next().and_then(V::as_u64),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
}

/// A Redis error as an [`AdapterError`].
pub fn unavailable(e: fred::error::Error) -> AdapterError {
    AdapterError::Unavailable(e.to_string())
}

/// Fail at once while disconnected, give up after `timeout`, and never write the command a
/// second time: a command written to a connection that is then dropped may still reach Redis
/// (what was sent before the close is read once the server wakes up), so a retry on the next
/// connection could run it twice.
fn command_options(timeout: Duration) -> Options {
    Options {
        fail_fast: true,
        timeout: Some(timeout),
        max_attempts: Some(1),
        ..Options::default()
    }
}

type InFlight = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Drains the queue. Each PUBLISH is polled once as soon as it is taken, which hands it to the
/// client's command queue in order; its reply is awaited alongside the next ones.
async fn run_publisher(
    client: Client,
    mut rx: mpsc::Receiver<Outgoing>,
    options: Options,
    errors: Arc<Throttle>,
) {
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            item = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(item) = item else { break };
                let mut fut = publish_one(client.clone(), options.clone(), item, errors.clone());
                let pending = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await;
                if pending {
                    in_flight.push(fut);
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

fn publish_one(
    client: Client,
    options: Options,
    item: Outgoing,
    errors: Arc<Throttle>,
) -> InFlight {
    Box::pin(async move {
        let result: Result<i64, _> = client
            .with_options(&options)
            .publish(item.channel.as_str(), item.body)
            .await;
        let result = result.map(|_| ()).map_err(|e| e.to_string());
        match item.done {
            Some(done) => {
                let _ = done.send(result);
            }
            None => {
                if let Err(e) = result {
                    errors.log(|| format!("publish to {} failed: {e}", item.channel));
                }
            }
        }
    })
}

/// How the adapter's Redis connections are doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterStatus {
    /// Both the publishing and the subscribing connection are up.
    Connected,
    /// A connection is down (the reason says which and why); it is being re-established.
    Disconnected(String),
}

/// Callback told about every change of [`AdapterStatus`].
pub type StatusCallback = Arc<dyn Fn(AdapterStatus) + Send + Sync>;

#[derive(Default)]
struct StatusState {
    up: [bool; 2],
    reported: Option<bool>,
    closed: bool,
}

/// Folds the events of both connections into one status and reports its changes.
pub struct StatusTracker {
    callback: StatusCallback,
    server: String,
    state: Mutex<StatusState>,
}

/// Which connection an event is about.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// The publishing connection.
    Publisher = 0,
    /// The subscribing connection.
    Subscriber = 1,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

impl StatusTracker {
    /// A tracker reporting to `callback` about the connections to `server` (for log lines).
    pub fn new(callback: StatusCallback, server: String) -> Arc<StatusTracker> {
        Arc::new(StatusTracker {
            callback,
            server,
            state: Mutex::new(StatusState::default()),
        })
    }

    /// Records that `role` is up or down and reports a change of the overall status.
    pub fn set(&self, role: Role, up: bool, why: impl FnOnce() -> String) {
        let change = {
            let Ok(mut s) = self.state.lock() else { return };
            if s.closed || s.up[role as usize] == up {
                return;
            }
            s.up[role as usize] = up;
            let all_up = s.up.iter().all(|u| *u);
            // Nothing is reported before the first time both are up (that is `connect`'s job).
            if s.reported == Some(all_up) || (s.reported.is_none() && !all_up) {
                return;
            }
            s.reported = Some(all_up);
            if all_up {
                AdapterStatus::Connected
            } else {
                AdapterStatus::Disconnected(format!("{} {}", role.name(), why()))
            }
        };
        match &change {
            AdapterStatus::Connected => log(&format!("connected to Redis at {}", self.server)),
            AdapterStatus::Disconnected(why) => log(&format!(
                "lost Redis at {} ({why}); reconnecting",
                self.server
            )),
        }
        let callback = self.callback.clone();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(change))).is_err() {
            log("status callback panicked");
        }
    }

    /// Whether `role`'s connection is up, as far as its events tell.
    pub fn is_up(&self, role: Role) -> bool {
        self.state.lock().is_ok_and(|s| s.up[role as usize])
    }

    /// Stops reporting and counts both connections as down (the factory is closing).
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
            s.up = [false, false];
        }
    }
}

/// Follows one client's connection events and feeds them to the tracker. Every event of the
/// error stream is a failed or lost connection; errors are read before reconnections so that,
/// when both are waiting, the most recent state wins.
pub fn watch<C>(
    client: C,
    role: Role,
    tracker: Arc<StatusTracker>,
    runtime: &Handle,
) -> JoinHandle<()>
where
    C: ClientLike + EventInterface + 'static,
{
    use tokio::sync::broadcast::error::RecvError;
    let mut reconnects = client.reconnect_rx();
    let mut errors = client.error_rx();
    runtime.spawn(async move {
        loop {
            tokio::select! {
                biased;
                event = errors.recv() => match event {
                    Ok((e, server)) => {
                        let at = server.map(|s| format!(" to {s}")).unwrap_or_default();
                        tracker.set(role, false, || format!("connection{at}: {e}"));
                    }
                    Err(RecvError::Lagged(_)) => {
                        let up = client.state() == ClientState::Connected;
                        tracker.set(role, up, || "connection lost".to_owned());
                    }
                    Err(RecvError::Closed) => break,
                },
                event = reconnects.recv() => match event {
                    Ok(_) => tracker.set(role, true, String::new),
                    Err(RecvError::Lagged(_)) => {
                        let up = client.state() == ClientState::Connected;
                        tracker.set(role, up, || "connection lost".to_owned());
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    })
}

/// How long a liveness `PING` may take: half the request timeout, within 2 to 10 seconds.
pub fn ping_deadline(requests_timeout: Duration) -> Duration {
    (requests_timeout / 2).clamp(PING_DEADLINE_MIN, PING_DEADLINE_MAX)
}

/// Checks one connection every [`PING_EVERY`] with a `PING` that must be answered within
/// `deadline`. A connection that stays open but does not answer (a stopped server, a network
/// path that silently drops packets) is otherwise only noticed by the first command that times
/// out, and is never re-established: when the deadline passes, the connection is reported down
/// and a reconnection is forced. It is reported up again by [`watch`] once the client has
/// reconnected (or here, if a later `PING` is answered on the same connection).
///
/// On the subscriber connection `PING` is allowed in subscribed mode (RESP2 answers
/// `["pong", ""]`, which the client hands back as the command's reply).
pub fn keep_alive<C>(
    client: C,
    role: Role,
    tracker: Arc<StatusTracker>,
    runtime: &Handle,
    deadline: Duration,
) -> JoinHandle<()>
where
    C: ClientLike + EventInterface + 'static,
{
    let options = command_options(deadline);
    let failures = Throttle::default();
    let mut reconnects = client.reconnect_rx();
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether this check reported the connection down and has not seen it answer since.
        let mut missed = false;
        loop {
            tick.tick().await;
            if client.state() != ClientState::Connected {
                // Not connected: the client is (re)connecting by itself and `watch` reports it.
                continue;
            }
            drained(&mut reconnects);
            let answer: Result<fred::types::Value, _> =
                client.with_options(&options).ping(None).await;
            match answer {
                Ok(_) => {
                    if missed && client.state() == ClientState::Connected {
                        tracker.set(role, true, String::new);
                    }
                    missed = false;
                }
                // Any other failure means the connection went away or Redis answered with an
                // error (it is alive). A timeout while the client is not connected, or after
                // it reconnected meanwhile, is about a connection it already gave up by itself.
                Err(e)
                    if *e.kind() != ErrorKind::Timeout
                        || client.state() != ClientState::Connected
                        || drained(&mut reconnects) => {}
                Err(_) => {
                    missed = true;
                    tracker.set(role, false, || {
                        format!(
                            "connection: no answer to PING within {} ms",
                            deadline.as_millis()
                        )
                    });
                    // Resolves once reconnected; no further PING is due until then.
                    if let Err(e) = client.force_reconnection().await {
                        failures.log(|| format!("{} reconnection failed: {e}", role.name()));
                    }
                }
            }
        }
    })
}

/// Empties `events`; true when it held any (or lost count of some).
fn drained<T: Clone>(events: &mut tokio::sync::broadcast::Receiver<T>) -> bool {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut any = false;
    loop {
        match events.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => any = true,
            Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_changes_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let t = StatusTracker::new(Arc::new(move |s| s2.lock().unwrap().push(s)), "test".into());
        t.set(Role::Publisher, true, String::new);
        t.set(Role::Subscriber, true, String::new);
        t.set(Role::Subscriber, true, String::new);
        t.set(Role::Publisher, false, || "down".into());
        t.set(Role::Subscriber, false, || "down too".into());
        t.set(Role::Publisher, true, String::new);
        t.set(Role::Subscriber, true, String::new);
        t.close();
        t.set(Role::Subscriber, false, || "after close".into());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                AdapterStatus::Connected,
                AdapterStatus::Disconnected("publisher down".into()),
                AdapterStatus::Connected,
            ]
        );
    }

    #[test]
    fn numsub_reply_shapes() {
        use fred::types::Value as V;
        let reply = V::Array(vec![V::from("ch"), V::Integer(3)]);
        assert_eq!(numsub_count(&reply), 3);
        assert_eq!(numsub_count(&V::Null), 0);
    }

    #[test]
    fn ping_deadline_bounds() {
        assert_eq!(
            ping_deadline(Duration::from_millis(1000)),
            Duration::from_secs(2)
        );
        assert_eq!(
            ping_deadline(Duration::from_millis(6000)),
            Duration::from_secs(3)
        );
        assert_eq!(
            ping_deadline(Duration::from_secs(3600)),
            Duration::from_secs(10)
        );
    }
}
