//! Socket.IO packet codec: protocol v5 (Engine.IO v4 clients, socket.io-client 3.x/4.x) and
//! protocol v4 (Engine.IO v3 clients, socket.io-client 1.x/2.x).
//!
//! This layer only knows text packets and binary attachments; it never touches sockets. Event
//! data is kept as raw JSON text (validated, never re-serialised) so that it can be handed to
//! JavaScript's `JSON.parse` as is, and emitted data is encoded once for every recipient.
#![warn(missing_docs)]

pub mod binary;
pub mod packet;

pub use binary::{AttachmentCollector, Collected};
pub use packet::{
    encode_ack, encode_connect, encode_connect_error, encode_connect_with, encode_disconnect,
    encode_event, DecodeError, Packet, PacketType, Payload, ProtocolVersion, MAX_ATTACHMENTS,
};
