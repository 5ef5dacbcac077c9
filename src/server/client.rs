//! One Engine.IO connection as Socket.IO sees it: the sockets it opened (one per namespace),
//! binary reassembly, and the connect timeout of v5 clients.

use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

use super::{lock, ServerCore, ServerEvent, Socket};
use crate::engine::{CloseReason, Connection, EioVersion, Frame, Incoming};
use crate::protocol::{
    encode_connect_error, AttachmentCollector, Collected, Packet, PacketType, Payload,
    ProtocolVersion,
};

/// Per-connection state, stored in the engine's [`Connection`].
#[derive(Default)]
pub struct ClientState {
    inner: Mutex<ClientInner>,
}

#[derive(Default)]
struct ClientInner {
    /// The sockets of this connection, one per namespace (few, so a Vec beats a map).
    sockets: Vec<Arc<Socket>>,
    collector: AttachmentCollector,
    connect_timer: Option<AbortHandle>,
    closed: bool,
}

type Conn = Arc<Connection<ClientState>>;

/// The Socket.IO protocol a connection speaks follows from its Engine.IO version.
pub(crate) fn protocol_of(conn: &Connection<ClientState>) -> ProtocolVersion {
    match conn.version() {
        EioVersion::V3 => ProtocolVersion::V4,
        EioVersion::V4 => ProtocolVersion::V5,
    }
}

pub(super) fn on_open(core: &ServerCore, conn: &Conn) {
    match protocol_of(conn) {
        // Protocol v4 connects `/` implicitly, right after the Engine.IO open.
        ProtocolVersion::V4 => connect(core, conn, "/", None),
        ProtocolVersion::V5 => {
            let weak = Arc::downgrade(conn);
            let timeout = core.config.connect_timeout;
            let timer = tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(conn) = weak.upgrade() {
                    // Sockets still waiting for the middlewares do not count as joined.
                    let idle = lock(&conn.data.inner)
                        .sockets
                        .iter()
                        .all(|s| s.is_pending());
                    if idle {
                        conn.close(CloseReason::ServerClose);
                    }
                }
            });
            lock(&conn.data.inner).connect_timer = Some(timer.abort_handle());
        }
    }
}

pub(super) fn on_message(core: &ServerCore, conn: &Conn, msg: Incoming) {
    let collected = {
        let mut inner = lock(&conn.data.inner);
        match msg {
            Incoming::Text(text) => {
                Packet::decode(&text, protocol_of(conn)).and_then(|p| inner.collector.packet(p))
            }
            Incoming::Binary(data) => inner.collector.attachment(data),
        }
    };
    match collected {
        Ok(Collected::Complete(packet, attachments)) => dispatch(core, conn, packet, attachments),
        Ok(Collected::Pending) => {}
        Err(_) => conn.close(CloseReason::ParseError),
    }
}

pub(super) fn on_close(_core: &ServerCore, conn: &Conn, reason: CloseReason) {
    let sockets = {
        let mut inner = lock(&conn.data.inner);
        inner.closed = true;
        if let Some(t) = inner.connect_timer.take() {
            t.abort();
        }
        std::mem::take(&mut inner.sockets)
    };
    for socket in sockets {
        socket.closed(reason.as_str());
    }
}

/// Forgets a socket that left its namespace (its connection stays open).
pub(crate) fn remove_socket(conn: &Connection<ClientState>, sid: &str) {
    lock(&conn.data.inner).sockets.retain(|s| &*s.id != sid);
}

fn socket_for(conn: &Conn, nsp: &str) -> Option<Arc<Socket>> {
    lock(&conn.data.inner)
        .sockets
        .iter()
        .find(|s| s.nsp.name() == nsp)
        .cloned()
}

fn dispatch(core: &ServerCore, conn: &Conn, packet: Packet, attachments: Vec<bytes::Bytes>) {
    match packet.kind {
        PacketType::Connect => connect(core, conn, &packet.nsp, packet.data),
        PacketType::Disconnect => {
            if let Some(socket) = socket_for(conn, &packet.nsp) {
                socket.left("client namespace disconnect");
            }
        }
        PacketType::Event | PacketType::BinaryEvent => match socket_for(conn, &packet.nsp) {
            Some(socket) => {
                socket.announce();
                let bytes = packet.data.as_ref().map_or(0, String::len)
                    + attachments.iter().map(bytes::Bytes::len).sum::<usize>();
                super::Traffic::add(&core.traffic.events_in, 1);
                super::Traffic::add(&core.traffic.bytes_in, bytes as u64);
                core.emit(ServerEvent::Event {
                    sid: socket.id.clone(),
                    data: Payload {
                        json: packet.data.unwrap_or_default(),
                        attachments,
                    },
                    ack: packet.id,
                })
            }
            // An event for a namespace the client never joined: socket.io closes the client.
            None => conn.close(CloseReason::ParseError),
        },
        PacketType::Ack | PacketType::BinaryAck => {
            let Some(id) = packet.id else {
                conn.close(CloseReason::ParseError);
                return;
            };
            if let Some(socket) = socket_for(conn, &packet.nsp) {
                let data = Payload {
                    json: packet.data.unwrap_or_default(),
                    attachments,
                };
                if id >= super::namespace::FIRST_BROADCAST_ACK {
                    socket.nsp.on_ack(&socket.id, id, data);
                    return;
                }
                socket.announce();
                core.emit(ServerEvent::Ack {
                    sid: socket.id.clone(),
                    id,
                    data,
                });
            }
        }
        // Only servers send CONNECT_ERROR.
        PacketType::ConnectError => conn.close(CloseReason::ParseError),
    }
}

fn connect(core: &ServerCore, conn: &Conn, nsp: &str, auth: Option<String>) {
    let version = protocol_of(conn);
    let Some(ns) = core.namespace(nsp) else {
        conn.send(Frame::text(&encode_connect_error(
            nsp,
            "Invalid namespace",
            None,
            version,
        )));
        return;
    };
    // Connection state recovery (v5 clients): `{pid, offset}` in the CONNECT payload takes a
    // saved socket back; anything that does not match gives a new one.
    let recovery = core.recovery().filter(|_| version == ProtocolVersion::V5);
    let asked = recovery.and_then(|_| super::recovery::recovery_auth(auth.as_deref()?));
    if let (Some((pid, offset)), true) = (&asked, ns.cluster_offsets()) {
        // The cluster keeps the sessions: ask it, then connect.
        let lookup = ns.adapter().restore_session(pid, offset);
        if let (Some(rt), Some(core)) = (core.spawner(), ns.core()) {
            let (conn, ns, pid) = (conn.clone(), ns.clone(), Arc::<str>::from(pid.as_str()));
            rt.spawn(async move {
                let restored = lookup.await.map(|r| {
                    let missed = r
                        .missed
                        .iter()
                        .map(|p| super::socket::encoded_event(ns.name(), None, &p.json, p))
                        .collect();
                    let restored = super::recovery::Restored {
                        sid: r.sid.into(),
                        rooms: r.rooms,
                        missed,
                        state: r.state_json,
                    };
                    (pid, restored)
                });
                open(&core, &conn, &ns, version, auth, restored);
            });
            return;
        }
    }
    let restored = recovery.zip(asked).and_then(|(rec, (pid, offset))| {
        let restored = rec.restore(&pid, &offset, nsp)?;
        Some((Arc::<str>::from(pid), restored))
    });
    open(core, conn, &ns, version, auth, restored);
}

/// Opens socket `nsp` on `conn`: a new one, or the one connection state recovery gave back.
fn open(
    core: &ServerCore,
    conn: &Conn,
    ns: &Arc<super::Namespace>,
    version: ProtocolVersion,
    auth: Option<String>,
    restored: Option<(Arc<str>, super::recovery::Restored)>,
) {
    let nsp = ns.name();
    let recovery = core.recovery().filter(|_| version == ProtocolVersion::V5);
    // The old socket still connected (a forged or copied pid): never share it.
    let restored = restored.filter(|(_, r)| !super::read(&core.sockets).contains_key(&*r.sid));
    let sid: Arc<str> = match (&restored, version) {
        (Some((_, r)), _) => r.sid.clone(),
        (None, ProtocolVersion::V5) => crate::server::socket::random_id().into(),
        (None, ProtocolVersion::V4) if nsp == "/" => conn.id().into(),
        (None, ProtocolVersion::V4) => format!("{nsp}#{}", conn.id()).into(),
    };
    let skip_middlewares =
        restored.is_some() && recovery.is_some_and(|r| r.config.skip_middlewares);
    let gated = ns.is_gated() && !skip_middlewares;
    let socket = {
        let mut inner = lock(&conn.data.inner);
        if inner.closed || inner.sockets.iter().any(|s| s.nsp.name() == nsp) {
            return;
        }
        // A socket waiting for the middlewares leaves the timer running (socket.io's
        // connectTimeout covers the middlewares too).
        if !gated {
            if let Some(t) = inner.connect_timer.take() {
                t.abort();
            }
        }
        let mut socket = Socket::new(sid.clone(), ns.clone(), conn.clone(), auth, gated);
        if recovery.is_some() {
            socket = match &restored {
                Some((pid, _)) => socket.with_pid(pid.clone(), true),
                None => socket.with_pid(crate::server::socket::random_id().into(), false),
            };
        }
        let socket = Arc::new(socket);
        inner.sockets.push(socket.clone());
        socket
    };
    if let Some((_, r)) = restored {
        core.set_restoring(sid, r);
    }
    core.register(&socket);
    if gated {
        // JavaScript's middlewares decide; `Socket::accept` does the rest.
        socket.announce();
        return;
    }
    socket.complete_connect();
}
