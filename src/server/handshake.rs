//! socket.io's `handshake` object, as the JSON handed to JavaScript.

use serde_json::{Map, Value};

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

/// `{headers, query, address, time, issued, url, secure, xdomain, auth, eio}`; `query` stays the
/// raw query string (the JS side parses it).
pub(crate) fn to_json(conn: &Connection<ClientState>, auth: Option<&str>) -> String {
    let hs = conn.handshake();
    let mut headers = Map::new();
    for (name, value) in hs.headers() {
        match headers.get_mut(name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            _ => {
                headers.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
    }
    let xdomain = headers.contains_key("origin");
    let auth: Value = auth
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| Value::Object(Map::new()));
    let address = address(hs);
    let value = serde_json::json!({
        "headers": headers,
        "query": hs.query(),
        "address": address,
        "port": hs.address.port(),
        "issued": hs.issued,
        "url": hs.url(),
        "secure": false,
        "xdomain": xdomain,
        "auth": auth,
        "eio": match conn.version() { EioVersion::V3 => 3, EioVersion::V4 => 4 },
    });
    value.to_string()
}
