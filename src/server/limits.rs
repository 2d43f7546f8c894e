//! Connection slots: the cap on concurrent boards, held as RAII permits.
//!
//! A [`Slot`] is taken before a board's thread is spawned and released when it is
//! dropped, so an early return or a panic in the thread cannot leak a slot (tiny_http's
//! `Registration`, Vector's connection permit). The registry also keeps a handle to each
//! open socket so that shutdown can drain them all (see [`Connections::close_reads`]).

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a board must be quiet during shutdown before its connection is closed.
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Stats;

/// A board's socket, shared by its thread and the registry.
pub struct Conn {
    pub stream: TcpStream,
    /// True while the thread is in `read` (waiting, if its receive queue was empty).
    pub in_read: AtomicBool,
    /// Calls to `read` so far: tells a thread stuck in one `read` from a busy one.
    pub reads: AtomicU64,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Arc<Conn> {
        Arc::new(Conn {
            stream,
            in_read: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        })
    }
}

pub struct Connections {
    max: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    emptied: Condvar,
    next_id: AtomicU64,
    closing: AtomicBool,
    stats: Arc<Stats>,
}

/// Permission for one board to be connected; gives the slot back on drop.
pub struct Slot {
    conns: Arc<Connections>,
    id: u64,
}

impl Connections {
    pub fn new(max: usize, stats: Arc<Stats>) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            open: Mutex::new(HashMap::new()),
            emptied: Condvar::new(),
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            stats,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `stream`, or `None` when `max` boards are connected (or shutting down).
    pub fn try_acquire(self: &Arc<Self>, conn: &Arc<Conn>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.max || self.closing.load(Ordering::Acquire) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, Arc::clone(conn));
        self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            conns: Arc::clone(self),
            id,
        })
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops new slots and drains every open connection: each socket's read timeout
    /// drops to [`DRAIN_QUIET`], so a busy board's thread keeps reading what is still
    /// arriving and stops after that much silence. A `read` that was already waiting keeps
    /// its old (idle) timeout, so a thread still in the same `read` after `DRAIN_QUIET` is
    /// woken by a half-close, which makes `read` return end-of-stream. Only such threads:
    /// a half-close would also cut off a busy board's data still in flight, and a busy
    /// thread, though often inside `read` for a moment, starts a new one every time.
    /// Blocks for `DRAIN_QUIET` when some thread was in `read`.
    pub fn close_reads(&self) {
        self.closing.store(true, Ordering::Release);
        let in_read: Vec<(Arc<Conn>, u64)> = self
            .lock()
            .values()
            .filter_map(|c| {
                let _ = c.stream.set_read_timeout(Some(DRAIN_QUIET));
                c.in_read
                    .load(Ordering::Acquire)
                    .then(|| (Arc::clone(c), c.reads.load(Ordering::Acquire)))
            })
            .collect();
        if in_read.is_empty() {
            return;
        }
        std::thread::sleep(DRAIN_QUIET);
        for (c, reads) in in_read {
            if c.in_read.load(Ordering::Acquire) && c.reads.load(Ordering::Acquire) == reads {
                let _ = c.stream.shutdown(Shutdown::Read);
            }
        }
    }

    /// Waits until every slot is released or `timeout` passes; returns how many remain.
    pub fn wait_empty(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut open = self.lock();
        while !open.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            open = self
                .emptied
                .wait_timeout(open, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        open.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.lock();
        open.remove(&self.id);
        self.conns.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if open.is_empty() {
            self.conns.emptied.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn exactly_max_slots_and_release_on_drop() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Conn::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let conns = Connections::new(2, Arc::new(Stats::default()));
        let a = conns.try_acquire(&s).expect("first");
        let _b = conns.try_acquire(&s).expect("second");
        assert!(conns.try_acquire(&s).is_none(), "third is over the limit");
        drop(a);
        assert!(conns.try_acquire(&s).is_some(), "a released slot is reusable");
        let panicked = std::thread::spawn({
            let conns = Arc::clone(&conns);
            move || {
                let _slot = conns.try_acquire(&s);
                panic!("worker panics while holding a slot");
            }
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(conns.len(), 1, "the panicking worker's slot was released");
    }
}
