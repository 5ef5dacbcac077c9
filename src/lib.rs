//! weroll-native: a socket.io-compatible realtime server in Rust for the weroll framework.
//!
//! Layers, each knowing only the one below: [`engine`] (Engine.IO transports), [`protocol`]
//! (Socket.IO packets), [`server`] (namespaces, sockets, rooms, broadcasts), [`adapter`] (the
//! cluster seam: local or Redis) and `binding` (the Node-API surface).
#![deny(clippy::all)]

pub mod adapter;
pub mod binding;
pub mod engine;
pub mod protocol;
pub mod server;
