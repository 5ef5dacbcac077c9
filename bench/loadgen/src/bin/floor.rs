//! The fan-out floor: what delivering one broadcast frame costs when nothing but the write
//! itself is done. One thread writes the same pre-built websocket text frame (the size of the
//! bench's `bcast` event) to each of `--conns` accepted loopback TCP sockets, `--rate` times a
//! second for `--duration` seconds, one `write` per socket per broadcast as a server without
//! coalescing does. A child process (`floor sink`) holds the client ends and reads them.
//!
//!   floor --conns N --rate R --duration S
//!
//! Prints one JSON line: deliveries, the writer's CPU (user, system) from getrusage, and the
//! CPU seconds per million deliveries. The bench compares weroll-native's paced fan-out with it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `42["bcast",[123456,1764810000000000]]` as the server sends it: one final text frame.
fn frame() -> Vec<u8> {
    let payload = br#"42["bcast",[123456,1764810000000000]]"#;
    let mut f = vec![0x81, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

fn cpu_seconds() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<Rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let ok = unsafe { getrusage(0, ru.as_mut_ptr()) } == 0;
    if !ok {
        return (f64::NAN, f64::NAN);
    }
    // SAFETY: filled above.
    let ru = unsafe { ru.assume_init() };
    let t = |tv: Timeval| tv.sec as f64 + tv.usec as f64 / 1e6;
    (t(ru.utime), t(ru.stime))
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The client ends, read as the loadgen reads its websockets (one task each on one tokio
/// thread, woken by epoll), so the writer is charged the same loopback wake-ups as a server.
fn sink(args: &[String]) {
    use tokio::io::AsyncReadExt;
    let port = arg(args, "--port", 0.0) as u16;
    let conns = arg(args, "--conns", 0.0) as usize;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("floor sink: runtime");
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .expect("floor sink: connect");
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("sink") {
        sink(&args);
        return;
    }
    let conns = arg(&args, "--conns", 5000.0).max(1.0) as usize;
    let rate = arg(&args, "--rate", 10.0).max(0.1);
    let duration = arg(&args, "--duration", 20.0).max(0.1);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("floor: bind");
    let port = listener.local_addr().expect("floor: address").port();
    let exe = std::env::current_exe().expect("floor: own path");
    let mut child = Command::new(exe)
        .args(["sink", "--port", &port.to_string(), "--conns", &conns.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("floor: start the sink");
    let mut sockets: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let (s, _) = listener.accept().expect("floor: accept");
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    let frame = frame();
    let broadcasts = (rate * duration).round().max(1.0) as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let (u0, s0) = cpu_seconds();
    let start = Instant::now();
    let mut deliveries = 0u64;
    for i in 0..broadcasts {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for s in &mut sockets {
            if s.write_all(&frame).is_ok() {
                deliveries += 1;
            }
        }
    }
    let (u1, s1) = cpu_seconds();
    drop(sockets);
    let _ = child.wait();
    let (user, sys) = (u1 - u0, s1 - s0);
    println!(
        "{{\"conns\":{conns},\"broadcasts\":{broadcasts},\"deliveries\":{deliveries},\"frame_bytes\":{},\"user_s\":{user:.6},\"sys_s\":{sys:.6},\"cpu_per_million_s\":{:.6}}}",
        frame.len(),
        (user + sys) / (deliveries.max(1) as f64 / 1e6)
    );
}
