//! Connection state recovery, as socket.io 4.6+ does it with its in-memory session-aware
//! adapter: every event that may be missed gets an offset (appended as its last argument) and
//! is kept once, whoever it went to; a socket that drops is saved (id, private id, rooms) for
//! `maxDisconnectionDuration`; a client that comes back with its private id and the offset of
//! the last event it got takes its socket back and gets what it missed, in order.
//!
//! Everything here lives in this process: with several workers, a client recovers on the
//! worker it was on (nginx `ip_hash`, as a weroll cluster routes).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock;
use crate::adapter::BroadcastOptions;
use crate::engine::Frame;

/// Settings (socket.io's `connectionStateRecovery`, plus the bounds of what is kept).
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// How long a dropped socket and the events it may miss are kept (`maxDisconnectionDuration`).
    pub max_disconnection: Duration,
    /// A recovered socket skips the namespace's middlewares.
    pub skip_middlewares: bool,
    /// At most this many events are kept; the oldest go first.
    pub max_packets: usize,
    /// At most this many bytes of kept events; the oldest go first.
    pub max_bytes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection: Duration::from_millis(120_000),
            skip_middlewares: true,
            max_packets: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// A socket saved when its connection dropped.
struct Saved {
    sid: Arc<str>,
    nsp: Arc<str>,
    /// Every room it was in, its own id included.
    rooms: Vec<Arc<str>>,
    dropped_at: u64,
}

/// Whom a kept event was for.
pub(crate) enum Target<'a> {
    /// A broadcast: sockets in any of the rooms (everyone when none), minus those in `except`.
    Rooms(&'a BroadcastOptions),
    /// One socket's own emit.
    Socket(&'a Arc<str>),
}

enum KeptTarget {
    Rooms {
        rooms: Vec<String>,
        except: Vec<String>,
    },
    Socket(Arc<str>),
}

/// One kept event: its frames exactly as they were sent (offset included), and whom it was for.
struct Kept {
    seq: u64,
    at: u64,
    nsp: Arc<str>,
    target: KeptTarget,
    frames: Vec<Frame>,
    bytes: usize,
}

impl Kept {
    /// Whether a socket in `rooms` (its own id among them) was meant to get this event.
    fn for_rooms(&self, rooms: &[Arc<str>]) -> bool {
        let member = |room: &str| rooms.iter().any(|r| **r == *room);
        match &self.target {
            KeptTarget::Socket(sid) => member(sid),
            KeptTarget::Rooms { rooms: to, except } => {
                (to.is_empty() || to.iter().any(|r| member(r))) && !except.iter().any(|r| member(r))
            }
        }
    }
}

/// What a recovered socket takes back.
pub(crate) struct Restored {
    pub sid: Arc<str>,
    /// Rooms to join again (its own id left out).
    pub rooms: Vec<String>,
    /// The events it missed, in order (frames of each).
    pub missed: Vec<Vec<Frame>>,
    /// What JavaScript kept of it, when the cluster kept the session (JSON).
    pub state: Option<String>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Arc<str>, Saved>,
    packets: VecDeque<Kept>,
    bytes: usize,
}

/// The recovery state of one server.
pub(crate) struct Recovery {
    pub(crate) config: RecoveryConfig,
    /// Starts every offset of this process, so an offset from elsewhere never matches.
    tag: String,
    next_seq: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
}

impl Recovery {
    pub(crate) fn new(config: RecoveryConfig) -> Recovery {
        let tag: String = super::socket::random_id().chars().take(6).collect();
        Recovery {
            config,
            tag: format!("{tag}."),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn max_ms(&self) -> u64 {
        u64::try_from(self.config.max_disconnection.as_millis()).unwrap_or(u64::MAX)
    }

    /// The next offset, to be appended to an event's arguments before it is encoded.
    pub(crate) fn next_offset(&self) -> (u64, String) {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (seq, format!("{}{seq:x}", self.tag))
    }

    fn parse_offset(&self, offset: &str) -> Option<u64> {
        u64::from_str_radix(offset.strip_prefix(&self.tag)?, 16).ok()
    }

    /// Keeps the event of offset `seq` (its frames are shared with the recipients), then drops
    /// the oldest beyond the bounds.
    pub(crate) fn keep(&self, seq: u64, nsp: &Arc<str>, target: Target<'_>, frames: &[Frame]) {
        let target = match target {
            Target::Socket(sid) => KeptTarget::Socket(sid.clone()),
            Target::Rooms(opts) => KeptTarget::Rooms {
                rooms: opts.rooms.clone(),
                except: opts.except.clone(),
            },
        };
        let bytes: usize = frames.iter().map(Frame::len).sum::<usize>() + 96;
        let kept = Kept {
            seq,
            at: crate::engine::unix_ms(),
            nsp: nsp.clone(),
            target,
            frames: frames.to_vec(),
            bytes,
        };
        let mut inner = lock(&self.inner);
        // Offsets are taken before events are kept; two emits racing may arrive out of order.
        let at = inner
            .packets
            .iter()
            .rposition(|k| k.seq < seq)
            .map_or(0, |i| i + 1);
        inner.packets.insert(at, kept);
        inner.bytes += bytes;
        while inner.packets.len() > self.config.max_packets || inner.bytes > self.config.max_bytes {
            match inner.packets.pop_front() {
                Some(old) => inner.bytes -= old.bytes,
                None => break,
            }
        }
    }

    /// Saves a dropped socket under its private id.
    pub(crate) fn save(&self, pid: Arc<str>, sid: Arc<str>, nsp: Arc<str>, rooms: Vec<Arc<str>>) {
        let mut all = Vec::with_capacity(rooms.len() + 1);
        all.push(sid.clone());
        all.extend(rooms);
        lock(&self.inner).sessions.insert(
            pid,
            Saved {
                sid,
                nsp,
                rooms: all,
                dropped_at: crate::engine::unix_ms(),
            },
        );
    }

    /// The socket saved under `pid` in `nsp`, with what it missed after `offset`; None (a new
    /// session) when there is no such socket, it expired, or the offset is unknown.
    pub(crate) fn restore(&self, pid: &str, offset: &str, nsp: &str) -> Option<Restored> {
        let seq = self.parse_offset(offset);
        let now = crate::engine::unix_ms();
        let mut inner = lock(&self.inner);
        let saved = inner.sessions.get(pid)?;
        if saved.dropped_at.saturating_add(self.max_ms()) < now {
            inner.sessions.remove(pid);
            return None;
        }
        if &*saved.nsp != nsp {
            return None;
        }
        let seq = seq?;
        let start = inner.packets.iter().position(|k| k.seq == seq)?;
        let saved = inner.sessions.remove(pid)?;
        let missed = inner
            .packets
            .iter()
            .skip(start + 1)
            .filter(|k| *k.nsp == *nsp && k.for_rooms(&saved.rooms))
            .map(|k| k.frames.clone())
            .collect();
        Some(Restored {
            rooms: saved
                .rooms
                .iter()
                .filter(|r| ***r != *saved.sid)
                .map(|r| r.to_string())
                .collect(),
            sid: saved.sid,
            missed,
            state: None,
        })
    }

    /// Drops sessions and events older than `maxDisconnectionDuration`.
    pub(crate) fn sweep(&self) {
        let limit = crate::engine::unix_ms().saturating_sub(self.max_ms());
        let mut inner = lock(&self.inner);
        inner.sessions.retain(|_, s| s.dropped_at >= limit);
        while inner.packets.front().is_some_and(|k| k.at < limit) {
            if let Some(old) = inner.packets.pop_front() {
                inner.bytes -= old.bytes;
            }
        }
    }

    /// Kept events and their bytes, and saved sessions.
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let inner = lock(&self.inner);
        (inner.packets.len(), inner.bytes, inner.sessions.len())
    }
}

/// Appends `offset` as the last element of an event's JSON array (`["ev",…]` → `["ev",…,"o"]`).
/// None if the text is not an array.
pub(crate) fn with_offset(json: &str, offset: &str) -> Option<String> {
    let body = json.trim_end();
    let inner = body.strip_suffix(']')?;
    let mut out = String::with_capacity(body.len() + offset.len() + 3);
    out.push_str(inner);
    if !inner.trim_end().ends_with('[') {
        out.push(',');
    }
    out.push('"');
    out.push_str(offset);
    out.push_str("\"]");
    Some(out)
}

/// Whether a socket dropped for this reason is saved (socket.io's list: not a namespace
/// disconnect by either side, not a parse error).
pub(crate) fn saves(reason: &str) -> bool {
    matches!(
        reason,
        "transport error"
            | "transport close"
            | "forced close"
            | "ping timeout"
            | "server shutting down"
            | "forced server close"
    )
}

/// `{pid, offset}` of a CONNECT payload, when both are strings.
pub(crate) fn recovery_auth(auth: &str) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Auth {
        pid: Option<serde_json::Value>,
        offset: Option<serde_json::Value>,
    }
    let a: Auth = serde_json::from_str(auth).ok()?;
    match (a.pid?, a.offset?) {
        (serde_json::Value::String(p), serde_json::Value::String(o)) => Some((p, o)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: except.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn offsets_append_to_arrays() {
        assert_eq!(
            with_offset(r#"["a",1]"#, "x.1").as_deref(),
            Some(r#"["a",1,"x.1"]"#)
        );
        assert_eq!(with_offset("[ ]", "o").as_deref(), Some(r#"[ "o"]"#));
        assert_eq!(with_offset("{}", "o"), None);
    }

    #[test]
    fn restore_replays_what_the_rooms_would_have_got() {
        let r = Recovery::new(RecoveryConfig::default());
        let nsp: Arc<str> = "/".into();
        let f = |s: &str| vec![Frame::text(s)];
        let (first, first_offset) = r.next_offset();
        r.keep(first, &nsp, Target::Rooms(&opts(&[], &[])), &f("first"));
        r.save("pid".into(), "sid".into(), nsp.clone(), vec!["r".into()]);
        for (text, o) in [
            ("all", opts(&[], &[])),
            ("to r", opts(&["r"], &[])),
            ("to other", opts(&["other"], &[])),
            ("to sid", opts(&["sid"], &[])),
            ("all but r", opts(&[], &["r"])),
        ] {
            let (seq, _) = r.next_offset();
            r.keep(seq, &nsp, Target::Rooms(&o), &f(text));
        }
        let (seq, _) = r.next_offset();
        r.keep(seq, &nsp, Target::Socket(&"sid".into()), &f("emit"));
        let (seq, _) = r.next_offset();
        r.keep(
            seq,
            &nsp,
            Target::Socket(&"other".into()),
            &f("emit to other"),
        );
        let (seq, _) = r.next_offset();
        r.keep(
            seq,
            &"/chat".into(),
            Target::Rooms(&opts(&[], &[])),
            &f("other nsp"),
        );
        assert!(r.restore("pid", "nope", "/").is_none(), "unknown offset");
        assert!(
            r.restore("forged", &first_offset, "/").is_none(),
            "unknown pid"
        );
        let got = r.restore("pid", &first_offset, "/").expect("restored");
        assert_eq!(&*got.sid, "sid");
        assert_eq!(got.rooms, vec!["r".to_string()]);
        let texts: Vec<String> = got
            .missed
            .iter()
            .map(|fr| match &fr[0] {
                Frame::Text(t) => t.to_string(),
                Frame::Binary(_) => String::new(),
            })
            .collect();
        assert_eq!(texts, ["4all", "4to r", "4to sid", "4emit"]);
        assert!(r.restore("pid", &first_offset, "/").is_none(), "taken once");
    }

    #[test]
    fn bounds_and_expiry() {
        let r = Recovery::new(RecoveryConfig {
            max_packets: 3,
            max_disconnection: Duration::from_millis(0),
            ..Default::default()
        });
        let nsp: Arc<str> = "/".into();
        let mut offsets = Vec::new();
        for _ in 0..5 {
            let (seq, o) = r.next_offset();
            r.keep(
                seq,
                &nsp,
                Target::Rooms(&opts(&[], &[])),
                &[Frame::text("x")],
            );
            offsets.push(o);
        }
        assert_eq!(r.stats().0, 3);
        r.save("pid".into(), "sid".into(), nsp, vec![]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.restore("pid", &offsets[4], "/").is_none(), "expired");
        r.sweep();
        assert_eq!(r.stats(), (0, 0, 0));
    }

    #[test]
    fn auth_needs_both_strings() {
        assert_eq!(
            recovery_auth(r#"{"pid":"p","offset":"o","x":1}"#),
            Some(("p".into(), "o".into()))
        );
        assert_eq!(recovery_auth(r#"{"pid":"p"}"#), None);
        assert_eq!(recovery_auth(r#"{"pid":1,"offset":"o"}"#), None);
        assert_eq!(recovery_auth("nonsense"), None);
    }
}
