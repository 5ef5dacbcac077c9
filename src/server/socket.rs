//! A socket: one client connected to one namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use super::client::{protocol_of, remove_socket};
use super::{lock, ClientState, Namespace, ServerEvent, Welcome};
use crate::adapter::RemoteSocket;
use crate::engine::{CloseReason, Connection, Frame};
use crate::protocol::{
    encode_ack, encode_connect_error, encode_connect_with, encode_disconnect, encode_event, Payload,
};

/// A client's membership of one namespace.
pub struct Socket {
    /// Socket id: random for v5 clients; the Engine.IO id (or `nsp#id`) for v4 clients.
    pub id: Arc<str>,
    /// The namespace it belongs to.
    pub nsp: Arc<Namespace>,
    conn: Arc<Connection<ClientState>>,
    /// Rooms joined, besides the socket's own id.
    rooms: Mutex<Vec<Arc<str>>>,
    connected: AtomicBool,
    /// JavaScript has heard of this socket (a lazy namespace tells it on first use).
    announced: AtomicBool,
    /// The namespace's welcome (room + event) was done natively.
    welcomed: AtomicBool,
    /// Waiting for JavaScript's middlewares: not in the namespace yet, no CONNECT sent.
    pending: AtomicBool,
    /// In the namespace's alias room `prefix + id` (see `Namespace::alias_room`).
    alias_room: AtomicBool,
    /// The v5 CONNECT auth payload (raw JSON), kept for `handshake.auth`.
    auth: Option<Box<str>>,
    /// The private id of connection state recovery (v5 clients, recovery on).
    pid: Option<Arc<str>>,
    /// Connection state recovery gave this socket back.
    recovered: bool,
}

/// 20 characters of base64url over 120 random bits, like socket.io's ids.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The frames of one packet: its text, then its attachments.
pub(crate) fn frames(text: &str, data: &Payload) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + data.attachments.len());
    frames.push(Frame::text(text));
    frames.extend(data.attachments.iter().cloned().map(Frame::Binary));
    frames
}

/// The frames of event `json` (`data`'s arguments, possibly with an offset appended) in
/// namespace `nsp`, asking for ack `ack`: the packet text, then `data`'s attachments.
pub(crate) fn encoded_event(nsp: &str, ack: Option<u64>, json: &str, data: &Payload) -> Vec<Frame> {
    frames(&encode_event(nsp, ack, json, data.attachments.len()), data)
}

impl Socket {
    pub(crate) fn new(
        id: Arc<str>,
        nsp: Arc<Namespace>,
        conn: Arc<Connection<ClientState>>,
        auth: Option<String>,
        pending: bool,
    ) -> Self {
        // Every socket starts unheard of; `mark_announced` counts it out exactly once.
        nsp.count_unannounced(1);
        Socket {
            id,
            nsp,
            conn,
            rooms: Mutex::new(Vec::new()),
            connected: AtomicBool::new(true),
            announced: AtomicBool::new(false),
            welcomed: AtomicBool::new(false),
            alias_room: AtomicBool::new(false),
            pending: AtomicBool::new(pending),
            auth: auth.map(String::into_boxed_str),
            pid: None,
            recovered: false,
        }
    }

    /// Gives the socket its recovery private id; `recovered`: it is a saved socket taken back.
    pub(crate) fn with_pid(mut self, pid: Arc<str>, recovered: bool) -> Self {
        self.pid = Some(pid);
        self.recovered = recovered;
        self
    }

    /// The private id of connection state recovery.
    pub(crate) fn pid(&self) -> Option<&str> {
        self.pid.as_deref()
    }

    /// Whether connection state recovery gave this socket back.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// socket.io's `handshake` object as JSON (built on demand; nothing is kept per socket).
    pub fn handshake_json(&self) -> String {
        super::handshake::to_json(&self.conn, self.auth.as_deref())
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The engine connection under this socket.
    pub fn connection(&self) -> &Arc<Connection<ClientState>> {
        &self.conn
    }

    /// What JavaScript needs to create its socket object: the peer address and port, the
    /// `x-forwarded-for` header, the handshake time, and whether the welcome was done here.
    fn connection_event(&self) -> ServerEvent {
        let hs = self.conn.handshake();
        ServerEvent::Connection {
            sid: self.id.clone(),
            nsp: self.nsp.name_arc(),
            address: super::handshake::address(hs),
            port: hs.address.port(),
            forwarded: hs.header("x-forwarded-for").map(str::to_string),
            time: hs.issued,
            welcomed: self.welcomed.load(Ordering::Acquire),
            pending: self.pending.load(Ordering::Acquire),
            recovered: self.recovered(),
            state: if self.recovered() {
                self.nsp
                    .core()
                    .and_then(|c| c.take_recovered_state(&self.id))
            } else {
                None
            },
        }
    }

    /// Marks the socket heard of; true for the one call that did.
    fn mark_announced(&self) -> bool {
        let first = !self.announced.swap(true, Ordering::AcqRel);
        if first {
            self.nsp.count_unannounced(-1);
        }
        first
    }

    /// Tells JavaScript of this socket, once. Eager namespaces call it on connect; lazy ones
    /// when the socket first sends something.
    pub(crate) fn announce(&self) {
        if self.announced.load(Ordering::Acquire) || !self.mark_announced() {
            return;
        }
        if let Some(core) = self.nsp.core() {
            core.emit(self.connection_event());
        }
    }

    /// The connection event of a connected socket JavaScript has not heard of yet, marking it
    /// heard of (for JavaScript asking for the sockets of a lazy namespace).
    pub(crate) fn take_announcement(&self) -> Option<ServerEvent> {
        if !self.connected() || !self.mark_announced() {
            return None;
        }
        Some(self.connection_event())
    }

    /// The namespace's welcome done natively: join `prefix + id`, then emit `event` with
    /// `{time, socketID, clientID}` (weroll's shakehand success when no shakehand is asked).
    pub(crate) fn welcome(self: &Arc<Self>, welcome: &Welcome) {
        self.join(&[format!("{}{}", welcome.room_prefix, self.id)]);
        let now = crate::engine::unix_ms();
        let id = serde_json::Value::from(&*self.id).to_string();
        let event = serde_json::Value::from(welcome.event.as_str()).to_string();
        let json = format!("[{event},{{\"time\":{now},\"socketID\":{id},\"clientID\":{id}}}]");
        self.welcomed.store(true, Ordering::Release);
        self.emit(
            &Payload {
                json,
                attachments: Vec::new(),
            },
            None,
        );
    }

    /// Joins the namespace, sends CONNECT, does the namespace's welcome, and tells JavaScript
    /// (now, or later for a lazy namespace).
    pub(crate) fn complete_connect(self: &Arc<Self>) {
        self.nsp.add(self);
        let restored = if self.recovered() {
            self.nsp.core().and_then(|c| c.take_restoring(&self.id))
        } else {
            None
        };
        match restored {
            // As socket.io: rooms back, the missed events, then CONNECT (the client replays
            // events that came before it, so they stay ahead of live ones).
            Some(restored) => {
                if let (Some(state), Some(core)) = (&restored.state, self.nsp.core()) {
                    core.set_recovered_state(self.id.clone(), state.clone());
                }
                self.join(&restored.rooms);
                // The namespace's welcome was done when it first connected (its room is back).
                if self.nsp.welcome().is_some() {
                    self.welcomed.store(true, Ordering::Release);
                }
                for frames in &restored.missed {
                    self.send_frames(frames);
                }
                self.send_connect();
            }
            None => {
                self.send_connect();
                if let Some(welcome) = self.nsp.welcome() {
                    self.welcome(&welcome);
                }
            }
        }
        if !self.nsp.is_lazy() {
            self.announce();
        }
    }

    /// Still waiting for JavaScript's middlewares.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The middlewares let a pending socket in. False if it was not pending (or is gone).
    pub fn accept(self: &Arc<Self>) -> bool {
        if !self.connected() || !self.pending.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.complete_connect();
        true
    }

    /// The middlewares turned a pending socket away: the client gets CONNECT_ERROR with
    /// `message` (and `data_json`, already valid JSON), and the socket is forgotten without a
    /// disconnect event. False if it was not pending (or is gone).
    pub fn refuse(&self, message: &str, data_json: Option<&str>) -> bool {
        if !self.connected() || !self.pending.swap(false, Ordering::AcqRel) {
            return false;
        }
        let text =
            encode_connect_error(self.nsp.name(), message, data_json, protocol_of(&self.conn));
        self.conn.send(Frame::text(&text));
        remove_socket(&self.conn, &self.id);
        if self.connected.swap(false, Ordering::AcqRel) {
            if let Some(core) = self.nsp.core() {
                core.take_restoring(&self.id);
                core.unregister(&self.id);
            }
        }
        true
    }

    pub(crate) fn send_connect(&self) {
        let text = encode_connect_with(
            self.nsp.name(),
            &self.id,
            self.pid.as_deref(),
            protocol_of(&self.conn),
        );
        self.conn.send(Frame::text(&text));
    }

    /// Already encoded frames (a broadcast shares them between recipients).
    pub(crate) fn send_frames(&self, frames: &[Frame]) -> bool {
        match frames {
            [one] => self.conn.send(one.clone()),
            many => self.conn.send_all(many),
        }
    }

    /// Like `send_frames`, the transport's wake-up left to the caller (see
    /// [`Connection::send_all_deferred`]).
    pub(crate) fn send_frames_deferred(
        &self,
        frames: &[Frame],
        wakers: &mut Vec<std::task::Waker>,
    ) -> bool {
        self.conn.send_all_deferred(frames, wakers)
    }

    /// Emits an event (`data` is `["name", ...args]`); `ack` asks the client to acknowledge.
    pub fn emit(&self, data: &Payload, ack: Option<u64>) -> bool {
        if !self.connected() {
            return false;
        }
        // With recovery on, an emit without ack is kept (for this socket's id) and carries
        // an offset, as socket.io's emits through its session-aware adapter do.
        if ack.is_none() && self.nsp.cluster_offsets() {
            // Kept by the cluster, as socket.io's emits are with such an adapter: a broadcast
            // to this socket's own id, delivered once the cluster gave it an offset.
            let to_self = crate::adapter::BroadcastOptions {
                rooms: vec![self.id.to_string()],
                ..Default::default()
            };
            self.nsp.broadcast(data.clone(), &to_self);
            return true;
        }
        let core = self.nsp.core();
        let frames = match (&core, ack) {
            (Some(core), None) => core.event_frames(
                &self.nsp.name_arc(),
                data,
                super::recovery::Target::Socket(&self.id),
            ),
            _ => encoded_event(self.nsp.name(), ack, &data.json, data),
        };
        let sent = self.send_frames(&frames);
        if let Some(core) = core.filter(|_| sent) {
            core.traffic.sent(&frames, 1);
        }
        sent
    }

    /// Answers the client's event that carried ack id `id`.
    pub fn ack(&self, id: u64, data: &Payload) -> bool {
        if !self.connected() {
            return false;
        }
        let text = encode_ack(self.nsp.name(), id, &data.json, data.attachments.len());
        let frames = frames(&text, data);
        let sent = self.send_frames(&frames);
        if let Some(core) = self.nsp.core().filter(|_| sent) {
            core.traffic.sent(&frames, 1);
        }
        sent
    }

    /// Joins rooms.
    pub fn join(self: &Arc<Self>, rooms: &[String]) {
        if self.connected() {
            self.nsp.join(self, rooms);
        }
    }

    /// Leaves a room.
    pub fn leave(self: &Arc<Self>, room: &str) {
        self.nsp.leave(self, room);
    }

    /// Rooms joined, besides the socket's own id.
    pub fn rooms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(alias) = self.nsp.alias_room(self) {
            out.push(alias.to_string());
        }
        out.extend(lock(&self.rooms).iter().map(|r| r.to_string()));
        out
    }

    pub(crate) fn in_alias_room(&self) -> bool {
        self.alias_room.load(Ordering::Acquire)
    }

    pub(crate) fn set_alias_room(&self, on: bool) {
        self.alias_room.store(on, Ordering::Release);
    }

    pub(crate) fn rooms_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<str>>> {
        lock(&self.rooms)
    }

    /// Server-side disconnect: tells the client, then forgets the socket; `close` also closes
    /// the whole connection.
    pub fn disconnect(&self, close: bool) {
        if self.connected() {
            self.conn
                .send(Frame::text(&encode_disconnect(self.nsp.name())));
            self.left("server namespace disconnect");
        }
        if close {
            self.conn.close(CloseReason::ServerClose);
        }
    }

    /// The socket left its namespace while its connection stays (client or server DISCONNECT).
    pub(crate) fn left(&self, reason: &'static str) {
        remove_socket(&self.conn, &self.id);
        self.closed(reason);
    }

    /// The socket is gone: leave every room, tell JavaScript once (if it heard of the socket),
    /// with the rooms it was in.
    pub(crate) fn closed(&self, reason: &'static str) {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        let rooms = self.nsp.remove(self);
        self.nsp
            .forget_checkpoint(&self.id, self.pid(), super::recovery::saves(reason));
        if let Some(core) = self.nsp.core() {
            let mut save_as = None;
            if let (Some(rec), Some(pid)) = (core.recovery(), &self.pid) {
                if super::recovery::saves(reason) && !self.is_pending() {
                    if self.nsp.cluster_offsets() {
                        // JavaScript saves it with what it keeps of the socket.
                        save_as = Some(pid.clone());
                    } else {
                        rec.save(
                            pid.clone(),
                            self.id.clone(),
                            self.nsp.name_arc(),
                            rooms.clone(),
                        );
                    }
                }
            }
            if self.recovered() {
                core.take_restoring(&self.id);
                core.take_recovered_state(&self.id);
            }
            core.unregister(&self.id);
            if !self.mark_announced() {
                core.emit(ServerEvent::Disconnect {
                    sid: self.id.clone(),
                    reason,
                    rooms,
                    save_as,
                });
            } else if let Some(pid) = save_as {
                // JavaScript never heard of it: nothing of it to keep but its rooms.
                let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
                self.nsp.persist_session(&self.id, &pid, &rooms, None);
            }
        }
    }

    /// This socket as other servers see it.
    pub(crate) fn describe(&self) -> RemoteSocket {
        let mut rooms = vec![self.id.to_string()];
        rooms.extend(self.rooms());
        let handshake =
            serde_json::from_str(&self.handshake_json()).unwrap_or(serde_json::Value::Null);
        RemoteSocket {
            id: self.id.to_string(),
            rooms,
            handshake,
            data: serde_json::Value::Null,
        }
    }
}
