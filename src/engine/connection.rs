//! One Engine.IO session as the layer above sees it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use base64::Engine as _;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::session::Core;
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

    /// Size of the message in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An incoming Engine.IO `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, without the `4` type prefix.
    Text(String),
    /// A binary message (v3 websocket frames have their `4` type byte removed).
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
    /// The client sent an Engine.IO `close` packet (engine.io reports it as "transport close").
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
            CloseReason::ForcedClose => "transport close",
            CloseReason::ServerClose => "server shutting down",
            CloseReason::ParseError => "parse error",
            CloseReason::SlowClient => "transport error",
        }
    }
}

/// What the client's opening request looked like (`socket.handshake` in socket.io).
///
/// Kept for the whole life of the connection, so it is one allocation: the request's path and
/// query, then one `name:value` line per header (names lower-cased, in order).
#[derive(Debug, Clone)]
pub struct Handshake {
    text: Box<str>,
    /// Length of the path-and-query at the start of `text`.
    url_len: u32,
    /// Peer address of the TCP connection.
    pub address: SocketAddr,
    /// Unix time in ms when the session opened.
    pub issued: u64,
}

impl Handshake {
    /// `url`: path and query; `headers`: name (lower case) and value pairs, in order.
    pub fn new<'a>(
        url: &str,
        headers: impl IntoIterator<Item = (&'a str, std::borrow::Cow<'a, str>)>,
        address: SocketAddr,
        issued: u64,
    ) -> Handshake {
        let mut text = String::with_capacity(url.len() + 256);
        text.push_str(url);
        let url_len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        for (name, value) in headers {
            text.push('\n');
            text.push_str(name);
            text.push(':');
            // A value cannot hold a line break in HTTP/1.1; keep the block parseable anyway.
            text.extend(value.chars().map(|c| if c == '\n' { ' ' } else { c }));
        }
        Handshake {
            text: text.into_boxed_str(),
            url_len,
            address,
            issued,
        }
    }

    /// Request path and query.
    pub fn url(&self) -> &str {
        self.text.get(..self.url_len as usize).unwrap_or("")
    }

    /// Raw query string without `?`.
    pub fn query(&self) -> &str {
        self.url().split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// Request headers, names lower-cased, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .get(self.url_len as usize..)
            .unwrap_or("")
            .split('\n')
            .filter_map(|line| line.split_once(':'))
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// An Engine.IO session id: 15 random bytes as 20 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sid([u8; 20]);

impl Sid {
    /// A fresh unguessable id from the thread-local CSPRNG.
    pub(crate) fn random() -> Sid {
        let raw: [u8; 15] = rand::random();
        let mut out = [0u8; 20];
        // 15 bytes always encode to exactly 20 characters.
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        debug_assert_eq!(written.ok(), Some(20));
        Sid(out)
    }

    /// Parses a client-supplied sid; anything not 20 bytes cannot be one of ours.
    pub(crate) fn parse(s: &str) -> Option<Sid> {
        s.as_bytes().try_into().ok().map(Sid)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Picks a shard of the session table; the sid is random, so any byte spreads well.
    pub(crate) fn shard(&self, shards: usize) -> usize {
        usize::from(self.0[0]).wrapping_add(usize::from(self.0[19]) << 8) % shards.max(1)
    }
}

/// Engine.IO control packets as frames: they travel through the same queue as messages, so
/// ordering against messages is kept on both transports.
pub(crate) mod control {
    use super::{Frame, Utf8Bytes};
    pub(crate) const CLOSE: Frame = Frame::Text(Utf8Bytes::from_static("1"));
    pub(crate) const PING: Frame = Frame::Text(Utf8Bytes::from_static("2"));
    pub(crate) const PONG: Frame = Frame::Text(Utf8Bytes::from_static("3"));
    pub(crate) const NOOP: Frame = Frame::Text(Utf8Bytes::from_static("6"));
}

/// Mutable session state, behind one short-held lock (never held across an await or a
/// handler call).
#[derive(Default)]
pub(crate) struct State {
    /// Frames waiting for the transport (the pending GET, or the websocket writer).
    pub(crate) queue: VecDeque<Frame>,
    /// Bytes of the messages in `queue`. Transports always drain the whole queue, so the count
    /// restarts whenever a message finds the queue empty.
    pub(crate) queued_bytes: usize,
    /// Whoever drains `queue`: the pending polling GET or the websocket task.
    pub(crate) waker: Option<Waker>,
    /// Set once, by whichever close comes first; `send` fails from then on.
    pub(crate) closing: Option<CloseReason>,
    /// `on_close` has been called (or claimed by the caller about to call it).
    pub(crate) finalized: bool,
    /// A handler call (`on_open`, a POST's `on_message`s) is running; `on_close` must wait.
    pub(crate) dispatching: bool,
    /// The session lives on a websocket (directly, or after a completed upgrade).
    pub(crate) websocket: bool,
    /// A websocket is probing this polling session.
    pub(crate) upgrading: bool,
    /// The pending (or next) GET must answer `6` so the client ends its poll cycle.
    pub(crate) noop_pending: bool,
    pub(crate) get_busy: bool,
    pub(crate) post_busy: bool,
    /// v4: a ping went out and its pong has not come back yet.
    pub(crate) awaiting_pong: bool,
    /// v3: the handshake asked for `b64=1`; clients say so only there, not on later polls.
    pub(crate) base64_only: bool,
}

impl State {
    /// Marks the session closing; false if it already was. The close packet goes last in the
    /// queue so a polling client learns why its session ended.
    fn begin_close(&mut self, reason: CloseReason) -> bool {
        if self.closing.is_some() {
            return false;
        }
        self.closing = Some(reason);
        match reason {
            // Free the memory now: the client is not reading it anyway.
            CloseReason::SlowClient => self.queue = VecDeque::new(),
            // The client ended a polling session itself: its waiting GET just ends (`6`).
            CloseReason::ForcedClose if !self.websocket => {
                self.queue.clear();
                self.queue.push_back(control::NOOP);
            }
            _ => self.queue.push_back(control::CLOSE),
        }
        true
    }

    /// Whether a new polling request may still reach this session. Once it is closing, only
    /// a server close or the client's own close keeps it reachable, and only until a GET has
    /// collected its final packets (the queue ends with `1` or `6`, and nothing can be queued
    /// after that). Any other close
    /// makes the sid unknown at once, as in engine.io; a GET already waiting still gets its
    /// answer.
    pub(crate) fn reachable(&self) -> bool {
        match self.closing {
            None => true,
            // The client's own close leaves a noop for its GET, which may arrive just after
            // the POST that closed the session.
            Some(CloseReason::ServerClose | CloseReason::ForcedClose) => !self.queue.is_empty(),
            Some(_) => false,
        }
    }
}

/// One Engine.IO session. `D` is the per-connection state of the layer above.
pub struct Connection<D> {
    id: Sid,
    version: EioVersion,
    handshake: Handshake,
    pub(crate) state: Mutex<State>,
    /// Engine-clock ms at which the sweeper must look at this session (next ping, heartbeat
    /// deadline, or end of the post-close grace). Outside the lock so sweeping is cheap.
    pub(crate) timer_at: AtomicU64,
    pub(crate) core: Arc<Core>,
    /// State owned by the layer above.
    pub data: D,
}

impl<D> Connection<D> {
    pub(crate) fn new(
        id: Sid,
        version: EioVersion,
        handshake: Handshake,
        websocket: bool,
        core: Arc<Core>,
        data: D,
    ) -> Connection<D> {
        Connection {
            id,
            version,
            handshake,
            // `on_open` has yet to run: nothing may run `on_close` before it has.
            state: Mutex::new(State {
                websocket,
                dispatching: true,
                ..State::default()
            }),
            timer_at: AtomicU64::new(u64::MAX),
            core,
            data,
        }
    }

    /// The Engine.IO session id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    pub(crate) fn sid(&self) -> Sid {
        self.id
    }

    /// Engine.IO revision of this client.
    pub fn version(&self) -> EioVersion {
        self.version
    }

    /// The opening request.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing that can panic runs under this lock; recover rather than cascade if it did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one message. Returns false when the session is closed; a full queue closes the
    /// session with [`CloseReason::SlowClient`] and returns false.
    pub fn send(&self, frame: Frame) -> bool {
        let bytes = frame.len();
        self.enqueue(1, bytes, std::iter::once(frame), None)
    }

    /// Queues several messages that must stay together (a packet and its attachments).
    pub fn send_all(&self, frames: &[Frame]) -> bool {
        let bytes = frames.iter().map(Frame::len).sum();
        self.enqueue(frames.len(), bytes, frames.iter().cloned(), None)
    }

    /// Queues like [`Connection::send_all`], but leaves waking the transport to the caller: its
    /// waker, if it was waiting, goes into `wakers` (a large fan-out wakes its recipients in
    /// slices). What is queued keeps its place either way.
    pub fn send_all_deferred(&self, frames: &[Frame], wakers: &mut Vec<Waker>) -> bool {
        let bytes = frames.iter().map(Frame::len).sum();
        self.enqueue(frames.len(), bytes, frames.iter().cloned(), Some(wakers))
    }

    fn enqueue(
        &self,
        n: usize,
        bytes: usize,
        frames: impl Iterator<Item = Frame>,
        deferred: Option<&mut Vec<Waker>>,
    ) -> bool {
        let mut st = self.lock();
        if st.closing.is_some() {
            return false;
        }
        if st.queue.is_empty() {
            st.queued_bytes = 0;
        }
        // An empty queue always takes a group, however large, so a packet with many
        // attachments is never refused to a client that keeps up.
        if !st.queue.is_empty()
            && (st.queue.len() + n > self.core.max_queued
                || st.queued_bytes + bytes > self.core.max_queued_bytes)
        {
            st.begin_close(CloseReason::SlowClient);
            let waker = st.waker.take();
            let websocket = st.websocket;
            drop(st);
            self.after_close(waker, websocket);
            return false;
        }
        st.queue.extend(frames);
        st.queued_bytes += bytes;
        let waker = st.waker.take();
        drop(st);
        match (waker, deferred) {
            (Some(w), Some(list)) => list.push(w),
            (Some(w), None) => w.wake(),
            (None, _) => {}
        }
        true
    }

    /// Queues an Engine.IO control packet; not counted against the queue bound (the engine
    /// sends at most a handful per heartbeat).
    pub(crate) fn push_control(&self, frame: Frame) {
        let mut st = self.lock();
        if st.closing.is_some() {
            return;
        }
        st.queue.push_back(frame);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Closes the session from the server side: queued messages are flushed first, then the
    /// Engine.IO close packet (except for [`CloseReason::SlowClient`], whose queue is dropped,
    /// and for transport failures and ping timeouts, where the socket is just dropped).
    /// `on_close` runs later on an engine task, never inside this call.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        if !st.begin_close(reason) {
            return;
        }
        let waker = st.waker.take();
        let websocket = st.websocket;
        drop(st);
        self.after_close(waker, websocket);
    }

    /// Wakes the transport, and for polling sessions (which have no task of their own) asks
    /// the engine task to run `on_close`. Never runs handler code on the caller's thread:
    /// `close` and `send` may be called with the layer above's locks held.
    fn after_close(&self, waker: Option<Waker>, websocket: bool) {
        self.core
            .schedule(&self.timer_at, self.core.now_ms() + self.core.grace_ms);
        if let Some(w) = waker {
            w.wake();
        }
        if !websocket {
            self.core.request_reap(self.id);
        }
    }

    /// Claims the right to call `on_close`: true once per session, and never while a handler
    /// call is running. Polling finalizers pass `websocket_owner = false` and leave websocket
    /// sessions to their task.
    pub(crate) fn claim_close(&self, websocket_owner: bool) -> Option<CloseReason> {
        let mut st = self.lock();
        if st.finalized || st.dispatching || (st.websocket && !websocket_owner) {
            return None;
        }
        let reason = st.closing?;
        st.finalized = true;
        Some(reason)
    }

    /// Whether the session is on a websocket (after the handshake or an upgrade).
    pub fn is_websocket(&self) -> bool {
        self.lock().websocket
    }
}

#[cfg(test)]
mod tests {
    use super::Handshake;
    use std::borrow::Cow;

    #[test]
    fn handshake_block_gives_back_url_query_and_headers() {
        let hs = Handshake::new(
            "/socket.io/?EIO=4&transport=websocket&t=a:b",
            [
                ("host", Cow::Borrowed("127.0.0.1:3001")),
                ("x-forwarded-for", Cow::Borrowed("10.0.0.1, 10.0.0.2")),
                ("cookie", Cow::Borrowed("a=1")),
                ("cookie", Cow::Borrowed("b=2")),
                ("x-empty", Cow::Borrowed("")),
                ("x-odd", Cow::Owned("line\nbreak".to_string())),
            ],
            "127.0.0.1:5000".parse().expect("address"),
            42,
        );
        assert_eq!(hs.url(), "/socket.io/?EIO=4&transport=websocket&t=a:b");
        assert_eq!(hs.query(), "EIO=4&transport=websocket&t=a:b");
        assert_eq!(hs.header("host"), Some("127.0.0.1:3001"));
        assert_eq!(hs.header("x-forwarded-for"), Some("10.0.0.1, 10.0.0.2"));
        assert_eq!(hs.header("x-empty"), Some(""));
        assert_eq!(hs.header("x-odd"), Some("line break"));
        assert_eq!(hs.header("missing"), None);
        let cookies: Vec<_> = hs.headers().filter(|(k, _)| *k == "cookie").collect();
        assert_eq!(cookies, [("cookie", "a=1"), ("cookie", "b=2")]);
        assert_eq!(hs.headers().count(), 6);

        let bare = Handshake::new("/", [], "127.0.0.1:5000".parse().expect("address"), 0);
        assert_eq!(
            (bare.url(), bare.query(), bare.headers().count()),
            ("/", "", 0)
        );
    }
}
