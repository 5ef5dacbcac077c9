//! The Redis adapter: `@socket.io/redis-adapter` 8.x classic wire format over `fred`, so that
//! native servers, Node socket.io 4 servers with the Redis adapter and
//! `@socket.io/redis-emitter` share one cluster.
//!
//! One factory per server process holds two connections: a publisher and a subscriber (which
//! re-subscribes by itself after a reconnection). Each namespace gets its own adapter with its
//! own uid, subscribed to `P#NSP#*` (pattern), `P-request#NSP#`, `P-response#NSP#` and
//! `P-response#NSP#UID#`. Incoming messages are routed by channel into a bounded queue per
//! namespace and served in order by one task per namespace; when a namespace cannot keep up,
//! messages are dropped with a warning instead of piling up.
//!
//! Limits: a broadcast that expects client acknowledgements (request type 7) from a Node server
//! is delivered to this server's clients without an ack id and answered with a client count of
//! 0, so the Node server completes with its own clients' acks instead of timing out.
//!
//! Both connections are checked with a `PING` every second; one that is not answered in time
//! (a stopped Redis, a network path that silently drops packets) is reported down, and
//! re-established when it stays silent for 10 s. While the publisher cannot publish, what the
//! adapter publishes waits in an offline queue (see `link`) and is published once Redis and
//! the other servers' subscriptions are back; requests fail at once with `Unavailable`.
//!
//! The factory also keeps a small presence registry (`{P#presence}#ADDRESS` keys with a TTL) so
//! that a client can be sent to the least loaded worker.

mod config;
mod link;
mod namespace;
mod sharded;
mod shared;
mod streams;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, KeysInterface, PubsubInterface};
use fred::types::config::{Config, ReconnectPolicy, ServerConfig, TlsConnector};
use fred::types::{Builder, Expiration, Message, MessageKind};
use futures_util::future::{BoxFuture, FutureExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{
    OfflineQueue, PubSubMode, RedisConfig, RedisEndpoint, RedisTls, SubscriptionMode, Topology,
    DEFAULT_KEY, DEFAULT_REQUESTS_TIMEOUT,
};
pub use link::{AdapterStatus, QueueStats, StatusCallback};
pub use namespace::RedisAdapter;

use self::link::{log, unavailable, Flavor, Link, Role, StatusTracker, Throttle};
use self::namespace::{Inbound, Namespace};
use super::local::LocalAdapter;
use super::{Adapter, AdapterError, AdapterFactory, LocalNamespace};

/// Bytes of messages queued for one namespace before further ones are dropped: Redis's own
/// default hard limit for a pub/sub client's output buffer, past which Redis would cut a slow
/// subscriber off anyway. A burst (another worker flushing what it kept through an outage) fits.
const INBOX_BYTES: usize = 32 << 20;
/// What one queued message counts for beyond its body (the queue's own bookkeeping).
const INBOX_ENTRY_COST: usize = 64;
/// Capacity of the client's own pub/sub fan-out channel (messages, not bytes).
const SUBSCRIBER_BUFFER: usize = 8192;
/// Time to live of a presence key written by [`RedisAdapterFactory::report_load`].
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How often a sharded adapter on a Redis Cluster checks whether slots moved.
const SLOT_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long [`RedisAdapterFactory::close`] waits for Redis at each step.
const CLOSE_STEP: Duration = Duration::from_secs(2);
/// How long closing waits for a `QUIT` to a Redis it has lost.
const QUIT_DOWN: Duration = Duration::from_millis(100);

/// What the factory needs of a namespace's state: to end it when the factory closes.
pub(crate) trait Closing: Send + Sync {
    /// Stops serving; requests waiting for answers fail as unavailable.
    fn close(&self);
}

/// Where incoming messages go.
#[derive(Clone)]
struct Route {
    uid: String,
    nsp: String,
    ns: Weak<dyn Closing>,
    inbox: Inbox,
    overflow: Arc<Throttle>,
}

impl Route {
    /// Queues `message` for the namespace; what does not fit is dropped and logged (`what`
    /// names it).
    fn offer(&self, message: Inbound, what: impl FnOnce() -> String) {
        if !self.inbox.offer(message) {
            self.overflow.log(|| {
                format!(
                    "namespace {} is not keeping up with the cluster; dropped {}",
                    self.nsp,
                    what()
                )
            });
        }
    }
}

/// A namespace's queue of messages from the cluster, bounded in bytes: the hub never waits for
/// a namespace (one stuck namespace must not hold up the others), and what does not fit is
/// dropped and logged.
#[derive(Clone)]
struct Inbox {
    tx: mpsc::UnboundedSender<(Inbound, usize)>,
    queued: Arc<AtomicUsize>,
}

impl Inbox {
    fn new() -> (Inbox, InboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Inbox {
                tx,
                queued: queued.clone(),
            },
            InboxReceiver { rx, queued },
        )
    }

    /// Queues `message` unless the queue is full; false when it was dropped.
    fn offer(&self, message: Inbound) -> bool {
        let cost = message.len() + INBOX_ENTRY_COST;
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + cost <= INBOX_BYTES).then_some(q + cost)
            })
            .is_ok();
        if !fits {
            return false;
        }
        if self.tx.send((message, cost)).is_err() {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
        }
        true
    }
}

struct InboxReceiver {
    rx: mpsc::UnboundedReceiver<(Inbound, usize)>,
    queued: Arc<AtomicUsize>,
}

impl InboxReceiver {
    async fn recv(&mut self) -> Option<Inbound> {
        let (message, cost) = self.rx.recv().await?;
        self.queued.fetch_sub(cost, Ordering::AcqRel);
        Some(message)
    }
}

/// How a message on a channel is served.
#[derive(Clone, Copy)]
pub(crate) enum ChannelKind {
    /// A classic broadcast envelope.
    Broadcast,
    /// A request (or, in sharded mode, any message of the namespace's channels).
    Request,
    /// A response to this server's request.
    Response,
}

impl ChannelKind {
    fn inbound(self, body: bytes::Bytes) -> Inbound {
        match self {
            ChannelKind::Broadcast => Inbound::Broadcast(body),
            ChannelKind::Request => Inbound::Request(body),
            ChannelKind::Response => Inbound::Response(body),
        }
    }
}

/// The channels one namespace listens on, and how each is served.
pub(crate) struct Listening {
    /// Channels heard exactly.
    pub exact: Vec<(String, ChannelKind)>,
    /// A prefix: what arrives on a channel starting with it (a classic pattern's matches, or a
    /// sharded room channel) is served as the kind given.
    pub prefix: (String, ChannelKind),
    /// `PSUBSCRIBE` patterns.
    pub patterns: Vec<String>,
    /// `SUBSCRIBE` channels.
    pub channels: Vec<String>,
    /// `SSUBSCRIBE` shard channels.
    pub shard_channels: Vec<String>,
}

#[derive(Default)]
struct Routes {
    /// Channels heard exactly.
    exact: HashMap<String, (Route, ChannelKind)>,
    /// Channel prefixes, longest first.
    prefixes: Vec<(String, Route, ChannelKind)>,
}

/// The subscribing side: subscriptions and the routing of what arrives.
struct Hub {
    subscriber: SubscriberClient,
    routes: RwLock<Routes>,
    closed: AtomicBool,
    lagged: Throttle,
    /// Shard channels of rooms to subscribe (true) or leave (false), latest wish per channel.
    rooms: Mutex<HashMap<String, bool>>,
    rooms_changed: tokio::sync::Notify,
}

impl Hub {
    fn dispatch(&self, message: Message) {
        let Some(body) = message.value.into_bytes() else {
            return;
        };
        let Ok(routes) = self.routes.read() else {
            return;
        };
        let channel: &str = &message.channel;
        let exact = match message.kind {
            MessageKind::PMessage => None,
            _ => routes.exact.get(channel),
        };
        let (route, kind) = match exact {
            Some((route, kind)) => (route, *kind),
            None if matches!(message.kind, MessageKind::Message) => return,
            None => {
                let Some((_, route, kind)) = routes
                    .prefixes
                    .iter()
                    .find(|(p, _, _)| channel.starts_with(p.as_str()))
                else {
                    return;
                };
                (route, *kind)
            }
        };
        route.offer(kind.inbound(body), || format!("a message from {channel}"));
    }

    /// Hands `message` to the namespace whose exact channel is `channel` (if any).
    fn deliver(&self, channel: &str, message: Inbound) {
        let Ok(routes) = self.routes.read() else {
            return;
        };
        if let Some((route, _)) = routes.exact.get(channel) {
            route.offer(message, || "a stream entry".to_owned());
        }
    }

    fn register(
        &self,
        uid: &str,
        nsp: &str,
        ns: Weak<dyn Closing>,
        listening: &Listening,
        inbox: Inbox,
    ) {
        let route = Route {
            uid: uid.to_owned(),
            nsp: nsp.to_owned(),
            ns,
            inbox,
            overflow: Arc::new(Throttle::default()),
        };
        let Ok(mut routes) = self.routes.write() else {
            return;
        };
        // A second adapter for the same namespace replaces the first one.
        routes.exact.retain(|_, (r, _)| r.nsp != nsp);
        routes.prefixes.retain(|(_, r, _)| r.nsp != nsp);
        for (channel, kind) in &listening.exact {
            routes.exact.insert(channel.clone(), (route.clone(), *kind));
        }
        let (prefix, kind) = &listening.prefix;
        routes.prefixes.push((prefix.clone(), route, *kind));
        routes
            .prefixes
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
    }

    /// Removes the routes of adapter `uid`; true when they were still the namespace's current
    /// ones (`probe` is one of its exact channels).
    fn unregister(&self, uid: &str, probe: &str) -> bool {
        let Ok(mut routes) = self.routes.write() else {
            return false;
        };
        let current = routes.exact.get(probe).is_some_and(|(r, _)| r.uid == uid);
        routes.exact.retain(|_, (r, _)| r.uid != uid);
        routes.prefixes.retain(|(_, r, _)| r.uid != uid);
        current
    }

    /// Subscribes `listening`, retrying until it works or `gone()` says the namespace closed.
    async fn subscribe(
        self: Arc<Self>,
        name: String,
        listening: Arc<Listening>,
        gone: impl Fn() -> bool + Send,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            if gone() || self.closed.load(Ordering::Acquire) {
                return;
            }
            let result = async {
                if !listening.patterns.is_empty() {
                    self.subscriber
                        .psubscribe(listening.patterns.clone())
                        .await?;
                }
                if !listening.channels.is_empty() {
                    self.subscriber
                        .subscribe(listening.channels.clone())
                        .await?;
                }
                for channel in &listening.shard_channels {
                    // One at a time: shard channels of different slots may live on different
                    // nodes of a Redis Cluster.
                    self.subscriber.ssubscribe(channel.clone()).await?;
                }
                Ok::<(), fred::error::Error>(())
            }
            .await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    log(&format!(
                        "subscribing namespace {name} failed ({e}); retrying"
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Leaves the channels of adapter `uid` (all of them, or only `own` — its private response
    /// channels — when another adapter of the same namespace took over).
    async fn unsubscribe(
        self: Arc<Self>,
        uid: String,
        listening: Arc<Listening>,
        own: Vec<String>,
    ) {
        let probe = listening
            .exact
            .first()
            .map(|(c, _)| c.clone())
            .unwrap_or_default();
        let current = self.unregister(&uid, &probe);
        // Closed, or Redis is away (its subscriptions go with the connection).
        if self.closed.load(Ordering::Acquire) || !self.subscriber.is_connected() {
            return;
        }
        let result = tokio::time::timeout(CLOSE_STEP, async {
            let (channels, shard): (Vec<String>, Vec<String>) = if current {
                (listening.channels.clone(), listening.shard_channels.clone())
            } else if listening.shard_channels.is_empty() {
                (own, Vec::new())
            } else {
                (Vec::new(), own)
            };
            if current && !listening.patterns.is_empty() {
                self.subscriber
                    .punsubscribe(listening.patterns.clone())
                    .await?;
            }
            if !channels.is_empty() {
                self.subscriber.unsubscribe(channels).await?;
            }
            for channel in shard {
                self.subscriber.sunsubscribe(channel).await?;
            }
            Ok::<(), fred::error::Error>(())
        })
        .await;
        if let Ok(Err(e)) = result {
            log(&format!("unsubscribing failed: {e}"));
        }
    }

    /// Asks for shard channel `channel` to be subscribed (`on`) or left, in the background and
    /// in order: only the latest wish for a channel is carried out.
    pub(crate) fn want_room(&self, channel: String, on: bool) {
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.insert(channel, on);
        }
        self.rooms_changed.notify_one();
    }

    /// Carries out [`Hub::want_room`]'s wishes until the hub is gone (a permit stored by
    /// `notify_one` wakes it for wishes made while it was busy).
    async fn run_rooms(hub: Weak<Hub>) {
        loop {
            let Some(h) = hub.upgrade() else { return };
            let wishes: Vec<(String, bool)> = match h.rooms.lock() {
                Ok(mut rooms) => rooms.drain().collect(),
                Err(_) => return,
            };
            if wishes.is_empty() {
                // The factory ends this task when it closes.
                h.rooms_changed.notified().await;
                continue;
            }
            for (channel, on) in wishes {
                if h.closed.load(Ordering::Acquire) {
                    return;
                }
                let result = if on {
                    h.subscriber.ssubscribe(channel.clone()).await
                } else {
                    h.subscriber.sunsubscribe(channel.clone()).await
                };
                if let Err(e) = result {
                    let what = if on { "subscribing" } else { "leaving" };
                    h.lagged
                        .log(|| format!("{what} room channel {channel} failed: {e}"));
                }
            }
        }
    }
}

#[derive(Default)]
struct Presence {
    keys: HashSet<String>,
    task: Option<JoinHandle<()>>,
}

/// Makes the Redis adapter of each namespace of one server; also the cluster's presence
/// registry. Create it with [`RedisAdapterFactory::connect`], end it with
/// [`RedisAdapterFactory::close`].
pub struct RedisAdapterFactory {
    config: RedisConfig,
    link: Arc<Link>,
    hub: Arc<Hub>,
    publisher: Client,
    status: Arc<StatusTracker>,
    presence: Mutex<Presence>,
    /// Failed presence writes (every period while Redis is unreachable).
    presence_errors: Arc<Throttle>,
    /// The stream's reader (streams mode).
    reader: Option<Arc<streams::Reader>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

fn fred_config(topology: &Topology, e: &RedisEndpoint) -> Result<Config, String> {
    let tls = match &e.tls {
        None => None,
        Some(t) => Some(tls_connector(t)?.into()),
    };
    let server_name = e.tls.as_ref().and_then(|t| t.servername.clone());
    let node = |host: &str, port: u16| {
        let mut server = fred::types::config::Server::new(host, port);
        server.tls_server_name = server_name.clone().map(Into::into);
        server
    };
    let nodes = |list: &[(String, u16)]| list.iter().map(|(h, p)| node(h, *p)).collect();
    let server = match topology {
        Topology::Single => ServerConfig::Centralized {
            server: node(&e.host, e.port),
        },
        Topology::Cluster(seeds) => ServerConfig::Clustered {
            hosts: nodes(seeds),
            policy: Default::default(),
        },
        Topology::Sentinel {
            name,
            nodes: sentinels,
            username,
            password,
        } => ServerConfig::Sentinel {
            hosts: nodes(sentinels),
            service_name: name.clone(),
            username: username.clone(),
            password: password.clone(),
        },
    };
    Ok(Config {
        server,
        username: e.username.clone(),
        password: e.password.clone(),
        database: e.db,
        fail_fast: true,
        tls,
        ..Config::default()
    })
}

/// rustls with the given CA certificates, or with the system's trusted roots when none are given.
fn tls_connector(t: &RedisTls) -> Result<TlsConnector, String> {
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::pki_types::CertificateDer;
    if t.ca.is_empty() {
        return TlsConnector::default_rustls()
            .map_err(|e| format!("TLS: cannot load the system's trusted certificates: {e}"));
    }
    let mut roots = fred::rustls::RootCertStore::empty();
    for pem in &t.ca {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("TLS: unreadable certificate in ca: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("TLS: unusable certificate in ca: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("TLS: ca holds no PEM certificate".to_owned());
    }
    Ok(fred::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
        .into())
}

fn builder(
    topology: &Topology,
    e: &RedisEndpoint,
    requests_timeout: Duration,
) -> Result<Builder, String> {
    let mut b = Builder::from_config(fred_config(topology, e)?);
    // At most 2 s between attempts, so that every server is back soon after Redis is, and the
    // offline queues (which wait for the others to subscribe again) are published soon.
    b.set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2));
    b.with_connection_config(|c| {
        c.connection_timeout = requests_timeout.max(Duration::from_secs(1));
        c.internal_command_timeout = requests_timeout.max(Duration::from_secs(1));
        c.tcp.nodelay = Some(true);
        // No `unresponsive` check: it measures the time since the last write, which publishes
        // keep resetting, and never applies to the subscriber; `link::keep_alive` does this.
    });
    Ok(b)
}

/// How soon a worker's new connection count reaches the presence registry.
const PRESENCE_PROMPT: Duration = Duration::from_millis(250);

impl RedisAdapterFactory {
    /// Connects the publisher and the subscriber. Fails (naming the server) when either cannot
    /// connect now; once connected, both reconnect forever with backoff, and `status` hears of
    /// every change (also logged to stderr).
    pub async fn connect(
        cfg: RedisConfig,
        status: StatusCallback,
    ) -> Result<Arc<RedisAdapterFactory>, String> {
        let runtime = Handle::current();
        let list = |nodes: &[(String, u16)]| {
            nodes
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let server = match &cfg.topology {
            Topology::Cluster(seeds) => format!("the Redis Cluster of {}", list(seeds)),
            Topology::Sentinel { name, nodes, .. } => {
                format!("master {name:?} of the sentinels {}", list(nodes))
            }
            Topology::Single if cfg.publisher == cfg.subscriber => cfg.publisher.to_string(),
            Topology::Single => format!(
                "{} (publisher) / {} (subscriber)",
                cfg.publisher, cfg.subscriber
            ),
        };
        // What a failure to connect says, naming the configuration key to look at.
        let cannot = |role: &str, endpoint: &RedisEndpoint, e: fred::error::Error| {
            match &cfg
            .topology
        {
            Topology::Single => format!("cannot connect to Redis at {endpoint} ({role}): {e}"),
            Topology::Cluster(_) => format!(
                "cluster.redis.cluster: cannot join {server} ({role}); is each seed a node of a Redis Cluster (cluster-enabled yes) and reachable? {e}"
            ),
            Topology::Sentinel { .. } => format!(
                "cluster.redis.sentinel.name: cannot reach {server} ({role}); do the sentinels (cluster.redis.sentinel.nodes) know a master of that name, and do they take cluster.redis.sentinel.password (and the master cluster.redis.password)? {e}"
            ),
        }
        };
        let tracker = StatusTracker::new(status, server.clone());

        let publisher = builder(&cfg.topology, &cfg.publisher, cfg.requests_timeout)
            .and_then(|b| b.build().map_err(|e| e.to_string()))
            .map_err(|e| format!("Redis publisher for {}: {e}", cfg.publisher))?;
        let mut sub_builder = builder(&cfg.topology, &cfg.subscriber, cfg.requests_timeout)
            .map_err(|e| format!("Redis subscriber for {}: {e}", cfg.subscriber))?;
        sub_builder.with_performance_config(|p| p.broadcast_channel_capacity = SUBSCRIBER_BUFFER);
        let subscriber = sub_builder
            .build_subscriber_client()
            .map_err(|e| format!("Redis subscriber for {}: {e}", cfg.subscriber))?;

        // Listen before connecting, so that the first connection is seen.
        let mut tasks = vec![
            link::watch(
                publisher.clone(),
                Role::Publisher,
                tracker.clone(),
                &runtime,
            ),
            link::watch(
                subscriber.clone(),
                Role::Subscriber,
                tracker.clone(),
                &runtime,
            ),
        ];
        let messages = subscriber.message_rx();

        let connected = async {
            publisher
                .init()
                .await
                .map_err(|e| cannot("publisher", &cfg.publisher, e))?;
            subscriber
                .init()
                .await
                .map_err(|e| cannot("subscriber", &cfg.subscriber, e))?;
            if cfg.mode.is_sharded() {
                // Sharded pub/sub came with Redis 7.0; older servers do not know the command.
                let probe: Result<fred::types::Value, _> = publisher
                    .with_options(&link::command_options(cfg.requests_timeout))
                    .pubsub_shardnumsub(format!("{}#/#", cfg.key))
                    .await;
                if let Err(e) = probe {
                    return Err(format!(
                        r#"cluster.adapter: "sharded" needs Redis 7.0 or newer (sharded pub/sub), but {server} refused PUBSUB SHARDNUMSUB: {e}"#
                    ));
                }
            }
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = connected {
            for t in &tasks {
                t.abort();
            }
            let _ = publisher.quit().await;
            let _ = subscriber.quit().await;
            return Err(e);
        }
        // Both are up now, whatever the watchers have seen yet.
        tracker.set(Role::Publisher, true, String::new);
        tracker.set(Role::Subscriber, true, String::new);
        tasks.push(runtime.spawn(keep_subscribed(
            subscriber.clone(),
            publisher.clone(),
            matches!(cfg.topology, Topology::Cluster(_)) && cfg.mode.is_sharded(),
        )));
        let deadline = link::ping_deadline(cfg.requests_timeout);
        tasks.push(link::keep_alive(
            publisher.clone(),
            Role::Publisher,
            tracker.clone(),
            &runtime,
            deadline,
        ));
        tasks.push(link::keep_alive(
            subscriber.clone(),
            Role::Subscriber,
            tracker.clone(),
            &runtime,
            deadline,
        ));

        let hub = Arc::new(Hub {
            subscriber,
            routes: RwLock::new(Routes::default()),
            closed: AtomicBool::new(false),
            lagged: Throttle::default(),
            rooms: Mutex::new(HashMap::new()),
            rooms_changed: tokio::sync::Notify::new(),
        });
        tasks.push(runtime.spawn(run_dispatch(messages, Arc::downgrade(&hub))));
        tasks.push(runtime.spawn(Hub::run_rooms(Arc::downgrade(&hub))));
        let (link, publisher_task) = Link::start(
            publisher.clone(),
            tracker.clone(),
            runtime,
            cfg.requests_timeout,
            cfg.offline_queue.clone(),
            match cfg.mode {
                PubSubMode::Classic => Flavor::Patterns,
                PubSubMode::Sharded(_) => Flavor::Shard,
                PubSubMode::Streams(_) => Flavor::Channels,
            },
        );
        tasks.push(publisher_task);
        let reader = match &cfg.mode {
            PubSubMode::Streams(streams) => {
                // Its own connection: a blocking read must not hold up the publisher.
                let client = publisher.clone_new();
                if let Err(e) = client.init().await {
                    for t in &tasks {
                        t.abort();
                    }
                    let _ = publisher.quit().await;
                    let _ = hub.subscriber.quit().await;
                    return Err(cannot("stream reader", &cfg.publisher, e));
                }
                let reader =
                    streams::Reader::new(client, streams.clone(), &cfg.key, cfg.requests_timeout);
                tasks.push(link.runtime.spawn(reader.clone().run(Arc::downgrade(&hub))));
                Some(reader)
            }
            _ => None,
        };

        Ok(Arc::new(RedisAdapterFactory {
            config: cfg,
            link,
            hub,
            publisher,
            status: tracker,
            presence: Mutex::new(Presence::default()),
            presence_errors: Arc::new(Throttle::default()),
            reader,
            tasks: Mutex::new(tasks),
            closed: AtomicBool::new(false),
        }))
    }

    /// The configuration this factory was made with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// What the offline queue holds and has done.
    pub fn queue_stats(&self) -> QueueStats {
        self.link.stats()
    }

    /// `{P#presence}#ADDRESS`: one hash slot for all of them, so that a Redis Cluster keeps
    /// them on one node, where `SCAN` and `MGET` find them together.
    fn presence_key(&self, address: &str) -> String {
        format!("{{{}#presence}}#{address}", self.config.key)
    }

    /// Publishes that the worker reachable at `address` has `connections` clients; the entry
    /// lapses after [`PRESENCE_TTL`] unless reported again. Never waits; errors are logged.
    pub fn report_load(&self, address: &str, connections: usize) {
        self.write_presence(address, connections, PRESENCE_TTL);
    }

    fn write_presence(&self, address: &str, connections: usize, ttl: Duration) {
        if self.closed.load(Ordering::Acquire) || self.link.check().is_err() {
            return;
        }
        let key = self.presence_key(address);
        if let Ok(mut p) = self.presence.lock() {
            p.keys.insert(key.clone());
        }
        let client = self.publisher.clone();
        // A SET may be written again: on a Redis Cluster whose slots move, following MOVED/ASK
        // costs the client a write attempt.
        let options = fred::types::config::Options {
            max_attempts: Some(3),
            ..self.link.options()
        };
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let errors = self.presence_errors.clone();
        self.link.runtime.spawn(async move {
            let result: Result<(), _> = client
                .with_options(&options)
                .set(
                    key.as_str(),
                    connections as i64,
                    Some(Expiration::PX(ttl_ms)),
                    None,
                    false,
                )
                .await;
            if let Err(e) = result {
                errors.log(|| format!("presence update of {key} failed: {e}"));
            }
        });
    }

    /// Reports `load()` for `address` now and every `every` until [`RedisAdapterFactory::close`]
    /// (the entry lives three periods). Replaces a previous presence task.
    pub fn start_presence(
        self: &Arc<Self>,
        address: String,
        load: Arc<dyn Fn() -> usize + Send + Sync>,
        every: Duration,
    ) {
        let every = every.max(Duration::from_millis(100));
        let this = Arc::downgrade(self);
        let task = self.link.runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A change of load is announced within PRESENCE_PROMPT, not only at the next
            // report, so `pickServer()` on any worker sees new clients at once.
            let mut prompt = tokio::time::interval(PRESENCE_PROMPT.min(every));
            prompt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut written: Option<usize> = None;
            loop {
                let due = tokio::select! {
                    _ = tick.tick() => true,
                    _ = prompt.tick() => false,
                };
                let Some(factory) = this.upgrade() else {
                    return;
                };
                let connections =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load())).unwrap_or(0);
                if !due && written == Some(connections) {
                    continue;
                }
                written = Some(connections);
                factory.write_presence(&address, connections, every.saturating_mul(3));
            }
        });
        if let Ok(mut p) = self.presence.lock() {
            if let Some(old) = p.task.replace(task) {
                old.abort();
            }
        }
    }

    /// Every live worker's address and connection count, fewest connections first.
    pub async fn servers(&self) -> Result<Vec<(String, usize)>, AdapterError> {
        self.link.check()?;
        let prefix = self.presence_key("");
        let pattern = format!("{}*", wire::glob_escape(&prefix));
        let client = self.publisher.with_options(&self.link.options());
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let page: fred::types::Value = client
                .scan_page(cursor.as_str(), pattern.as_str(), Some(1000), None)
                .await
                .map_err(unavailable)?;
            let (next, found) = scan_reply(page);
            keys.extend(found);
            match next {
                Some(c) if c != "0" => cursor = c,
                _ => break,
            }
        }
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: fred::types::Value = client.mget(keys.clone()).await.map_err(unavailable)?;
        let values = match values {
            fred::types::Value::Array(v) => v,
            single => vec![single],
        };
        let mut servers: Vec<(String, usize)> = keys
            .iter()
            .zip(values)
            .filter_map(|(k, v)| {
                let count = v.as_string()?.trim().parse::<usize>().ok()?;
                Some((k.get(prefix.len()..)?.to_owned(), count))
            })
            .collect();
        servers.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(servers)
    }

    /// The live worker with the fewest connections (one of them, at random, on a tie).
    pub async fn pick_server(&self) -> Result<Option<(String, usize)>, AdapterError> {
        let servers = self.servers().await?;
        let Some(min) = servers.first().map(|s| s.1) else {
            return Ok(None);
        };
        let tied = servers.iter().take_while(|s| s.1 == min).count();
        let pick = rand::random_range(0..tied);
        Ok(servers.into_iter().nth(pick))
    }

    /// Leaves the cluster: unsubscribes every namespace, deletes this server's presence keys and
    /// closes both connections. Adapters made by this factory stop working.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.status.close();
        let keys: Vec<String> = match self.presence.lock() {
            Ok(mut p) => {
                if let Some(t) = p.task.take() {
                    t.abort();
                }
                p.keys.drain().collect()
            }
            Err(_) => Vec::new(),
        };
        // During an outage there is nobody to tell: the steps that need Redis are skipped
        // rather than each waiting out its timeout.
        if self.hub.subscriber.is_connected() {
            let _ = tokio::time::timeout(CLOSE_STEP, self.hub.subscriber.unsubscribe_all()).await;
        }
        self.hub.closed.store(true, Ordering::Release);
        if let Ok(mut routes) = self.hub.routes.write() {
            // Requests still waiting for answers fail now rather than at their timeout.
            for (_, route, _) in routes.prefixes.drain(..) {
                if let Some(ns) = route.ns.upgrade() {
                    ns.close();
                }
            }
            *routes = Routes::default();
        }
        if !keys.is_empty() && self.publisher.is_connected() {
            let client = self.publisher.with_options(&self.link.options());
            let deleted: Result<Result<i64, _>, _> =
                tokio::time::timeout(CLOSE_STEP, client.del(keys)).await;
            if let Ok(Err(e)) = deleted {
                log(&format!("removing presence keys failed: {e}"));
            }
        }
        if let Some(reader) = &self.reader {
            reader.close().await;
        }
        // A client that is down only needs its reconnecting stopped, not a server's answer.
        let step = |up: bool| if up { CLOSE_STEP } else { QUIT_DOWN };
        let up = self.hub.subscriber.is_connected();
        let _ = tokio::time::timeout(step(up), self.hub.subscriber.quit()).await;
        let up = self.publisher.is_connected();
        let _ = tokio::time::timeout(step(up), self.publisher.quit()).await;
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// `SCAN` answers `[cursor, [key, ...]]`.
fn scan_reply(page: fred::types::Value) -> (Option<String>, Vec<String>) {
    use fred::types::Value as V;
    let V::Array(mut parts) = page else {
        return (None, Vec::new());
    };
    let keys = match parts.pop() {
        Some(V::Array(keys)) => keys.into_iter().filter_map(|k| k.into_string()).collect(),
        _ => Vec::new(),
    };
    let cursor = parts.pop().and_then(|c| c.into_string());
    (cursor, keys)
}

/// Subscribes again to everything `subscriber` tracks: channels and patterns (each kind only
/// when there are any), and shard channels grouped by hash slot (one `SSUBSCRIBE` may only
/// name channels of one slot).
async fn resubscribe(subscriber: &SubscriberClient) -> Result<(), fred::error::Error> {
    let channels: Vec<String> = subscriber
        .tracked_channels()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    if !channels.is_empty() {
        subscriber.subscribe(channels).await?;
    }
    let patterns: Vec<String> = subscriber
        .tracked_patterns()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    if !patterns.is_empty() {
        subscriber.psubscribe(patterns).await?;
    }
    let shard: Vec<String> = subscriber
        .tracked_shard_channels()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    for (_, group) in fred::util::group_by_hash_slot(shard)? {
        subscriber.ssubscribe(Vec::from(group)).await?;
    }
    Ok(())
}

/// Keeps the subscriber's subscriptions: after every reconnection, and — for shard channels
/// on a Redis Cluster (`follow_slots`) — whenever slots move, since Redis drops the shard
/// subscriptions of a migrated slot and the client is not told in a way it acts on. Slot
/// moves are noticed from either client's cluster-state changes and from a check every
/// [`SLOT_CHECK_EVERY`].
async fn keep_subscribed(subscriber: SubscriberClient, publisher: Client, follow_slots: bool) {
    use fred::interfaces::ClusterInterface;
    use tokio::sync::broadcast::error::RecvError;
    let mut reconnects = subscriber.reconnect_rx();
    let mut moved = publisher.cluster_change_rx();
    let mut own_moves = subscriber.cluster_change_rx();
    let mut tick = tokio::time::interval(SLOT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = |s: &SubscriberClient| s.cached_cluster_state().map(|c| c.slots().to_vec());
    loop {
        tokio::select! {
            event = reconnects.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = moved.recv(), if follow_slots => {
                let _ = subscriber.sync_cluster().await;
            }
            _ = own_moves.recv(), if follow_slots => {}
            _ = tick.tick(), if follow_slots => {
                let before = slots(&subscriber);
                if subscriber.sync_cluster().await.is_err() || slots(&subscriber) == before {
                    continue;
                }
            }
        }
        if let Err(e) = resubscribe(&subscriber).await {
            log(&format!("subscribing again failed: {e}"));
        }
    }
}

async fn run_dispatch(mut messages: tokio::sync::broadcast::Receiver<Message>, hub: Weak<Hub>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match messages.recv().await {
            Ok(message) => match hub.upgrade() {
                Some(hub) => hub.dispatch(message),
                None => return,
            },
            Err(RecvError::Lagged(n)) => {
                if let Some(hub) = hub.upgrade() {
                    hub.lagged
                        .log(|| format!("fell behind the Redis subscription; {n} messages lost"));
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl AdapterFactory for RedisAdapterFactory {
    fn create(&self, nsp: Weak<dyn LocalNamespace>) -> Arc<dyn Adapter> {
        let Some(name) = nsp.upgrade().map(|n| n.name().to_owned()) else {
            return Arc::new(LocalAdapter);
        };
        if self.closed.load(Ordering::Acquire) {
            log(&format!(
                "namespace {name} created after close: it stays local"
            ));
            return Arc::new(LocalAdapter);
        }
        let (name, transport) = match &self.config.mode {
            PubSubMode::Classic => {
                let ns = Namespace::new(name, &self.config.key, nsp, self.link.clone());
                let on_close = self.serve(ns.clone(), ns.listening());
                return Arc::new(RedisAdapter { ns, on_close });
            }
            PubSubMode::Sharded(mode) => (name, sharded::Transport::Shard(*mode)),
            PubSubMode::Streams(streams) => (
                name,
                sharded::Transport::Streams {
                    key: streams.stream_name.clone(),
                    max_len: streams.max_len,
                    sessions: streams.session_key_prefix.clone(),
                },
            ),
        };
        let ns = sharded::Namespace::new(
            name,
            &self.config.key,
            transport,
            nsp,
            self.link.clone(),
            self.hub.clone(),
        );
        let on_close = self.serve(ns.clone(), ns.listening());
        Arc::new(sharded::ShardedAdapter::new(ns, on_close))
    }
}

/// A namespace's state as the factory serves it.
pub(crate) trait Serving: Closing + 'static {
    /// The adapter's uid.
    fn uid(&self) -> &str;
    /// The namespace's name.
    fn name(&self) -> &str;
    /// Whether it was closed.
    fn is_closed(&self) -> bool;
    /// Serves one message from the cluster.
    fn handle(self: &Arc<Self>, message: Inbound);
    /// The channels only this adapter listens on (its private responses).
    fn own_channels(&self) -> Vec<String>;
}

/// What leaving the cluster takes for a namespace (unsubscribing).
pub(crate) type OnClose = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

impl RedisAdapterFactory {
    /// Routes what arrives on `listening` to `ns` (in order, by one task), subscribes it, and
    /// returns what unsubscribes it.
    fn serve<N: Serving>(&self, ns: Arc<N>, listening: Listening) -> OnClose {
        let listening = Arc::new(listening);
        let (inbox, mut rx) = Inbox::new();
        let closing: Weak<dyn Closing> = Arc::downgrade(&ns) as Weak<dyn Closing>;
        self.hub
            .register(ns.uid(), ns.name(), closing, &listening, inbox);
        let worker = ns.clone();
        self.link.runtime.spawn(async move {
            while let Some(message) = rx.recv().await {
                worker.handle(message);
            }
        });
        let watch = Arc::downgrade(&ns);
        self.link.runtime.spawn(self.hub.clone().subscribe(
            ns.name().to_owned(),
            listening.clone(),
            move || watch.upgrade().is_none_or(|n| n.is_closed()),
        ));
        let hub = self.hub.clone();
        let uid = ns.uid().to_owned();
        let own = ns.own_channels();
        Box::new(move || {
            hub.clone()
                .unsubscribe(uid.clone(), listening.clone(), own.clone())
                .boxed()
        })
    }
}

impl Drop for RedisAdapterFactory {
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        // Not closed: stop our tasks and let both connections go (they would reconnect forever).
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        if let Ok(mut p) = self.presence.lock() {
            if let Some(t) = p.task.take() {
                t.abort();
            }
        }
        let publisher = self.publisher.clone();
        let subscriber = self.hub.subscriber.clone();
        self.hub.closed.store(true, Ordering::Release);
        self.link.runtime.spawn(async move {
            let _ = publisher.quit().await;
            let _ = subscriber.quit().await;
        });
    }
}
