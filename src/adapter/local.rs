//! The single-server adapter: there are no other servers, so every remote part is empty.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::{ready, BoxFuture, FutureExt};

use super::{
    Adapter, AdapterError, AdapterFactory, BroadcastOptions, LocalNamespace, RemoteSocket,
};
use crate::protocol::Payload;

/// Adapter of a server that runs alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn broadcast(&self, _data: &Payload, _opts: &BroadcastOptions) {}
    fn sockets_join(&self, _opts: &BroadcastOptions, _rooms: &[String]) {}
    fn sockets_leave(&self, _opts: &BroadcastOptions, _rooms: &[String]) {}
    fn disconnect_sockets(&self, _opts: &BroadcastOptions, _close: bool) {}
    fn fetch_sockets(
        &self,
        _opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<RemoteSocket>, AdapterError>> {
        ready(Ok(Vec::new())).boxed()
    }
    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<String>, AdapterError>> {
        ready(Ok(Vec::new())).boxed()
    }
    fn server_side_emit(
        &self,
        _args: &Payload,
        _ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        ready(Ok(Vec::new())).boxed()
    }
    fn server_count(&self) -> BoxFuture<'static, usize> {
        ready(1).boxed()
    }
    fn close(&self) -> BoxFuture<'static, ()> {
        ready(()).boxed()
    }
}

impl AdapterFactory for LocalAdapter {
    fn create(&self, _nsp: Weak<dyn LocalNamespace>) -> Arc<dyn Adapter> {
        Arc::new(LocalAdapter)
    }
}
