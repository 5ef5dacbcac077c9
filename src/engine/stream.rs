//! The socket under each websocket, buffered only while there is something to buffer.
//!
//! tungstenite keeps its read buffer (`read_buffer_size`, zero-filled on first use) and its
//! write buffer (grown to the largest frame or burst, never shrunk) for the whole life of a
//! connection. Most connections are idle most of the time, so instead tungstenite gets a tiny
//! read buffer and no data to write, and this wrapper does the buffering: reads take up to
//! [`CHUNK`] bytes per syscall through a stack buffer and keep only the unread rest on the heap;
//! outgoing frames are framed straight into a write buffer that goes out in one syscall per
//! flush and is freed once written.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;

use super::deflate::Inflating;

/// Largest read per syscall.
const CHUNK: usize = 8 * 1024;
/// Gathered output beyond this is written out before more is accepted (backpressure).
pub(crate) const WRITE_LIMIT: usize = 64 * 1024;

/// The connection under a client: plain TCP, or TLS on the engine's own port.
pub(crate) enum NetStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream with read and write buffers that exist only while non-empty.
pub(crate) struct LeanStream {
    io: NetStream,
    /// Read from the socket, not yet taken by the reader.
    rbuf: Option<Box<Buf>>,
    /// Accepted from the writer, not yet written to the socket.
    wbuf: Option<Box<Buf>>,
    /// `permessage-deflate` was agreed: every read goes through this (see `deflate.rs`).
    inflate: Option<Box<Inflating>>,
}

/// Bytes and how far they have been consumed. Boxed in [`LeanStream`] so an idle connection
/// pays one pointer per direction.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    pos: usize,
}

impl Buf {
    fn rest(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }
}

impl LeanStream {
    /// Wraps `io`; `pre` holds bytes already read from it (by the HTTP layer).
    pub(crate) fn new(io: NetStream, pre: Vec<u8>) -> LeanStream {
        LeanStream {
            io,
            rbuf: (!pre.is_empty()).then(|| Box::new(Buf { data: pre, pos: 0 })),
            wbuf: None,
            inflate: None,
        }
    }

    /// Reads `permessage-deflate` frames from here on: compressed messages reach the reader
    /// inflated, and [`LeanStream::deflate_threshold`] tells the writer what to compress.
    /// `max` bounds a message, compressed or inflated.
    pub(crate) fn inflate(&mut self, threshold: usize, max: usize) -> io::Result<()> {
        let pre = self.rbuf.take();
        let pre = pre.as_ref().map_or(&[][..], |b| b.rest());
        self.inflate = Some(Box::new(Inflating::new(threshold, max, pre)?));
        Ok(())
    }

    /// Outgoing messages of at least this many bytes go compressed; `None`: none do.
    pub(crate) fn deflate_threshold(&self) -> Option<usize> {
        self.inflate.as_ref().map(|i| i.threshold)
    }

    /// A read through the inflater: its ready bytes, or else more from the socket.
    fn poll_read_inflated(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let Some(inf) = self.inflate.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let ready = inf.ready();
            if !ready.is_empty() {
                let n = ready.len().min(out.remaining());
                out.put_slice(ready.get(..n).unwrap_or_default());
                inf.consume(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                // End of stream.
                return Poll::Ready(Ok(()));
            }
            inf.feed(buf.filled())?;
        }
    }

    /// Queues bytes (whole frames); they go out with the next flush.
    fn push_raw(&mut self, bytes: &[u8]) {
        self.wbuf
            .get_or_insert_with(Box::default)
            .data
            .extend_from_slice(bytes);
    }

    /// Frames one websocket message into the write buffer (server frames are unmasked).
    pub(crate) fn push_frame(&mut self, frame: WsFrame) {
        let buf = self.wbuf.get_or_insert_with(Box::default);
        buf.data.reserve(frame.len());
        // Formatting into a Vec cannot fail.
        let _ = frame.format(&mut buf.data);
    }

    /// Writes the buffered output to the socket; ready once all of it is written.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(buf) = self.wbuf.as_mut() {
            while !buf.rest().is_empty() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf.rest()))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                buf.pos += n;
            }
        }
        self.wbuf = None;
        Poll::Ready(Ok(()))
    }

    /// Bytes accepted and not yet written to the socket.
    pub(crate) fn buffered_out(&self) -> usize {
        self.wbuf.as_ref().map_or(0, |b| b.rest().len())
    }
}

impl AsyncRead for LeanStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.inflate.is_some() {
            return this.poll_read_inflated(cx, out);
        }
        if let Some(buf) = this.rbuf.as_mut() {
            let rest = buf.rest();
            let n = rest.len().min(out.remaining());
            out.put_slice(rest.get(..n).unwrap_or_default());
            buf.pos += n;
            if buf.rest().is_empty() {
                this.rbuf = None;
            }
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= CHUNK {
            return Pin::new(&mut this.io).poll_read(cx, out);
        }
        let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        let n = filled.len().min(out.remaining());
        let (now, later) = filled.split_at(n);
        out.put_slice(now);
        if !later.is_empty() {
            this.rbuf = Some(Box::new(Buf {
                data: later.to_vec(),
                pos: 0,
            }));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LeanStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buffered_out() >= WRITE_LIMIT {
            ready!(this.poll_write_out(cx))?;
        }
        if this.wbuf.is_none() && buf.len() >= WRITE_LIMIT {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        this.push_raw(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (LeanStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            LeanStream::new(NetStream::Tcp(server), b"pre".to_vec()),
            client,
        )
    }

    #[tokio::test]
    async fn small_reads_keep_the_rest_then_free_it() {
        let (mut lean, mut peer) = pair().await;
        peer.write_all(b"0123456789").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 13 {
            let mut small = [0u8; 4];
            let n = lean.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, b"pre0123456789");
        assert!(lean.rbuf.is_none());
    }

    #[tokio::test]
    async fn writes_gather_until_flush() {
        let (mut lean, mut peer) = pair().await;
        lean.write_all(b"ab").await.unwrap();
        lean.write_all(b"cd").await.unwrap();
        assert_eq!(lean.wbuf.as_ref().map(|b| b.rest()), Some(&b"abcd"[..]));
        lean.flush().await.unwrap();
        assert!(lean.wbuf.is_none());
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcd");
    }
}
