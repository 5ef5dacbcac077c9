//! Reassembly of BINARY_EVENT / BINARY_ACK packets: the text packet announces N attachments and
//! the next N binary Engine.IO messages are its attachments, in order.

use bytes::Bytes;

use super::packet::{DecodeError, Packet, MAX_ATTACHMENTS};

/// Result of feeding a packet or an attachment.
#[derive(Debug)]
pub enum Collected {
    /// The packet is complete: its data JSON (placeholders left in place) and attachments.
    Complete(Packet, Vec<Bytes>),
    /// More attachments are awaited.
    Pending,
}

/// Per-client reassembly state. Bounded: at most [`MAX_ATTACHMENTS`] per packet, one packet at a
/// time. After an error the state is reset (the client is to be closed anyway).
#[derive(Debug, Default)]
pub struct AttachmentCollector {
    /// Boxed: every connection holds a collector, few ever have a packet waiting.
    pending: Option<Box<(Packet, Vec<Bytes>)>>,
}

impl AttachmentCollector {
    /// Feeds a freshly decoded text packet. A packet with no attachments is complete at once.
    /// A text packet arriving while attachments are still awaited is an error.
    pub fn packet(&mut self, packet: Packet) -> Result<Collected, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedAttachment);
        }
        match packet.attachments {
            0 => Ok(Collected::Complete(packet, Vec::new())),
            n if n > MAX_ATTACHMENTS => Err(DecodeError::BadAttachments),
            n => {
                // Reserve little up front: the count is the client's claim, the bytes are not here yet.
                self.pending = Some(Box::new((packet, Vec::with_capacity(n.min(16)))));
                Ok(Collected::Pending)
            }
        }
    }

    /// Feeds one binary message. A binary message when no packet awaits one is an error.
    pub fn attachment(&mut self, data: Bytes) -> Result<Collected, DecodeError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(DecodeError::UnexpectedAttachment);
        };
        pending.1.push(data);
        if pending.1.len() >= pending.0.attachments {
            let (packet, buffers) = *pending;
            Ok(Collected::Complete(packet, buffers))
        } else {
            self.pending = Some(pending);
            Ok(Collected::Pending)
        }
    }

    /// Whether a packet is waiting for attachments.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{PacketType, ProtocolVersion};

    fn decode(text: &str) -> Packet {
        Packet::decode(text, ProtocolVersion::V5).expect("valid packet")
    }

    fn complete(c: Result<Collected, DecodeError>) -> (Packet, Vec<Bytes>) {
        match c {
            Ok(Collected::Complete(p, a)) => (p, a),
            other => panic!("expected a complete packet, got {other:?}"),
        }
    }

    fn pending(c: Result<Collected, DecodeError>) {
        assert!(
            matches!(c, Ok(Collected::Pending)),
            "expected pending, got {c:?}"
        );
    }

    #[test]
    fn text_packets_complete_at_once() {
        let mut c = AttachmentCollector::default();
        let (p, a) = complete(c.packet(decode(r#"2["a"]"#)));
        assert_eq!((p.kind, a.len()), (PacketType::Event, 0));
        // A binary packet that announces no attachment is complete too.
        let (p, a) = complete(c.packet(decode(r#"50-["a"]"#)));
        assert_eq!((p.kind, a.len()), (PacketType::BinaryEvent, 0));
        assert!(!c.is_pending());
    }

    #[test]
    fn collects_attachments_in_order() {
        let mut c = AttachmentCollector::default();
        let text =
            r#"52-/chat,3["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        pending(c.packet(decode(text)));
        assert!(c.is_pending());
        pending(c.attachment(Bytes::from_static(b"first")));
        let (p, a) = complete(c.attachment(Bytes::from_static(b"second")));
        assert_eq!(
            a,
            vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]
        );
        // The data keeps its placeholders; they are substituted on the JavaScript side.
        assert_eq!(p.data.as_deref(), Some(&text[10..]));
        assert_eq!((p.nsp.as_str(), p.id), ("/chat", Some(3)));
        assert!(!c.is_pending());
        // The collector is reusable once a packet is complete.
        pending(c.packet(decode(r#"61-4[{"_placeholder":true,"num":0}]"#)));
        let (p, a) = complete(c.attachment(Bytes::new()));
        assert_eq!((p.kind, a.len()), (PacketType::BinaryAck, 1));
    }

    #[test]
    fn attachment_without_packet_is_refused() {
        let mut c = AttachmentCollector::default();
        assert_eq!(
            c.attachment(Bytes::from_static(b"x")).err(),
            Some(DecodeError::UnexpectedAttachment)
        );
        complete(c.packet(decode(r#"2["a"]"#)));
        assert_eq!(
            c.attachment(Bytes::from_static(b"x")).err(),
            Some(DecodeError::UnexpectedAttachment)
        );
    }

    #[test]
    fn text_while_pending_is_refused_and_resets() {
        let mut c = AttachmentCollector::default();
        pending(c.packet(decode(r#"51-["a",{"_placeholder":true,"num":0}]"#)));
        assert_eq!(
            c.packet(decode(r#"2["b"]"#)).err(),
            Some(DecodeError::UnexpectedAttachment)
        );
        assert!(!c.is_pending());
    }

    #[test]
    fn oversized_counts_are_refused() {
        let mut c = AttachmentCollector::default();
        let mut p = decode(r#"51-["a"]"#);
        p.attachments = MAX_ATTACHMENTS + 1;
        assert_eq!(c.packet(p).err(), Some(DecodeError::BadAttachments));
        assert!(!c.is_pending());
    }

    #[test]
    fn max_attachments_are_collected() {
        let mut c = AttachmentCollector::default();
        pending(c.packet(decode(&format!("5{MAX_ATTACHMENTS}-[\"a\"]"))));
        for _ in 1..MAX_ATTACHMENTS {
            pending(c.attachment(Bytes::from_static(b"x")));
        }
        let (_, a) = complete(c.attachment(Bytes::from_static(b"x")));
        assert_eq!(a.len(), MAX_ATTACHMENTS);
    }
}
