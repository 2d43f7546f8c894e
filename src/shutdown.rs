//! Ctrl-C and SIGTERM: the first asks for a graceful stop, the second exits at once.
//!
//! The signal handler (a thread of the `ctrlc` crate) only sets a flag, wakes the
//! threads that sleep on [`Shutdown::sleep`], and unblocks the accept loop by
//! connecting to the listener once (tiny_http's self-connect). The ordered shutdown
//! itself runs on the main thread, in [`crate::daemon`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Exit code of a second Ctrl-C: 128 + SIGINT, as shells report it.
pub const EXIT_FORCED: i32 = 130;

#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    wake_addr: Mutex<Option<SocketAddr>>,
    /// The local address of the self-connection that wakes `accept`, so the accept loop
    /// can tell it from a board.
    wake_from: Mutex<Option<SocketAddr>>,
    sleepers: Condvar,
    lock: Mutex<()>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Installs the SIGINT/SIGTERM handler. Call once.
    pub fn install_signal_handler(self: &Arc<Self>) -> Result<(), ctrlc::Error> {
        let me = Arc::clone(self);
        ctrlc::set_handler(move || {
            if me.is_requested() {
                eprintln!("Second interrupt: exiting now without waiting for boards or the uploader.");
                std::process::exit(EXIT_FORCED);
            }
            log::info!("Stop requested: no new boards are accepted; finishing what was read. Press Ctrl-C again to exit at once.");
            me.request();
        })
    }

    /// The address the accept loop listens on, so that `request` can wake it.
    pub fn set_wake_addr(&self, listening: SocketAddr) {
        let ip = match listening.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        *self.wake_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(SocketAddr::new(ip, listening.port()));
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.sleepers.notify_all();
        }
        let addr = *self.wake_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = addr {
            self.wake(addr);
        }
    }

    /// Connects to the listener once. The socket is bound first, so its address is on
    /// record before the accept loop can see the connection.
    fn wake(&self, addr: SocketAddr) {
        let Ok(sock) = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)) else {
            return;
        };
        if sock.bind(&SocketAddr::new(addr.ip(), 0).into()).is_err() {
            return;
        }
        *self.wake_from.lock().unwrap_or_else(|p| p.into_inner()) = sock.local_addr().ok().and_then(|a| a.as_socket());
        let _ = sock.connect_timeout(&addr.into(), Duration::from_secs(1));
    }

    /// Whether a connection from `peer` is the one `request` made to wake `accept`.
    pub fn is_wake_connection(&self, peer: SocketAddr) -> bool {
        *self.wake_from.lock().unwrap_or_else(|p| p.into_inner()) == Some(peer)
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Sleeps for `d` or until shutdown is requested; returns true if it was.
    pub fn sleep(&self, d: Duration) -> bool {
        let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_requested() {
            return true;
        }
        let _ = self.sleepers.wait_timeout(g, d);
        self.is_requested()
    }
}
