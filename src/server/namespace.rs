//! A namespace: its sockets, its rooms, local delivery of broadcasts, and its adapter.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::socket::encoded_event;
use super::{read, write, ServerCore, ServerEvent, Socket};
use crate::adapter::{
    AckCollector, Adapter, AdapterFactory, BroadcastOptions, LocalNamespace, RemoteSocket,
};
use crate::protocol::Payload;

/// Ack ids of broadcasts that wait for acknowledgements start here, far above the ids
/// JavaScript gives its per-socket emits, so the two never meet.
pub(crate) const FIRST_BROADCAST_ACK: u64 = 1 << 40;

/// A broadcast waiting for acknowledgements: the local sockets that may still answer, and
/// where the answers go.
struct PendingAcks {
    targeted: HashSet<Arc<str>>,
    collector: Arc<AckCollector>,
}

/// How long a `serverSideEmit` from another server waits for JavaScript's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long another server's `fetchSockets()` waits here for JavaScript's `socket.data`.
const DATA_TIMEOUT: Duration = Duration::from_millis(1000);

/// What a namespace does natively for every new socket, so that JavaScript need not hear of
/// the connection: join room `room_prefix + id`, then emit `event` with
/// `{time, socketID, clientID}` (clientID being the socket id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub room_prefix: String,
    pub event: String,
}

/// A Socket.IO namespace (`/`, `/chat`, …).
pub struct Namespace {
    name: Arc<str>,
    sockets: RwLock<HashMap<Arc<str>, Arc<Socket>>>,
    /// room → socket ids. A socket's own id is a room too, resolved through `sockets` instead
    /// of being stored here (one entry less per connection).
    rooms: RwLock<HashMap<Arc<str>, HashSet<Arc<str>>>>,
    adapter: OnceLock<Arc<dyn Adapter>>,
    core: Weak<ServerCore>,
    /// JavaScript hears of a socket only when it first sends something (or asks for it).
    lazy: AtomicBool,
    /// Sockets JavaScript has not heard of yet (so asking for them is free when there are none).
    unannounced: std::sync::atomic::AtomicIsize,
    /// New sockets wait for JavaScript's middlewares (`accept` / `refuse`) before connecting.
    gated: AtomicBool,
    /// Room changes go to JavaScript as [`ServerEvent::Rooms`] (socket.io's adapter events).
    watch_rooms: AtomicBool,
    welcome: RwLock<Option<Arc<Welcome>>>,
    /// Broadcasts waiting for acknowledgements, by ack id.
    acks: std::sync::Mutex<HashMap<u64, PendingAcks>>,
    next_ack: AtomicU64,
    /// The first welcome's room prefix: room `prefix + id` of a socket is kept as a flag on the
    /// socket instead of an entry in `rooms` (one such room per connection).
    alias_prefix: OnceLock<Arc<str>>,
    this: OnceLock<Weak<Namespace>>,
    /// Broadcasts waiting for the offset the cluster gives them, delivered in the order made.
    offsets_due: OnceLock<tokio::sync::mpsc::UnboundedSender<OffsetDue>>,
    /// Checkpoints of live sessions, when the cluster keeps them.
    checkpoints: OnceLock<Checkpoints>,
}

/// How soon a live session's change (a join, a leave, JavaScript's state) reaches the cluster.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// With connection state recovery kept by the cluster, each live socket's session is saved
/// there too, as it would be on its disconnect: when it connects, when its rooms or
/// JavaScript's state of it change, and again every half `maxDisconnectionDuration`. So a
/// client whose server died without a word (killed, its machine gone) recovers on another.
#[derive(Default)]
struct Checkpoints {
    dirty: std::sync::Mutex<HashSet<Arc<str>>>,
    /// What JavaScript keeps of a live socket (JSON), as last told.
    states: std::sync::Mutex<HashMap<Arc<str>, String>>,
}

/// A broadcast whose local delivery waits for its offset.
type OffsetDue = (
    BoxFuture<'static, Option<String>>,
    Payload,
    BroadcastOptions,
);

/// Wakes the writers of a fan-out: all now, or (`slices`, for more than one slice) the first
/// slice now and each further one after the host's next turn, so other work (on Node's
/// thread, JavaScript) runs between them. Every frame is already queued: only when it leaves
/// changes.
fn wake_writers(
    mut wakers: Vec<std::task::Waker>,
    slices: Option<crate::server::FanoutSlices>,
    runtime: Option<&tokio::runtime::Handle>,
) {
    let (Some(slices), Some(runtime)) = (slices, runtime) else {
        wakers.into_iter().for_each(std::task::Waker::wake);
        return;
    };
    let rest = wakers.split_off(slices.size.min(wakers.len()));
    wakers.into_iter().for_each(std::task::Waker::wake);
    if rest.is_empty() {
        return;
    }
    runtime.spawn(async move {
        let mut rest = rest.into_iter().peekable();
        while rest.peek().is_some() {
            (slices.turn)().await;
            rest.by_ref()
                .take(slices.size)
                .for_each(std::task::Waker::wake);
        }
    });
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        core: Weak<ServerCore>,
        factory: &dyn AdapterFactory,
    ) -> Arc<Namespace> {
        let ns = Arc::new(Namespace {
            name: name.into(),
            sockets: RwLock::new(HashMap::new()),
            rooms: RwLock::new(HashMap::new()),
            adapter: OnceLock::new(),
            core,
            lazy: AtomicBool::new(false),
            unannounced: std::sync::atomic::AtomicIsize::new(0),
            gated: AtomicBool::new(false),
            watch_rooms: AtomicBool::new(false),
            welcome: RwLock::new(None),
            alias_prefix: OnceLock::new(),
            acks: std::sync::Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(FIRST_BROADCAST_ACK),
            this: OnceLock::new(),
            offsets_due: OnceLock::new(),
            checkpoints: OnceLock::new(),
        });
        let _ = ns.this.set(Arc::downgrade(&ns));
        let weak: Weak<dyn LocalNamespace> = Arc::downgrade(&ns) as Weak<dyn LocalNamespace>;
        let _ = ns.adapter.set(factory.create(weak));
        ns
    }

    /// Namespace name, with its leading slash.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    pub(crate) fn core(&self) -> Option<Arc<ServerCore>> {
        self.core.upgrade()
    }

    /// The adapter that reaches this namespace on the other servers.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        // Set in `new`, before the namespace is shared.
        self.adapter
            .get()
            .expect("adapter is set when the namespace is created")
    }

    /// Number of local sockets.
    pub fn socket_count(&self) -> usize {
        read(&self.sockets).len()
    }

    /// Number of rooms with local members (socket ids not counted, alias rooms counted).
    pub fn room_count(&self) -> usize {
        let aliases = if self.alias_prefix.get().is_some() {
            read(&self.sockets)
                .values()
                .filter(|s| s.in_alias_room())
                .count()
        } else {
            0
        };
        read(&self.rooms).len() + aliases
    }

    /// How JavaScript learns of new sockets: at once (`lazy` false, the default) or when a socket
    /// first sends something or JavaScript asks for it ([`Namespace::announce_pending`]); and
    /// the welcome done natively for each new socket, if any.
    pub fn set_announce(&self, lazy: bool, welcome: Option<Welcome>) {
        if let Some(w) = &welcome {
            if !w.room_prefix.is_empty() {
                let _ = self
                    .alias_prefix
                    .get_or_init(|| w.room_prefix.as_str().into());
            }
        }
        *write(&self.welcome) = welcome.map(Arc::new);
        self.lazy.store(lazy, Ordering::Release);
    }

    /// Whether room `name` is `socket`'s alias room (`prefix + id`).
    fn is_alias(&self, name: &str, socket: &Socket) -> bool {
        self.alias_prefix
            .get()
            .and_then(|p| name.strip_prefix(&**p))
            .is_some_and(|rest| rest == &*socket.id)
    }

    /// The alias room name of `socket`, if it is in it.
    pub(crate) fn alias_room(&self, socket: &Socket) -> Option<Arc<str>> {
        let prefix = self.alias_prefix.get()?;
        socket
            .in_alias_room()
            .then(|| format!("{prefix}{}", socket.id).into())
    }

    /// Whether new sockets wait for JavaScript (its `use` middlewares) to accept or refuse them:
    /// until then the client has no CONNECT and the socket is in no room.
    pub fn set_gated(&self, gated: bool) {
        self.gated.store(gated, Ordering::Release);
    }

    /// Whether room changes are told to JavaScript ([`ServerEvent::Rooms`]).
    pub(crate) fn watch_rooms(&self, on: bool) {
        self.watch_rooms.store(on, Ordering::Relaxed);
    }

    /// Tells JavaScript `sid` joined (or left) `rooms`, when it watches this namespace's rooms.
    fn rooms_changed(&self, sid: &Arc<str>, rooms: Vec<Arc<str>>, joined: bool) {
        if rooms.is_empty() || !self.watch_rooms.load(Ordering::Relaxed) {
            return;
        }
        if let Some(core) = self.core() {
            core.emit(ServerEvent::Rooms {
                nsp: self.name.clone(),
                sid: sid.clone(),
                rooms,
                joined,
            });
        }
    }

    pub(crate) fn is_gated(&self) -> bool {
        self.gated.load(Ordering::Acquire)
    }

    pub(crate) fn count_unannounced(&self, delta: isize) {
        self.unannounced.fetch_add(delta, Ordering::AcqRel);
    }

    pub(crate) fn is_lazy(&self) -> bool {
        self.lazy.load(Ordering::Acquire)
    }

    pub(crate) fn welcome(&self) -> Option<Arc<Welcome>> {
        read(&self.welcome).clone()
    }

    /// Connection events of the sockets JavaScript has not heard of yet (all of them, or the
    /// one with id `sid`), marking them heard of.
    pub fn announce_pending(&self, sid: Option<&str>) -> Vec<ServerEvent> {
        if self.unannounced.load(Ordering::Acquire) <= 0 {
            return Vec::new();
        }
        let sockets = read(&self.sockets);
        match sid {
            Some(sid) => sockets
                .get(sid)
                .and_then(|s| s.take_announcement())
                .into_iter()
                .collect(),
            None => sockets
                .values()
                .filter_map(|s| s.take_announcement())
                .collect(),
        }
    }

    pub(crate) fn add(&self, socket: &Arc<Socket>) {
        write(&self.sockets).insert(socket.id.clone(), socket.clone());
        self.adapter().room_created(&socket.id, true);
        self.checkpoint(&socket.id);
    }

    /// Saves socket `sid`'s session for the cluster soon (when it keeps them).
    pub(crate) fn checkpoint(&self, sid: &Arc<str>) {
        if !self.cluster_offsets() {
            return;
        }
        let checkpoints = self.checkpoints.get_or_init(|| {
            self.start_checkpoints();
            Checkpoints::default()
        });
        crate::server::lock(&checkpoints.dirty).insert(sid.clone());
    }

    /// What JavaScript keeps of live socket `sid` changed: it goes with its next checkpoint.
    pub fn set_checkpoint_state(&self, sid: &str, state_json: String) {
        let Some(socket) = read(&self.sockets).get(sid).cloned() else {
            return;
        };
        self.checkpoint(&socket.id);
        if let Some(c) = self.checkpoints.get() {
            crate::server::lock(&c.states).insert(socket.id.clone(), state_json);
        }
    }

    /// The checkpoint task: every [`CHECKPOINT_EVERY`], the sessions that changed; every half
    /// `maxDisconnectionDuration`, all of them.
    fn start_checkpoints(&self) {
        let (Some(core), Some(this)) = (self.core(), self.this.get().cloned()) else {
            return;
        };
        let Some(rec) = core.recovery().cloned() else {
            return;
        };
        let Some(rt) = core.spawner() else {
            return;
        };
        let refresh = (rec.config.max_disconnection / 2).max(Duration::from_secs(1));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut refreshed = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let Some(ns) = this.upgrade() else { return };
                let Some(c) = ns.checkpoints.get() else {
                    continue;
                };
                let all = refreshed.elapsed() >= refresh;
                let sockets: Vec<Arc<Socket>> = if all {
                    refreshed = tokio::time::Instant::now();
                    crate::server::lock(&c.dirty).clear();
                    read(&ns.sockets).values().cloned().collect()
                } else {
                    let dirty: Vec<Arc<str>> = crate::server::lock(&c.dirty).drain().collect();
                    let sockets = read(&ns.sockets);
                    dirty
                        .iter()
                        .filter_map(|sid| sockets.get(sid).cloned())
                        .collect()
                };
                for socket in sockets {
                    let Some(pid) = socket.pid() else { continue };
                    if !socket.connected() || socket.is_pending() {
                        continue;
                    }
                    let state = crate::server::lock(&c.states).get(&socket.id).cloned();
                    ns.persist_session(&socket.id, pid, &socket.rooms(), state);
                }
            }
        });
    }

    /// A socket left for good (not to be recovered): its checkpoint goes.
    pub(crate) fn forget_checkpoint(&self, sid: &str, pid: Option<&str>, keep: bool) {
        let Some(c) = self.checkpoints.get() else {
            return;
        };
        crate::server::lock(&c.dirty).remove(sid);
        crate::server::lock(&c.states).remove(sid);
        if let (Some(pid), false) = (pid, keep) {
            self.adapter().forget_session(pid);
        }
    }

    /// Forgets a socket; returns the rooms it was in.
    pub(crate) fn remove(&self, socket: &Socket) -> Vec<Arc<str>> {
        // Rooms are taken under the rooms lock, the lock `join` checks `connected` under: a
        // join racing with the disconnect either lands before (and is undone here) or sees
        // the socket gone.
        let joined = {
            let mut rooms = write(&self.rooms);
            let mut joined = std::mem::take(&mut *socket.rooms_lock());
            if let Some(alias) = self.alias_room(socket) {
                socket.set_alias_room(false);
                self.adapter().room_deleted(&alias, false);
                joined.insert(0, alias);
            }
            for room in &joined {
                if let Some(members) = rooms.get_mut(room) {
                    members.remove(&socket.id);
                    if members.is_empty() {
                        rooms.remove(room);
                        self.adapter().room_deleted(room, false);
                    }
                }
            }
            joined
        };
        if write(&self.sockets).remove(&socket.id).is_some() {
            self.adapter().room_deleted(&socket.id, true);
        }
        joined
    }

    pub(crate) fn join(&self, socket: &Arc<Socket>, names: &[String]) {
        let mut rooms = write(&self.rooms);
        if !socket.connected() {
            return;
        }
        let mut joined = socket.rooms_lock();
        let mut changed: Vec<Arc<str>> = Vec::new();
        for name in names {
            if **name == *socket.id {
                continue;
            }
            if self.is_alias(name, socket) {
                if !socket.in_alias_room() {
                    socket.set_alias_room(true);
                    self.adapter().room_created(name, false);
                    changed.push(name.as_str().into());
                }
                continue;
            }
            let key: Arc<str> = match rooms.get_key_value(name.as_str()) {
                Some((k, _)) => k.clone(),
                None => {
                    self.adapter().room_created(name, false);
                    name.as_str().into()
                }
            };
            if rooms
                .entry(key.clone())
                .or_default()
                .insert(socket.id.clone())
            {
                changed.push(key.clone());
                joined.push(key);
            }
        }
        drop(joined);
        drop(rooms);
        self.rooms_changed(&socket.id, changed, true);
        self.checkpoint(&socket.id);
    }

    pub(crate) fn leave(&self, socket: &Arc<Socket>, name: &str) {
        let mut rooms = write(&self.rooms);
        let mut joined = socket.rooms_lock();
        let mut left = false;
        if self.is_alias(name, socket) && socket.in_alias_room() {
            socket.set_alias_room(false);
            self.adapter().room_deleted(name, false);
            left = true;
        }
        if let Some(members) = rooms.get_mut(name) {
            left |= members.remove(&socket.id);
            if members.is_empty() {
                rooms.remove(name);
                self.adapter().room_deleted(name, false);
            }
        }
        joined.retain(|r| &**r != name);
        drop(joined);
        drop(rooms);
        if left {
            self.rooms_changed(&socket.id, vec![name.into()], false);
        }
        self.checkpoint(&socket.id);
    }

    /// Calls `f` for every local socket in `room`: its members, the socket whose id it is, and
    /// the socket whose alias room it is.
    fn room_each<'a>(
        &self,
        rooms: &'a HashMap<Arc<str>, HashSet<Arc<str>>>,
        sockets: &'a HashMap<Arc<str>, Arc<Socket>>,
        room: &str,
        mut f: impl FnMut(&'a Arc<str>, &'a Arc<Socket>),
    ) {
        if let Some(members) = rooms.get(room) {
            for id in members {
                if let Some((id, socket)) = sockets.get_key_value(id) {
                    f(id, socket);
                }
            }
        } else if let Some((id, socket)) = sockets.get_key_value(room) {
            f(id, socket);
        }
        let alias = self
            .alias_prefix
            .get()
            .and_then(|p| room.strip_prefix(&**p));
        if let Some((id, socket)) = alias.and_then(|id| sockets.get_key_value(id)) {
            if socket.in_alias_room() {
                f(id, socket);
            }
        }
    }

    /// Calls `f` once for every local socket the options target.
    fn for_each_target(&self, opts: &BroadcastOptions, mut f: impl FnMut(&Arc<Socket>)) {
        let rooms = read(&self.rooms);
        let sockets = read(&self.sockets);
        let mut except: HashSet<&str> = HashSet::new();
        for room in &opts.except {
            self.room_each(&rooms, &sockets, room, |id, _| {
                except.insert(id);
            });
        }
        if opts.rooms.is_empty() {
            for (id, socket) in sockets.iter() {
                if !except.contains(&**id) {
                    f(socket);
                }
            }
            return;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let many = opts.rooms.len() > 1;
        for room in &opts.rooms {
            self.room_each(&rooms, &sockets, room, |id, socket| {
                if !except.contains(&**id) && (!many || seen.insert(id)) {
                    f(socket);
                }
            });
        }
    }

    /// Sockets the options target, collected.
    fn targets(&self, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let mut out = Vec::new();
        self.for_each_target(opts, |s| out.push(s.clone()));
        out
    }

    /// Emits `data` (`["event", ...args]`) to the targeted sockets of every server. The packet
    /// is encoded once and the same frames are queued on every local recipient.
    pub fn broadcast(&self, data: Payload, opts: &BroadcastOptions) {
        if !opts.flags.local && !opts.flags.volatile && self.cluster_offsets() {
            let offset = self.adapter().broadcast_with_offset(&data, opts);
            self.deliver_when_due(offset, data, opts.clone());
            return;
        }
        if !opts.flags.local {
            self.adapter().broadcast(&data, opts);
        }
        self.deliver(&data, opts);
    }

    /// Saves a dropped socket for the cluster (connection state recovery kept there):
    /// `rooms` without its own id, `state_json` what JavaScript keeps of it.
    pub fn persist_session(
        &self,
        sid: &str,
        pid: &str,
        rooms: &[String],
        state_json: Option<String>,
    ) {
        let Some(rec) = self.core().and_then(|c| c.recovery().cloned()) else {
            return;
        };
        let mut all = Vec::with_capacity(rooms.len() + 1);
        all.push(sid.to_owned());
        all.extend(rooms.iter().filter(|r| *r != sid).cloned());
        self.adapter().persist_session(crate::adapter::Session {
            sid: sid.to_owned(),
            pid: pid.to_owned(),
            rooms: all,
            state_json,
            ttl: rec.config.max_disconnection,
        });
    }

    /// Whether connection state recovery is on and kept by the cluster: recoverable events
    /// then carry the cluster's offsets and are kept there, not in this process.
    pub(crate) fn cluster_offsets(&self) -> bool {
        self.adapter().keeps_sessions() && self.core().is_some_and(|c| c.recovery().is_some())
    }

    /// Delivers `data` locally once `offset` resolves, after every broadcast queued before it.
    fn deliver_when_due(
        &self,
        offset: BoxFuture<'static, Option<String>>,
        data: Payload,
        opts: BroadcastOptions,
    ) {
        let queue = self.offsets_due.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OffsetDue>();
            let this = self.this.get().cloned().unwrap_or_default();
            let runtime = match self.core() {
                Some(core) => core.spawner(),
                None => tokio::runtime::Handle::try_current().ok(),
            };
            if let Some(rt) = runtime {
                rt.spawn(async move {
                    while let Some((offset, data, opts)) = rx.recv().await {
                        let offset = offset.await;
                        let Some(ns) = this.upgrade() else { return };
                        ns.deliver_at(&data, &opts, offset.as_deref());
                    }
                });
            }
            tx
        });
        if let Err(e) = queue.send((offset, data, opts)) {
            // No runtime to wait on: deliver now, without an offset.
            let (_, data, opts) = e.0;
            self.deliver_at(&data, &opts, None);
        }
    }

    /// Emits `data` to the targeted sockets of every server, each asked to acknowledge; waits
    /// until every recipient answered or `timeout`. Returns whether all answered, and the
    /// answers (each client's acknowledgement arguments).
    pub async fn broadcast_with_ack(
        &self,
        data: Payload,
        opts: &BroadcastOptions,
        timeout: Duration,
    ) -> (bool, Vec<Payload>) {
        let remote = if opts.flags.local {
            0
        } else {
            self.adapter().server_count().await.saturating_sub(1)
        };
        let collector = Arc::new(AckCollector::new(remote + 1));
        let id = self.register_acks(collector.clone());
        let asked = remote > 0
            && self
                .adapter()
                .broadcast_with_ack(&data, opts, id, collector.clone())
                .await;
        if !asked {
            // Servers that could not be asked owe no count.
            for _ in 0..remote {
                collector.client_count(0);
            }
        }
        let n = self.deliver_with_ack(&data, opts, id);
        collector.client_count(n);
        let answers = collector.wait(timeout).await;
        self.forget_acks(id);
        answers
    }

    /// Local part of a broadcast that asks for acknowledgements with ack id `id`; returns the
    /// number of recipients (each one may answer once, through [`Namespace::on_ack`]).
    pub(crate) fn deliver_with_ack(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
        id: u64,
    ) -> usize {
        let frames = encoded_event(&self.name, Some(id), &data.json, data);
        let targets = self.targets(opts);
        // Listed before sending, so that no answer can come before its socket is.
        if let Some(p) = crate::server::lock(&self.acks).get_mut(&id) {
            p.targeted.extend(targets.iter().map(|s| s.id.clone()));
        }
        let mut n = 0;
        for s in &targets {
            if s.send_frames(&frames) {
                n += 1;
            } else if let Some(p) = crate::server::lock(&self.acks).get_mut(&id) {
                p.targeted.remove(&s.id);
            }
        }
        if let Some(core) = self.core.upgrade() {
            core.traffic.broadcast(&frames, n as u64);
        }
        n
    }

    /// A client answered ack id `id` of a broadcast waiting for acknowledgements: counted once
    /// per targeted socket, anything else is dropped.
    pub(crate) fn on_ack(&self, sid: &str, id: u64, data: Payload) {
        let collector = {
            let mut acks = crate::server::lock(&self.acks);
            match acks.get_mut(&id) {
                Some(p) if p.targeted.contains(sid) => {
                    p.targeted.remove(sid);
                    Some(p.collector.clone())
                }
                _ => None,
            }
        };
        if let Some(c) = collector {
            c.response(data);
        }
    }

    /// Registers a broadcast that asks for acknowledgements; the local recipients' answers go
    /// to `collector`. Returns the ack id to deliver with.
    fn register_acks(&self, collector: Arc<AckCollector>) -> u64 {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        crate::server::lock(&self.acks).insert(
            id,
            PendingAcks {
                targeted: HashSet::new(),
                collector,
            },
        );
        id
    }

    /// No more answers are wanted for ack id `id`.
    fn forget_acks(&self, id: u64) {
        crate::server::lock(&self.acks).remove(&id);
    }

    /// Local part of a broadcast; returns the number of recipients.
    pub fn deliver(&self, data: &Payload, opts: &BroadcastOptions) -> usize {
        match self.core.upgrade() {
            // Recovery in this process (when on): an offset, and the event kept.
            Some(core) if !self.adapter().keeps_sessions() => {
                let frames =
                    core.event_frames(&self.name, data, super::recovery::Target::Rooms(opts));
                self.send_to_targets(Some(&core), &frames, opts)
            }
            _ => self.deliver_at(data, opts, None),
        }
    }

    /// Local part of a broadcast the cluster gave `offset` (appended as its last argument).
    pub(crate) fn deliver_at(
        &self,
        data: &Payload,
        opts: &BroadcastOptions,
        offset: Option<&str>,
    ) -> usize {
        let with = offset.and_then(|o| super::recovery::with_offset(&data.json, o));
        let json = with.as_deref().unwrap_or(&data.json);
        let frames = encoded_event(&self.name, None, json, data);
        self.send_to_targets(self.core.upgrade().as_ref(), &frames, opts)
    }

    /// Queues `frames` on every local socket `opts` targets; returns how many.
    fn send_to_targets(
        &self,
        core: Option<&Arc<ServerCore>>,
        frames: &[crate::engine::Frame],
        opts: &BroadcastOptions,
    ) -> usize {
        let mut wakers = Vec::new();
        let mut n = 0;
        self.for_each_target(opts, |s| {
            if s.send_frames_deferred(frames, &mut wakers) {
                n += 1;
            }
        });
        if let Some(core) = core {
            core.traffic.broadcast(frames, n as u64);
        }
        wake_writers(
            wakers,
            core.and_then(|c| c.config.fanout_slices),
            core.and_then(|c| c.runtime.as_ref()),
        );
        n
    }

    /// `socketsJoin` over the cluster.
    pub fn sockets_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.apply_join(opts, rooms);
        if !opts.flags.local {
            self.adapter().sockets_join(opts, rooms);
        }
    }

    /// `socketsLeave` over the cluster.
    pub fn sockets_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
        self.apply_leave(opts, rooms);
        if !opts.flags.local {
            self.adapter().sockets_leave(opts, rooms);
        }
    }

    /// `disconnectSockets` over the cluster.
    pub fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        self.apply_disconnect(opts, close);
        if !opts.flags.local {
            self.adapter().disconnect_sockets(opts, close);
        }
    }

    /// Ids of the local sockets in `room` (a socket id counts as a room).
    pub fn room_members(&self, room: &str) -> Vec<String> {
        let opts = BroadcastOptions {
            rooms: vec![room.to_string()],
            ..Default::default()
        };
        self.targets(&opts)
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    }
}

impl LocalNamespace for Namespace {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply_broadcast(&self, data: Payload, opts: &BroadcastOptions) {
        self.deliver(&data, opts);
    }

    fn apply_broadcast_at(&self, data: Payload, opts: &BroadcastOptions, offset: &str) {
        // As socket.io: no offset when recovery is off, or for a volatile event.
        let offset = (self.cluster_offsets() && !opts.flags.volatile).then_some(offset);
        self.deliver_at(&data, opts, offset);
    }

    fn apply_join(&self, opts: &BroadcastOptions, rooms: &[String]) {
        for socket in self.targets(opts) {
            socket.join(rooms);
        }
    }

    fn apply_leave(&self, opts: &BroadcastOptions, rooms: &[String]) {
        for socket in self.targets(opts) {
            for room in rooms {
                socket.leave(room);
            }
        }
    }

    fn apply_disconnect(&self, opts: &BroadcastOptions, close: bool) {
        for socket in self.targets(opts) {
            socket.disconnect(close);
        }
    }

    fn local_sockets(&self, opts: &BroadcastOptions) -> Vec<RemoteSocket> {
        self.targets(opts).iter().map(|s| s.describe()).collect()
    }

    /// `socket.data` lives in JavaScript: asked of it when it holds every socket of this
    /// namespace (not lazy), within [`DATA_TIMEOUT`]; past that, or lazy, the sockets go
    /// without.
    fn local_sockets_with_data(
        &self,
        opts: &BroadcastOptions,
    ) -> futures_util::future::BoxFuture<'static, Vec<RemoteSocket>> {
        let mut sockets = self.local_sockets(opts);
        let core = match self.core() {
            Some(core) if !sockets.is_empty() && !self.lazy.load(Ordering::Acquire) => core,
            _ => return Box::pin(std::future::ready(sockets)),
        };
        let sids = sockets.iter().map(|s| s.id.clone()).collect();
        let nsp = self.name.clone();
        let answer = core.ask(
            |token| ServerEvent::SocketData { nsp, token, sids },
            DATA_TIMEOUT,
        );
        Box::pin(async move {
            let data = answer
                .await
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.json).ok());
            if let Some(serde_json::Value::Object(mut data)) = data {
                for s in &mut sockets {
                    if let Some(d) = data.remove(&s.id) {
                        s.data = d;
                    }
                }
            }
            sockets
        })
    }

    fn local_rooms(&self) -> Vec<String> {
        let mut out: Vec<String> = read(&self.rooms).keys().map(|r| r.to_string()).collect();
        if self.alias_prefix.get().is_some() {
            let sockets = read(&self.sockets);
            out.extend(
                sockets
                    .values()
                    .filter_map(|s| self.alias_room(s))
                    .map(|r| r.to_string()),
            );
        }
        out
    }

    fn apply_broadcast_with_ack(
        &self,
        data: Payload,
        opts: &BroadcastOptions,
        forward: Box<dyn Fn(Payload) + Send + Sync>,
    ) -> (u64, usize) {
        let id = self.register_acks(Arc::new(AckCollector::forwarding(forward)));
        let n = self.deliver_with_ack(&data, opts, id);
        if n == 0 {
            self.forget_acks(id);
        }
        (id, n)
    }

    fn forget_broadcast_ack(&self, id: u64) {
        self.forget_acks(id);
    }

    fn on_server_side_emit(&self, args: Payload, ack: Option<oneshot::Sender<Payload>>) {
        let Some(core) = self.core() else { return };
        let nsp = self.name.clone();
        let Some(ack) = ack else {
            core.emit(ServerEvent::ServerSideEmit {
                nsp,
                data: args,
                reply: None,
            });
            return;
        };
        let answer = core.ask(
            |token| ServerEvent::ServerSideEmit {
                nsp,
                data: args,
                reply: Some(token),
            },
            REPLY_TIMEOUT,
        );
        tokio::spawn(async move {
            if let Some(answer) = answer.await {
                let _ = ack.send(answer);
            }
        });
    }
}
