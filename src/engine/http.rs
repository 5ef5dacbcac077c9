//! HTTP side of the engine: request routing and validation, Engine.IO error answers, CORS,
//! the polling handshake, long-polling GETs and POSTs, and the websocket upgrade request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::stream::NetStream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::attach::{response_bytes, Adopted};
use super::connection::{control, Connection, Sid};
use super::packet::{self, EnginePacket};
use super::websocket::{WsIo, WsTarget};
use super::{CloseReason, CorsOrigin, EioVersion, Engine, EngineHandler, Frame, Handshake};

/// The zlib level of `httpCompression` (measured with `bench/polling.js --size 4000 --gzip 1`:
/// level 1 of zlib-rs leaves 48 % of a chat-like answer, level 3 28 %, for about the same CPU).
const HTTP_LEVEL: u32 = 3;
/// A client that sends no complete request head within this time is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Engine.IO HTTP error codes (`{"code":N,"message":"…"}` with status 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EioError {
    /// 0: `transport` missing, unknown, or disabled.
    UnknownTransport,
    /// 1: `sid` names no open session.
    UnknownSid,
    /// 2: a handshake that is not a GET.
    BadHandshakeMethod,
    /// 3: anything else the protocol forbids (overlapping polls, requests after an upgrade…).
    BadRequest,
    /// 4: refused by policy.
    Forbidden,
    /// 5: `EIO` missing, unknown, or disabled.
    UnsupportedProtocolVersion,
}

impl EioError {
    fn body(self) -> &'static str {
        match self {
            EioError::UnknownTransport => r#"{"code":0,"message":"Transport unknown"}"#,
            EioError::UnknownSid => r#"{"code":1,"message":"Session ID unknown"}"#,
            EioError::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            EioError::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            EioError::Forbidden => r#"{"code":4,"message":"Forbidden"}"#,
            EioError::UnsupportedProtocolVersion => {
                r#"{"code":5,"message":"Unsupported protocol version"}"#
            }
        }
    }
}

/// The query parameters Engine.IO looks at, borrowed from the request URI.
#[derive(Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
    /// v3 `b64=1`: the client cannot take binary polling responses.
    b64: bool,
    /// v3 `j=N`: JSONP polling, which is not served.
    jsonp: bool,
}

impl<'a> Query<'a> {
    fn parse(raw: &'a str) -> Query<'a> {
        let mut q = Query::default();
        for pair in raw.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                "b64" => q.b64 = !value.is_empty(),
                "j" => q.jsonp = true,
                _ => {}
            }
        }
        q
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    Websocket,
}

/// What the CORS answer needs from the request, taken before the body is consumed.
struct CorsRequest {
    origin: Option<HeaderValue>,
    request_headers: Option<HeaderValue>,
}

pub(crate) type Reply = Response<Full<Bytes>>;

/// A request body the engine can read: hyper's own, or one the host collected (shared port).
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static
{
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// What `httpCompression` encodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Gzip,
    Deflate,
}

/// The encoding to answer with, as engine.io picks it (`accepts(req).encodings(["gzip",
/// "deflate"])`): gzip when accepted, else deflate, else none; `q=0` refuses one.
fn accepted_encoding(headers: &HeaderMap) -> Option<Encoding> {
    let mut gzip = false;
    let mut deflate = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match name.as_str() {
                "gzip" | "x-gzip" => gzip |= !refused,
                "deflate" => deflate |= !refused,
                "*" => {
                    gzip |= !refused;
                }
                _ => {}
            }
        }
    }
    if gzip {
        Some(Encoding::Gzip)
    } else if deflate {
        Some(Encoding::Deflate)
    } else {
        None
    }
}

/// `res` with its body encoded when it has at least `threshold` bytes (as engine.io does, whether
/// or not that makes it smaller).
fn compressed(res: Reply, threshold: usize, encoding: Encoding) -> Reply {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use futures_util::FutureExt as _;
    use std::io::Write as _;
    let (mut parts, body) = res.into_parts();
    // A `Full` body is one chunk, ready now.
    let bytes = match body.collect().now_or_never() {
        Some(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    if bytes.len() < threshold {
        return Response::from_parts(parts, Full::new(bytes));
    }
    let encoded = match encoding {
        Encoding::Gzip => {
            let mut e = GzEncoder::new(
                Vec::with_capacity(bytes.len() / 2),
                Compression::new(HTTP_LEVEL),
            );
            e.write_all(&bytes).and_then(|_| e.finish())
        }
        Encoding::Deflate => {
            let mut e = ZlibEncoder::new(
                Vec::with_capacity(bytes.len() / 2),
                Compression::new(HTTP_LEVEL),
            );
            e.write_all(&bytes).and_then(|_| e.finish())
        }
    };
    match encoded {
        Ok(body) => {
            let name = match encoding {
                Encoding::Gzip => "gzip",
                Encoding::Deflate => "deflate",
            };
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
            parts
                .headers
                .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            Response::from_parts(parts, Full::new(Bytes::from(body)))
        }
        _ => Response::from_parts(parts, Full::new(bytes)),
    }
}

fn error(e: EioError) -> Reply {
    reply(StatusCode::BAD_REQUEST, "application/json", e.body())
}

fn not_found() -> Reply {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn build_handshake<B>(req: &Request<B>, peer: SocketAddr) -> Handshake {
    Handshake::new(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.headers()
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes()))),
        peer,
        super::unix_ms(),
    )
}

/// What one polling GET takes from the queue: everything, except that the close packet ends
/// the session in a response of its own (it stays queued for the next GET). Clients handle
/// the close packet at once but the messages before it a tick later, so in one payload the
/// close would overtake them (a Socket.IO DISCONNECT would be reported as "transport close").
fn take_for_poll(queue: &mut VecDeque<Frame>) -> Vec<Frame> {
    let ends_with_close = queue.len() > 1 && queue.back().is_some_and(is_close);
    let close = if ends_with_close {
        queue.pop_back()
    } else {
        None
    };
    let frames = std::mem::take(queue).into();
    queue.extend(close);
    frames
}

/// The Engine.IO close packet (a message frame always starts with `4`).
fn is_close(frame: &Frame) -> bool {
    matches!(frame, Frame::Text(t) if t.as_str() == "1")
}

/// Clears a polling request's in-flight flag however the request ends. A request that ends
/// unanswered (the client closed the connection while a GET waited or a POST uploaded) ends
/// the session, as engine.io does ("poll connection closed prematurely").
struct InFlight<'a, D> {
    conn: &'a Connection<D>,
    get: bool,
    answered: bool,
}

impl<D> InFlight<'_, D> {
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl<D> Drop for InFlight<'_, D> {
    fn drop(&mut self) {
        let mut st = self.conn.lock();
        if self.get {
            st.get_busy = false;
        } else {
            st.post_busy = false;
        }
        drop(st);
        if !self.answered {
            self.conn.close(CloseReason::TransportError);
        }
    }
}

impl<H: EngineHandler> Engine<H> {
    /// Serves one TCP connection: HTTP/1.1 requests until the client closes it or a request
    /// upgrades it to a websocket (which then lives on in its own task).
    pub(crate) async fn serve_http(self: Arc<Self>, stream: NetStream, peer: SocketAddr) {
        let engine = self;
        let service = hyper::service::service_fn(move |req| {
            let engine = engine.clone();
            async move { Ok::<_, Infallible>(engine.handle(req, peer).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    }

    pub(crate) async fn handle<B: RequestBody>(
        self: Arc<Self>,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Reply {
        // `/socket.io/` and `/socket.io` name the same endpoint, however the path was configured.
        if req.uri().path().trim_end_matches('/') != self.config.path.trim_end_matches('/') {
            return not_found();
        }
        let cors = CorsRequest {
            origin: req.headers().get(header::ORIGIN).cloned(),
            request_headers: req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned(),
        };
        if req.method() == Method::OPTIONS {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::NO_CONTENT;
            self.add_cors(&mut res, &cors, true);
            return res;
        }
        let compress = self
            .config
            .http_compression
            .filter(|_| req.method() == Method::GET && !is_websocket_upgrade(req.headers()));
        let accepted = compress.and_then(|_| accepted_encoding(req.headers()));
        let mut res = self.route(req, peer).await;
        if let (Some(threshold), Some(encoding)) = (compress, accepted) {
            if res.status() == StatusCode::OK {
                res = compressed(res, threshold, encoding);
            }
        }
        if matches!(
            res.status(),
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN
        ) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.add_cors(&mut res, &cors, false);
        }
        res
    }

    async fn route<B: RequestBody>(self: &Arc<Self>, req: Request<B>, peer: SocketAddr) -> Reply {
        let query = Query::parse(req.uri().query().unwrap_or_default());
        let version = match query.eio {
            Some("4") => EioVersion::V4,
            Some("3") if self.config.allow_eio3 => EioVersion::V3,
            _ => return error(EioError::UnsupportedProtocolVersion),
        };
        let transport = match query.transport {
            Some("polling") if self.config.allow_polling => Transport::Polling,
            Some("websocket") if self.config.allow_websocket => Transport::Websocket,
            _ => return error(EioError::UnknownTransport),
        };
        let sid = match query.sid {
            None => None,
            Some(s) => match Sid::parse(s) {
                Some(sid) => Some(sid),
                None => return error(EioError::UnknownSid),
            },
        };
        let upgrade = is_websocket_upgrade(req.headers());
        if sid.is_none() && req.method() != Method::GET {
            return error(EioError::BadHandshakeMethod);
        }
        if (transport == Transport::Websocket) != upgrade {
            return error(EioError::BadRequest);
        }
        if transport == Transport::Websocket {
            return self.websocket_request(req, sid, version, peer);
        }
        // JSONP (`j`) would mean script-tag polling with its own framing; no client we serve
        // needs it.
        if query.jsonp {
            return error(EioError::BadRequest);
        }
        let b64 = query.b64;
        let Some(sid) = sid else {
            return self.polling_handshake(&req, version, peer, b64);
        };
        let Some(conn) = self.sessions.get(&sid) else {
            return error(EioError::UnknownSid);
        };
        self.expire_if_late(&conn);
        if req.method() == Method::GET {
            self.poll(&conn, b64).await
        } else if req.method() == Method::POST {
            self.post(&conn, req).await
        } else {
            error(EioError::BadRequest)
        }
    }

    fn add_cors(&self, res: &mut Reply, req: &CorsRequest, preflight: bool) {
        let Some(cors) = &self.config.cors else {
            return;
        };
        let headers = res.headers_mut();
        let allow_origin = match &cors.origin {
            CorsOrigin::Any => Some(HeaderValue::from_static("*")),
            CorsOrigin::Reflect => req.origin.clone(),
            CorsOrigin::List(list) => req
                .origin
                .as_ref()
                .filter(|o| {
                    list.iter()
                        .any(|allowed| allowed.as_bytes() == o.as_bytes())
                })
                .cloned(),
        };
        if cors.origin != CorsOrigin::Any {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = allow_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        if cors.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !preflight {
            return;
        }
        let methods = if cors.methods.is_empty() {
            Some(HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"))
        } else {
            HeaderValue::from_str(&cors.methods.join(",")).ok()
        };
        if let Some(m) = methods {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        // Like the `cors` package: an empty list reflects what the browser asks for.
        let allowed = if cors.allowed_headers.is_empty() {
            req.request_headers.clone()
        } else {
            HeaderValue::from_str(&cors.allowed_headers.join(",")).ok()
        };
        if let Some(h) = allowed {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h);
            headers.append(
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            );
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }

    /// After [`Engine::close_all`] began, new sessions are refused like engine.io's
    /// `allowRequest` refusals.
    fn refuse_new_sessions(&self) -> Option<Reply> {
        self.shutting_down
            .load(Ordering::SeqCst)
            .then(|| error(EioError::Forbidden))
    }

    /// A polling GET without sid: open a session and answer with the open packet plus
    /// anything `on_open` queued.
    fn polling_handshake<B>(
        &self,
        req: &Request<B>,
        version: EioVersion,
        peer: SocketAddr,
        b64: bool,
    ) -> Reply {
        if let Some(res) = self.refuse_new_sessions() {
            return res;
        }
        let conn = self.create_session(version, build_handshake(req, peer), false);
        conn.lock().base64_only = b64;
        conn.push_control(self.open_frame(&conn, false));
        self.handler.on_open(&conn);
        self.end_dispatch(&conn);
        let frames: Vec<Frame> = std::mem::take(&mut conn.lock().queue).into();
        self.polling_payload(version, &frames, b64)
    }

    fn polling_payload(&self, version: EioVersion, frames: &[Frame], b64: bool) -> Reply {
        match version {
            EioVersion::V4 => reply(
                StatusCode::OK,
                "text/plain; charset=UTF-8",
                packet::encode_payload_v4(frames),
            ),
            EioVersion::V3 => {
                let payload = packet::encode_payload_v3(frames, b64);
                let content_type = if payload.binary {
                    "application/octet-stream"
                } else {
                    "text/plain; charset=UTF-8"
                };
                reply(StatusCode::OK, content_type, payload.body)
            }
        }
    }

    /// A long-polling GET: answers at once if something is queued, else waits for the next
    /// frame, an upgrade (`6`), or the end of the session (`1`).
    async fn poll(&self, conn: &Arc<Connection<H::Data>>, mut b64: bool) -> Reply {
        if conn.lock().upgrading {
            // A websocket is probing: let it act on what it has received first (yielding
            // lets the runtime poll the sockets), so a GET sent after the client's `5`
            // finds the session upgraded, as it would on a single-threaded server.
            tokio::task::yield_now().await;
        }
        {
            let mut st = conn.lock();
            if st.websocket {
                return error(EioError::BadRequest);
            }
            if !st.reachable() {
                return error(EioError::UnknownSid);
            }
            b64 |= st.base64_only;
            if st.get_busy {
                drop(st);
                conn.close(CloseReason::TransportError);
                return error(EioError::BadRequest);
            }
            st.get_busy = true;
        }
        let mut in_flight = InFlight {
            conn: &**conn,
            get: true,
            answered: false,
        };
        let frames: Vec<Frame> = poll_fn(|cx| {
            let mut st = conn.lock();
            if !st.queue.is_empty() {
                return Poll::Ready(take_for_poll(&mut st.queue));
            }
            if st.websocket || st.noop_pending {
                st.noop_pending = false;
                return Poll::Ready(vec![control::NOOP]);
            }
            if st.closing.is_some() {
                return Poll::Ready(vec![control::CLOSE]);
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        in_flight.answered();
        self.polling_payload(conn.version(), &frames, b64)
    }

    /// A POST: decodes the payload and delivers its packets in order.
    async fn post<B: RequestBody>(
        &self,
        conn: &Arc<Connection<H::Data>>,
        req: Request<B>,
    ) -> Reply {
        {
            let mut st = conn.lock();
            if st.websocket {
                return error(EioError::BadRequest);
            }
            if st.closing.is_some() {
                return error(EioError::UnknownSid);
            }
            if st.post_busy {
                drop(st);
                conn.close(CloseReason::TransportError);
                return error(EioError::BadRequest);
            }
            st.post_busy = true;
        }
        let mut in_flight = InFlight {
            conn: &**conn,
            get: false,
            answered: false,
        };
        let max = self.config.max_payload;
        let binary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.get(..24)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/octet-stream"))
            });
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            in_flight.answered();
            return self.payload_too_large(conn);
        }
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                in_flight.answered();
                return self.payload_too_large(conn);
            }
            // The client went away mid-body: `in_flight` closes the session.
            Err(_) => return error(EioError::BadRequest),
        };
        in_flight.answered();
        let decoded = match conn.version() {
            // v4 clients always send text payloads; engine.io refuses binary bodies.
            EioVersion::V4 if binary => Err(packet::PacketError::BinaryType),
            EioVersion::V4 => packet::decode_payload_v4(&body),
            EioVersion::V3 => packet::decode_payload_v3(&body, binary),
        };
        let Ok(packets) = decoded else {
            conn.close(CloseReason::ParseError);
            return error(EioError::BadRequest);
        };
        self.dispatch(conn, packets);
        reply(StatusCode::OK, "text/html", "ok")
    }

    fn payload_too_large(&self, conn: &Arc<Connection<H::Data>>) -> Reply {
        conn.close(CloseReason::TransportError);
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        res
    }

    fn dispatch(&self, conn: &Arc<Connection<H::Data>>, packets: Vec<EnginePacket>) {
        {
            let mut st = conn.lock();
            if st.closing.is_some() {
                return;
            }
            st.dispatching = true;
        }
        for p in packets {
            if !self.handle_packet(conn, p) {
                break;
            }
        }
        self.end_dispatch(conn);
    }

    /// A websocket request: a new session (no sid) or an upgrade probe for a polling one.
    /// Answers 101 and hands the connection to a websocket task.
    fn websocket_request<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
        sid: Option<Sid>,
        version: EioVersion,
        peer: SocketAddr,
    ) -> Reply {
        let headers = req.headers();
        let version_ok = headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        let Some(key) = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|_| version_ok)
        else {
            return error(EioError::BadRequest);
        };
        let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
            return error(EioError::BadRequest);
        };
        let target = match sid {
            None => {
                if let Some(res) = self.refuse_new_sessions() {
                    return res;
                }
                WsTarget::New(build_handshake(&req, peer))
            }
            Some(sid) => {
                let Some(conn) = self.sessions.get(&sid) else {
                    return error(EioError::UnknownSid);
                };
                let mut st = conn.lock();
                if st.closing.is_some() {
                    return error(EioError::BadRequest);
                }
                if st.websocket || st.upgrading {
                    // engine.io completes the handshake, then closes the extra websocket.
                    WsTarget::Reject
                } else {
                    st.upgrading = true;
                    drop(st);
                    WsTarget::Upgrade(conn)
                }
            }
        };
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        let deflate = self
            .config
            .per_message_deflate
            .filter(|_| super::deflate::accepts(req.headers()));
        if deflate.is_some() {
            h.insert(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(super::deflate::ACCEPTED),
            );
        }
        let io = match req.extensions().get::<Adopted>().and_then(Adopted::take) {
            Some((stream, pre)) => WsIo::Adopted {
                stream,
                pre,
                response: response_bytes(&res, false),
            },
            None => WsIo::Hyper(hyper::upgrade::on(&mut req)),
        };
        tokio::spawn(self.clone().run_websocket(io, target, version, deflate));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn encodings_as_engine_io_picks_them() {
        let pick = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepted_encoding(&h)
        };
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Gzip));
        assert_eq!(pick("deflate;q=0.5, gzip;q=0"), Some(Encoding::Deflate));
        assert_eq!(pick("br"), None);
        assert_eq!(pick("identity, *;q=0"), None);
        assert_eq!(pick("*"), Some(Encoding::Gzip));
        assert_eq!(pick("GZIP"), Some(Encoding::Gzip));
        assert_eq!(accepted_encoding(&HeaderMap::new()), None);
    }

    #[test]
    fn compressed_bodies_read_back() {
        use std::io::Read as _;
        let big = "4".to_owned() + &"hello ".repeat(500);
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let res = compressed(
                reply(StatusCode::OK, "text/plain", big.clone()),
                1024,
                encoding,
            );
            let name = res.headers()[header::CONTENT_ENCODING].clone();
            let body = res.into_body().collect().now_or_never();
            let body = body.unwrap().unwrap().to_bytes();
            let mut out = String::new();
            let read = match encoding {
                Encoding::Gzip => flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out),
                Encoding::Deflate => {
                    flate2::read::ZlibDecoder::new(&body[..]).read_to_string(&mut out)
                }
            };
            read.unwrap();
            assert_eq!(out, big, "{name:?}");
        }
        // Below the threshold: as it was.
        let res = compressed(
            reply(StatusCode::OK, "text/plain", "4hi"),
            1024,
            Encoding::Gzip,
        );
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=xyz&b64=1&j=0");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("xyz"));
        assert!(q.b64);
        assert!(q.jsonp);
        let q = Query::parse("");
        assert!(q.eio.is_none() && !q.b64 && !q.jsonp);
        let q = Query::parse("EIO&b64=");
        assert_eq!(q.eio, Some(""));
        assert!(!q.b64);
    }

    #[test]
    fn error_bodies_are_json() {
        for e in [
            EioError::UnknownTransport,
            EioError::UnknownSid,
            EioError::BadHandshakeMethod,
            EioError::BadRequest,
            EioError::Forbidden,
            EioError::UnsupportedProtocolVersion,
        ] {
            let v: serde_json::Value = serde_json::from_str(e.body()).unwrap_or_default();
            assert!(v["code"].is_u64() && v["message"].is_string(), "{e:?}");
        }
    }
}
