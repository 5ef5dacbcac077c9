//! One Engine.IO session as the layer above sees it.

use std::net::SocketAddr;

use bytes::Bytes;

use super::EioVersion;

/// An outgoing Engine.IO `message`, encoded once and shared by every recipient (cloning is a
/// reference-count increment). The text form already holds the Engine.IO packet text
/// (`4` + the Socket.IO packet), so every websocket recipient gets the very same bytes.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A text message: `4<socket.io packet>`.
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// A binary message (an attachment), without any type byte.
    Binary(Bytes),
}

impl Frame {
    /// A text message carrying `s` (the `4` type prefix is added here, once).
    pub fn text(s: &str) -> Frame {
        let mut t = String::with_capacity(s.len() + 1);
        t.push('4');
        t.push_str(s);
        Frame::Text(t.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Frame {
        Frame::Binary(b.into())
    }
}

/// An incoming Engine.IO `message`.
#[derive(Debug, Clone)]
pub enum Incoming {
    Text(String),
    Binary(Bytes),
}

/// Why a session ended (socket.io's disconnect reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the transport or went away.
    TransportClose,
    /// The transport failed (I/O error, protocol violation at the transport level).
    TransportError,
    /// No heartbeat within the allowed time.
    PingTimeout,
    /// The client sent an Engine.IO `close` packet.
    ForcedClose,
    /// The server closed the session.
    ServerClose,
    /// The client sent something undecodable at the Engine.IO or Socket.IO level.
    ParseError,
    /// The client did not read its messages fast enough; its queue overflowed.
    SlowClient,
}

impl CloseReason {
    /// socket.io's spelling of the reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerClose => "server shutting down",
            CloseReason::ParseError => "parse error",
            CloseReason::SlowClient => "transport error",
        }
    }
}

/// What the client's opening request looked like (`socket.handshake` in socket.io).
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Request headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Raw query string without `?`.
    pub query: String,
    /// Request path and query.
    pub url: String,
    /// Peer address of the TCP connection.
    pub address: SocketAddr,
    /// Unix time in ms when the session opened.
    pub issued: u64,
}

/// One Engine.IO session. `D` is the per-connection state of the layer above.
pub struct Connection<D> {
    id: String,
    version: EioVersion,
    handshake: Handshake,
    /// State owned by the layer above.
    pub data: D,
}

impl<D> Connection<D> {
    /// The Engine.IO session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Engine.IO revision of this client.
    pub fn version(&self) -> EioVersion {
        self.version
    }

    /// The opening request.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// Queues one message. Returns false when the session is closed; a full queue closes the
    /// session with [`CloseReason::SlowClient`] and returns false.
    pub fn send(&self, frame: Frame) -> bool {
        let _ = frame;
        todo!("engine::Connection::send")
    }

    /// Queues several messages that must stay together (a packet and its attachments).
    pub fn send_all(&self, frames: &[Frame]) -> bool {
        let _ = frames;
        todo!("engine::Connection::send_all")
    }

    /// Closes the session from the server side: queued messages are flushed first.
    pub fn close(&self, reason: CloseReason) {
        let _ = reason;
        todo!("engine::Connection::close")
    }

    /// Whether the session is on a websocket (after the handshake or an upgrade).
    pub fn is_websocket(&self) -> bool {
        todo!("engine::Connection::is_websocket")
    }
}
