//! The session table and the engine-wide state every connection points to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::connection::{Connection, Sid};

/// Engine-wide state shared with every [`Connection`] (one pointer per connection).
pub(crate) struct Core {
    /// `max_queued_frames`.
    pub(crate) max_queued: usize,
    /// `max_queued_bytes`.
    pub(crate) max_queued_bytes: usize,
    /// How long a closed polling session stays reachable so its pending or next GET can still
    /// collect the final packets (ending with `1`).
    pub(crate) grace_ms: u64,
    epoch: Instant,
    /// Polling sessions that closed and wait for the engine task to run `on_close`.
    reap: Mutex<Vec<Sid>>,
    /// Wakes the engine task early (a session to reap, or a timer due sooner than it planned).
    pub(crate) wake: Notify,
    /// No session's timer is due before this engine-clock ms; the engine task sleeps until then.
    next_due: AtomicU64,
}

impl Core {
    pub(crate) fn new(max_queued: usize, max_queued_bytes: usize, grace_ms: u64) -> Core {
        Core {
            max_queued: max_queued.max(1),
            max_queued_bytes: max_queued_bytes.max(1),
            grace_ms,
            epoch: Instant::now(),
            reap: Mutex::new(Vec::new()),
            wake: Notify::new(),
            next_due: AtomicU64::new(u64::MAX),
        }
    }

    /// Sets a session's timer to `at` (engine-clock ms), waking the engine task if that is
    /// sooner than anything it is waiting for.
    /// Sequentially consistent, as are [`Core::sweeping`] and the sweep's reads of the timers:
    /// a sweep either sees this timer or this call sees the sweep's reset of the mark.
    pub(crate) fn schedule(&self, timer: &AtomicU64, at: u64) {
        timer.store(at, Ordering::SeqCst);
        if at < self.next_due.load(Ordering::SeqCst)
            && at < self.next_due.fetch_min(at, Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
    }

    /// When the engine task must look at the timers next, at the latest `limit` from now.
    pub(crate) fn next_due(&self, limit: std::time::Duration) -> Instant {
        let latest = Instant::now() + limit;
        let due = self.next_due.load(Ordering::Relaxed);
        self.epoch
            .checked_add(std::time::Duration::from_millis(due))
            .map_or(latest, |at| at.min(latest))
    }

    /// Starts a sweep: timers set from now on lower the mark again; the sweep itself lowers it
    /// to the earliest timer it saw ([`Core::swept`]).
    pub(crate) fn sweeping(&self) {
        self.next_due.store(u64::MAX, Ordering::SeqCst);
    }

    /// Ends a sweep whose earliest remaining timer is `earliest`.
    pub(crate) fn swept(&self, earliest: u64) {
        self.next_due.fetch_min(earliest, Ordering::SeqCst);
    }

    /// Milliseconds on the engine's monotonic clock.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn request_reap(&self, sid: Sid) {
        lock(&self.reap).push(sid);
        self.wake.notify_one();
    }

    pub(crate) fn take_reaps(&self) -> Vec<Sid> {
        std::mem::take(&mut *lock(&self.reap))
    }
}

/// Locks a mutex that guards plain data; a poisoned lock still holds consistent data here
/// because no code that can panic runs under these locks.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Shard<D> = Mutex<HashMap<Sid, Arc<Connection<D>>>>;

/// Sessions by sid, sharded so the sweeper and handshakes rarely contend.
pub(crate) struct Sessions<D> {
    shards: Box<[Shard<D>]>,
}

const SHARDS: usize = 32;

impl<D> Sessions<D> {
    pub(crate) fn new() -> Sessions<D> {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, sid: &Sid) -> MutexGuard<'_, HashMap<Sid, Arc<Connection<D>>>> {
        // In bounds: `Sid::shard` reduces modulo the (non-zero) shard count.
        lock(&self.shards[sid.shard(self.shards.len())])
    }

    pub(crate) fn get(&self, sid: &Sid) -> Option<Arc<Connection<D>>> {
        self.shard(sid).get(sid).cloned()
    }

    /// Inserts a session built by `make` under a fresh sid (drawing again on the
    /// astronomically unlikely collision).
    pub(crate) fn insert_new(
        &self,
        make: impl FnOnce(Sid) -> Arc<Connection<D>>,
    ) -> Arc<Connection<D>> {
        loop {
            let sid = Sid::random();
            let mut shard = self.shard(&sid);
            if shard.contains_key(&sid) {
                continue;
            }
            let conn = make(sid);
            shard.insert(sid, conn.clone());
            return conn;
        }
    }

    pub(crate) fn remove(&self, sid: &Sid) {
        self.shard(sid).remove(sid);
    }

    /// All sessions, collected shard by shard so no lock is held while the caller works.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Connection<D>>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(lock(shard).values().cloned());
        }
        all
    }

    /// Calls `f` with the sessions of each shard whose timer is due at `now`; returns the
    /// earliest timer left afterwards.
    pub(crate) fn for_each_due(&self, now: u64, mut f: impl FnMut(&Arc<Connection<D>>)) -> u64 {
        let mut due = Vec::new();
        let mut earliest = u64::MAX;
        for shard in self.shards.iter() {
            for conn in lock(shard).values() {
                let at = conn.timer_at.load(Ordering::SeqCst);
                if at <= now {
                    due.push(conn.clone());
                } else {
                    earliest = earliest.min(at);
                }
            }
            for conn in due.drain(..) {
                f(&conn);
                earliest = earliest.min(conn.timer_at.load(Ordering::SeqCst));
            }
        }
        earliest
    }
}
