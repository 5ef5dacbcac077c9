//! Server events to JavaScript: queued from any tokio thread, delivered in batches by one pump
//! task through one threadsafe function call per batch.

use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use tokio::sync::mpsc;

use super::EventCallback;
use crate::protocol::Payload;
use crate::server::{EventSink, ServerEvent};

/// Most events handed to JavaScript in one call.
const BATCH: usize = 512;

/// Event kinds: the first element of every entry of a batch.
pub const CONNECTION: u32 = 0;
pub const EVENT: u32 = 1;
pub const ACK: u32 = 2;
pub const DISCONNECT: u32 = 3;
pub const SERVER_SIDE_EMIT: u32 = 4;
pub const ADAPTER_STATUS: u32 = 5;
pub const UPGRADE: u32 = 6;
pub const ROOMS: u32 = 7;
pub const SOCKET_DATA: u32 = 8;

/// Server events as JavaScript receives them: one JSON text for the whole batch (one
/// `JSON.parse` in V8, no object built field by field through N-API) and the binary
/// attachments beside it.
///
/// `json` is an array of entries, each an array led by its kind:
/// - `[0, sid, nsp, address, port, forwarded|null, time, welcomed, pending]` connection
///   (`pending`: waiting for `accept` / `refuse`)
/// - `[1, sid, args, ack|null, first, count]` event: `args` is the client's data array itself
///   (checked to be valid JSON by the packet decoder), its attachments are
///   `buffers[first .. first+count]`
/// - `[2, sid, id, args, first, count]` ack
/// - `[3, sid, reason, rooms]` disconnect
/// - `[4, nsp, argsJson, reply|null, first, count]` serverSideEmit (`argsJson` a string: it
///   comes from another server)
/// - `[5, up, detail]` cluster adapter status
#[napi(object)]
pub struct NativeBatch {
    pub json: String,
    pub buffers: Option<Vec<Buffer>>,
    /// When the oldest event of the batch was queued (Unix ms, with µs), for the delay of
    /// events to their handlers; 0 when unknown.
    pub queued_at: f64,
}

/// What travels through the queue.
pub(crate) enum Outgoing {
    Server(ServerEvent),
    Status { up: bool, detail: String },
}

/// Builds one batch.
#[derive(Default)]
pub(crate) struct BatchWriter {
    json: String,
    buffers: Vec<Buffer>,
}

/// A client's data array, already checked to be valid JSON by the packet decoder (a packet
/// without data gives an empty array).
fn push_raw(out: &mut String, json: &str) {
    if json.trim().is_empty() {
        out.push_str("[]");
    } else {
        out.push_str(json);
    }
}

fn push_str(out: &mut String, s: &str) {
    // A `String` serialises infallibly.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// A JSON array of strings.
fn push_strs<S: AsRef<str>>(out: &mut String, list: &[S]) {
    out.push('[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s.as_ref());
    }
    out.push(']');
}

impl BatchWriter {
    /// Appends one event.
    pub(crate) fn push(&mut self, o: Outgoing) {
        use std::fmt::Write as _;
        let out = &mut self.json;
        out.push(if out.is_empty() { '[' } else { ',' });
        match o {
            Outgoing::Server(ServerEvent::Connection {
                sid,
                nsp,
                address,
                port,
                forwarded,
                time,
                welcomed,
                pending,
                recovered,
                state,
            }) => {
                let _ = write!(out, "[{CONNECTION},");
                push_str(out, &sid);
                out.push(',');
                push_str(out, &nsp);
                out.push(',');
                push_str(out, &address);
                let _ = write!(out, ",{port},");
                match forwarded {
                    Some(f) => push_str(out, &f),
                    None => out.push_str("null"),
                }
                let _ = write!(out, ",{time},{welcomed},{pending},{recovered},");
                // JSON the cluster kept (it was read back from MessagePack, so it is valid).
                push_raw(out, state.as_deref().unwrap_or("null"));
                out.push(']');
            }
            Outgoing::Server(ServerEvent::Event { sid, data, ack }) => {
                let _ = write!(out, "[{EVENT},");
                push_str(out, &sid);
                out.push(',');
                push_raw(out, &data.json);
                match ack {
                    Some(a) => {
                        let _ = write!(out, ",{a}");
                    }
                    None => out.push_str(",null"),
                }
                self.attachments(&data);
            }
            Outgoing::Server(ServerEvent::Ack { sid, id, data }) => {
                let _ = write!(out, "[{ACK},");
                push_str(out, &sid);
                let _ = write!(out, ",{id},");
                push_raw(out, &data.json);
                self.attachments(&data);
            }
            Outgoing::Server(ServerEvent::Disconnect {
                sid,
                reason,
                rooms,
                save_as,
            }) => {
                let _ = write!(out, "[{DISCONNECT},");
                push_str(out, &sid);
                out.push(',');
                push_str(out, reason);
                out.push(',');
                push_strs(out, &rooms);
                out.push(',');
                match save_as {
                    Some(pid) => push_str(out, &pid),
                    None => out.push_str("null"),
                }
                out.push(']');
            }
            Outgoing::Server(ServerEvent::ServerSideEmit { nsp, data, reply }) => {
                let _ = write!(out, "[{SERVER_SIDE_EMIT},");
                push_str(out, &nsp);
                out.push(',');
                push_str(out, &data.json);
                match reply {
                    Some(r) => {
                        let _ = write!(out, ",{r}");
                    }
                    None => out.push_str(",null"),
                }
                self.attachments(&data);
            }
            Outgoing::Server(ServerEvent::SocketData { nsp, token, sids }) => {
                let _ = write!(out, "[{SOCKET_DATA},");
                push_str(out, &nsp);
                let _ = write!(out, ",{token},");
                push_strs(out, &sids);
                out.push(']');
            }
            Outgoing::Server(ServerEvent::Upgrade { eid }) => {
                let _ = write!(out, "[{UPGRADE},");
                push_str(out, &eid);
                out.push(']');
            }
            Outgoing::Server(ServerEvent::Rooms {
                nsp,
                sid,
                rooms,
                joined,
            }) => {
                let _ = write!(out, "[{ROOMS},");
                push_str(out, &nsp);
                out.push(',');
                push_str(out, &sid);
                out.push(',');
                push_strs(out, &rooms);
                let _ = write!(out, ",{joined}]");
            }
            Outgoing::Status { up, detail } => {
                let _ = write!(out, "[{ADAPTER_STATUS},{up},");
                push_str(out, &detail);
                out.push(']');
            }
        }
    }

    /// Closes an entry that carries a payload: `,first,count]`.
    fn attachments(&mut self, p: &Payload) {
        use std::fmt::Write as _;
        let first = self.buffers.len();
        self.buffers
            .extend(p.attachments.iter().map(|b| Buffer::from(b.to_vec())));
        let _ = write!(self.json, ",{first},{}]", p.attachments.len());
    }

    /// The finished batch.
    pub(crate) fn finish(mut self) -> NativeBatch {
        if self.json.is_empty() {
            self.json.push('[');
        }
        self.json.push(']');
        NativeBatch {
            json: self.json,
            buffers: if self.buffers.is_empty() {
                None
            } else {
                Some(self.buffers)
            },
            queued_at: 0.0,
        }
    }
}

/// The queue between the server and JavaScript. Threaded, a pump task drains it into the
/// threadsafe function; on the `node` loop, the loop drains it on the JavaScript thread
/// ([`EventPump::take_batch`]).
#[derive(Default)]
pub struct EventPump {
    tx: RwLock<Option<mpsc::UnboundedSender<Outgoing>>>,
    /// The queue's receiving end, on the `node` loop.
    local: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Set by [`EventPump::start_local`]: a push outside a tick nudges the loop.
    is_local: std::sync::atomic::AtomicBool,
    /// The server is closed: once drained, no batch will ever come again.
    closed: std::sync::atomic::AtomicBool,
    /// Unix µs when the oldest event waiting was queued (0: none waiting).
    oldest: Arc<std::sync::atomic::AtomicU64>,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl EventPump {
    /// Starts delivering to `callback` (must run inside the tokio runtime).
    pub fn start(&self, callback: Arc<Mutex<Option<EventCallback>>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(pump(rx, callback, self.oldest.clone()));
    }

    /// Starts queueing for the `node` loop, which delivers on the JavaScript thread.
    pub fn start_local(&self) {
        let (tx, rx) = mpsc::unbounded_channel();
        *crate::server::lock(&self.local) = Some(rx);
        self.is_local
            .store(true, std::sync::atomic::Ordering::Release);
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Stops delivering: the pump ends once the queue is drained, releasing the callback.
    pub fn stop(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Stops for good (the server is closed).
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop();
    }

    /// The next batch of a `node`-loop queue: `Some(None)` when nothing is waiting, `None`
    /// once the server is closed and drained.
    pub fn take_batch(&self) -> Option<Option<NativeBatch>> {
        let mut local = crate::server::lock(&self.local);
        if let Some(rx) = local.as_mut() {
            if let Ok(first) = rx.try_recv() {
                return Some(Some(batch_from(first, rx, &self.oldest)));
            }
        }
        // Nothing waiting: the end once the server is closed.
        (!self.closed.load(std::sync::atomic::Ordering::Acquire)).then_some(None)
    }

    fn send(&self, o: Outgoing) {
        if let Some(tx) = self.tx.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(o);
            let _ = self.oldest.compare_exchange(
                0,
                unix_us(),
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
            if self.is_local.load(std::sync::atomic::Ordering::Relaxed) {
                super::node_loop::nudge();
            }
        }
    }

    /// Queues a cluster adapter status change.
    pub fn push_status(&self, up: bool, detail: String) {
        self.send(Outgoing::Status { up, detail });
    }
}

impl EventSink for EventPump {
    fn push(&self, event: ServerEvent) {
        self.send(Outgoing::Server(event));
    }
}

/// `first` and whatever else is queued, up to [`BATCH`] events, as one batch.
fn batch_from(
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    oldest: &std::sync::atomic::AtomicU64,
) -> NativeBatch {
    let queued = oldest.swap(0, std::sync::atomic::Ordering::Relaxed);
    let mut batch = BatchWriter::default();
    batch.push(first);
    for _ in 1..BATCH {
        match rx.try_recv() {
            Ok(o) => batch.push(o),
            Err(_) => break,
        }
    }
    if !rx.is_empty() {
        // What stays for the next batch has waited since now at least.
        let _ = oldest.compare_exchange(
            0,
            unix_us(),
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let mut out = batch.finish();
    out.queued_at = queued as f64 / 1000.0;
    out
}

async fn pump(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    callback: Arc<Mutex<Option<EventCallback>>>,
    oldest: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let batch = batch_from(first, &mut rx, &oldest);
        match crate::server::lock(&callback).as_ref() {
            Some(cb) => {
                cb.call(batch, ThreadsafeFunctionCallMode::NonBlocking);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn payload(json: &str, n: usize) -> Payload {
        Payload {
            json: json.to_string(),
            attachments: (0..n)
                .map(|i| bytes::Bytes::from(vec![i as u8; 3]))
                .collect(),
        }
    }

    #[test]
    fn a_batch_is_one_json_array_with_buffers_beside_it() {
        let mut w = BatchWriter::default();
        w.push(Outgoing::Server(ServerEvent::Connection {
            sid: Arc::from("a\"b"),
            nsp: Arc::from("/"),
            address: "::ffff:127.0.0.1".into(),
            port: 5000,
            forwarded: None,
            time: 1_700_000_000_000,
            welcomed: true,
            pending: false,
            recovered: false,
            state: None,
        }));
        w.push(Outgoing::Server(ServerEvent::Event {
            sid: Arc::from("s1"),
            data: payload(r#" ["m", {"_placeholder":true,"num":0}, "\u2028"] "#, 1),
            ack: Some(7),
        }));
        w.push(Outgoing::Server(ServerEvent::Ack {
            sid: Arc::from("s1"),
            id: 3,
            data: payload(
                r#"[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#,
                2,
            ),
        }));
        w.push(Outgoing::Server(ServerEvent::Disconnect {
            sid: Arc::from("s1"),
            reason: "transport close",
            rooms: vec![Arc::from("r\n1"), Arc::from("###s1")],
            save_as: None,
        }));
        w.push(Outgoing::Server(ServerEvent::ServerSideEmit {
            nsp: Arc::from("/"),
            data: payload(r#"["hi",1]"#, 0),
            reply: None,
        }));
        w.push(Outgoing::Status {
            up: false,
            detail: "gone".into(),
        });
        let batch = w.finish();
        let v: Value = serde_json::from_str(&batch.json).expect("valid JSON");
        assert_eq!(
            v,
            json!([
                [0, "a\"b", "/", "::ffff:127.0.0.1", 5000, null, 1_700_000_000_000u64, true, false, false, null],
                [1, "s1", ["m", {"_placeholder": true, "num": 0}, "\u{2028}"], 7, 0, 1],
                [2, "s1", 3, [{"_placeholder": true, "num": 1}, {"_placeholder": true, "num": 0}], 1, 2],
                [3, "s1", "transport close", ["r\n1", "###s1"], null],
                [4, "/", "[\"hi\",1]", null, 3, 0],
                [5, false, "gone"]
            ])
        );
        assert_eq!(batch.buffers.map(|b| b.len()), Some(3));
        assert_eq!(BatchWriter::default().finish().json, "[]");
    }
}
