//! MessagePack as Node's Redis adapter speaks it, and its bridge to [`Payload`].
//!
//! Encoding follows notepack.io 3 (`@socket.io/redis-adapter` 8.x, `@socket.io/redis-emitter`
//! 5.x): binaries as `bin`, integral numbers as the smallest integer, other numbers as float64.
//! Decoding also accepts what older peers write: notepack.io 2 (`ext 0` ArrayBuffers, `fixext1 0`
//! undefined, `fixext8 0` Dates) and msgpack-lite (socket.io-redis 3.x/4.x ext types). Dates are
//! normalised to the timestamp extension (type −1) and become the ISO string `JSON.stringify`
//! writes when turned into JSON, which is what a Node server would send its clients.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::protocol::Payload;

pub use rmpv::Value;

/// Deepest nesting accepted from a peer.
const MAX_DEPTH: usize = 256;
/// JavaScript's Date range: ±8.64e15 ms around the epoch.
const MAX_DATE_MS: i64 = 8_640_000_000_000_000;
/// Timestamp extension type (MessagePack spec).
const EXT_TIMESTAMP: i8 = -1;

/// A message that is not the MessagePack (or JSON) it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

fn err<T>(why: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(why.into()))
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes one complete MessagePack value (trailing bytes are an error, as in notepack).
pub fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    let mut rd = Reader { buf: bytes, pos: 0 };
    let value = rd.value(MAX_DEPTH)?;
    if rd.pos != bytes.len() {
        return err(format!("{} trailing bytes", bytes.len() - rd.pos));
    }
    Ok(value)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => err(format!("truncated at byte {}", self.pos)),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self, width: usize) -> Result<usize, CodecError> {
        Ok(match width {
            1 => self.u8()? as usize,
            2 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn str(&mut self, len: usize) -> Result<Value, CodecError> {
        let raw = self.take(len)?;
        Ok(Value::from(String::from_utf8_lossy(raw).into_owned()))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, CodecError> {
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, CodecError> {
        let mut entries = Vec::with_capacity(len.min(self.remaining() / 2));
        for _ in 0..len {
            let k = self.value(depth)?;
            let v = self.value(depth)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn ext(&mut self, len: usize, fixed: bool, depth: usize) -> Result<Value, CodecError> {
        let ty = self.u8()? as i8;
        let data = self.take(len)?;
        ext_value(ty, data, fixed, depth)
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        let Some(depth) = depth.checked_sub(1) else {
            return err("nested too deeply");
        };
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => Value::from(marker),
            0x80..=0x8f => self.map((marker & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array((marker & 0x0f) as usize, depth)?,
            0xa0..=0xbf => self.str((marker & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc1 => return err(format!("reserved marker 0xc1 at byte {}", self.pos - 1)),
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                Value::Binary(self.take(len)?.to_vec())
            }
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                self.ext(len, false, depth)?
            }
            0xca => Value::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::from(self.u8()?),
            0xcd => Value::from(u16::from_be_bytes(self.be()?)),
            0xce => Value::from(u32::from_be_bytes(self.be()?)),
            0xcf => Value::from(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::from(self.u8()? as i8),
            0xd1 => Value::from(i16::from_be_bytes(self.be()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.be()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4), true, depth)?,
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                self.str(len)?
            }
            0xdc | 0xdd => {
                let len = self.len(if marker == 0xdc { 2 } else { 4 })?;
                self.array(len, depth)?
            }
            0xde | 0xdf => {
                let len = self.len(if marker == 0xde { 2 } else { 4 })?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::from(marker as i8),
        })
    }
}

/// Maps an extension to what the encoder that wrote it meant.
fn ext_value(ty: i8, data: &[u8], fixed: bool, depth: usize) -> Result<Value, CodecError> {
    Ok(match ty {
        // notepack 2: fixext1 = undefined, fixext8 = Date (int64 ms), ext 8/16/32 = ArrayBuffer.
        0 if fixed && data.len() == 1 => Value::Nil,
        0 if fixed && data.len() == 8 => {
            let mut ms = [0u8; 8];
            ms.copy_from_slice(data);
            date_value(i64::from_be_bytes(ms) as f64)
        }
        0 => Value::Binary(data.to_vec()),
        EXT_TIMESTAMP => match timestamp_ms(data) {
            Some(_) => Value::Ext(EXT_TIMESTAMP, data.to_vec()),
            None => Value::Nil,
        },
        // msgpack-lite (socket.io-redis 3.x/4.x): typed arrays, ArrayBuffer, Buffer, DataView.
        0x11..=0x1b | 0x1d => Value::Binary(data.to_vec()),
        // msgpack-lite Date: the payload is a MessagePack number of milliseconds.
        0x0d => match decode_nested(data, depth)?.as_f64() {
            Some(ms) => date_value(ms),
            None => Value::Nil,
        },
        // msgpack-lite boxed Boolean / String / Number: JSON.stringify unboxes them.
        0x0b | 0x0c | 0x0f => decode_nested(data, depth)?,
        // msgpack-lite Error types and RegExp: JSON.stringify gives `{}`.
        0x01..=0x06 | 0x0a | 0x0e => Value::Map(Vec::new()),
        _ => Value::Ext(ty, data.to_vec()),
    })
}

fn decode_nested(data: &[u8], depth: usize) -> Result<Value, CodecError> {
    let mut rd = Reader { buf: data, pos: 0 };
    rd.value(depth)
}

/// A Date as the timestamp extension, written the way notepack 3 writes it (32, 64 or 96 bit).
/// Values outside JavaScript's Date range (an "Invalid Date") become nil, as `JSON.stringify` of
/// an invalid Date gives `null`.
pub fn date_value(ms: f64) -> Value {
    if !ms.is_finite() || ms.abs() > MAX_DATE_MS as f64 {
        return Value::Nil;
    }
    let ms = ms.trunc() as i64;
    let s = ms.div_euclid(1000);
    let ns = (ms.rem_euclid(1000) * 1_000_000) as u32;
    let data = if (0..1 << 34).contains(&s) {
        if ns == 0 && s < 1 << 32 {
            (s as u32).to_be_bytes().to_vec()
        } else {
            (((ns as u64) << 34) | s as u64).to_be_bytes().to_vec()
        }
    } else {
        let mut d = ns.to_be_bytes().to_vec();
        d.extend_from_slice(&s.to_be_bytes());
        d
    };
    Value::Ext(EXT_TIMESTAMP, data)
}

/// Milliseconds of a timestamp extension body (truncated toward zero, like `new Date(x)`), or
/// `None` when the body is not a timestamp or lies outside JavaScript's Date range.
pub fn timestamp_ms(data: &[u8]) -> Option<i64> {
    let (sec, nsec): (i64, u32) = match data.len() {
        4 => (u32::from_be_bytes(data.try_into().ok()?) as i64, 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & ((1 << 34) - 1)) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data.get(4..12)?.try_into().ok()?),
            u32::from_be_bytes(data.get(0..4)?.try_into().ok()?),
        ),
        _ => return None,
    };
    let ns = sec as i128 * 1_000_000_000 + nsec as i128;
    let ms = ns / 1_000_000;
    (ms.abs() <= MAX_DATE_MS as i128).then_some(ms as i64)
}

/// `Date.prototype.toISOString`: `2023-11-14T22:13:20.123Z`, with a signed six-digit year
/// outside 0000..=9999.
pub fn iso_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", -year)
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encodes a value. Integers take their smallest form and strings, binaries, arrays and maps
/// their smallest length prefix, which is byte for byte what notepack 3 writes.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

// ---------------------------------------------------------------------------------------------
// JSON text → Value
// ---------------------------------------------------------------------------------------------

/// Turns a [`Payload`] into one value: the data array with every
/// `{"_placeholder":true,"num":N}` replaced by attachment N as `bin`.
pub fn from_payload(payload: &Payload) -> Result<Value, CodecError> {
    json_value(&payload.json, Some(&payload.attachments))
}

/// Parses JSON text (e.g. a request from a Node peer) keeping object key order.
pub fn from_json(text: &str) -> Result<Value, CodecError> {
    json_value(text, None)
}

fn json_value(text: &str, attachments: Option<&[Bytes]>) -> Result<Value, CodecError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = JsonSeed { attachments }
        .deserialize(&mut de)
        .map_err(|e| CodecError(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| CodecError(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// A `serde_json::Value` as a MessagePack value, numbers written as notepack writes a JS number.
pub fn from_serde(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => n.as_f64().map_or(Value::Nil, number_value),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(items.iter().map(from_serde).collect()),
        J::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_serde(v)))
                .collect(),
        ),
    }
}

/// A value as a `serde_json::Value` (binaries as Node's Buffer JSON, Dates as ISO strings).
pub fn to_serde(v: &Value) -> serde_json::Value {
    serde_json::from_str(&to_json(v)).unwrap_or(serde_json::Value::Null)
}

#[derive(Clone, Copy)]
struct JsonSeed<'a> {
    attachments: Option<&'a [Bytes]>,
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A JSON number as notepack sees a JS number: integral values become integers.
fn number_value(f: f64) -> Value {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_finite() && f.fract() == 0.0 {
        if (0.0..TWO_64).contains(&f) {
            return Value::from(f as u64);
        }
        if (-TWO_63..0.0).contains(&f) {
            return Value::from(f as i64);
        }
    }
    Value::F64(f)
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(number_value(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            entries.push((Value::from(key), value));
        }
        if let Some(bin) = self.placeholder(&entries) {
            return Ok(bin);
        }
        Ok(Value::Map(entries))
    }
}

impl JsonSeed<'_> {
    /// socket.io-parser's rule: `_placeholder === true` and a `num` indexing the attachments.
    fn placeholder(&self, entries: &[(Value, Value)]) -> Option<Value> {
        let attachments = self.attachments?;
        let field = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v)
        };
        if field("_placeholder")? != &Value::Boolean(true) {
            return None;
        }
        let num = field("num")?.as_u64()?;
        let bin = attachments.get(usize::try_from(num).ok()?)?;
        Some(Value::Binary(bin.to_vec()))
    }
}

// ---------------------------------------------------------------------------------------------
// Value → JSON text
// ---------------------------------------------------------------------------------------------

/// Turns a value (normally the event data array) into a [`Payload`]: binaries become
/// placeholders with the bytes moved to `attachments`, Dates become ISO strings, nil becomes
/// `null`, non-string map keys are stringified as JavaScript would.
pub fn to_payload(value: &Value) -> Payload {
    let mut attachments = Vec::new();
    let mut json = String::new();
    write_json(
        &mut json,
        value,
        &mut Binaries::Placeholders(&mut attachments),
    );
    Payload { json, attachments }
}

/// JSON text of a value for a JSON message to a Node peer: binaries are written the way
/// `JSON.stringify` writes a Buffer (`{"type":"Buffer","data":[...]}`).
pub fn to_json(value: &Value) -> String {
    let mut json = String::new();
    write_json(&mut json, value, &mut Binaries::NodeBuffer);
    json
}

enum Binaries<'a> {
    Placeholders(&'a mut Vec<Bytes>),
    NodeBuffer,
}

fn write_json(out: &mut String, value: &Value, bins: &mut Binaries) {
    match value {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(n) = i.as_i64() {
                let _ = write!(out, "{n}");
            }
        }
        Value::F32(f) => write_number(out, f64::from(*f)),
        Value::F64(f) => write_number(out, *f),
        Value::String(s) => write_str(out, &String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => write_binary(out, b, bins),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, bins);
            }
            out.push(']');
        }
        Value::Map(entries) => write_map(out, entries, bins),
        Value::Ext(ty, data) => match (*ty, timestamp_ms(data)) {
            (EXT_TIMESTAMP, Some(ms)) => write_str(out, &iso_date(ms)),
            (EXT_TIMESTAMP, None) => out.push_str("null"),
            // notepack decodes an unknown extension as `[type, Buffer]`.
            (ty, _) => {
                let _ = write!(out, "[{ty},");
                write_binary(out, data, bins);
                out.push(']');
            }
        },
    }
}

fn write_binary(out: &mut String, data: &[u8], bins: &mut Binaries) {
    match bins {
        Binaries::Placeholders(list) => {
            let _ = write!(out, "{{\"_placeholder\":true,\"num\":{}}}", list.len());
            list.push(Bytes::copy_from_slice(data));
        }
        Binaries::NodeBuffer => {
            out.push_str("{\"type\":\"Buffer\",\"data\":[");
            for (i, b) in data.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push_str("]}");
        }
    }
}

/// Object keys in JavaScript's insertion order; a repeated key keeps its first position and
/// its last value, as assigning `obj[key]` twice does.
fn write_map(out: &mut String, entries: &[(Value, Value)], bins: &mut Binaries) {
    let mut keys: Vec<String> = Vec::with_capacity(entries.len());
    let mut values: Vec<&Value> = Vec::with_capacity(entries.len());
    let mut index = std::collections::HashMap::new();
    for (k, v) in entries {
        let key = js_key(k);
        match index.get(&key) {
            Some(&i) => values[i] = v,
            None => {
                index.insert(key.clone(), keys.len());
                keys.push(key);
                values.push(v);
            }
        }
    }
    out.push('{');
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_json(out, value, bins);
    }
    out.push('}');
}

/// `String(key)` for a decoded map key.
fn js_key(key: &Value) -> String {
    match key {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => {
            let mut s = String::new();
            write_json(&mut s, other, &mut Binaries::NodeBuffer);
            s.trim_matches('"').to_owned()
        }
    }
}

/// A number as `JSON.stringify` writes it (non-finite numbers become `null`).
fn write_number(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        let _ = write!(out, "{}", f as i128);
    } else if f.abs() >= 1e21 || f.abs() < 1e-6 {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => {
                let _ = write!(out, "{m}e+{e}");
            }
            _ => out.push_str(&s),
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    //! Fixtures were produced by running notepack.io 3.0.1, notepack.io 2.2.0 and
    //! msgpack-lite 0.1.26 under Node 20 (`Buffer.toString("hex")` of `encode(...)`).

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn payload(json: &str, attachments: &[&[u8]]) -> Payload {
        Payload {
            json: json.to_owned(),
            attachments: attachments
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect(),
        }
    }

    /// notepack 3: `encode(["abc123", {type: 2, data: ["ev", Buffer.from([1,2,3]), {a: 1, b: "x"},
    /// 1.5, -7, 300, 70000, 5000000000, true, null], nsp: "/"}, {rooms: ["r"], except: ["s1"],
    /// flags: {volatile: true}}])`.
    const ENVELOPE_NP3: &str = "93a661626331323383a47479706502a4646174619aa26576c40301020382a16101a162a178cb3ff8000000000000f9cd012cce00011170cf000000012a05f200c3c0a36e7370a12f83a5726f6f6d7391a172a665786365707491a27331a5666c61677381a8766f6c6174696c65c3";

    #[test]
    fn envelope_round_trips_byte_for_byte() {
        let data = payload(
            r#"["ev",{"_placeholder":true,"num":0},{"a":1,"b":"x"},1.5,-7,300,70000,5000000000,true,null]"#,
            &[&[1, 2, 3]],
        );
        let packet = Value::Map(vec![
            ("type".into(), 2.into()),
            ("data".into(), from_payload(&data).unwrap()),
            ("nsp".into(), "/".into()),
        ]);
        let opts =
            from_json(r#"{"rooms":["r"],"except":["s1"],"flags":{"volatile":true}}"#).unwrap();
        let envelope = Value::Array(vec!["abc123".into(), packet, opts]);
        assert_eq!(encode(&envelope), hex(ENVELOPE_NP3));

        let decoded = decode(&hex(ENVELOPE_NP3)).unwrap();
        assert_eq!(decoded, envelope);
        let Value::Array(parts) = decoded else {
            panic!()
        };
        let data_value = parts[1].as_map().unwrap()[1].1.clone();
        assert_eq!(to_payload(&data_value), data);
    }

    #[test]
    fn numbers_encode_like_notepack_3() {
        // encode([0,127,128,255,256,65535,65536,4294967295,4294967296,-1,-32,-33,-128,-129,
        //         -32768,-32769,-2147483648,-2147483649,1.5,-0.25,9007199254740993])
        let fixture = "dc0015007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffffcb3ff8000000000000cbbfd0000000000000cf0020000000000000";
        // JSON.stringify of the same array.
        let json = "[0,127,128,255,256,65535,65536,4294967295,4294967296,-1,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649,1.5,-0.25,9007199254740992]";
        let v = from_json(json).unwrap();
        assert_eq!(encode(&v), hex(fixture));
        assert_eq!(to_payload(&decode(&hex(fixture)).unwrap()).json, json);
        // Integral floats are integers and -0 is 0 (notepack 3: 930100...). Numbers beyond
        // 64 bits stay float64 (notepack 3 writes garbage uint64 for them).
        assert_eq!(
            encode(&from_json("[1.0,-0.0,1e300]").unwrap()),
            hex("930100cb7e37e43c8800759c")
        );
        // encode([1e-7, 123.456, -1e-300]); JSON.stringify gives [1e-7,123.456,-1e-300].
        let floats = hex("93cb3e7ad7f29abcaf48cb405edd2f1a9fbe77cb81a56e1fc2f8f359");
        assert_eq!(to_json(&decode(&floats).unwrap()), "[1e-7,123.456,-1e-300]");
        assert_eq!(
            encode(&from_json("[1e-7,123.456,-1e-300]").unwrap()),
            floats
        );
    }

    #[test]
    fn strings_and_containers_encode_like_notepack_3() {
        let strings = "96a0bf61616161616161616161616161616161616161616161616161616161616161d9206161616161616161616161616161616161616161616161616161616161616161d9ff".to_owned()
            + &"62".repeat(255)
            + "da0100"
            + &"63".repeat(256)
            + "a9c3a9f09f988001225c";
        let json = format!(
            r#"["","{}","{}","{}","{}","é😀\u0001\"\\"]"#,
            "a".repeat(31),
            "a".repeat(32),
            "b".repeat(255),
            "c".repeat(256)
        );
        let v = from_json(&json).unwrap();
        assert_eq!(encode(&v), hex(&strings));
        assert_eq!(decode(&hex(&strings)).unwrap(), v);
        assert_eq!(to_payload(&v).json, json);

        // [[0..15), [0..16), {z:1,a:2}, {k0:0..k15:15}, Buffer.alloc(256, 7), []]
        let containers = "969f000102030405060708090a0b0c0d0edc0010000102030405060708090a0b0c0d0e0f82a17a01a16102de0010a26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909a36b31300aa36b31310ba36b31320ca36b31330da36b31340ea36b31350fc50100".to_owned()
            + &"07".repeat(256)
            + "90";
        let keys: Vec<String> = (0..16).map(|i| format!("\"k{i}\":{i}")).collect();
        let json = format!(
            r#"[[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14],[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],{{"z":1,"a":2}},{{{}}},{{"_placeholder":true,"num":0}},[]]"#,
            keys.join(",")
        );
        let p = payload(&json, &[&[7u8; 256]]);
        assert_eq!(encode(&from_payload(&p).unwrap()), hex(&containers));
        assert_eq!(to_payload(&decode(&hex(&containers)).unwrap()), p);
    }

    const DATES_ISO: [&str; 5] = [
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:20.123Z",
        "1969-12-31T23:59:58.500Z",
        "+010000-01-01T00:00:00.000Z",
        "-000001-01-01T00:00:00.000Z",
    ];

    fn dates_json() -> String {
        format!("[\"{}\"]", DATES_ISO.join("\",\""))
    }

    #[test]
    fn notepack_3_dates_become_iso_strings() {
        // encode([new Date(1700000000000), new Date(1700000000123), new Date(-1500),
        //         new Date(253402300800000), new Date(-62198755200000)])
        let np3 = hex("95d6ff6553f100d7ff1d5353006553f100c70cff1dcd6500fffffffffffffffec70cff000000000000003afff44180c70cff00000000fffffff184aa5080");
        let v = decode(&np3).unwrap();
        assert_eq!(to_payload(&v).json, dates_json());
        // The normalised Dates encode back exactly as notepack 3 writes them.
        assert_eq!(encode(&v), np3);
        let ms = [
            1700000000000.0,
            1700000000123.0,
            -1500.0,
            253402300800000.0,
            -62198755200000.0,
        ];
        assert_eq!(
            encode(&Value::Array(ms.iter().map(|&m| date_value(m)).collect())),
            np3
        );
    }

    #[test]
    fn notepack_2_forms_are_understood() {
        // Same Dates with notepack 2.2 (fixext8 type 0, int64 ms).
        let np2 = hex("95d7000000018bcfe56800d7000000018bcfe5687bd700fffffffffffffa24d7000000e677d21fdc00d700ffffc76e394a7400");
        assert_eq!(to_payload(&decode(&np2).unwrap()).json, dates_json());
        // [undefined, 1]
        assert_eq!(
            to_payload(&decode(&hex("92d4000001")).unwrap()).json,
            "[null,1]"
        );
        // [ArrayBuffer[9,8,7], Uint8Array[1,2], Buffer[5]]: ext 8 type 0 is an ArrayBuffer.
        let p = to_payload(&decode(&hex("93c70300090807c702000102c40105")).unwrap());
        assert_eq!(
            p,
            payload(
                r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#,
                &[&[9, 8, 7], &[1, 2], &[5]]
            )
        );
        // notepack 3 writes all three as bin.
        assert_eq!(
            encode(&from_payload(&p).unwrap()),
            hex("93c403090807c4020102c40105")
        );
    }

    #[test]
    fn msgpack_lite_forms_are_understood() {
        // encode([new Uint8Array([1,2]), new Date(1700000000123), new Uint8Array([3]).buffer,
        //         Buffer.from([4]), new Int16Array([1,-1]), undefined, new Boolean(true),
        //         new String("s"), new Number(2.5)])
        let lite = hex("99d5120102c7090dcb4278bcfe5687b000d41a03c40104d6130100ffffc0d40bc3d50ca173c7090fcb4004000000000000");
        let p = to_payload(&decode(&lite).unwrap());
        assert_eq!(
            p.json,
            r#"[{"_placeholder":true,"num":0},"2023-11-14T22:13:20.123Z",{"_placeholder":true,"num":1},{"_placeholder":true,"num":2},{"_placeholder":true,"num":3},null,true,"s",2.5]"#
        );
        assert_eq!(
            p.attachments,
            vec![
                Bytes::from_static(&[1, 2]),
                Bytes::from_static(&[3]),
                Bytes::from_static(&[4]),
                Bytes::from_static(&[1, 0, 0xff, 0xff]),
            ]
        );
        // [new Error("x"), /re/g] (the Error's body cut down to {name: "Error"}, 12 bytes);
        // JSON.stringify gives [{},{}].
        let err_and_regexp = hex("92c8000c0e81a46e616d65a54572726f72c7060a92a27265a167");
        assert_eq!(
            to_payload(&decode(&err_and_regexp).unwrap()).json,
            "[{},{}]"
        );
    }

    #[test]
    fn unusual_values_follow_javascript() {
        // Unknown extension: notepack 3 decodes it as [type, Buffer].
        let p = to_payload(&decode(&hex("d5300102")).unwrap());
        assert_eq!(
            p,
            payload(r#"[48,{"_placeholder":true,"num":0}]"#, &[&[1, 2]])
        );
        // Non-string keys are stringified: notepack gives {"1":"a","true":"b","null":"c"}.
        let v = decode(&hex("8301a161c3a162c0a163")).unwrap();
        assert_eq!(to_json(&v), r#"{"1":"a","true":"b","null":"c"}"#);
        // Repeated keys keep the first position and the last value.
        let v = decode(&hex("83a16101a16202a16103")).unwrap();
        assert_eq!(to_json(&v), r#"{"a":3,"b":2}"#);
        // float32, NaN, big and small floats.
        let v = decode(&hex(
            "94ca3fc00000cb7ff8000000000000cb7e37e43c8800759ccb3e7ad7f29abcaf48",
        ))
        .unwrap();
        assert_eq!(to_json(&v), "[1.5,null,1e+300,1e-7]");
        // Binaries in JSON messages are written as Node writes a Buffer.
        assert_eq!(
            to_json(&Value::Array(vec![Value::Binary(vec![1, 255])])),
            r#"[{"type":"Buffer","data":[1,255]}]"#
        );
        // Placeholders only count when they index an attachment.
        let p = payload(
            r#"[{"_placeholder":true,"num":3},{"_placeholder":"yes","num":0}]"#,
            &[b"x"],
        );
        assert_eq!(to_payload(&from_payload(&p).unwrap()).json, p.json);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "c1",
            "92c0",
            "dd ffffffff",
            "c6ffffffff00",
            "93c0c0c0c0",
            "d9",
        ] {
            let bytes = hex(&bad.replace(' ', ""));
            assert!(decode(&bytes).is_err(), "{bad}");
        }
        let deep = vec![0x91u8; 100_000];
        assert!(decode(&deep).is_err());
        assert!(from_json("[1,").is_err());
        assert!(from_json("[1] x").is_err());
        // Timestamps outside the Date range are null.
        assert_eq!(
            to_json(&decode(&hex("c70cff000000007fffffffffffffff")).unwrap()),
            "null"
        );
    }

    #[test]
    fn iso_dates_match_javascript() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_date(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso_date(951782400000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_date(MAX_DATE_MS), "+275760-09-13T00:00:00.000Z");
        assert_eq!(iso_date(-MAX_DATE_MS), "-271821-04-20T00:00:00.000Z");
    }
}
