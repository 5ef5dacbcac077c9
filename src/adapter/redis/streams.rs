//! The streams mode: `@socket.io/redis-streams-adapter` 0.3's wire format. This is the one
//! place that knows the stream's entries; the messages themselves are socket.io-adapter's
//! `ClusterAdapter` ones, served by [`super::sharded::Namespace`] in both modes.
//!
//! Broadcasts without ack, joins, leaves and disconnects are appended to one stream
//! (`XADD <streamName> MAXLEN ~ <maxLen> * uid U nsp N type T data D`); every server reads it
//! with `XREAD BLOCK` on a connection of its own, from the last entry it read. Redis keeps the
//! entries, so a server that lost its connection (a Redis restart, a failover, a network cut)
//! reads on from where it was once it is back: an outage delays cross-server broadcasts, it
//! does not lose them (as long as they are still within `maxLen`). What this server appends
//! while Redis is away waits in the publisher's offline queue, in order.
//!
//! Requests and their answers (fetchSockets, serverSideEmit, broadcasts with acks) go over
//! plain pub/sub on `P#N#` and `P#N#UID#`, always as MessagePack; like Node's, they are not
//! kept through an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface, StreamsInterface};
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Expiration, Value as RedisValue};

use super::config::StreamsConfig;
use super::link::{log, Link, Throttle};
use super::namespace::Inbound;
use super::wire;
use super::Hub;
use crate::adapter::msgpack::{self, Value};
use crate::adapter::{RestoredSession, Session};
use crate::protocol::Payload;

/// Message types whose data may hold binary, and so go as base64 MessagePack when they do.
const MAY_HOLD_BINARY: [u8; 5] = [3, 8, 9, 10, 12];
/// Pause after a failed read, doubled up to [`READ_RETRY_MAX`] while reads keep failing.
const READ_RETRY_MIN: Duration = Duration::from_millis(50);
const READ_RETRY_MAX: Duration = Duration::from_secs(1);

/// One entry of the stream, as read.
#[derive(Debug)]
pub struct Entry {
    /// The entry's id (`<ms>-<seq>`): the offset clients are given.
    pub id: String,
    pub uid: String,
    pub nsp: String,
    /// The message type, as the decimal text the entry holds.
    pub kind: String,
    /// `data`: JSON text, or base64 MessagePack.
    pub data: Option<String>,
}

impl Entry {
    /// What it weighs in a namespace's queue.
    pub fn len(&self) -> usize {
        self.id.len()
            + self.uid.len()
            + self.nsp.len()
            + self.kind.len()
            + self.data.as_ref().map_or(0, String::len)
    }

    /// The message it holds: `{type, data, uid, nsp}`, as a pub/sub message reads.
    pub fn message(&self) -> Result<Value, String> {
        let kind: u64 = self
            .kind
            .parse()
            .map_err(|_| format!("entry {}: type {:?} is not a number", self.id, self.kind))?;
        let mut fields = vec![
            ("type", Value::from(kind)),
            ("uid", Value::from(self.uid.as_str())),
            ("nsp", Value::from(self.nsp.as_str())),
        ];
        if let Some(data) = &self.data {
            fields.push((
                "data",
                decode_data(data).map_err(|e| format!("entry {}: {e}", self.id))?,
            ));
        }
        Ok(wire::map(fields))
    }
}

/// `data` as Node's adapter reads it: JSON when it starts with `{`, else base64 MessagePack.
fn decode_data(text: &str) -> Result<Value, String> {
    if text.starts_with('{') {
        return msgpack::from_json(text).map_err(|e| e.to_string());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("data is neither JSON nor base64: {e}"))?;
    msgpack::decode(&bytes).map_err(|e| e.to_string())
}

/// The fields of the entry for message `kind` with `data`, in Node's order: `uid`, `nsp`,
/// `type` (decimal), `data` (JSON, or base64 MessagePack when it holds binary).
pub fn entry_fields(
    uid: &str,
    nsp: &str,
    kind: u8,
    data: Option<&Value>,
) -> Vec<(&'static str, Bytes)> {
    let mut fields = vec![
        ("uid", Bytes::copy_from_slice(uid.as_bytes())),
        ("nsp", Bytes::copy_from_slice(nsp.as_bytes())),
        ("type", Bytes::from(kind.to_string())),
    ];
    if let Some(data) = data {
        let text = if MAY_HOLD_BINARY.contains(&kind) && wire::has_binary(data) {
            base64::engine::general_purpose::STANDARD.encode(msgpack::encode(data))
        } else {
            msgpack::to_json(data)
        };
        fields.push(("data", Bytes::from(text)));
    }
    fields
}

/// A pub/sub message of the streams mode: the envelope, always MessagePack.
pub fn envelope(message: &Value) -> Vec<u8> {
    msgpack::encode(message)
}

/// Saves `session` as Node's adapter does: `SET <prefix><pid> base64(msgpack({sid, pid, rooms,
/// data})) PX <ttl>`, fire and forget. What JavaScript keeps besides `data` (Realtime's clientID,
/// say) rides along under `weroll`, which Node's servers ignore.
pub fn persist_session(link: &Arc<Link>, prefix: &str, session: Session) {
    let mut state = session
        .state_json
        .as_deref()
        .and_then(|j| msgpack::from_json(j).ok())
        .and_then(|v| match v {
            Value::Map(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let data = state
        .iter()
        .position(|(k, _)| k.as_str() == Some("data"))
        .map(|i| state.remove(i).1)
        .unwrap_or(Value::Nil);
    let mut fields = vec![
        ("sid", Value::from(session.sid.as_str())),
        ("pid", Value::from(session.pid.as_str())),
        ("rooms", wire::strings_value(&session.rooms)),
        ("data", data),
    ];
    if !state.is_empty() {
        fields.push(("weroll", Value::Map(state)));
    }
    let blob =
        base64::engine::general_purpose::STANDARD.encode(msgpack::encode(&wire::map(fields)));
    let key = format!("{prefix}{}", session.pid);
    let ttl = i64::try_from(session.ttl.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let client = link.client().clone();
    let options = link.options();
    link.runtime.spawn(async move {
        let result: Result<(), _> = client
            .with_options(&options)
            .set(key.as_str(), blob, Some(Expiration::PX(ttl)), None, false)
            .await;
        if let Err(e) = result {
            log(&format!(
                "saving session {key} failed (the client will not recover): {e}"
            ));
        }
    });
}

/// Deletes a saved session, fire and forget.
pub fn forget_session(link: &Arc<Link>, key: &str) {
    let client = link.client().clone();
    let options = link.options();
    let key = key.to_owned();
    link.runtime.spawn(async move {
        let _: Result<i64, _> = client.with_options(&options).del(key.as_str()).await;
    });
}

/// Entries read per `XRANGE` while gathering what a session missed, and calls at most (Node
/// makes at most 100 calls).
const MISSED_PAGE: u64 = 1000;
const MISSED_CALLS: usize = 100;

/// Taking a session back: `restoreSession(pid, offset)` of Node's adapter.
pub struct Restore {
    pub link: Arc<Link>,
    pub stream: String,
    pub session_key: String,
    pub nsp: String,
    pub offset: String,
}

impl Restore {
    /// The session and what it missed, or `None` (a fresh session): a malformed offset, no
    /// such session (expired, taken, never saved), an offset no longer in the stream, or Redis
    /// away. The session is consumed either way, as Node's is.
    pub async fn run(self) -> Option<RestoredSession> {
        let (ms, seq) = parse_id(&self.offset)?;
        self.link.check().ok()?;
        let client = self.link.client().clone();
        let options = self.link.options();
        let wait = self.link.requests_timeout;
        // GETDEL (Redis 6.2): taken once, whichever server asks first; GET then DEL before.
        let taken = async {
            let c = client.with_options(&options);
            let getdel = CustomCommand::new_static("GETDEL", ClusterHash::FirstKey, false);
            match c
                .custom::<RedisValue, _>(getdel, vec![self.session_key.as_str()])
                .await
            {
                Ok(v) => Ok(v),
                Err(e) if e.details().to_ascii_lowercase().contains("unknown command") => {
                    let v: RedisValue = c.get(self.session_key.as_str()).await?;
                    let _: i64 = c.del(self.session_key.as_str()).await?;
                    Ok(v)
                }
                Err(e) => Err(e),
            }
        };
        let direct = client.with_options(&options);
        let here = direct.xrange::<RedisValue, _, _, _>(
            self.stream.as_str(),
            self.offset.as_str(),
            self.offset.as_str(),
            None,
        );
        let (taken, here) = tokio::join!(tokio::time::timeout(wait, taken), here);
        let blob = taken.ok()?.ok()?.into_string()?;
        if parse_entries(here.ok()?).is_empty() {
            return None;
        }
        let session = decode_session(&blob)?;
        let mut missed = Vec::new();
        let mut from = format!("{ms}-{}", seq.checked_add(1)?);
        for _ in 0..MISSED_CALLS {
            let page: RedisValue = client
                .with_options(&options)
                .xrange(self.stream.as_str(), from.as_str(), "+", Some(MISSED_PAGE))
                .await
                .ok()?;
            let entries = parse_entries(page);
            let Some((last, _)) = entries.last() else {
                break;
            };
            let (ms, seq) = parse_id(last)?;
            from = format!("{ms}-{}", seq.checked_add(1)?);
            for (id, fields) in entries {
                let Some(entry) = entry(id, fields) else {
                    continue;
                };
                if entry.nsp == self.nsp && entry.kind == "3" {
                    missed.extend(session.replay(&entry));
                }
            }
        }
        Some(RestoredSession {
            rooms: session
                .rooms
                .iter()
                .filter(|r| **r != session.sid)
                .cloned()
                .collect(),
            sid: session.sid,
            state_json: session.state_json,
            missed,
        })
    }
}

/// A stream id `<ms>-<seq>`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A saved session as read back.
struct Saved {
    sid: String,
    /// Its own id included.
    rooms: Vec<String>,
    state_json: Option<String>,
}

impl Saved {
    /// The event of broadcast entry `entry`, with its id as the last argument, when the session
    /// was meant to get it (socket.io's `shouldIncludePacket`).
    fn replay(&self, entry: &Entry) -> Option<Payload> {
        let message = entry.message().ok()?;
        let data = wire::field(&message, "data")?;
        let opts = wire::options(wire::field(data, "opts"));
        let member = |room: &String| self.rooms.contains(room);
        let included = opts.rooms.is_empty() || opts.rooms.iter().any(member);
        if !included || opts.except.iter().any(member) {
            return None;
        }
        let mut packet = wire::field(data, "packet")?.clone();
        let Value::Map(fields) = &mut packet else {
            return None;
        };
        let (_, args) = fields
            .iter_mut()
            .rev()
            .find(|(k, _)| k.as_str() == Some("data"))?;
        match args {
            Value::Array(items) => items.push(Value::from(entry.id.as_str())),
            _ => return None,
        }
        wire::parse_packet(&packet).ok().map(|(payload, _)| payload)
    }
}

/// A session blob: base64 MessagePack `{sid, pid, rooms, data}` (plus `weroll` when a native
/// server wrote it). `None` when it cannot be read.
fn decode_session(blob: &str) -> Option<Saved> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob.trim())
        .ok()?;
    let session = msgpack::decode(&bytes).ok()?;
    let sid = wire::text(wire::field(&session, "sid")).filter(|s| !s.is_empty())?;
    let rooms = wire::strings(wire::field(&session, "rooms"));
    let mut state = vec![(
        "data",
        wire::field(&session, "data").cloned().unwrap_or(Value::Nil),
    )];
    let extra = wire::field(&session, "weroll").and_then(Value::as_map);
    let extra: Vec<(String, Value)> = extra
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                .filter(|(k, _)| k != "data")
                .collect()
        })
        .unwrap_or_default();
    state.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
    Some(Saved {
        sid,
        rooms,
        state_json: Some(msgpack::to_json(&wire::map(state))),
    })
}

/// Reads the stream until closed, handing each entry to its namespace's queue.
pub struct Reader {
    client: Client,
    config: StreamsConfig,
    /// `P#`: a namespace N's entries go where its channel `P#N#` is routed.
    prefix: String,
    requests_timeout: Duration,
    closed: AtomicBool,
    errors: Throttle,
}

impl Reader {
    pub fn new(
        client: Client,
        config: StreamsConfig,
        key: &str,
        requests_timeout: Duration,
    ) -> Arc<Reader> {
        Arc::new(Reader {
            client,
            config,
            prefix: format!("{key}#"),
            requests_timeout,
            closed: AtomicBool::new(false),
            errors: Throttle::default(),
        })
    }

    /// Options of a read: a deadline past the block time, never written twice.
    fn options(&self) -> Options {
        Options {
            fail_fast: true,
            timeout: Some(
                self.config.block_time + self.requests_timeout.max(Duration::from_secs(1)),
            ),
            max_attempts: Some(1),
            ..Options::default()
        }
    }

    /// The id of the stream's last entry, or `0-0` when it has none: reading starts after it,
    /// so nothing appended from now on is missed (Node's `$` misses what comes between two reads).
    async fn last_id(&self) -> Result<String, fred::error::Error> {
        let reply: RedisValue = self
            .client
            .with_options(&self.options())
            .xrevrange(self.config.stream_name.as_str(), "+", "-", Some(1))
            .await?;
        Ok(parse_entries(reply)
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .unwrap_or_else(|| "0-0".to_owned()))
    }

    /// The read loop. `last` is kept across errors, so that after an outage the next read
    /// returns everything appended since.
    pub async fn run(self: Arc<Self>, hub: Weak<Hub>) {
        let mut last: Option<String> = None;
        let mut retry = READ_RETRY_MIN;
        while !self.closed.load(Ordering::Acquire) {
            let from = match &last {
                Some(id) => id.clone(),
                None => match self.last_id().await {
                    Ok(id) => {
                        last = Some(id.clone());
                        id
                    }
                    Err(e) => {
                        self.failed(&e, &mut retry).await;
                        continue;
                    }
                },
            };
            let reply: Result<RedisValue, _> = self
                .client
                .with_options(&self.options())
                .xread(
                    Some(self.config.read_count),
                    Some(u64::try_from(self.config.block_time.as_millis()).unwrap_or(u64::MAX)),
                    self.config.stream_name.as_str(),
                    from.as_str(),
                )
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    self.failed(&e, &mut retry).await;
                    continue;
                }
            };
            retry = READ_RETRY_MIN;
            let Some(hub) = hub.upgrade() else { return };
            for (id, fields) in read_reply(reply) {
                last = Some(id.clone());
                if let Some(entry) = entry(id, fields) {
                    let channel = format!("{}{}#", self.prefix, entry.nsp);
                    hub.deliver(&channel, Inbound::Entry(Box::new(entry)));
                }
            }
        }
    }

    async fn failed(&self, e: &fred::error::Error, retry: &mut Duration) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.errors.log(|| {
            format!(
                "reading stream {} failed ({e}); reading on from the last entry read",
                self.config.stream_name
            )
        });
        if *e.kind() == fred::error::ErrorKind::Timeout {
            // A read that outlived its block time: the connection is stuck, start a new one.
            let _ = self.client.force_reconnection().await;
        }
        tokio::time::sleep(*retry).await;
        *retry = (*retry * 2).min(READ_RETRY_MAX);
    }

    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.quit()).await;
    }
}

/// An entry from its id and fields; `None` (skipped, as Node does) without `nsp`.
fn entry(id: String, fields: Vec<(String, String)>) -> Option<Entry> {
    let mut e = Entry {
        id,
        uid: String::new(),
        nsp: String::new(),
        kind: String::new(),
        data: None,
    };
    for (k, v) in fields {
        match k.as_str() {
            "uid" => e.uid = v,
            "nsp" => e.nsp = v,
            "type" => e.kind = v,
            "data" => e.data = Some(v),
            _ => {}
        }
    }
    (!e.nsp.is_empty()).then_some(e)
}

/// `XREAD`'s reply: `[[key, entries]]` (RESP2), or `{key: entries}` (RESP3); nil when the
/// block time passed with nothing new.
fn read_reply(reply: RedisValue) -> Vec<(String, Vec<(String, String)>)> {
    let streams: Vec<RedisValue> = match reply {
        RedisValue::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                RedisValue::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        RedisValue::Map(map) => map.inner().into_values().collect(),
        _ => Vec::new(),
    };
    streams.into_iter().flat_map(parse_entries).collect()
}

/// A list of entries `[[id, [field, value, ...]], ...]`; malformed ones are skipped.
fn parse_entries(list: RedisValue) -> Vec<(String, Vec<(String, String)>)> {
    let RedisValue::Array(items) = list else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let RedisValue::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let values = pair.pop()?;
            let id = pair.pop()?.into_string()?;
            let flat: Vec<String> = match values {
                RedisValue::Array(v) => v.into_iter().filter_map(|x| x.into_string()).collect(),
                RedisValue::Map(m) => m
                    .inner()
                    .into_iter()
                    .flat_map(|(k, v)| [k.into_string(), v.into_string()])
                    .flatten()
                    .collect(),
                _ => return None,
            };
            let fields = flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            Some((id, fields))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &[(&'static str, Bytes)]) -> Vec<(&'static str, String)> {
        fields
            .iter()
            .map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[test]
    fn entries_are_laid_out_as_node_writes_them() {
        let data = msgpack::from_json(
            r#"{"packet":{"type":2,"data":["chat","hi"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}}"#,
        )
        .unwrap();
        let fields = entry_fields("9f86d081884c7d65", "/", 3, Some(&data));
        assert_eq!(
            text(&fields),
            vec![
                ("uid", "9f86d081884c7d65".to_owned()),
                ("nsp", "/".to_owned()),
                ("type", "3".to_owned()),
                (
                    "data",
                    r#"{"packet":{"type":2,"data":["chat","hi"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}}"#
                        .to_owned()
                ),
            ]
        );
        // Binary: base64 MessagePack, which reads back the same.
        let binary = wire::map(vec![("packet", Value::Binary(vec![1, 2, 3]))]);
        let fields = entry_fields("u", "/", 3, Some(&binary));
        let encoded = text(&fields)[3].1.clone();
        assert!(!encoded.starts_with('{'));
        assert_eq!(decode_data(&encoded).unwrap(), binary);
        // Joins never go as MessagePack; no data, no field.
        let join = wire::map(vec![("rooms", Value::Binary(vec![1]))]);
        assert!(text(&entry_fields("u", "/", 4, Some(&join)))[3]
            .1
            .starts_with('{'));
        assert_eq!(entry_fields("u", "/", 6, None).len(), 3);
    }

    #[test]
    fn replies_and_bad_entries() {
        let s = |t: &str| RedisValue::String(t.into());
        let entry_value = |id: &str, fields: &[&str]| {
            RedisValue::Array(vec![
                s(id),
                RedisValue::Array(fields.iter().map(|f| s(f)).collect()),
            ])
        };
        let reply = RedisValue::Array(vec![RedisValue::Array(vec![
            s("socket.io"),
            RedisValue::Array(vec![
                entry_value("1-0", &["uid", "a", "nsp", "/", "type", "3", "data", "{}"]),
                entry_value("1-1", &["uid", "emitter", "type", "3"]),
                RedisValue::Integer(7),
                entry_value("1-2", &["uid", "b", "nsp", "/chat", "type", "6", "odd"]),
            ]),
        ])]);
        let read: Vec<Entry> = read_reply(reply)
            .into_iter()
            .filter_map(|(id, f)| entry(id, f))
            .collect();
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!((read[0].id.as_str(), read[0].nsp.as_str()), ("1-0", "/"));
        assert_eq!(read[1].nsp, "/chat");
        assert!(read[1].data.is_none());
        assert!(read_reply(RedisValue::Null).is_empty());
        // What a peer may write: never a panic, an error for what cannot be read.
        for (kind, data) in [("x", None), ("3", Some("{not json")), ("3", Some("!!!"))] {
            let e = Entry {
                id: "1-0".into(),
                uid: "u".into(),
                nsp: "/".into(),
                kind: kind.into(),
                data: data.map(str::to_owned),
            };
            assert!(e.message().is_err(), "{kind} {data:?}");
        }
    }
}
