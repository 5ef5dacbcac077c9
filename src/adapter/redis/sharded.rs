//! The sharded mode: `createShardedAdapter` of `@socket.io/redis-adapter` 8.3 over Redis 7's
//! sharded pub/sub, with the messages of socket.io-adapter's `ClusterAdapter`. This is the one
//! place that knows that wire format. The streams mode (`@socket.io/redis-streams-adapter`)
//! speaks the same messages; what differs — its stream, plain pub/sub, MessagePack only — is
//! told by [`Transport`] and laid out in [`super::streams`].
//!
//! Each namespace adapter (uid: 16 hex digits) listens on the shard channel `P#N#` (everything
//! for the namespace) and `P#N#UID#` (answers to its own requests); in the dynamic modes also on
//! `P#N#ROOM#` for every room with a local member (`dynamic`: public rooms; `dynamic-private`:
//! socket ids too), so that a broadcast to one room reaches only the servers that have members.
//! A message is the envelope `{type, data, uid, nsp}`, JSON unless it holds binary (then
//! MessagePack); the server count is `PUBSUB SHARDNUMSUB P#N#`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::config::SubscriptionMode;
use super::link::{log, Link, Throttle};
use super::namespace::Inbound;
use super::shared::{self, AckRequests};
use super::streams;
use super::wire;
use super::{ChannelKind, Closing, Hub, Listening, OnClose, Serving};
use crate::adapter::msgpack::{self, Value};
use crate::adapter::{
    AckCollector, Adapter, AdapterError, BroadcastOptions, LocalNamespace, RemoteSocket,
};
use crate::protocol::Payload;

/// socket.io-adapter's `MessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageType {
    Broadcast = 3,
    SocketsJoin = 4,
    SocketsLeave = 5,
    DisconnectSockets = 6,
    FetchSockets = 7,
    FetchSocketsResponse = 8,
    ServerSideEmit = 9,
    ServerSideEmitResponse = 10,
    BroadcastClientCount = 11,
    BroadcastAck = 12,
}

impl MessageType {
    fn of(n: u64) -> Option<MessageType> {
        Some(match n {
            3 => MessageType::Broadcast,
            4 => MessageType::SocketsJoin,
            5 => MessageType::SocketsLeave,
            6 => MessageType::DisconnectSockets,
            7 => MessageType::FetchSockets,
            8 => MessageType::FetchSocketsResponse,
            9 => MessageType::ServerSideEmit,
            10 => MessageType::ServerSideEmitResponse,
            11 => MessageType::BroadcastClientCount,
            12 => MessageType::BroadcastAck,
            // 1, 2 (heartbeats) and 13 (close) are not used by the sharded adapter.
            _ => return None,
        })
    }
}

/// How a namespace's messages travel.
pub(super) enum Transport {
    /// Sharded pub/sub; JSON envelopes unless they hold binary.
    Shard(SubscriptionMode),
    /// Broadcasts, joins, leaves and disconnects appended to stream `key`; the rest over plain
    /// pub/sub, as MessagePack. Sessions are saved under `sessions` + private id.
    Streams {
        key: String,
        max_len: u64,
        sessions: String,
    },
}

/// The message `{type, data, uid, nsp}`.
fn message(kind: MessageType, data: Vec<(&str, Value)>, uid: &str, nsp: &str) -> Value {
    wire::map(vec![
        ("type", Value::from(kind as u8)),
        ("data", wire::map(data)),
        ("uid", Value::from(uid)),
        ("nsp", Value::from(nsp)),
    ])
}

/// Whether `kind` goes into the stream in the streams mode (everything that is not a request
/// waiting for answers, nor an answer).
fn kept_in_stream(kind: MessageType) -> bool {
    matches!(
        kind,
        MessageType::Broadcast
            | MessageType::SocketsJoin
            | MessageType::SocketsLeave
            | MessageType::DisconnectSockets
    )
}

/// An event packet as the publisher's `ClusterAdapter` sends it: `{type: 2, data}` (the
/// receiver sets the namespace and any ack id).
fn event_packet(data: &Payload) -> Result<Value, msgpack::CodecError> {
    Ok(wire::map(vec![
        ("type", Value::from(2u8)),
        ("data", msgpack::from_payload(data)?),
    ]))
}

/// socket.io's `looksLikeASocketId`: a room name 20 UTF-16 code units long.
fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// A random id of 16 hex digits (8 random bytes), as `ClusterAdapter` makes its ids.
fn hex_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a request of this server collects.
enum Pending {
    Fetch {
        expected: usize,
        sockets: Vec<RemoteSocket>,
        received: usize,
        done: Option<oneshot::Sender<Vec<RemoteSocket>>>,
    },
    Emit {
        expected: usize,
        acks: Vec<Payload>,
        done: Option<oneshot::Sender<Vec<Payload>>>,
    },
}

/// One namespace's side of the sharded cluster.
pub struct Namespace {
    /// Namespace name, with its leading slash.
    pub name: String,
    /// This adapter's id on the wire.
    pub uid: String,
    /// `P#N#`.
    main: String,
    /// `P#N#UID#`.
    response: String,
    mode: SubscriptionMode,
    transport: Transport,
    local: Weak<dyn LocalNamespace>,
    link: Arc<Link>,
    hub: Arc<Hub>,
    pending: Mutex<HashMap<String, Pending>>,
    /// This server's broadcasts waiting for acknowledgements.
    ack_requests: AckRequests,
    closed: AtomicBool,
    bad_messages: Throttle,
}

impl Namespace {
    /// State for namespace `name` under channel prefix `key`.
    pub(super) fn new(
        name: String,
        key: &str,
        transport: Transport,
        local: Weak<dyn LocalNamespace>,
        link: Arc<Link>,
        hub: Arc<Hub>,
    ) -> Arc<Namespace> {
        let mode = match &transport {
            Transport::Shard(mode) => *mode,
            // One stream for all: no room channels.
            Transport::Streams { .. } => SubscriptionMode::Static,
        };
        let uid = hex_id();
        let main = format!("{key}#{name}#");
        let response = format!("{main}{uid}#");
        link.watch_channel(&main);
        Arc::new(Namespace {
            name,
            uid,
            main,
            response,
            mode,
            transport,
            local,
            link,
            hub,
            pending: Mutex::new(HashMap::new()),
            ack_requests: AckRequests::default(),
            closed: AtomicBool::new(false),
            bad_messages: Throttle::default(),
        })
    }

    /// The channels it listens on from the start (shard channels, or plain ones in the
    /// streams mode), and how their messages are served.
    pub(super) fn listening(&self) -> Listening {
        let own = vec![self.main.clone(), self.response.clone()];
        let (channels, shard_channels) = match self.transport {
            Transport::Shard(_) => (Vec::new(), own),
            Transport::Streams { .. } => (own, Vec::new()),
        };
        Listening {
            exact: vec![
                (self.main.clone(), ChannelKind::Request),
                (self.response.clone(), ChannelKind::Response),
            ],
            // Room channels `P#N#ROOM#`.
            prefix: (self.main.clone(), ChannelKind::Request),
            patterns: Vec::new(),
            channels,
            shard_channels,
        }
    }

    /// The envelope `{type, data, uid, nsp}`, encoded as Node's adapter of this mode does.
    fn envelope(&self, kind: MessageType, data: Vec<(&str, Value)>) -> Vec<u8> {
        let message = message(kind, data, &self.uid, &self.name);
        match self.transport {
            Transport::Shard(_) => wire::encode_message(&message),
            Transport::Streams { .. } => streams::envelope(&message),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.link.unwatch_channel(&self.main);
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }

    fn room_channel(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// Whether a room (a socket's own id, or not) has a channel of its own in this mode.
    fn has_channel(&self, socket_id: bool) -> bool {
        match self.mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !socket_id,
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// Where a plain broadcast to `opts` goes: the room's channel when it names exactly one
    /// room that has one, else the namespace's.
    fn broadcast_channel(&self, opts: &BroadcastOptions) -> String {
        match (self.mode, opts.rooms.as_slice()) {
            (SubscriptionMode::Dynamic, [room]) if !looks_like_a_socket_id(room) => {
                self.room_channel(room)
            }
            (SubscriptionMode::DynamicPrivate, [room]) => self.room_channel(room),
            _ => self.main.clone(),
        }
    }

    fn local<R>(&self, f: impl FnOnce(&dyn LocalNamespace) -> R) -> Option<R> {
        shared::call_local(&self.local, &self.name, f)
    }

    fn reject(&self, why: impl std::fmt::Display) {
        self.bad_messages.log(|| {
            format!(
                "namespace {}: ignored an unreadable cluster message: {why}",
                self.name
            )
        });
    }

    fn publish(&self, channel: String, kind: MessageType, data: Vec<(&str, Value)>) {
        if let (Transport::Streams { key, max_len, .. }, true) =
            (&self.transport, kept_in_stream(kind))
        {
            self.link
                .append(key.clone(), self.entry_fields(kind, data), *max_len);
            return;
        }
        let body = self.envelope(kind, data);
        self.link.publish(channel, body);
    }

    /// The stream entry of message `kind` with `data`, from this adapter.
    fn entry_fields(
        &self,
        kind: MessageType,
        data: Vec<(&str, Value)>,
    ) -> Vec<(&'static str, Bytes)> {
        streams::entry_fields(&self.uid, &self.name, kind as u8, Some(&wire::map(data)))
    }

    /// The data of a plain broadcast of `data` to `opts`: `{packet, opts}`; `None` (logged)
    /// when the arguments cannot be sent.
    fn broadcast_data(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
    ) -> Option<Vec<(&'static str, Value)>> {
        match event_packet(data) {
            Ok(packet) => Some(vec![
                ("packet", packet),
                ("opts", wire::options_value(opts, true)),
            ]),
            Err(e) => {
                log(&format!("broadcast on {} not published: {e}", self.name));
                None
            }
        }
    }

    /// Answers the server with uid `to` on its response channel.
    fn respond(&self, to: &str, kind: MessageType, data: Vec<(&str, Value)>) {
        self.publish(format!("{}{to}#", self.main), kind, data);
    }

    /// Serves one message. Never panics on what a peer sends.
    fn handle(self: &Arc<Self>, message: Inbound) {
        if self.is_closed() {
            return;
        }
        let (decoded, offset) = match message {
            Inbound::Request(b) | Inbound::Response(b) | Inbound::Broadcast(b) => {
                let body: Bytes = b;
                (wire::decode(&body).map_err(|e| e.to_string()), None)
            }
            Inbound::Entry(entry) => (entry.message(), Some(entry.id)),
        };
        let message = match decoded {
            Ok(m) => m,
            Err(e) => return self.reject(e),
        };
        let Some(kind) = wire::field(&message, "type")
            .and_then(Value::as_u64)
            .and_then(MessageType::of)
        else {
            return;
        };
        let from = wire::text(wire::field(&message, "uid")).unwrap_or_default();
        if from == self.uid
            || wire::text(wire::field(&message, "nsp")).as_deref() != Some(&self.name)
        {
            return;
        }
        let Some(data) = wire::field(&message, "data") else {
            return self.reject("no data");
        };
        let request_id = wire::field(data, "requestId").cloned();
        let opts = || wire::options(wire::field(data, "opts"));
        match kind {
            MessageType::Broadcast => {
                let packet = wire::field(data, "packet").ok_or_else(|| "no packet".to_owned());
                let payload = match packet.and_then(wire::parse_packet) {
                    Ok((payload, _)) => payload,
                    Err(e) => return self.reject(e),
                };
                match (request_id, offset) {
                    (None, Some(offset)) => {
                        self.local(|l| l.apply_broadcast_at(payload, &opts(), &offset));
                    }
                    (None, None) => {
                        self.local(|l| l.apply_broadcast(payload, &opts()));
                    }
                    (Some(id), _) => {
                        self.broadcast_with_ack_from(&from, id, payload, &opts(), data)
                    }
                }
            }
            MessageType::SocketsJoin | MessageType::SocketsLeave => {
                let rooms = wire::strings(wire::field(data, "rooms"));
                let opts = opts();
                self.local(|l| {
                    if kind == MessageType::SocketsJoin {
                        l.apply_join(&opts, &rooms)
                    } else {
                        l.apply_leave(&opts, &rooms)
                    }
                });
            }
            MessageType::DisconnectSockets => {
                let close = wire::field(data, "close")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let opts = opts();
                self.local(|l| l.apply_disconnect(&opts, close));
            }
            MessageType::FetchSockets => {
                let Some(id) = request_id else { return };
                let opts = opts();
                let sockets = self.local(|l| l.local_sockets_with_data(&opts));
                let this = self.clone();
                shared::answer_fetch(&self.link.runtime, sockets, move |sockets| {
                    this.respond(
                        &from,
                        MessageType::FetchSocketsResponse,
                        vec![("requestId", id), ("sockets", sockets)],
                    );
                });
            }
            MessageType::ServerSideEmit => self.server_side_emit_from(&from, request_id, data),
            MessageType::FetchSocketsResponse
            | MessageType::ServerSideEmitResponse
            | MessageType::BroadcastClientCount
            | MessageType::BroadcastAck => self.on_response(kind, data),
        }
    }

    /// Another server's broadcast that wants acknowledgements: deliver, tell it how many
    /// clients got it (even none), then forward each client's answer.
    fn broadcast_with_ack_from(
        self: &Arc<Self>,
        from: &str,
        id: Value,
        payload: Payload,
        opts: &BroadcastOptions,
        data: &Value,
    ) {
        let linger = shared::ack_linger(wire::field(data, "opts"));
        let weak = Arc::downgrade(self);
        let (to, request_id) = (from.to_owned(), id.clone());
        let forward = Box::new(move |answer: Payload| {
            if let Some(ns) = weak.upgrade() {
                ns.respond(
                    &to,
                    MessageType::BroadcastAck,
                    vec![
                        ("requestId", request_id.clone()),
                        ("packet", wire::first_argument(&answer)),
                    ],
                );
            }
        });
        let (ack_id, count) = self
            .local(|l| l.apply_broadcast_with_ack(payload, opts, forward))
            .unwrap_or((0, 0));
        self.respond(
            from,
            MessageType::BroadcastClientCount,
            vec![
                ("requestId", id),
                ("clientCount", Value::from(count as u64)),
            ],
        );
        shared::forget_acks_after(&self.link.runtime, &self.local, ack_id, count, linger);
    }

    /// Another server's `serverSideEmit`: `packet` is `[event, ...args]`; with a request id,
    /// the first acknowledgement goes back to it.
    fn server_side_emit_from(
        self: &Arc<Self>,
        from: &str,
        request_id: Option<Value>,
        data: &Value,
    ) {
        let Some(packet) = wire::field(data, "packet").filter(|p| p.is_array()) else {
            return self.reject("serverSideEmit without a packet array");
        };
        let args = msgpack::to_payload(packet);
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
        let to = from.to_owned();
        shared::answer_server_side_emit(&self.link.runtime, self.name.clone(), rx, move |first| {
            let mut fields = vec![("requestId", id)];
            fields.extend(first.map(|a| ("packet", a)));
            ns.respond(&to, MessageType::ServerSideEmitResponse, fields);
        });
    }

    fn on_response(&self, kind: MessageType, data: &Value) {
        let Some(id) = wire::text(wire::field(data, "requestId")) else {
            return;
        };
        if matches!(
            kind,
            MessageType::BroadcastClientCount | MessageType::BroadcastAck
        ) {
            let count = wire::field(data, "clientCount").and_then(Value::as_u64);
            let ack = (kind == MessageType::BroadcastAck).then(|| wire::field(data, "packet"));
            self.ack_requests.answer(&id, count, ack);
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let complete = match (pending.get_mut(&id), kind) {
            (
                Some(Pending::Fetch {
                    expected,
                    sockets,
                    received,
                    ..
                }),
                MessageType::FetchSocketsResponse,
            ) => {
                let Some(list) = wire::field(data, "sockets").and_then(Value::as_array) else {
                    return;
                };
                sockets.extend(list.iter().filter_map(wire::parse_socket));
                *received += 1;
                *received >= *expected
            }
            (Some(Pending::Emit { expected, acks, .. }), MessageType::ServerSideEmitResponse) => {
                acks.push(wire::ack_payload(wire::field(data, "packet")));
                acks.len() >= *expected
            }
            _ => return,
        };
        if complete {
            match pending.remove(&id) {
                Some(Pending::Fetch {
                    sockets,
                    done: Some(tx),
                    ..
                }) => {
                    let _ = tx.send(sockets);
                }
                Some(Pending::Emit {
                    acks,
                    done: Some(tx),
                    ..
                }) => {
                    let _ = tx.send(acks);
                }
                _ => {}
            }
        }
    }

    /// The other servers: `SHARDNUMSUB` of the namespace's channel, less this one.
    async fn others(&self) -> Result<usize, AdapterError> {
        Ok(self.link.numsub(&self.main).await?.saturating_sub(1))
    }

    /// Publishes request `kind` (waiting until Redis took it), registered as `pending` under
    /// `id`, and waits up to `wait` for `rx`; a timeout reports how many answered.
    async fn request<T>(
        &self,
        kind: MessageType,
        id: String,
        mut data: Vec<(&str, Value)>,
        pending: Pending,
        rx: oneshot::Receiver<T>,
        wait: Duration,
    ) -> Result<T, AdapterError> {
        let expected = match &pending {
            Pending::Fetch { expected, .. } | Pending::Emit { expected, .. } => *expected,
        };
        self.pending
            .lock()
            .map_err(|_| AdapterError::Unavailable("adapter state poisoned".into()))?
            .insert(id.clone(), pending);
        data.push(("requestId", Value::from(id.as_str())));
        let body = self.envelope(kind, data);
        if let Err(e) = self.link.publish_confirmed(self.main.clone(), body).await {
            self.forget(&id);
            return Err(e);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answers)) => Ok(answers),
            Ok(Err(_)) => Err(AdapterError::Unavailable("adapter closed".into())),
            Err(_) => {
                let (received, acks) = match self.forget(&id) {
                    Some(Pending::Fetch { received, .. }) => (received, Vec::new()),
                    Some(Pending::Emit { acks, .. }) => (acks.len(), acks),
                    None => (0, Vec::new()),
                };
                Err(AdapterError::Timeout {
                    expected,
                    received,
                    acks,
                })
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
        vec![self.response.clone()]
    }
}

/// The [`Adapter`] of one namespace in sharded mode. Dropping it (or [`Adapter::close`])
/// leaves the cluster.
pub struct ShardedAdapter {
    ns: Arc<Namespace>,
    on_close: OnClose,
}

impl ShardedAdapter {
    pub(super) fn new(ns: Arc<Namespace>, on_close: OnClose) -> ShardedAdapter {
        ShardedAdapter { ns, on_close }
    }

    fn publish_main(&self, kind: MessageType, data: Vec<(&str, Value)>) {
        if !self.ns.is_closed() {
            self.ns.publish(self.ns.main.clone(), kind, data);
        }
    }

    /// Leaves the room channels of the local rooms (the namespace's own channels are left by
    /// `on_close`).
    fn leave_rooms(&self) {
        if self.ns.mode == SubscriptionMode::Static {
            return;
        }
        let mut rooms = self.ns.local(|l| l.local_rooms()).unwrap_or_default();
        if self.ns.mode == SubscriptionMode::DynamicPrivate {
            let sockets = self
                .ns
                .local(|l| l.local_sockets(&BroadcastOptions::default()))
                .unwrap_or_default();
            rooms.extend(sockets.into_iter().map(|s| s.id));
        }
        for room in rooms {
            self.ns.hub.want_room(self.ns.room_channel(&room), false);
        }
    }
}

impl Adapter for ShardedAdapter {
    fn broadcast(&self, data: &Payload, opts: &BroadcastOptions) {
        if opts.flags.local || self.ns.is_closed() {
            return;
        }
        if let Some(d) = self.ns.broadcast_data(data, opts) {
            self.ns
                .publish(self.ns.broadcast_channel(opts), MessageType::Broadcast, d);
        }
    }

    fn broadcast_with_ack(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
        _id: u64,
        acks: Arc<AckCollector>,
    ) -> BoxFuture<'static, bool> {
        let ns = self.ns.clone();
        let packet = event_packet(data);
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
            let request_id = hex_id();
            ns.ack_requests.register(&request_id, &acks);
            // Never on a room channel (nor into the stream): every server owes an answer.
            let body = ns.envelope(
                MessageType::Broadcast,
                vec![
                    ("packet", packet),
                    ("requestId", Value::from(request_id.as_str())),
                    ("opts", opts),
                ],
            );
            match ns.link.publish_confirmed(ns.main.clone(), body).await {
                Ok(()) => true,
                Err(e) => {
                    log(&format!("broadcast on {} not published: {e}", ns.name));
                    ns.ack_requests.remove(&request_id);
                    false
                }
            }
        })
    }

    fn sockets_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.publish_main(
            MessageType::SocketsJoin,
            vec![
                ("opts", wire::options_value(opts, true)),
                ("rooms", wire::strings_value(rooms)),
            ],
        );
    }

    fn sockets_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.publish_main(
            MessageType::SocketsLeave,
            vec![
                ("opts", wire::options_value(opts, true)),
                ("rooms", wire::strings_value(rooms)),
            ],
        );
    }

    fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        self.publish_main(
            MessageType::DisconnectSockets,
            vec![
                ("opts", wire::options_value(opts, true)),
                ("close", Value::Boolean(close)),
            ],
        );
    }

    fn fetch_sockets(
        &self,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        let ns = self.ns.clone();
        let opts = wire::options_value(opts, true);
        async move {
            if ns.is_closed() {
                return Err(AdapterError::Unavailable("adapter closed".into()));
            }
            let expected = ns.others().await?;
            if expected == 0 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let pending = Pending::Fetch {
                expected,
                sockets: Vec::new(),
                received: 0,
                done: Some(tx),
            };
            let wait = ns.link.requests_timeout;
            ns.request(
                MessageType::FetchSockets,
                hex_id(),
                vec![("opts", opts)],
                pending,
                rx,
                wait,
            )
            .await
        }
        .boxed()
    }

    /// Like Node's sharded adapter: the other servers' rooms are not asked for.
    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<String>, AdapterError>> {
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    fn server_side_emit(
        &self,
        args: &Payload,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        let packet = match shared::emit_arguments(args) {
            Ok(p) => p,
            Err(e) => return futures_util::future::ready(Err(e)).boxed(),
        };
        let Some(wait) = ack_timeout else {
            self.publish_main(MessageType::ServerSideEmit, vec![("packet", packet)]);
            return futures_util::future::ready(Ok(Vec::new())).boxed();
        };
        let ns = self.ns.clone();
        async move {
            if ns.is_closed() {
                return Err(AdapterError::Unavailable("adapter closed".into()));
            }
            let expected = ns.others().await?;
            if expected == 0 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let pending = Pending::Emit {
                expected,
                acks: Vec::new(),
                done: Some(tx),
            };
            ns.request(
                MessageType::ServerSideEmit,
                hex_id(),
                vec![("packet", packet)],
                pending,
                rx,
                wait,
            )
            .await
        }
        .boxed()
    }

    fn server_count(&self) -> BoxFuture<'static, usize> {
        let ns = self.ns.clone();
        async move { ns.link.numsub(&ns.main).await.unwrap_or(1).max(1) }.boxed()
    }

    fn room_created(&self, room: &str, socket_id: bool) {
        if !self.ns.is_closed() && self.ns.has_channel(socket_id) {
            self.ns.hub.want_room(self.ns.room_channel(room), true);
        }
    }

    fn room_deleted(&self, room: &str, socket_id: bool) {
        if !self.ns.is_closed() && self.ns.has_channel(socket_id) {
            self.ns.hub.want_room(self.ns.room_channel(room), false);
        }
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        if self.ns.is_closed() {
            return futures_util::future::ready(()).boxed();
        }
        self.leave_rooms();
        self.ns.close();
        (self.on_close)()
    }

    fn keeps_sessions(&self) -> bool {
        matches!(self.ns.transport, Transport::Streams { .. })
    }

    /// Streams mode: the entry's id is the offset, as every server hands it out. While Redis
    /// is away the entry waits in the offline queue (the others get it late) and the local
    /// delivery goes without an offset.
    fn broadcast_with_offset(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Option<String>> {
        let Transport::Streams { key, max_len, .. } = &self.ns.transport else {
            self.broadcast(data, opts);
            return futures_util::future::ready(None).boxed();
        };
        if self.ns.is_closed() || opts.flags.local {
            return futures_util::future::ready(None).boxed();
        }
        let Some(d) = self.ns.broadcast_data(data, opts) else {
            return futures_util::future::ready(None).boxed();
        };
        let fields = self.ns.entry_fields(MessageType::Broadcast, d);
        let (key, max_len) = (key.clone(), *max_len);
        if self.ns.link.check().is_err() {
            self.ns.link.append(key, fields, max_len);
            return futures_util::future::ready(None).boxed();
        }
        // Sent now, so that broadcasts made one after the other are appended in that order.
        let appended = self.ns.link.append_confirmed(key, fields, max_len);
        let name = self.ns.name.clone();
        async move {
            match appended.await {
                Ok(id) => Some(id),
                Err(e) => {
                    log(&format!("broadcast on {name} not appended: {e}"));
                    None
                }
            }
        }
        .boxed()
    }

    fn persist_session(&self, session: crate::adapter::Session) {
        if let Transport::Streams { sessions, .. } = &self.ns.transport {
            streams::persist_session(&self.ns.link, sessions, session);
        }
    }

    fn forget_session(&self, pid: &str) {
        if let Transport::Streams { sessions, .. } = &self.ns.transport {
            streams::forget_session(&self.ns.link, &format!("{sessions}{pid}"));
        }
    }

    fn restore_session(
        &self,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<'static, Option<crate::adapter::RestoredSession>> {
        let Transport::Streams { key, sessions, .. } = &self.ns.transport else {
            return futures_util::future::ready(None).boxed();
        };
        let request = streams::Restore {
            link: self.ns.link.clone(),
            stream: key.clone(),
            session_key: format!("{sessions}{pid}"),
            nsp: self.ns.name.clone(),
            offset: offset.to_owned(),
        };
        request.run().boxed()
    }
}

impl Drop for ShardedAdapter {
    fn drop(&mut self) {
        if !self.ns.is_closed() {
            self.leave_rooms();
            self.ns.close();
            let leave = (self.on_close)();
            self.ns.link.runtime.spawn(leave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_json_unless_binary() {
        let body = wire::encode_message(&message(
            MessageType::Broadcast,
            vec![
                (
                    "packet",
                    event_packet(&Payload {
                        json: r#"["chat","hi"]"#.into(),
                        attachments: Vec::new(),
                    })
                    .unwrap(),
                ),
                (
                    "opts",
                    wire::options_value(
                        &BroadcastOptions {
                            rooms: vec!["room1".into()],
                            ..BroadcastOptions::default()
                        },
                        true,
                    ),
                ),
            ],
            "9f86d081884c7d65",
            "/",
        ));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":3,"data":{"packet":{"type":2,"data":["chat","hi"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"9f86d081884c7d65","nsp":"/"}"#
        );
        let binary = wire::encode_message(&message(
            MessageType::Broadcast,
            vec![(
                "packet",
                event_packet(&Payload {
                    json: r#"["bin",{"_placeholder":true,"num":0}]"#.into(),
                    attachments: vec![Bytes::from_static(b"\x01\x02")],
                })
                .unwrap(),
            )],
            "u",
            "/",
        ));
        assert_eq!(binary[0], 0x84, "a fixmap of four entries");
        let back = wire::decode(&binary).unwrap();
        let packet = wire::field(wire::field(&back, "data").unwrap(), "packet").unwrap();
        let (payload, _) = wire::parse_packet(packet).unwrap();
        assert_eq!(payload.attachments, vec![Bytes::from_static(b"\x01\x02")]);
    }

    #[test]
    fn socket_ids_as_node_tells_them() {
        assert!(looks_like_a_socket_id("AAAAAAAAAAAAAAAAAAAA"));
        assert!(!looks_like_a_socket_id("###AAAAAAAAAAAAAAAAAAAA"));
        // JavaScript counts UTF-16 code units.
        assert!(looks_like_a_socket_id(&"é".repeat(20)));
        assert!(!looks_like_a_socket_id(&"😀".repeat(20)));
        assert_eq!(hex_id().len(), 16);
        assert!(hex_id().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
