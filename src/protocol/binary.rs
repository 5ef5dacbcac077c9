//! Reassembly of BINARY_EVENT / BINARY_ACK packets: the text packet announces N attachments and
//! the next N binary Engine.IO messages are its attachments, in order.

use bytes::Bytes;

use super::packet::{DecodeError, Packet};

/// Result of feeding a packet or an attachment.
#[derive(Debug)]
pub enum Collected {
    /// The packet is complete: its data JSON (placeholders left in place) and attachments.
    Complete(Packet, Vec<Bytes>),
    /// More attachments are awaited.
    Pending,
}

/// Per-client reassembly state. Bounded: at most `max_attachments` per packet.
#[derive(Debug, Default)]
pub struct AttachmentCollector {
    pending: Option<(Packet, Vec<Bytes>)>,
}

impl AttachmentCollector {
    /// Feeds a freshly decoded text packet. A packet with no attachments is complete at once.
    /// A text packet arriving while attachments are still awaited is an error.
    pub fn packet(&mut self, packet: Packet) -> Result<Collected, DecodeError> {
        let _ = packet;
        let _ = &self.pending;
        todo!("protocol::AttachmentCollector::packet")
    }

    /// Feeds one binary message. A binary message when no packet awaits one is an error.
    pub fn attachment(&mut self, data: Bytes) -> Result<Collected, DecodeError> {
        let _ = data;
        todo!("protocol::AttachmentCollector::attachment")
    }

    /// Whether a packet is waiting for attachments.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}
