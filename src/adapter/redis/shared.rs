//! What a namespace does alike in the classic and the sharded wire format: calling into the
//! local namespace, this server's broadcasts waiting for acknowledgements, and answering
//! another server's acknowledged broadcast, `serverSideEmit` or `fetchSockets`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::link::log;
use super::wire;
use crate::adapter::msgpack::{self, Value};
use crate::adapter::{AckCollector, LocalNamespace, RemoteSocket};
use crate::protocol::Payload;
use futures_util::future::BoxFuture;

/// The longest this server waits for its own namespace to acknowledge another server's
/// `serverSideEmit` or broadcast; the asking server has given up long before.
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(60);

/// Runs `f` on the local namespace of `name`, if it still exists. A panic in it is contained.
pub fn call_local<R>(
    local: &Weak<dyn LocalNamespace>,
    name: &str,
    f: impl FnOnce(&dyn LocalNamespace) -> R,
) -> Option<R> {
    let local = local.upgrade()?;
    match catch_unwind(AssertUnwindSafe(|| f(local.as_ref()))) {
        Ok(r) => Some(r),
        Err(_) => {
            log(&format!(
                "namespace {name} panicked while serving a cluster message"
            ));
            None
        }
    }
}

/// This server's broadcasts waiting for acknowledgements, by request id (weak: the broadcast
/// owns its collector and drops it when done).
#[derive(Default)]
pub struct AckRequests(Mutex<HashMap<String, Weak<AckCollector>>>);

impl AckRequests {
    /// Answers to request `id` go to `acks` from now on.
    pub fn register(&self, id: &str, acks: &Arc<AckCollector>) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, c| c.strong_count() > 0);
            m.insert(id.to_owned(), Arc::downgrade(acks));
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }

    /// A BROADCAST_CLIENT_COUNT answer (`count`), or a BROADCAST_ACK answer (`ack`: the
    /// client's first argument), to request `id`.
    pub fn answer(&self, id: &str, count: Option<u64>, ack: Option<Option<&Value>>) {
        let collector = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(id).and_then(Weak::upgrade));
        let Some(c) = collector else { return };
        match ack {
            Some(packet) => c.response(wire::ack_payload(packet)),
            None => c.client_count(count.unwrap_or(0) as usize),
        }
    }
}

/// How long to keep forwarding the acknowledgements of another server's broadcast: until its
/// own timeout (`opts.flags.timeout`), at most [`ACK_WAIT_MAX`].
pub fn ack_linger(opts: Option<&Value>) -> Duration {
    opts.and_then(|o| wire::field(o, "flags"))
        .and_then(|f| wire::field(f, "timeout"))
        .and_then(Value::as_u64)
        .map_or(ACK_WAIT_MAX, |ms| {
            Duration::from_millis(ms).min(ACK_WAIT_MAX)
        })
}

/// Once `linger` has passed, the local namespace stops waiting for the acknowledgements of
/// broadcast `ack_id` (delivered to `count` clients).
pub fn forget_acks_after(
    runtime: &Handle,
    local: &Weak<dyn LocalNamespace>,
    ack_id: u64,
    count: usize,
    linger: Duration,
) {
    if count == 0 {
        return;
    }
    let local = local.clone();
    runtime.spawn(async move {
        tokio::time::sleep(linger).await;
        if let Some(l) = local.upgrade() {
            l.forget_broadcast_ack(ack_id);
        }
    });
}

/// Waits (up to [`ACK_WAIT_MAX`]) for the local acknowledgement of another server's
/// `serverSideEmit`, then hands `respond` its first argument (none when it had none; Node
/// acknowledges with one).
pub fn answer_server_side_emit(
    runtime: &Handle,
    name: String,
    rx: oneshot::Receiver<Payload>,
    respond: impl FnOnce(Option<Value>) + Send + 'static,
) {
    runtime.spawn(async move {
        let Ok(Ok(ack)) = tokio::time::timeout(ACK_WAIT_MAX, rx).await else {
            return;
        };
        let first = match msgpack::from_payload(&ack) {
            Ok(Value::Array(args)) => args.into_iter().next(),
            Ok(_) => None,
            Err(e) => {
                log(&format!(
                    "serverSideEmit acknowledgement of {name} is not JSON: {e}"
                ));
                None
            }
        };
        respond(first);
    });
}

/// Once `sockets` (the matching local sockets, their `socket.data` being fetched) are in, hands
/// `respond` them as the wire's `sockets` value.
pub fn answer_fetch(
    runtime: &Handle,
    sockets: Option<BoxFuture<'static, Vec<RemoteSocket>>>,
    respond: impl FnOnce(Value) + Send + 'static,
) {
    runtime.spawn(async move {
        let sockets = match sockets {
            Some(f) => f.await,
            None => Vec::new(),
        };
        respond(Value::Array(
            sockets.iter().map(wire::socket_value).collect(),
        ));
    });
}

/// `serverSideEmit` arguments as one value, or why they cannot be sent.
pub fn emit_arguments(args: &Payload) -> Result<Value, crate::adapter::AdapterError> {
    msgpack::from_payload(args).map_err(|e| {
        crate::adapter::AdapterError::Unavailable(format!(
            "serverSideEmit arguments are not JSON: {e}"
        ))
    })
}
