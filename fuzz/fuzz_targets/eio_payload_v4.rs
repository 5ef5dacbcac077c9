//! Engine.IO v4 polling payloads: `decode_payload_v4` on arbitrary bytes, and for every payload
//! it accepts, encoding the packets again must decode to the same packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weroll_native::engine::packet::{decode_payload_v4, encode_payload_v4, EnginePacket};
use weroll_native::engine::{Frame, Incoming};

fuzz_target!(|input: &[u8]| {
    let Ok(packets) = decode_payload_v4(input) else {
        return;
    };
    assert!(!packets.is_empty(), "an accepted v4 payload has a packet");
    let frames: Vec<Frame> = packets.iter().map(to_frame).collect();
    let encoded = encode_payload_v4(&frames);
    let again = decode_payload_v4(encoded.as_bytes()).expect("re-encoded payload decodes");
    assert_eq!(packets, again);
});

/// The frame the server would send for a decoded packet (open and close lose their data).
fn to_frame(p: &EnginePacket) -> Frame {
    let text = |s: String| Frame::Text(s.into());
    match p {
        EnginePacket::Open => text("0".into()),
        EnginePacket::Close => text("1".into()),
        EnginePacket::Ping(d) => text(format!("2{d}")),
        EnginePacket::Pong(d) => text(format!("3{d}")),
        EnginePacket::Message(Incoming::Text(t)) => Frame::text(t),
        EnginePacket::Message(Incoming::Binary(b)) => Frame::binary(b.clone()),
        EnginePacket::Upgrade => text("5".into()),
        EnginePacket::Noop => text("6".into()),
    }
}
