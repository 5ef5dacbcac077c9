//! The `node` event loop (`WEROLL_NATIVE_LOOP=node`, the default on Linux): the tokio runtime
//! that runs the engine, the server and the adapter is a current-thread runtime driven from
//! Node's own libuv loop on the JavaScript thread, as uWebSockets.js runs its sockets.
//!
//! libuv watches the runtime's epoll descriptor (itself pollable) and a short repeating timer;
//! either one runs a *tick*: `block_on` a future that lets the runtime run every ready task and
//! poll its I/O and timers without blocking. Whenever the runtime runs out of ready tasks (its
//! park hook), the server events queued meanwhile are handed to their JavaScript callbacks at
//! once, synchronously, so a handler's emits are queued before the socket writers run: every
//! reply of one batch to one socket leaves in one write (corked), and no message crosses a
//! thread. The tick ends once nothing is ready, nothing is queued for JavaScript and the epoll
//! descriptor is quiet, or after [`TICK_BUDGET`], letting libuv run JavaScript timers and I/O.
//!
//! The engine, protocol, server and adapter layers do not change: only who drives their tasks.
//! `WEROLL_NATIVE_LOOP=thread` (and every platform without `/proc` and epoll) keeps the
//! threaded design: a tokio thread beside Node's, events handed over by a threadsafe function.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;
use tokio::runtime::{Builder, Handle, Runtime};

use super::events::{EventPump, NativeBatch};

/// How long one tick may run before libuv gets the thread back (JavaScript timers, other I/O).
/// A tick cut short schedules the next one at once.
const TICK_BUDGET: Duration = Duration::from_millis(8);
/// The repeating libuv timer that lets the runtime's timers fire: their resolution in this mode.
const TIMER_MS: u64 = 2;

/// Which design drives the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopMode {
    /// The runtime runs on Node's thread, driven by libuv.
    Node,
    /// A tokio thread beside Node's.
    Thread,
}

/// `WEROLL_NATIVE_LOOP`: `node` or `thread`; `node` unless set otherwise (where it can run).
pub fn requested_mode() -> LoopMode {
    match std::env::var("WEROLL_NATIVE_LOOP") {
        Ok(v) if v.trim().eq_ignore_ascii_case("thread") => LoopMode::Thread,
        _ => LoopMode::Node,
    }
}

/// The runtime of the `node` loop: its handle and the epoll descriptor libuv watches.
struct NodeLoop {
    handle: Handle,
    epoll_fd: c_int,
}

static NODE_LOOP: OnceLock<NodeLoop> = OnceLock::new();

/// Builds the current-thread runtime of the `node` loop, or nothing where it cannot run (no
/// single new epoll descriptor to find, or libuv's symbols missing): the caller then builds
/// the threaded runtime.
pub fn build_node_runtime() -> Option<Runtime> {
    uv()?;
    let builder = || {
        let mut b = Builder::new_current_thread();
        b.enable_all()
            .thread_name("weroll-native")
            .on_thread_park(before_park);
        b
    };
    let (runtime, epoll_fd) = with_epoll_fd(builder)?;
    let handle = runtime.handle().clone();
    NODE_LOOP.set(NodeLoop { handle, epoll_fd }).ok()?;
    Some(runtime)
}

/// Builds a current-thread runtime and finds its I/O driver's epoll descriptor among the
/// `eventpoll`s that appeared meanwhile (mio's, and the `dup` its registry keeps): the ones
/// that a task spawned from outside the runtime turns readable. Anything else (another
/// runtime built at the same moment, say) stays quiet and is left out.
fn with_epoll_fd(builder: impl FnOnce() -> Builder) -> Option<(Runtime, c_int)> {
    let before = eventpoll_fds()?;
    let runtime = builder().build().ok()?;
    let quiet: Vec<c_int> = eventpoll_fds()?
        .into_iter()
        .filter(|fd| !before.contains(fd) && !readable(*fd))
        .collect();
    runtime.handle().spawn(async {});
    let woken: Vec<c_int> = quiet.into_iter().filter(|&fd| readable(fd)).collect();
    let (1..=2, Some(&epoll_fd)) = (woken.len(), woken.first()) else {
        return None;
    };
    Some((runtime, epoll_fd))
}

/// Which design this process runs.
pub fn mode() -> LoopMode {
    if NODE_LOOP.get().is_some() {
        LoopMode::Node
    } else {
        LoopMode::Thread
    }
}

#[cfg(target_os = "linux")]
fn eventpoll_fds() -> Option<Vec<c_int>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let entry = entry.ok()?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<c_int>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventpoll]")
        {
            fds.push(fd);
        }
    }
    Some(fds)
}

#[cfg(not(target_os = "linux"))]
fn eventpoll_fds() -> Option<Vec<c_int>> {
    None
}

fn readable(fd: c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && (p.revents & libc::POLLIN) != 0 }
}

// ---------------------------------------------------------------------------------------------
// libuv, from the host process (Node exports it to addons), looked up by name like N-API is.

type UvPollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type UvTimerCb = unsafe extern "C" fn(*mut c_void);
type UvCloseCb = unsafe extern "C" fn(*mut c_void);
type HandleSizeFn = unsafe extern "C" fn(c_int) -> usize;
type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStartFn = unsafe extern "C" fn(*mut c_void, c_int, UvPollCb) -> c_int;
type TimerInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type TimerStartFn = unsafe extern "C" fn(*mut c_void, UvTimerCb, u64, u64) -> c_int;
type UnrefFn = unsafe extern "C" fn(*mut c_void);
type CloseFn = unsafe extern "C" fn(*mut c_void, Option<UvCloseCb>);

struct Uv {
    handle_size: HandleSizeFn,
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    timer_init: TimerInitFn,
    timer_start: TimerStartFn,
    unref: UnrefFn,
    close: CloseFn,
}

const UV_POLL: c_int = 8;
const UV_TIMER: c_int = 13;
const UV_READABLE: c_int = 1;

fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    UV.get_or_init(|| {
        fn sym(name: &CStr) -> Option<*mut c_void> {
            // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the process's globals.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const c_char) };
            (!p.is_null()).then_some(p)
        }
        // SAFETY: each symbol is libuv's own function of that name and signature (uv.h).
        unsafe {
            Some(Uv {
                handle_size: std::mem::transmute::<*mut c_void, HandleSizeFn>(sym(
                    c"uv_handle_size",
                )?),
                poll_init: std::mem::transmute::<*mut c_void, PollInitFn>(sym(c"uv_poll_init")?),
                poll_start: std::mem::transmute::<*mut c_void, PollStartFn>(sym(c"uv_poll_start")?),
                timer_init: std::mem::transmute::<*mut c_void, TimerInitFn>(sym(c"uv_timer_init")?),
                timer_start: std::mem::transmute::<*mut c_void, TimerStartFn>(sym(
                    c"uv_timer_start",
                )?),
                unref: std::mem::transmute::<*mut c_void, UnrefFn>(sym(c"uv_unref")?),
                close: std::mem::transmute::<*mut c_void, CloseFn>(sym(c"uv_close")?),
            })
        }
    })
    .as_ref()
}

/// Words of every handle this module allocates: enough for either kind.
fn handle_words(uv: &Uv) -> usize {
    // SAFETY: plain queries.
    let size = unsafe { (uv.handle_size)(UV_POLL).max((uv.handle_size)(UV_TIMER)) };
    size.div_ceil(8)
}

/// A libuv handle's memory, word-aligned; freed by `uv_close`'s callback.
fn alloc_handle(uv: &Uv) -> Option<*mut c_void> {
    let words = handle_words(uv);
    if words == 0 || words > 512 {
        return None;
    }
    let memory = vec![0u64; words].into_boxed_slice();
    Some(Box::into_raw(memory) as *mut u64 as *mut c_void)
}

unsafe extern "C" fn free_handle(handle: *mut c_void) {
    if let Some(uv) = uv() {
        let words = handle_words(uv);
        // SAFETY: allocated by `alloc_handle` with this many words, closed, never used again.
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            handle as *mut u64,
            words,
        )));
    }
}

// ---------------------------------------------------------------------------------------------
// The JavaScript side: which env drives the loop, and whose callbacks get which events.

/// One server's events, delivered on the JavaScript thread.
struct Delivery {
    pump: Arc<EventPump>,
    callback: sys::napi_ref,
}

struct Driver {
    env: sys::napi_env,
    async_context: sys::napi_async_context,
    poll: *mut c_void,
    timer: *mut c_void,
    deliveries: Vec<Rc<Delivery>>,
}

/// What a running tick shares with the runtime's park hook.
#[derive(Default)]
struct TickState {
    /// The tick future's waker, while a tick runs on this thread.
    waker: Option<Waker>,
    done: bool,
    started: Option<Instant>,
    cut_short: bool,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
    static TICK: RefCell<TickState> = RefCell::new(TickState::default());
    static IN_TICK: Cell<bool> = const { Cell::new(false) };
    /// Tasks waiting for the next tick ([`next_turn`]).
    static NEXT_TURN: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Installs the loop on `env`'s thread (once per process: the first env to ask drives the
/// runtime) and registers `callback` for `pump`'s events. Returns false when events must go
/// through the threadsafe function instead (threaded mode, or another env drives the loop).
///
/// # Safety
/// `env` is the env of the current call; `callback` a JavaScript function of it.
pub unsafe fn register(
    env: sys::napi_env,
    callback: sys::napi_value,
    pump: &Arc<EventPump>,
) -> bool {
    let Some(node_loop) = NODE_LOOP.get() else {
        return false;
    };
    static OWNER: OnceLock<usize> = OnceLock::new();
    if *OWNER.get_or_init(|| env as usize) != env as usize {
        return false;
    }
    let installed = DRIVER.with(|d| d.borrow().is_some());
    if !installed && install(env, node_loop).is_none() {
        return false;
    }
    let mut reference = std::ptr::null_mut();
    if sys::napi_create_reference(env, callback, 1, &mut reference) != sys::Status::napi_ok {
        return false;
    }
    DRIVER.with(|d| {
        if let Some(d) = d.borrow_mut().as_mut() {
            d.deliveries.push(Rc::new(Delivery {
                pump: pump.clone(),
                callback: reference,
            }));
        }
    });
    true
}

unsafe fn install(env: sys::napi_env, node_loop: &NodeLoop) -> Option<()> {
    let uv = uv()?;
    let mut uv_loop = std::ptr::null_mut();
    if sys::napi_get_uv_event_loop(env, &mut uv_loop) != sys::Status::napi_ok || uv_loop.is_null() {
        return None;
    }
    let uv_loop = uv_loop as *mut c_void;
    let mut resource = std::ptr::null_mut();
    let mut name = std::ptr::null_mut();
    let mut async_context = std::ptr::null_mut();
    let label = c"weroll-native";
    if sys::napi_create_object(env, &mut resource) != sys::Status::napi_ok
        || sys::napi_create_string_utf8(
            env,
            label.as_ptr(),
            label.count_bytes() as isize,
            &mut name,
        ) != sys::Status::napi_ok
        || sys::napi_async_init(env, resource, name, &mut async_context) != sys::Status::napi_ok
    {
        return None;
    }
    let poll = alloc_handle(uv)?;
    let timer = alloc_handle(uv)?;
    if (uv.poll_init)(uv_loop, poll, node_loop.epoll_fd) != 0
        || (uv.timer_init)(uv_loop, timer) != 0
    {
        return None;
    }
    (uv.poll_start)(poll, UV_READABLE, on_poll);
    (uv.timer_start)(timer, on_timer, TIMER_MS, TIMER_MS);
    // Neither keeps the process alive: a listening server does, through its threadsafe
    // function's reference (see `NativeServer::ref`).
    (uv.unref)(poll);
    (uv.unref)(timer);
    DRIVER.with(|d| {
        *d.borrow_mut() = Some(Driver {
            env,
            async_context,
            poll,
            timer,
            deliveries: Vec::new(),
        })
    });
    sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), std::ptr::null_mut());
    Some(())
}

unsafe extern "C" fn on_env_cleanup(_: *mut c_void) {
    let driver = DRIVER.with(|d| d.borrow_mut().take());
    if let (Some(d), Some(uv)) = (driver, uv()) {
        (uv.close)(d.poll, Some(free_handle));
        (uv.close)(d.timer, Some(free_handle));
    }
}

unsafe extern "C" fn on_poll(_: *mut c_void, _status: c_int, _events: c_int) {
    tick();
}

unsafe extern "C" fn on_timer(_: *mut c_void) {
    tick();
}

/// Lets the runtime run until it is quiet (or the budget is spent), delivering events to
/// JavaScript whenever its ready tasks run out.
fn tick() {
    if IN_TICK.with(|t| t.replace(true)) {
        return;
    }
    NUDGED.store(false, Ordering::Release);
    TICK.with(|t| {
        *t.borrow_mut() = TickState {
            started: Some(Instant::now()),
            ..TickState::default()
        }
    });
    let ran = std::panic::catch_unwind(|| napi::bindgen_prelude::block_on(TickFuture));
    let cut_short = TICK.with(|t| {
        let mut t = t.borrow_mut();
        t.waker = None;
        t.cut_short
    });
    IN_TICK.with(|t| t.set(false));
    if ran.is_err() {
        // A panic ended the tick before the park hook delivered what was queued.
        deliver_all();
    }
    if ran.is_err() || cut_short {
        // Ready work is left: run again as soon as libuv has looked at everything else.
        DRIVER.with(|d| {
            if let (Some(d), Some(uv)) = (d.borrow().as_ref(), uv()) {
                // SAFETY: the timer handle lives as long as the driver.
                unsafe { (uv.timer_start)(d.timer, on_timer, 0, TIMER_MS) };
            }
        });
    }
}

/// The future a tick blocks on: pending until the park hook says the runtime is quiet.
struct TickFuture;

impl Future for TickFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // What waited for Node's loop to run once runs in this tick.
        let waiting = NEXT_TURN.with(|w| std::mem::take(&mut *w.borrow_mut()));
        waiting.into_iter().for_each(Waker::wake);
        TICK.with(|t| {
            let mut t = t.borrow_mut();
            if t.done {
                t.waker = None;
                Poll::Ready(())
            } else {
                if !t.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    t.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        })
    }
}

/// The runtime's park hook: it has no ready task left. Hands queued events to JavaScript,
/// then wakes the tick future so the runtime never blocks the JavaScript thread: it polls its
/// driver without waiting, runs what that readied (and what JavaScript queued), and parks
/// here again. Once nothing was delivered and the epoll descriptor has nothing new, the tick
/// ends.
fn before_park() {
    let Some(waker) = TICK.with(|t| t.borrow().waker.clone()) else {
        // Not a tick of this thread's loop (the runtime shutting down, say): nothing to do.
        return;
    };
    let delivered = deliver_all();
    let quiet = !delivered && NODE_LOOP.get().is_none_or(|l| !readable(l.epoll_fd));
    TICK.with(|t| {
        let mut t = t.borrow_mut();
        let over = t.started.is_some_and(|s| s.elapsed() >= TICK_BUDGET);
        if quiet || over {
            t.done = true;
            t.cut_short = over && !quiet;
        }
    });
    waker.wake();
}

/// Calls every registered callback that has events waiting, one batch each; true if any ran.
fn deliver_all() -> bool {
    let Some((env, async_context, deliveries)) = DRIVER.with(|d| {
        d.borrow()
            .as_ref()
            .map(|d| (d.env, d.async_context, d.deliveries.clone()))
    }) else {
        return false;
    };
    let mut delivered = false;
    let mut ended = Vec::new();
    for delivery in &deliveries {
        match delivery.pump.take_batch() {
            Some(Some(batch)) => {
                delivered = true;
                // SAFETY: on the env's own thread, outside any other N-API call.
                unsafe { call(env, async_context, delivery.callback, batch) };
            }
            Some(None) => {}
            None => ended.push(delivery.clone()),
        }
    }
    if !ended.is_empty() {
        DRIVER.with(|d| {
            if let Some(d) = d.borrow_mut().as_mut() {
                d.deliveries
                    .retain(|x| !ended.iter().any(|e| Rc::ptr_eq(e, x)));
            }
        });
        for e in ended {
            // SAFETY: the reference was made on this env, and its delivery is gone.
            unsafe { sys::napi_delete_reference(env, e.callback) };
        }
    }
    delivered
}

/// `callback(batch)` as a macrotask of its own: microtasks and `process.nextTick` callbacks
/// run when it returns, and a throw reaches `uncaughtException` as from any Node callback.
unsafe fn call(
    env: sys::napi_env,
    async_context: sys::napi_async_context,
    callback: sys::napi_ref,
    batch: NativeBatch,
) {
    let mut scope = std::ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let mut func = std::ptr::null_mut();
    let mut recv = std::ptr::null_mut();
    if sys::napi_get_reference_value(env, callback, &mut func) == sys::Status::napi_ok
        && !func.is_null()
        && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
    {
        // `(json, buffers, queuedAt)`: three plain values cost less than an object with three
        // properties, on a path taken once per batch.
        let NativeBatch {
            json,
            buffers,
            queued_at,
        } = batch;
        let args = (
            String::to_napi_value(env, json),
            Option::<Vec<napi::bindgen_prelude::Buffer>>::to_napi_value(env, buffers),
            f64::to_napi_value(env, queued_at),
        );
        if let (Ok(json), Ok(buffers), Ok(queued_at)) = args {
            let argv = [json, buffers, queued_at];
            let mut result = std::ptr::null_mut();
            let status = sys::napi_make_callback(
                env,
                async_context,
                recv,
                func,
                argv.len(),
                argv.as_ptr(),
                &mut result,
            );
            if status == sys::Status::napi_pending_exception {
                let mut error = std::ptr::null_mut();
                if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(env, error);
                }
            }
        }
    }
    sys::napi_close_handle_scope(env, scope);
}

/// Resolves in the next tick of the `node` loop, after Node's loop ran once (JavaScript
/// timers, other I/O); at once on a thread that does not drive the loop.
pub fn next_turn() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut registered = false;
    Box::pin(std::future::poll_fn(move |cx| {
        if registered || !DRIVER.with(|d| d.borrow().is_some()) {
            return Poll::Ready(());
        }
        registered = true;
        NEXT_TURN.with(|w| w.borrow_mut().push(cx.waker().clone()));
        Poll::Pending
    }))
}

/// Makes sure events queued outside a tick (from a JavaScript call, say) are delivered soon:
/// a task spawned from outside the runtime wakes its driver, and so libuv.
pub fn nudge() {
    if IN_TICK.with(|t| t.get()) || NUDGED.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(l) = NODE_LOOP.get() {
        l.handle.spawn(async {});
    }
}

/// A nudge is on its way (cleared when a tick starts).
static NUDGED: AtomicBool = AtomicBool::new(false);

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_runtimes_epoll_descriptor_is_found_and_says_when_there_is_work() {
        let build = || {
            let mut b = Builder::new_current_thread();
            b.enable_all();
            b
        };
        // Other tests build runtimes on other threads meanwhile; a busy one can make the
        // search give up (it never picks a wrong descriptor), so it may take a few tries.
        let found = || (0..50).find_map(|_| with_epoll_fd(build));
        let (rt, fd) = found().expect("the runtime's epoll descriptor");
        // The proof spawn left it readable; running the runtime consumes that.
        assert!(readable(fd));
        rt.block_on(tokio::task::yield_now());
        rt.block_on(tokio::task::yield_now());
        assert!(!readable(fd), "nothing is pending once the runtime ran");
        // A socket event on the runtime shows on the descriptor, before the runtime runs.
        let (listener, addr) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let a = l.local_addr().expect("address");
            (l, a)
        });
        let accept = rt.spawn(async move { listener.accept().await.map(|_| ()) });
        rt.block_on(tokio::task::yield_now());
        assert!(!readable(fd));
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let mut tries = 0;
        while !readable(fd) && tries < 100 {
            std::thread::sleep(Duration::from_millis(5));
            tries += 1;
        }
        assert!(
            readable(fd),
            "an incoming connection makes the descriptor readable"
        );
        rt.block_on(async { accept.await.expect("join").expect("accept") });
        // Another runtime's descriptor is not mistaken for this one.
        let (_other, other_fd) = found().expect("a second runtime");
        assert_ne!(fd, other_fd);
    }
}
