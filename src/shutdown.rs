//! Ctrl-C and SIGTERM: the first asks for a graceful stop, the second exits at once.
//! SIGHUP: reopen the CSV (the logrotate convention), never a stop.
//!
//! Ctrl-C comes through the `ctrlc` crate; SIGTERM and SIGHUP through a
//! `signal-hook` thread (ctrlc's "termination" feature would also turn SIGHUP into a
//! shutdown). The handlers only set flags, wake the threads that sleep on
//! [`Shutdown::sleep`], and unblock the accept loop by connecting to the listener once
//! (tiny_http's self-connect). The ordered shutdown itself runs on the main thread,
//! in [`crate::daemon`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Connects once to a listener of ours so that its blocked `accept` returns (the
/// accept loop then sees its stop flag): the TLS listener's and the dashboard's. Unspecified
/// addresses become loopback.
pub fn wake_listener(addr: SocketAddr) {
    let ip: IpAddr = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let _ = std::net::TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), Duration::from_secs(1));
}

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
    /// Set by the one wake connection; the wake may be attempted from `request` and
    /// from `set_wake_addr`, whichever comes second, and must happen once.
    woken: AtomicBool,
    /// SIGHUPs received so far.
    hangups: AtomicU64,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Installs the SIGINT, SIGTERM and SIGHUP handlers. Call once.
    pub fn install_signal_handler(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        ctrlc::set_handler(move || me.stop_signal()).map_err(std::io::Error::other)?;
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP])?;
        let me = Arc::clone(self);
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    log::info!("SIGHUP: reopening the CSV file if it was moved (logrotate).");
                    me.hangups.fetch_add(1, Ordering::AcqRel);
                    let _g = me.lock.lock().unwrap_or_else(|p| p.into_inner());
                    me.sleepers.notify_all();
                } else {
                    me.stop_signal();
                }
            }
        })?;
        Ok(())
    }

    fn stop_signal(&self) {
        if self.is_requested() {
            eprintln!("Second interrupt: exiting now without waiting for boards or the uploader.");
            std::process::exit(EXIT_FORCED);
        }
        log::info!(
            "Stop requested: no new boards are accepted; finishing what was read. Press Ctrl-C again to exit at once."
        );
        self.request();
    }

    /// SIGHUPs received so far: a change asks for the CSV to be reopened.
    pub fn hangups(&self) -> u64 {
        self.hangups.load(Ordering::Acquire)
    }

    /// The address the accept loop listens on, so that `request` can wake it.
    pub fn set_wake_addr(&self, listening: SocketAddr) {
        let ip = match listening.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, listening.port());
        *self.wake_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        // A signal that came between binding the listener and this call found no
        // address to wake: wake now, or `accept` would block forever.
        if self.is_requested() {
            self.wake(addr);
        }
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
        if self.woken.swap(true, Ordering::AcqRel) {
            return;
        }
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
        if d.is_zero() {
            return self.is_requested();
        }
        let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_requested() {
            return true;
        }
        let _ = self.sleepers.wait_timeout(g, d);
        self.is_requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn issue_8_a_signal_before_the_wake_address_is_known_still_wakes_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new();
        shutdown.request(); // the signal arrives first
        shutdown.set_wake_addr(listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let peer = loop {
            match listener.accept() {
                Ok((_, peer)) => break peer,
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("accept was never woken: {e}"),
            }
        };
        assert!(shutdown.is_wake_connection(peer));
        shutdown.request();
        shutdown.set_wake_addr(listener.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(listener.accept().is_err(), "only one wake connection is made");
    }
}
