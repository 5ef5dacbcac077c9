//! Websocket transport: new sessions opened directly on a websocket, the polling→websocket
//! upgrade probe, and the per-connection task that reads, writes and closes.
//!
//! Each websocket session is one task running [`WsDriver`], a hand-written future: it reads
//! and writes the same socket without splitting it (no extra lock or allocation), and an idle
//! connection costs exactly its struct, the socket and tungstenite's small read buffer.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::connection::{Connection, Handshake};
use super::deflate;
use super::packet::{self, EnginePacket};
use super::stream::{LeanStream, NetStream, WRITE_LIMIT};
use super::{CloseReason, EioVersion, Engine, EngineHandler, Frame, Incoming};

type Ws = WebSocketStream<LeanStream>;

/// Messages handled per wake-up before yielding to other tasks.
const READ_BUDGET: usize = 32;
/// Batches taken from the session queue per wake-up before yielding to other tasks.
const WRITE_BUDGET: usize = 8;
/// How long a server-closed websocket waits for the client's close reply before dropping the
/// TCP connection (closing with unread input would reset it and could lose the close packet).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How often an upgrade re-checks for a POST still being delivered.
const UPGRADE_RETRY: Duration = Duration::from_millis(5);

/// Where a websocket's socket comes from once its request is answered with 101.
pub(crate) enum WsIo {
    /// A connection served by hyper on the engine's own port.
    Hyper(OnUpgrade),
    /// A connection whose upgrade request the host already parsed (a shared port): the 101
    /// answer still has to be written, and `pre` holds the bytes read past the request head.
    Adopted {
        stream: TcpStream,
        pre: Vec<u8>,
        response: Vec<u8>,
    },
}

/// Who a websocket request is for.
pub(crate) enum WsTarget<D> {
    /// A new session opened directly on the websocket (first frame: the open packet).
    New(Handshake),
    /// An upgrade probe for this polling session (already marked `upgrading`).
    Upgrade(Arc<Connection<D>>),
    /// A second websocket for a session that is already upgrading or upgraded: closed at once.
    Reject,
}

impl<H: EngineHandler> Engine<H> {
    /// Finishes the HTTP upgrade, then runs the probe (for upgrades) and hands the socket to
    /// its long-lived task.
    pub(crate) async fn run_websocket(
        self: Arc<Self>,
        io: WsIo,
        target: WsTarget<H::Data>,
        version: EioVersion,
        deflate: Option<usize>,
    ) {
        let stream = match io {
            WsIo::Hyper(on_upgrade) => match on_upgrade.await {
                Ok(upgraded) => open_websocket(upgraded),
                Err(_) => None,
            },
            WsIo::Adopted {
                mut stream,
                pre,
                response,
            } => match tokio::time::timeout(CLOSE_GRACE, stream.write_all(&response)).await {
                Ok(Ok(())) => Some(LeanStream::new(NetStream::Tcp(stream), pre)),
                _ => None,
            },
        };
        let stream = stream.and_then(|mut s| match deflate {
            Some(threshold) => s
                .inflate(threshold, self.config.max_payload)
                .ok()
                .map(|_| s),
            None => Some(s),
        });
        let ws = match stream {
            Some(s) => {
                Some(WebSocketStream::from_raw_socket(s, Role::Server, Some(self.ws_config)).await)
            }
            None => None,
        };
        let Some(mut ws) = ws else {
            if let WsTarget::Upgrade(conn) = &target {
                conn.lock().upgrading = false;
            }
            return;
        };
        let conn = match target {
            WsTarget::New(handshake) => {
                let conn = self.create_session(version, handshake, true);
                let open = self.open_frame(&conn, true);
                ws.get_mut().push_frame(ws_frame(open, false, None));
                self.handler.on_open(&conn);
                // From here on the driver is the only dispatcher and runs `on_close` itself.
                conn.lock().dispatching = false;
                conn
            }
            WsTarget::Upgrade(conn) => {
                if !Box::pin(self.probe(&conn, &mut ws)).await {
                    conn.lock().upgrading = false;
                    return;
                }
                self.handler.on_upgrade(&conn);
                conn
            }
            WsTarget::Reject => {
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                return;
            }
        };
        let already_closing = conn.lock().closing;
        let mut driver = WsDriver {
            engine: self,
            conn,
            ws,
            batch: VecDeque::new(),
            // A direct session's open packet waits in the stream.
            unflushed: true,
            closing: None,
        };
        // Closed during the upgrade: deliver nothing more to the layer above, only flush.
        if let Some(reason) = already_closing {
            driver.start_close(reason);
        }
        // A fresh task holds only the driver, not this setup future's state.
        tokio::spawn(driver);
    }

    /// The upgrade handshake on the probing websocket: `2probe` → `3probe` (and a `6` to the
    /// pending GET), then `5` moves the session over. Anything else, or no `5` within
    /// `upgrade_timeout`, abandons the upgrade; the session stays on polling.
    async fn probe(&self, conn: &Arc<Connection<H::Data>>, ws: &mut Ws) -> bool {
        let deadline = tokio::time::sleep(self.config.upgrade_timeout);
        tokio::pin!(deadline);
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                _ = &mut deadline => return false,
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                _ => return false,
            };
            match packet::decode_packet(&text) {
                Ok(EnginePacket::Ping(data)) if data == "probe" => {
                    let pong = Message::Text(Utf8Bytes::from_static("3probe"));
                    let sent = tokio::select! {
                        r = ws.send(pong) => r.is_ok(),
                        _ = &mut deadline => false,
                    };
                    if !sent {
                        return false;
                    }
                    // End the client's current poll so it can pause polling and send `5`.
                    let waker = {
                        let mut st = conn.lock();
                        if st.closing.is_some() {
                            return false;
                        }
                        st.noop_pending = true;
                        st.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                Ok(EnginePacket::Upgrade) => loop {
                    let switched = {
                        let mut st = conn.lock();
                        // A session closed gracefully meanwhile still moves over: what it
                        // queued last (a Socket.IO DISCONNECT, the close packet) goes out on
                        // the websocket the client now reads, and the driver ends it.
                        if st.closing.is_some_and(|r| !flushes_on_close(r)) {
                            return false;
                        }
                        // A POST still delivering must finish first, or its `on_message`
                        // calls could interleave with the websocket's.
                        if st.post_busy {
                            None
                        } else {
                            st.websocket = true;
                            st.upgrading = false;
                            st.noop_pending = false;
                            Some(st.waker.take())
                        }
                    };
                    match switched {
                        Some(waker) => {
                            // The pending GET, if any, answers `6` and leaves the queue to us.
                            if let Some(w) = waker {
                                w.wake();
                            }
                            return true;
                        }
                        None => tokio::select! {
                            _ = tokio::time::sleep(UPGRADE_RETRY) => {}
                            _ = &mut deadline => return false,
                        },
                    }
                },
                _ => return false,
            }
        }
    }
}

/// Takes the TCP stream back out of hyper (it is ours: served through `TokioIo`), so the
/// websocket reads the socket directly instead of through a boxed, rewinding wrapper.
fn open_websocket(upgraded: Upgraded) -> Option<LeanStream> {
    let parts = upgraded.downcast::<TokioIo<NetStream>>().ok()?;
    Some(LeanStream::new(
        parts.io.into_inner(),
        parts.read_buf.to_vec(),
    ))
}

/// The task of one websocket session.
struct WsDriver<H: EngineHandler> {
    engine: Arc<Engine<H>>,
    conn: Arc<Connection<H::Data>>,
    ws: Ws,
    /// Frames taken from the session queue, waiting for the socket to accept them.
    batch: VecDeque<Frame>,
    /// Frames went into the stream's write buffer since the last completed flush.
    unflushed: bool,
    /// Set once the session is closing; boxed because open connections never need it.
    closing: Option<Box<Closing>>,
}

struct Closing {
    /// Flush what is queued and send a websocket close frame; otherwise just drop the socket.
    graceful: bool,
    close_sent: bool,
    /// Boxed: only closing connections pay for a timer.
    deadline: Pin<Box<Sleep>>,
}

impl<H: EngineHandler> Future for WsDriver<H> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.closing.is_none() {
            match this.poll_open(cx) {
                Ok(()) => return Poll::Pending,
                Err(reason) => this.start_close(reason),
            }
        }
        this.poll_closing(cx)
    }
}

impl<H: EngineHandler> WsDriver<H> {
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Result<(), CloseReason> {
        let more_input = self.read(cx)?;
        let closing = {
            let mut st = self.conn.lock();
            // Registered on every poll, even while the socket is blocked, so a close (for
            // instance a slow client overflowing its queue) always reaches this task. Before
            // `write` looks at the queue, so whatever is queued after that look wakes us.
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            st.closing
        };
        if let Some(reason) = closing {
            return Err(reason);
        }
        let more_output = self.write(cx)?;
        if more_input || more_output {
            cx.waker().wake_by_ref();
        }
        Ok(())
    }

    /// Delivers incoming packets; true when the budget ran out with more possibly waiting.
    fn read(&mut self, cx: &mut Context<'_>) -> Result<bool, CloseReason> {
        let v3 = self.conn.version() == EioVersion::V3;
        for _ in 0..READ_BUDGET {
            let msg = match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Ok(false),
                Poll::Ready(None) => return Err(CloseReason::TransportClose),
                Poll::Ready(Some(Err(e))) => return Err(read_error(&e)),
                Poll::Ready(Some(Ok(msg))) => msg,
            };
            let decoded = match msg {
                Message::Text(t) => packet::decode_packet(&t),
                Message::Binary(b) if v3 => packet::decode_binary_v3_bytes(b),
                Message::Binary(b) => Ok(EnginePacket::Message(Incoming::Binary(b))),
                Message::Close(_) => return Err(CloseReason::TransportClose),
                // tungstenite answers websocket pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let Ok(packet) = decoded else {
                return Err(CloseReason::ParseError);
            };
            if !self.engine.handle_packet(&self.conn, packet) {
                // Closing: the state check after this call picks up the reason.
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Frames every batched message into the stream's write buffer, then flushes once.
    /// Data frames bypass tungstenite's writer (see `stream.rs`); it still writes its own
    /// control frames (pongs, close), whole, into the same buffer.
    ///
    /// While the session is open, a batch that runs dry is refilled from the session queue
    /// before flushing. Frames queued while an earlier batch waited for the socket woke this
    /// task, but that wake-up may be the very poll that drains the batch: if the queue were
    /// only looked at before writing, they would stay queued with nothing left to wake us.
    /// True when the refill budget ran out with frames possibly still queued.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, CloseReason> {
        let v3 = self.conn.version() == EioVersion::V3;
        let mut refills = 0;
        let mut more = false;
        loop {
            if self.batch.is_empty() {
                // Once closing, `start_close` has taken the rest of the queue.
                if self.closing.is_some() {
                    break;
                }
                if refills == WRITE_BUDGET {
                    more = true;
                    break;
                }
                refills += 1;
                {
                    let mut st = self.conn.lock();
                    // A close that just came in woke this task; `start_close` decides what
                    // of the queue still goes out.
                    if st.closing.is_none() {
                        self.batch = std::mem::take(&mut st.queue);
                    }
                }
                if self.batch.is_empty() {
                    break;
                }
            }
            let stream = self.ws.get_mut();
            if stream.buffered_out() >= WRITE_LIMIT {
                match stream.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Err(CloseReason::TransportClose),
                    // The socket's write readiness wakes this task.
                    Poll::Pending => return Ok(false),
                }
            }
            if let Some(frame) = self.batch.pop_front() {
                let deflate = stream.deflate_threshold();
                stream.push_frame(ws_frame(frame, v3, deflate));
                self.unflushed = true;
            }
        }
        if self.batch.capacity() > 0 {
            // Idle connections keep no queue memory (the batch is empty here).
            self.batch = VecDeque::new();
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(read_error(&e)),
                Poll::Pending => {}
            }
        }
        Ok(more)
    }

    /// Runs `on_close` at once (this task is the session's only dispatcher, so it cannot
    /// overlap an `on_message`) and decides how the socket ends.
    fn start_close(&mut self, reason: CloseReason) {
        self.conn.close(reason);
        if let Some(r) = self.conn.claim_close(true) {
            self.engine.closed_session(&self.conn, r);
        }
        self.engine.sessions.remove(&self.conn.sid());
        let (actual, rest) = {
            let mut st = self.conn.lock();
            st.waker = None;
            (st.closing, std::mem::take(&mut st.queue))
        };
        // A dead, silent or drowning peer gets no goodbye; otherwise what the layer above
        // queued last (a Socket.IO disconnect packet, say) must still reach the client.
        let graceful = actual.is_some_and(flushes_on_close);
        if graceful {
            self.batch.extend(rest);
        } else {
            self.batch = VecDeque::new();
        }
        self.closing = Some(Box::new(Closing {
            graceful,
            close_sent: false,
            deadline: Box::pin(tokio::time::sleep(CLOSE_GRACE)),
        }));
    }

    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(closing) = self.closing.as_mut() else {
            return Poll::Ready(());
        };
        if !closing.graceful {
            return Poll::Ready(());
        }
        if closing.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // Keep reading (and discarding) so the client's close reply or EOF ends this early.
        for budget in (0..READ_BUDGET).rev() {
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(_))) if budget == 0 => cx.waker().wake_by_ref(),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        if self.write(cx).is_err() {
            return Poll::Ready(());
        }
        let close_sent = self.closing.as_ref().is_none_or(|c| c.close_sent);
        if self.batch.is_empty() && !close_sent {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if Pin::new(&mut self.ws)
                        .start_send(Message::Close(None))
                        .is_err()
                    {
                        return Poll::Ready(());
                    }
                    if let Some(c) = self.closing.as_mut() {
                        c.close_sent = true;
                    }
                    self.unflushed = true;
                    if self.write(cx).is_err() {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// Whether a session closed for `reason` still sends what is queued and a close: not to a
/// dead, silent or drowning peer.
fn flushes_on_close(reason: CloseReason) -> bool {
    !matches!(
        reason,
        CloseReason::TransportClose
            | CloseReason::TransportError
            | CloseReason::PingTimeout
            | CloseReason::SlowClient
    )
}

/// One Engine.IO frame as one final websocket frame, compressed when `permessage-deflate` was
/// agreed and it has at least `deflate` bytes.
fn ws_frame(frame: Frame, v3: bool, deflate: Option<usize>) -> WsFrame {
    let (payload, data) = match frame {
        Frame::Text(t) => (Bytes::from(t), Data::Text),
        Frame::Binary(b) if v3 => (packet::encode_binary_v3(&b), Data::Binary),
        Frame::Binary(b) => (b, Data::Binary),
    };
    match deflate {
        Some(threshold) if payload.len() >= threshold => {
            let mut f = WsFrame::message(deflate::compressed(&payload), OpCode::Data(data), true);
            f.header_mut().rsv1 = true;
            f
        }
        _ => WsFrame::message(payload, OpCode::Data(data), true),
    }
}

fn read_error(e: &WsError) -> CloseReason {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Io(_)
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::TransportClose
        }
        // Oversized messages, protocol violations, invalid UTF-8 in text frames.
        _ => CloseReason::TransportError,
    }
}
