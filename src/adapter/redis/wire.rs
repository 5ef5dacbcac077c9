//! The messages of `@socket.io/redis-adapter` 8.x (classic mode): channel names, the broadcast
//! envelope `[uid, packet, opts]` and the requests and responses. This is the one place that
//! knows the wire format; everything here is pure.

use crate::adapter::msgpack::{self, CodecError, Value};
use crate::adapter::{BroadcastFlags, BroadcastOptions, RemoteSocket};
use crate::protocol::Payload;

/// Request and response types of the request channel (`RequestType` of the Node adapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// `0` ids of the sockets in some rooms (sent by adapter 7.x; still answered by 8.x).
    Sockets = 0,
    /// `1` every room of every server (`allRooms`).
    AllRooms = 1,
    /// `2` make the matching sockets join rooms (`socketsJoin`); legacy form names one socket.
    RemoteJoin = 2,
    /// `3` make the matching sockets leave rooms (`socketsLeave`); legacy form names one socket.
    RemoteLeave = 3,
    /// `4` disconnect the matching sockets (`disconnectSockets`); legacy form names one socket.
    RemoteDisconnect = 4,
    /// `5` describe the matching sockets (`fetchSockets`).
    RemoteFetch = 5,
    /// `6` an event for the other servers (`serverSideEmit`); acknowledged when it has a requestId.
    ServerSideEmit = 6,
    /// `7` a broadcast whose clients acknowledge it (MessagePack, `io.timeout(t).emit(.., cb)`).
    Broadcast = 7,
    /// `8` answer to 7: how many clients of that server will acknowledge.
    BroadcastClientCount = 8,
    /// `9` answer to 7: one client's acknowledgement (MessagePack).
    BroadcastAck = 9,
}

impl RequestType {
    /// The type a message's `type` field names, if any.
    pub fn of(message: &Value) -> Option<RequestType> {
        Some(match field(message, "type")?.as_u64()? {
            0 => RequestType::Sockets,
            1 => RequestType::AllRooms,
            2 => RequestType::RemoteJoin,
            3 => RequestType::RemoteLeave,
            4 => RequestType::RemoteDisconnect,
            5 => RequestType::RemoteFetch,
            6 => RequestType::ServerSideEmit,
            7 => RequestType::Broadcast,
            8 => RequestType::BroadcastClientCount,
            9 => RequestType::BroadcastAck,
            _ => return None,
        })
    }

    /// The wire number.
    pub fn value(self) -> Value {
        Value::from(self as u8)
    }
}

/// Socket.IO packet type EVENT.
const PACKET_EVENT: u64 = 2;
/// Socket.IO packet type BINARY_EVENT (what socket.io 1.x/2.x publish when args hold binary).
const PACKET_BINARY_EVENT: u64 = 5;

/// The channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `P#NSP#`: broadcasts to everyone; `P#NSP#ROOM#` for a single room.
    pub broadcast: String,
    /// `P-request#NSP#`: requests (its subscriber count is the server count).
    pub request: String,
    /// `P-response#NSP#`: responses to anyone's requests.
    pub response: String,
    /// `P-response#NSP#UID#`: responses addressed to this server only.
    pub specific_response: String,
}

impl Channels {
    /// Channels of namespace `nsp` under prefix `key` for the adapter `uid`.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Channels {
        let response = format!("{key}-response#{nsp}#");
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            specific_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// Where a broadcast to `rooms` is published: the room channel when there is exactly one.
    pub fn for_rooms(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// PSUBSCRIBE pattern covering the namespace and all its room channels.
    pub fn pattern(&self) -> String {
        format!("{}*", glob_escape(&self.broadcast))
    }
}

/// Escapes Redis glob characters so that `s` matches itself in a pattern.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes a request or response: JSON when it starts with `{`, MessagePack otherwise.
pub fn decode(body: &[u8]) -> Result<Value, CodecError> {
    if body.first() == Some(&b'{') {
        let text =
            std::str::from_utf8(body).map_err(|e| CodecError(format!("invalid UTF-8: {e}")))?;
        msgpack::from_json(text)
    } else {
        msgpack::decode(body)
    }
}

/// A request or response as Node's adapter reads it: JSON, or MessagePack when it carries
/// binary (JSON would turn a Buffer into `{"type":"Buffer","data":[...]}`; Node's adapter
/// decodes either, telling them apart by the first byte).
pub fn encode_message(message: &Value) -> Vec<u8> {
    if has_binary(message) {
        msgpack::encode(message)
    } else {
        msgpack::to_json(message).into_bytes()
    }
}

/// Whether `v` holds bytes (which JSON cannot carry).
pub fn has_binary(v: &Value) -> bool {
    match v {
        Value::Binary(_) => true,
        Value::Ext(ty, _) => *ty != -1,
        Value::Array(items) => items.iter().any(has_binary),
        Value::Map(entries) => entries.iter().any(|(k, v)| has_binary(k) || has_binary(v)),
        _ => false,
    }
}

/// A map's field by name (the last one when repeated, as in JavaScript); nil counts as absent.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .rev()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_nil())
}

/// A field as text: strings as they are, numbers as JavaScript's `String(n)`.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        n @ (Value::Integer(_) | Value::F32(_) | Value::F64(_)) => Some(msgpack::to_json(n)),
        _ => None,
    }
}

/// A list of room names or socket ids; anything that is not an array gives an empty list.
pub fn strings(v: Option<&Value>) -> Vec<String> {
    match v.and_then(Value::as_array) {
        Some(items) => items.iter().filter_map(|i| text(Some(i))).collect(),
        None => Vec::new(),
    }
}

/// A list of strings as a MessagePack array.
pub fn strings_value(list: &[String]) -> Value {
    Value::Array(list.iter().map(|s| Value::from(s.as_str())).collect())
}

/// A map with string keys, in the given order.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// `{rooms, except, flags}` (or `{rooms, except}` for bulk operations) → [`BroadcastOptions`].
pub fn options(v: Option<&Value>) -> BroadcastOptions {
    let Some(v) = v else {
        return BroadcastOptions::default();
    };
    let flags = field(v, "flags");
    let flag = |name: &str| flags.and_then(|f| field(f, name)).and_then(Value::as_bool);
    BroadcastOptions {
        rooms: strings(field(v, "rooms")),
        except: strings(field(v, "except")),
        flags: BroadcastFlags {
            local: false,
            volatile: flag("volatile").unwrap_or(false),
            compress: flag("compress"),
        },
    }
}

/// [`BroadcastOptions`] as `{rooms, except, flags}`, or `{rooms, except}` without flags.
pub fn options_value(opts: &BroadcastOptions, with_flags: bool) -> Value {
    let mut entries = vec![
        ("rooms", strings_value(&opts.rooms)),
        ("except", strings_value(&opts.except)),
    ];
    if with_flags {
        let mut flags = Vec::new();
        if opts.flags.volatile {
            flags.push(("volatile", Value::Boolean(true)));
        }
        if let Some(c) = opts.flags.compress {
            flags.push(("compress", Value::Boolean(c)));
        }
        entries.push(("flags", map(flags)));
    }
    map(entries)
}

/// A broadcast received from another server.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// Sender's uid (`"emitter"` for the emitter).
    pub uid: Option<String>,
    /// Namespace named in the packet (`/` when absent).
    pub nsp: String,
    /// The event data array.
    pub data: Payload,
    /// Who receives it.
    pub opts: BroadcastOptions,
}

/// Reads a broadcast envelope `[uid, {type, data, nsp}, {rooms, except, flags}]`.
pub fn parse_broadcast(body: &[u8]) -> Result<Broadcast, String> {
    let envelope = msgpack::decode(body).map_err(|e| format!("undecodable broadcast: {e}"))?;
    let parts = envelope.as_array().ok_or("broadcast is not an array")?;
    let packet = parts.get(1).ok_or("broadcast without packet")?;
    let (data, nsp) = parse_packet(packet)?;
    Ok(Broadcast {
        uid: text(parts.first()),
        nsp,
        data,
        opts: options(parts.get(2)),
    })
}

/// The data and namespace of an event packet `{type: 2 | 5, data: [...], nsp}`.
pub fn parse_packet(packet: &Value) -> Result<(Payload, String), String> {
    match field(packet, "type").and_then(Value::as_u64) {
        Some(PACKET_EVENT | PACKET_BINARY_EVENT) => {}
        other => return Err(format!("packet type {other:?} is not an event")),
    }
    let data = field(packet, "data")
        .filter(|d| d.is_array())
        .ok_or("event packet without a data array")?;
    let nsp = text(field(packet, "nsp")).unwrap_or_else(|| "/".to_owned());
    Ok((msgpack::to_payload(data), nsp))
}

/// An event packet `{type, data, nsp}`, with `id` when it asks for acknowledgements (the
/// packet of a BROADCAST request).
pub fn event_packet(nsp: &str, data: &Payload, id: Option<u64>) -> Result<Value, CodecError> {
    let mut entries = vec![
        ("type", Value::from(PACKET_EVENT)),
        ("data", msgpack::from_payload(data)?),
        ("nsp", Value::from(nsp)),
    ];
    if let Some(id) = id {
        entries.push(("id", Value::from(id)));
    }
    Ok(map(entries))
}

/// The broadcast envelope Node's adapter publishes (MessagePack).
pub fn encode_broadcast(
    uid: &str,
    nsp: &str,
    data: &Payload,
    opts: &BroadcastOptions,
) -> Result<Vec<u8>, CodecError> {
    let packet = event_packet(nsp, data, None)?;
    let envelope = Value::Array(vec![Value::from(uid), packet, options_value(opts, true)]);
    Ok(msgpack::encode(&envelope))
}

/// A client's acknowledgement as a BROADCAST_ACK response carries it: its first argument.
pub fn first_argument(data: &Payload) -> Value {
    match msgpack::from_payload(data) {
        Ok(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
        _ => Value::Nil,
    }
}

/// A socket as a REMOTE_FETCH response lists it: `{id, handshake, rooms, data}`.
pub fn socket_value(s: &RemoteSocket) -> Value {
    map(vec![
        ("id", Value::from(s.id.as_str())),
        ("handshake", msgpack::from_serde(&s.handshake)),
        ("rooms", strings_value(&s.rooms)),
        ("data", msgpack::from_serde(&s.data)),
    ])
}

/// A socket from a REMOTE_FETCH response; `None` without an id.
pub fn parse_socket(v: &Value) -> Option<RemoteSocket> {
    Some(RemoteSocket {
        id: text(field(v, "id"))?,
        rooms: strings(field(v, "rooms")),
        handshake: field(v, "handshake").map_or(serde_json::Value::Null, msgpack::to_serde),
        data: field(v, "data").map_or(serde_json::Value::Null, msgpack::to_serde),
    })
}

/// Acknowledgement arguments as this server passes them around: a JSON array of the
/// arguments. A Node peer acknowledges `serverSideEmit` with one argument (`data`).
pub fn ack_payload(data: Option<&Value>) -> Payload {
    msgpack::to_payload(&Value::Array(data.cloned().into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn channel_names() {
        let c = Channels::new("socket.io", "/chat", "abc");
        assert_eq!(c.broadcast, "socket.io#/chat#");
        assert_eq!(c.request, "socket.io-request#/chat#");
        assert_eq!(c.response, "socket.io-response#/chat#");
        assert_eq!(c.specific_response, "socket.io-response#/chat#abc#");
        assert_eq!(c.for_rooms(&["###u1".into()]), "socket.io#/chat####u1#");
        assert_eq!(c.for_rooms(&["a".into(), "b".into()]), "socket.io#/chat#");
        assert_eq!(c.for_rooms(&[]), "socket.io#/chat#");
        assert_eq!(Channels::new("a*b", "/", "u").pattern(), "a\\*b#/#*");
    }

    #[test]
    fn broadcast_envelope_matches_node() {
        // notepack 3 encode of what `io.to("r").except("s1").volatile.emit("ev", Buffer[1,2,3])`
        // publishes from adapter 8.x, apart from the flags object.
        let opts = BroadcastOptions {
            rooms: vec!["r".into()],
            except: vec!["s1".into()],
            flags: BroadcastFlags {
                volatile: true,
                ..BroadcastFlags::default()
            },
        };
        let data = Payload {
            json: r#"["ev",{"_placeholder":true,"num":0}]"#.into(),
            attachments: vec![Bytes::from_static(&[1, 2, 3])],
        };
        let body = encode_broadcast("abc123", "/", &data, &opts).unwrap();
        let back = parse_broadcast(&body).unwrap();
        assert_eq!(
            back,
            Broadcast {
                uid: Some("abc123".into()),
                nsp: "/".into(),
                data,
                opts
            }
        );
    }

    #[test]
    fn tolerant_broadcast_parsing() {
        // msgpack-lite style: opts with nil rooms/flags, packet type 5, no nsp.
        let v = Value::Array(vec![
            "uid".into(),
            map(vec![
                ("type", 5.into()),
                (
                    "data",
                    Value::Array(vec!["ev".into(), Value::Binary(vec![1])]),
                ),
            ]),
            map(vec![
                ("rooms", Value::Nil),
                ("flags", Value::Nil),
                ("except", Value::Array(vec![7.into()])),
            ]),
        ]);
        let b = parse_broadcast(&msgpack::encode(&v)).unwrap();
        assert_eq!(b.nsp, "/");
        assert_eq!(b.opts.rooms, Vec::<String>::new());
        assert_eq!(b.opts.except, vec!["7".to_owned()]);
        assert_eq!(b.data.attachments.len(), 1);
        // Not an event / not an array / garbage.
        let ack = Value::Array(vec![
            "u".into(),
            map(vec![("type", 3.into()), ("data", Value::Array(vec![]))]),
        ]);
        assert!(parse_broadcast(&msgpack::encode(&ack)).is_err());
        assert!(parse_broadcast(&msgpack::encode(&Value::from(1))).is_err());
        assert!(parse_broadcast(b"\xc1").is_err());
        assert!(parse_broadcast(&msgpack::encode(&Value::Array(vec!["u".into()]))).is_err());
    }

    #[test]
    fn requests_decode_by_first_byte() {
        let json =
            decode(br#"{"uid":"x","requestId":"r1","type":5,"opts":{"rooms":["a"],"except":[]}}"#)
                .unwrap();
        assert_eq!(RequestType::of(&json), Some(RequestType::RemoteFetch));
        assert_eq!(options(field(&json, "opts")).rooms, vec!["a".to_owned()]);
        let mp = msgpack::encode(&map(vec![("type", 7.into()), ("requestId", "r".into())]));
        assert_eq!(
            RequestType::of(&decode(&mp).unwrap()),
            Some(RequestType::Broadcast)
        );
        assert!(decode(b"{nope").is_err());
        assert_eq!(RequestType::of(&map(vec![("type", 42.into())])), None);
    }

    #[test]
    fn messages_are_json_unless_binary() {
        let plain = map(vec![
            ("type", 6.into()),
            ("data", Value::Array(vec!["ev".into()])),
        ]);
        assert_eq!(
            encode_message(&plain),
            br#"{"type":6,"data":["ev"]}"#.to_vec()
        );
        let binary = map(vec![
            ("type", 6.into()),
            ("data", Value::Array(vec![Value::Binary(vec![1])])),
        ]);
        let body = encode_message(&binary);
        assert_eq!(body[0], 0x82);
        assert_eq!(decode(&body).unwrap(), binary);
    }

    #[test]
    fn sockets_round_trip() {
        let s = RemoteSocket {
            id: "sid".into(),
            rooms: vec!["sid".into(), "r".into()],
            handshake: serde_json::json!({"address": "1.2.3.4", "query": {"a": "1"}, "time": "x"}),
            data: serde_json::json!({"n": 1.5}),
        };
        let text = msgpack::to_json(&socket_value(&s));
        assert_eq!(parse_socket(&msgpack::from_json(&text).unwrap()), Some(s));
    }
}
