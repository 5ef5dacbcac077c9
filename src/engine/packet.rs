//! Engine.IO packets and polling payloads, v3 and v4.
//!
//! Types: `0` open, `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop.
//! v4 payload: packets joined by `\x1e`, binary as `b<base64>`.
//! v3 payload: `<len>:<packet>` with len in UTF-16 code units; binary either `<len>:b4<base64>`
//! (b64=1) or the XHR2 binary form (`0x00`/`0x01`, decimal length digits, `0xFF`, packet).
//!
//! Everything here is pure: no I/O, no session state. Decoders never panic on any input.

use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;

use super::connection::{Frame, Incoming};

/// Standard base64, tolerant of missing padding on input (engine.io decodes with Node's
/// lenient `Buffer.from(s, "base64")`), padded on output as the JS clients expect.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// v4 polling payload separator (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

/// Longest decimal length prefix accepted in a v3 payload; longer cannot fit any body we accept.
const MAX_LEN_DIGITS: usize = 10;

/// Why a packet or payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// An empty packet or payload where one is required.
    Empty,
    /// The first character is not a known packet type.
    UnknownType,
    /// Text that is not valid UTF-8.
    Utf8,
    /// A v3 length prefix that is missing, not decimal, or does not match the data.
    Length,
    /// Invalid base64 in a binary packet.
    Base64,
    /// A binary packet whose type is not `message`.
    BinaryType,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketError::Empty => "empty Engine.IO packet",
            PacketError::UnknownType => "unknown Engine.IO packet type",
            PacketError::Utf8 => "Engine.IO text is not valid UTF-8",
            PacketError::Length => "bad length prefix in v3 payload",
            PacketError::Base64 => "bad base64 in binary Engine.IO packet",
            PacketError::BinaryType => "binary Engine.IO packet that is not a message",
        })
    }
}

impl std::error::Error for PacketError {}

/// One Engine.IO packet received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    /// `0` open: sent by servers only; a client sending it is ignored.
    Open,
    /// `1` close: the client ends the session.
    Close,
    /// `2` ping; the data is `probe` while probing a websocket during an upgrade.
    Ping(String),
    /// `3` pong; the data is `probe` while probing a websocket during an upgrade.
    Pong(String),
    /// `4` message: text without its type prefix, or binary.
    Message(Incoming),
    /// `5` upgrade: the client moves the session to the probed websocket.
    Upgrade,
    /// `6` noop.
    Noop,
}

/// Decodes one text packet (a websocket text frame, or one packet of a polling payload).
pub fn decode_packet(text: &str) -> Result<EnginePacket, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open,
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping(data.to_owned()),
        '3' => EnginePacket::Pong(data.to_owned()),
        '4' => EnginePacket::Message(Incoming::Text(data.to_owned())),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        _ => return Err(PacketError::UnknownType),
    })
}

/// Decodes one v3 binary packet as it travels on a websocket or in an XHR2 payload: a type
/// byte (always `4`, message) followed by the data.
pub fn decode_binary_v3(data: &[u8]) -> Result<EnginePacket, PacketError> {
    match data.split_first() {
        Some((4, rest)) => Ok(EnginePacket::Message(Incoming::Binary(
            Bytes::copy_from_slice(rest),
        ))),
        Some(_) => Err(PacketError::BinaryType),
        None => Err(PacketError::Empty),
    }
}

/// Same as [`decode_binary_v3`] without copying when the frame is already in a `Bytes`.
pub fn decode_binary_v3_bytes(mut data: Bytes) -> Result<EnginePacket, PacketError> {
    match data.first() {
        Some(4) => Ok(EnginePacket::Message(Incoming::Binary(data.split_off(1)))),
        Some(_) => Err(PacketError::BinaryType),
        None => Err(PacketError::Empty),
    }
}

/// Decodes a v4 polling payload (a POST body): packets joined by `\x1e`, binary packets as
/// `b<base64>`.
pub fn decode_payload_v4(body: &[u8]) -> Result<Vec<EnginePacket>, PacketError> {
    let text = std::str::from_utf8(body).map_err(|_| PacketError::Utf8)?;
    text.split(SEPARATOR as char)
        .map(|one| match one.strip_prefix('b') {
            Some(b64) => B64
                .decode(b64)
                .map(|data| EnginePacket::Message(Incoming::Binary(data.into())))
                .map_err(|_| PacketError::Base64),
            None => decode_packet(one),
        })
        .collect()
}

/// Decodes one packet of a v3 text payload; `b4<base64>` is a binary message.
fn decode_packet_v3(text: &str) -> Result<EnginePacket, PacketError> {
    match text.strip_prefix('b') {
        Some(rest) => {
            let b64 = rest.strip_prefix('4').ok_or(PacketError::BinaryType)?;
            let data = B64.decode(b64).map_err(|_| PacketError::Base64)?;
            Ok(EnginePacket::Message(Incoming::Binary(data.into())))
        }
        None => decode_packet(text),
    }
}

/// Decodes a v3 polling payload (a POST body). `binary_body` is true when the request came
/// with `Content-Type: application/octet-stream`: the body is then in the XHR2 binary form,
/// otherwise it is `<len>:<packet>` text with lengths in UTF-16 code units.
pub fn decode_payload_v3(body: &[u8], binary_body: bool) -> Result<Vec<EnginePacket>, PacketError> {
    if binary_body {
        return decode_payload_v3_binary(body);
    }
    let mut rest = std::str::from_utf8(body).map_err(|_| PacketError::Utf8)?;
    if rest.is_empty() {
        return Err(PacketError::Empty);
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or(PacketError::Length)?;
        let len = parse_decimal(rest.get(..colon).unwrap_or_default().bytes())?;
        rest = rest.get(colon + 1..).unwrap_or_default();
        let mut units = 0usize;
        let mut end = 0usize;
        for c in rest.chars() {
            if units >= len {
                break;
            }
            units += c.len_utf16();
            end += c.len_utf8();
        }
        // A length that ends inside a surrogate pair or past the end is a lie.
        if units != len {
            return Err(PacketError::Length);
        }
        let (packet, tail) = rest.split_at(end);
        if !packet.is_empty() {
            out.push(decode_packet_v3(&undo_byte_chars(packet))?);
        }
        rest = tail;
    }
    Ok(out)
}

/// socket.io 1.x clients (engine.io-parser 1.x) UTF-8-encode each text packet of a polling
/// payload once more before sending it: every character stands for one byte of the UTF-8 form.
/// Such a packet has only characters up to U+00FF, some of them U+0080 or above, and those
/// characters taken as bytes are valid UTF-8; it is decoded back. Anything else (a character
/// above U+00FF, or bytes that are not UTF-8, as in ordinary Latin-1 text) is left as it is.
fn undo_byte_chars(packet: &str) -> std::borrow::Cow<'_, str> {
    if packet.is_ascii() {
        return packet.into();
    }
    let mut bytes = Vec::with_capacity(packet.len());
    for c in packet.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => bytes.push(b),
            Err(_) => return packet.into(),
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => packet.into(),
    }
}

/// The XHR2 binary payload: per packet `0x00` (text) or `0x01` (binary), the byte length as
/// decimal digits with values 0–9 (not ASCII), `0xFF`, then the packet.
fn decode_payload_v3_binary(body: &[u8]) -> Result<Vec<EnginePacket>, PacketError> {
    let mut rest = body;
    let mut out = Vec::new();
    while let Some((&kind, tail)) = rest.split_first() {
        let end = tail
            .iter()
            .position(|&b| b == 0xff)
            .ok_or(PacketError::Length)?;
        let (digits, tail) = tail.split_at(end);
        let len = parse_decimal(digits.iter().map(|d| d.wrapping_add(b'0')))?;
        let tail = tail.get(1..).unwrap_or_default();
        if tail.len() < len {
            return Err(PacketError::Length);
        }
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        match kind {
            0 => {
                let text = std::str::from_utf8(packet).map_err(|_| PacketError::Utf8)?;
                out.push(decode_packet_v3(text)?);
            }
            1 => out.push(decode_binary_v3(packet)?),
            _ => return Err(PacketError::Length),
        }
    }
    Ok(out)
}

/// Parses a non-empty run of ASCII decimal digits.
fn parse_decimal(digits: impl Iterator<Item = u8>) -> Result<usize, PacketError> {
    let mut n = 0usize;
    let mut count = 0usize;
    for d in digits {
        if !d.is_ascii_digit() || count == MAX_LEN_DIGITS {
            return Err(PacketError::Length);
        }
        n = n * 10 + usize::from(d - b'0');
        count += 1;
    }
    if count == 0 {
        return Err(PacketError::Length);
    }
    Ok(n)
}

/// The open packet: `0{"sid":…,"upgrades":[…],"pingInterval":…,"pingTimeout":…[,"maxPayload":…]}`.
/// `max_payload` is announced to v4 clients only.
pub fn open_packet(
    sid: &str,
    upgrade_to_websocket: bool,
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
    max_payload: Option<usize>,
) -> String {
    let upgrades = if upgrade_to_websocket {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    // The sid is base64url, so it needs no JSON escaping.
    let mut s = format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms}"#
    );
    if let Some(max) = max_payload {
        s.push_str(&format!(r#","maxPayload":{max}"#));
    }
    s.push('}');
    s
}

/// Encodes a v4 polling payload (a GET response body).
pub fn encode_payload_v4(frames: &[Frame]) -> String {
    let mut out = String::with_capacity(frames.iter().map(encoded_len_v4).sum());
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR as char);
        }
        match frame {
            Frame::Text(t) => out.push_str(t.as_str()),
            Frame::Binary(b) => {
                out.push('b');
                B64.encode_string(b, &mut out);
            }
        }
    }
    out
}

fn encoded_len_v4(frame: &Frame) -> usize {
    match frame {
        Frame::Text(t) => t.len() + 1,
        Frame::Binary(b) => b.len().div_ceil(3) * 4 + 2,
    }
}

/// A v3 polling response body and whether it is the XHR2 binary form
/// (`Content-Type: application/octet-stream`) rather than text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadV3 {
    /// The response body.
    pub body: Vec<u8>,
    /// True for the XHR2 binary form.
    pub binary: bool,
}

/// Encodes a v3 polling payload. When the client can take binary (no `b64=1`) and some packet
/// is binary or has non-ASCII text, every packet goes in the XHR2 binary form, where text is
/// UTF-8 bytes counted in bytes: clients of every generation read that form alike, while the
/// text form is read differently by socket.io 1.x clients (which expect doubly encoded UTF-8)
/// and later ones. Otherwise it is `<len>:<packet>` text with binary packets as `b4<base64>`.
/// An empty list is `0:`.
pub fn encode_payload_v3(frames: &[Frame], base64_only: bool) -> PayloadV3 {
    let needs_bytes = frames.iter().any(|f| match f {
        Frame::Binary(_) => true,
        Frame::Text(t) => !t.is_ascii(),
    });
    if needs_bytes && !base64_only {
        let mut body = Vec::new();
        for frame in frames {
            match frame {
                Frame::Text(t) => {
                    body.push(0);
                    push_digits(&mut body, t.len());
                    body.push(0xff);
                    body.extend_from_slice(t.as_bytes());
                }
                Frame::Binary(b) => {
                    body.push(1);
                    push_digits(&mut body, b.len() + 1);
                    body.push(0xff);
                    body.push(4);
                    body.extend_from_slice(b);
                }
            }
        }
        return PayloadV3 { body, binary: true };
    }
    if frames.is_empty() {
        return PayloadV3 {
            body: b"0:".to_vec(),
            binary: false,
        };
    }
    let mut body = String::new();
    for frame in frames {
        match frame {
            Frame::Text(t) => {
                let units: usize = t.as_str().encode_utf16().count();
                body.push_str(&units.to_string());
                body.push(':');
                body.push_str(t.as_str());
            }
            Frame::Binary(b) => {
                let encoded = B64.encode(b);
                body.push_str(&(encoded.len() + 2).to_string());
                body.push_str(":b4");
                body.push_str(&encoded);
            }
        }
    }
    PayloadV3 {
        body: body.into_bytes(),
        binary: false,
    }
}

/// Decimal digits as byte values 0–9 (the XHR2 form's length encoding).
fn push_digits(out: &mut Vec<u8>, n: usize) {
    out.extend(n.to_string().bytes().map(|d| d - b'0'));
}

/// A binary message as a v3 websocket frame: the `4` type byte, then the data.
pub fn encode_binary_v3(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(4);
    out.extend_from_slice(data);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> EnginePacket {
        EnginePacket::Message(Incoming::Text(s.into()))
    }

    fn bin(b: &[u8]) -> EnginePacket {
        EnginePacket::Message(Incoming::Binary(Bytes::copy_from_slice(b)))
    }

    #[test]
    fn single_packets() {
        assert_eq!(decode_packet("4hello"), Ok(text("hello")));
        assert_eq!(decode_packet("4"), Ok(text("")));
        assert_eq!(
            decode_packet("2probe"),
            Ok(EnginePacket::Ping("probe".into()))
        );
        assert_eq!(decode_packet("3"), Ok(EnginePacket::Pong(String::new())));
        assert_eq!(decode_packet("1"), Ok(EnginePacket::Close));
        assert_eq!(decode_packet("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(decode_packet("6"), Ok(EnginePacket::Noop));
        assert_eq!(decode_packet(""), Err(PacketError::Empty));
        assert_eq!(decode_packet("7"), Err(PacketError::UnknownType));
        assert_eq!(decode_packet("é"), Err(PacketError::UnknownType));
    }

    #[test]
    fn v4_payload_round_trip() {
        let frames = [
            Frame::text("2[\"a\"]"),
            Frame::binary(vec![1u8, 2, 3]),
            Frame::Text("2".into()),
        ];
        let encoded = encode_payload_v4(&frames);
        assert_eq!(encoded, "42[\"a\"]\x1ebAQID\x1e2");
        assert_eq!(
            decode_payload_v4(encoded.as_bytes()),
            Ok(vec![
                text("2[\"a\"]"),
                bin(&[1, 2, 3]),
                EnginePacket::Ping(String::new())
            ])
        );
    }

    #[test]
    fn v4_payload_errors() {
        assert_eq!(decode_payload_v4(b""), Err(PacketError::Empty));
        assert_eq!(decode_payload_v4(b"4a\x1e"), Err(PacketError::Empty));
        assert_eq!(decode_payload_v4(b"b!!"), Err(PacketError::Base64));
        assert_eq!(decode_payload_v4(b"\xff"), Err(PacketError::Utf8));
        assert_eq!(decode_payload_v4(b"9"), Err(PacketError::UnknownType));
        // Unpadded base64 is accepted.
        assert_eq!(decode_payload_v4(b"bAQI"), Ok(vec![bin(&[1, 2])]));
        assert_eq!(decode_payload_v4(b"bAQ"), Ok(vec![bin(&[1])]));
    }

    #[test]
    fn v3_text_payload_counts_utf16_units() {
        // "€" is one UTF-16 unit but three UTF-8 bytes; "😀" is two units.
        let body = "2:4€3:4😀1:2";
        assert_eq!(
            decode_payload_v3(body.as_bytes(), false),
            Ok(vec![
                text("€"),
                text("😀"),
                EnginePacket::Ping(String::new())
            ])
        );
        // The text form (for `b64=1` clients) counts UTF-16 units too.
        let encoded = encode_payload_v3(&[Frame::text("€"), Frame::text("😀")], true);
        assert!(!encoded.binary);
        assert_eq!(encoded.body, "2:4€3:4😀".as_bytes());
        // ASCII-only text stays in the text form for every client.
        let encoded = encode_payload_v3(&[Frame::text("ab"), Frame::text("c")], false);
        assert_eq!(
            (encoded.binary, &encoded.body[..]),
            (false, &b"3:4ab2:4c"[..])
        );
    }

    #[test]
    fn v3_non_ascii_text_goes_in_the_binary_form_to_clients_that_take_it() {
        // UTF-8 bytes counted in bytes: socket.io 1.x and 2.x clients both read this right.
        let encoded = encode_payload_v3(&[Frame::text("a"), Frame::text("é漢")], false);
        assert!(encoded.binary);
        let mut expected = vec![0, 2, 0xff, b'4', b'a', 0, 6, 0xff, b'4'];
        expected.extend_from_slice("é漢".as_bytes());
        assert_eq!(encoded.body, expected);
        assert_eq!(
            decode_payload_v3(&encoded.body, true),
            Ok(vec![text("a"), text("é漢")])
        );
    }

    #[test]
    fn v3_doubly_encoded_text_from_socket_io_1_clients_is_decoded() {
        // engine.io-parser 1.x sends "é😀" as the characters of its UTF-8 bytes, counted as
        // characters: 7 = "4" + 2 bytes of "é" + 4 bytes of "😀".
        let doubled: String = "4é😀".bytes().map(char::from).collect();
        let body = format!("7:{doubled}1:2");
        assert_eq!(
            decode_payload_v3(body.as_bytes(), false),
            Ok(vec![text("é😀"), EnginePacket::Ping(String::new())])
        );
        // Latin-1 text that is not UTF-8 as bytes, and anything above U+00FF, stay as they are.
        for kept in ["4café", "4Ã", "4é漢", "4ÃÃ"] {
            let body = format!("{}:{kept}", kept.encode_utf16().count());
            let expected = text(kept.strip_prefix('4').unwrap_or_default());
            assert_eq!(
                decode_payload_v3(body.as_bytes(), false),
                Ok(vec![expected])
            );
        }
    }

    #[test]
    fn v3_text_payload_errors() {
        for bad in [
            "",
            "4",
            ":4a",
            "x:4",
            "3:4a",
            "1:4a",
            "2:4😀",
            "2:9a",
            "99999999999:4",
        ] {
            assert!(decode_payload_v3(bad.as_bytes(), false).is_err(), "{bad:?}");
        }
        assert_eq!(decode_payload_v3(b"0:", false), Ok(vec![]));
        assert_eq!(decode_payload_v3(b"\xff", false), Err(PacketError::Utf8));
    }

    #[test]
    fn v3_base64_binary() {
        let encoded = encode_payload_v3(&[Frame::text("x"), Frame::binary(vec![1u8, 2])], true);
        assert!(!encoded.binary);
        assert_eq!(encoded.body, b"2:4x6:b4AQI=");
        assert_eq!(
            decode_payload_v3(&encoded.body, false),
            Ok(vec![text("x"), bin(&[1, 2])])
        );
        assert_eq!(
            decode_payload_v3(b"4:b2AQ", false),
            Err(PacketError::BinaryType)
        );
    }

    #[test]
    fn v3_xhr2_binary() {
        let frames = [Frame::text("é"), Frame::binary(vec![9u8; 10])];
        let encoded = encode_payload_v3(&frames, false);
        assert!(encoded.binary);
        let mut expected = vec![0, 3, 0xff, b'4', 0xc3, 0xa9, 1, 1, 1, 0xff, 4];
        expected.extend_from_slice(&[9; 10]);
        assert_eq!(encoded.body, expected);
        assert_eq!(
            decode_payload_v3(&encoded.body, true),
            Ok(vec![text("é"), bin(&[9; 10])])
        );
    }

    #[test]
    fn v3_xhr2_errors() {
        assert_eq!(decode_payload_v3(b"", true), Ok(vec![]));
        for bad in [
            &[0u8][..],
            &[0, 1],
            &[0, 0xff],
            &[0, 5, 0xff, b'4'],
            &[2, 1, 0xff, b'4'],
            &[1, 1, 0xff, 2],
            &[1, 0, 0xff],
            &[0, 10, 0xff],
            &[0, 1, 0xff, 0xc3],
        ] {
            assert!(decode_payload_v3(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v3_empty_payload_encoding() {
        assert_eq!(
            encode_payload_v3(&[], false),
            PayloadV3 {
                body: b"0:".to_vec(),
                binary: false
            }
        );
    }

    #[test]
    fn v3_ws_binary() {
        assert_eq!(&encode_binary_v3(&[7, 8])[..], &[4, 7, 8]);
        assert_eq!(decode_binary_v3(&[4, 7, 8]), Ok(bin(&[7, 8])));
        assert_eq!(
            decode_binary_v3_bytes(Bytes::from_static(&[4, 7])),
            Ok(bin(&[7]))
        );
        assert_eq!(decode_binary_v3(&[]), Err(PacketError::Empty));
        assert_eq!(decode_binary_v3(&[2, 1]), Err(PacketError::BinaryType));
    }

    #[test]
    fn open_packet_shapes() {
        assert_eq!(
            open_packet("abc", true, 25000, 20000, Some(1_000_000)),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(
            open_packet("abc", false, 1, 2, None),
            r#"0{"sid":"abc","upgrades":[],"pingInterval":1,"pingTimeout":2}"#
        );
    }
}
