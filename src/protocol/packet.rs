//! Socket.IO packet text form: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.

use bytes::Bytes;
use serde::de::{Deserialize, IgnoredAny};

/// Most attachments one BINARY_EVENT / BINARY_ACK may announce; a larger count is refused as
/// [`DecodeError::BadAttachments`] so that a client cannot make the server wait for (and
/// reserve room for) an unbounded number of binary messages.
pub const MAX_ATTACHMENTS: usize = 1000;

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
    /// Packet type, from the leading digit.
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
    /// JSON text of the data array, placeholders in place of binary values.
    pub json: String,
    /// Binary attachments; `attachments[N]` replaces the placeholder with `"num":N`.
    pub attachments: Vec<Bytes>,
}

impl PacketType {
    /// The type whose wire digit is `digit` (`b'0'`..=`b'6'`), if any.
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit that starts a packet of this type.
    pub fn digit(self) -> char {
        char::from(b'0' + self as u8)
    }

    /// Whether the packet carries an `N-` attachment count (BINARY_EVENT / BINARY_ACK).
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

impl Packet {
    /// Decodes one text packet. `version` matters only for a CONNECT's namespace (v4 `?query`).
    ///
    /// The namespace runs from a `/` right after the type (and attachment count) up to the first
    /// `,` or the end of the text. For a v4 CONNECT, `?` inside it starts the query string
    /// (`0/admin?token=1`). Digits after that are the ack id, the rest is the JSON data, checked
    /// for the shape its type needs: EVENT `["name", ...]`, ACK `[...]` (and an id), CONNECT an
    /// object or nothing, DISCONNECT nothing, CONNECT_ERROR any JSON.
    pub fn decode(text: &str, version: ProtocolVersion) -> Result<Packet, DecodeError> {
        let bytes = text.as_bytes();
        let kind = PacketType::from_digit(*bytes.first().ok_or(DecodeError::Empty)?)
            .ok_or(DecodeError::UnknownType)?;
        // Every cut below is next to an ASCII byte, hence on a char boundary.
        let mut pos = 1;

        let mut attachments = 0;
        match (attachment_marker(bytes, pos), kind.is_binary()) {
            (Some(dash), true) => {
                attachments = parse_attachments(bytes.get(pos..dash).unwrap_or_default())?;
                pos = dash + 1;
            }
            (None, false) => {}
            _ => return Err(DecodeError::BadAttachments),
        }

        let mut nsp = "/";
        let mut query = None;
        if bytes.get(pos) == Some(&b'/') {
            let rest = tail(text, pos);
            let (raw, consumed) = match rest.find(',') {
                Some(comma) => (rest.get(..comma).unwrap_or_default(), comma + 1),
                None => (rest, rest.len()),
            };
            pos += consumed;
            nsp = raw;
            if kind == PacketType::Connect && version == ProtocolVersion::V4 {
                if let Some((path, qs)) = raw.split_once('?') {
                    nsp = path;
                    query = (!qs.is_empty()).then(|| qs.to_owned());
                }
            }
        }

        let rest = tail(text, pos);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = if digits == 0 {
            None
        } else {
            Some(parse_ack_id(
                rest.as_bytes().get(..digits).unwrap_or_default(),
            )?)
        };
        let json = tail(rest, digits);

        let data = if json.is_empty() {
            None
        } else {
            check_shape(json, Shape::for_type(kind))?;
            Some(json.to_owned())
        };
        match kind {
            PacketType::Disconnect if data.is_some() => return Err(DecodeError::BadPayload),
            PacketType::Event | PacketType::BinaryEvent if data.is_none() => {
                return Err(DecodeError::BadPayload)
            }
            PacketType::Ack | PacketType::BinaryAck if data.is_none() => {
                return Err(DecodeError::BadPayload)
            }
            PacketType::Ack | PacketType::BinaryAck if id.is_none() => {
                return Err(DecodeError::BadAckId)
            }
            _ => {}
        }

        Ok(Packet {
            kind,
            nsp: nsp.to_owned(),
            query,
            id,
            data,
            attachments,
        })
    }
}

/// `text` from byte `pos` on, or `""` when `pos` is past the end or not a char boundary.
fn tail(text: &str, pos: usize) -> &str {
    text.get(pos..).unwrap_or_default()
}

/// Index of the `-` ending an attachment count (`<digits>-`) that starts at `pos`, if there is one.
fn attachment_marker(bytes: &[u8], pos: usize) -> Option<usize> {
    let rest = bytes.get(pos..)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0 && rest.get(digits) == Some(&b'-')).then_some(pos + digits)
}

/// Attachment count from its ASCII digits; larger than [`MAX_ATTACHMENTS`] is refused.
fn parse_attachments(digits: &[u8]) -> Result<usize, DecodeError> {
    let mut count: usize = 0;
    for &d in digits {
        count = count * 10 + usize::from(d - b'0');
        // Checked per digit, so the running value never exceeds 10 * MAX_ATTACHMENTS + 9.
        if count > MAX_ATTACHMENTS {
            return Err(DecodeError::BadAttachments);
        }
    }
    Ok(count)
}

/// Ack id from its ASCII digits; an id that does not fit a `u64` is refused.
fn parse_ack_id(digits: &[u8]) -> Result<u64, DecodeError> {
    digits.iter().try_fold(0u64, |id, &d| {
        id.checked_mul(10)
            .and_then(|id| id.checked_add(u64::from(d - b'0')))
            .ok_or(DecodeError::BadAckId)
    })
}

/// The JSON shape a packet type's data must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An array whose first element is a string (the event name).
    Event,
    /// Any array.
    Array,
    /// Any object.
    Object,
    /// Any JSON value.
    Any,
}

impl Shape {
    fn for_type(kind: PacketType) -> Shape {
        match kind {
            PacketType::Event | PacketType::BinaryEvent => Shape::Event,
            PacketType::Ack | PacketType::BinaryAck => Shape::Array,
            PacketType::Connect => Shape::Object,
            PacketType::Disconnect | PacketType::ConnectError => Shape::Any,
        }
    }
}

/// Validates `json` as one JSON value of the given shape without building a tree: serde_json
/// skips an ignored value iteratively (deep nesting costs no stack) and accepts exactly the text
/// `JSON.parse` accepts, surrounding JSON whitespace included, which the JavaScript side relies on.
/// Once the text is known to be valid JSON, its first structural bytes tell its shape.
fn check_shape(json: &str, shape: Shape) -> Result<(), DecodeError> {
    let mut de = serde_json::Deserializer::from_str(json);
    IgnoredAny::deserialize(&mut de)
        .and_then(|_| de.end())
        .map_err(|_| DecodeError::BadJson)?;
    let mut structural = json
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let fits = match shape {
        // In valid JSON, `[` then `"` can only be an array whose first element is a string.
        Shape::Event => structural.next() == Some(b'[') && structural.next() == Some(b'"'),
        Shape::Array => structural.next() == Some(b'['),
        Shape::Object => structural.next() == Some(b'{'),
        Shape::Any => true,
    };
    if fits {
        Ok(())
    } else {
        Err(DecodeError::BadPayload)
    }
}

/// Appends the namespace part: nothing for `/` (or an empty name), else `<nsp>,`.
fn push_nsp(out: &mut String, nsp: &str) {
    if !is_root(nsp) {
        out.push_str(nsp);
        out.push(',');
    }
}

fn is_root(nsp: &str) -> bool {
    nsp.is_empty() || nsp == "/"
}

/// Bytes the header of a packet can take besides the namespace: type, attachment count and
/// `-`, the namespace's `,`, and a u64 ack id.
const HEADER_SLACK: usize = 1 + 20 + 1 + 1 + 20;

/// Appends `n` in decimal without going through `fmt`.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends `s` as a JSON string literal, escaped as `JSON.stringify` escapes it.
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(literal) => out.push_str(&literal),
        // Serialising a `str` cannot fail; an empty string keeps the packet well-formed anyway.
        Err(_) => out.push_str("\"\""),
    }
}

/// Shared body of EVENT/ACK encoding: `<type>[<n>-][<nsp>,][<id>]<data>`.
fn encode_data_packet(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    data_json: &str,
    attachments: usize,
) -> String {
    let mut out = String::with_capacity(HEADER_SLACK + nsp.len() + data_json.len());
    out.push(kind.digit());
    if kind.is_binary() {
        push_u64(&mut out, attachments as u64);
        out.push('-');
    }
    push_nsp(&mut out, nsp);
    if let Some(id) = id {
        push_u64(&mut out, id);
    }
    out.push_str(data_json);
    out
}

/// `2[...]`, `2/nsp,12[...]`, `52-/nsp,[...]`: an EVENT (or BINARY_EVENT when `attachments > 0`).
/// `data_json` is the whole data array, event name first.
pub fn encode_event(nsp: &str, id: Option<u64>, data_json: &str, attachments: usize) -> String {
    let kind = if attachments > 0 {
        PacketType::BinaryEvent
    } else {
        PacketType::Event
    };
    encode_data_packet(kind, nsp, id, data_json, attachments)
}

/// `3<id>[...]` / `6<n>-<nsp>,<id>[...]`.
pub fn encode_ack(nsp: &str, id: u64, data_json: &str, attachments: usize) -> String {
    let kind = if attachments > 0 {
        PacketType::BinaryAck
    } else {
        PacketType::Ack
    };
    encode_data_packet(kind, nsp, Some(id), data_json, attachments)
}

/// The server's CONNECT answer. v5: `0{"sid":"…"}` / `0/nsp,{"sid":"…"}`;
/// v4: `0` for `/` and `0/nsp` otherwise (no sid).
///
/// socket.io 2.x itself writes `0/nsp,`; the v4 client parsers end a namespace at `,` or at
/// the end of the packet, so both forms decode to the same packet there.
pub fn encode_connect(nsp: &str, sid: &str, version: ProtocolVersion) -> String {
    encode_connect_with(nsp, sid, None, version)
}

/// CONNECT with the private id of connection state recovery: v5 `0{"sid":"…","pid":"…"}`.
pub fn encode_connect_with(
    nsp: &str,
    sid: &str,
    pid: Option<&str>,
    version: ProtocolVersion,
) -> String {
    let mut out = String::with_capacity(HEADER_SLACK + nsp.len() + sid.len() + 40);
    out.push(PacketType::Connect.digit());
    match version {
        ProtocolVersion::V5 => {
            push_nsp(&mut out, nsp);
            out.push_str("{\"sid\":");
            push_json_str(&mut out, sid);
            if let Some(pid) = pid {
                out.push_str(",\"pid\":");
                push_json_str(&mut out, pid);
            }
            out.push('}');
        }
        ProtocolVersion::V4 => {
            if !is_root(nsp) {
                out.push_str(nsp);
            }
        }
    }
    out
}

/// Refusal of a namespace connection. v5: `4/nsp,{"message":"…"}` (plus `"data"` when given);
/// v4: `4/nsp,"…"` (a JSON string).
///
/// In v4, `data_json` when given replaces the message, as socket.io 2.x sends
/// `err.data || err.message` for a middleware error.
pub fn encode_connect_error(
    nsp: &str,
    message: &str,
    data_json: Option<&str>,
    version: ProtocolVersion,
) -> String {
    let data_len = data_json.map_or(0, str::len);
    let mut out = String::with_capacity(HEADER_SLACK + nsp.len() + message.len() + data_len + 24);
    out.push(PacketType::ConnectError.digit());
    push_nsp(&mut out, nsp);
    match (version, data_json) {
        (ProtocolVersion::V5, data) => {
            out.push_str("{\"message\":");
            push_json_str(&mut out, message);
            if let Some(data) = data {
                out.push_str(",\"data\":");
                out.push_str(data);
            }
            out.push('}');
        }
        (ProtocolVersion::V4, Some(data)) => out.push_str(data),
        (ProtocolVersion::V4, None) => push_json_str(&mut out, message),
    }
    out
}

/// `1` / `1/nsp,`: the server closes the socket of that namespace.
pub fn encode_disconnect(nsp: &str) -> String {
    let mut out = String::with_capacity(2 + nsp.len());
    out.push(PacketType::Disconnect.digit());
    push_nsp(&mut out, nsp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecodeError::*;
    use PacketType::*;
    use ProtocolVersion::{V4, V5};

    fn ok(text: &str, version: ProtocolVersion) -> Packet {
        match Packet::decode(text, version) {
            Ok(p) => p,
            Err(e) => panic!("{text:?} ({version:?}) refused: {e}"),
        }
    }

    fn err(text: &str) -> DecodeError {
        let v4 = Packet::decode(text, V4);
        let v5 = Packet::decode(text, V5);
        assert_eq!(v4, v5, "{text:?} decodes differently per version");
        match v5 {
            Ok(p) => panic!("{text:?} accepted as {p:?}"),
            Err(e) => e,
        }
    }

    fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&str>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            query: None,
            id,
            data: data.map(str::to_owned),
            attachments: 0,
        }
    }

    #[test]
    fn packet_type_digits_round_trip() {
        for d in b'0'..=b'6' {
            let kind = PacketType::from_digit(d).expect("valid digit");
            assert_eq!(kind.digit(), char::from(d));
            assert_eq!(kind.is_binary(), d == b'5' || d == b'6');
        }
        assert_eq!(PacketType::from_digit(b'7'), None);
        assert_eq!(PacketType::from_digit(b'a'), None);
    }

    #[test]
    fn decodes_connect_v5() {
        assert_eq!(ok("0", V5), packet(Connect, "/", None, None));
        assert_eq!(ok("0/admin,", V5), packet(Connect, "/admin", None, None));
        assert_eq!(
            ok(r#"0{"token":"123"}"#, V5),
            packet(Connect, "/", None, Some(r#"{"token":"123"}"#))
        );
        assert_eq!(
            ok(r#"0/admin,{"token":"123"}"#, V5),
            packet(Connect, "/admin", None, Some(r#"{"token":"123"}"#))
        );
        // The query belongs to the handshake in v5: a `?` is just part of the name.
        assert_eq!(ok("0/admin?x=1,", V5).nsp, "/admin?x=1");
        assert_eq!(ok("0/admin?x=1,", V5).query, None);
    }

    #[test]
    fn decodes_connect_v4_forms() {
        assert_eq!(ok("0", V4), packet(Connect, "/", None, None));
        assert_eq!(ok("0/admin", V4), packet(Connect, "/admin", None, None));
        assert_eq!(ok("0/admin,", V4), packet(Connect, "/admin", None, None));
        for text in ["0/admin?token=1", "0/admin?token=1,"] {
            let p = ok(text, V4);
            assert_eq!(p.nsp, "/admin", "{text}");
            assert_eq!(p.query.as_deref(), Some("token=1"), "{text}");
        }
        let p = ok("0/admin?a=1&b=%2C", V4);
        assert_eq!(p.query.as_deref(), Some("a=1&b=%2C"));
        let p = ok("0/admin?", V4);
        assert_eq!((p.nsp.as_str(), p.query), ("/admin", None));
        let p = ok("0/?a=b", V4);
        assert_eq!((p.nsp.as_str(), p.query.as_deref()), ("/", Some("a=b")));
        // Only CONNECT carries a query.
        assert_eq!(ok(r#"2/a?b,["x"]"#, V4).nsp, "/a?b");
        assert_eq!(ok(r#"2/a?b,["x"]"#, V4).query, None);
    }

    #[test]
    fn connect_data_must_be_an_object() {
        assert_eq!(err(r#"0["a"]"#), BadPayload);
        assert_eq!(err(r#"0/admin,"token""#), BadPayload);
        assert_eq!(err("0/admin,null"), BadPayload);
        assert_eq!(err("0{"), BadJson);
        assert_eq!(err("0["), BadJson);
        assert_eq!(ok(r#"0{"a":{"b":[1,2,{"c":null}]}}"#, V4).nsp, "/");
    }

    #[test]
    fn decodes_disconnect() {
        assert_eq!(ok("1", V5), packet(Disconnect, "/", None, None));
        assert_eq!(ok("1/chat,", V5), packet(Disconnect, "/chat", None, None));
        assert_eq!(ok("1/chat", V4), packet(Disconnect, "/chat", None, None));
        assert_eq!(err(r#"1["x"]"#), BadPayload);
        assert_eq!(err("1/chat,{}"), BadPayload);
    }

    #[test]
    fn decodes_events() {
        for v in [V4, V5] {
            assert_eq!(
                ok(r#"2["hello",1]"#, v),
                packet(Event, "/", None, Some(r#"["hello",1]"#))
            );
            assert_eq!(
                ok(r#"21["ask"]"#, v),
                packet(Event, "/", Some(1), Some(r#"["ask"]"#))
            );
            assert_eq!(
                ok(r#"2/chat,["x"]"#, v),
                packet(Event, "/chat", None, Some(r#"["x"]"#))
            );
            assert_eq!(
                ok(r#"2/chat,12["x",{"a":[1]}]"#, v),
                packet(Event, "/chat", Some(12), Some(r#"["x",{"a":[1]}]"#))
            );
        }
        // Leading zeros are digits like any other (JavaScript's `Number("007")`).
        assert_eq!(ok(r#"2007["a"]"#, V5).id, Some(7));
        // Escaped event names are fine; the text is kept byte for byte.
        let raw = r#"["a\"b\u00e9\n", "x" ] "#;
        assert_eq!(ok(&format!("2{raw}"), V5).data.as_deref(), Some(raw));
        assert_eq!(
            ok(r#"2["é✓😀",1]"#, V5).data.as_deref(),
            Some(r#"["é✓😀",1]"#)
        );
        assert_eq!(ok(r#"2/ché,["a"]"#, V5).nsp, "/ché");
        // Lone surrogates are valid in JSON text (`JSON.parse` takes them), in any position.
        assert!(ok(r#"2["\ud800x","\udc00"]"#, V5).data.is_some());
        assert!(ok(r#"0{"\ud800":"\udfff"}"#, V5).data.is_some());
    }

    #[test]
    fn event_shape_is_enforced() {
        assert_eq!(err("2"), BadPayload);
        assert_eq!(err("2/chat,"), BadPayload);
        assert_eq!(err("21"), BadPayload);
        assert_eq!(err("2[]"), BadPayload);
        assert_eq!(err("2[1]"), BadPayload);
        assert_eq!(err("2[null]"), BadPayload);
        assert_eq!(err(r#"2[["a"]]"#), BadPayload);
        assert_eq!(err(r#"2[{"a":1}]"#), BadPayload);
        assert_eq!(err("2[true]"), BadPayload);
        assert_eq!(err(r#"2{"a":1}"#), BadPayload);
        assert_eq!(err(r#"2"a""#), BadPayload);
        assert_eq!(err(r#"51-[{"_placeholder":true,"num":0}]"#), BadPayload);
    }

    #[test]
    fn bad_json_is_refused() {
        assert_eq!(err(r#"2["a""#), BadJson);
        assert_eq!(err(r#"2["a",]"#), BadJson);
        assert_eq!(err(r#"2["a"]x"#), BadJson);
        assert_eq!(err(r#"2["a"]["b"]"#), BadJson);
        assert_eq!(err(r#"2["a",{]"#), BadJson);
        assert_eq!(err(r#"2["a",NaN]"#), BadJson);
        assert_eq!(err(r#"2["a\x"]"#), BadJson);
        assert_eq!(err("2[\"a\nb\"]"), BadJson);
        assert_eq!(err(r#"2['a']"#), BadJson);
        assert_eq!(err("2/chat,\u{e9}"), BadJson);
        assert_eq!(err("4{"), BadJson);
        assert_eq!(err("31[1,2"), BadJson);
        // Skipped values are walked without recursion: deep nesting costs no stack.
        let deep = format!(
            "2[\"a\",{}{}]",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert!(ok(&deep, V5).data.is_some());
        let deep = format!(
            "0{{\"a\":{}0{}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(ok(&deep, V5).data.is_some());
        assert_eq!(err(&deep[..deep.len() - 1]), BadJson);
        // Whitespace around the value is JSON; it is accepted and kept.
        assert_eq!(ok("2 [\"a\"]\n", V5).data.as_deref(), Some(" [\"a\"]\n"));
    }

    /// What `JSON.parse` (node 20) accepts and refuses; the JavaScript side parses `data` again,
    /// so nothing it would refuse may pass.
    #[test]
    fn json_acceptance_matches_json_parse() {
        let accepted = [
            "[\"a\u{7f}\"]",
            "[\"\\ud800\"]",
            "{\"\\ud800\":1}",
            "[\"\\udc00\\ud800\"]",
            "[-0]",
            "[1e5]",
            "[1E+5]",
            "[1.5e-7]",
            " [1] ",
            "[\"\\/\"]",
            "true",
            "null",
            "\"a\"",
            "[1]\u{a}",
            "[1]\u{d}\u{a}\u{9} ",
            "[\"\u{2028}\"]",
            "{\"a\":1,\"a\":2}",
            "[1e999]",
            "[-1e999]",
            "[123456789012345678901234567890]",
            "{\"__proto__\":1}",
            "[\"\\u0000\"]",
            "[]",
            "{}",
            "[[[]]]",
            "{\"a\":[{\"b\":{}}]}",
            "[\"é😀\"]",
            "[\"\\uD83D\\uDE00\"]",
            "[true,false,null]",
        ];
        let refused = [
            "[\"a\u{a}b\"]",
            "[\"a\u{9}b\"]",
            "[\"a\u{1}\"]",
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[+1]",
            "[0x10]",
            "[Infinity]",
            "\u{a0}[1]",
            "[1]\u{a0}",
            "\u{feff}[1]",
            "[1,]",
            "{\"a\":1,}",
            "['a']",
            "[\"\\x\"]",
            "[\"\\u12\"]",
            "[\"\\u00zz\"]",
            "\u{b}[1]",
            "\u{c}[1]",
            "[1]\u{2028}",
            "[\"a\" \"b\"]",
            "[\"a\",,\"b\"]",
            "{1:2}",
            "{\"a\" 1}",
            "{\"a\":}",
            " ",
            "[tru]",
            "[nul]",
            "[True]",
            "[1 2]",
            "[1.0e+]",
            "[-01]",
            "[00]",
        ];
        for json in accepted {
            let p = ok(&format!("4{json}"), V5);
            assert_eq!(p.data.as_deref(), Some(json));
        }
        for json in refused {
            assert_eq!(err(&format!("4{json}")), BadJson, "{json:?}");
        }
    }

    #[test]
    fn decodes_acks() {
        for v in [V4, V5] {
            assert_eq!(ok("31[true]", v), packet(Ack, "/", Some(1), Some("[true]")));
            assert_eq!(ok("312[]", v), packet(Ack, "/", Some(12), Some("[]")));
            assert_eq!(
                ok(r#"3/chat,7[{"a":1},"b"]"#, v),
                packet(Ack, "/chat", Some(7), Some(r#"[{"a":1},"b"]"#))
            );
        }
        assert_eq!(err("31"), BadPayload);
        assert_eq!(err("31{}"), BadPayload);
        assert_eq!(err("31\"x\""), BadPayload);
        assert_eq!(err("3[1]"), BadAckId);
        assert_eq!(err("3/chat,[1]"), BadAckId);
        assert_eq!(err("61-[1]"), BadAckId);
    }

    #[test]
    fn ack_ids_are_u64() {
        let max = format!("2{}[\"a\"]", u64::MAX);
        assert_eq!(ok(&max, V5).id, Some(u64::MAX));
        assert_eq!(err("218446744073709551616[\"a\"]"), BadAckId);
        assert_eq!(err("399999999999999999999999[1]"), BadAckId);
        assert_eq!(err("2/chat,18446744073709551616[\"a\"]"), BadAckId);
    }

    #[test]
    fn decodes_connect_error() {
        for v in [V4, V5] {
            assert_eq!(
                ok(r#"4"Invalid namespace""#, v),
                packet(ConnectError, "/", None, Some(r#""Invalid namespace""#))
            );
            assert_eq!(
                ok(r#"4/admin,{"message":"m","data":{"a":1}}"#, v),
                packet(
                    ConnectError,
                    "/admin",
                    None,
                    Some(r#"{"message":"m","data":{"a":1}}"#)
                )
            );
            assert_eq!(ok("4", v), packet(ConnectError, "/", None, None));
            assert_eq!(ok("4[1]", v).data.as_deref(), Some("[1]"));
        }
    }

    #[test]
    fn decodes_binary_packets() {
        let p = ok(r#"51-["file",{"_placeholder":true,"num":0}]"#, V5);
        assert_eq!(
            p,
            Packet {
                kind: BinaryEvent,
                nsp: "/".into(),
                query: None,
                id: None,
                data: Some(r#"["file",{"_placeholder":true,"num":0}]"#.into()),
                attachments: 1,
            }
        );
        let p = ok(
            r#"52-/chat,7["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            V4,
        );
        assert_eq!(
            (p.kind, p.attachments, p.nsp.as_str(), p.id),
            (BinaryEvent, 2, "/chat", Some(7))
        );
        let p = ok(r#"63-/chat,9[{"_placeholder":true,"num":2}]"#, V5);
        assert_eq!(
            (p.kind, p.attachments, p.nsp.as_str(), p.id),
            (BinaryAck, 3, "/chat", Some(9))
        );
        assert_eq!(ok(r#"50-["a"]"#, V5).attachments, 0);
        assert_eq!(ok(r#"51000-["a"]"#, V5).attachments, MAX_ATTACHMENTS);
        assert_eq!(ok(r#"50001000-["a"]"#, V5).attachments, MAX_ATTACHMENTS);
    }

    #[test]
    fn attachment_counts_are_checked() {
        assert_eq!(err(r#"5["a"]"#), BadAttachments);
        assert_eq!(err(r#"5-["a"]"#), BadAttachments);
        assert_eq!(err("5"), BadAttachments);
        assert_eq!(err("51"), BadAttachments);
        assert_eq!(err(r#"5x-["a"]"#), BadAttachments);
        assert_eq!(err(r#"6/chat,1[1]"#), BadAttachments);
        assert_eq!(err(r#"51001-["a"]"#), BadAttachments);
        assert_eq!(err(r#"5999999999999999999999999-["a"]"#), BadAttachments);
        // Non-binary types must not announce attachments.
        assert_eq!(err(r#"21-["a"]"#), BadAttachments);
        assert_eq!(err(r#"30-[1]"#), BadAttachments);
        assert_eq!(err("01-{}"), BadAttachments);
    }

    #[test]
    fn empty_and_unknown_types() {
        assert_eq!(err(""), Empty);
        for text in ["7", "9[]", "a", "-", " 2[\"a\"]", "é", "😀2", "\u{0}"] {
            assert_eq!(err(text), UnknownType, "{text:?}");
        }
    }

    #[test]
    fn never_panics_on_awkward_inputs() {
        let inputs = [
            "0/",
            "0/,",
            "0/é",
            "0/é?",
            "0/?",
            "0?",
            "2/",
            "2/,",
            "2/é",
            "5é",
            "51-",
            "51-/",
            "51-/é,",
            "2/a,é",
            "21é",
            "0/a?é,é",
            "2\u{0}",
            "3/é,9",
            "6 1-",
        ];
        for text in inputs {
            for v in [V4, V5] {
                let _ = Packet::decode(text, v);
            }
        }
    }

    #[test]
    fn encodes_events() {
        assert_eq!(encode_event("/", None, r#"["a",1]"#, 0), r#"2["a",1]"#);
        assert_eq!(encode_event("", None, r#"["a"]"#, 0), r#"2["a"]"#);
        assert_eq!(
            encode_event("/chat", None, r#"["a"]"#, 0),
            r#"2/chat,["a"]"#
        );
        assert_eq!(encode_event("/", Some(12), r#"["a"]"#, 0), r#"212["a"]"#);
        assert_eq!(
            encode_event("/chat", Some(12), r#"["a"]"#, 0),
            r#"2/chat,12["a"]"#
        );
        assert_eq!(encode_event("/", Some(0), r#"["a"]"#, 0), r#"20["a"]"#);
        assert_eq!(
            encode_event("/", None, r#"["a",{"_placeholder":true,"num":0}]"#, 1),
            r#"51-["a",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(encode_event("/chat", Some(7), "[]", 2), "52-/chat,7[]");
        assert_eq!(
            encode_event("/", Some(u64::MAX), "[]", 0),
            "218446744073709551615[]"
        );
    }

    #[test]
    fn encodes_acks() {
        assert_eq!(encode_ack("/", 1, "[true]", 0), "31[true]");
        assert_eq!(encode_ack("/chat", 5, "[]", 0), "3/chat,5[]");
        assert_eq!(encode_ack("/", 3, "[1]", 1), "61-3[1]");
        assert_eq!(encode_ack("/nsp", 9, "[1]", 12), "612-/nsp,9[1]");
    }

    #[test]
    fn encodes_connect() {
        assert_eq!(encode_connect("/", "X", V5), r#"0{"sid":"X"}"#);
        assert_eq!(encode_connect("/admin", "X", V5), r#"0/admin,{"sid":"X"}"#);
        assert_eq!(encode_connect("/", "a\"b", V5), r#"0{"sid":"a\"b"}"#);
        assert_eq!(encode_connect("/", "X", V4), "0");
        assert_eq!(
            encode_connect_with("/", "X", Some("P"), V5),
            r#"0{"sid":"X","pid":"P"}"#
        );
        assert_eq!(encode_connect_with("/a", "X", Some("P"), V4), "0/a");
        assert_eq!(encode_connect("", "X", V4), "0");
        assert_eq!(encode_connect("/admin", "X", V4), "0/admin");
    }

    #[test]
    fn encodes_connect_error() {
        assert_eq!(
            encode_connect_error("/", "Invalid namespace", None, V5),
            r#"4{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            encode_connect_error("/admin", "m", Some(r#"{"code":1}"#), V5),
            r#"4/admin,{"message":"m","data":{"code":1}}"#
        );
        assert_eq!(
            encode_connect_error("/admin", "Invalid namespace", None, V4),
            r#"4/admin,"Invalid namespace""#
        );
        assert_eq!(
            encode_connect_error("/", "Invalid namespace", None, V4),
            r#"4"Invalid namespace""#
        );
        assert_eq!(
            encode_connect_error("/admin", "m", Some(r#"{"code":1}"#), V4),
            r#"4/admin,{"code":1}"#
        );
        let tricky = "q\"\\\n\t\u{1}é\u{2028}";
        let v4 = encode_connect_error("/", tricky, None, V4);
        let decoded: String = serde_json::from_str(&v4[1..]).expect("a JSON string");
        assert_eq!(decoded, tricky);
        assert_eq!(
            &v4[1..],
            r#""q\"\\\n\t\u0001é "#.replace(' ', "\u{2028}") + "\""
        );
        let v5 = encode_connect_error("/", tricky, None, V5);
        let obj: serde_json::Value = serde_json::from_str(&v5[1..]).expect("a JSON object");
        assert_eq!(obj["message"], tricky);
    }

    #[test]
    fn encodes_disconnect() {
        assert_eq!(encode_disconnect("/"), "1");
        assert_eq!(encode_disconnect(""), "1");
        assert_eq!(encode_disconnect("/chat"), "1/chat,");
    }

    #[test]
    fn encoded_packets_decode_back() {
        for v in [V4, V5] {
            for nsp in ["/", "/chat", "/é✓"] {
                for id in [None, Some(0), Some(42), Some(u64::MAX)] {
                    for attachments in [0, 1, 3] {
                        let data = r#"["ev",{"_placeholder":true,"num":0},"x"]"#;
                        let p = ok(&encode_event(nsp, id, data, attachments), v);
                        let kind = if attachments > 0 { BinaryEvent } else { Event };
                        assert_eq!(
                            (
                                p.kind,
                                p.nsp.as_str(),
                                p.id,
                                p.data.as_deref(),
                                p.attachments
                            ),
                            (kind, nsp, id, Some(data), attachments)
                        );
                        let p = ok(
                            &encode_ack(nsp, id.unwrap_or(7), "[1,\"2\"]", attachments),
                            v,
                        );
                        let kind = if attachments > 0 { BinaryAck } else { Ack };
                        assert_eq!(
                            (
                                p.kind,
                                p.nsp.as_str(),
                                p.id,
                                p.data.as_deref(),
                                p.attachments
                            ),
                            (
                                kind,
                                nsp,
                                Some(id.unwrap_or(7)),
                                Some("[1,\"2\"]"),
                                attachments
                            )
                        );
                    }
                }
                let p = ok(&encode_connect(nsp, "s\"id", v), v);
                assert_eq!((p.kind, p.nsp.as_str()), (Connect, nsp));
                match v {
                    V4 => assert_eq!(p.data, None),
                    V5 => assert_eq!(p.data.as_deref(), Some(r#"{"sid":"s\"id"}"#)),
                }
                let p = ok(&encode_connect_error(nsp, "no \"way\"", None, v), v);
                assert_eq!((p.kind, p.nsp.as_str()), (ConnectError, nsp));
                assert!(p.data.is_some_and(|d| d.contains(r#"no \"way\""#)));
                assert_eq!(
                    ok(&encode_disconnect(nsp), v),
                    packet(Disconnect, nsp, None, None)
                );
            }
        }
    }

    #[test]
    fn decode_error_messages() {
        for e in [
            Empty,
            UnknownType,
            BadAttachments,
            BadAckId,
            BadJson,
            BadPayload,
            UnexpectedAttachment,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
