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
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, KeysInterface, PubsubInterface};
use fred::types::config::{Config, ReconnectPolicy, ServerConfig, TlsConnector};
use fred::types::{Builder, Expiration, Message, MessageKind};
use futures_util::future::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{
    OfflineQueue, RedisConfig, RedisEndpoint, RedisTls, Topology, DEFAULT_KEY,
    DEFAULT_REQUESTS_TIMEOUT,
};
pub use link::{AdapterStatus, QueueStats, StatusCallback};
pub use namespace::RedisAdapter;

use self::link::{log, unavailable, Link, Role, StatusTracker, Throttle};
use self::namespace::{Inbound, Namespace};
use super::local::LocalAdapter;
use super::{Adapter, AdapterError, AdapterFactory, LocalNamespace};

/// Messages queued for one namespace before further ones are dropped.
const INBOX_CAPACITY: usize = 1024;
/// Capacity of the client's own pub/sub fan-out channel (messages, not bytes).
const SUBSCRIBER_BUFFER: usize = 8192;
/// Time to live of a presence key written by [`RedisAdapterFactory::report_load`].
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How long [`RedisAdapterFactory::close`] waits for Redis at each step.
const CLOSE_STEP: Duration = Duration::from_secs(2);

/// Where incoming messages go.
#[derive(Clone)]
struct Route {
    uid: String,
    nsp: String,
    ns: Weak<Namespace>,
    inbox: mpsc::Sender<Inbound>,
    overflow: Arc<Throttle>,
}

#[derive(Clone, Copy)]
enum ChannelKind {
    Request,
    Response,
}

#[derive(Default)]
struct Routes {
    /// Request and response channels.
    exact: HashMap<String, (Route, ChannelKind)>,
    /// Broadcast channel prefixes `P#NSP#`, longest first.
    prefixes: Vec<(String, Route)>,
}

/// The subscribing side: subscriptions and the routing of what arrives.
struct Hub {
    subscriber: SubscriberClient,
    routes: RwLock<Routes>,
    closed: AtomicBool,
    lagged: Throttle,
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
        let (route, inbound) = match message.kind {
            MessageKind::PMessage => {
                let Some((_, route)) = routes
                    .prefixes
                    .iter()
                    .find(|(p, _)| channel.starts_with(p.as_str()))
                else {
                    return;
                };
                (route, Inbound::Broadcast(body))
            }
            _ => match routes.exact.get(channel) {
                Some((route, ChannelKind::Request)) => (route, Inbound::Request(body)),
                Some((route, ChannelKind::Response)) => (route, Inbound::Response(body)),
                None => return,
            },
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = route.inbox.try_send(inbound) {
            route.overflow.log(|| {
                format!(
                    "namespace {} is not keeping up with the cluster; dropped a message from {channel}",
                    route.nsp
                )
            });
        }
    }

    fn register(&self, ns: &Arc<Namespace>, inbox: mpsc::Sender<Inbound>) {
        let route = Route {
            uid: ns.uid.clone(),
            nsp: ns.name.clone(),
            ns: Arc::downgrade(ns),
            inbox,
            overflow: Arc::new(Throttle::default()),
        };
        let Ok(mut routes) = self.routes.write() else {
            return;
        };
        let c = &ns.channels;
        // A second adapter for the same namespace replaces the first one.
        routes.exact.retain(|_, (r, _)| r.nsp != ns.name);
        routes.prefixes.retain(|(_, r)| r.nsp != ns.name);
        routes
            .exact
            .insert(c.request.clone(), (route.clone(), ChannelKind::Request));
        routes
            .exact
            .insert(c.response.clone(), (route.clone(), ChannelKind::Response));
        routes.exact.insert(
            c.specific_response.clone(),
            (route.clone(), ChannelKind::Response),
        );
        routes.prefixes.push((c.broadcast.clone(), route));
        routes
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    /// Removes the routes of `ns`; true when they were still the namespace's current ones.
    fn unregister(&self, ns: &Namespace) -> bool {
        let Ok(mut routes) = self.routes.write() else {
            return false;
        };
        let current = routes
            .exact
            .get(&ns.channels.request)
            .is_some_and(|(r, _)| r.uid == ns.uid);
        routes.exact.retain(|_, (r, _)| r.uid != ns.uid);
        routes.prefixes.retain(|(_, r)| r.uid != ns.uid);
        current
    }

    /// Subscribes the channels of `ns`, retrying until it works or the namespace closes.
    async fn subscribe(self: Arc<Self>, ns: Arc<Namespace>) {
        let c = ns.channels.clone();
        let mut delay = Duration::from_millis(100);
        loop {
            if ns.is_closed() || self.closed.load(Ordering::Acquire) {
                return;
            }
            let result = async {
                self.subscriber.psubscribe(c.pattern()).await?;
                self.subscriber
                    .subscribe(vec![
                        c.request.clone(),
                        c.response.clone(),
                        c.specific_response.clone(),
                    ])
                    .await
            }
            .await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    log(&format!(
                        "subscribing namespace {} failed ({e}); retrying",
                        ns.name
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Leaves the channels of `ns` (all of them, or only its own response channel when another
    /// adapter of the same namespace took over).
    async fn unsubscribe(self: Arc<Self>, ns: Arc<Namespace>) {
        let current = self.unregister(&ns);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let c = &ns.channels;
        let result = tokio::time::timeout(CLOSE_STEP, async {
            if current {
                self.subscriber.punsubscribe(c.pattern()).await?;
                self.subscriber
                    .unsubscribe(vec![
                        c.request.clone(),
                        c.response.clone(),
                        c.specific_response.clone(),
                    ])
                    .await
            } else {
                self.subscriber
                    .unsubscribe(c.specific_response.clone())
                    .await
            }
        })
        .await;
        if let Ok(Err(e)) = result {
            log(&format!("unsubscribing namespace {} failed: {e}", ns.name));
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
                "cluster.redis.sentinel.name: cannot reach {server} ({role}); do the sentinels (cluster.redis.sentinel.nodes) know a master of that name? {e}"
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
        tasks.push(subscriber.manage_subscriptions());
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
        });
        tasks.push(runtime.spawn(run_dispatch(messages, Arc::downgrade(&hub))));
        let (link, publisher_task) = Link::start(
            publisher.clone(),
            tracker.clone(),
            runtime,
            cfg.requests_timeout,
            cfg.offline_queue.clone(),
        );
        tasks.push(publisher_task);

        Ok(Arc::new(RedisAdapterFactory {
            config: cfg,
            link,
            hub,
            publisher,
            status: tracker,
            presence: Mutex::new(Presence::default()),
            presence_errors: Arc::new(Throttle::default()),
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
        let options = self.link.options();
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
            loop {
                tick.tick().await;
                let Some(factory) = this.upgrade() else {
                    return;
                };
                let connections =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load())).unwrap_or(0);
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
        let _ = tokio::time::timeout(CLOSE_STEP, self.hub.subscriber.unsubscribe_all()).await;
        self.hub.closed.store(true, Ordering::Release);
        if let Ok(mut routes) = self.hub.routes.write() {
            // Requests still waiting for answers fail now rather than at their timeout.
            for (_, route) in routes.prefixes.drain(..) {
                if let Some(ns) = route.ns.upgrade() {
                    ns.close();
                }
            }
            *routes = Routes::default();
        }
        if !keys.is_empty() {
            let client = self.publisher.with_options(&self.link.options());
            let deleted: Result<Result<i64, _>, _> =
                tokio::time::timeout(CLOSE_STEP, client.del(keys)).await;
            if let Ok(Err(e)) = deleted {
                log(&format!("removing presence keys failed: {e}"));
            }
        }
        let _ = tokio::time::timeout(CLOSE_STEP, self.hub.subscriber.quit()).await;
        let _ = tokio::time::timeout(CLOSE_STEP, self.publisher.quit()).await;
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
        let ns = Namespace::new(name, &self.config.key, nsp, self.link.clone());
        let (inbox, mut rx) = mpsc::channel(INBOX_CAPACITY);
        self.hub.register(&ns, inbox);
        let worker = ns.clone();
        self.link.runtime.spawn(async move {
            while let Some(message) = rx.recv().await {
                worker.handle(message);
            }
        });
        self.link
            .runtime
            .spawn(self.hub.clone().subscribe(ns.clone()));
        let hub = self.hub.clone();
        Arc::new(RedisAdapter {
            ns,
            on_close: Box::new(move |ns| hub.clone().unsubscribe(ns.clone()).boxed()),
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
