//! Load generator for `npm run bench`: many Socket.IO v5 clients over Engine.IO v4 websockets,
//! spoken directly (no client library), driven by `bench/run.js` through stdin/stdout lines.
//!
//! Every mode first opens `--conns` connections (`0{...}` open, `40`, `40{"sid":...}`), answers
//! each server ping `2` with `3`, prints `{"event":"ready",...}`, then waits for `go` on stdin,
//! runs its phase, prints `{"event":"result",...}` and exits on `stop` (or end of stdin).
//!
//! - `idle`: holds the connections for `--duration` seconds and counts those the server dropped.
//! - `bcast`: one extra connection (the sender, on `--sender-port`) sends `--rate` broadcasts a
//!   second for `--duration` seconds; every connection counts the `bcast` events it receives and
//!   records their latency (the payload carries the send time).
//! - `echo`: every connection keeps `--depth` `echo` requests in flight for `--duration` seconds.
//!
//! Per-connection memory is kept small: a task, a 2 KiB read buffer and one counter.

mod hist;
mod packet;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, timeout, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

use hist::Histogram;
use packet::{parse_event, Incoming};

type Ws = WebSocketStream<TcpStream>;

/// Phases every connection task watches.
const CONNECTING: u8 = 0;
const GO: u8 = 1;
const DRAIN: u8 = 2;
const STOP: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    Bcast,
    Echo,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Holds the connection; counts `bcast` events in bcast mode.
    Receiver,
    /// Sends the broadcasts (and receives them too, as every client does).
    Sender,
    /// Closed-loop echo requests.
    Echo,
}

struct Args {
    mode: Mode,
    host: Ipv4Addr,
    ports: Vec<u16>,
    conns: usize,
    offset: usize,
    src: Option<Ipv4Addr>,
    src_count: u32,
    sender_port: u16,
    rate: f64,
    duration: f64,
    drain: f64,
    depth: u32,
    /// bcast: 0 sends at `--rate`; W > 0 keeps W broadcasts in flight (the next one leaves when
    /// the sender gets one of its own back), `--rate` × `--duration` of them in all.
    window: u32,
    pad: usize,
    concurrency: usize,
    connect_timeout: f64,
    threads: usize,
    max_life: f64,
}

const USAGE: &str = "usage: loadgen idle|bcast|echo --ports P[,P...] --conns N [--host 127.0.0.1] \
[--offset I] [--src 127.1.0.1 --src-count K] [--sender-port P] [--rate R] [--duration S] [--drain S] \
[--depth D] [--window W] [--pad BYTES] [--concurrency C] [--connect-timeout S] [--threads T] [--max-life S]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("idle") => Mode::Idle,
        Some("bcast") => Mode::Bcast,
        Some("echo") => Mode::Echo,
        other => return Err(format!("unknown mode {other:?}")),
    };
    let mut a = Args {
        mode,
        host: Ipv4Addr::LOCALHOST,
        ports: Vec::new(),
        conns: 0,
        offset: 0,
        src: None,
        src_count: 1,
        sender_port: 0,
        rate: 10.0,
        duration: 10.0,
        drain: 20.0,
        depth: 1,
        window: 0,
        pad: 0,
        concurrency: 128,
        connect_timeout: 20.0,
        threads: 1,
        max_life: 900.0,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v:?}: {e}");
        match flag.as_str() {
            "--host" => a.host = v.parse().map_err(|e| bad(&e))?,
            "--ports" => {
                a.ports = v.split(',').map(|p| p.parse::<u16>()).collect::<Result<_, _>>().map_err(|e| bad(&e))?
            }
            "--conns" => a.conns = v.parse().map_err(|e| bad(&e))?,
            "--offset" => a.offset = v.parse().map_err(|e| bad(&e))?,
            "--src" => a.src = Some(v.parse().map_err(|e| bad(&e))?),
            "--src-count" => a.src_count = v.parse().map_err(|e| bad(&e))?,
            "--sender-port" => a.sender_port = v.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = v.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = v.parse().map_err(|e| bad(&e))?,
            "--drain" => a.drain = v.parse().map_err(|e| bad(&e))?,
            "--depth" => a.depth = v.parse().map_err(|e| bad(&e))?,
            "--window" => a.window = v.parse().map_err(|e| bad(&e))?,
            "--pad" => a.pad = v.parse().map_err(|e| bad(&e))?,
            "--concurrency" => a.concurrency = v.parse().map_err(|e| bad(&e))?,
            "--connect-timeout" => a.connect_timeout = v.parse().map_err(|e| bad(&e))?,
            "--threads" => a.threads = v.parse().map_err(|e| bad(&e))?,
            "--max-life" => a.max_life = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.ports.is_empty() {
        return Err("--ports is required".into());
    }
    if a.mode == Mode::Bcast && a.sender_port == 0 {
        return Err("bcast needs --sender-port".into());
    }
    if a.src_count == 0 || a.concurrency == 0 || a.depth == 0 || !(a.rate > 0.0) {
        return Err("--src-count, --concurrency, --depth and --rate must be positive".into());
    }
    Ok(a)
}

/// Microseconds since the loadgen started: send times travel in payloads and come back.
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// State shared by the connection tasks and the driver.
struct Shared {
    connected: AtomicUsize,
    failed: AtomicUsize,
    dropped: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// `bcast` events received, one slot per connection (the sender's is the last).
    counts: Vec<AtomicU32>,
    received: AtomicU64,
    first_recv_us: AtomicU64,
    last_recv_us: AtomicU64,
    /// Broadcasts sent so far, and the time of the first.
    sent: AtomicU64,
    first_send_us: AtomicU64,
    /// Echo round trips completed while in GO, and requests still unanswered.
    round_trips: AtomicU64,
    outstanding: AtomicI64,
    latency: Histogram,
    send_errors: AtomicU64,
}

impl Shared {
    fn error(&self, what: String) {
        let mut e = self.first_error.lock().unwrap();
        if e.is_none() {
            *e = Some(what);
        }
    }
}

struct Conn {
    id: usize,
    role: Role,
    addr: SocketAddrV4,
    src: Option<Ipv4Addr>,
}

struct Ctx {
    args: Args,
    shared: Shared,
    permits: Semaphore,
    phase: watch::Receiver<u8>,
    /// Number of broadcasts the sender sends.
    to_send: u64,
    payload_pad: String,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(2048).write_buffer_size(0)
}

/// TCP connect (from `src` when given), websocket upgrade, Engine.IO open and Socket.IO connect.
async fn open(addr: SocketAddrV4, src: Option<Ipv4Addr>, limit: Duration) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0))).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = timeout(limit, sock.connect(SocketAddr::V4(addr)))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = timeout(limit, client_async_with_config(url, stream, Some(ws_config())))
        .await
        .map_err(|_| format!("upgrade {addr}: timed out"))?
        .map_err(|e| format!("upgrade {addr}: {e}"))?;
    let handshake = async {
        let mut opened = false;
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => return Err(format!("{addr}: closed during handshake")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("{addr}: {e}")),
            };
            let t = text.as_str();
            if !opened && t.starts_with('0') {
                opened = true;
                ws.send(Message::text("40")).await.map_err(|e| format!("{addr}: send 40: {e}"))?;
            } else if t == "2" {
                ws.send(Message::text("3")).await.map_err(|e| format!("{addr}: pong: {e}"))?;
            } else if opened && t.starts_with("40") {
                return Ok(());
            } else if t.starts_with("44") {
                return Err(format!("{addr}: connect refused: {t}"));
            }
        }
    };
    timeout(limit, handshake).await.map_err(|_| format!("handshake {addr}: timed out"))??;
    Ok(ws)
}

fn event_frame(kind: &str, seq: u64, pad: &str) -> Message {
    if pad.is_empty() {
        Message::text(format!("42[\"m\",[\"{kind}\",[{seq},{}]]]", now_us()))
    } else {
        Message::text(format!("42[\"m\",[\"{kind}\",[{seq},{},\"{pad}\"]]]", now_us()))
    }
}

/// Sends broadcast `seq` (and counts it); false when the connection failed.
async fn send_bcast(ws: &mut Ws, sh: &Shared, seq: &mut u64, pad: &str) -> bool {
    let _ = sh.first_send_us.compare_exchange(0, now_us(), Relaxed, Relaxed);
    let frame = event_frame("bcast", *seq, pad);
    *seq += 1;
    if ws.send(frame).await.is_err() {
        sh.send_errors.fetch_add(1, Relaxed);
        return false;
    }
    sh.sent.fetch_add(1, Relaxed);
    true
}

async fn connection(ctx: Arc<Ctx>, c: Conn) {
    let limit = Duration::from_secs_f64(ctx.args.connect_timeout);
    let sh = &ctx.shared;
    let ws = {
        let _permit = ctx.permits.acquire().await.expect("semaphore closed");
        open(c.addr, c.src, limit).await
    };
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            sh.failed.fetch_add(1, Relaxed);
            sh.error(e);
            return;
        }
    };
    sh.connected.fetch_add(1, Relaxed);
    let mut phase = ctx.phase.clone();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut seq: u64 = 0;
    let mut go_seen = false;
    loop {
        let sending = ticker.is_some() && seq < ctx.to_send;
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                match parse_event(text.as_str()) {
                    Incoming::Ping => {
                        if ws.send(Message::text("3")).await.is_err() {
                            break;
                        }
                    }
                    Incoming::Closed => break,
                    Incoming::Event { name, seq: _, sent_us } => {
                        let now = now_us();
                        if name == "bcast" && c.role != Role::Echo {
                            sh.counts[c.id].fetch_add(1, Relaxed);
                            sh.received.fetch_add(1, Relaxed);
                            let _ = sh.first_recv_us.compare_exchange(0, now, Relaxed, Relaxed);
                            sh.last_recv_us.fetch_max(now, Relaxed);
                            if c.role == Role::Receiver {
                                sh.latency.record(now.saturating_sub(sent_us));
                            } else if ctx.args.window > 0
                                && go_seen
                                && seq < ctx.to_send
                                // Burst: one of ours came back; the next one leaves.
                                && !send_bcast(&mut ws, sh, &mut seq, &ctx.payload_pad).await
                            {
                                break;
                            }
                        } else if name == "echo" && c.role == Role::Echo {
                            sh.outstanding.fetch_sub(1, Relaxed);
                            if *phase.borrow() == GO {
                                sh.round_trips.fetch_add(1, Relaxed);
                                sh.latency.record(now.saturating_sub(sent_us));
                                seq += 1;
                                sh.outstanding.fetch_add(1, Relaxed);
                                if ws.send(event_frame("echo", seq, &ctx.payload_pad)).await.is_err() {
                                    sh.send_errors.fetch_add(1, Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                    Incoming::Other => {}
                }
            }
            r = phase.changed() => {
                if r.is_err() {
                    return;
                }
                let p = *phase.borrow_and_update();
                if p == STOP {
                    return;
                }
                if p == GO && !go_seen {
                    go_seen = true;
                    match c.role {
                        Role::Sender if ctx.args.window > 0 => {
                            while seq < ctx.to_send && seq < u64::from(ctx.args.window) {
                                if !send_bcast(&mut ws, sh, &mut seq, &ctx.payload_pad).await {
                                    break;
                                }
                            }
                        }
                        Role::Sender => {
                            let period = Duration::from_secs_f64(1.0 / ctx.args.rate);
                            let mut t = tokio::time::interval(period);
                            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
                            ticker = Some(t);
                        }
                        Role::Echo => {
                            for _ in 0..ctx.args.depth {
                                seq += 1;
                                sh.outstanding.fetch_add(1, Relaxed);
                                if ws.send(event_frame("echo", seq, &ctx.payload_pad)).await.is_err() {
                                    sh.send_errors.fetch_add(1, Relaxed);
                                }
                            }
                        }
                        Role::Receiver => {}
                    }
                }
            }
            _ = async { ticker.as_mut().expect("ticker").tick().await }, if sending => {
                if !send_bcast(&mut ws, sh, &mut seq, &ctx.payload_pad).await {
                    break;
                }
            }
        }
    }
    if *phase.borrow() != STOP {
        sh.dropped.fetch_add(1, Relaxed);
    }
}

/// The `n`th source address after `base`, skipping .0 and .255 in the last octet.
fn source_ip(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    let b = u32::from(base);
    let (hi, lo) = (b & !0xff, (b & 0xff).clamp(1, 254) - 1);
    let k = lo + n;
    Ipv4Addr::from(hi + (k / 254) * 256 + (k % 254) + 1)
}

fn print_json(fields: &[(&str, String)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
}

fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn f(v: f64) -> String {
    if v.is_finite() { format!("{v:.6}") } else { "null".into() }
}

async fn run(args: Args) {
    let mode = args.mode;
    let n = args.conns;
    let with_sender = mode == Mode::Bcast;
    let total = n + usize::from(with_sender);
    let to_send = if with_sender { (args.rate * args.duration).round().max(1.0) as u64 } else { 0 };
    let (phase_tx, phase_rx) = watch::channel(CONNECTING);
    let ctx = Arc::new(Ctx {
        shared: Shared {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            counts: (0..total).map(|_| AtomicU32::new(0)).collect(),
            received: AtomicU64::new(0),
            first_recv_us: AtomicU64::new(0),
            last_recv_us: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            first_send_us: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            latency: Histogram::new(),
            send_errors: AtomicU64::new(0),
        },
        permits: Semaphore::new(args.concurrency),
        phase: phase_rx,
        to_send,
        payload_pad: "x".repeat(args.pad),
        args,
    });
    let a = &ctx.args;
    let life = Duration::from_secs_f64(a.max_life);
    tokio::spawn(async move {
        sleep(life).await;
        eprintln!("loadgen: --max-life reached, exiting");
        std::process::exit(3);
    });

    // stdin commands: go, stop (end of input means stop).
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if cmd_tx.send(line.trim().to_string()).is_err() {
                return;
            }
        }
        let _ = cmd_tx.send("stop".into());
    });

    let started = Instant::now();
    let addr = |port: u16| SocketAddrV4::new(a.host, port);
    let src = |i: usize| a.src.map(|base| source_ip(base, (i as u32) % a.src_count));
    if with_sender {
        let c = Conn { id: n, role: Role::Sender, addr: addr(a.sender_port), src: src(n) };
        tokio::spawn(connection(ctx.clone(), c));
    }
    for i in 0..n {
        let role = if mode == Mode::Echo { Role::Echo } else { Role::Receiver };
        let port = a.ports[(a.offset + i) % a.ports.len()];
        let c = Conn { id: i, role, addr: addr(port), src: src(i) };
        tokio::spawn(connection(ctx.clone(), c));
    }

    let sh = &ctx.shared;
    let mut last_progress = Instant::now();
    loop {
        let done = sh.connected.load(Relaxed) + sh.failed.load(Relaxed);
        if done >= total {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            print_json(&[
                ("event", q("progress")),
                ("connected", sh.connected.load(Relaxed).to_string()),
                ("failed", sh.failed.load(Relaxed).to_string()),
            ]);
        }
        sleep(Duration::from_millis(20)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let err = sh.first_error.lock().unwrap().clone();
    print_json(&[
        ("event", q("ready")),
        ("connected", sh.connected.load(Relaxed).to_string()),
        ("failed", sh.failed.load(Relaxed).to_string()),
        ("dropped", sh.dropped.load(Relaxed).to_string()),
        ("connect_s", f(connect_s)),
        ("error", err.as_deref().map(q).unwrap_or_else(|| "null".into())),
    ]);

    loop {
        match cmd_rx.recv().await.as_deref() {
            Some("go") => break,
            Some("stop") | None => {
                let _ = phase_tx.send(STOP);
                std::process::exit(0);
            }
            _ => {}
        }
    }
    let dropped_before = sh.dropped.load(Relaxed);
    let go_us = now_us();
    let _ = phase_tx.send(GO);
    let duration = Duration::from_secs_f64(a.duration);
    let drain = Duration::from_secs_f64(a.drain);
    let mut out: Vec<(&str, String)> = vec![("event", q("result"))];
    match mode {
        Mode::Idle => {
            sleep(duration).await;
            let connected = sh.connected.load(Relaxed);
            let dropped = sh.dropped.load(Relaxed);
            out.push(("connected", connected.to_string()));
            out.push(("dropped", dropped.to_string()));
            out.push(("dropped_during_hold", (dropped - dropped_before).to_string()));
            out.push(("held", (connected - dropped).to_string()));
            out.push(("hold_s", f(a.duration)));
        }
        Mode::Echo => {
            sleep(duration).await;
            let _ = phase_tx.send(DRAIN);
            let rts = sh.round_trips.load(Relaxed);
            let elapsed = (now_us() - go_us) as f64 / 1e6;
            let t = Instant::now();
            while sh.outstanding.load(Relaxed) > 0 && t.elapsed() < drain {
                sleep(Duration::from_millis(10)).await;
            }
            out.push(("connected", sh.connected.load(Relaxed).to_string()));
            out.push(("dropped", sh.dropped.load(Relaxed).to_string()));
            out.push(("round_trips", rts.to_string()));
            out.push(("elapsed_s", f(elapsed)));
            out.push(("rate", f(rts as f64 / elapsed)));
            out.push(("unanswered", sh.outstanding.load(Relaxed).to_string()));
        }
        Mode::Bcast => {
            // The sender paces itself; wait for it (bounded), then for the deliveries to drain.
            let send_limit = duration + drain;
            let t = Instant::now();
            while sh.sent.load(Relaxed) < to_send && t.elapsed() < send_limit {
                sleep(Duration::from_millis(10)).await;
            }
            let sent_s = (now_us() - go_us) as f64 / 1e6;
            let sent = sh.sent.load(Relaxed);
            let _ = phase_tx.send(DRAIN);
            let alive = |sh: &Shared| sh.connected.load(Relaxed) - sh.dropped.load(Relaxed);
            let t = Instant::now();
            while sh.received.load(Relaxed) < sent * alive(sh) as u64 && t.elapsed() < drain {
                sleep(Duration::from_millis(10)).await;
            }
            let received = sh.received.load(Relaxed);
            let (mut short, mut extra, mut missing) = (0u64, 0u64, 0u64);
            for c in &sh.counts {
                let got = c.load(Relaxed) as u64;
                if got < sent {
                    short += 1;
                    missing += sent - got;
                } else if got > sent {
                    extra += 1;
                }
            }
            let first_send = sh.first_send_us.load(Relaxed);
            let window = sh.last_recv_us.load(Relaxed).saturating_sub(first_send) as f64 / 1e6;
            out.push(("connected", sh.connected.load(Relaxed).to_string()));
            out.push(("failed", sh.failed.load(Relaxed).to_string()));
            out.push(("dropped", sh.dropped.load(Relaxed).to_string()));
            out.push(("sent", sent.to_string()));
            out.push(("to_send", to_send.to_string()));
            out.push(("send_s", f(sent_s)));
            out.push(("send_rate", f(sent as f64 / sent_s)));
            out.push(("clients", total.to_string()));
            out.push(("expected", (sent * total as u64).to_string()));
            out.push(("received", received.to_string()));
            out.push(("missing", missing.to_string()));
            out.push(("clients_short", short.to_string()));
            out.push(("clients_extra", extra.to_string()));
            out.push(("window_s", f(window)));
            out.push(("rate", f(received as f64 / window)));
        }
    }
    if mode != Mode::Idle {
        let h = &sh.latency;
        out.push(("samples", h.count().to_string()));
        for (k, p) in [("p50_us", 0.50), ("p90_us", 0.90), ("p99_us", 0.99), ("p999_us", 0.999)] {
            out.push((k, h.percentile(p).to_string()));
        }
        out.push(("max_us", h.max().to_string()));
        out.push(("send_errors", sh.send_errors.load(Relaxed).to_string()));
    }
    let err = sh.first_error.lock().unwrap().clone();
    out.push(("error", err.as_deref().map(q).unwrap_or_else(|| "null".into())));
    print_json(&out);

    loop {
        match cmd_rx.recv().await.as_deref() {
            Some("stop") | None => break,
            _ => {}
        }
    }
    let _ = phase_tx.send(STOP);
    std::process::exit(0);
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    now_us();
    let mut b = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let rt = b.enable_all().build().expect("tokio runtime");
    rt.block_on(run(args));
}
