//! Engine.IO v3 polling payloads: `decode_payload_v3` on arbitrary bytes, both as a text body
//! (`<len>:<packet>`, lengths in UTF-16 units) and as an XHR2 binary body. Every accepted
//! payload, encoded again in both the base64 and the binary-capable forms, must decode to the
//! same packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weroll_native::engine::packet::{decode_payload_v3, encode_payload_v3, EnginePacket};
use weroll_native::engine::{Frame, Incoming};

fuzz_target!(|input: &[u8]| {
    for binary_body in [false, true] {
        let Ok(packets) = decode_payload_v3(input, binary_body) else {
            continue;
        };
        let frames: Vec<Frame> = packets.iter().map(to_frame).collect();
        for base64_only in [true, false] {
            let encoded = encode_payload_v3(&frames, base64_only);
            let again = decode_payload_v3(&encoded.body, encoded.binary)
                .expect("re-encoded payload decodes");
            assert_eq!(packets, again);
        }
    }
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
