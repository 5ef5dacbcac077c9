//! `permessage-deflate` (RFC 7692) for websockets, as socket.io's `perMessageDeflate` offers it.
//!
//! The server accepts a client's offer with `server_no_context_takeover` and
//! `client_no_context_takeover`: every message is compressed on its own, in both directions.
//! That costs some ratio but keeps no compressor state per connection (a kept zlib context is
//! ~300 KiB a socket), and it makes a compressed broadcast frame the same bytes for every
//! recipient, so it is compressed once per broadcast, not once per socket.
//!
//! tungstenite refuses frames with reserved bits set, so [`Inflating`] sits under it, in the
//! socket's read path: it passes every frame through untouched except compressed messages,
//! which it gathers, inflates and hands on as one plain frame. tungstenite still checks all the
//! rest (UTF-8, control frames, sizes, masking).

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// What a compressed message ends with once flushed, and what the RFC strips from the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The answer to an accepted offer.
pub(crate) const ACCEPTED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
/// Compressed broadcast frames kept per thread, so the recipients of one broadcast share one.
const CACHE: usize = 4;

/// Whether the client's `Sec-WebSocket-Extensions` offers `permessage-deflate` in a form this
/// server can accept: any of the RFC's four parameters, except a `server_max_window_bits`
/// below 15 (the compressor always uses a 32 KiB window). Unknown or repeated parameters make
/// an offer unacceptable, as the RFC says; a later offer may still do.
pub(crate) fn accepts(headers: &HeaderMap) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(acceptable_offer)
}

fn acceptable_offer(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return false;
        }
        let ok = match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
            "client_max_window_bits" => value.is_none_or(|v| window_bits(v).is_some()),
            "server_max_window_bits" => value.and_then(window_bits) == Some(15),
            _ => false,
        };
        if !ok {
            return false;
        }
        seen.push(name);
    }
    true
}

fn window_bits(v: &str) -> Option<u8> {
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    static DEFLATER: RefCell<Deflater> = RefCell::new(Deflater {
        compress: Compress::new(Compression::default(), false),
        recent: Vec::new(),
        next: 0,
    });
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

struct Deflater {
    compress: Compress,
    /// `(source, compressed)`: holding the source keeps its address from being reused, so the
    /// same address and length is the same bytes.
    recent: Vec<(Bytes, Bytes)>,
    next: usize,
}

/// The compressed payload of one message. `source` is usually a broadcast frame shared by
/// many sockets; its compression is kept for the next few calls with the same bytes.
pub(crate) fn compressed(source: &Bytes) -> Bytes {
    DEFLATER.with(|d| {
        let mut d = d.borrow_mut();
        let hit = d
            .recent
            .iter()
            .find(|(s, _)| s.as_ptr() == source.as_ptr() && s.len() == source.len())
            .map(|(_, c)| c.clone());
        if let Some(c) = hit {
            return c;
        }
        let out = Bytes::from(deflate(&mut d.compress, source));
        let entry = (source.clone(), out.clone());
        if d.recent.len() < CACHE {
            d.recent.push(entry);
        } else {
            let i = d.next;
            if let Some(slot) = d.recent.get_mut(i) {
                *slot = entry;
            }
            d.next = (i + 1) % CACHE;
        }
        out
    })
}

/// One message, compressed on its own (a fresh window), without the trailing `00 00 ff ff`.
fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    c.reset();
    let start = c.total_in();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = usize::try_from(c.total_in() - start).unwrap_or(data.len());
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let rest = data.get(consumed..).unwrap_or_default();
        // Compressing into a Vec with room to spare cannot fail.
        if c.compress_vec(rest, &mut out, FlushCompress::Sync).is_err() {
            break;
        }
        let consumed = usize::try_from(c.total_in() - start).unwrap_or(data.len());
        if consumed >= data.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// Inflates one message (its own window), refusing one that grows past `max` bytes.
fn inflate(data: &[u8], max: usize) -> io::Result<Vec<u8>> {
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut out = Vec::with_capacity((data.len() * 3).clamp(256, max.saturating_add(1)));
        for input in [data, &TAIL[..]] {
            let start = d.total_in();
            loop {
                let consumed = usize::try_from(d.total_in() - start).unwrap_or(input.len());
                if out.len() > max {
                    return Err(invalid(
                        "a compressed message inflates past maxHttpBufferSize",
                    ));
                }
                if out.capacity() - out.len() < 256 {
                    out.reserve(out.capacity().clamp(1024, 1 << 20));
                }
                let before_out = out.len();
                let rest = input.get(consumed..).unwrap_or_default();
                let status = d
                    .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                    .map_err(|_| invalid("a compressed message is not valid deflate data"))?;
                let now = usize::try_from(d.total_in() - start).unwrap_or(input.len());
                if status == Status::StreamEnd {
                    return finish(out, max);
                }
                let progressed = now > consumed || out.len() > before_out;
                if now >= input.len() && out.len() < out.capacity() {
                    break;
                }
                if !progressed {
                    return Err(invalid("a compressed message is not valid deflate data"));
                }
            }
        }
        finish(out, max)
    })
}

fn finish(out: Vec<u8>, max: usize) -> io::Result<Vec<u8>> {
    if out.len() > max {
        return Err(invalid(
            "a compressed message inflates past maxHttpBufferSize",
        ));
    }
    Ok(out)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The read side of a `permessage-deflate` websocket: raw client frames in, frames tungstenite
/// can read out (compressed messages inflated, reserved bit cleared).
pub(crate) struct Inflating {
    /// Outgoing messages of at least this many bytes are compressed.
    pub(crate) threshold: usize,
    /// `maxHttpBufferSize`: the largest message, compressed or inflated.
    max: usize,
    /// Read from the socket, not yet a whole frame.
    raw: Vec<u8>,
    /// Ready for tungstenite, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// A compressed message whose continuation frames are still coming: opcode and payload.
    gathering: Option<(u8, Vec<u8>)>,
}

impl Inflating {
    pub(crate) fn new(threshold: usize, max: usize, pre: &[u8]) -> io::Result<Inflating> {
        let mut inf = Inflating {
            threshold,
            max,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            gathering: None,
        };
        inf.feed(pre)?;
        Ok(inf)
    }

    /// Bytes ready for the reader.
    pub(crate) fn ready(&self) -> &[u8] {
        self.out.get(self.out_pos..).unwrap_or_default()
    }

    /// The reader took `n` of the ready bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos >= self.out.len() {
            // Idle connections keep no buffers.
            self.out = Vec::new();
            self.out_pos = 0;
        }
    }

    /// Takes bytes read from the socket; every whole frame among them moves on.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Taken out while its frames are handled, which write to `self.out`.
        let mut raw = std::mem::take(&mut self.raw);
        raw.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some((h, len)) = self.frame_at(raw.get(pos..).unwrap_or_default())? {
            self.frame(raw.get(pos..pos + len).unwrap_or_default(), &h)?;
            pos += len;
        }
        if pos < raw.len() {
            raw.drain(..pos);
            self.raw = raw;
        }
        // Else every byte moved on: idle connections keep no buffer.
        Ok(())
    }

    /// The header and length of the whole frame at the start of `b`, once all of it is here.
    fn frame_at(&self, b: &[u8]) -> io::Result<Option<(Header, usize)>> {
        let Some(header) = header(b) else {
            return Ok(None);
        };
        if header.len > self.max as u64 {
            return Err(invalid(
                "a websocket frame is larger than maxHttpBufferSize",
            ));
        }
        let total = header.head + header.len as usize;
        Ok((b.len() >= total).then_some((header, total)))
    }

    /// One whole frame, `h` its header.
    fn frame(&mut self, frame: &[u8], h: &Header) -> io::Result<()> {
        let first = frame.first().copied().unwrap_or(0);
        let fin = first & 0x80 != 0;
        let rsv1 = first & 0x40 != 0;
        let opcode = first & 0x0f;
        // Inside a compressed message only its continuations and control frames may come.
        if self.gathering.is_some() && (1..8).contains(&opcode) {
            return Err(invalid(
                "a websocket message started inside a compressed one",
            ));
        }
        let compressed_start = rsv1 && (opcode == 1 || opcode == 2);
        let continuation = opcode == 0 && self.gathering.is_some();
        if !compressed_start && !continuation {
            // Plain frames, control frames, and anything tungstenite must refuse.
            self.out.extend_from_slice(frame);
            return Ok(());
        }
        if continuation && rsv1 {
            return Err(invalid("a continuation frame with the compression bit"));
        }
        let Some(mask) = h.mask else {
            return Err(invalid("an unmasked client frame"));
        };
        let mut payload = frame.get(h.head..).unwrap_or_default().to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let (opcode, data) = match self.gathering.take() {
            Some((op, mut data)) => {
                data.extend_from_slice(&payload);
                (op, data)
            }
            None => (opcode, payload),
        };
        if data.len() > self.max {
            return Err(invalid(
                "a compressed message is larger than maxHttpBufferSize",
            ));
        }
        if !fin {
            self.gathering = Some((opcode, data));
            return Ok(());
        }
        let message = inflate(&data, self.max)?;
        self.push_plain(opcode, &message);
        Ok(())
    }

    /// One final frame with `payload`, masked with a zero key (so unchanged), as a client's.
    fn push_plain(&mut self, opcode: u8, payload: &[u8]) {
        let out = &mut self.out;
        out.reserve(payload.len() + 14);
        out.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
    }
}

struct Header {
    /// Bytes before the payload.
    head: usize,
    len: u64,
    mask: Option<[u8; 4]>,
}

/// The header at the start of `b`, once all of it is there.
fn header(b: &[u8]) -> Option<Header> {
    let second = *b.get(1)?;
    let masked = second & 0x80 != 0;
    let (len, mut head) = match second & 0x7f {
        126 => (u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as u64, 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (n as u64, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = b.get(head..head + 4)?.try_into().ok()?;
        head += 4;
        Some(m)
    } else {
        None
    };
    Some(Header { head, len, mask })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn offer(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
        }
        accepts(&h)
    }

    #[test]
    fn offers_as_clients_make_them() {
        // ws (socket.io-client in Node) and Chromium.
        assert!(offer(&["permessage-deflate; client_max_window_bits"]));
        assert!(offer(&["permessage-deflate"]));
        assert!(offer(&[
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover"
        ]));
        assert!(offer(&["x-webkit-deflate-frame", "permessage-deflate"]));
        assert!(offer(&[
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        ]));
        assert!(offer(&[
            "permessage-deflate; server_max_window_bits=\"15\""
        ]));
        assert!(!offer(&[]));
        assert!(!offer(&["permessage-deflate; server_max_window_bits=10"]));
        assert!(!offer(&["permessage-deflate; client_max_window_bits=99"]));
        assert!(!offer(&["permessage-deflate; unknown_param"]));
        assert!(!offer(&[
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
        ]));
        assert!(!offer(&[
            "permessage-deflate; server_no_context_takeover=1"
        ]));
    }

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    fn plain(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut inf = Inflating::new(0, 1 << 20, &[]).unwrap();
        inf.push_plain(opcode, payload);
        inf.ready().to_vec()
    }

    #[test]
    fn messages_round_trip_and_broadcasts_compress_once() {
        let text = Bytes::from("4[\"chat\",\"".to_owned() + &"hello world ".repeat(200) + "\"]");
        let c = compressed(&text);
        assert!(c.len() < text.len() / 5, "{} of {}", c.len(), text.len());
        assert!(!c.ends_with(&TAIL));
        // The same frame again (another recipient) is the same allocation.
        assert_eq!(compressed(&text.clone()).as_ptr(), c.as_ptr());
        assert_eq!(inflate(&c, 1 << 20).unwrap(), text.as_ref());
        // Equal bytes elsewhere are compressed anew, to the same result.
        let copy = Bytes::from(text.to_vec());
        assert_eq!(compressed(&copy), c);
    }

    #[test]
    fn compressed_messages_are_inflated_and_the_rest_passes_through() {
        let message = "4".to_owned() + &"abc".repeat(1000);
        let c = compressed(&Bytes::from(message.clone()));
        let ping = client_frame(0x89, b"hi");
        let small = client_frame(0x81, b"4x");
        // Compressed in two fragments, a ping between them, then a plain message.
        let (a, b) = c.split_at(c.len() / 2);
        let mut wire = client_frame(0x41, a);
        wire.extend(&ping);
        wire.extend(client_frame(0x80, b));
        wire.extend(&small);
        let mut inf = Inflating::new(1024, 1 << 20, &wire[..3]).unwrap();
        assert!(inf.ready().is_empty());
        // Byte by byte, as a slow socket would hand it over.
        for byte in &wire[3..] {
            inf.feed(&[*byte]).unwrap();
        }
        let mut expected = ping.clone();
        expected.extend(plain(0x1, message.as_bytes()));
        expected.extend(&small);
        assert_eq!(inf.ready(), &expected[..]);
        let n = inf.ready().len();
        inf.consume(n);
        assert!(inf.ready().is_empty() && inf.out.capacity() == 0 && inf.raw.capacity() == 0);
    }

    #[test]
    fn bad_compressed_input_is_an_error_not_a_panic() {
        let max = 10_000;
        let feed = |wire: Vec<u8>| Inflating::new(0, max, &wire).err().map(|e| e.to_string());
        // Not deflate data.
        assert!(feed(client_frame(0xc1, &[0xff; 40])).is_some());
        // A bomb: inflates far past the limit.
        let bomb = compressed(&Bytes::from(vec![b'a'; 1 << 20]));
        let e = feed(client_frame(0xc2, &bomb)).unwrap_or_default();
        assert!(e.contains("maxHttpBufferSize"), "{e}");
        // Unmasked, a compressed continuation, a new message inside a compressed one.
        let ok = compressed(&Bytes::from("4hello"));
        let mut unmasked = vec![0xc1, ok.len() as u8];
        unmasked.extend_from_slice(&ok);
        assert!(feed(unmasked).is_some());
        let mut wire = client_frame(0x41, &ok);
        wire.extend(client_frame(0xc0, &ok));
        assert!(feed(wire).is_some());
        let mut wire = client_frame(0x41, &ok);
        wire.extend(client_frame(0x81, b"4x"));
        assert!(feed(wire).is_some());
        // A frame header claiming more than the limit fails at once, not after buffering.
        let mut huge = vec![0x81, 0xff];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        assert!(feed(huge).is_some());
        // Garbage of every length never panics.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0xc5).collect();
            let _ = Inflating::new(0, max, &junk);
        }
    }

    /// A small deterministic generator (xorshift), for the fuzzing below.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_messages() {
        let mut next = rng(7);
        for round in 0..200 {
            let len = 1 + (next() % 5000) as usize;
            let text: String = (0..len)
                .map(|_| char::from(b'a' + (next() % 6) as u8))
                .collect();
            let c = compressed(&Bytes::from(text.clone()));
            // Up to three fragments, a ping between the first two.
            let cut1 = (next() as usize) % (c.len() + 1);
            let cut2 = cut1 + (next() as usize) % (c.len() - cut1 + 1);
            let mut wire = Vec::new();
            let parts = [&c[..cut1], &c[cut1..cut2], &c[cut2..]];
            for (i, part) in parts.iter().enumerate() {
                let first = match i {
                    0 => 0x41,
                    2 => 0x80,
                    _ => 0x00,
                };
                wire.extend(client_frame(first, part));
                if i == 0 {
                    wire.extend(client_frame(0x89, b"p"));
                }
            }
            let mut expected = client_frame(0x89, b"p");
            expected.extend(plain(0x1, text.as_bytes()));
            // Fed in random chunks.
            let mut inf = Inflating::new(0, 1 << 20, &[]).unwrap();
            let mut pos = 0;
            while pos < wire.len() {
                let n = 1 + (next() as usize) % 700;
                let end = (pos + n).min(wire.len());
                inf.feed(&wire[pos..end]).unwrap();
                pos = end;
            }
            assert_eq!(inf.ready(), &expected[..], "round {round}");
        }
    }

    #[test]
    fn random_frames_are_refused_or_passed_never_a_panic() {
        let mut next = rng(11);
        for _ in 0..20_000 {
            let mut inf = match Inflating::new(0, 4096, &[]) {
                Ok(i) => i,
                Err(_) => continue,
            };
            // Headers of every kind (reserved bits, opcodes, lengths, masks) over random bytes.
            let n = (next() % 64) as usize;
            let mut frame = vec![next() as u8, (next() as u8) | 0x80];
            frame.extend((0..n).map(|_| next() as u8));
            let _ = inf.feed(&frame);
            let _ = inf.feed(&frame);
        }
    }
}
