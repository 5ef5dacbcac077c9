//! End-to-end checks of the Engine.IO server over loopback: a raw HTTP/1.1 client for polling
//! and a tungstenite client for websockets, against an echo handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use weroll_native::engine::{
    self, CloseReason, Connection, Cors, CorsOrigin, Engine, EngineConfig, EngineHandler, Frame,
    Incoming,
};

// ---------------------------------------------------------------------------------------------
// Echo handler that also checks the callback contract.

#[derive(Default)]
struct Data {
    opened: AtomicBool,
    in_call: AtomicBool,
    closed: AtomicBool,
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Open,
    Message(Incoming),
    Close(CloseReason),
}

#[derive(Default)]
struct Echo {
    conns: Mutex<HashMap<String, Arc<Connection<Data>>>>,
    events: Mutex<Vec<(String, Event)>>,
    violations: Mutex<Vec<String>>,
    changed: Notify,
}

impl Echo {
    fn record(&self, conn: &Connection<Data>, ev: Event) {
        self.events.lock().unwrap().push((conn.id().to_owned(), ev));
        self.changed.notify_waiters();
    }

    fn enter(&self, conn: &Connection<Data>, what: &str) {
        if conn.data.in_call.swap(true, Ordering::SeqCst) {
            self.violation(format!("{what} overlaps another call on {}", conn.id()));
        }
        if conn.data.closed.load(Ordering::SeqCst) {
            self.violation(format!("{what} after on_close on {}", conn.id()));
        }
    }

    fn leave(&self, conn: &Connection<Data>) {
        conn.data.in_call.store(false, Ordering::SeqCst);
    }

    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }

    fn events_of(&self, sid: &str) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == sid)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn conn(&self, sid: &str) -> Arc<Connection<Data>> {
        self.conns
            .lock()
            .unwrap()
            .get(sid)
            .cloned()
            .expect("known sid")
    }

    /// Waits until `pred` holds over the events of `sid`.
    async fn wait(&self, sid: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let evs = self.events_of(sid);
            if pred(&evs) {
                return evs;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting on {sid}; events: {evs:?}");
            }
        }
    }

    async fn wait_close(&self, sid: &str) -> CloseReason {
        let evs = self
            .wait(sid, |e| e.iter().any(|e| matches!(e, Event::Close(_))))
            .await;
        evs.iter()
            .find_map(|e| match e {
                Event::Close(r) => Some(*r),
                _ => None,
            })
            .expect("a close event")
    }

    fn assert_clean(&self) {
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "contract violations: {v:?}");
    }
}

impl EngineHandler for Echo {
    type Data = Data;

    fn on_open(&self, conn: &Arc<Connection<Data>>) {
        self.enter(conn, "on_open");
        if conn.data.opened.swap(true, Ordering::SeqCst) {
            self.violation(format!("second on_open on {}", conn.id()));
        }
        self.conns
            .lock()
            .unwrap()
            .insert(conn.id().to_owned(), conn.clone());
        self.record(conn, Event::Open);
        self.leave(conn);
    }

    fn on_message(&self, conn: &Arc<Connection<Data>>, msg: Incoming) {
        self.enter(conn, "on_message");
        if !conn.data.opened.load(Ordering::SeqCst) {
            self.violation(format!("on_message before on_open on {}", conn.id()));
        }
        match &msg {
            Incoming::Text(t) if t == "close-me" => conn.close(CloseReason::ServerClose),
            Incoming::Text(t) => {
                conn.send(Frame::text(t));
            }
            Incoming::Binary(b) => {
                conn.send(Frame::binary(b.clone()));
            }
        }
        self.record(conn, Event::Message(msg));
        self.leave(conn);
    }

    fn on_close(&self, conn: &Arc<Connection<Data>>, reason: CloseReason) {
        self.enter(conn, "on_close");
        if conn.data.closed.swap(true, Ordering::SeqCst) {
            self.violation(format!("second on_close on {}", conn.id()));
        }
        if conn.send(Frame::text("late")) {
            self.violation(format!("send succeeded inside on_close on {}", conn.id()));
        }
        self.record(conn, Event::Close(reason));
        self.leave(conn);
    }
}

// ---------------------------------------------------------------------------------------------
// Server and clients.

struct Server {
    engine: Arc<Engine<Echo>>,
    echo: Arc<Echo>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

async fn start(config: EngineConfig) -> Server {
    let echo = Arc::new(Echo::default());
    let engine = Engine::new(config, echo.clone());
    let listener = engine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = watch::channel(false);
    let served = tokio::spawn(engine.clone().serve(listener, rx));
    Server {
        engine,
        echo,
        addr,
        shutdown,
        served,
    }
}

fn fast_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        upgrade_timeout: Duration::from_millis(500),
        ..EngineConfig::default()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

async fn get(addr: SocketAddr, query: &str) -> Resp {
    http(addr, "GET", &format!("/socket.io/?{query}"), &[], b"").await
}

async fn post(addr: SocketAddr, query: &str, body: &[u8]) -> Resp {
    http(
        addr,
        "POST",
        &format!("/socket.io/?{query}"),
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body,
    )
    .await
}

/// A long-polling GET left waiting on the server (given time to arrive there).
async fn parked_get(addr: SocketAddr, query: String) -> tokio::task::JoinHandle<Resp> {
    let pending = tokio::spawn(async move { get(addr, &query).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    pending
}

/// Polling handshake; returns the sid and the open packet's JSON.
async fn handshake(addr: SocketAddr, eio: u8) -> (String, serde_json::Value, Resp) {
    let res = get(addr, &format!("EIO={eio}&transport=polling")).await;
    assert_eq!(res.status, 200, "{res:?}");
    let text = res.text().to_owned();
    let open = match eio {
        4 => text.split('\x1e').next().unwrap().to_owned(),
        _ => {
            let (len, rest) = text.split_once(':').unwrap();
            rest[..len.parse::<usize>().unwrap()].to_owned()
        }
    };
    let json: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let sid = json["sid"].as_str().unwrap().to_owned();
    (sid, json, res)
}

type Ws = WebSocketStream<TcpStream>;

async fn ws_connect(addr: SocketAddr, query: &str) -> Ws {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/socket.io/?{query}"), stream)
            .await
            .unwrap();
    ws
}

/// Next data message, skipping websocket-level pings.
async fn ws_next(ws: &mut Ws) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("websocket message in time");
        match msg {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

async fn ws_text(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Some(Message::Text(t)) => t.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// Opens a websocket session directly; returns the socket and the sid.
async fn ws_session(addr: SocketAddr, eio: u8) -> (Ws, String, serde_json::Value) {
    let mut ws = ws_connect(addr, &format!("EIO={eio}&transport=websocket")).await;
    let open = ws_text(&mut ws).await;
    let json: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let sid = json["sid"].as_str().unwrap().to_owned();
    (ws, sid, json)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn v4_polling_handshake_and_echo() {
    let srv = start(EngineConfig::default()).await;
    let (sid, open, res) = handshake(srv.addr, 4).await;
    assert_eq!(sid.len(), 20);
    assert!(sid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25000);
    assert_eq!(open["pingTimeout"], 20000);
    assert_eq!(open["maxPayload"], 1_000_000);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    srv.echo.wait(&sid, |e| e == [Event::Open]).await;

    let q = format!("EIO=4&transport=polling&sid={sid}");
    let res = post(srv.addr, &q, b"4hello\x1e4w\xc3\xa9rld\x1ebAQID").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    let res = get(srv.addr, &q).await;
    assert_eq!(res.text(), "4hello\x1e4wérld\x1ebAQID");
    let evs = srv.echo.events_of(&sid);
    assert_eq!(
        evs[1..],
        [
            Event::Message(Incoming::Text("hello".into())),
            Event::Message(Incoming::Text("wérld".into())),
            Event::Message(Incoming::Binary(vec![1u8, 2, 3].into())),
        ]
    );

    // A client close packet ends the session.
    post(srv.addr, &q, b"1").await;
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ForcedClose);
    assert_eq!(srv.engine.session_count(), 0);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn v3_polling_handshake_and_echo() {
    let srv = start(EngineConfig::default()).await;
    let (sid, open, res) = handshake(srv.addr, 3).await;
    assert!(open.get("maxPayload").is_none());
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    let text = res.text();
    let (len, rest) = text.split_once(':').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), rest.encode_utf16().count());

    let q = format!("EIO=3&transport=polling&sid={sid}");
    // Lengths count UTF-16 units: "4€" is 2.
    let res = post(srv.addr, &q, "2:4€6:4hello1:2".as_bytes()).await;
    assert_eq!(res.text(), "ok");
    // Non-ASCII text comes back in the binary form (UTF-8, byte lengths) to this client,
    // which can take binary; a `b64=1` client gets the text form.
    let res = get(srv.addr, &q).await;
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    let mut expected = vec![0u8, 4, 0xff];
    expected.extend_from_slice("4€".as_bytes());
    expected.extend_from_slice(&[0, 6, 0xff]);
    expected.extend_from_slice(b"4hello");
    expected.extend_from_slice(&[0, 1, 0xff, b'3']);
    assert_eq!(res.body, expected);
    post(srv.addr, &q, "2:4€".as_bytes()).await;
    let res = get(srv.addr, &format!("{q}&b64=1")).await;
    assert_eq!(res.text(), "2:4€");

    // Base64 binary in, base64 binary out with b64=1.
    post(srv.addr, &q, b"6:b4AQI=").await;
    let res = get(srv.addr, &format!("{q}&b64=1")).await;
    assert_eq!(res.text(), "6:b4AQI=");

    // XHR2 binary in; binary-capable clients get the XHR2 form back.
    let body = [0u8, 2, 0xff, b'4', b'x', 1, 3, 0xff, 4, 9, 8];
    let res = http(
        srv.addr,
        "POST",
        &format!("/socket.io/?{q}"),
        &[("Content-Type", "application/octet-stream")],
        &body,
    )
    .await;
    assert_eq!(res.text(), "ok");
    let res = get(srv.addr, &q).await;
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    assert_eq!(res.body, body);
    let evs = srv.echo.events_of(&sid);
    assert!(evs.contains(&Event::Message(Incoming::Binary(vec![9u8, 8].into()))));
    assert!(evs.contains(&Event::Message(Incoming::Text("€".into()))));

    // JSONP is not served.
    let res = get(srv.addr, &format!("{q}&j=0")).await;
    assert_eq!(res.status, 400);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn websocket_direct_v4_and_v3() {
    let srv = start(EngineConfig::default()).await;
    let (mut ws, sid, open) = ws_session(srv.addr, 4).await;
    assert_eq!(open["upgrades"], serde_json::json!([]));
    assert_eq!(open["maxPayload"], 1_000_000);
    ws_send(&mut ws, "4hi").await;
    assert_eq!(ws_text(&mut ws).await, "4hi");
    ws.send(Message::Binary(vec![1u8, 2].into())).await.unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        Some(Message::Binary(vec![1u8, 2].into()))
    );
    assert!(srv.echo.conn(&sid).is_websocket());

    // v3 binary frames carry the `4` type byte both ways.
    let (mut ws3, sid3, open3) = ws_session(srv.addr, 3).await;
    assert!(open3.get("maxPayload").is_none());
    ws3.send(Message::Binary(vec![4u8, 7].into()))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws3).await,
        Some(Message::Binary(vec![4u8, 7].into()))
    );
    srv.echo
        .wait(&sid3, |e| {
            e.contains(&Event::Message(Incoming::Binary(vec![7u8].into())))
        })
        .await;

    // Dropping the socket is a transport close.
    drop(ws);
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportClose);
    // Client close packet.
    ws_send(&mut ws3, "1").await;
    assert_eq!(srv.echo.wait_close(&sid3).await, CloseReason::ForcedClose);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn websocket_garbage_is_a_parse_error() {
    let srv = start(EngineConfig::default()).await;
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    ws_send(&mut ws, "9nonsense").await;
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ParseError);
    assert_eq!(ws_text(&mut ws).await, "1");
    assert!(matches!(
        ws_next(&mut ws).await,
        Some(Message::Close(_)) | None
    ));

    let (mut ws, sid, _) = ws_session(srv.addr, 3).await;
    ws.send(Message::Binary(vec![2u8, 1].into())).await.unwrap();
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ParseError);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn upgrade_probe_noop_switch() {
    for eio in [4u8, 3] {
        let srv = start(EngineConfig::default()).await;
        let (sid, _, _) = handshake(srv.addr, eio).await;
        let q = format!("EIO={eio}&transport=polling&sid={sid}");
        let addr = srv.addr;
        let pending = parked_get(addr, q.clone()).await;
        let mut ws = ws_connect(addr, &format!("EIO={eio}&transport=websocket&sid={sid}")).await;
        ws_send(&mut ws, "2probe").await;
        assert_eq!(ws_text(&mut ws).await, "3probe");
        let noop = pending.await.unwrap();
        let expect = if eio == 4 { "6" } else { "1:6" };
        assert_eq!(noop.text(), expect);
        // Sent while upgrading: must arrive on the websocket after the switch.
        srv.echo.conn(&sid).send(Frame::text("queued"));
        // Polling is paused by the client now; the upgrade completes.
        ws_send(&mut ws, "5").await;
        assert_eq!(ws_text(&mut ws).await, "4queued");
        ws_send(&mut ws, "4over-ws").await;
        assert_eq!(ws_text(&mut ws).await, "4over-ws");
        assert!(srv.echo.conn(&sid).is_websocket());

        // Polling requests are refused after the upgrade; a second websocket is accepted
        // and closed at once (as engine.io does), and the session stays on the first one.
        assert_eq!(get(addr, &q).await.json()["code"], 3);
        assert_eq!(post(addr, &q, b"4x").await.json()["code"], 3);
        let mut second =
            ws_connect(addr, &format!("EIO={eio}&transport=websocket&sid={sid}")).await;
        match tokio::time::timeout(Duration::from_secs(2), second.next()).await {
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => {}
            other => panic!("second websocket: expected a close, got {other:?}"),
        }
        ws_send(&mut ws, "4still").await;
        assert_eq!(ws_text(&mut ws).await, "4still");
        srv.echo.assert_clean();
    }
}

#[tokio::test]
async fn upgrade_noop_goes_to_next_get_and_timeout_keeps_polling() {
    let srv = start(EngineConfig {
        upgrade_timeout: Duration::from_millis(300),
        ..EngineConfig::default()
    })
    .await;
    let (sid, _, _) = handshake(srv.addr, 4).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let mut ws = ws_connect(srv.addr, &format!("EIO=4&transport=websocket&sid={sid}")).await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    // No GET was pending: the next one gets the noop at once.
    assert_eq!(get(srv.addr, &q).await.text(), "6");
    // No `5` within upgrade_timeout: the probe socket is closed, polling goes on.
    assert_eq!(ws_next(&mut ws).await, None);
    post(srv.addr, &q, b"4still-polling").await;
    let res = get(srv.addr, &q).await;
    assert!(res.text().contains("4still-polling"), "{res:?}");
    assert!(!srv.echo.conn(&sid).is_websocket());
    srv.echo.assert_clean();
}

#[tokio::test]
async fn v4_heartbeat_and_timeout() {
    let srv = start(fast_config()).await;
    let (mut ws, sid, open) = ws_session(srv.addr, 4).await;
    assert_eq!(open["pingInterval"], 300);
    for _ in 0..3 {
        assert_eq!(ws_text(&mut ws).await, "2");
        ws_send(&mut ws, "3").await;
    }
    assert!(srv.echo.events_of(&sid).len() == 1, "still open");
    // Stop answering.
    assert_eq!(ws_text(&mut ws).await, "2");
    let t = std::time::Instant::now();
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::PingTimeout);
    assert!(t.elapsed() < Duration::from_millis(1500));

    // Polling: the ping goes down the long-polling GET.
    let (sid, _, _) = handshake(srv.addr, 4).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(get(srv.addr, &q).await.text(), "2");
    post(srv.addr, &q, b"3").await;
    assert_eq!(get(srv.addr, &q).await.text(), "2");
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::PingTimeout);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn v3_heartbeat_and_timeout() {
    let srv = start(fast_config()).await;
    let (mut ws, sid, _) = ws_session(srv.addr, 3).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ws_send(&mut ws, "2").await;
        assert_eq!(ws_text(&mut ws).await, "3");
    }
    assert_eq!(srv.echo.events_of(&sid), [Event::Open]);
    // Silent for longer than pingInterval + pingTimeout.
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::PingTimeout);

    // A v4 client must not ping.
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    ws_send(&mut ws, "2").await;
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn request_errors() {
    let srv = start(EngineConfig::default()).await;
    let a = srv.addr;
    let res = get(a, "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.json(),
        serde_json::json!({"code": 1, "message": "Session ID unknown"})
    );
    let res = get(a, "EIO=4&transport=polling&sid=short").await;
    assert_eq!(res.json()["code"], 1);
    let res = get(a, "EIO=5&transport=polling").await;
    assert_eq!(
        res.json(),
        serde_json::json!({"code": 5, "message": "Unsupported protocol version"})
    );
    assert_eq!(get(a, "transport=polling").await.json()["code"], 5);
    let res = get(a, "EIO=4&transport=carrier-pigeon").await;
    assert_eq!(
        res.json(),
        serde_json::json!({"code": 0, "message": "Transport unknown"})
    );
    assert_eq!(get(a, "EIO=4").await.json()["code"], 0);
    let res = post(a, "EIO=4&transport=polling", b"4x").await;
    assert_eq!(
        res.json(),
        serde_json::json!({"code": 2, "message": "Bad handshake method"})
    );
    // transport=websocket without an upgrade.
    assert_eq!(get(a, "EIO=4&transport=websocket").await.json()["code"], 3);
    let res = http(a, "GET", "/other/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(res.status, 404);
    let res = http(a, "GET", "/socket.io/x?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(res.status, 404);
    let res = http(a, "GET", "/socket.io?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(res.status, 200);
    // A configured path without its trailing slash serves the same URLs.
    let custom = start(EngineConfig {
        path: "/rt".into(),
        ..EngineConfig::default()
    })
    .await;
    let res = http(custom.addr, "GET", "/rt/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(res.status, 200);
    // Disabled v3.
    let srv3 = start(EngineConfig {
        allow_eio3: false,
        ..EngineConfig::default()
    })
    .await;
    assert_eq!(
        get(srv3.addr, "EIO=3&transport=polling").await.json()["code"],
        5
    );
    // Websocket for an unknown sid.
    let res = http(
        a,
        "GET",
        "/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .await;
    assert_eq!(res.json()["code"], 1);
    // Garbage payload closes the session.
    let (sid, _, _) = handshake(a, 4).await;
    let res = post(a, &format!("EIO=4&transport=polling&sid={sid}"), b"x").await;
    assert_eq!(res.status, 400);
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ParseError);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn oversized_payloads_close_the_session() {
    let srv = start(EngineConfig {
        max_payload: 100,
        ..EngineConfig::default()
    })
    .await;
    let (sid, open, _) = handshake(srv.addr, 4).await;
    assert_eq!(open["maxPayload"], 100);
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let res = post(srv.addr, &q, &[b'4'; 101]).await;
    assert_eq!(res.status, 413);
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);

    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    ws_send(&mut ws, &"4".repeat(101)).await;
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);
    assert_eq!(ws_next(&mut ws).await, None);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn concurrent_get_is_refused_and_closes() {
    let srv = start(EngineConfig::default()).await;
    let (sid, _, _) = handshake(srv.addr, 4).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let addr = srv.addr;
    let first = parked_get(addr, q.clone()).await;
    let second = get(addr, &q).await;
    assert_eq!(
        (second.status, second.json()["code"].clone()),
        (400, 3.into())
    );
    assert_eq!(first.await.unwrap().text(), "1");
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let srv = start(EngineConfig {
        cors: Some(Cors {
            origin: CorsOrigin::List(vec!["https://app.example".into()]),
            credentials: true,
            methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec![],
        }),
        ..EngineConfig::default()
    })
    .await;
    let res = http(
        srv.addr,
        "OPTIONS",
        "/socket.io/?EIO=4&transport=polling",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(res.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("content-type")
    );
    let res = http(
        srv.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let res = http(
        srv.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(res.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn slow_client_is_dropped() {
    let srv = start(EngineConfig {
        max_queued_frames: 8,
        ..EngineConfig::default()
    })
    .await;
    let (sid, _, _) = handshake(srv.addr, 4).await;
    let conn = srv.echo.conn(&sid);
    let mut accepted = 0;
    while conn.send(Frame::text("x")) {
        accepted += 1;
        assert!(accepted <= 8);
    }
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::SlowClient);
    assert!(!conn.send(Frame::text("x")));
    // A group larger than the bound still goes to a client whose queue is empty.
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    let conn = srv.echo.conn(&sid);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let group: Vec<Frame> = (0..20).map(|i| Frame::text(&i.to_string())).collect();
    assert!(conn.send_all(&group));
    for i in 0..20 {
        assert_eq!(ws_text(&mut ws).await, format!("4{i}"));
    }
    srv.echo.assert_clean();
}

#[tokio::test]
async fn server_close_and_close_all() {
    let srv = start(EngineConfig::default()).await;
    // Handler-initiated close from inside on_message.
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    ws_send(&mut ws, "4close-me").await;
    assert_eq!(ws_text(&mut ws).await, "1");
    assert!(matches!(
        ws_next(&mut ws).await,
        Some(Message::Close(_)) | None
    ));
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ServerClose);

    let (mut ws, ws_sid, _) = ws_session(srv.addr, 4).await;
    let (poll_sid, _, _) = handshake(srv.addr, 4).await;
    let addr = srv.addr;
    let pending =
        tokio::spawn(
            async move { get(addr, &format!("EIO=4&transport=polling&sid={poll_sid}")).await },
        );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.engine.session_count(), 2);
    srv.shutdown.send(true).unwrap();
    srv.served.await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), srv.engine.close_all())
        .await
        .expect("close_all finishes");
    assert_eq!(srv.engine.session_count(), 0);
    assert_eq!(ws_text(&mut ws).await, "1");
    assert_eq!(pending.await.unwrap().text(), "1");
    assert_eq!(srv.echo.wait_close(&ws_sid).await, CloseReason::ServerClose);
    // The listener is gone with `serve`.
    assert!(TcpStream::connect(addr).await.is_err());
    srv.echo.assert_clean();
}

#[tokio::test]
async fn serve_returns_on_shutdown() {
    let srv = start(EngineConfig::default()).await;
    srv.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), srv.served)
        .await
        .expect("serve returns")
        .unwrap();
}

#[tokio::test]
async fn abandoned_poll_closes_the_session() {
    let srv = start(EngineConfig::default()).await;
    let (sid, _, _) = handshake(srv.addr, 4).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let req =
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn sessions_opened_during_close_all_are_closed_too() {
    let srv = start(EngineConfig::default()).await;
    let addr = srv.addr;
    let openers = tokio::spawn(async move {
        let mut n = 0;
        for _ in 0..50 {
            let res = get(addr, "EIO=4&transport=polling").await;
            if res.status == 200 {
                n += 1;
            }
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    tokio::time::timeout(Duration::from_secs(5), srv.engine.close_all())
        .await
        .expect("close_all finishes");
    openers.await.unwrap();
    assert_eq!(srv.engine.session_count(), 0);
    srv.echo.assert_clean();
}

#[tokio::test]
async fn large_messages_and_bursts_over_websocket() {
    let srv = start(EngineConfig::default()).await;
    for eio in [4u8, 3] {
        let (mut ws, _, _) = ws_session(srv.addr, eio).await;
        let big = "x".repeat(900_000);
        ws_send(&mut ws, &format!("4{big}")).await;
        assert_eq!(ws_text(&mut ws).await.len(), big.len() + 1);
        let mut blob = vec![7u8; 500_000];
        if eio == 3 {
            blob[0] = 4;
        }
        ws.send(Message::Binary(blob.clone().into())).await.unwrap();
        assert_eq!(ws_next(&mut ws).await, Some(Message::Binary(blob.into())));
        // A burst: all echoed, in order.
        for i in 0..5000 {
            ws.feed(Message::Text(format!("4m{i}").into()))
                .await
                .unwrap();
        }
        ws.flush().await.unwrap();
        for i in 0..5000 {
            assert_eq!(ws_text(&mut ws).await, format!("4m{i}"));
        }
    }
    srv.echo.assert_clean();
}

#[tokio::test]
async fn forced_close_from_the_server_still_flushes() {
    let srv = start(EngineConfig::default()).await;
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    let conn = srv.echo.conn(&sid);
    assert!(conn.send(Frame::text("1")));
    conn.close(CloseReason::ForcedClose);
    assert!(!conn.send(Frame::text("late")));
    assert_eq!(ws_text(&mut ws).await, "41");
    assert_eq!(ws_text(&mut ws).await, "1");
    assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ForcedClose);
    srv.echo.assert_clean();
}

/// Frames queued while the writer waits for a full socket wake its task, but that wake-up can
/// be the very one in which the earlier batch drains: they must still go out, even when nothing
/// is sent after them.
#[tokio::test]
async fn frames_queued_while_the_socket_is_full_are_all_delivered() {
    let srv = start(EngineConfig {
        max_queued_frames: 100_000,
        ..EngineConfig::default()
    })
    .await;
    let (mut ws, sid, _) = ws_session(srv.addr, 4).await;
    let conn = srv.echo.conn(&sid);
    // 16 MiB: several times what loopback socket buffers hold, so the writer blocks with much
    // of the batch still waiting.
    let chunk = "x".repeat(16 * 1024);
    let flood = 1024;
    for _ in 0..flood {
        assert!(conn.send(Frame::text(&chunk)));
    }
    // Lets the session's task take the flood and fill the socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The tail: queued behind the blocked batch, and the last thing ever sent.
    let tail = 5;
    for i in 0..tail {
        assert!(conn.send(Frame::text(&format!("tail{i}"))));
    }
    let mut next = async || match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => Some(t.as_str().to_owned()),
        _ => None,
    };
    for n in 0..flood {
        let msg = next().await;
        assert_eq!(
            msg.map(|m| m.len()),
            Some(chunk.len() + 1),
            "flood message {n}"
        );
    }
    for i in 0..tail {
        assert_eq!(
            next().await,
            Some(format!("4tail{i}")),
            "tail message {i} (sent after the flood)"
        );
    }
    srv.echo.assert_clean();
}

/// A server close over polling: the queued messages and the close packet come in separate
/// responses (clients act on a close packet at once, on messages only a tick later).
#[tokio::test]
async fn polling_server_close_sends_messages_before_the_close_packet() {
    for parked in [false, true] {
        let srv = start(EngineConfig::default()).await;
        let (sid, _, _) = handshake(srv.addr, 4).await;
        let q = format!("EIO=4&transport=polling&sid={sid}");
        let addr = srv.addr;
        let conn = srv.echo.conn(&sid);
        let pending = parked.then(|| {
            let q = q.clone();
            tokio::spawn(async move { get(addr, &q).await })
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(conn.send(Frame::text("1")));
        conn.close(CloseReason::ServerClose);
        let first = match pending {
            Some(p) => p.await.unwrap(),
            None => get(addr, &q).await,
        };
        assert_eq!(first.text(), "41", "parked: {parked}");
        assert_eq!(get(addr, &q).await.text(), "1", "parked: {parked}");
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ServerClose);
        srv.echo.assert_clean();
    }
}

/// A server close between the probe and the client's `5`: the upgrade still completes, and
/// the websocket delivers what was queued, then the close packet.
#[tokio::test]
async fn server_close_during_the_upgrade_flushes_over_the_websocket() {
    for eio in [4u8, 3] {
        let srv = start(EngineConfig::default()).await;
        let (sid, _, _) = handshake(srv.addr, eio).await;
        let q = format!("EIO={eio}&transport=polling&sid={sid}");
        let addr = srv.addr;
        let mut ws = ws_connect(addr, &format!("EIO={eio}&transport=websocket&sid={sid}")).await;
        ws_send(&mut ws, "2probe").await;
        assert_eq!(ws_text(&mut ws).await, "3probe");
        let expect = if eio == 4 { "6" } else { "1:6" };
        assert_eq!(get(addr, &q).await.text(), expect);
        let conn = srv.echo.conn(&sid);
        assert!(conn.send(Frame::text("bye")));
        conn.close(CloseReason::ServerClose);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ServerClose);
        ws_send(&mut ws, "5").await;
        assert_eq!(ws_text(&mut ws).await, "4bye");
        assert_eq!(ws_text(&mut ws).await, "1");
        assert!(matches!(
            ws_next(&mut ws).await,
            Some(Message::Close(_)) | None
        ));
        srv.echo.assert_clean();
    }
}

/// engine.io forgets a polling session as soon as the client side ends it: a GET already
/// waiting gets its answer, any later request gets `400 {"code":1}`. Only a server close keeps
/// the sid until a GET has collected the final packets.
#[tokio::test]
async fn a_polling_session_ended_by_the_client_side_is_unknown_at_once() {
    let srv = start(fast_config()).await;
    let addr = srv.addr;
    let unknown = |r: Resp| {
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (400, 1.into()),
            "{r:?}"
        );
    };
    for eio in [4u8, 3] {
        let q = |sid: &str| format!("EIO={eio}&transport=polling&sid={sid}");

        // An undecodable POST.
        let (sid, _, _) = handshake(addr, eio).await;
        assert_eq!(post(addr, &q(&sid), b"abc").await.status, 400);
        unknown(get(addr, &q(&sid)).await);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ParseError);

        // A second GET while one is waiting: the first gets the close packet.
        let (sid, _, _) = handshake(addr, eio).await;
        let pending = parked_get(addr, q(&sid)).await;
        assert_eq!(get(addr, &q(&sid)).await.status, 400);
        let close = if eio == 4 { "1" } else { "1:1" };
        assert_eq!(pending.await.unwrap().text(), close);
        unknown(get(addr, &q(&sid)).await);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::TransportError);

        // The client closes: its waiting GET just ends with a noop.
        let (sid, _, _) = handshake(addr, eio).await;
        let pending = parked_get(addr, q(&sid)).await;
        let bye: &[u8] = if eio == 4 { b"1" } else { b"1:1" };
        assert_eq!(post(addr, &q(&sid), bye).await.status, 200);
        let noop = if eio == 4 { "6" } else { "1:6" };
        assert_eq!(pending.await.unwrap().text(), noop);
        unknown(get(addr, &q(&sid)).await);
        unknown(post(addr, &q(&sid), bye).await);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ForcedClose);
        // When the close overtakes the GET, that GET still collects the noop, and only it.
        let (sid, _, _) = handshake(addr, eio).await;
        assert_eq!(post(addr, &q(&sid), bye).await.status, 200);
        assert_eq!(get(addr, &q(&sid)).await.text(), noop);
        unknown(get(addr, &q(&sid)).await);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ForcedClose);

        // A request that comes after the heartbeat deadline finds the session gone, even if
        // the engine task has not expired it yet.
        let (sid, _, _) = handshake(addr, eio).await;
        if eio == 4 {
            assert_eq!(get(addr, &q(&sid)).await.text(), "2");
            tokio::time::sleep(Duration::from_millis(210)).await;
            unknown(get(addr, &q(&sid)).await);
        } else {
            tokio::time::sleep(Duration::from_millis(510)).await;
            unknown(post(addr, &q(&sid), b"1:2").await);
        }
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::PingTimeout);

        // A server close: the next GET collects the close packet, then the sid is unknown.
        let (sid, _, _) = handshake(addr, eio).await;
        srv.echo.conn(&sid).close(CloseReason::ServerClose);
        assert_eq!(get(addr, &q(&sid)).await.text(), close);
        unknown(get(addr, &q(&sid)).await);
        assert_eq!(srv.echo.wait_close(&sid).await, CloseReason::ServerClose);
    }
    srv.echo.assert_clean();
}

/// engine.io clients send `b64=1` on the handshake only: later polls of that session must still
/// get text payloads (binary as `b4<base64>`), never the XHR2 binary form.
#[tokio::test]
async fn v3_b64_asked_at_the_handshake_holds_for_the_whole_session() {
    let srv = start(EngineConfig::default()).await;
    let res = get(srv.addr, "EIO=3&transport=polling&b64=1").await;
    let (_, open) = res.text().split_once(":0").expect("v3 open packet");
    let open: serde_json::Value = serde_json::from_str(open).expect("open json");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    let conn = srv.echo.conn(&sid);
    assert!(conn.send(Frame::binary(vec![1u8, 2])));
    assert!(conn.send(Frame::text("é")));
    let res = get(srv.addr, &format!("EIO=3&transport=polling&sid={sid}")).await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(res.text(), "6:b4AQI=2:4é");

    // Without b64, the same frames come in the binary form.
    let (sid, _, _) = handshake(srv.addr, 3).await;
    let conn = srv.echo.conn(&sid);
    assert!(conn.send(Frame::text("é")));
    let res = get(srv.addr, &format!("EIO=3&transport=polling&sid={sid}")).await;
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        res.body,
        [&[0u8, 3, 0xff, b'4'][..], "é".as_bytes()].concat()
    );
}
