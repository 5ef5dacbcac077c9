//! The publishing side of the Redis connection: an ordered, bounded, never-blocking publish
//! queue that keeps what is published while Redis is away (the offline queue), direct commands
//! with a deadline, connection status tracking, a liveness check of both connections and
//! throttled logging.
//!
//! The offline queue: while the publisher cannot publish (its connection is down, or stalled
//! past the liveness deadline), messages wait in order, up to [`OfflineQueue::max_bytes`]
//! (oldest dropped first). Once the connection is back, they are published only after this
//! server's own subscriber is up and the request channels of its namespaces have as many
//! subscribers as before the outage (`PUBSUB NUMSUB`, and the pattern subscriptions that
//! `CLIENT LIST` shows), or [`OfflineQueue::flush_wait`] has passed; messages published
//! meanwhile queue behind them. A publish that was written but lost with its connection is
//! queued again in its place. Requests, which wait for answers, are never queued: they fail at
//! once while Redis is away.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::Client;
use fred::error::ErrorKind;
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::types::config::Options;
use fred::types::{ClientState, ClusterHash, CustomCommand};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::config::OfflineQueue;
use crate::adapter::AdapterError;

/// Messages waiting to be taken by the publisher task; beyond this, publishes are dropped (and
/// logged). The task takes them at once, into the offline queue when Redis is away.
const OUTBOX_CAPACITY: usize = 4096;
/// Publishes awaiting Redis' reply at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Bytes a message is counted for in the offline queue besides its channel and body.
const QUEUED_OVERHEAD: usize = 64;
/// What waits for a slow (but connected) Redis when the offline queue is disabled.
const DISABLED_QUEUE_BYTES: usize = 1 << 20;
/// Times a message is written before it is given up.
const MAX_ATTEMPTS: u8 = 5;
/// Writes the client may make of one stream entry or shard-channel message (following Cluster
/// redirections).
const ENTRY_ATTEMPTS: u32 = 4;
/// Pause after a failed publish before the next attempt.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How often a held publisher looks at its connection (besides status changes).
const HOLD_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How often the subscriber counts to return to after an outage are taken.
const BASELINE_EVERY: Duration = Duration::from_millis(500);
/// The level to return to is the highest count seen over this long before the outage (a
/// server that left earlier is not waited for).
const BASELINE_WINDOW: Duration = Duration::from_secs(10);
/// How often, after a reconnection, the subscriber counts are checked.
const HEARD_CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long a connection may stall (no answer to `PING`) before it is given up and
/// re-established. Until then it is reported down but kept: a server that was only frozen
/// answers everything written to it once it runs again, and what it sends its subscribers
/// arrives, so nothing is lost or done twice.
const STALL_LIMIT: Duration = Duration::from_secs(10);
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

/// Which pub/sub the servers use, and so how messages are published and listeners counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `PUBLISH`, servers listening with patterns (the classic adapter).
    Patterns,
    /// `SPUBLISH`, shard channels (the sharded adapter).
    Shard,
    /// `PUBLISH`, plain channels (the streams adapter's requests).
    Channels,
}

impl Flavor {
    fn shard(self) -> bool {
        self == Flavor::Shard
    }

    /// The field of `CLIENT LIST` that counts the subscriptions every server holds.
    fn subscriptions_field(self) -> &'static str {
        match self {
            Flavor::Patterns => "psub=",
            Flavor::Shard => "ssub=",
            Flavor::Channels => "sub=",
        }
    }
}

/// What is sent: a pub/sub message, or an entry appended to a stream (`XADD key MAXLEN ~ n *
/// field value ...`, with `channel` as the key).
pub enum Body {
    Message(Bytes),
    Entry {
        fields: Vec<(&'static str, Bytes)>,
        max_len: u64,
    },
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Message(b) => b.len(),
            Body::Entry { fields, .. } => fields.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }
}

struct Outgoing {
    channel: String,
    body: Body,
    /// Told the outcome: an appended entry's id (empty for a message), or why it failed.
    done: Option<oneshot::Sender<Result<String, String>>>,
}

/// What the offline queue has done since the factory started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting now.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// Messages published late, after Redis came back.
    pub delivered: u64,
    /// Messages dropped because the queue was full, they were too old, or it is disabled.
    pub dropped: u64,
    /// Outages (the publisher not able to publish) seen.
    pub outages: u64,
}

/// State the publisher task shares with the [`Link`].
#[derive(Default)]
struct Shared {
    /// Publishing straight through: connected, and nothing waits in the offline queue.
    live: AtomicBool,
    /// Request channels (with how many namespaces use each) whose subscribers must be back
    /// before the queue is published after an outage.
    watched: Mutex<HashMap<String, usize>>,
    /// Subscriber counts the adapter saw between two samples (a server count it asked for),
    /// newest last: a server that joined just before an outage is waited for too.
    observed: Mutex<VecDeque<(Instant, Baseline)>>,
    stats: Mutex<QueueStats>,
}

/// The publisher connection shared by every namespace of a factory.
pub struct Link {
    client: Client,
    /// `SPUBLISH` and `PUBSUB SHARDNUMSUB` (sharded pub/sub), or `PUBLISH` and `PUBSUB NUMSUB`.
    flavor: Flavor,
    status: Arc<StatusTracker>,
    outbox: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    /// Runtime the adapter's tasks run on.
    pub runtime: Handle,
    /// Deadline of each Redis command and of cluster requests.
    pub requests_timeout: Duration,
    overflow: Throttle,
}

impl Link {
    /// Wraps a connected client and starts the task that publishes in order (and keeps what
    /// cannot be published while Redis is away, as `queue` says).
    pub fn start(
        client: Client,
        status: Arc<StatusTracker>,
        runtime: Handle,
        requests_timeout: Duration,
        queue: OfflineQueue,
        flavor: Flavor,
    ) -> (Arc<Link>, JoinHandle<()>) {
        let (outbox, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let mut publisher = Publisher::new(client.clone(), status.clone(), requests_timeout, queue);
        publisher.flavor = flavor;
        let shared = publisher.shared.clone();
        let task = runtime.spawn(publisher.run(rx));
        let link = Link {
            client,
            flavor,
            status,
            outbox,
            shared,
            runtime,
            requests_timeout,
            overflow: Throttle::default(),
        };
        (Arc::new(link), task)
    }

    /// The publisher's client, for direct commands (with [`Link::options`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Options of a direct command: fail at once when disconnected, give up after the timeout.
    pub fn options(&self) -> Options {
        command_options(self.requests_timeout)
    }

    /// `Err(Unavailable)` at once while the publisher cannot publish straight through: its
    /// connection is known to be down, or it is back but still publishing what was queued
    /// meanwhile (the client itself only notices a lost connection when it starts
    /// reconnecting, and would queue commands).
    pub fn check(&self) -> Result<(), AdapterError> {
        if !self.status.is_up(Role::Publisher) {
            Err(AdapterError::Unavailable(
                "the connection to Redis is down (reconnecting)".into(),
            ))
        } else if !self.shared.live.load(Ordering::SeqCst) {
            Err(AdapterError::Unavailable(
                "Redis is back, but the messages queued while it was down are still being published".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Publishes without waiting, in order. While Redis is away the message waits in the
    /// offline queue (or is dropped when that is disabled or full, counted and logged).
    pub fn publish(&self, channel: String, body: impl Into<Bytes>) {
        self.send(channel, Body::Message(body.into()));
    }

    /// Appends an entry to stream `key` without waiting, in order with the messages published,
    /// kept through an outage as they are.
    pub fn append(&self, key: String, fields: Vec<(&'static str, Bytes)>, max_len: u64) {
        self.send(key, Body::Entry { fields, max_len });
    }

    fn send(&self, channel: String, body: Body) {
        let item = Outgoing {
            channel,
            body,
            done: None,
        };
        if let Err(e) = self.outbox.try_send(item) {
            let channel = match &e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => {
                    o.channel.clone()
                }
            };
            if let Ok(mut stats) = self.shared.stats.lock() {
                stats.dropped += 1;
            }
            self.overflow
                .log(|| format!("publish queue full or closed, dropped a message for {channel}"));
        }
    }

    /// Publishes in order with the queued messages and waits until Redis accepted it. Fails at
    /// once (never queued) while Redis is away.
    pub async fn publish_confirmed(
        &self,
        channel: String,
        body: impl Into<Bytes>,
    ) -> Result<(), AdapterError> {
        self.send_confirmed(channel, Body::Message(body.into()))
            .await
            .map(|_| ())
    }

    /// Appends an entry to stream `key` now, in order with the messages published; the future
    /// resolves once Redis took it: its id. Fails at once (never queued) while Redis is away.
    pub fn append_confirmed(
        &self,
        key: String,
        fields: Vec<(&'static str, Bytes)>,
        max_len: u64,
    ) -> impl Future<Output = Result<String, AdapterError>> + Send + 'static {
        let sent = self.start_confirmed(key, Body::Entry { fields, max_len });
        async move { Self::confirmed(sent?).await }
    }

    async fn send_confirmed(&self, channel: String, body: Body) -> Result<String, AdapterError> {
        Self::confirmed(self.start_confirmed(channel, body)?).await
    }

    /// Hands `body` to the publisher task now; the receiver hears how it went.
    fn start_confirmed(
        &self,
        channel: String,
        body: Body,
    ) -> Result<oneshot::Receiver<Result<String, String>>, AdapterError> {
        self.check()?;
        let (tx, rx) = oneshot::channel();
        let item = Outgoing {
            channel,
            body,
            done: Some(tx),
        };
        self.outbox
            .try_send(item)
            .map_err(|_| AdapterError::Unavailable("publish queue full or closed".into()))?;
        Ok(rx)
    }

    async fn confirmed(
        rx: oneshot::Receiver<Result<String, String>>,
    ) -> Result<String, AdapterError> {
        match rx.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(AdapterError::Unavailable(e)),
            Err(_) => Err(AdapterError::Unavailable("adapter closed".into())),
        }
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`), i.e. servers in the namespace.
    pub async fn numsub(&self, channel: &str) -> Result<usize, AdapterError> {
        self.check()?;
        let n = numsub_all(&self.client, &self.options(), channel, self.flavor.shard())
            .await
            .map_err(unavailable)?;
        if let Ok(mut seen) = self.shared.observed.lock() {
            let now = Instant::now();
            while seen
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > BASELINE_WINDOW)
            {
                seen.pop_front();
            }
            seen.push_back((
                now,
                Baseline {
                    numsub: HashMap::from([(channel.to_owned(), n)]),
                    patterns: None,
                },
            ));
        }
        Ok(n)
    }

    /// After an outage, the queue waits until `channel` has as many subscribers as before.
    pub fn watch_channel(&self, channel: &str) {
        if let Ok(mut w) = self.shared.watched.lock() {
            *w.entry(channel.to_owned()).or_default() += 1;
        }
    }

    /// Undoes one [`Link::watch_channel`].
    pub fn unwatch_channel(&self, channel: &str) {
        if let Ok(mut w) = self.shared.watched.lock() {
            if let Some(n) = w.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    w.remove(channel);
                }
            }
        }
    }

    /// The offline queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
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

/// `CLIENT LIST TYPE pubsub`: the subscriptions of all pub/sub clients counted in `field`
/// (`psub=` for patterns, `ssub=` for shard channels).
fn subscription_count(list: &str, field: &str) -> usize {
    list.lines()
        .flat_map(|line| line.split(' '))
        .filter_map(|f| f.strip_prefix(field))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .sum()
}

/// A Redis error as an [`AdapterError`].
pub fn unavailable(e: fred::error::Error) -> AdapterError {
    AdapterError::Unavailable(e.to_string())
}

/// Fail at once while disconnected, give up after `timeout`, and never write the command a
/// second time: a command written to a connection that is then dropped may still reach Redis
/// (what was sent before the close is read once the server wakes up), so a retry on the next
/// connection could run it twice.
pub(super) fn command_options(timeout: Duration) -> Options {
    Options {
        fail_fast: true,
        timeout: Some(timeout),
        max_attempts: Some(1),
        ..Options::default()
    }
}

/// A `PUBLISH` has no deadline of its own: on a connection that stalls (a frozen server) it
/// completes when the server wakes up, in order, and fails only when the connection is lost.
fn publish_options() -> Options {
    Options {
        fail_fast: true,
        timeout: None,
        max_attempts: Some(1),
        ..Options::default()
    }
}

/// One message on its way to Redis, numbered in the order it was published.
struct Queued {
    seq: u64,
    at: Instant,
    attempts: u8,
    /// Held back by an outage (published late, or dropped when too old).
    late: bool,
    item: Outgoing,
}

impl Queued {
    fn size(&self) -> usize {
        self.item.channel.len() + self.item.body.len() + QUEUED_OVERHEAD
    }
}

type InFlight = Pin<Box<dyn Future<Output = (Queued, Result<String, fred::error::Error>)> + Send>>;

/// What the publisher task is doing.
enum Mode {
    /// Publishing as messages come.
    Sending,
    /// The connection is down or failed a publish: messages wait until it is up (checked at
    /// the earliest at the instant given).
    Holding(Instant),
    /// The connection is back; waiting for the other servers to subscribe again.
    Waiting(Pin<Box<dyn Future<Output = bool> + Send>>),
}

/// Subscriber counts while all was well: the level to wait for after an outage.
#[derive(Default, Clone)]
struct Baseline {
    numsub: HashMap<String, usize>,
    patterns: Option<usize>,
}

/// Counts of one outage, for its log line.
struct Outage {
    since: Instant,
    queued: u64,
    dropped: u64,
    drop_logged: bool,
}

struct Publisher {
    client: Client,
    flavor: Flavor,
    status: Arc<StatusTracker>,
    shared: Arc<Shared>,
    /// Options of the commands that check who listens.
    probe: Options,
    queue: OfflineQueue,
    backlog: VecDeque<Queued>,
    backlog_bytes: usize,
    next_seq: u64,
    outage: Option<Outage>,
    /// Counts seen while all was well, newest last, over [`BASELINE_WINDOW`].
    samples: VecDeque<(Instant, Baseline)>,
    errors: Throttle,
}

impl Publisher {
    fn new(
        client: Client,
        status: Arc<StatusTracker>,
        requests_timeout: Duration,
        queue: OfflineQueue,
    ) -> Publisher {
        let shared = Arc::new(Shared::default());
        shared.live.store(true, Ordering::SeqCst);
        Publisher {
            client,
            flavor: Flavor::Patterns,
            status,
            shared,
            probe: command_options(requests_timeout),
            queue,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            next_seq: 0,
            outage: None,
            samples: VecDeque::new(),
            errors: Throttle::default(),
        }
    }

    fn seen(&mut self, counts: Baseline) {
        let now = Instant::now();
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > BASELINE_WINDOW)
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now, counts));
    }

    /// The highest counts seen lately: what to wait for after an outage.
    fn baseline(&self) -> Baseline {
        let now = Instant::now();
        let observed = self
            .shared
            .observed
            .lock()
            .map(|o| o.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let mut b = Baseline::default();
        let recent = self.samples.iter().chain(observed.iter());
        for (_, s) in recent.filter(|(at, _)| now.duration_since(*at) <= BASELINE_WINDOW) {
            for (ch, n) in &s.numsub {
                let e = b.numsub.entry(ch.clone()).or_default();
                *e = (*e).max(*n);
            }
            if let Some(p) = s.patterns {
                b.patterns = Some(b.patterns.unwrap_or(0).max(p));
            }
        }
        // Every server on a watched channel also holds a pattern (classic) or at least that
        // shard subscription (sharded) of its namespace: a server counted on the channel but
        // not yet in a pattern sample is waited for all the same.
        let servers: usize = b.numsub.values().sum();
        if servers > 0 || b.patterns.is_some() {
            b.patterns = Some(b.patterns.unwrap_or(0).max(servers));
        }
        b
    }

    /// Drains `rx` in order until every [`Link`] is gone. Each PUBLISH is polled once as soon
    /// as it is sent, which hands it to the client's command queue in order; its reply is
    /// awaited alongside the next ones.
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>) {
        let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
        let mut changes = self.status.changes();
        let mut mode = Mode::Sending;
        let mut tick = tokio::time::interval(HOLD_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sample = tokio::time::interval(BASELINE_EVERY);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sampling: Option<Pin<Box<dyn Future<Output = Option<Baseline>> + Send>>> = None;
        let mut open = true;
        let mut watching = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                Some((q, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    if self.finished(q, result) && matches!(mode, Mode::Sending) {
                        mode = self.hold(Instant::now() + RETRY_DELAY);
                    }
                }
                item = rx.recv(), if open => match item {
                    Some(item) => self.accept(item, &mode),
                    None => open = false,
                },
                changed = changes.changed(), if watching => {
                    // The tracker outlives this task; should it not, the tick does the work.
                    watching = changed.is_ok();
                    mode = self.step(mode);
                }
                _ = tick.tick(), if !matches!(mode, Mode::Sending) => mode = self.step(mode),
                heard = async {
                    match &mut mode {
                        Mode::Waiting(wait) => wait.await,
                        _ => std::future::pending().await,
                    }
                } => {
                    if !heard {
                        log(&format!(
                            "publishing the offline queue although not every server has subscribed again within {} ms",
                            self.queue.flush_wait.as_millis()
                        ));
                    }
                    mode = Mode::Sending;
                }
                _ = sample.tick(), if sampling.is_none() && matches!(mode, Mode::Sending) => {
                    sampling = Some(Box::pin(listeners(self.client.clone(), self.probe.clone(), self.watched(), self.flavor)));
                }
                seen = async {
                    match &mut sampling {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    sampling = None;
                    // Only a level seen while all was well counts.
                    if let (Some(seen), Mode::Sending) = (seen, &mode) {
                        if self.status.is_up(Role::Publisher) && self.status.is_up(Role::Subscriber) {
                            self.seen(seen);
                        }
                    }
                }
            }
            if matches!(mode, Mode::Sending) {
                if !self.status.is_up(Role::Publisher) {
                    mode = self.hold(Instant::now());
                } else {
                    self.pump(&mut in_flight).await;
                    if self.backlog.is_empty() {
                        self.back_to_live();
                    }
                }
            }
        }
        self.drop_all("the adapter closed");
    }

    /// Request channels to count subscribers of.
    fn watched(&self) -> Vec<String> {
        self.shared
            .watched
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes one message from the outbox: into the queue, or refused when it is a request
    /// (which must not wait) and Redis is away.
    fn accept(&mut self, item: Outgoing, mode: &Mode) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let away = !matches!(mode, Mode::Sending) || !self.status.is_up(Role::Publisher);
        let q = Queued {
            seq,
            at: Instant::now(),
            attempts: 0,
            late: away,
            item,
        };
        if away {
            if let Some(done) = q.item.done {
                let _ = done.send(Err("the connection to Redis is down (reconnecting)".into()));
                return;
            }
            if !self.queue.enabled() {
                self.count_dropped(1);
                self.errors.log(|| {
                    format!(
                        "Redis is down and the offline queue is disabled; dropped a message for {}",
                        q.item.channel
                    )
                });
                return;
            }
            if let Some(o) = &mut self.outage {
                o.queued += 1;
            }
        }
        self.enqueue(q);
    }

    /// Puts `q` in the queue in publishing order, dropping the oldest beyond the byte limit.
    fn enqueue(&mut self, q: Queued) {
        self.backlog_bytes += q.size();
        let at = self.backlog.partition_point(|x| x.seq < q.seq);
        self.backlog.insert(at, q);
        let limit = if self.queue.enabled() {
            self.queue.max_bytes
        } else {
            DISABLED_QUEUE_BYTES
        };
        let mut dropped = 0;
        while self.backlog_bytes > limit && self.backlog.len() > 1 {
            let Some(old) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= old.size();
            dropped += 1;
        }
        if dropped > 0 {
            self.count_dropped(dropped);
            let limit = self.queue.max_bytes;
            if let Some(o) = &mut self.outage {
                if !o.drop_logged {
                    o.drop_logged = true;
                    log(&format!(
                        "offline queue full ({limit} bytes): dropping the oldest messages until Redis is back"
                    ));
                }
            }
        }
        self.publish_stats();
    }

    /// A publish finished. Returns whether it failed and goes back into the queue (to be tried
    /// again after the reconnection) rather than being answered or given up.
    fn finished(&mut self, mut q: Queued, result: Result<String, fred::error::Error>) -> bool {
        let e = match result {
            Ok(id) => {
                if let Some(done) = q.item.done.take() {
                    let _ = done.send(Ok(id));
                }
                return false;
            }
            Err(e) => e,
        };
        if let Some(done) = q.item.done.take() {
            let _ = done.send(Err(e.to_string()));
            return false;
        }
        q.attempts += 1;
        q.late = true;
        if !self.queue.enabled() || q.attempts >= MAX_ATTEMPTS {
            self.count_dropped(1);
            let channel = q.item.channel.clone();
            self.errors
                .log(|| format!("publish to {channel} failed, message dropped: {e}"));
            return false;
        }
        self.start_outage();
        if let Some(o) = &mut self.outage {
            o.queued += 1;
        }
        self.enqueue(q);
        true
    }

    /// Stops publishing until the connection is up again.
    fn hold(&mut self, not_before: Instant) -> Mode {
        self.start_outage();
        Mode::Holding(not_before)
    }

    fn start_outage(&mut self) {
        self.shared.live.store(false, Ordering::SeqCst);
        if self.outage.is_none() {
            self.outage = Some(Outage {
                since: Instant::now(),
                queued: 0,
                dropped: 0,
                drop_logged: false,
            });
            if let Ok(mut s) = self.shared.stats.lock() {
                s.outages += 1;
            }
        }
    }

    /// Moves on from `mode` as the connection's state allows.
    fn step(&mut self, mode: Mode) -> Mode {
        let connected =
            self.status.is_up(Role::Publisher) && self.client.state() == ClientState::Connected;
        match mode {
            Mode::Sending if !self.status.is_up(Role::Publisher) => self.hold(Instant::now()),
            Mode::Holding(not_before) if connected && Instant::now() >= not_before => {
                if !self.queue.enabled() {
                    return Mode::Sending;
                }
                // Even with nothing queued yet: what is published before the others listen
                // again would be lost, so it waits too.
                Mode::Waiting(Box::pin(heard_again(
                    self.client.clone(),
                    self.flavor,
                    self.probe.clone(),
                    self.status.clone(),
                    self.baseline(),
                    self.queue.flush_wait,
                )))
            }
            Mode::Waiting(_) if !connected => self.hold(Instant::now()),
            other => other,
        }
    }

    /// Publishes from the front of the queue while the in-flight limit allows.
    async fn pump(&mut self, in_flight: &mut FuturesUnordered<InFlight>) {
        let now = Instant::now();
        let mut expired = 0;
        while in_flight.len() < MAX_IN_FLIGHT {
            let Some(q) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= q.size();
            if q.late {
                if now.duration_since(q.at) > self.queue.max_age {
                    expired += 1;
                    continue;
                }
                if let Ok(mut s) = self.shared.stats.lock() {
                    s.delivered += 1;
                }
            }
            let mut fut = publish_one(self.client.clone(), q, self.flavor);
            let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            match polled {
                Poll::Pending => in_flight.push(fut),
                // Refused at once (the client is not connected): keep it, stop sending.
                Poll::Ready((q, result)) => {
                    if self.finished(q, result) {
                        break;
                    }
                }
            }
        }
        if expired > 0 {
            self.count_dropped(expired);
            let age = self.queue.max_age.as_millis();
            log(&format!(
                "dropped {expired} queued messages older than {age} ms"
            ));
        }
        self.publish_stats();
    }

    /// Everything queued went out: publish straight through again, and log the outage.
    fn back_to_live(&mut self) {
        self.shared.live.store(true, Ordering::SeqCst);
        if let Some(o) = self.outage.take() {
            if o.queued > 0 || o.dropped > 0 {
                log(&format!(
                    "Redis outage over after {} ms: {} messages published late, {} dropped",
                    o.since.elapsed().as_millis(),
                    o.queued.saturating_sub(o.dropped),
                    o.dropped
                ));
            }
        }
    }

    fn count_dropped(&mut self, n: u64) {
        if let Some(o) = &mut self.outage {
            o.dropped += n;
        }
        if let Ok(mut s) = self.shared.stats.lock() {
            s.dropped += n;
        }
    }

    fn publish_stats(&self) {
        if let Ok(mut s) = self.shared.stats.lock() {
            s.queued = self.backlog.len();
            s.queued_bytes = self.backlog_bytes;
        }
    }

    fn drop_all(&mut self, why: &str) {
        let n = self.backlog.len() as u64;
        for q in self.backlog.drain(..) {
            if let Some(done) = q.item.done {
                let _ = done.send(Err(why.to_owned()));
            }
        }
        self.backlog_bytes = 0;
        if n > 0 {
            self.count_dropped(n);
            log(&format!("{why}: {n} queued messages dropped"));
        }
        self.publish_stats();
    }
}

fn publish_one(client: Client, q: Queued, flavor: Flavor) -> InFlight {
    use fred::interfaces::StreamsInterface;
    Box::pin(async move {
        let c = client.with_options(&publish_options());
        let channel = q.item.channel.as_str();
        let result: Result<String, _> = match &q.item.body {
            Body::Message(body) if flavor.shard() => {
                // A shard channel lives in one slot, as a stream key does (see below).
                let c = client.with_options(&Options {
                    max_attempts: Some(ENTRY_ATTEMPTS),
                    ..publish_options()
                });
                c.spublish::<i64, _, _>(channel, body.clone())
                    .await
                    .map(|_| String::new())
            }
            Body::Message(body) => c
                .publish::<i64, _, _>(channel, body.clone())
                .await
                .map(|_| String::new()),
            Body::Entry { fields, max_len } => {
                // A stream key lives in one slot: on a Redis Cluster whose slots move, the
                // client must follow MOVED/ASK, and each redirection costs it a write attempt.
                // (A message is not carried out when redirected; one written to a connection
                // that then dropped may be, as with the retries of this queue.)
                let c = client.with_options(&Options {
                    max_attempts: Some(ENTRY_ATTEMPTS),
                    ..publish_options()
                });
                let cap = ("MAXLEN", "~", i64::try_from(*max_len).unwrap_or(i64::MAX));
                c.xadd(channel, false, cap, "*", fields.clone()).await
            }
        };
        (q, result)
    })
}

/// The option sets that reach every server a pub/sub count must be asked of: each primary of a
/// Redis Cluster (where counts are per node), or the one server.
fn count_targets(client: &Client, options: &Options) -> Vec<Options> {
    let primaries = if client.is_clustered() {
        client
            .cached_cluster_state()
            .map(|s| s.unique_primary_nodes())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    if primaries.is_empty() {
        return vec![options.clone()];
    }
    primaries
        .into_iter()
        .map(|server| Options {
            cluster_node: Some(server),
            ..options.clone()
        })
        .collect()
}

/// `PUBSUB NUMSUB channel` (`SHARDNUMSUB` for a shard channel), added up over every server
/// that holds subscriptions.
async fn numsub_all(
    client: &Client,
    options: &Options,
    channel: &str,
    sharded: bool,
) -> Result<usize, fred::error::Error> {
    let mut total = 0;
    for o in count_targets(client, options) {
        let c = client.with_options(&o);
        let reply: fred::types::Value = if sharded {
            c.pubsub_shardnumsub(channel).await?
        } else {
            c.pubsub_numsub(channel).await?
        };
        total += numsub_count(&reply);
    }
    Ok(total)
}

/// Who listens now: subscribers of each of `channels`, and all the subscriptions of the kind
/// every server holds (patterns, shard channels or channels, as `flavor` says).
async fn listeners(
    client: Client,
    options: Options,
    channels: Vec<String>,
    flavor: Flavor,
) -> Option<Baseline> {
    let mut numsub = HashMap::new();
    for channel in channels {
        let n = numsub_all(&client, &options, &channel, flavor.shard())
            .await
            .ok()?;
        numsub.insert(channel, n);
    }
    let field = flavor.subscriptions_field();
    let mut patterns = Some(0);
    for o in count_targets(&client, &options) {
        let list: Result<String, _> = client
            .with_options(&o)
            .custom(
                CustomCommand::new_static("CLIENT", ClusterHash::Random, false),
                vec!["LIST", "TYPE", "pubsub"],
            )
            .await;
        patterns = match (patterns, list) {
            (Some(n), Ok(l)) => Some(n + subscription_count(&l, field)),
            // Not allowed (an ACL): the pattern subscriptions are not waited for.
            _ => None,
        };
    }
    Some(Baseline { numsub, patterns })
}

/// Waits until our own subscriber is up and the servers listen again as before the outage
/// (`true`), or `wait` has passed (`false`).
async fn heard_again(
    client: Client,
    flavor: Flavor,
    options: Options,
    status: Arc<StatusTracker>,
    before: Baseline,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if status.is_up(Role::Subscriber) {
            let channels = before.numsub.keys().cloned().collect();
            if let Some(now) = listeners(client.clone(), options.clone(), channels, flavor).await {
                let channels_back = before
                    .numsub
                    .iter()
                    .all(|(ch, n)| now.numsub.get(ch).copied().unwrap_or(0) >= *n);
                let patterns_back = match (before.patterns, now.patterns) {
                    (Some(b), Some(n)) => n >= b,
                    _ => true,
                };
                if channels_back && patterns_back {
                    return true;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(HEARD_CHECK_EVERY).await;
    }
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
    /// Told of every change of either connection.
    changes: watch::Sender<()>,
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
            changes: watch::channel(()).0,
        })
    }

    /// Wakes on every change of either connection's state.
    pub fn changes(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Records that `role` is up or down and reports a change of the overall status.
    pub fn set(&self, role: Role, up: bool, why: impl FnOnce() -> String) {
        let change = {
            let Ok(mut s) = self.state.lock() else { return };
            if s.closed || s.up[role as usize] == up {
                return;
            }
            s.up[role as usize] = up;
            self.changes.send_replace(());
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
/// out, and is never re-established: when the deadline passes, the connection is reported
/// down, and once it has not answered for [`STALL_LIMIT`] a reconnection is forced. It is
/// reported up again here when a later `PING` is answered on the same connection (a frozen
/// server that runs again), or by [`watch`] once the client has reconnected.
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
        // Since when the connection has not answered (reported down by this check).
        let mut stalled: Option<Instant> = None;
        loop {
            tick.tick().await;
            if client.state() != ClientState::Connected {
                // Not connected: the client is (re)connecting by itself and `watch` reports it.
                stalled = None;
                continue;
            }
            drained(&mut reconnects);
            let asked = Instant::now();
            let answer: Result<fred::types::Value, _> =
                client.with_options(&options).ping(None).await;
            match answer {
                Ok(_) => {
                    if stalled.take().is_some() && client.state() == ClientState::Connected {
                        tracker.set(role, true, String::new);
                    }
                }
                // Any other failure means the connection went away or Redis answered with an
                // error (it is alive). A timeout while the client is not connected, or after
                // it reconnected meanwhile, is about a connection it already gave up by itself.
                Err(e)
                    if *e.kind() != ErrorKind::Timeout
                        || client.state() != ClientState::Connected
                        || drained(&mut reconnects) =>
                {
                    stalled = None;
                }
                Err(_) => {
                    let since = *stalled.get_or_insert(asked);
                    tracker.set(role, false, || {
                        format!(
                            "connection: no answer to PING within {} ms",
                            deadline.as_millis()
                        )
                    });
                    if since.elapsed() >= STALL_LIMIT {
                        // Resolves once reconnected; no further PING is due until then.
                        stalled = None;
                        if let Err(e) = client.force_reconnection().await {
                            failures.log(|| format!("{} reconnection failed: {e}", role.name()));
                        }
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

    fn publisher(queue: OfflineQueue) -> Publisher {
        let client = fred::types::Builder::default_centralized().build().unwrap();
        let status = StatusTracker::new(Arc::new(|_| {}), "nowhere".into());
        Publisher::new(client, status, Duration::from_secs(1), queue)
    }

    fn message(body: &str) -> Outgoing {
        Outgoing {
            channel: "ch".into(),
            body: Body::Message(Bytes::copy_from_slice(body.as_bytes())),
            done: None,
        }
    }

    fn bodies(p: &Publisher) -> Vec<String> {
        p.backlog
            .iter()
            .map(|q| match &q.item.body {
                Body::Message(b) => String::from_utf8_lossy(b).into_owned(),
                Body::Entry { .. } => String::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_offline_queue_keeps_order_and_drops_the_oldest() {
        // Room for three messages of 10 bytes (+ channel and overhead).
        let one = 10 + 2 + QUEUED_OVERHEAD;
        let mut p = publisher(OfflineQueue {
            max_bytes: 3 * one,
            ..OfflineQueue::DEFAULT
        });
        let away = Mode::Holding(Instant::now());
        p.start_outage();
        for i in 0..5 {
            p.accept(message(&format!("message-{i}!")), &away);
        }
        assert_eq!(bodies(&p), ["message-2!", "message-3!", "message-4!"]);
        assert!(p.backlog.iter().all(|q| q.late));
        let stats = p.shared.stats.lock().unwrap().to_owned();
        assert_eq!((stats.queued, stats.dropped, stats.outages), (3, 2, 1));
        assert_eq!(stats.queued_bytes, 3 * one);

        // A publish lost with its connection goes back in its place, ahead of newer ones.
        let first = p.backlog.pop_front().unwrap();
        p.backlog_bytes -= first.size();
        let lost = fred::error::Error::new(ErrorKind::IO, "connection closed");
        assert!(p.finished(first, Err(lost)));
        assert_eq!(bodies(&p), ["message-2!", "message-3!", "message-4!"]);
        assert_eq!(p.backlog[0].attempts, 1);

        // A request is refused at once while Redis is away, never queued.
        let (tx, mut rx) = oneshot::channel();
        p.accept(
            Outgoing {
                done: Some(tx),
                ..message("request")
            },
            &away,
        );
        assert!(rx.try_recv().unwrap().is_err());
        assert_eq!(p.backlog.len(), 3);
    }

    #[tokio::test]
    async fn a_disabled_queue_drops_while_away() {
        let mut p = publisher(OfflineQueue {
            max_bytes: 0,
            ..OfflineQueue::DEFAULT
        });
        p.start_outage();
        p.accept(message("gone"), &Mode::Holding(Instant::now()));
        assert!(p.backlog.is_empty());
        assert_eq!(p.shared.stats.lock().unwrap().dropped, 1);
    }

    #[test]
    fn the_baseline_is_the_highest_recent_count() {
        let mut p = publisher(OfflineQueue::DEFAULT);
        let sample = |n: usize, patterns: Option<usize>| Baseline {
            numsub: HashMap::from([("req".to_owned(), n)]),
            patterns,
        };
        p.seen(sample(1, Some(1)));
        p.seen(sample(3, Some(4)));
        p.seen(sample(2, None));
        let b = p.baseline();
        assert_eq!(b.numsub["req"], 3);
        assert_eq!(b.patterns, Some(4));
    }

    #[test]
    fn a_server_counted_between_samples_is_waited_for() {
        let p = publisher(OfflineQueue::DEFAULT);
        // No sample yet; the adapter counted two servers on the request channel.
        p.shared.observed.lock().unwrap().push_back((
            Instant::now(),
            Baseline {
                numsub: HashMap::from([("req".to_owned(), 2)]),
                patterns: None,
            },
        ));
        let b = p.baseline();
        assert_eq!(b.numsub["req"], 2);
        // Each of them holds its namespace's pattern subscription too.
        assert_eq!(b.patterns, Some(2));
        // Counts older than the window are forgotten.
        p.shared.observed.lock().unwrap()[0].0 -= BASELINE_WINDOW * 2;
        let b = p.baseline();
        assert!(b.numsub.is_empty());
        assert_eq!(b.patterns, None);
    }

    #[test]
    fn pattern_subscriptions_of_client_list() {
        let list = "id=3 addr=127.0.0.1:5 name= age=1 db=0 sub=3 psub=1 ssub=0 cmd=psubscribe\n\
                    id=4 addr=127.0.0.1:6 name= age=1 db=0 sub=3 psub=2 ssub=0 cmd=ping\n";
        assert_eq!(subscription_count(list, "psub="), 3);
        assert_eq!(subscription_count(list, "ssub="), 0);
        assert_eq!(subscription_count("", "psub="), 0);
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
