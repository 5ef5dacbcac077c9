//! One namespace's side of the cluster: what it publishes ([`RedisAdapter`]) and how it serves
//! what the other servers publish ([`Namespace::handle`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::link::{log, Link, Throttle};
use super::shared::{self, AckRequests};
use super::wire::{self, Channels, RequestType};
use super::{ChannelKind, Closing, Listening, OnClose, Serving};
use crate::adapter::msgpack::{self, Value};
use crate::adapter::{
    AckCollector, Adapter, AdapterError, BroadcastOptions, LocalNamespace, RemoteSocket,
};
use crate::protocol::Payload;

/// A message for a namespace, by the kind of channel it came on.
#[derive(Debug)]
pub enum Inbound {
    /// From `P#NSP#` or a room channel `P#NSP#ROOM#`.
    Broadcast(Bytes),
    /// From `P-request#NSP#`.
    Request(Bytes),
    /// From `P-response#NSP#` or `P-response#NSP#UID#`.
    Response(Bytes),
    /// An entry of the stream (streams mode).
    Entry(Box<super::streams::Entry>),
}

impl Inbound {
    /// The size of its body.
    pub fn len(&self) -> usize {
        match self {
            Inbound::Broadcast(b) | Inbound::Request(b) | Inbound::Response(b) => b.len(),
            Inbound::Entry(e) => e.len(),
        }
    }
}

/// What a request of this server collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AllRooms,
    Fetch,
    ServerSideEmit,
    /// socket.io-redis 3's `customRequest` (weroll 1.x's `invoke`).
    Custom,
}

enum Collected {
    Rooms(Vec<String>),
    Sockets(Vec<RemoteSocket>),
    Acks(Vec<Payload>),
}

struct Pending {
    kind: Kind,
    expected: usize,
    received: usize,
    rooms: Vec<String>,
    seen_rooms: HashSet<String>,
    sockets: Vec<RemoteSocket>,
    acks: Vec<Payload>,
    done: Option<oneshot::Sender<Collected>>,
}

impl Pending {
    fn collected(&mut self) -> Collected {
        match self.kind {
            Kind::AllRooms => Collected::Rooms(std::mem::take(&mut self.rooms)),
            Kind::Fetch => Collected::Sockets(std::mem::take(&mut self.sockets)),
            Kind::ServerSideEmit | Kind::Custom => Collected::Acks(std::mem::take(&mut self.acks)),
        }
    }
}

/// State of one namespace on this server.
pub struct Namespace {
    /// Namespace name, with its leading slash.
    pub name: String,
    /// This adapter's id on the wire; messages carrying it are this server's own.
    pub uid: String,
    /// Channel names.
    pub channels: Channels,
    local: Weak<dyn LocalNamespace>,
    link: Arc<Link>,
    pending: Mutex<HashMap<String, Pending>>,
    /// This server's broadcasts waiting for acknowledgements.
    ack_requests: AckRequests,
    closed: AtomicBool,
    bad_messages: Throttle,
}

/// The server-side event a namespace hears socket.io-redis 3's `customRequest(data)` as
/// (`data` its argument, its acknowledgement the answer).
pub const CUSTOM_REQUEST_EVENT: &str = "socket.io-redis:customRequest";

/// A random id of `len` letters and digits (like `uid2`).
pub fn random_id(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

impl Namespace {
    /// State for namespace `name` publishing through `link` under prefix `key`.
    pub fn new(
        name: String,
        key: &str,
        local: Weak<dyn LocalNamespace>,
        link: Arc<Link>,
    ) -> Arc<Namespace> {
        let uid = random_id(10);
        let channels = Channels::new(key, &name, &uid);
        link.watch_channel(&channels.request);
        Arc::new(Namespace {
            channels,
            name,
            uid,
            local,
            link,
            pending: Mutex::new(HashMap::new()),
            ack_requests: AckRequests::default(),
            closed: AtomicBool::new(false),
            bad_messages: Throttle::default(),
        })
    }

    /// The channels it listens on: its broadcasts by pattern, requests and responses.
    pub fn listening(&self) -> Listening {
        let c = &self.channels;
        Listening {
            exact: vec![
                (c.request.clone(), ChannelKind::Request),
                (c.response.clone(), ChannelKind::Response),
                (c.specific_response.clone(), ChannelKind::Response),
            ],
            prefix: (c.broadcast.clone(), ChannelKind::Broadcast),
            patterns: vec![c.pattern()],
            channels: vec![
                c.request.clone(),
                c.response.clone(),
                c.specific_response.clone(),
            ],
            shard_channels: Vec::new(),
        }
    }

    /// Whether [`Namespace::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops serving; requests waiting for answers fail as unavailable.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.link.unwatch_channel(&self.channels.request);
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }

    /// Runs `f` on the local namespace, if it still exists. A panic in it is contained.
    fn local<R>(&self, f: impl FnOnce(&dyn LocalNamespace) -> R) -> Option<R> {
        shared::call_local(&self.local, &self.name, f)
    }

    fn reject(&self, what: &str, why: impl std::fmt::Display) {
        self.bad_messages.log(|| {
            format!(
                "ignored a malformed {what} for namespace {}: {why}",
                self.name
            )
        });
    }

    /// Serves one message from another server (or this one: own messages are recognised and
    /// skipped). Never panics on what a peer sends.
    pub fn handle(self: &Arc<Self>, message: Inbound) {
        if self.is_closed() {
            return;
        }
        match message {
            Inbound::Broadcast(body) => self.on_broadcast(&body),
            Inbound::Request(body) => match wire::decode(&body) {
                Ok(request) => self.on_request(&request),
                Err(e) => self.reject("request", e),
            },
            Inbound::Response(body) => match wire::decode(&body) {
                Ok(response) => self.on_response(&response),
                Err(e) => self.reject("response", e),
            },
            // Only the streams mode reads a stream.
            Inbound::Entry(_) => {}
        }
    }

    fn on_broadcast(&self, body: &[u8]) {
        let b = match wire::parse_broadcast(body) {
            Ok(b) => b,
            Err(e) => return self.reject("broadcast", e),
        };
        if b.uid.as_deref() == Some(self.uid.as_str()) || b.nsp != self.name {
            return;
        }
        self.local(|l| l.apply_broadcast(b.data, &b.opts));
    }

    fn respond(&self, fields: Vec<(&str, Value)>) {
        let body = wire::encode_message(&wire::map(fields));
        self.link.publish(self.channels.response.clone(), body);
    }

    fn on_request(self: &Arc<Self>, request: &Value) {
        let Some(kind) = RequestType::of(request) else {
            return;
        };
        if wire::text(wire::field(request, "uid")).as_deref() == Some(self.uid.as_str()) {
            return;
        }
        let request_id = wire::field(request, "requestId").cloned();
        let opts = wire::field(request, "opts").map(|o| wire::options(Some(o)));
        // socket.io-redis 3 (weroll 1.x): `{requestid, type: 5, data}` is a customRequest, where
        // redis-adapter 8's type 5 (a fetch) has `requestId` and `opts`.
        if let (RequestType::RemoteFetch, None, None, Some(id)) = (
            kind,
            &request_id,
            &opts,
            wire::text(wire::field(request, "requestid")),
        ) {
            return self.on_custom_request(id, wire::field(request, "data"));
        }
        match kind {
            RequestType::Sockets => {
                let Some(id) = request_id else { return };
                let opts = BroadcastOptions {
                    rooms: wire::strings(wire::field(request, "rooms")),
                    ..BroadcastOptions::default()
                };
                let ids: Vec<String> = self
                    .local(|l| l.local_sockets(&opts))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
                self.respond(vec![
                    ("requestId", id),
                    ("sockets", wire::strings_value(&ids)),
                ]);
            }
            RequestType::AllRooms => {
                let Some(id) = request_id else { return };
                let rooms = self.local(|l| l.local_rooms()).unwrap_or_default();
                self.respond(vec![
                    ("requestId", id),
                    ("rooms", wire::strings_value(&rooms)),
                ]);
            }
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                match opts {
                    Some(opts) => self.bulk(kind, request, &opts),
                    None => self.legacy_bulk(kind, request, request_id),
                }
            }
            RequestType::RemoteFetch => {
                let Some(id) = request_id else { return };
                let opts = opts.unwrap_or_default();
                let sockets = self.local(|l| l.local_sockets_with_data(&opts));
                let this = self.clone();
                shared::answer_fetch(&self.link.runtime, sockets, move |sockets| {
                    this.respond(vec![("requestId", id), ("sockets", sockets)]);
                });
            }
            RequestType::ServerSideEmit => self.on_server_side_emit(request, request_id),
            RequestType::Broadcast => {
                let Some(id) = request_id else { return };
                let packet = wire::field(request, "packet").ok_or_else(|| "no packet".to_owned());
                let data = match packet.and_then(wire::parse_packet) {
                    Ok((data, nsp)) if nsp == self.name => data,
                    Ok(_) => return,
                    Err(e) => return self.reject("broadcast request", e),
                };
                let opts = opts.unwrap_or_default();
                // The asking server stops listening after its timeout (in the flags).
                let linger = shared::ack_linger(wire::field(request, "opts"));
                let weak = Arc::downgrade(self);
                let request_id = id.clone();
                let forward = Box::new(move |answer: Payload| {
                    if let Some(ns) = weak.upgrade() {
                        ns.respond(vec![
                            ("type", RequestType::BroadcastAck.value()),
                            ("requestId", request_id.clone()),
                            ("packet", wire::first_argument(&answer)),
                        ]);
                    }
                });
                let (ack_id, count) = self
                    .local(|l| l.apply_broadcast_with_ack(data, &opts, forward))
                    .unwrap_or((0, 0));
                self.respond(vec![
                    ("type", RequestType::BroadcastClientCount.value()),
                    ("requestId", id),
                    ("clientCount", Value::from(count as u64)),
                ]);
                shared::forget_acks_after(&self.link.runtime, &self.local, ack_id, count, linger);
            }
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {}
        }
    }

    /// `socketsJoin` / `socketsLeave` / `disconnectSockets` (no answer).
    fn bulk(&self, kind: RequestType, request: &Value, opts: &BroadcastOptions) {
        let rooms = wire::strings(wire::field(request, "rooms"));
        let close = wire::field(request, "close")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.local(|l| match kind {
            RequestType::RemoteJoin => l.apply_join(opts, &rooms),
            RequestType::RemoteLeave => l.apply_leave(opts, &rooms),
            _ => l.apply_disconnect(opts, close),
        });
    }

    /// The 6.0 form naming one socket `sid` (and one `room`); only its owner answers.
    fn legacy_bulk(&self, kind: RequestType, request: &Value, request_id: Option<Value>) {
        let Some(sid) = wire::text(wire::field(request, "sid")) else {
            return;
        };
        let opts = BroadcastOptions {
            rooms: vec![sid.clone()],
            ..BroadcastOptions::default()
        };
        let owned = self
            .local(|l| l.local_sockets(&opts).iter().any(|s| s.id == sid))
            .unwrap_or(false);
        if !owned {
            return;
        }
        let rooms: Vec<String> = wire::text(wire::field(request, "room"))
            .into_iter()
            .collect();
        let close = wire::field(request, "close")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.local(|l| match kind {
            RequestType::RemoteJoin => l.apply_join(&opts, &rooms),
            RequestType::RemoteLeave => l.apply_leave(&opts, &rooms),
            _ => l.apply_disconnect(&opts, close),
        });
        if let Some(id) = request_id {
            self.respond(vec![("requestId", id)]);
        }
    }

    /// Another server's `customRequest(data)`: unless it is one of ours, handed to the
    /// namespace as the server-side event [`CUSTOM_REQUEST_EVENT`] with `data`; the answer's
    /// argument goes back as `{requestid, data}` on the response channel, as socket.io-redis 3's
    /// `customHook` answers.
    fn on_custom_request(self: &Arc<Self>, id: String, data: Option<&Value>) {
        if self.pending.lock().is_ok_and(|p| p.contains_key(&id)) {
            return;
        }
        let args = Value::Array(vec![
            Value::from(CUSTOM_REQUEST_EVENT),
            data.cloned().unwrap_or(Value::Nil),
        ]);
        let (tx, rx) = oneshot::channel::<Payload>();
        if self
            .local(|l| l.on_server_side_emit(msgpack::to_payload(&args), Some(tx)))
            .is_none()
        {
            return;
        }
        let ns = self.clone();
        shared::answer_server_side_emit(&self.link.runtime, self.name.clone(), rx, move |first| {
            let mut fields = vec![("requestid", Value::from(id.as_str()))];
            fields.extend(first.filter(|v| !v.is_nil()).map(|a| ("data", a)));
            // JSON, as socket.io-redis 3 reads responses.
            let body = msgpack::to_json(&wire::map(fields));
            ns.link.publish(ns.channels.response.clone(), body);
        });
    }

    fn on_server_side_emit(self: &Arc<Self>, request: &Value, request_id: Option<Value>) {
        let Some(data) = wire::field(request, "data").filter(|d| d.is_array()) else {
            return self.reject("serverSideEmit", "no data array");
        };
        let args = msgpack::to_payload(data);
        let Some(id) = request_id else {
            self.local(|l| l.on_server_side_emit(args, None));
            return;
        };
        let (tx, rx) = oneshot::channel::<Payload>();
        if self
            .local(|l| l.on_server_side_emit(args, Some(tx)))
            .is_none()
        {
            return;
        }
        let ns = self.clone();
        shared::answer_server_side_emit(&self.link.runtime, self.name.clone(), rx, move |first| {
            let mut fields = vec![
                ("type", RequestType::ServerSideEmit.value()),
                ("requestId", id),
            ];
            // The acknowledgement's argument is `data`; no argument leaves it out.
            fields.extend(first.map(|a| ("data", a)));
            ns.respond(fields);
        });
    }

    fn on_response(&self, response: &Value) {
        // socket.io-redis 3's answers name it `requestid`.
        let legacy = wire::field(response, "requestId").is_none();
        let Some(id) = wire::text(
            wire::field(response, "requestId").or_else(|| wire::field(response, "requestid")),
        ) else {
            return;
        };
        let kind = RequestType::of(response);
        if matches!(
            kind,
            Some(RequestType::BroadcastClientCount | RequestType::BroadcastAck)
        ) {
            let count = wire::field(response, "clientCount").and_then(Value::as_u64);
            let ack =
                (kind == Some(RequestType::BroadcastAck)).then(|| wire::field(response, "packet"));
            self.ack_requests.answer(&id, count, ack);
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(p) = pending.get_mut(&id) else {
            return;
        };
        if legacy != (p.kind == Kind::Custom) {
            return;
        }
        match p.kind {
            Kind::AllRooms => {
                let Some(rooms) = wire::field(response, "rooms").filter(|r| r.is_array()) else {
                    return;
                };
                for room in wire::strings(Some(rooms)) {
                    if p.seen_rooms.insert(room.clone()) {
                        p.rooms.push(room);
                    }
                }
            }
            Kind::Fetch => {
                let Some(sockets) = wire::field(response, "sockets").and_then(Value::as_array)
                else {
                    return;
                };
                p.sockets
                    .extend(sockets.iter().filter_map(wire::parse_socket));
            }
            Kind::ServerSideEmit => {
                if RequestType::of(response) != Some(RequestType::ServerSideEmit) {
                    return;
                }
                p.acks
                    .push(wire::ack_payload(wire::field(response, "data")));
            }
            Kind::Custom => {
                let data = wire::field(response, "data").cloned().unwrap_or(Value::Nil);
                p.acks.push(msgpack::to_payload(&Value::Array(vec![data])));
            }
        }
        p.received += 1;
        if p.received >= p.expected {
            if let Some(mut done) = pending.remove(&id) {
                let collected = done.collected();
                if let Some(tx) = done.done.take() {
                    let _ = tx.send(collected);
                }
            }
        }
    }

    /// Sends a request to the other servers and waits for one answer from each of them.
    async fn request(
        self: Arc<Self>,
        kind: Kind,
        extra: Vec<(&'static str, Value)>,
        wait: Duration,
    ) -> Result<Collected, AdapterError> {
        if self.is_closed() {
            return Err(AdapterError::Unavailable("adapter closed".into()));
        }
        let expected = self
            .link
            .numsub(&self.channels.request)
            .await?
            .saturating_sub(1);
        let mut pending = Pending {
            kind,
            expected,
            received: 0,
            rooms: Vec::new(),
            seen_rooms: HashSet::new(),
            sockets: Vec::new(),
            acks: Vec::new(),
            done: None,
        };
        if expected == 0 {
            return Ok(pending.collected());
        }
        let id = random_id(12);
        let (tx, mut rx) = oneshot::channel();
        pending.done = Some(tx);
        self.pending
            .lock()
            .map_err(|_| AdapterError::Unavailable("adapter state poisoned".into()))?
            .insert(id.clone(), pending);

        let request_type = match kind {
            Kind::AllRooms => RequestType::AllRooms,
            Kind::Fetch | Kind::Custom => RequestType::RemoteFetch,
            Kind::ServerSideEmit => RequestType::ServerSideEmit,
        };
        let body = if kind == Kind::Custom {
            // socket.io-redis 3's shape, in JSON: `{requestid, type: 5, data}`.
            let mut fields = vec![
                ("requestid", Value::from(id.as_str())),
                ("type", request_type.value()),
            ];
            fields.extend(extra);
            msgpack::to_json(&wire::map(fields)).into_bytes()
        } else {
            let mut fields = vec![
                ("uid", Value::from(self.uid.as_str())),
                ("requestId", Value::from(id.as_str())),
                ("type", request_type.value()),
            ];
            fields.extend(extra);
            wire::encode_message(&wire::map(fields))
        };
        if let Err(e) = self
            .link
            .publish_confirmed(self.channels.request.clone(), body)
            .await
        {
            self.forget(&id);
            return Err(e);
        }
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(collected)) => Ok(collected),
            Ok(Err(_)) => Err(AdapterError::Unavailable("adapter closed".into())),
            Err(_) => {
                let pending = self.forget(&id);
                match (pending, rx.try_recv()) {
                    (_, Ok(collected)) => Ok(collected),
                    (pending, _) => Err(AdapterError::Timeout {
                        expected,
                        received: pending.as_ref().map_or(0, |p| p.received),
                        acks: pending.map(|p| p.acks).unwrap_or_default(),
                    }),
                }
            }
        }
    }

    fn forget(&self, id: &str) -> Option<Pending> {
        self.pending.lock().ok()?.remove(id)
    }
}

impl Closing for Namespace {
    fn close(&self) {
        Namespace::close(self);
    }
}

impl Serving for Namespace {
    fn uid(&self) -> &str {
        &self.uid
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn is_closed(&self) -> bool {
        Namespace::is_closed(self)
    }
    fn handle(self: &Arc<Self>, message: Inbound) {
        Namespace::handle(self, message);
    }
    fn own_channels(&self) -> Vec<String> {
        vec![self.channels.specific_response.clone()]
    }
}

/// The [`Adapter`] of one namespace. Dropping it (or [`Adapter::close`]) leaves the cluster.
pub struct RedisAdapter {
    pub(super) ns: Arc<Namespace>,
    pub(super) on_close: OnClose,
}

impl RedisAdapter {
    fn publish_request(&self, fields: Vec<(&str, Value)>) {
        if self.ns.is_closed() {
            return;
        }
        let body = wire::encode_message(&wire::map(fields));
        self.ns.link.publish(self.ns.channels.request.clone(), body);
    }

    fn bulk(&self, kind: RequestType, opts: &BroadcastOptions, last: (&str, Value)) {
        self.publish_request(vec![
            ("uid", Value::from(self.ns.uid.as_str())),
            ("type", kind.value()),
            ("opts", wire::options_value(opts, false)),
            last,
        ]);
    }
}

impl Adapter for RedisAdapter {
    fn broadcast(&self, data: &Payload, opts: &BroadcastOptions) {
        if opts.flags.local || self.ns.is_closed() {
            return;
        }
        match wire::encode_broadcast(&self.ns.uid, &self.ns.name, data, opts) {
            Ok(body) => self
                .ns
                .link
                .publish(self.ns.channels.for_rooms(&opts.rooms), body),
            Err(e) => log(&format!("broadcast on {} not published: {e}", self.ns.name)),
        }
    }

    fn broadcast_with_ack(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
        id: u64,
        acks: Arc<AckCollector>,
    ) -> BoxFuture<'static, bool> {
        let ns = self.ns.clone();
        let packet = wire::event_packet(&ns.name, data, Some(id));
        let opts = wire::options_value(opts, true);
        Box::pin(async move {
            if ns.is_closed() {
                return false;
            }
            let packet = match packet {
                Ok(p) => p,
                Err(e) => {
                    log(&format!("broadcast on {} not published: {e}", ns.name));
                    return false;
                }
            };
            let request_id = random_id(12);
            ns.ack_requests.register(&request_id, &acks);
            let body = wire::encode_message(&wire::map(vec![
                ("uid", Value::from(ns.uid.as_str())),
                ("requestId", Value::from(request_id.as_str())),
                ("type", RequestType::Broadcast.value()),
                ("packet", packet),
                ("opts", opts),
            ]));
            match ns
                .link
                .publish_confirmed(ns.channels.request.clone(), body)
                .await
            {
                Ok(_) => true,
                Err(e) => {
                    log(&format!("broadcast on {} not published: {e}", ns.name));
                    ns.ack_requests.remove(&request_id);
                    false
                }
            }
        })
    }

    fn sockets_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.bulk(
            RequestType::RemoteJoin,
            opts,
            ("rooms", wire::strings_value(rooms)),
        );
    }

    fn sockets_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.bulk(
            RequestType::RemoteLeave,
            opts,
            ("rooms", wire::strings_value(rooms)),
        );
    }

    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        self.bulk(
            RequestType::RemoteDisconnect,
            opts,
            ("close", Value::Boolean(close)),
        );
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        let ns = self.ns.clone();
        let wait = ns.link.requests_timeout;
        let extra = vec![("opts", wire::options_value(opts, false))];
        async move {
            match ns.request(Kind::Fetch, extra, wait).await? {
                Collected::Sockets(s) => Ok(s),
                _ => Ok(Vec::new()),
            }
        }
        .boxed()
    }

    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<String>, AdapterError>> {
        let ns = self.ns.clone();
        let wait = ns.link.requests_timeout;
        async move {
            match ns.request(Kind::AllRooms, Vec::new(), wait).await? {
                Collected::Rooms(r) => Ok(r),
                _ => Ok(Vec::new()),
            }
        }
        .boxed()
    }

    fn server_side_emit(
        &self,
        args: &Payload,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        let data = match shared::emit_arguments(args) {
            Ok(d) => d,
            Err(e) => return futures_util::future::ready(Err(e)).boxed(),
        };
        let Some(wait) = ack_timeout else {
            self.publish_request(vec![
                ("uid", Value::from(self.ns.uid.as_str())),
                ("type", RequestType::ServerSideEmit.value()),
                ("data", data),
            ]);
            return futures_util::future::ready(Ok(Vec::new())).boxed();
        };
        let ns = self.ns.clone();
        async move {
            match ns
                .request(Kind::ServerSideEmit, vec![("data", data)], wait)
                .await?
            {
                Collected::Acks(a) => Ok(a),
                _ => Ok(Vec::new()),
            }
        }
        .boxed()
    }

    fn custom_request(
        &self,
        args: &Payload,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        let data = match shared::emit_arguments(args) {
            Ok(Value::Array(mut a)) if !a.is_empty() => a.swap_remove(0),
            Ok(_) => Value::Nil,
            Err(e) => return futures_util::future::ready(Err(e)).boxed(),
        };
        let ns = self.ns.clone();
        async move {
            match ns
                .request(Kind::Custom, vec![("data", data)], timeout)
                .await?
            {
                Collected::Acks(a) => Ok(a),
                _ => Ok(Vec::new()),
            }
        }
        .boxed()
    }

    fn server_count(&self) -> BoxFuture<'static, usize> {
        let ns = self.ns.clone();
        async move {
            ns.link
                .numsub(&ns.channels.request)
                .await
                .unwrap_or(1)
                .max(1)
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        if self.ns.is_closed() {
            return futures_util::future::ready(()).boxed();
        }
        self.ns.close();
        (self.on_close)()
    }
}

impl Drop for RedisAdapter {
    fn drop(&mut self) {
        if !self.ns.is_closed() {
            self.ns.close();
            let leave = (self.on_close)();
            self.ns.link.runtime.spawn(leave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::redis::link::StatusTracker;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Counting(AtomicUsize, Mutex<Vec<String>>);

    impl LocalNamespace for Counting {
        fn name(&self) -> &str {
            "/"
        }
        fn apply_broadcast(&self, _: Payload, _: &BroadcastOptions) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn apply_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
            let mut log = self.1.lock().unwrap();
            log.push(format!("join {:?} {rooms:?}", opts.rooms));
        }
        fn apply_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
            let mut log = self.1.lock().unwrap();
            log.push(format!("leave {:?} {rooms:?}", opts.rooms));
        }
        fn apply_disconnect(&self, opts: &BroadcastOptions, close: bool) {
            let mut log = self.1.lock().unwrap();
            log.push(format!("disconnect {:?} {close}", opts.rooms));
        }
        fn local_sockets(&self, _: &BroadcastOptions) -> Vec<RemoteSocket> {
            vec![RemoteSocket {
                id: "s".into(),
                rooms: vec!["s".into()],
                handshake: serde_json::json!({}),
                data: serde_json::Value::Null,
            }]
        }
        fn local_rooms(&self) -> Vec<String> {
            vec!["r".into()]
        }
        fn on_server_side_emit(&self, args: Payload, ack: Option<oneshot::Sender<Payload>>) {
            if let Some(ack) = ack {
                let _ = ack.send(args);
            }
        }
    }

    /// Random and mutated messages of every kind go through the whole handling path without
    /// a panic (a stand-in for a fuzz target; the connection is down, so answers are dropped).
    #[tokio::test]
    async fn arbitrary_messages_never_panic() {
        let client = fred::types::Builder::default_centralized().build().unwrap();
        let status = StatusTracker::new(Arc::new(|_| {}), "nowhere".into());
        let (link, _task) = Link::start(
            client,
            status,
            tokio::runtime::Handle::current(),
            Duration::from_millis(10),
            crate::adapter::redis::OfflineQueue::DEFAULT,
            crate::adapter::redis::link::Flavor::Patterns,
        );
        let counting = Arc::new(Counting::default());
        let local: Arc<dyn LocalNamespace> = counting.clone();
        let ns = Namespace::new("/".into(), "k", Arc::downgrade(&local), link);

        let seeds: Vec<Vec<u8>> = vec![
            br#"{"uid":"x","requestId":"r","type":0,"rooms":["a"]}"#.to_vec(),
            br#"{"uid":"x","requestId":"r","type":1}"#.to_vec(),
            br#"{"uid":"x","type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}"#.to_vec(),
            br#"{"requestId":"r","type":3,"sid":"s","room":"b"}"#.to_vec(),
            br#"{"requestId":"r","type":4,"sid":"s","close":true}"#.to_vec(),
            br#"{"uid":"x","requestId":"r","type":5,"opts":{"rooms":[],"except":[]}}"#.to_vec(),
            br#"{"uid":"x","requestId":"r","type":6,"data":["ev",1,{"a":[null]}]}"#.to_vec(),
            br#"{"requestId":"r","sockets":[{"id":"s","rooms":["s"],"handshake":{},"data":1}]}"#
                .to_vec(),
            wire::encode_message(&wire::map(vec![
                ("uid", "x".into()),
                ("requestId", "r".into()),
                ("type", 7.into()),
                (
                    "packet",
                    wire::map(vec![
                        ("type", 2.into()),
                        (
                            "data",
                            Value::Array(vec!["ev".into(), Value::Binary(vec![1, 2])]),
                        ),
                        ("nsp", "/".into()),
                    ]),
                ),
                (
                    "opts",
                    wire::options_value(&BroadcastOptions::default(), true),
                ),
            ])),
            wire::encode_broadcast(
                "x",
                "/",
                &Payload {
                    json: r#"["ev",{"_placeholder":true,"num":0},1.5,"é"]"#.into(),
                    attachments: vec![Bytes::from_static(b"bin")],
                },
                &BroadcastOptions::default(),
            )
            .unwrap(),
        ];

        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..30_000u32 {
            let mut bytes = seeds[(next() % seeds.len() as u64) as usize].clone();
            match round % 4 {
                0 => {
                    let n = (next() % 64) as usize;
                    bytes = (0..n).map(|_| next() as u8).collect();
                }
                1 => {
                    let len = bytes.len();
                    bytes.truncate((next() % (len as u64 + 1)) as usize);
                }
                _ => {
                    for _ in 0..=(next() % 4) {
                        if !bytes.is_empty() {
                            let i = (next() % bytes.len() as u64) as usize;
                            bytes[i] = next() as u8;
                        }
                    }
                }
            }
            let body = Bytes::from(bytes);
            ns.handle(Inbound::Broadcast(body.clone()));
            ns.handle(Inbound::Request(body.clone()));
            ns.handle(Inbound::Response(body));
        }
        // An intact broadcast is still served.
        let before = counting.0.load(Ordering::Relaxed);
        ns.handle(Inbound::Broadcast(Bytes::from(seeds[9].clone())));
        assert_eq!(counting.0.load(Ordering::Relaxed), before + 1);

        // The 6.x forms naming one socket: served only by the server that has it.
        counting.1.lock().unwrap().clear();
        for body in [
            r#"{"requestId":"1","type":2,"sid":"s","room":"b"}"#,
            r#"{"requestId":"2","type":3,"sid":"s","room":"b"}"#,
            r#"{"requestId":"3","type":4,"sid":"s","close":true}"#,
            r#"{"requestId":"4","type":2,"sid":"not-here","room":"b"}"#,
        ] {
            ns.handle(Inbound::Request(Bytes::from(body)));
        }
        assert_eq!(
            *counting.1.lock().unwrap(),
            [
                r#"join ["s"] ["b"]"#,
                r#"leave ["s"] ["b"]"#,
                r#"disconnect ["s"] true"#
            ]
        );
    }
}
