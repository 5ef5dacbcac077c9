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

/// `NativeEvent.kind` values.
pub const CONNECTION: u32 = 0;
pub const EVENT: u32 = 1;
pub const ACK: u32 = 2;
pub const DISCONNECT: u32 = 3;
pub const SERVER_SIDE_EMIT: u32 = 4;
pub const ADAPTER_STATUS: u32 = 5;

/// One server event as JavaScript receives it. `kind`: 0 connection, 1 event, 2 ack,
/// 3 disconnect, 4 serverSideEmit, 5 cluster adapter status.
#[napi(object)]
pub struct NativeEvent {
    pub kind: u32,
    /// Socket id (empty for namespace-level events).
    pub sid: String,
    /// Namespace (connection, serverSideEmit).
    pub nsp: Option<String>,
    /// JSON: the data array, the handshake, or the adapter status detail.
    pub data: Option<String>,
    /// Binary attachments of `data`.
    pub attachments: Option<Vec<Buffer>>,
    /// Ack id (event with ack, ack) or reply token (serverSideEmit).
    pub id: Option<f64>,
    /// Disconnect reason, or `up`/`down` for adapter status.
    pub reason: Option<String>,
    /// Connection: the peer address.
    pub address: Option<String>,
    /// Connection: the peer port.
    pub port: Option<u32>,
    /// Connection: the `x-forwarded-for` header, when present.
    pub forwarded: Option<String>,
    /// Connection: handshake time, ms since the epoch.
    pub time: Option<f64>,
    /// Connection: the namespace's welcome (room + event) was already done natively.
    pub welcomed: Option<bool>,
    /// Disconnect: the rooms the socket was in (its own id excluded).
    pub rooms: Option<Vec<String>>,
}

/// What travels through the queue.
pub(crate) enum Outgoing {
    Server(ServerEvent),
    Status { up: bool, detail: String },
}

fn attachments(p: &Payload) -> Option<Vec<Buffer>> {
    if p.attachments.is_empty() {
        None
    } else {
        Some(
            p.attachments
                .iter()
                .map(|b| Buffer::from(b.to_vec()))
                .collect(),
        )
    }
}

impl From<Outgoing> for NativeEvent {
    fn from(o: Outgoing) -> Self {
        let blank = |kind: u32, sid: &str| NativeEvent {
            kind,
            sid: sid.to_string(),
            nsp: None,
            data: None,
            attachments: None,
            id: None,
            reason: None,
            address: None,
            port: None,
            forwarded: None,
            time: None,
            welcomed: None,
            rooms: None,
        };
        match o {
            Outgoing::Server(ServerEvent::Connection {
                sid,
                nsp,
                address,
                port,
                forwarded,
                time,
                welcomed,
            }) => NativeEvent {
                nsp: Some(nsp.to_string()),
                address: Some(address),
                port: Some(u32::from(port)),
                forwarded,
                time: Some(time as f64),
                welcomed: Some(welcomed),
                ..blank(CONNECTION, &sid)
            },
            Outgoing::Server(ServerEvent::Event { sid, data, ack }) => NativeEvent {
                attachments: attachments(&data),
                data: Some(data.json),
                id: ack.map(|a| a as f64),
                ..blank(EVENT, &sid)
            },
            Outgoing::Server(ServerEvent::Ack { sid, id, data }) => NativeEvent {
                attachments: attachments(&data),
                data: Some(data.json),
                id: Some(id as f64),
                ..blank(ACK, &sid)
            },
            Outgoing::Server(ServerEvent::Disconnect { sid, reason, rooms }) => NativeEvent {
                reason: Some(reason.to_string()),
                rooms: Some(rooms.iter().map(|r| r.to_string()).collect()),
                ..blank(DISCONNECT, &sid)
            },
            Outgoing::Server(ServerEvent::ServerSideEmit { nsp, data, reply }) => NativeEvent {
                nsp: Some(nsp.to_string()),
                attachments: attachments(&data),
                data: Some(data.json),
                id: reply.map(|r| r as f64),
                ..blank(SERVER_SIDE_EMIT, "")
            },
            Outgoing::Status { up, detail } => NativeEvent {
                data: Some(detail),
                reason: Some(if up { "up" } else { "down" }.to_string()),
                ..blank(ADAPTER_STATUS, "")
            },
        }
    }
}

/// The queue between the server and JavaScript.
#[derive(Default)]
pub struct EventPump {
    tx: RwLock<Option<mpsc::UnboundedSender<Outgoing>>>,
}

impl EventPump {
    /// Starts delivering to `callback` (must run inside the tokio runtime).
    pub fn start(&self, callback: Arc<Mutex<Option<EventCallback>>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(pump(rx, callback));
    }

    /// Stops delivering: the pump ends once the queue is drained, releasing the callback.
    pub fn stop(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn send(&self, o: Outgoing) {
        if let Some(tx) = self.tx.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(o);
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

async fn pump(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    callback: Arc<Mutex<Option<EventCallback>>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(16);
        batch.push(NativeEvent::from(first));
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(NativeEvent::from(o)),
                Err(_) => break,
            }
        }
        match crate::server::lock(&callback).as_ref() {
            Some(cb) => {
                cb.call(batch, ThreadsafeFunctionCallMode::NonBlocking);
            }
            None => break,
        }
    }
}
