//! The Redis adapter against a real `redis-server` (spawned per test on a free port), between
//! two or three native "servers", and against Node peers (socket.io 4 with
//! `@socket.io/redis-adapter` 8 and `@socket.io/redis-emitter` 5) when `node` and the
//! package's `node_modules` are there. Tests that lack `redis-server` or Node say so and pass.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, Notify};

use weroll_native::adapter::redis::{AdapterStatus, RedisAdapterFactory, RedisConfig};
use weroll_native::adapter::{
    Adapter, AdapterError, AdapterFactory, BroadcastFlags, BroadcastOptions, LocalNamespace,
    RemoteSocket,
};
use weroll_native::protocol::Payload;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A throwaway `redis-server`, killed on drop.
struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let Some(binary) = find_in_path("redis-server") else {
            eprintln!("SKIPPED: redis-server is not in PATH");
            return None;
        };
        let mut server = RedisServer {
            binary,
            port: free_port(),
            child: None,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the server process.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn config(&self, key: &str) -> RedisConfig {
        config_at(self.port, key)
    }
}

/// The adapter's configuration for a Redis (or a proxy) listening on `port`.
fn config_at(port: u16, key: &str) -> RedisConfig {
    let mut c = RedisConfig::from_json(
        &json!({"host": "127.0.0.1", "port": port, "key": key, "requestsTimeout": 2000}),
    )
    .expect("valid config");
    c.requests_timeout = Duration::from_millis(2000);
    c
}

#[derive(Default)]
struct PathState {
    cut: AtomicBool,
    /// Connections numbered below this stay silent for good.
    dead_below: AtomicU64,
    next: AtomicU64,
}

impl PathState {
    fn silent(&self, id: u64) -> bool {
        self.cut.load(SeqCst) || id < self.dead_below.load(SeqCst)
    }
}

/// A TCP proxy in front of Redis whose path can go silent: while cut, whatever is sent either
/// way is lost and every connection stays open (no FIN, no RST), as over a dead route. The
/// connections opened before the path is restored stay silent for good.
struct SilentPath {
    port: u16,
    state: Arc<PathState>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentPath {
    async fn start(target: u16) -> SilentPath {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let port = listener.local_addr().expect("bound").port();
        let state = Arc::new(PathState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let id = shared.next.fetch_add(1, SeqCst);
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_redis, to_redis) = outbound.into_split();
                    tokio::join!(
                        pump(from_client, to_redis, id, &state),
                        pump(from_redis, to_client, id, &state)
                    );
                });
            }
        });
        SilentPath { port, state, task }
    }

    fn cut(&self) {
        self.state.cut.store(true, SeqCst);
    }

    fn restore(&self) {
        self.state
            .dead_below
            .store(self.state.next.load(SeqCst), SeqCst);
        self.state.cut.store(false, SeqCst);
    }
}

impl Drop for SilentPath {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    state: &PathState,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.silent(id) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn payload(json: &str, attachments: &[&[u8]]) -> Payload {
    Payload {
        json: json.to_owned(),
        attachments: attachments
            .iter()
            .map(|a| Bytes::copy_from_slice(a))
            .collect(),
    }
}

fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.iter().map(|s| s.to_string()).collect(),
        except: except.iter().map(|s| s.to_string()).collect(),
        flags: BroadcastFlags::default(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Broadcast(Payload, BroadcastOptions),
    Join(BroadcastOptions, Vec<String>),
    Leave(BroadcastOptions, Vec<String>),
    Disconnect(BroadcastOptions, bool),
    ServerSideEmit(Payload),
}

/// A namespace that records what the cluster asks of it.
struct TestNs {
    name: String,
    sockets: Mutex<Vec<RemoteSocket>>,
    rooms: Mutex<Vec<String>>,
    events: Mutex<Vec<Event>>,
    notify: Notify,
    /// Answer to an acknowledged serverSideEmit; `None`: never answer.
    ack: Mutex<Option<Payload>>,
    /// Held by a test to make this namespace slow.
    gate: Mutex<()>,
}

impl TestNs {
    fn new(name: &str) -> Arc<TestNs> {
        Arc::new(TestNs {
            name: name.to_owned(),
            sockets: Mutex::new(Vec::new()),
            rooms: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            notify: Notify::new(),
            ack: Mutex::new(None),
            gate: Mutex::new(()),
        })
    }

    fn record(&self, e: Event) {
        self.events.lock().unwrap().push(e);
        self.notify.notify_waiters();
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }

    /// Waits for an event matching `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{}: no {what} within 10 s; got {:?}",
                    self.name,
                    self.events()
                );
            }
        }
    }

    fn add_socket(&self, id: &str, rooms: &[&str]) {
        self.sockets.lock().unwrap().push(RemoteSocket {
            id: id.to_owned(),
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            handshake: json!({"address": "10.1.2.3", "query": {"v": "1"}, "headers": {}, "auth": {}}),
            data: json!({"user": id}),
        });
    }
}

impl LocalNamespace for TestNs {
    fn name(&self) -> &str {
        &self.name
    }
    fn apply_broadcast(&self, data: Payload, opts: &BroadcastOptions) {
        // Blocks while a test holds the gate, handing this worker's queued tasks to another
        // thread meanwhile (a blocked worker would otherwise hold up unrelated tasks).
        if self.gate.try_lock().is_err() {
            tokio::task::block_in_place(|| drop(self.gate.lock()));
        }
        self.record(Event::Broadcast(data, opts.clone()));
    }
    fn apply_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.record(Event::Join(opts.clone(), rooms.to_vec()));
    }
    fn apply_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.record(Event::Leave(opts.clone(), rooms.to_vec()));
    }
    fn apply_disconnect(&self, opts: &BroadcastOptions, close: bool) {
        self.record(Event::Disconnect(opts.clone(), close));
    }
    fn local_sockets(&self, opts: &BroadcastOptions) -> Vec<RemoteSocket> {
        self.sockets
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                (opts.rooms.is_empty() || s.rooms.iter().any(|r| opts.rooms.contains(r)))
                    && !s.rooms.iter().any(|r| opts.except.contains(r))
            })
            .cloned()
            .collect()
    }
    fn local_rooms(&self) -> Vec<String> {
        self.rooms.lock().unwrap().clone()
    }
    fn on_server_side_emit(&self, args: Payload, ack: Option<oneshot::Sender<Payload>>) {
        self.record(Event::ServerSideEmit(args));
        if let (Some(tx), Some(answer)) = (ack, self.ack.lock().unwrap().clone()) {
            let _ = tx.send(answer);
        }
    }
}

/// One native server: its factory, a namespace and that namespace's adapter.
struct Node {
    factory: Arc<RedisAdapterFactory>,
    ns: Arc<TestNs>,
    adapter: Arc<dyn Adapter>,
    statuses: Arc<Mutex<Vec<AdapterStatus>>>,
}

async fn native(redis: &RedisServer, key: &str, nsp: &str) -> Node {
    native_with(redis.config(key), nsp).await
}

async fn native_with(config: RedisConfig, nsp: &str) -> Node {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let s2 = statuses.clone();
    let factory =
        RedisAdapterFactory::connect(config, Arc::new(move |s| s2.lock().unwrap().push(s)))
            .await
            .expect("connects");
    let ns = TestNs::new(nsp);
    let weak: Weak<dyn LocalNamespace> = Arc::downgrade(&(ns.clone() as Arc<dyn LocalNamespace>));
    let adapter = factory.create(weak);
    Node {
        factory,
        ns,
        adapter,
        statuses,
    }
}

/// Waits until the status callback has heard `want` last.
async fn wait_status(node: &Node, want: fn(&AdapterStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.statuses.lock().unwrap().last().is_some_and(want) {
        assert!(
            Instant::now() < deadline,
            "status: {:?}",
            node.statuses.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node`'s publisher is known to be down (its commands fail at once).
async fn wait_publisher_down(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let quick = tokio::time::timeout(Duration::from_millis(100), node.factory.servers()).await;
        if matches!(&quick, Ok(Err(AdapterError::Unavailable(m))) if m.contains("is down")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher did not notice: {quick:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` servers are subscribed to the namespace.
async fn wait_servers(adapter: &Arc<dyn Adapter>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = adapter.server_count().await;
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server count stuck at {count}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_broadcast(e: &Event, event_name: &str) -> bool {
    matches!(e, Event::Broadcast(p, _) if p.json.starts_with(&format!("[\"{event_name}\"")))
}

// ---------------------------------------------------------------------------------------------
// Native ⇄ native
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcasts_between_servers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    let other_nsp = native(&redis, "t", "/chat").await;
    wait_servers(&a.adapter, 2).await;
    wait_servers(&other_nsp.adapter, 1).await;

    let data = payload(
        r#"["hello",{"_placeholder":true,"num":0},{"n":1.5,"s":"é"}]"#,
        &[&[1, 2, 3]],
    );
    a.adapter.broadcast(&data, &opts(&[], &[]));
    let got =
        b.ns.wait_for("broadcast", |e| is_broadcast(e, "hello"))
            .await;
    assert_eq!(got, Event::Broadcast(data.clone(), opts(&[], &[])));

    // One room: published on the room channel; several rooms and except lists travel in opts.
    let mut volatile = opts(&["r1"], &["sid9"]);
    volatile.flags.volatile = true;
    volatile.flags.compress = Some(false);
    a.adapter.broadcast(&payload(r#"["room"]"#, &[]), &volatile);
    let got =
        b.ns.wait_for("room broadcast", |e| is_broadcast(e, "room"))
            .await;
    assert_eq!(got, Event::Broadcast(payload(r#"["room"]"#, &[]), volatile));
    a.adapter
        .broadcast(&payload(r#"["rooms"]"#, &[]), &opts(&["r1", "r2"], &[]));
    let got =
        b.ns.wait_for("rooms broadcast", |e| is_broadcast(e, "rooms"))
            .await;
    assert_eq!(
        got,
        Event::Broadcast(payload(r#"["rooms"]"#, &[]), opts(&["r1", "r2"], &[]))
    );

    // Local-only broadcasts are not published; nobody receives their own; other namespaces
    // do not see it.
    let mut local = opts(&[], &[]);
    local.flags.local = true;
    a.adapter.broadcast(&payload(r#"["local"]"#, &[]), &local);
    b.adapter
        .broadcast(&payload(r#"["fromB"]"#, &[]), &opts(&[], &[]));
    a.ns.wait_for("broadcast from b", |e| is_broadcast(e, "fromB"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!b
        .ns
        .events()
        .iter()
        .any(|e| is_broadcast(e, "local") || is_broadcast(e, "fromB")));
    assert!(!a.ns.events().iter().any(|e| is_broadcast(e, "hello")));
    assert!(
        other_nsp.ns.events().is_empty(),
        "{:?}",
        other_nsp.ns.events()
    );

    a.factory.close().await;
    b.factory.close().await;
    other_nsp.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_operations_reach_other_servers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    wait_servers(&a.adapter, 2).await;

    a.adapter
        .sockets_join(&opts(&["r1"], &["x"]), &["j1".into(), "j2".into()]);
    let e =
        b.ns.wait_for("join", |e| matches!(e, Event::Join(..)))
            .await;
    assert_eq!(
        e,
        Event::Join(opts(&["r1"], &["x"]), vec!["j1".into(), "j2".into()])
    );
    a.adapter.sockets_leave(&opts(&[], &[]), &["j1".into()]);
    let e =
        b.ns.wait_for("leave", |e| matches!(e, Event::Leave(..)))
            .await;
    assert_eq!(e, Event::Leave(opts(&[], &[]), vec!["j1".into()]));
    a.adapter.disconnect_sockets(&opts(&["r9"], &[]), true);
    let e =
        b.ns.wait_for("disconnect", |e| matches!(e, Event::Disconnect(..)))
            .await;
    assert_eq!(e, Event::Disconnect(opts(&["r9"], &[]), true));
    // The sender does not apply its own request (the namespace does its local part itself).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.ns.events().is_empty(), "{:?}", a.ns.events());

    a.factory.close().await;
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_collect_every_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    let c = native(&redis, "t", "/").await;
    wait_servers(&a.adapter, 3).await;
    assert_eq!(c.adapter.server_count().await, 3);

    b.ns.add_socket("b1", &["b1", "room"]);
    b.ns.add_socket("b2", &["b2"]);
    c.ns.add_socket("c1", &["c1", "room"]);
    *b.ns.rooms.lock().unwrap() = vec!["room".into(), "b-only".into()];
    *c.ns.rooms.lock().unwrap() = vec!["room".into(), "c-only".into()];

    let mut sockets = a
        .adapter
        .fetch_sockets(&opts(&["room"], &[]))
        .await
        .unwrap();
    sockets.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        sockets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["b1", "c1"]
    );
    assert_eq!(sockets[0], b.ns.sockets.lock().unwrap()[0]);
    let all = a
        .adapter
        .fetch_sockets(&opts(&[], &["room"]))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["b2"]
    );

    let mut rooms = a.adapter.all_rooms().await.unwrap();
    rooms.sort();
    assert_eq!(rooms, ["b-only", "c-only", "room"]);

    // serverSideEmit: without ack everyone else hears it; with ack one answer per server.
    let args = payload(r#"["sync",{"_placeholder":true,"num":0}]"#, &[b"xyz"]);
    assert_eq!(
        a.adapter.server_side_emit(&args, None).await.unwrap(),
        vec![]
    );
    b.ns.wait_for(
        "serverSideEmit",
        |e| matches!(e, Event::ServerSideEmit(p) if *p == args),
    )
    .await;
    c.ns.wait_for(
        "serverSideEmit",
        |e| matches!(e, Event::ServerSideEmit(p) if *p == args),
    )
    .await;
    *b.ns.ack.lock().unwrap() = Some(payload(r#"[{"from":"b"}]"#, &[]));
    *c.ns.ack.lock().unwrap() = Some(payload(r#"[]"#, &[]));
    let mut acks = a
        .adapter
        .server_side_emit(&payload(r#"["ask"]"#, &[]), Some(Duration::from_secs(3)))
        .await
        .unwrap();
    acks.sort_by(|x, y| x.json.cmp(&y.json));
    assert_eq!(
        acks,
        vec![payload("[]", &[]), payload(r#"[{"from":"b"}]"#, &[])]
    );

    // A server that never acknowledges makes the request time out, saying how many answered.
    *c.ns.ack.lock().unwrap() = None;
    let started = Instant::now();
    let err = a
        .adapter
        .server_side_emit(
            &payload(r#"["ask"]"#, &[]),
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    // The one answer that came travels with the error (socket.io hands it to the callback).
    match err {
        AdapterError::Timeout {
            expected,
            received,
            acks,
        } => {
            assert_eq!((expected, received, acks.len()), (2, 1, 1));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!a
        .ns
        .events()
        .iter()
        .any(|e| matches!(e, Event::ServerSideEmit(_))));

    // Server count follows servers leaving.
    c.factory.close().await;
    wait_servers(&a.adapter, 2).await;
    b.adapter.close().await;
    wait_servers(&a.adapter, 1).await;
    assert_eq!(
        a.adapter.fetch_sockets(&opts(&[], &[])).await.unwrap(),
        vec![]
    );
    a.factory.close().await;
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_ends_pending_requests() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    wait_servers(&a.adapter, 2).await;
    // b never acknowledges: a's request waits until the factory closes.
    let waiting = a
        .adapter
        .server_side_emit(&payload(r#"["ask"]"#, &[]), Some(Duration::from_secs(30)));
    let waiting = tokio::spawn(waiting);
    b.ns.wait_for("serverSideEmit", |e| matches!(e, Event::ServerSideEmit(_)))
        .await;
    let started = Instant::now();
    a.factory.close().await;
    let result = waiting.await.unwrap();
    assert!(
        matches!(result, Err(AdapterError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // After close: nothing is published, requests fail, new namespaces stay local.
    a.adapter
        .broadcast(&payload(r#"["late"]"#, &[]), &opts(&[], &[]));
    assert!(a.adapter.all_rooms().await.is_err());
    let late = TestNs::new("/late");
    let weak: Weak<dyn LocalNamespace> = Arc::downgrade(&(late.clone() as Arc<dyn LocalNamespace>));
    assert_eq!(a.factory.create(weak).server_count().await, 1);
    wait_servers(&b.adapter, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!b.ns.events().iter().any(|e| is_broadcast(e, "late")));
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_messages_are_ignored() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    wait_servers(&a.adapter, 2).await;
    let garbage: [&[u8]; 8] = [
        b"",
        b"{",
        b"{\"type\":5,\"requestId\":7,\"opts\":3}",
        b"{\"type\":6,\"data\":\"not an array\",\"requestId\":\"x\"}",
        b"{\"type\":7,\"requestId\":\"x\",\"packet\":{\"type\":2}}",
        b"\xc1\xc1",
        b"\x93\xa1u\x81\xa4type\x02\x90",
        b"\xdd\xff\xff\xff\xff",
    ];
    for g in garbage {
        for ch in ["t#/#", "t#/#room#", "t-request#/#", "t-response#/#"] {
            raw_publish(&redis, ch, g);
        }
    }
    a.adapter
        .broadcast(&payload(r#"["still alive"]"#, &[]), &opts(&[], &[]));
    b.ns.wait_for("broadcast after garbage", |e| {
        is_broadcast(e, "still alive")
    })
    .await;
    b.ns.add_socket("b1", &["b1"]);
    assert_eq!(
        a.adapter
            .fetch_sockets(&opts(&[], &[]))
            .await
            .unwrap()
            .len(),
        1
    );
    a.factory.close().await;
    b.factory.close().await;
}

/// PUBLISH through a plain RESP connection (bytes that no adapter would write).
fn raw_publish(redis: &RedisServer, channel: &str, body: &[u8]) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let mut cmd = Vec::new();
    for part in [b"PUBLISH".as_slice(), channel.as_bytes(), body] {
        cmd.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        cmd.extend_from_slice(part);
        cmd.extend_from_slice(b"\r\n");
    }
    let mut frame = b"*3\r\n".to_vec();
    frame.extend(cmd);
    s.write_all(&frame).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert!(line.starts_with(':'), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_namespace_drops_instead_of_growing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    // A second namespace on the same connections: what `a` publishes there after the flood
    // reaches `b` after every message of the flood was routed.
    let fence_a = TestNs::new("/fence");
    let fence_b = TestNs::new("/fence");
    let fence_a_adapter = a.factory.create(Arc::downgrade(
        &(fence_a.clone() as Arc<dyn LocalNamespace>),
    ));
    let _fence_b_adapter = b.factory.create(Arc::downgrade(
        &(fence_b.clone() as Arc<dyn LocalNamespace>),
    ));
    wait_servers(&a.adapter, 2).await;
    wait_servers(&fence_a_adapter, 2).await;
    {
        let _held = b.ns.gate.lock().unwrap();
        // 3000 broadcasts of 16 KiB: 48 MiB, half again the 32 MiB a namespace may queue.
        let filler = "x".repeat(16 << 10);
        for i in 0..3000 {
            a.adapter.broadcast(
                &payload(&format!(r#"["flood",{i},"{filler}"]"#), &[]),
                &opts(&[], &[]),
            );
        }
        fence_a_adapter.broadcast(&payload(r#"["fence"]"#, &[]), &opts(&[], &[]));
        // Blocks this thread only; the adapter's tasks run on the runtime's workers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fence_b.events().iter().any(|e| is_broadcast(e, "fence")) {
            assert!(Instant::now() < deadline, "the flood did not get through");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The namespace drains its queue; what comes after is served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while !b.ns.events().iter().any(|e| is_broadcast(e, "after")) {
        assert!(Instant::now() < deadline, "no broadcast after the flood");
        a.adapter
            .broadcast(&payload(&format!(r#"["after",{n}]"#), &[]), &opts(&[], &[]));
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered =
        b.ns.events()
            .iter()
            .filter(|e| is_broadcast(e, "flood"))
            .count();
    // At most 32 MiB queued (the one being served aside), about 2000 such messages.
    assert!(
        delivered <= 2048 + 1,
        "{delivered} queued for a stuck namespace"
    );
    assert!(delivered >= 1900, "only {delivered} delivered");
    a.factory.close().await;
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_a_redis_restart() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "t", "/").await;
    let b = native(&redis, "t", "/").await;
    wait_servers(&a.adapter, 2).await;
    wait_status(&a, |s| *s == AdapterStatus::Connected).await;
    assert_eq!(*a.statuses.lock().unwrap(), vec![AdapterStatus::Connected]);

    redis.stop();
    wait_status(&a, |s| matches!(s, AdapterStatus::Disconnected(_))).await;
    // The status may come from the subscriber before the publisher saw its connection close;
    // until then a publish is queued by the client and sent once Redis is back.
    wait_publisher_down(&a).await;
    // While Redis is down: publishing neither blocks nor fails the caller, requests fail fast.
    let started = Instant::now();
    for _ in 0..2000 {
        a.adapter
            .broadcast(&payload(r#"["queued"]"#, &[]), &opts(&[], &[]));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "broadcast blocked: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(matches!(
        a.adapter.fetch_sockets(&opts(&[], &[])).await,
        Err(AdapterError::Unavailable(_))
    ));
    assert!(matches!(
        a.adapter.all_rooms().await,
        Err(AdapterError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "requests took {:?}",
        started.elapsed()
    );
    assert_eq!(a.adapter.server_count().await, 1);
    assert!(a.factory.servers().await.is_err());

    redis.spawn();
    wait_status(&a, |s| *s == AdapterStatus::Connected).await;
    wait_status(&b, |s| *s == AdapterStatus::Connected).await;
    // Subscriptions come back by themselves: broadcasts and requests flow again.
    wait_servers(&a.adapter, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.adapter
            .broadcast(&payload(r#"["back"]"#, &[]), &opts(&[], &[]));
        tokio::time::sleep(Duration::from_millis(100)).await;
        if b.ns.events().iter().any(|e| is_broadcast(e, "back")) {
            break;
        }
        assert!(Instant::now() < deadline, "broadcasts did not resume");
    }
    b.ns.add_socket("b1", &["b1"]);
    assert_eq!(
        a.adapter
            .fetch_sockets(&opts(&[], &[]))
            .await
            .unwrap()
            .len(),
        1
    );
    // What was published while Redis was down arrives once it is back, each message once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received(&b.ns, r#"["queued"]"#) < 2000 {
        assert!(
            Instant::now() < deadline,
            "only {} of 2000 queued broadcasts arrived",
            received(&b.ns, r#"["queued"]"#)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received(&b.ns, r#"["queued"]"#), 2000);
    assert_eq!(a.factory.queue_stats().dropped, 0);
    assert_eq!(a.factory.queue_stats().queued, 0);
    a.factory.close().await;
    b.factory.close().await;
}

/// How many broadcasts `ns` received whose payload is exactly `json`.
fn received(ns: &TestNs, json: &str) -> usize {
    ns.events()
        .iter()
        .filter(|e| matches!(e, Event::Broadcast(p, _) if p.json == json))
        .count()
}

/// Broadcasts a fresh probe from `from` until `to` receives one; returns the probes sent.
async fn until_delivered(from: &Node, to: &Node, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut probes = Vec::new();
    loop {
        let json = format!(r#"["{what}",{}]"#, probes.len());
        from.adapter
            .broadcast(&payload(&json, &[]), &opts(&[], &[]));
        probes.push(json);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if probes.iter().any(|p| received(&to.ns, p) > 0) {
            return probes;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: broadcasts did not resume"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_is_reported_and_reconnected() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "frozen", "/").await;
    let b = native(&redis, "frozen", "/").await;
    wait_servers(&a.adapter, 2).await;
    // Presence writes keep the publisher writing all the time, as in a server.
    a.factory.start_presence(
        "127.0.0.1:1".into(),
        Arc::new(|| 1),
        Duration::from_millis(100),
    );
    until_delivered(&a, &b, "warm-a").await;
    until_delivered(&b, &a, "warm-b").await;
    let is_down = |n: &Node| {
        n.statuses
            .lock()
            .unwrap()
            .last()
            .is_some_and(|s| matches!(s, AdapterStatus::Disconnected(_)))
    };

    // Frozen: the connections stay open but nothing answers. Both servers keep publishing,
    // which must not hide it.
    redis.signal("STOP");
    let frozen = Instant::now();
    let mut sent: Vec<(usize, String)> = Vec::new();
    while !(is_down(&a) && is_down(&b)) {
        assert!(
            frozen.elapsed() < Duration::from_secs(8),
            "a frozen Redis was not reported: {:?} / {:?}",
            a.statuses.lock().unwrap(),
            b.statuses.lock().unwrap()
        );
        for (i, node) in [&a, &b].into_iter().enumerate() {
            let json = format!(r#"["frozen",{}]"#, sent.len());
            node.adapter
                .broadcast(&payload(&json, &[]), &opts(&[], &[]));
            sent.push((i, json));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("frozen Redis reported after {:?}", frozen.elapsed());
    for node in [&a, &b] {
        let statuses = node.statuses.lock().unwrap().clone();
        assert!(
            matches!(&statuses[..], [AdapterStatus::Connected, AdapterStatus::Disconnected(why)] if why.contains("PING")),
            "{statuses:?}"
        );
    }
    // Down: requests fail at once, publishing neither blocks nor fails the caller.
    let started = Instant::now();
    assert!(matches!(
        a.adapter.fetch_sockets(&opts(&[], &[])).await,
        Err(AdapterError::Unavailable(_))
    ));
    assert!(a.factory.servers().await.is_err());
    for _ in 0..1000 {
        b.adapter
            .broadcast(&payload(r#"["held"]"#, &[]), &opts(&[], &[]));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );

    // Still frozen: reconnection attempts fail and nothing is reported up meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(is_down(&a) && is_down(&b));
    assert_eq!(a.statuses.lock().unwrap().len(), 2);
    assert_eq!(b.statuses.lock().unwrap().len(), 2);

    redis.signal("CONT");
    wait_status(&a, |s| *s == AdapterStatus::Connected).await;
    wait_status(&b, |s| *s == AdapterStatus::Connected).await;
    let probes_a = until_delivered(&a, &b, "thawed-a").await;
    let probes_b = until_delivered(&b, &a, "thawed-b").await;
    wait_servers(&a.adapter, 2).await;
    b.ns.add_socket("b1", &["b1"]);
    assert_eq!(
        a.adapter
            .fetch_sockets(&opts(&[], &[]))
            .await
            .expect("requests are answered again")
            .len(),
        1
    );

    // Exactly once: no duplicate subscription, no command written twice.
    a.adapter
        .broadcast(&payload(r#"["once-a"]"#, &[]), &opts(&[], &[]));
    b.adapter
        .broadcast(&payload(r#"["once-b"]"#, &[]), &opts(&[], &[]));
    b.ns.wait_for("once-a", |e| is_broadcast(e, "once-a")).await;
    a.ns.wait_for("once-b", |e| is_broadcast(e, "once-b")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&b.ns, r#"["once-a"]"#), 1);
    assert_eq!(received(&a.ns, r#"["once-b"]"#), 1);
    for p in &probes_a {
        assert!(received(&b.ns, p) <= 1, "{p} reached b twice");
    }
    for p in &probes_b {
        assert!(received(&a.ns, p) <= 1, "{p} reached a twice");
    }
    // Nothing published while frozen was lost or written twice: the connections were kept,
    // and the server answered all of it once it ran again.
    for (from, p) in &sent {
        let to = if *from == 0 { &b } else { &a };
        assert_eq!(received(&to.ns, p), 1, "{p} from node {from}");
    }
    assert_eq!(received(&a.ns, r#"["held"]"#), 1000);
    for node in [&a, &b] {
        let statuses = node.statuses.lock().unwrap().clone();
        assert_eq!(statuses.len(), 3, "{statuses:?}");
    }
    a.factory.close().await;
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_network_path_is_reported_and_replaced() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let path = SilentPath::start(redis.port).await;
    // `a` reaches Redis through the path, `b` directly.
    let a = native_with(config_at(path.port, "silent"), "/").await;
    let b = native(&redis, "silent", "/").await;
    wait_servers(&a.adapter, 2).await;
    until_delivered(&a, &b, "warm-a").await;
    until_delivered(&b, &a, "warm-b").await;

    path.cut();
    let cut = Instant::now();
    let mut sent = Vec::new();
    while !a
        .statuses
        .lock()
        .unwrap()
        .last()
        .is_some_and(|s| matches!(s, AdapterStatus::Disconnected(_)))
    {
        assert!(
            cut.elapsed() < Duration::from_secs(8),
            "a dead path was not reported: {:?}",
            a.statuses.lock().unwrap()
        );
        let json = format!(r#"["cut",{}]"#, sent.len());
        a.adapter.broadcast(&payload(&json, &[]), &opts(&[], &[]));
        sent.push(json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("dead path reported after {:?}", cut.elapsed());
    let started = Instant::now();
    assert!(matches!(
        a.adapter.all_rooms().await,
        Err(AdapterError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(500));
    // Reconnection attempts over the dead path fail; nothing is reported up meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.statuses.lock().unwrap().len(), 2);
    assert_eq!(*b.statuses.lock().unwrap(), vec![AdapterStatus::Connected]);

    // A new route: the old connections never answer again, so both of `a`'s connections must
    // have been replaced, and the subscriber must have subscribed again.
    path.restore();
    wait_status(&a, |s| *s == AdapterStatus::Connected).await;
    let probes_a = until_delivered(&a, &b, "restored-a").await;
    let probes_b = until_delivered(&b, &a, "restored-b").await;
    wait_servers(&b.adapter, 2).await;
    a.adapter
        .broadcast(&payload(r#"["once-a"]"#, &[]), &opts(&[], &[]));
    b.adapter
        .broadcast(&payload(r#"["once-b"]"#, &[]), &opts(&[], &[]));
    b.ns.wait_for("once-a", |e| is_broadcast(e, "once-a")).await;
    a.ns.wait_for("once-b", |e| is_broadcast(e, "once-b")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(&b.ns, r#"["once-a"]"#), 1);
    assert_eq!(received(&a.ns, r#"["once-b"]"#), 1);
    for p in probes_a.iter().chain(&sent) {
        assert!(received(&b.ns, p) <= 1, "{p} reached b twice");
    }
    for p in &probes_b {
        assert!(received(&a.ns, p) <= 1, "{p} reached a twice");
    }
    assert_eq!(a.statuses.lock().unwrap().len(), 3);
    a.factory.close().await;
    b.factory.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_picks_the_least_loaded_worker() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = native(&redis, "p", "/").await;
    let b = native(&redis, "p", "/").await;
    let c = native(&redis, "p", "/").await;
    assert_eq!(a.factory.pick_server().await.unwrap(), None);

    a.factory.report_load("10.0.0.1:3001", 7);
    b.factory.start_presence(
        "10.0.0.1:3002".into(),
        Arc::new(|| 3),
        Duration::from_millis(100),
    );
    c.factory.start_presence(
        "10.0.0.1:3003".into(),
        Arc::new(|| 5),
        Duration::from_millis(100),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.factory.servers().await.unwrap().len() < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.factory.servers().await.unwrap(),
        vec![
            ("10.0.0.1:3002".to_owned(), 3),
            ("10.0.0.1:3003".to_owned(), 5),
            ("10.0.0.1:3001".to_owned(), 7)
        ]
    );
    assert_eq!(
        c.factory.pick_server().await.unwrap(),
        Some(("10.0.0.1:3002".into(), 3))
    );

    // Closing deletes the key at once; a worker that dies without closing lapses with its TTL.
    b.factory.close().await;
    assert_eq!(
        a.factory.pick_server().await.unwrap(),
        Some(("10.0.0.1:3003".into(), 5))
    );
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.factory.servers().await.unwrap().len() > 1 {
        assert!(Instant::now() < deadline, "{:?}", a.factory.servers().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.factory.pick_server().await.unwrap(),
        Some(("10.0.0.1:3001".into(), 7))
    );
    a.factory.close().await;
    assert!(
        b.factory.servers().await.is_err(),
        "closed factory still answers"
    );
}

// ---------------------------------------------------------------------------------------------
// Native ⇄ Node
// ---------------------------------------------------------------------------------------------

/// A Node process running socket.io 4 with `@socket.io/redis-adapter`, a socket.io-client
/// connected to it and a `@socket.io/redis-emitter`, driven by JSON lines on stdin.
struct NodePeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Json>,
    next_id: u64,
    ready: Json,
}

const NODE_PEER: &str = r#"
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");
const { io: connect } = require("socket.io-client");
const readline = require("readline");

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const show = (a) => (Buffer.isBuffer(a) || a instanceof ArrayBuffer ? { bin: Buffer.from(a).toString("hex") } : a);

(async () => {
  const key = process.env.KEY;
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  const epub = pub.duplicate();
  for (const c of [pub, sub, epub]) c.on("error", (e) => console.error("redis:", e.message));
  await Promise.all([pub.connect(), sub.connect(), epub.connect()]);
  const io = new Server({ transports: ["websocket"] });
  io.adapter(createAdapter(pub, sub, { key, requestsTimeout: 3000 }));
  const emitter = new Emitter(epub, { key });
  const serverSideEmits = [];
  io.on("ping-node", (...args) => {
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    serverSideEmits.push(args.map(show));
    if (cb) cb({ pong: "node", args: args.map(show) });
  });
  io.on("connection", (socket) => socket.join("noderoom"));
  const httpServer = require("http").createServer();
  io.attach(httpServer);
  const port = await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", () => resolve(httpServer.address().port)));

  const client = connect(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false });
  const clientEvents = [];
  client.onAny((ev, ...args) => {
    const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
    clientEvents.push([ev, args.map(show)]);
    if (cb) cb("ack-" + args[0]);
  });
  client.on("disconnect", (reason) => clientEvents.push(["disconnect", [reason]]));
  await new Promise((r) => client.on("connect", r));

  const handle = async (cmd) => {
    switch (cmd.op) {
      case "emit": io.emit("fromNode", "text", Buffer.from([1, 2, 3]), { n: 1.5 }, new Date(1700000000123)); return true;
      case "emitRoom": io.to(cmd.room).except("nobody").emit("fromNodeRoom", cmd.room); return true;
      case "clientEvents": return clientEvents;
      case "serverSideEmits": return serverSideEmits;
      case "fetchSockets": return (await io.fetchSockets()).map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, handshake: s.handshake }));
      case "serverSideEmitWithAck": return await io.serverSideEmitWithAck("ping-rust", 1, Buffer.from([7]));
      case "allRooms": return [...(await io.of("/").adapter.allRooms())];
      case "serverCount": return await io.of("/").adapter.serverCount();
      case "emitWithAck": return await io.timeout(2500).emitWithAck("needAck", 1);
      case "nodeRooms": return [...io.of("/").sockets.get(client.id).rooms];
      case "emitter": {
        emitter.to("r1").emit("fromEmitter", "hi", Buffer.from([9]));
        emitter.in("r1").socketsJoin("r2");
        emitter.in("r2").socketsLeave("r1");
        emitter.in("r3").disconnectSockets(true);
        emitter.serverSideEmit("fromEmitterServer", 42);
        return true;
      }
      case "quit": setTimeout(() => process.exit(0), 10); return true;
    }
    throw new Error("unknown op " + cmd.op);
  };

  out({ ready: true, sid: client.id });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line);
    try { out({ id: cmd.id, ok: await handle(cmd) }); } catch (e) { out({ id: cmd.id, error: String((e && e.message) || e) }); }
  }
})().catch((e) => { out({ fatal: String((e && e.stack) || e) }); process.exit(1); });
"#;

impl NodePeer {
    fn start(redis: &RedisServer, key: &str) -> Option<NodePeer> {
        let node_modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules");
        let Some(node) = find_in_path("node") else {
            eprintln!("SKIPPED: node is not in PATH");
            return None;
        };
        for package in [
            "@socket.io/redis-adapter",
            "@socket.io/redis-emitter",
            "socket.io",
            "socket.io-client",
            "redis",
        ] {
            if !node_modules.join(package).is_dir() {
                eprintln!("SKIPPED: node_modules/{package} is missing (run npm install)");
                return None;
            }
        }
        let script = std::env::temp_dir().join(format!(
            "weroll-redis-peer-{}-{}.js",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&script, NODE_PEER).unwrap();
        let mut child = Command::new(node)
            .arg(&script)
            .env("NODE_PATH", &node_modules)
            .env("REDIS_URL", redis.url())
            .env("KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Json>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("node: {line}"),
                }
            }
        });
        let ready = lines.blocking_recv_timeout(Duration::from_secs(20));
        let _ = std::fs::remove_file(&script);
        let ready = ready.expect("node peer started");
        assert_eq!(ready["ready"], json!(true), "node peer failed: {ready}");
        Some(NodePeer {
            child,
            stdin,
            lines,
            next_id: 0,
            ready,
        })
    }

    async fn call(&mut self, op: &str, extra: Json) -> Json {
        self.next_id += 1;
        let mut cmd = json!({"id": self.next_id, "op": op});
        if let (Some(c), Some(e)) = (cmd.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("node did not answer {op}"))
                .expect("node exited");
            if line["id"] == json!(self.next_id) {
                if let Some(err) = line.get("error") {
                    panic!("node {op} failed: {err}");
                }
                return line["ok"].clone();
            }
        }
    }

    fn sid(&self) -> String {
        self.ready["sid"].as_str().unwrap().to_owned()
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `recv` with a deadline from synchronous code.
trait BlockingRecv<T> {
    fn blocking_recv_timeout(&mut self, d: Duration) -> Option<T>;
}

impl<T> BlockingRecv<T> for mpsc::UnboundedReceiver<T> {
    fn blocking_recv_timeout(&mut self, d: Duration) -> Option<T> {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            match self.try_recv() {
                Ok(v) => return Some(v),
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interoperates_with_node_socket_io_and_the_emitter() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let native = native(&redis, "socket.io", "/").await;
    let Some(mut node) = NodePeer::start(&redis, "socket.io") else {
        native.factory.close().await;
        return;
    };
    wait_servers(&native.adapter, 2).await;
    assert_eq!(node.call("serverCount", json!({})).await, json!(2));
    native.ns.add_socket("rust-1", &["rust-1", "rustroom"]);
    *native.ns.rooms.lock().unwrap() = vec!["rustroom".into()];
    *native.ns.ack.lock().unwrap() = Some(payload(r#"[{"from":"rust"}]"#, &[]));
    let node_sid = node.sid();

    // Node io.emit with a Buffer and a Date → our namespace, binary as an attachment.
    node.call("emit", json!({})).await;
    let e = native
        .ns
        .wait_for("broadcast from node", |e| is_broadcast(e, "fromNode"))
        .await;
    assert_eq!(
        e,
        Event::Broadcast(
            payload(
                r#"["fromNode","text",{"_placeholder":true,"num":0},{"n":1.5},"2023-11-14T22:13:20.123Z"]"#,
                &[&[1, 2, 3]]
            ),
            opts(&[], &[])
        )
    );
    node.call("emitRoom", json!({"room": "rustroom"})).await;
    let e = native
        .ns
        .wait_for("room broadcast from node", |e| {
            is_broadcast(e, "fromNodeRoom")
        })
        .await;
    assert_eq!(
        e,
        Event::Broadcast(
            payload(r#"["fromNodeRoom","rustroom"]"#, &[]),
            opts(&["rustroom"], &["nobody"])
        )
    );

    // Our broadcasts → the Node server's client (to all, to its room, not to another room).
    native.adapter.broadcast(
        &payload(
            r#"["fromRust","x",{"_placeholder":true,"num":0}]"#,
            &[&[10, 11]],
        ),
        &opts(&[], &[]),
    );
    native.adapter.broadcast(
        &payload(r#"["toOtherRoom"]"#, &[]),
        &opts(&["elsewhere"], &[]),
    );
    native.adapter.broadcast(
        &payload(r#"["toNodeRoom",{"deep":[1,null,"s"]}]"#, &[]),
        &opts(&["noderoom"], &[]),
    );
    native.adapter.broadcast(
        &payload(r#"["excluded"]"#, &[]),
        &opts(&[], &[node_sid.as_str()]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = node.call("clientEvents", json!({})).await;
        if events
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x[0] == "toNodeRoom"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "node client got {events}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = node.call("clientEvents", json!({})).await;
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e[0].as_str())
        .collect();
    // Its own io.emit, then ours (not the one to another room, not the one excepting it).
    assert_eq!(names, ["fromNode", "fromRust", "toNodeRoom"], "{events}");
    assert_eq!(
        events[0][1],
        json!(["text", {"bin": "010203"}, {"n": 1.5}, "2023-11-14T22:13:20.123Z"])
    );
    assert_eq!(events[1][1], json!(["x", {"bin": "0a0b"}]));
    assert_eq!(events[2][1], json!([{"deep": [1, null, "s"]}]));

    // Node's requests complete with our answers, without waiting for the timeout.
    let started = Instant::now();
    let sockets = node.call("fetchSockets", json!({})).await;
    let ours = sockets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "rust-1")
        .expect("our socket");
    assert_eq!(ours["rooms"], json!(["rust-1", "rustroom"]));
    assert_eq!(ours["data"], json!({"user": "rust-1"}));
    assert_eq!(ours["handshake"]["address"], json!("10.1.2.3"));
    let rooms = node.call("allRooms", json!({})).await;
    assert!(
        rooms.as_array().unwrap().contains(&json!("rustroom")),
        "{rooms}"
    );
    assert!(
        rooms.as_array().unwrap().contains(&json!("noderoom")),
        "{rooms}"
    );
    let acks = node.call("serverSideEmitWithAck", json!({})).await;
    assert_eq!(acks, json!([{"from": "rust"}]));
    let e = native
        .ns
        .wait_for("serverSideEmit from node", |e| {
            matches!(e, Event::ServerSideEmit(_))
        })
        .await;
    assert_eq!(
        e,
        Event::ServerSideEmit(payload(
            r#"["ping-rust",1,{"type":"Buffer","data":[7]}]"#,
            &[]
        ))
    );
    // A broadcast expecting acks: we deliver it and announce no acks of ours.
    let acks = node.call("emitWithAck", json!({})).await;
    assert_eq!(acks, json!(["ack-1"]));
    native
        .ns
        .wait_for("broadcast-with-ack from node", |e| {
            is_broadcast(e, "needAck")
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "node waited {:?}",
        started.elapsed()
    );

    // Our requests to Node.
    let sockets = native
        .adapter
        .fetch_sockets(&opts(&["noderoom"], &[]))
        .await
        .unwrap();
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].id, node_sid);
    assert!(sockets[0].rooms.contains(&"noderoom".to_owned()));
    assert!(
        sockets[0].handshake["headers"].is_object(),
        "{:?}",
        sockets[0].handshake
    );
    let rooms = native.adapter.all_rooms().await.unwrap();
    assert!(rooms.contains(&"noderoom".to_owned()), "{rooms:?}");
    let acks = native
        .adapter
        .server_side_emit(
            &payload(
                r#"["ping-node","a",{"_placeholder":true,"num":0}]"#,
                &[&[5]],
            ),
            Some(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(
        acks,
        vec![payload(
            r#"[{"pong":"node","args":["a",{"bin":"05"}]}]"#,
            &[]
        )]
    );
    native
        .adapter
        .server_side_emit(&payload(r#"["ping-node","no ack"]"#, &[]), None)
        .await
        .unwrap();
    native
        .adapter
        .sockets_join(&opts(&[&node_sid], &[]), &["joined-by-rust".into()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rooms = node.call("nodeRooms", json!({})).await;
        if rooms.as_array().unwrap().contains(&json!("joined-by-rust")) {
            break;
        }
        assert!(Instant::now() < deadline, "node rooms {rooms}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let emits = node.call("serverSideEmits", json!({})).await;
    assert_eq!(emits, json!([["a", {"bin": "05"}], ["no ack"]]));

    // The emitter reaches our namespace.
    native.ns.clear();
    node.call("emitter", json!({})).await;
    let e = native
        .ns
        .wait_for("emitter broadcast", |e| is_broadcast(e, "fromEmitter"))
        .await;
    assert_eq!(
        e,
        Event::Broadcast(
            payload(
                r#"["fromEmitter","hi",{"_placeholder":true,"num":0}]"#,
                &[&[9]]
            ),
            opts(&["r1"], &[])
        )
    );
    let e = native
        .ns
        .wait_for("emitter join", |e| matches!(e, Event::Join(..)))
        .await;
    assert_eq!(e, Event::Join(opts(&["r1"], &[]), vec!["r2".into()]));
    let e = native
        .ns
        .wait_for("emitter leave", |e| matches!(e, Event::Leave(..)))
        .await;
    assert_eq!(e, Event::Leave(opts(&["r2"], &[]), vec!["r1".into()]));
    let e = native
        .ns
        .wait_for("emitter disconnect", |e| matches!(e, Event::Disconnect(..)))
        .await;
    assert_eq!(e, Event::Disconnect(opts(&["r3"], &[]), true));
    let e = native
        .ns
        .wait_for("emitter serverSideEmit", |e| {
            matches!(e, Event::ServerSideEmit(_))
        })
        .await;
    assert_eq!(
        e,
        Event::ServerSideEmit(payload(r#"["fromEmitterServer",42]"#, &[]))
    );

    // Finally our disconnectSockets reaches the Node client.
    native
        .adapter
        .disconnect_sockets(&opts(&[&node_sid], &[]), false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = node.call("clientEvents", json!({})).await;
        if events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e[0] == "disconnect")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node client still connected: {events}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.call("quit", json!({})).await;
    native.factory.close().await;
}
