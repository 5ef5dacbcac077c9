//! Just enough of Engine.IO v4 / Socket.IO v5 text packets for the benchmark: pings, closes,
//! and events whose payload is `[seq, sent_us, ...]` as the loadgen sends them.

#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Engine.IO ping (`2`): answer with pong (`3`).
    Ping,
    /// Engine.IO close (`1`) or Socket.IO disconnect of the main namespace (`41`).
    Closed,
    /// Socket.IO event on the main namespace: `42["name",[seq,sent_us,...]]`.
    Event { name: &'a str, seq: u64, sent_us: u64 },
    /// Anything else (`40{...}`, `$init` and other events, noop).
    Other,
}

fn number(s: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut v: u64 = 0;
    while let Some(d) = s.get(*at).filter(|c| c.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        *at += 1;
    }
    (*at > start).then_some(v)
}

pub fn parse_event(text: &str) -> Incoming<'_> {
    match text {
        "2" => return Incoming::Ping,
        "1" | "41" => return Incoming::Closed,
        _ => {}
    }
    let Some(rest) = text.strip_prefix("42[\"") else { return Incoming::Other };
    let Some(end) = rest.find('"') else { return Incoming::Other };
    let name = &rest[..end];
    let s = rest.as_bytes();
    let mut at = end + 1;
    if s.get(at..at + 2) != Some(b",[") {
        return Incoming::Other;
    }
    at += 2;
    let Some(seq) = number(s, &mut at) else { return Incoming::Other };
    if s.get(at) != Some(&b',') {
        return Incoming::Other;
    }
    at += 1;
    let Some(sent_us) = number(s, &mut at) else { return Incoming::Other };
    Incoming::Event { name, seq, sent_us }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse_event("2"), Incoming::Ping);
        assert_eq!(parse_event("41"), Incoming::Closed);
        assert_eq!(parse_event("40{\"sid\":\"x\"}"), Incoming::Other);
        assert_eq!(parse_event("42[\"bcast\",[7,123456]]"), Incoming::Event { name: "bcast", seq: 7, sent_us: 123456 });
        assert_eq!(parse_event("42[\"echo\",[1,2,\"xx\"]]"), Incoming::Event { name: "echo", seq: 1, sent_us: 2 });
        assert_eq!(parse_event("42[\"$init\",{\"time\":1}]"), Incoming::Other);
        assert_eq!(parse_event("42[\"bcast\",[7]]"), Incoming::Other);
    }
}
