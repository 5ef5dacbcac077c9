//! The shared-port commands: the JavaScript facade routes the requests under the engine's path
//! from the app's own `http.Server` here. A websocket upgrade hands over its TCP socket (a
//! duplicate of its descriptor), so its frames never pass through JavaScript; a socket Node
//! must keep (TLS) is bridged over a loopback pair instead. Other requests cross once each way.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::NativeServer;
use crate::engine::RequestHead;
use crate::server::lock;

/// The answer to one request handed over by `httpRequest`.
#[napi(object)]
pub struct NativeHttpReply {
    pub status: u32,
    /// Header names and values, alternating.
    pub headers: Vec<String>,
    pub body: Buffer,
}

/// Requests handed over and still unanswered, by the facade's id, so a client that goes away
/// can cancel its long-poll (which ends the session, as on the native port).
#[derive(Default)]
pub(crate) struct PendingRequests(Mutex<HashMap<u32, tokio::sync::oneshot::Sender<()>>>);

fn head(method: String, url: String, raw_headers: Vec<String>) -> RequestHead {
    let mut headers = Vec::with_capacity(raw_headers.len() / 2);
    let mut it = raw_headers.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        headers.push((name, value));
    }
    RequestHead {
        method,
        url,
        headers,
    }
}

/// The client's address as Node reports it (`::ffff:1.2.3.4` stays as it is, like socket.io).
fn peer(address: &str, port: u32) -> SocketAddr {
    let ip = address
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, u16::try_from(port).unwrap_or(0))
}

/// A connected loopback TCP pair: (the engine's end, the host's end).
fn loopback_pair() -> std::io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let host_end = std::net::TcpStream::connect(listener.local_addr()?)?;
    let expected = host_end.local_addr()?;
    // The connection is complete in the backlog already; anything else that raced in is not ours.
    for _ in 0..16 {
        let (ours, from) = listener.accept()?;
        if from == expected {
            let _ = ours.set_nodelay(true);
            let _ = host_end.set_nodelay(true);
            return Ok((ours, host_end));
        }
    }
    Err(std::io::Error::other("loopback pair: connection not found"))
}

/// A duplicate of the host's TCP socket descriptor, or None if `fd` is not a TCP socket.
#[cfg(unix)]
fn dup_tcp(fd: i32) -> std::io::Result<Option<std::net::TcpStream>> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscalls on a descriptor number; the duplicate is owned from here on.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut addr).cast(), &mut len) != 0 {
            return Ok(None);
        }
        let family = i32::from(addr.ss_family);
        if family != libc::AF_INET && family != libc::AF_INET6 {
            return Ok(None);
        }
        let dup = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some(std::net::TcpStream::from_raw_fd(dup)))
    }
}

#[cfg(not(unix))]
fn dup_tcp(_fd: i32) -> std::io::Result<Option<std::net::TcpStream>> {
    Ok(None)
}

/// A request head as Node parsed it, with the client's address.
#[napi(object)]
pub struct NativeRequest {
    pub method: String,
    pub url: String,
    /// Header names and values, alternating, as Node's `req.rawHeaders`.
    pub raw_headers: Vec<String>,
    pub remote_address: String,
    pub remote_port: u32,
}

impl NativeRequest {
    fn split(self) -> (RequestHead, SocketAddr) {
        let peer = peer(&self.remote_address, self.remote_port);
        (head(self.method, self.url, self.raw_headers), peer)
    }
}

impl NativeServer {
    fn adopt(&self, stream: std::net::TcpStream, req: NativeRequest, pre: &[u8]) -> Result<()> {
        let (head, peer) = req.split();
        self.server()?
            .adopt_upgrade(stream, head, pre.to_vec(), peer)
            .map_err(super::to_napi)
    }
}

#[napi]
impl NativeServer {
    /// Takes over a websocket upgrade request Node parsed: `fd` is its TCP socket (duplicated
    /// here; the caller then destroys its own handle without writing), `head` the bytes read
    /// past the request head. False if `fd` is no TCP socket (use `bridgeUpgrade`).
    #[napi]
    pub fn adopt_upgrade(&self, fd: i32, req: NativeRequest, head_bytes: Buffer) -> Result<bool> {
        self.server()?;
        let Some(stream) = dup_tcp(fd).map_err(super::to_napi)? else {
            return Ok(false);
        };
        self.adopt(stream, req, &head_bytes)?;
        Ok(true)
    }

    /// Takes over a websocket upgrade request whose socket stays in Node (TLS): returns the
    /// descriptor of a loopback TCP connection for the caller to pipe that socket through.
    #[napi]
    pub fn bridge_upgrade(&self, req: NativeRequest, head_bytes: Buffer) -> Result<i64> {
        self.server()?;
        let (ours, host_end) = loopback_pair().map_err(super::to_napi)?;
        self.adopt(ours, req, &head_bytes)?;
        #[cfg(unix)]
        {
            use std::os::fd::IntoRawFd;
            Ok(i64::from(host_end.into_raw_fd()))
        }
        #[cfg(windows)]
        {
            use std::os::windows::io::IntoRawSocket;
            Ok(host_end.into_raw_socket() as i64)
        }
    }

    /// Answers a request under the path that Node parsed, with its whole body. `id` names it
    /// for `abortRequest`.
    #[napi(ts_return_type = "Promise<NativeHttpReply>")]
    pub fn http_request<'env>(
        &self,
        env: &'env Env,
        id: u32,
        req: NativeRequest,
        body: Buffer,
    ) -> Result<PromiseRaw<'env, NativeHttpReply>> {
        let server = self.server()?.clone();
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        lock(&self.pending.0).insert(id, cancel);
        let pending = self.pending.clone();
        let (head, peer) = req.split();
        let body = Bytes::from(body.to_vec());
        env.spawn_future(async move {
            let reply = tokio::select! {
                reply = server.serve_request(head, body, peer) => Some(reply),
                // Dropping the request's future ends it as a vanished client does.
                _ = cancelled => None,
            };
            lock(&pending.0).remove(&id);
            let reply = reply
                .ok_or_else(|| Error::new(Status::Cancelled, "request aborted".to_string()))?;
            let mut headers = Vec::with_capacity(reply.headers.len() * 2);
            for (name, value) in reply.headers {
                headers.push(name);
                headers.push(value);
            }
            Ok(NativeHttpReply {
                status: u32::from(reply.status),
                headers,
                body: Buffer::from(reply.body.to_vec()),
            })
        })
    }

    /// The client of request `id` went away before its answer.
    #[napi]
    pub fn abort_request(&self, id: u32) {
        if let Some(cancel) = lock(&self.pending.0).remove(&id) {
            let _ = cancel.send(());
        }
    }
}
