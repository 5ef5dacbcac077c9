//! A port shared with the host's own HTTP server. The host parses each request head; requests
//! under the engine's path come here:
//! - a websocket upgrade brings its TCP connection along ([`Engine::serve_upgrade`]): the
//!   engine answers it and, on 101, runs the websocket on that socket exactly as on its own
//!   port;
//! - any other request (long-polling, CORS preflight) is answered from its head and collected
//!   body ([`Engine::serve_request`]); the host writes the answer back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::Reply;
use super::{Engine, EngineHandler};

/// How long an error answer on an adopted connection may take to write before it is dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A request head as the host parsed it.
pub struct RequestHead {
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Header names and values in arrival order.
    pub headers: Vec<(String, String)>,
}

/// Why a head handed over cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHead(pub &'static str);

impl std::fmt::Display for BadHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl RequestHead {
    fn request<B>(&self, body: B) -> Result<Request<B>, BadHead> {
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|_| BadHead("method"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(self.url.as_str())
            .body(body)
            .map_err(|_| BadHead("url"))?;
        let map = req.headers_mut();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BadHead("header"))?;
            let value = HeaderValue::from_str(value).map_err(|_| BadHead("header value"))?;
            map.append(name, value);
        }
        Ok(req)
    }
}

/// An answer for the host to write: status, headers in order, body.
pub struct HostReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HostReply {
    fn from_reply(res: Reply) -> HostReply {
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = res.into_body();
        HostReply {
            status,
            headers,
            body: full_bytes(body),
        }
    }

    fn bad_request() -> HostReply {
        HostReply {
            status: 400,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(b"Bad Request"),
        }
    }
}

fn full_bytes(body: Full<Bytes>) -> Bytes {
    use hyper::body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match body.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// The socket of an adopted upgrade request, carried in the request's extensions until the
/// websocket takes it (or, if the request is refused, back to [`Engine::serve_upgrade`]).
#[derive(Clone)]
pub(crate) struct Adopted(Arc<Mutex<Option<AdoptedSocket>>>);

/// A socket handed over, and the bytes the host read from it past the request head.
type AdoptedSocket = (TcpStream, Vec<u8>);

impl Adopted {
    pub(crate) fn take(&self) -> Option<AdoptedSocket> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The HTTP/1.1 bytes of `res`: its head, and its body unless `head_only`. Answers that do not
/// switch protocols close the connection.
pub(crate) fn response_bytes(res: &Reply, head_only: bool) -> Vec<u8> {
    let status = res.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in res.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = if head_only {
            Bytes::new()
        } else {
            full_bytes(res.body().clone())
        };
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl<H: EngineHandler> Engine<H> {
    /// Starts the engine's timers for a server that has no listener of its own.
    pub fn start_attached(self: &Arc<Self>) {
        self.start_ticker();
    }

    /// Serves a websocket upgrade request the host parsed, on its TCP connection; `pre` holds
    /// the bytes the host read past the request head. A refused request is answered with its
    /// Engine.IO error and the connection closed.
    pub async fn serve_upgrade(
        self: Arc<Self>,
        stream: TcpStream,
        head: RequestHead,
        pre: Vec<u8>,
        peer: SocketAddr,
    ) {
        let _ = stream.set_nodelay(true);
        let slot = Adopted(Arc::new(Mutex::new(Some((stream, pre)))));
        let res = match head.request(Full::new(Bytes::new())) {
            Ok(mut req) => {
                req.extensions_mut().insert(slot.clone());
                self.handle(req, peer).await
            }
            Err(_) => {
                let mut res = Response::new(Full::new(Bytes::from_static(b"Bad Request")));
                *res.status_mut() = StatusCode::BAD_REQUEST;
                res
            }
        };
        // Not taken by a websocket: answer, then close.
        if let Some((mut stream, _)) = slot.take() {
            let bytes = response_bytes(&res, false);
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
                stream.write_all(&bytes).await?;
                stream.shutdown().await
            })
            .await;
        }
    }

    /// Answers a request the host parsed (with its whole body), as the engine's own port would.
    pub async fn serve_request(
        self: Arc<Self>,
        head: RequestHead,
        body: Bytes,
        peer: SocketAddr,
    ) -> HostReply {
        match head.request(Full::new(body)) {
            Ok(req) => HostReply::from_reply(self.handle(req, peer).await),
            Err(_) => HostReply::bad_request(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_become_requests_or_clear_errors() {
        let head = RequestHead {
            method: "GET".into(),
            url: "/socket.io/?EIO=4&transport=polling".into(),
            headers: vec![("Host".into(), "a".into()), ("X-A".into(), "1".into())],
        };
        let req = head.request(()).expect("valid head");
        assert_eq!(req.uri().query(), Some("EIO=4&transport=polling"));
        assert_eq!(req.headers()["x-a"], "1");
        let bad = RequestHead {
            method: "G ET".into(),
            url: "/".into(),
            headers: vec![],
        };
        assert_eq!(bad.request(()).err(), Some(BadHead("method")));
        let bad = RequestHead {
            method: "GET".into(),
            url: "/".into(),
            headers: vec![("bad name".into(), "x".into())],
        };
        assert_eq!(bad.request(()).err(), Some(BadHead("header")));
    }

    #[test]
    fn answers_serialize_with_length_and_close() {
        let mut res = Response::new(Full::new(Bytes::from_static(b"{\"code\":1}")));
        *res.status_mut() = StatusCode::BAD_REQUEST;
        let text = String::from_utf8(response_bytes(&res, false)).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("content-length: 10\r\nconnection: close\r\n\r\n{\"code\":1}"));
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let text = String::from_utf8(response_bytes(&res, false)).unwrap_or_default();
        assert_eq!(text, "HTTP/1.1 101 Switching Protocols\r\n\r\n");
        let reply = HostReply::from_reply(Response::new(Full::new(Bytes::from_static(b"ok"))));
        assert_eq!((reply.status, &reply.body[..]), (200, &b"ok"[..]));
    }
}
