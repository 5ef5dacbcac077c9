//! Socket.IO packet decoding: `Packet::decode` under both protocol versions, re-encoding of what
//! it accepts, and `AttachmentCollector` fed an arbitrary interleaving of text packets and
//! binary attachments.
//!
//! Input layout: the whole input, read as (lossy) UTF-8, is one text packet. For the collector
//! the input is also cut at `0xFF` bytes into messages; a message whose first byte is even is a
//! text packet (the rest of it), odd is a binary attachment.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use weroll_native::protocol::{
    encode_ack, encode_connect, encode_connect_error, encode_disconnect, encode_event,
    AttachmentCollector, Collected, Packet, PacketType, ProtocolVersion, MAX_ATTACHMENTS,
};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V4, ProtocolVersion::V5];

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    for version in VERSIONS {
        if let Ok(packet) = Packet::decode(&text, version) {
            check_decoded(&packet, version);
            check_reencoding(&packet, version);
        }
    }
    collect(input);
});

/// What every accepted packet must satisfy.
fn check_decoded(p: &Packet, version: ProtocolVersion) {
    assert!(p.nsp.starts_with('/'), "namespace {:?}", p.nsp);
    assert!(!p.nsp.contains(','), "namespace {:?}", p.nsp);
    assert!(p.attachments <= MAX_ATTACHMENTS);
    assert!(p.kind.is_binary() || p.attachments == 0);
    if p.query.is_some() {
        assert_eq!(
            (p.kind, version),
            (PacketType::Connect, ProtocolVersion::V4)
        );
    }
    if let Some(data) = &p.data {
        assert!(
            serde_json::from_str::<IgnoredAny>(data).is_ok(),
            "data {data:?}"
        );
        let first = data
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first();
        match p.kind {
            PacketType::Event
            | PacketType::BinaryEvent
            | PacketType::Ack
            | PacketType::BinaryAck => {
                assert_eq!(first, Some(&b'['))
            }
            PacketType::Connect => assert_eq!(first, Some(&b'{')),
            PacketType::Disconnect => panic!("DISCONNECT with data {data:?}"),
            PacketType::ConnectError => {}
        }
    }
    match p.kind {
        PacketType::Event | PacketType::BinaryEvent => assert!(p.data.is_some()),
        PacketType::Ack | PacketType::BinaryAck => assert!(p.data.is_some() && p.id.is_some()),
        _ => {}
    }
}

/// Encoding what was decoded must decode to the same packet.
fn check_reencoding(p: &Packet, version: ProtocolVersion) {
    let data = p.data.as_deref();
    let (encoded, kind, id, data) = match p.kind {
        PacketType::Event | PacketType::BinaryEvent => {
            let data = data.unwrap_or_default();
            let kind = if p.attachments > 0 {
                PacketType::BinaryEvent
            } else {
                PacketType::Event
            };
            (
                encode_event(&p.nsp, p.id, data, p.attachments),
                kind,
                p.id,
                Some(data),
            )
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let (data, id) = (data.unwrap_or_default(), p.id.unwrap_or_default());
            let kind = if p.attachments > 0 {
                PacketType::BinaryAck
            } else {
                PacketType::Ack
            };
            (
                encode_ack(&p.nsp, id, data, p.attachments),
                kind,
                Some(id),
                Some(data),
            )
        }
        PacketType::Disconnect => (encode_disconnect(&p.nsp), p.kind, None, None),
        PacketType::Connect => {
            let encoded = encode_connect(&p.nsp, "s\"id", version);
            let data = match version {
                ProtocolVersion::V4 => None,
                ProtocolVersion::V5 => Some(r#"{"sid":"s\"id"}"#),
            };
            (encoded, p.kind, None, data)
        }
        PacketType::ConnectError => {
            let encoded = encode_connect_error(&p.nsp, "m\u{1}\"", data, version);
            let again = Packet::decode(&encoded, version).expect("encoded CONNECT_ERROR");
            assert_eq!((again.kind, again.nsp.as_str()), (p.kind, p.nsp.as_str()));
            if let (ProtocolVersion::V4, Some(_)) = (version, data) {
                assert_eq!(again.data.as_deref(), data);
            }
            return;
        }
    };
    let again = match Packet::decode(&encoded, version) {
        Ok(again) => again,
        Err(e) => panic!("{encoded:?}, encoded from {p:?}, refused: {e}"),
    };
    assert_eq!(
        (
            again.kind,
            again.nsp.as_str(),
            again.id,
            again.data.as_deref()
        ),
        (kind, p.nsp.as_str(), id, data),
        "{encoded:?}"
    );
    assert_eq!(again.attachments, p.attachments);
}

/// Feeds the `0xFF`-separated messages to one collector and checks its bookkeeping.
fn collect(input: &[u8]) {
    let mut collector = AttachmentCollector::default();
    let mut awaited = 0usize;
    for (n, message) in input.split(|&b| b == 0xFF).enumerate() {
        let Some((&head, body)) = message.split_first() else {
            continue;
        };
        let result = if head % 2 == 0 {
            let version = VERSIONS[n % 2];
            let Ok(packet) = Packet::decode(&String::from_utf8_lossy(body), version) else {
                continue;
            };
            let was_pending = collector.is_pending();
            let announced = packet.attachments;
            let result = collector.packet(packet);
            if was_pending {
                assert!(
                    result.is_err(),
                    "text packet accepted while attachments were awaited"
                );
            } else if result.is_ok() {
                awaited = announced;
            }
            result
        } else {
            let was_pending = collector.is_pending();
            let result = collector.attachment(Bytes::copy_from_slice(body));
            assert_eq!(
                result.is_ok(),
                was_pending,
                "attachment accepted with nothing awaited"
            );
            result
        };
        match result {
            Ok(Collected::Complete(packet, attachments)) => {
                assert_eq!(attachments.len(), packet.attachments);
                assert_eq!(attachments.len(), awaited);
                assert!(!collector.is_pending());
            }
            Ok(Collected::Pending) => assert!(collector.is_pending()),
            Err(_) => assert!(!collector.is_pending()),
        }
    }
}
