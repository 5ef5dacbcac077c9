//! The Node-API surface. Commands come in as plain synchronous calls (nothing waits on the JS
//! thread); server events go out in batches through one threadsafe function.

mod attach;
mod config;
mod events;
mod node_loop;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use crate::adapter::local::LocalAdapter;
use crate::adapter::redis::{AdapterStatus, RedisAdapterFactory, RedisConfig, StatusCallback};
use crate::adapter::{AdapterFactory, BroadcastFlags, BroadcastOptions};
use crate::protocol::Payload;
use crate::server::{lock, Server, Welcome};
use events::{BatchWriter, EventPump, NativeBatch};

/// Tokio worker threads per process: `WEROLL_NATIVE_THREADS`, default 1. A weroll cluster runs
/// one process per core, so one network thread beside Node's own thread keeps every hand-off
/// between them on two threads, without cross-core work stealing.
fn worker_threads() -> usize {
    std::env::var("WEROLL_NATIVE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=256).contains(n))
        .unwrap_or(1)
}

#[napi_derive::module_init]
fn init() {
    if node_loop::requested_mode() == node_loop::LoopMode::Node {
        if let Some(rt) = node_loop::build_node_runtime() {
            napi::bindgen_prelude::create_custom_tokio_runtime(rt);
            return;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("weroll-native")
        .enable_all()
        .build();
    // On failure napi-rs builds its default runtime on first use instead.
    if let Ok(rt) = runtime {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

type EventCallback = ThreadsafeFunction<NativeBatch, (), NativeBatch, Status, false>;

/// Arguments or ack data crossing the boundary: JSON of the data array (binaries replaced by
/// placeholders) and the binaries.
#[napi(object)]
pub struct NativePayload {
    pub data: String,
    pub attachments: Vec<Buffer>,
}

impl From<Payload> for NativePayload {
    fn from(p: Payload) -> Self {
        NativePayload {
            data: p.json,
            attachments: p
                .attachments
                .iter()
                .map(|b| Buffer::from(b.to_vec()))
                .collect(),
        }
    }
}

/// The answers to a broadcast that asked for acknowledgements.
#[napi(object)]
pub struct NativeAcks {
    /// Every recipient answered in time.
    pub complete: bool,
    /// Each answer: the client's acknowledgement arguments.
    pub responses: Vec<NativePayload>,
}

/// Connection counters.
#[napi(object)]
pub struct NativeStats {
    /// Open Engine.IO sessions.
    pub clients: u32,
    /// Connected sockets over all namespaces.
    pub sockets: u32,
    /// Connection state recovery: events kept, their bytes, and dropped sockets saved.
    pub recovery: Option<NativeRecoveryStats>,
}

/// What connection state recovery keeps now.
#[napi(object)]
pub struct NativeRecoveryStats {
    pub packets: u32,
    pub bytes: f64,
    pub sessions: u32,
}

/// What the Redis adapter's offline queue holds and has done (see `OfflineQueue`).
#[napi(object)]
pub struct NativeQueueStats {
    /// Messages waiting for Redis now.
    pub queued: u32,
    /// Their bytes.
    pub queued_bytes: f64,
    /// Messages published late, once Redis was back.
    pub delivered: f64,
    /// Messages dropped: the queue was full, they were too old, or it is disabled.
    pub dropped: f64,
    /// Outages seen.
    pub outages: f64,
}

/// The answers to a `serverSideEmit` with ack: every other server's, or (`error` set, after
/// the timeout) those that came.
#[napi(object)]
pub struct NativeEmitAnswers {
    pub error: Option<String>,
    pub answers: Vec<NativePayload>,
}

/// One native realtime server.
#[napi]
pub struct NativeServer {
    server: OnceLock<Arc<Server>>,
    pump: Arc<EventPump>,
    callback: Arc<Mutex<Option<EventCallback>>>,
    presence: Mutex<Option<Arc<RedisAdapterFactory>>>,
    /// Events are delivered by the `node` loop on the JavaScript thread, not through
    /// `callback` (which then only keeps the process alive while the server listens).
    local_delivery: bool,
    /// Shared-port requests not answered yet.
    pending: Arc<attach::PendingRequests>,
}

fn payload(data: String, attachments: Option<Vec<Buffer>>) -> Payload {
    Payload {
        json: data,
        attachments: attachments
            .unwrap_or_default()
            .iter()
            .map(|b| Bytes::copy_from_slice(b))
            .collect(),
    }
}

fn options(
    rooms: Option<Vec<String>>,
    except: Option<Vec<String>>,
    local: Option<bool>,
) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.unwrap_or_default(),
        except: except.unwrap_or_default(),
        flags: BroadcastFlags {
            local: local.unwrap_or(false),
            ..Default::default()
        },
    }
}

fn ack_id(id: f64) -> Result<u64> {
    if id.is_finite() && id >= 0.0 && id.fract() == 0.0 && id <= 9_007_199_254_740_991.0 {
        Ok(id as u64)
    } else {
        Err(Error::new(
            Status::InvalidArg,
            format!("invalid ack id {id}"),
        ))
    }
}

fn to_napi<E: std::fmt::Display>(e: E) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

#[napi]
impl NativeServer {
    /// `onEvents(batch)` receives every server event, batched.
    #[napi(constructor)]
    pub fn new(env: Env, on_events: Function<'_, NativeBatch, ()>) -> Result<Self> {
        let pump = Arc::new(EventPump::default());
        // SAFETY: the env and the function of this very call.
        let local_delivery = unsafe { node_loop::register(env.raw(), on_events.raw(), &pump) };
        let callback: EventCallback = on_events
            .build_threadsafe_function()
            .callee_handled::<false>()
            .build()?;
        Ok(NativeServer {
            server: OnceLock::new(),
            pump,
            callback: Arc::new(Mutex::new(Some(callback))),
            presence: Mutex::new(None),
            local_delivery,
            pending: Arc::default(),
        })
    }

    /// The local adapter, or the Redis one when `config.redis` is set (connecting first).
    async fn adapter_factory(&self, cfg: &config::NativeConfig) -> Result<Arc<dyn AdapterFactory>> {
        let Some(raw) = &cfg.redis else {
            return Ok(Arc::new(LocalAdapter));
        };
        let redis_cfg =
            RedisConfig::from_json(raw).map_err(|e| Error::new(Status::InvalidArg, e))?;
        let pump = self.pump.clone();
        let status: StatusCallback = Arc::new(move |s: AdapterStatus| match s {
            AdapterStatus::Connected => pump.push_status(true, "connected".to_string()),
            AdapterStatus::Disconnected(why) => pump.push_status(false, why),
        });
        let factory = RedisAdapterFactory::connect(redis_cfg, status)
            .await
            .map_err(|e| Error::new(Status::GenericFailure, e))?;
        *lock(&self.presence) = Some(factory.clone());
        Ok(factory)
    }

    fn namespace(&self, nsp: &str) -> Result<Arc<crate::server::Namespace>> {
        self.server()?
            .namespace(nsp)
            .ok_or_else(|| Error::new(Status::InvalidArg, format!("unknown namespace {nsp}")))
    }

    fn server(&self) -> Result<&Arc<Server>> {
        self.server
            .get()
            .ok_or_else(|| Error::new(Status::GenericFailure, "server is not started".to_string()))
    }

    /// Creates the server from `config` (JSON), joins the cluster when `config.redis` is set,
    /// declares `namespaces`, and listens on `host:port`. Resolves to the bound port.
    #[napi]
    pub async fn start(
        &self,
        config: String,
        namespaces: Vec<String>,
        host: String,
        port: u32,
    ) -> Result<u32> {
        self.launch(config, namespaces, Some((host, port))).await
    }

    /// Like `start`, without a port of its own: the host's HTTP server hands over the requests
    /// under the path (`adoptUpgrade`, `bridgeUpgrade`, `httpRequest`).
    #[napi]
    pub async fn start_attached(&self, config: String, namespaces: Vec<String>) -> Result<()> {
        self.launch(config, namespaces, None).await.map(|_| ())
    }

    async fn launch(
        &self,
        config: String,
        namespaces: Vec<String>,
        listen: Option<(String, u32)>,
    ) -> Result<u32> {
        if self.server.get().is_some() {
            return Err(Error::new(
                Status::GenericFailure,
                "already started".to_string(),
            ));
        }
        let cfg = config::parse(&config).map_err(|e| Error::new(Status::InvalidArg, e))?;
        if lock(&self.callback).is_none() {
            return Err(Error::new(
                Status::GenericFailure,
                "server is closed".to_string(),
            ));
        }
        let listen = match listen {
            Some((host, port)) => {
                let port = u16::try_from(port)
                    .map_err(|_| Error::new(Status::InvalidArg, format!("invalid port {port}")))?;
                let ip: std::net::IpAddr = host
                    .parse()
                    .map_err(|_| Error::new(Status::InvalidArg, format!("invalid host {host}")))?;
                Some(SocketAddr::new(ip, port))
            }
            None => None,
        };
        if self.local_delivery {
            self.pump.start_local();
        } else {
            self.pump.start(self.callback.clone());
        }
        let started = async {
            let factory: Arc<dyn AdapterFactory> = self.adapter_factory(&cfg).await?;
            let server = Arc::new(Server::new(cfg.server.clone(), self.pump.clone(), factory));
            for ns in &namespaces {
                server.of(ns);
            }
            let bound = match listen {
                Some(addr) => server
                    .listen(addr, Duration::from_millis(cfg.bind_retry_ms))
                    .await
                    .map_err(|e| {
                        Error::new(Status::GenericFailure, format!("listen {addr} failed: {e}"))
                    })?
                    .port(),
                None => {
                    server.attach();
                    0
                }
            };
            Ok::<_, Error>((server, bound))
        }
        .await;
        let (server, bound) = match started {
            Ok(ok) => ok,
            Err(e) => {
                // Nothing listens: leave the cluster and release the event callback's hold on
                // the process, so a failed start never keeps Node alive.
                let presence = lock(&self.presence).take();
                if let Some(presence) = presence {
                    presence.close().await;
                }
                self.pump.stop();
                return Err(e);
            }
        };
        let presence = lock(&self.presence).clone();
        if let (Some(presence), Some(address)) = (presence, cfg.public_address.clone()) {
            let weak = Arc::downgrade(&server);
            presence.start_presence(
                address,
                Arc::new(move || weak.upgrade().map(|s| s.client_count()).unwrap_or(0)),
                cfg.presence_interval,
            );
        }
        let _ = self.server.set(server);
        Ok(u32::from(bound))
    }

    /// Closes every client, leaves the cluster and stops emitting events, so the process can exit.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        if let Some(server) = self.server.get() {
            server.close().await;
        }
        let presence = lock(&self.presence).take();
        if let Some(presence) = presence {
            presence.close().await;
        }
        self.pump.close();
        lock(&self.callback).take();
        Ok(())
    }

    /// Stops this server from keeping the process alive (like `net.Server#unref`).
    #[napi]
    #[allow(deprecated)]
    pub fn unref(&self, env: Env) -> Result<()> {
        if let Some(cb) = lock(&self.callback).as_mut() {
            cb.unref(&env)?;
        }
        Ok(())
    }

    /// Lets this server keep the process alive again.
    #[napi(js_name = "ref")]
    #[allow(deprecated)]
    pub fn refer(&self, env: Env) -> Result<()> {
        if let Some(cb) = lock(&self.callback).as_mut() {
            cb.refer(&env)?;
        }
        Ok(())
    }

    /// Declares a namespace.
    #[napi]
    pub fn of(&self, nsp: String) -> Result<()> {
        self.server()?.of(&nsp);
        Ok(())
    }

    /// How JavaScript hears of new sockets of `nsp`: at once (`lazy` false), or when a socket
    /// first sends something or is asked for with `announce` (`lazy` true). `welcomeRoomPrefix`
    /// and `welcomeEvent` (both or neither) make every new socket join `prefix + id` and get
    /// `event` with `{time, socketID, clientID}` natively; its connection event then says
    /// `welcomed`.
    #[napi]
    pub fn set_announce(
        &self,
        nsp: String,
        lazy: bool,
        welcome_room_prefix: Option<String>,
        welcome_event: Option<String>,
    ) -> Result<()> {
        let welcome = match (welcome_room_prefix, welcome_event) {
            (Some(room_prefix), Some(event)) => Some(Welcome { room_prefix, event }),
            (None, None) => None,
            _ => {
                return Err(Error::new(
                    Status::InvalidArg,
                    "welcomeRoomPrefix and welcomeEvent go together".to_string(),
                ))
            }
        };
        self.server()?.of(&nsp).set_announce(lazy, welcome);
        Ok(())
    }

    /// Connection events (a batch as `onEvents` gets it) of the sockets of `nsp` JavaScript has
    /// not heard of yet (all, or the one with id `sid`); they count as heard of afterwards.
    #[napi]
    pub fn announce(&self, nsp: String, sid: Option<String>) -> Result<NativeBatch> {
        let mut batch = BatchWriter::default();
        if let Some(ns) = self.server()?.namespace(&nsp) {
            for e in ns.announce_pending(sid.as_deref()) {
                batch.push(events::Outgoing::Server(e));
            }
        }
        Ok(batch.finish())
    }

    /// Whether new sockets of `nsp` wait for `accept` / `refuse` (JavaScript middlewares).
    #[napi]
    pub fn set_gated(&self, nsp: String, gated: bool) -> Result<()> {
        self.server()?.of(&nsp).set_gated(gated);
        Ok(())
    }

    /// Lets a pending socket connect (CONNECT sent). False if it is gone or was not pending.
    #[napi]
    pub fn accept(&self, sid: String) -> Result<bool> {
        Ok(self.server()?.socket(&sid).is_some_and(|s| s.accept()))
    }

    /// Turns a pending socket away with CONNECT_ERROR `{message, data}`; `data` is JSON.
    #[napi]
    pub fn refuse(&self, sid: String, message: String, data: Option<String>) -> Result<bool> {
        if let Some(d) = &data {
            use serde::Deserialize as _;
            let mut de = serde_json::Deserializer::from_str(d);
            serde::de::IgnoredAny::deserialize(&mut de)
                .and_then(|_| de.end())
                .map_err(|e| {
                    Error::new(Status::InvalidArg, format!("refuse: data is not JSON: {e}"))
                })?;
        }
        Ok(self
            .server()?
            .socket(&sid)
            .is_some_and(|s| s.refuse(&message, data.as_deref())))
    }

    /// Emits to one socket; `ack` asks the client to acknowledge with that id.
    #[napi]
    pub fn emit(
        &self,
        sid: String,
        data: String,
        attachments: Option<Vec<Buffer>>,
        ack: Option<f64>,
    ) -> Result<bool> {
        let ack = ack.map(ack_id).transpose()?;
        Ok(match self.server()?.socket(&sid) {
            Some(s) => s.emit(&payload(data, attachments), ack),
            None => false,
        })
    }

    /// Acknowledges the client's event `id`.
    #[napi]
    pub fn ack(
        &self,
        sid: String,
        id: f64,
        data: String,
        attachments: Option<Vec<Buffer>>,
    ) -> Result<bool> {
        let id = ack_id(id)?;
        Ok(match self.server()?.socket(&sid) {
            Some(s) => s.ack(id, &payload(data, attachments)),
            None => false,
        })
    }

    /// Joins one socket to rooms.
    #[napi]
    pub fn join(&self, sid: String, rooms: Vec<String>) -> Result<bool> {
        Ok(match self.server()?.socket(&sid) {
            Some(s) => {
                s.join(&rooms);
                true
            }
            None => false,
        })
    }

    /// Removes one socket from a room.
    #[napi]
    pub fn leave(&self, sid: String, room: String) -> Result<bool> {
        Ok(match self.server()?.socket(&sid) {
            Some(s) => {
                s.leave(&room);
                true
            }
            None => false,
        })
    }

    /// socket.io's handshake object of one socket, as JSON.
    #[napi]
    pub fn handshake(&self, sid: String) -> Result<Option<String>> {
        Ok(self.server()?.socket(&sid).map(|s| s.handshake_json()))
    }

    /// The Engine.IO connection under a socket: `[its id, "polling" | "websocket"]`.
    #[napi]
    pub fn socket_conn(&self, sid: String) -> Result<Option<Vec<String>>> {
        Ok(self.server()?.socket(&sid).map(|s| {
            let conn = s.connection();
            let transport = if conn.is_websocket() {
                "websocket"
            } else {
                "polling"
            };
            vec![conn.id().to_string(), transport.to_string()]
        }))
    }

    /// Upgrades to websocket are told to JavaScript from now on, or not.
    #[napi]
    pub fn watch_upgrades(&self, on: bool) -> Result<()> {
        self.server()?.watch_upgrades(on);
        Ok(())
    }

    /// Room joins and leaves in `nsp` are told to JavaScript from now on, or not.
    #[napi]
    pub fn watch_rooms(&self, nsp: String, on: bool) -> Result<()> {
        self.server()?.watch_rooms(&nsp, on);
        Ok(())
    }

    /// Rooms of one socket (its own id excluded).
    #[napi]
    pub fn socket_rooms(&self, sid: String) -> Result<Vec<String>> {
        Ok(self
            .server()?
            .socket(&sid)
            .map(|s| s.rooms())
            .unwrap_or_default())
    }

    /// Disconnects one socket; `close` also closes its connection.
    #[napi]
    pub fn disconnect(&self, sid: String, close: bool) -> Result<bool> {
        Ok(self.server()?.disconnect(&sid, close))
    }

    /// Broadcasts `data` (`["event", ...args]`) in a namespace; resolves local recipients count.
    #[napi]
    pub fn broadcast(
        &self,
        nsp: String,
        data: String,
        attachments: Option<Vec<Buffer>>,
        rooms: Option<Vec<String>>,
        except: Option<Vec<String>>,
        local: Option<bool>,
    ) -> Result<()> {
        self.namespace(&nsp)?
            .broadcast(payload(data, attachments), &options(rooms, except, local));
        Ok(())
    }

    /// Broadcasts `data` asking every recipient (on every server) to acknowledge; resolves once
    /// all answered or after `timeoutMs`, with whether all answered and the answers.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub async fn broadcast_with_ack(
        &self,
        nsp: String,
        data: String,
        attachments: Option<Vec<Buffer>>,
        rooms: Option<Vec<String>>,
        except: Option<Vec<String>>,
        local: Option<bool>,
        timeout_ms: f64,
    ) -> Result<NativeAcks> {
        let ns = self.namespace(&nsp)?;
        let timeout = Duration::from_millis(if timeout_ms.is_finite() && timeout_ms > 0.0 {
            timeout_ms.min(u32::MAX as f64) as u64
        } else {
            0
        });
        let (complete, answers) = ns
            .broadcast_with_ack(
                payload(data, attachments),
                &options(rooms, except, local),
                timeout,
            )
            .await;
        Ok(NativeAcks {
            complete,
            responses: answers.into_iter().map(NativePayload::from).collect(),
        })
    }

    /// `socketsJoin` / `socketsLeave` (`join` false) over the cluster.
    #[napi]
    pub fn sockets_join(
        &self,
        nsp: String,
        rooms: Option<Vec<String>>,
        except: Option<Vec<String>>,
        local: Option<bool>,
        targets: Vec<String>,
        join: bool,
    ) -> Result<()> {
        let server = self.server()?;
        if let Some(ns) = server.namespace(&nsp) {
            let opts = options(rooms, except, local);
            if join {
                ns.sockets_join(&opts, &targets);
            } else {
                ns.sockets_leave(&opts, &targets);
            }
        }
        Ok(())
    }

    /// `disconnectSockets` over the cluster.
    #[napi]
    pub fn disconnect_sockets(
        &self,
        nsp: String,
        rooms: Option<Vec<String>>,
        except: Option<Vec<String>>,
        local: Option<bool>,
        close: bool,
    ) -> Result<()> {
        if let Some(ns) = self.server()?.namespace(&nsp) {
            ns.disconnect_sockets(&options(rooms, except, local), close);
        }
        Ok(())
    }

    /// Saves a dropped socket of `nsp` for the cluster, under private id `pid` (connection
    /// state recovery kept by the cluster: the disconnect event names the pid).
    /// `state_json`: what JavaScript keeps of it, as JSON.
    #[napi]
    pub fn persist_session(
        &self,
        nsp: String,
        sid: String,
        pid: String,
        rooms: Vec<String>,
        state_json: Option<String>,
    ) -> Result<()> {
        if let Some(ns) = self.server()?.namespace(&nsp) {
            ns.persist_session(&sid, &pid, &rooms, state_json);
        }
        Ok(())
    }

    /// What JavaScript keeps of live socket `sid` of `nsp` changed (JSON): it goes with the
    /// socket's next checkpoint, when the cluster keeps sessions.
    #[napi]
    pub fn checkpoint(&self, nsp: String, sid: String, state_json: String) -> Result<()> {
        if let Some(ns) = self.server()?.namespace(&nsp) {
            ns.set_checkpoint_state(&sid, state_json);
        }
        Ok(())
    }

    /// Ids of this server's sockets in `room` of `nsp`.
    #[napi]
    pub fn room_members(&self, nsp: String, room: String) -> Result<Vec<String>> {
        Ok(self
            .server()?
            .namespace(&nsp)
            .map(|ns| ns.room_members(&room))
            .unwrap_or_default())
    }

    /// `fetchSockets()` over the cluster, as JSON `[{id, rooms, handshake, data}]`.
    #[napi]
    pub async fn fetch_sockets(
        &self,
        nsp: String,
        rooms: Option<Vec<String>>,
        except: Option<Vec<String>>,
        local: Option<bool>,
    ) -> Result<String> {
        let server = self.server()?.clone();
        let sockets = server
            .fetch_sockets(&nsp, options(rooms, except, local))
            .await
            .map_err(to_napi)?;
        let list: Vec<serde_json::Value> = sockets
            .into_iter()
            .map(|s| {
                serde_json::json!({"id": s.id, "rooms": s.rooms, "handshake": s.handshake, "data": s.data})
            })
            .collect();
        Ok(serde_json::Value::Array(list).to_string())
    }

    /// Every room over the cluster.
    #[napi]
    pub async fn all_rooms(&self, nsp: String) -> Result<Vec<String>> {
        let server = self.server()?.clone();
        server.all_rooms(&nsp).await.map_err(to_napi)
    }

    /// Number of servers in the cluster.
    #[napi]
    pub async fn server_count(&self, nsp: String) -> Result<u32> {
        let server = self.server()?.clone();
        Ok(u32::try_from(server.server_count(&nsp).await).unwrap_or(u32::MAX))
    }

    /// socket.io-redis 3's `customRequest(data)` to the other servers (`data`: JSON of
    /// `[data]`); resolves their answers, each `[data]`, with the error after `timeoutMs`.
    #[napi]
    pub async fn custom_request(
        &self,
        nsp: String,
        data: String,
        timeout_ms: u32,
    ) -> Result<NativeEmitAnswers> {
        let server = self.server()?.clone();
        let result = server
            .custom_request(
                &nsp,
                payload(data, None),
                Duration::from_millis(u64::from(timeout_ms)),
            )
            .await;
        emit_answers(result)
    }

    /// `serverSideEmit` to the other servers; with `timeoutMs`, resolves their answers.
    #[napi]
    pub async fn server_side_emit(
        &self,
        nsp: String,
        data: String,
        attachments: Option<Vec<Buffer>>,
        timeout_ms: Option<u32>,
    ) -> Result<NativeEmitAnswers> {
        let server = self.server()?.clone();
        let result = server
            .server_side_emit(
                &nsp,
                payload(data, attachments),
                timeout_ms.map(|t| Duration::from_millis(u64::from(t))),
            )
            .await;
        emit_answers(result)
    }

    /// Answers another server's `serverSideEmit` (token from the event).
    #[napi]
    pub fn reply(
        &self,
        token: f64,
        data: String,
        attachments: Option<Vec<Buffer>>,
    ) -> Result<bool> {
        let token = ack_id(token)?;
        Ok(self.server()?.reply(token, payload(data, attachments)))
    }

    /// Live servers of the cluster and their connection counts, fewest first, as JSON
    /// `[{address, connections}]` (empty without Redis).
    #[napi]
    pub async fn servers(&self) -> Result<String> {
        let presence = lock(&self.presence).clone();
        let list = match presence {
            Some(p) => p.servers().await.map_err(to_napi)?,
            None => Vec::new(),
        };
        let list: Vec<serde_json::Value> = list
            .into_iter()
            .map(|(address, connections)| {
                serde_json::json!({"address": address, "connections": connections})
            })
            .collect();
        Ok(serde_json::Value::Array(list).to_string())
    }

    /// This server's counters and current figures (JSON; `lib/metrics.js` turns them into
    /// `metrics()` and the Prometheus text).
    #[napi]
    pub fn metrics(&self) -> String {
        let Some(s) = self.server.get() else {
            return "null".to_string();
        };
        let m = s.metrics();
        let e = &m.engine;
        let namespaces: Vec<serde_json::Value> = m
            .namespaces
            .iter()
            .map(|(name, sockets, rooms)| serde_json::json!({"name": name, "sockets": sockets, "rooms": rooms}))
            .collect();
        serde_json::json!({
            "connections": {
                "polling": {"3": e.polling_v3, "4": e.polling_v4},
                "websocket": {"3": e.websocket_v3, "4": e.websocket_v4},
            },
            "sessionsOpened": e.opened,
            "handshakeErrors": e.refused,
            "slowClientsDropped": e.slow_drops,
            "eventsIn": m.events_in,
            "bytesIn": m.bytes_in,
            "eventsOut": m.events_out,
            "bytesOut": m.bytes_out,
            "broadcasts": m.broadcasts,
            "deliveries": m.deliveries,
            "namespaces": namespaces,
        })
        .to_string()
    }

    /// The Redis adapter's offline queue, or nothing without Redis.
    #[napi]
    pub fn offline_queue(&self) -> Option<NativeQueueStats> {
        let factory = lock(&self.presence).clone()?;
        let s = factory.queue_stats();
        Some(NativeQueueStats {
            queued: u32::try_from(s.queued).unwrap_or(u32::MAX),
            queued_bytes: s.queued_bytes as f64,
            delivered: s.delivered as f64,
            dropped: s.dropped as f64,
            outages: s.outages as f64,
        })
    }

    /// Connection counters of this server.
    #[napi]
    pub fn stats(&self) -> NativeStats {
        match self.server.get() {
            Some(s) => NativeStats {
                clients: u32::try_from(s.client_count()).unwrap_or(u32::MAX),
                sockets: u32::try_from(s.socket_count()).unwrap_or(u32::MAX),
                recovery: s.recovery_stats().map(|(p, b, n)| NativeRecoveryStats {
                    packets: u32::try_from(p).unwrap_or(u32::MAX),
                    bytes: b as f64,
                    sessions: u32::try_from(n).unwrap_or(u32::MAX),
                }),
            },
            None => NativeStats {
                clients: 0,
                sockets: 0,
                recovery: None,
            },
        }
    }
}

/// Which design drives this process's sockets: `"node"` (on Node's own event loop, the
/// JavaScript thread) or `"thread"` (a network thread beside it); see `WEROLL_NATIVE_LOOP`.
#[napi]
pub fn event_loop() -> &'static str {
    match node_loop::mode() {
        node_loop::LoopMode::Node => "node",
        node_loop::LoopMode::Thread => "thread",
    }
}

/// Encodes a JSON value as MessagePack (weroll's `compress` option).
#[napi]
pub fn msgpack_encode(json: String) -> Result<Buffer> {
    let value = crate::adapter::msgpack::from_json(&json)
        .map_err(|e| Error::new(Status::InvalidArg, e.0))?;
    Ok(Buffer::from(crate::adapter::msgpack::encode(&value)))
}

/// Cluster answers for JavaScript: as socket.io, a timeout is the error with the answers that
/// did come.
fn emit_answers(
    result: std::result::Result<Vec<Payload>, crate::adapter::AdapterError>,
) -> Result<NativeEmitAnswers> {
    let answers = |a: Vec<Payload>| a.into_iter().map(NativePayload::from).collect();
    match result {
        Ok(a) => Ok(NativeEmitAnswers {
            error: None,
            answers: answers(a),
        }),
        Err(crate::adapter::AdapterError::Timeout {
            expected,
            received,
            acks,
        }) => Ok(NativeEmitAnswers {
            error: Some(
                crate::adapter::AdapterError::Timeout {
                    expected,
                    received,
                    acks: Vec::new(),
                }
                .to_string(),
            ),
            answers: answers(acks),
        }),
        Err(e) => Err(to_napi(e)),
    }
}
