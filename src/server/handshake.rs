//! socket.io's `handshake` object, as the JSON handed to JavaScript.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use super::ClientState;
use crate::engine::{Connection, EioVersion, Handshake};

/// The peer address as socket.io prints it (`::ffff:` kept for v4-mapped v6 peers).
pub(crate) fn address(hs: &Handshake) -> String {
    match hs.address.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| format!("::ffff:{v4}"))
            .unwrap_or_else(|| v6.to_string()),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `{headers, query, address, port, issued, url, secure, xdomain, auth, eio}`; `query` stays
/// the raw query string (the JS side parses it). Headers keep the order they came in (repeated
/// ones joined with `, `) and `auth` is the client's JSON as sent, so key order is the client's,
/// as in socket.io.
pub(crate) fn to_json(conn: &Connection<ClientState>, auth: Option<&str>) -> String {
    let hs = conn.handshake();
    let mut headers: Vec<(&str, String)> = Vec::new();
    for (name, value) in hs.headers() {
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, prev)) => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            None => headers.push((name, value.to_string())),
        }
    }
    let auth = auth
        .and_then(|a| serde_json::from_str::<&RawValue>(a).ok())
        .filter(|a| a.get() != "null");
    let json = HandshakeJson {
        xdomain: headers.iter().any(|(n, _)| *n == "origin"),
        headers,
        query: hs.query(),
        address: address(hs),
        port: hs.address.port(),
        issued: hs.issued,
        url: hs.url(),
        secure: false,
        auth,
        eio: match conn.version() {
            EioVersion::V3 => 3,
            EioVersion::V4 => 4,
        },
    };
    serde_json::to_string(&json).unwrap_or_else(|_| String::from("{}"))
}

#[derive(Serialize)]
struct HandshakeJson<'a> {
    /// Names and values as a JSON object, in arrival order.
    #[serde(serialize_with = "in_order")]
    headers: Vec<(&'a str, String)>,
    query: &'a str,
    address: String,
    port: u16,
    issued: u64,
    url: &'a str,
    secure: bool,
    xdomain: bool,
    #[serde(serialize_with = "auth_or_empty")]
    auth: Option<&'a RawValue>,
    eio: u8,
}

fn in_order<S: Serializer>(pairs: &[(&str, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(name, value)| (name, value)))
}

/// A missing or unparseable `auth` is `{}`, as socket.io has it.
fn auth_or_empty<S: Serializer>(auth: &Option<&RawValue>, s: S) -> Result<S::Ok, S::Error> {
    match auth {
        Some(raw) => raw.serialize(s),
        None => s.serialize_map(Some(0))?.end(),
    }
}
