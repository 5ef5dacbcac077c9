//! `cluster.redis` as weroll configures it, read into a [`RedisConfig`].

use std::time::Duration;

use serde_json::{Map, Value};

/// Channel prefix weroll used (Node's adapter and emitter default to `"socket.io"`).
pub const DEFAULT_KEY: &str = "realtime";
/// How long a cluster request waits for the other servers, as Node's adapter.
pub const DEFAULT_REQUESTS_TIMEOUT: Duration = Duration::from_millis(5000);
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 6379;
/// Where error messages say the configuration comes from.
const ROOT: &str = "cluster.redis";

/// One Redis server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name (Redis 6+), if any.
    pub username: Option<String>,
    /// Password (`AUTH`), if any.
    pub password: Option<String>,
    /// Database selected after connecting (pub/sub ignores it; presence keys live there).
    pub db: Option<u8>,
    /// Connect with TLS (`tls` option or a `rediss://` URL).
    pub tls: Option<RedisTls>,
}

/// TLS settings of one endpoint, as Node's `tls.connect` options name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// Certificates (PEM text) to trust instead of the system's roots (`ca`).
    pub ca: Vec<String>,
    /// Name to verify the server's certificate against, when not the host (`servername`).
    pub servername: Option<String>,
}

impl Default for RedisEndpoint {
    fn default() -> Self {
        RedisEndpoint {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            username: None,
            password: None,
            db: None,
            tls: None,
        }
    }
}

impl std::fmt::Display for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which Redis deployment the adapter talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Topology {
    /// One server: the endpoints' own host and port.
    #[default]
    Single,
    /// A Redis Cluster, found through these seed nodes (the rest is discovered); the endpoints
    /// give the credentials and TLS.
    Cluster(Vec<(String, u16)>),
    /// The master that these sentinels know as `name`; the endpoints give the master's
    /// credentials, database and TLS.
    Sentinel {
        /// The master's name in the sentinels' configuration.
        name: String,
        /// Sentinels to ask.
        nodes: Vec<(String, u16)>,
        /// ACL user to authenticate to the sentinels with.
        username: Option<String>,
        /// Password of the sentinels.
        password: Option<String>,
    },
}

/// How the servers hear each other: `@socket.io/redis-adapter`'s `createAdapter` (classic
/// pub/sub) or `createShardedAdapter` (Redis 7 sharded pub/sub), or
/// `@socket.io/redis-streams-adapter` (a Redis stream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PubSubMode {
    /// `PUBLISH` / `PSUBSCRIBE`, msgpack broadcasts, requests on `P-request#N#`.
    #[default]
    Classic,
    /// `SPUBLISH` / `SSUBSCRIBE`, ClusterAdapter messages on `P#N#`.
    Sharded(SubscriptionMode),
    /// Broadcasts, joins, leaves and disconnects appended to a Redis stream that every server
    /// reads from its last entry; requests and answers over `PUBLISH` / `SUBSCRIBE` on `P#N#`.
    Streams(StreamsConfig),
}

impl PubSubMode {
    /// Whether messages go over sharded pub/sub.
    pub fn is_sharded(&self) -> bool {
        matches!(self, PubSubMode::Sharded(_))
    }
}

/// Settings of the streams mode, named and defaulted as `@socket.io/redis-streams-adapter`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsConfig {
    /// The stream's key (`streamName`, default `socket.io`).
    pub stream_name: String,
    /// Entries the stream keeps, about (`maxLen`, default 10000; `XADD MAXLEN ~`).
    pub max_len: u64,
    /// Entries read at once (`readCount`, default 100).
    pub read_count: u64,
    /// How long one read waits for new entries (`blockTimeInMs`, default 5000).
    pub block_time: Duration,
    /// Prefix of the keys of saved sessions (`sessionKeyPrefix`, default `sio:session:`).
    pub session_key_prefix: String,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            stream_name: "socket.io".to_owned(),
            max_len: 10_000,
            read_count: 100,
            block_time: Duration::from_millis(5000),
            session_key_prefix: "sio:session:".to_owned(),
        }
    }
}

impl StreamsConfig {
    fn from_json(root: &Map<String, Value>) -> Result<StreamsConfig, String> {
        let mut c = StreamsConfig::default();
        if let Some(v) = root.get("streamName").filter(|v| !v.is_null()) {
            c.stream_name = non_empty_string(v, &format!("{ROOT}.streamName"))?;
        }
        if let Some(v) = root.get("sessionKeyPrefix").filter(|v| !v.is_null()) {
            c.session_key_prefix = non_empty_string(v, &format!("{ROOT}.sessionKeyPrefix"))?;
        }
        let count = |key: &str, min: u64, max: u64| -> Result<Option<u64>, String> {
            match root.get(key).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(format!(
                        "{ROOT}.{key} must be a whole number from {min} to {max}, got {v}"
                    )),
                },
            }
        };
        if let Some(n) = count("maxLen", 1, 1 << 40)? {
            c.max_len = n;
        }
        if let Some(n) = count("readCount", 1, 100_000)? {
            c.read_count = n;
        }
        if let Some(n) = count("blockTimeInMs", 1, 600_000)? {
            c.block_time = Duration::from_millis(n);
        }
        match count("streamCount", 1, 1 << 16)? {
            None | Some(1) => {}
            Some(_) => {
                return Err(format!(
                    "{ROOT}.streamCount: only 1 stream is supported (several streams lose the cross-server delivery of some namespaces in @socket.io/redis-streams-adapter 0.3)"
                ))
            }
        }
        if root.get("useShardedPubSub") == Some(&Value::Bool(true)) {
            return Err(format!(
                "{ROOT}.useShardedPubSub: the streams mode uses classic pub/sub for its requests"
            ));
        }
        Ok(c)
    }
}

/// Which shard channels a sharded adapter subscribes to (`subscriptionMode` of Node's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// Only the namespace's own channel: every message reaches every server.
    Static,
    /// Also one channel per public room with a local member; a broadcast to one such room goes
    /// only to the servers that have members.
    #[default]
    Dynamic,
    /// Like `Dynamic`, and socket ids count as rooms too.
    DynamicPrivate,
}

/// Settings of the Redis adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The deployment: one server, a Cluster, or a Sentinel-managed master.
    pub topology: Topology,
    /// Classic or sharded pub/sub.
    pub mode: PubSubMode,
    /// Server the publishing client connects to.
    pub publisher: RedisEndpoint,
    /// Server the subscribing client connects to (normally the same).
    pub subscriber: RedisEndpoint,
    /// Channel prefix (`key` option of Node's adapter).
    pub key: String,
    /// How long `fetchSockets`, `allRooms` and acknowledged `serverSideEmit` wait for answers.
    pub requests_timeout: Duration,
    /// What is kept of the messages published while Redis is unreachable.
    pub offline_queue: OfflineQueue,
}

/// The publisher's offline queue: messages published while the connection to Redis is down
/// are kept, in order, and published once it is back and the other servers listen again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineQueue {
    /// Bytes of messages kept at most; beyond that the oldest are dropped. 0 disables the queue
    /// (messages published while Redis is down are dropped).
    pub max_bytes: usize,
    /// A message older than this when Redis is back is dropped instead of published.
    pub max_age: Duration,
    /// After a reconnection, how long to wait for the other servers to subscribe again (as far
    /// as `PUBSUB NUMSUB` and `CLIENT LIST` show) before the queue is published anyway.
    pub flush_wait: Duration,
}

impl OfflineQueue {
    /// 8 MiB, 60 s, 5 s.
    pub const DEFAULT: OfflineQueue = OfflineQueue {
        max_bytes: 8 << 20,
        max_age: Duration::from_secs(60),
        flush_wait: Duration::from_secs(5),
    };

    /// Whether messages are kept at all.
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// `offlineQueue`: `true` or missing (the defaults), `false` (disabled), a number of bytes,
    /// or `{maxBytes, maxAge, flushWait}` (bytes, ms, ms; each defaulted when missing).
    fn from_json(v: Option<&Value>) -> Result<OfflineQueue, String> {
        let path = format!("{ROOT}.offlineQueue");
        let obj = match v {
            None | Some(Value::Null) | Some(Value::Bool(true)) => return Ok(Self::DEFAULT),
            Some(Value::Bool(false)) => {
                return Ok(OfflineQueue {
                    max_bytes: 0,
                    ..Self::DEFAULT
                })
            }
            Some(n @ Value::Number(_)) => {
                return Ok(OfflineQueue {
                    max_bytes: bytes(n, &path)?,
                    ..Self::DEFAULT
                })
            }
            Some(Value::Object(obj)) => obj,
            Some(other) => {
                return Err(format!(
                    "{path} must be true, false, a number of bytes or {{maxBytes, maxAge, flushWait}}, got {}",
                    kind(other)
                ))
            }
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["maxBytes", "maxAge", "flushWait"].contains(&k.as_str()))
        {
            return Err(format!(
                "{path}.{k} is unknown (expected maxBytes, maxAge, flushWait)"
            ));
        }
        let mut q = Self::DEFAULT;
        if let Some(v) = obj.get("maxBytes").filter(|v| !v.is_null()) {
            q.max_bytes = bytes(v, &format!("{path}.maxBytes"))?;
        }
        if let Some(v) = obj.get("maxAge").filter(|v| !v.is_null()) {
            q.max_age = millis(v, &format!("{path}.maxAge"))?;
        }
        if let Some(v) = obj.get("flushWait").filter(|v| !v.is_null()) {
            q.flush_wait = millis(v, &format!("{path}.flushWait"))?;
        }
        Ok(q)
    }
}

fn bytes(v: &Value, path: &str) -> Result<usize, String> {
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 && n <= (1u64 << 40) as f64 => Ok(n as usize),
        _ => Err(format!(
            "{path} must be a number of bytes (0 to disable), got {v}"
        )),
    }
}

fn millis(v: &Value, path: &str) -> Result<Duration, String> {
    match v.as_f64() {
        Some(ms) if ms.is_finite() && (0.0..=86_400_000.0).contains(&ms) => {
            Ok(Duration::from_millis(ms.ceil() as u64))
        }
        _ => Err(format!(
            "{path} must be a number of milliseconds (0 to 86400000), got {v}"
        )),
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            topology: Topology::Single,
            mode: PubSubMode::Classic,
            publisher: RedisEndpoint::default(),
            subscriber: RedisEndpoint::default(),
            key: DEFAULT_KEY.to_owned(),
            requests_timeout: DEFAULT_REQUESTS_TIMEOUT,
            offline_queue: OfflineQueue::DEFAULT,
        }
    }
}

impl RedisConfig {
    /// Reads weroll's `cluster.redis`: `{host, port}`, `{"*": {host, port, option}}` or
    /// `{pub: {...}, sub: {...}}`, each endpoint also taking `url` (`redis://user:pass@host:port/db`),
    /// `password`, `username`, `db` (directly or inside node_redis' `option`); at the top level
    /// `key` or `prefix` (channel prefix, default `"realtime"`) and `requestsTimeout` (ms,
    /// default 5000) and `offlineQueue` (see [`OfflineQueue`]). A plain string is taken as a
    /// URL; node-redis 4's `{socket: {host, port}}` is read too. Unknown node_redis options
    /// beside an address are ignored; an object with no address and unknown keys, or one naming
    /// another topology (Sentinel, Cluster, a Unix socket), is an error, as is a wrong type or
    /// value, each naming the key.
    pub fn from_json(v: &Value) -> Result<RedisConfig, String> {
        let root = match v {
            Value::String(url) => {
                let endpoint = parse_url(url, ROOT)?;
                return Ok(RedisConfig {
                    publisher: endpoint.clone(),
                    subscriber: endpoint,
                    ..RedisConfig::default()
                });
            }
            Value::Object(map) => map,
            Value::Null => &Map::new(),
            other => return Err(format!("{ROOT} must be an object, got {}", kind(other))),
        };

        let key = match (root.get("key"), root.get("prefix")) {
            (Some(k), _) if !k.is_null() => non_empty_string(k, &format!("{ROOT}.key"))?,
            (_, Some(p)) if !p.is_null() => non_empty_string(p, &format!("{ROOT}.prefix"))?,
            _ => DEFAULT_KEY.to_owned(),
        };

        let requests_timeout = match root.get("requestsTimeout") {
            None | Some(Value::Null) => DEFAULT_REQUESTS_TIMEOUT,
            Some(t) => match t.as_f64() {
                Some(ms) if ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0 => {
                    Duration::from_millis(ms.ceil() as u64)
                }
                _ => {
                    return Err(format!(
                    "{ROOT}.requestsTimeout must be a number of milliseconds between 1 and 3600000"
                ))
                }
            },
        };

        let offline_queue = OfflineQueue::from_json(root.get("offlineQueue"))?;
        let mode = mode(root)?;
        let grown = |topology, endpoint: RedisEndpoint| RedisConfig {
            topology,
            mode: mode.clone(),
            publisher: endpoint.clone(),
            subscriber: endpoint,
            key: key.clone(),
            requests_timeout,
            offline_queue: offline_queue.clone(),
        };
        if let Some(c) = root.get("cluster").filter(|v| !v.is_null()) {
            let (nodes, endpoint) = cluster(c, root)?;
            return Ok(grown(Topology::Cluster(nodes), endpoint));
        }
        if let Some(s) = root.get("sentinel").filter(|v| !v.is_null()) {
            let (topology, endpoint) = sentinel(s, root)?;
            return Ok(grown(topology, endpoint));
        }

        let both = root.get("*").filter(|v| !v.is_null());
        let publisher = root.get("pub").filter(|v| !v.is_null());
        let subscriber = root.get("sub").filter(|v| !v.is_null());
        let (publisher, subscriber) = match (publisher, subscriber, both) {
            (Some(p), Some(s), _) => (
                endpoint(p, &format!("{ROOT}.pub"))?,
                endpoint(s, &format!("{ROOT}.sub"))?,
            ),
            (Some(_), None, None) => {
                return Err(format!("{ROOT}.pub is set but {ROOT}.sub is missing"))
            }
            (None, Some(_), None) => {
                return Err(format!("{ROOT}.sub is set but {ROOT}.pub is missing"))
            }
            (p, s, Some(b)) => {
                let shared = endpoint(b, &format!("{ROOT}.*"))?;
                (
                    p.map(|p| endpoint(p, &format!("{ROOT}.pub")))
                        .transpose()?
                        .unwrap_or_else(|| shared.clone()),
                    s.map(|s| endpoint(s, &format!("{ROOT}.sub")))
                        .transpose()?
                        .unwrap_or(shared),
                )
            }
            (None, None, None) => {
                let e = endpoint(v, ROOT)?;
                (e.clone(), e)
            }
        };

        Ok(RedisConfig {
            topology: Topology::Single,
            mode,
            publisher,
            subscriber,
            key,
            requests_timeout,
            offline_queue,
        })
    }
}

/// `adapter` (`"classic"`, the default, `"sharded"` or `"streams"`); for sharded,
/// `subscriptionMode` (`"static"`, `"dynamic"` (the default) or `"dynamic-private"`); for
/// streams, the stream's options.
fn mode(root: &Map<String, Value>) -> Result<PubSubMode, String> {
    let sub = match root.get("subscriptionMode") {
        None | Some(Value::Null) => SubscriptionMode::Dynamic,
        Some(Value::String(m)) if m == "static" => SubscriptionMode::Static,
        Some(Value::String(m)) if m == "dynamic" => SubscriptionMode::Dynamic,
        Some(Value::String(m)) if m == "dynamic-private" => SubscriptionMode::DynamicPrivate,
        Some(other) => {
            return Err(format!(
                r#"cluster.subscriptionMode must be "static", "dynamic" or "dynamic-private", got {other}"#
            ))
        }
    };
    match root.get("adapter") {
        None | Some(Value::Null) => Ok(PubSubMode::Classic),
        Some(Value::String(a)) if a == "classic" => Ok(PubSubMode::Classic),
        Some(Value::String(a)) if a == "sharded" => Ok(PubSubMode::Sharded(sub)),
        Some(Value::String(a)) if a == "streams" => {
            Ok(PubSubMode::Streams(StreamsConfig::from_json(root)?))
        }
        Some(other) => Err(format!(
            r#"cluster.adapter must be "classic", "sharded" or "streams", got {other}"#
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn non_empty_string(v: &Value, path: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(format!(
            "{path} must be a non-empty string, got {}",
            kind(v)
        )),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "{path}.{key} must be a string, got {}",
            kind(other)
        )),
    }
}

fn port(v: &Value, path: &str) -> Result<u16, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("{path} must be a port number (1-65535), got {v}")),
    }
}

fn db(v: &Value, path: &str) -> Result<u8, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(d) if d <= 255 => Ok(d as u8),
        _ => Err(format!("{path} must be a database number (0-255), got {v}")),
    }
}

/// `tls`: `true` (the system's trusted roots), or Node's options object with `ca` (PEM text, or
/// a list of them) and `servername`. Options that would weaken or extend verification
/// (`rejectUnauthorized: false`, client certificates) are refused rather than ignored.
fn tls(v: &Value, path: &str) -> Result<Option<RedisTls>, String> {
    let obj = match v {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Bool(true) => return Ok(Some(RedisTls::default())),
        Value::Object(obj) => obj,
        other => {
            return Err(format!(
                "{path} must be true or an object, got {}",
                kind(other)
            ))
        }
    };
    if obj.get("rejectUnauthorized") == Some(&Value::Bool(false)) {
        return Err(format!(
            "{path}.rejectUnauthorized: false is not supported; give the server's CA in {path}.ca"
        ));
    }
    for key in ["cert", "key", "pfx"] {
        if obj.get(key).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{path}.{key}: client certificates are not supported"
            ));
        }
    }
    let ca = match obj.get("ca") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(pem)) => vec![pem.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(pem) => Ok(pem.clone()),
                other => Err(format!(
                    "{path}.ca entries must be PEM strings, got {}",
                    kind(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "{path}.ca must be a PEM string or a list of them, got {}",
                kind(other)
            ))
        }
    };
    let servername = optional_string(obj, "servername", path)?;
    Ok(Some(RedisTls { ca, servername }))
}

/// Keys that name a topology in a shape this does not read, and how to write it instead.
const OTHER_TOPOLOGIES: [(&str, &str); 7] = [
    (
        "sentinels",
        r#"Redis Sentinel is given as {sentinel: {name, nodes: [{host, port}, ...]}} at the top of cluster.redis"#,
    ),
    (
        "sentinel",
        r#"Redis Sentinel is given as {sentinel: {name, nodes: [{host, port}, ...]}} at the top of cluster.redis"#,
    ),
    (
        "nodes",
        r#"a Redis Cluster is given as {cluster: [{host, port}, ...]} at the top of cluster.redis"#,
    ),
    (
        "rootNodes",
        r#"a Redis Cluster is given as {cluster: [{host, port}, ...]} at the top of cluster.redis"#,
    ),
    (
        "startupNodes",
        r#"a Redis Cluster is given as {cluster: [{host, port}, ...]} at the top of cluster.redis"#,
    ),
    (
        "cluster",
        r#"a Redis Cluster is given as {cluster: [{host, port}, ...]} at the top of cluster.redis"#,
    ),
    ("path", "a Unix socket is not supported"),
];
/// Keys an endpoint (or the top level of `cluster.redis`) may have besides its address.
const ENDPOINT_KEYS: [&str; 24] = [
    "adapter",
    "subscriptionMode",
    "streamName",
    "streamCount",
    "maxLen",
    "readCount",
    "blockTimeInMs",
    "sessionKeyPrefix",
    "useShardedPubSub",
    "password",
    "database",
    "auth_pass",
    "username",
    "db",
    "tls",
    "option",
    "key",
    "prefix",
    "requestsTimeout",
    "offlineQueue",
    "*",
    "pub",
    "sub",
    "name",
];
const SHAPES: &str = r#"{host, port}, {url: "redis://host:port"}, {"*": {host, port, option}} or {pub: {...}, sub: {...}}"#;
/// The other topologies, for error messages.
const GROWN: &str = r#"a Redis Cluster as {cluster: [{host, port}, ...]}, Sentinel as {sentinel: {name, nodes: [{host, port}, ...]}}"#;

/// Refuses what would otherwise be read as the default server: another topology, or an object
/// without any address key (`host`, `port`, `url`, node-redis' `socket`) whose keys are unknown.
fn check_shape(obj: &Map<String, Value>, path: &str) -> Result<(), String> {
    if let Some((k, how)) = OTHER_TOPOLOGIES
        .iter()
        .find(|(k, _)| obj.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(format!(
            "{path}.{k}: {how}; one server is given as {SHAPES}"
        ));
    }
    let addressed = ["host", "port", "url", "socket"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(|v| !v.is_null()));
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !ENDPOINT_KEYS.contains(k))
        .collect();
    if !addressed && !unknown.is_empty() {
        return Err(format!(
            "{path}: unknown shape (keys {}); expected {SHAPES}, or {GROWN}",
            unknown.join(", ")
        ));
    }
    Ok(())
}

/// `[{host, port} | "host:port", ...]`, at least one.
fn node_list(v: &Value, path: &str) -> Result<Vec<(String, u16)>, String> {
    let Value::Array(list) = v else {
        return Err(format!(
            "{path} must be a list of {{host, port}}, got {}",
            kind(v)
        ));
    };
    if list.is_empty() {
        return Err(format!("{path} must name at least one node"));
    }
    list.iter()
        .enumerate()
        .map(|(i, node)| {
            let at = format!("{path}[{i}]");
            match node {
                Value::Object(o) => {
                    let host = match o.get("host").filter(|h| !h.is_null()) {
                        Some(h) => non_empty_string(h, &format!("{at}.host"))?,
                        None => DEFAULT_HOST.to_owned(),
                    };
                    let p = o
                        .get("port")
                        .filter(|p| !p.is_null())
                        .ok_or_else(|| format!("{at}.port is missing"))?;
                    Ok((host, port(p, &format!("{at}.port"))?))
                }
                Value::String(hp) => {
                    let (h, p) = hp
                        .rsplit_once(':')
                        .ok_or_else(|| format!("{at} must be \"host:port\", got {hp:?}"))?;
                    let h = h.trim_start_matches('[').trim_end_matches(']');
                    Ok((h.to_owned(), port(&Value::String(p.to_owned()), &at)?))
                }
                other => Err(format!(
                    "{at} must be {{host, port}} or \"host:port\", got {}",
                    kind(other)
                )),
            }
        })
        .collect()
}

/// The keys of `root` other than `skip`, as an endpoint object (credentials, TLS, db).
fn credentials(root: &Map<String, Value>, skip: &str) -> Result<RedisEndpoint, String> {
    let mut rest = root.clone();
    rest.remove(skip);
    for k in ["host", "port", "url", "socket", "*", "pub", "sub"] {
        if rest.get(k).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{ROOT}.{k} cannot be given with {ROOT}.{skip} (the nodes come from {ROOT}.{skip})"
            ));
        }
    }
    endpoint(&Value::Object(rest), ROOT)
}

/// `{cluster: [seed, ...], password, username, tls}`.
fn cluster(
    nodes: &Value,
    root: &Map<String, Value>,
) -> Result<(Vec<(String, u16)>, RedisEndpoint), String> {
    let nodes = node_list(nodes, &format!("{ROOT}.cluster"))?;
    let mut e = credentials(root, "cluster")?;
    if e.db.is_some_and(|d| d != 0) {
        return Err(format!("{ROOT}.db: a Redis Cluster has only database 0"));
    }
    e.db = None;
    (e.host, e.port) = nodes[0].clone();
    Ok((nodes, e))
}

/// `{sentinel: {name, nodes: [...], password, username}, password, username, db, tls}`.
fn sentinel(v: &Value, root: &Map<String, Value>) -> Result<(Topology, RedisEndpoint), String> {
    let path = format!("{ROOT}.sentinel");
    let Value::Object(s) = v else {
        return Err(format!(
            "{path} must be {{name, nodes: [{{host, port}}, ...]}}, got {}",
            kind(v)
        ));
    };
    let name = match s.get("name").filter(|n| !n.is_null()) {
        Some(n) => non_empty_string(n, &format!("{path}.name"))?,
        None => return Err(format!("{path}.name is missing (the master's name)")),
    };
    let nodes = match s.get("nodes").filter(|n| !n.is_null()) {
        Some(n) => node_list(n, &format!("{path}.nodes"))?,
        None => return Err(format!("{path}.nodes is missing (the sentinels)")),
    };
    let username = optional_string(s, "username", &path)?;
    let password = optional_string(s, "password", &path)?;
    let mut e = credentials(root, "sentinel")?;
    (e.host, e.port) = nodes[0].clone();
    let topology = Topology::Sentinel {
        name,
        nodes,
        username,
        password,
    };
    Ok((topology, e))
}

/// One endpoint: `{host, port, url, password, username, db, tls, option: {...}}`, or
/// node-redis 4's `{socket: {host, port, tls, ca, servername}, url, password, username,
/// database}`.
fn endpoint(v: &Value, path: &str) -> Result<RedisEndpoint, String> {
    let obj = match v {
        Value::String(url) => return parse_url(url, path),
        Value::Object(obj) => obj,
        other => return Err(format!("{path} must be an object, got {}", kind(other))),
    };
    check_shape(obj, path)?;
    let mut e = match obj.get("url") {
        None | Some(Value::Null) => RedisEndpoint::default(),
        Some(Value::String(url)) => parse_url(url, &format!("{path}.url"))?,
        Some(other) => return Err(format!("{path}.url must be a string, got {}", kind(other))),
    };
    // node-redis 4: the address and TLS live in `socket`, the database is `database`.
    let mut socket_tls = None;
    match obj.get("socket") {
        None | Some(Value::Null) => {}
        Some(Value::Object(socket)) => {
            let sp = format!("{path}.socket");
            if let Some(h) = socket.get("host").filter(|h| !h.is_null()) {
                e.host = non_empty_string(h, &format!("{sp}.host"))?;
            }
            if let Some(p) = socket.get("port").filter(|p| !p.is_null()) {
                e.port = port(p, &format!("{sp}.port"))?;
            }
            if let Some(p) = socket.get("path").filter(|p| !p.is_null()) {
                return Err(format!(
                    "{sp}.path: a Unix socket is not supported (got {p}); give host and port"
                ));
            }
            match socket.get("tls") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(Value::Bool(true)) => {
                    socket_tls = Some(tls(&Value::Object(socket.clone()), &sp)?)
                }
                Some(other) => {
                    return Err(format!("{sp}.tls must be a boolean, got {}", kind(other)))
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "{path}.socket must be an object, got {}",
                kind(other)
            ))
        }
    }
    if let Some(d) = obj.get("database").filter(|d| !d.is_null()) {
        e.db = Some(db(d, &format!("{path}.database"))?);
    }
    if let Some(h) = obj.get("host").filter(|h| !h.is_null()) {
        e.host = non_empty_string(h, &format!("{path}.host"))?;
    }
    if let Some(p) = obj.get("port").filter(|p| !p.is_null()) {
        e.port = port(p, &format!("{path}.port"))?;
    }
    // `tls` on the endpoint wins over node_redis' `option.tls` (and node-redis' `socket.tls`),
    // and all of them over the URL's scheme.
    let mut tls_setting = match obj.get("tls") {
        Some(t) => Some(tls(t, &format!("{path}.tls"))?),
        None => socket_tls,
    };

    // node_redis' options object: `password` / `auth_pass`, `db`, `tls`.
    let option_path = format!("{path}.option");
    let sources: Vec<(&Map<String, Value>, String)> = match obj.get("option") {
        None | Some(Value::Null) => vec![(obj, path.to_owned())],
        Some(Value::Object(option)) => {
            if let (None, Some(t)) = (&tls_setting, option.get("tls")) {
                tls_setting = Some(tls(t, &format!("{option_path}.tls"))?);
            }
            vec![(option, option_path), (obj, path.to_owned())]
        }
        Some(other) => {
            return Err(format!(
                "{option_path} must be an object, got {}",
                kind(other)
            ))
        }
    };
    if let Some(t) = tls_setting {
        e.tls = t;
    }
    // Later sources (the endpoint itself) win over `option`.
    for (src, p) in sources {
        for key in ["password", "auth_pass"] {
            if let Some(pw) = optional_string(src, key, &p)? {
                e.password = Some(pw);
            }
        }
        if let Some(user) = optional_string(src, "username", &p)? {
            e.username = Some(user);
        }
        if let Some(d) = src.get("db").filter(|d| !d.is_null()) {
            e.db = Some(db(d, &format!("{p}.db"))?);
        }
    }
    Ok(e)
}

/// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
fn parse_url(url: &str, path: &str) -> Result<RedisEndpoint, String> {
    let bad = |why: &str| format!("{path}: invalid Redis URL {url:?}: {why}");
    let (rest, secure) = match url.split_once("://") {
        Some(("redis", rest)) => (rest, false),
        Some(("rediss", rest)) => (rest, true),
        _ => return Err(bad("expected redis://host:port")),
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut e = RedisEndpoint {
        tls: secure.then(RedisTls::default),
        ..RedisEndpoint::default()
    };
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in user name"))?;
            if !user.is_empty() {
                e.username = Some(user);
            }
            if let Some(p) = pass {
                let p = percent_decode(p).ok_or_else(|| bad("bad %-escape in password"))?;
                if !p.is_empty() {
                    e.password = Some(p);
                }
            }
            hp
        }
        None => authority,
    };
    let (host, port_text) = if let Some(v6) = host_port.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if !host.is_empty() {
        e.host = host.to_owned();
    }
    if let Some(p) = port_text.filter(|p| !p.is_empty()) {
        e.port = port(&Value::String(p.to_owned()), &format!("{path} (port)"))?;
    }
    let db_text = tail
        .strip_prefix('/')
        .map(|t| t.split(['?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    if !db_text.is_empty() {
        e.db = Some(db(
            &Value::String(db_text.to_owned()),
            &format!("{path} (database)"),
        )?);
    }
    Ok(e)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(host: &str, port: u16) -> RedisEndpoint {
        RedisEndpoint {
            host: host.to_owned(),
            port,
            ..RedisEndpoint::default()
        }
    }

    #[test]
    fn weroll_shapes() {
        let c = RedisConfig::from_json(&json!({"host": "10.0.0.5", "port": 6380})).unwrap();
        assert_eq!(c.publisher, ep("10.0.0.5", 6380));
        assert_eq!(c.subscriber, ep("10.0.0.5", 6380));
        assert_eq!(c.key, "realtime");
        assert_eq!(c.requests_timeout, Duration::from_secs(5));

        let c = RedisConfig::from_json(
            &json!({"*": {"host": "r", "port": "6390", "option": {"auth_pass": "pw", "db": 2, "retry_strategy": null}}, "key": "socket.io"}),
        )
        .unwrap();
        let mut want = ep("r", 6390);
        want.password = Some("pw".into());
        want.db = Some(2);
        assert_eq!(c.publisher, want);
        assert_eq!(c.subscriber, want);
        assert_eq!(c.key, "socket.io");

        let c = RedisConfig::from_json(
            &json!({"pub": {"host": "a", "port": 1}, "sub": {"host": "b", "port": 2}, "prefix": "app", "requestsTimeout": 1500}),
        )
        .unwrap();
        assert_eq!((c.publisher, c.subscriber), (ep("a", 1), ep("b", 2)));
        assert_eq!(c.key, "app");
        assert_eq!(c.requests_timeout, Duration::from_millis(1500));

        let c = RedisConfig::from_json(&json!({})).unwrap();
        assert_eq!(c, RedisConfig::default());
    }

    #[test]
    fn node_redis_4_socket_shape() {
        let c = RedisConfig::from_json(
            &json!({"socket": {"host": "r4", "port": 6400}, "password": "pw", "database": 1}),
        )
        .unwrap();
        let mut want = ep("r4", 6400);
        want.password = Some("pw".into());
        want.db = Some(1);
        assert_eq!(c.publisher, want);
        let c = RedisConfig::from_json(&json!({"socket": {"host": "r", "tls": true}})).unwrap();
        assert_eq!(c.publisher.tls, Some(RedisTls::default()));
        // Node options beside an address are ignored.
        let c = RedisConfig::from_json(&json!({"host": "h", "family": 4})).unwrap();
        assert_eq!(c.publisher, ep("h", 6379));
    }

    #[test]
    fn cluster_and_sentinel() {
        let c = RedisConfig::from_json(&json!({
            "cluster": [{"host": "n1", "port": 7000}, "n2:7001"],
            "password": "pw",
            "tls": true,
            "key": "k"
        }))
        .unwrap();
        assert_eq!(
            c.topology,
            Topology::Cluster(vec![("n1".into(), 7000), ("n2".into(), 7001)])
        );
        assert_eq!(c.publisher.password.as_deref(), Some("pw"));
        assert_eq!(c.publisher.tls, Some(RedisTls::default()));
        assert_eq!((c.publisher.host.as_str(), c.publisher.port), ("n1", 7000));
        assert_eq!(c.key, "k");

        let c = RedisConfig::from_json(&json!({
            "sentinel": {"name": "mymaster", "nodes": [{"host": "s1", "port": 26379}], "password": "spw"},
            "password": "mpw",
            "db": 3
        }))
        .unwrap();
        assert_eq!(
            c.topology,
            Topology::Sentinel {
                name: "mymaster".into(),
                nodes: vec![("s1".into(), 26379)],
                username: None,
                password: Some("spw".into()),
            }
        );
        assert_eq!(c.publisher.password.as_deref(), Some("mpw"));
        assert_eq!(c.publisher.db, Some(3));
        assert_eq!(c.subscriber, c.publisher);
    }

    #[test]
    fn modes() {
        let m = |v: Value| RedisConfig::from_json(&v).map(|c| c.mode);
        assert_eq!(m(json!({"host": "h"})), Ok(PubSubMode::Classic));
        assert_eq!(
            m(json!({"host": "h", "adapter": "sharded"})),
            Ok(PubSubMode::Sharded(SubscriptionMode::Dynamic))
        );
        assert_eq!(
            m(json!({"cluster": ["a:1"], "adapter": "sharded", "subscriptionMode": "static"})),
            Ok(PubSubMode::Sharded(SubscriptionMode::Static))
        );
        assert_eq!(
            m(json!({"adapter": "sharded", "subscriptionMode": "dynamic-private"})),
            Ok(PubSubMode::Sharded(SubscriptionMode::DynamicPrivate))
        );
        assert_eq!(
            m(json!({"adapter": "streams"})),
            Ok(PubSubMode::Streams(StreamsConfig::default()))
        );
        let custom = StreamsConfig {
            stream_name: "s".into(),
            max_len: 50,
            read_count: 7,
            block_time: Duration::from_millis(100),
            session_key_prefix: "p:".into(),
        };
        assert_eq!(
            m(
                json!({"adapter": "streams", "streamName": "s", "maxLen": 50, "readCount": 7,
                "blockTimeInMs": 100, "sessionKeyPrefix": "p:", "streamCount": 1})
            ),
            Ok(PubSubMode::Streams(custom))
        );
        for bad in [
            json!({"adapter": "streams", "maxLen": 0}),
            json!({"adapter": "streams", "streamCount": 2}),
            json!({"adapter": "streams", "streamName": ""}),
            json!({"adapter": "streams", "useShardedPubSub": true}),
        ] {
            assert!(m(bad.clone()).is_err(), "{bad}");
        }
        assert!(m(json!({"adapter": "nope"}))
            .unwrap_err()
            .contains("cluster.adapter"));
        assert!(m(json!({"adapter": "sharded", "subscriptionMode": "x"}))
            .unwrap_err()
            .contains("cluster.subscriptionMode"));
    }

    #[test]
    fn offline_queue() {
        let q = |v: Value| RedisConfig::from_json(&v).unwrap().offline_queue;
        assert_eq!(q(json!({"host": "h"})), OfflineQueue::DEFAULT);
        assert!(!q(json!({"offlineQueue": false})).enabled());
        assert_eq!(q(json!({"offlineQueue": 1000})).max_bytes, 1000);
        assert_eq!(
            q(json!({"offlineQueue": {"maxAge": 2000, "flushWait": 100.5}})),
            OfflineQueue {
                max_age: Duration::from_secs(2),
                flush_wait: Duration::from_millis(101),
                ..OfflineQueue::DEFAULT
            }
        );
    }

    #[test]
    fn urls() {
        let c =
            RedisConfig::from_json(&json!({"url": "redis://u:p%40ss@h.example:7000/3"})).unwrap();
        assert_eq!(
            c.publisher,
            RedisEndpoint {
                host: "h.example".into(),
                port: 7000,
                username: Some("u".into()),
                password: Some("p@ss".into()),
                db: Some(3),
                tls: None,
            }
        );
        let c = RedisConfig::from_json(&json!("redis://:secret@[::1]:6379")).unwrap();
        assert_eq!(c.publisher.host, "::1");
        assert_eq!(c.publisher.password.as_deref(), Some("secret"));
        assert_eq!(c.publisher.username, None);
        assert_eq!(c.publisher.to_string(), "[::1]:6379");
        // Explicit keys override the URL.
        let c = RedisConfig::from_json(&json!({"url": "redis://h", "port": 7001, "password": "x"}))
            .unwrap();
        assert_eq!(
            (c.publisher.port, c.publisher.password.as_deref()),
            (7001, Some("x"))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (json!({"port": "abc"}), "cluster.redis.port"),
            (json!({"*": {"port": 0}}), "cluster.redis.*.port"),
            (
                json!({"pub": {"host": "a"}}),
                "cluster.redis.sub is missing",
            ),
            (
                json!({"pub": {}, "sub": {"db": 300}}),
                "cluster.redis.sub.db",
            ),
            (
                json!({"pub": {}, "sub": {"option": {"db": "x"}}}),
                "cluster.redis.sub.option.db",
            ),
            (json!({"key": 5}), "cluster.redis.key"),
            (
                json!({"requestsTimeout": -1}),
                "cluster.redis.requestsTimeout",
            ),
            (
                json!({"tls": {"rejectUnauthorized": false}}),
                "cluster.redis.tls.rejectUnauthorized",
            ),
            (
                json!({"*": {"option": {"tls": {"cert": "x"}}}}),
                "cluster.redis.*.option.tls.cert",
            ),
            (json!({"tls": {"ca": 5}}), "cluster.redis.tls.ca"),
            (json!({"tls": "yes"}), "cluster.redis.tls must be"),
            (
                json!({"url": "http://h"}),
                "cluster.redis.url: invalid Redis URL",
            ),
            (
                json!({"url": "redis://h:99999"}),
                "cluster.redis.url (port)",
            ),
            (json!({"password": 5}), "cluster.redis.password"),
            (json!([1]), "cluster.redis must be an object"),
            (
                json!({"sentinels": [{"host": "a", "port": 26379}], "name": "m"}),
                "cluster.redis.sentinels: Redis Sentinel is given as {sentinel:",
            ),
            (
                json!({"nodes": [{"host": "a", "port": 7000}]}),
                "cluster.redis.nodes: a Redis Cluster is given as {cluster:",
            ),
            (
                json!({"hosts": ["a:6379"]}),
                "cluster.redis: unknown shape (keys hosts)",
            ),
            (
                json!({"*": {"server": "a"}}),
                "cluster.redis.*: unknown shape (keys server)",
            ),
            (json!({"path": "/tmp/redis.sock"}), "a Unix socket"),
            (
                json!({"cluster": []}),
                "cluster.redis.cluster must name at least one node",
            ),
            (
                json!({"cluster": [{"host": "a"}]}),
                "cluster.redis.cluster[0].port is missing",
            ),
            (
                json!({"cluster": ["a"]}),
                "cluster.redis.cluster[0] must be \"host:port\"",
            ),
            (
                json!({"cluster": [{"host": "a", "port": 1}], "db": 2}),
                "cluster.redis.db: a Redis Cluster has only database 0",
            ),
            (
                json!({"cluster": [{"host": "a", "port": 1}], "host": "b"}),
                "cluster.redis.host cannot be given with cluster.redis.cluster",
            ),
            (
                json!({"sentinel": {"nodes": [{"port": 1}]}}),
                "cluster.redis.sentinel.name is missing",
            ),
            (
                json!({"sentinel": {"name": "m"}}),
                "cluster.redis.sentinel.nodes is missing",
            ),
            (json!({"sentinel": ["a"]}), "cluster.redis.sentinel must be"),
            (
                json!({"socket": {"path": "/tmp/redis.sock"}}),
                "cluster.redis.socket.path",
            ),
            (json!({"offlineQueue": "big"}), "cluster.redis.offlineQueue"),
            (
                json!({"offlineQueue": {"max": 1}}),
                "cluster.redis.offlineQueue.max is unknown",
            ),
            (
                json!({"offlineQueue": {"maxAge": -5}}),
                "cluster.redis.offlineQueue.maxAge",
            ),
        ];
        for (v, want) in cases {
            let e = RedisConfig::from_json(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn tls_from_the_option_the_url_or_node_redis_options() {
        let tls_of = |v: Value| RedisConfig::from_json(&v).unwrap().publisher.tls;
        assert_eq!(tls_of(json!({"host": "h"})), None);
        assert_eq!(tls_of(json!({"tls": false})), None);
        assert_eq!(tls_of(json!({"tls": true})), Some(RedisTls::default()));
        assert_eq!(
            tls_of(json!({"url": "rediss://u:p@h:6380/2"})),
            Some(RedisTls::default())
        );
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            tls_of(json!({"*": {"option": {"tls": {"ca": [pem], "servername": "redis.local"}}}})),
            Some(RedisTls {
                ca: vec![pem.to_owned()],
                servername: Some("redis.local".to_owned()),
            })
        );
        assert_eq!(
            tls_of(json!({"url": "rediss://h", "option": {"tls": {"ca": pem}}})),
            Some(RedisTls {
                ca: vec![pem.to_owned()],
                servername: None,
            })
        );
        assert_eq!(tls_of(json!({"url": "rediss://h", "tls": false})), None);
        assert_eq!(
            tls_of(json!({"tls": {"ca": pem}})),
            Some(RedisTls {
                ca: vec![pem.to_owned()],
                servername: None,
            })
        );
    }
}
