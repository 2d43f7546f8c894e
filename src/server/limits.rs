//! Connection slots: the cap on concurrent boards, held as RAII permits.
//!
//! A [`Slot`] is taken before a board's thread is spawned and released when it is
//! dropped, so an early return or a panic in the thread cannot leak a slot (tiny_http's
//! `Registration`, Vector's connection permit). The registry also keeps a handle to each
//! open socket so that shutdown can drain them all (see [`Connections::close_reads`]).

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a board must be quiet during shutdown before its connection is closed.
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Stats;

/// A board's socket, shared by its thread and the registry.
pub struct BoardSocket {
    pub stream: TcpStream,
    /// True while the thread is in `read` (waiting, if its receive queue was empty).
    pub in_read: AtomicBool,
    /// Calls to `read` so far: tells a thread stuck in one `read` from a busy one.
    pub reads: AtomicU64,
}

impl BoardSocket {
    pub fn new(stream: TcpStream) -> Arc<BoardSocket> {
        Arc::new(BoardSocket {
            stream,
            in_read: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        })
    }
}

pub struct Connections {
    max: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    emptied: Condvar,
    next_id: AtomicU64,
    closing: AtomicBool,
    stats: Arc<Stats>,
}

/// The open sockets, and how many of them each address holds.
#[derive(Default)]
struct Open {
    sockets: HashMap<u64, Arc<BoardSocket>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a board was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `server.max_connections` boards are connected.
    Full,
    /// Its address already holds `server.max_connections_per_ip` connections.
    PerIp,
    /// The daemon is shutting down.
    Closing,
}

/// Permission for one board to be connected; gives the slot back on drop.
pub struct Slot {
    conns: Arc<Connections>,
    id: u64,
    ip: IpAddr,
}

impl Connections {
    pub fn new(max: usize, max_per_ip: usize, stats: Arc<Stats>) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            max_per_ip,
            open: Mutex::new(Open::default()),
            emptied: Condvar::new(),
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            stats,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn max_per_ip(&self) -> usize {
        self.max_per_ip
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a board connecting from `ip`, unless `max` boards are connected,
    /// `ip` already holds `max_per_ip` of them, or the daemon is shutting down. The
    /// per-address cap keeps one client (a flood, a slow drip of bytes) from taking
    /// every slot: other addresses still get in.
    pub fn try_acquire(self: &Arc<Self>, conn: &Arc<BoardSocket>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut open = self.lock();
        if self.closing.load(Ordering::Acquire) {
            return Err(Refused::Closing);
        }
        if open.sockets.len() >= self.max {
            return Err(Refused::Full);
        }
        let held = open.per_ip.entry(ip).or_insert(0);
        if *held >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *held += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.sockets.insert(id, Arc::clone(conn));
        self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            conns: Arc::clone(self),
            id,
            ip,
        })
    }

    pub fn len(&self) -> usize {
        self.lock().sockets.len()
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
        let in_read: Vec<(Arc<BoardSocket>, u64)> = self
            .lock()
            .sockets
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
        while !open.sockets.is_empty() {
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
        open.sockets.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.lock();
        open.sockets.remove(&self.id);
        if let Some(held) = open.per_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
        self.conns.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if open.sockets.is_empty() {
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
        let s = BoardSocket::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let conns = Connections::new(2, 2, Arc::new(Stats::default()));
        let a = conns.try_acquire(&s, ip).expect("first");
        let _b = conns.try_acquire(&s, ip).expect("second");
        assert_eq!(
            conns.try_acquire(&s, ip).err(),
            Some(Refused::Full),
            "third is over the limit"
        );
        drop(a);
        assert!(conns.try_acquire(&s, ip).is_ok(), "a released slot is reusable");
        let panicked = std::thread::spawn({
            let conns = Arc::clone(&conns);
            move || {
                let _slot = conns.try_acquire(&s, ip);
                panic!("worker panics while holding a slot");
            }
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(conns.len(), 1, "the panicking worker's slot was released");
    }

    #[test]
    fn per_address_cap_at_n_and_n_plus_1() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = BoardSocket::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let (one, two): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let conns = Connections::new(10, 3, Arc::new(Stats::default()));
        let held: Vec<Slot> = (0..3)
            .map(|_| conns.try_acquire(&s, one).expect("within the cap"))
            .collect();
        assert_eq!(conns.try_acquire(&s, one).err(), Some(Refused::PerIp));
        let other = conns.try_acquire(&s, two).expect("another address still gets in");
        drop(held);
        assert!(conns.try_acquire(&s, one).is_ok(), "released slots count again");
        drop(other);
        assert!(
            conns.lock().per_ip.len() <= 1,
            "addresses with no connection are forgotten"
        );
    }
}
