//! Socket.IO packet text form: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.

use bytes::Bytes;

/// Which Socket.IO protocol a client speaks; it follows from the Engine.IO version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// Protocol v4, spoken over Engine.IO v3 (socket.io-client 1.x/2.x): implicit `/` connect.
    V4,
    /// Protocol v5, spoken over Engine.IO v4 (socket.io-client 3.x/4.x): explicit CONNECT with auth.
    V5,
}

/// Socket.IO packet types (spec: "Packet types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// `0` connect to a namespace (v5 may carry an auth object; server answers with `{sid}`).
    Connect = 0,
    /// `1` leave a namespace.
    Disconnect = 1,
    /// `2` an event: data is an array whose first element is the event name.
    Event = 2,
    /// `3` an acknowledgement of an event that carried an id: data is an array of arguments.
    Ack = 3,
    /// `4` CONNECT_ERROR (v5: an object `{message, data?}`) / ERROR (v4: any JSON, usually a string).
    ConnectError = 4,
    /// `5` an event with binary attachments that follow as separate Engine.IO messages.
    BinaryEvent = 5,
    /// `6` an ack with binary attachments.
    BinaryAck = 6,
}

/// A decoded packet. `data` is the raw JSON text exactly as the client sent it (already validated
/// as JSON and, for events, as a non-empty array starting with a string).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// Namespace, `/` when the packet had none. A v4 CONNECT's `?query` is stripped from it.
    pub nsp: String,
    /// The `?query` part of a v4 CONNECT to a non-root namespace, without the `?`.
    pub query: Option<String>,
    /// Ack id, when present.
    pub id: Option<u64>,
    /// Raw JSON of the data part, when present.
    pub data: Option<String>,
    /// Number of binary attachments that follow (BINARY_EVENT / BINARY_ACK).
    pub attachments: usize,
}

/// Why a packet was refused. Any of these closes the client that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty input.
    Empty,
    /// Unknown packet type digit.
    UnknownType,
    /// Attachment count missing its `-`, or too large.
    BadAttachments,
    /// Ack id overflowed or is malformed.
    BadAckId,
    /// Data is not valid JSON.
    BadJson,
    /// Data does not have the shape the packet type needs (e.g. an EVENT that is not
    /// `["name", ...]`, an ACK that is not an array).
    BadPayload,
    /// Attachments arrived when none were expected, or too many.
    UnexpectedAttachment,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DecodeError::Empty => "empty packet",
            DecodeError::UnknownType => "unknown packet type",
            DecodeError::BadAttachments => "malformed attachment count",
            DecodeError::BadAckId => "malformed ack id",
            DecodeError::BadJson => "invalid JSON payload",
            DecodeError::BadPayload => "invalid payload for packet type",
            DecodeError::UnexpectedAttachment => "unexpected binary attachment",
        };
        f.write_str(s)
    }
}

impl std::error::Error for DecodeError {}

/// Event or ack arguments as they travel inside this server: the JSON text of the data array
/// (binary values replaced by `{"_placeholder":true,"num":N}`) plus the attachments in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub json: String,
    pub attachments: Vec<Bytes>,
}

impl Packet {
    /// Decodes one text packet. `version` matters only for CONNECT/CONNECT_ERROR shapes.
    pub fn decode(text: &str, version: ProtocolVersion) -> Result<Packet, DecodeError> {
        let _ = (text, version);
        todo!("protocol::Packet::decode")
    }
}

/// `2[...]`, `2/nsp,12[...]`, `52-/nsp,[...]`: an EVENT (or BINARY_EVENT when `attachments > 0`).
/// `data_json` is the whole data array, event name first.
pub fn encode_event(nsp: &str, id: Option<u64>, data_json: &str, attachments: usize) -> String {
    let _ = (nsp, id, data_json, attachments);
    todo!("protocol::encode_event")
}

/// `3<id>[...]` / `6<n>-<nsp>,<id>[...]`.
pub fn encode_ack(nsp: &str, id: u64, data_json: &str, attachments: usize) -> String {
    let _ = (nsp, id, data_json, attachments);
    todo!("protocol::encode_ack")
}

/// The server's CONNECT answer. v5: `0{"sid":"…"}` / `0/nsp,{"sid":"…"}`;
/// v4: `0` for `/` and `0/nsp` otherwise (no sid).
pub fn encode_connect(nsp: &str, sid: &str, version: ProtocolVersion) -> String {
    let _ = (nsp, sid, version);
    todo!("protocol::encode_connect")
}

/// Refusal of a namespace connection. v5: `4/nsp,{"message":"…"}` (plus `"data"` when given);
/// v4: `4/nsp,"…"` (a JSON string).
pub fn encode_connect_error(
    nsp: &str,
    message: &str,
    data_json: Option<&str>,
    version: ProtocolVersion,
) -> String {
    let _ = (nsp, message, data_json, version);
    todo!("protocol::encode_connect_error")
}

/// `1` / `1/nsp,`: the server closes the socket of that namespace.
pub fn encode_disconnect(nsp: &str) -> String {
    let _ = nsp;
    todo!("protocol::encode_disconnect")
}
