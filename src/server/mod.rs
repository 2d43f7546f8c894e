//! The listener: accepts boards and gives each its own thread.
//!
//! Why a large listen backlog: when many boards connect at the same moment (after a
//! power cut, all of them at once), connections wait in the kernel's accept queue
//! until this loop takes them. `std::net::TcpListener::bind` uses a fixed backlog of
//! 128; when the queue overflows, Linux falls back to SYN cookies and can reset
//! connections after the board has already written its readings, which the board never
//! notices. The original Python server lost 35–53% of readings this way with 1,000
//! boards. We bind with `socket2` and a configurable backlog (default 4096, capped by
//! the kernel's `net.core.somaxconn`) and keep the accept loop to a few syscalls.
//!
//! Shutdown wakes the blocked `accept` by connecting to the listener itself
//! (tiny_http's trick), see [`crate::shutdown`]. Before the listener closes, the loop
//! takes in what is still in the accept queue: those boards connected before the
//! signal and have likely sent their readings already, which closing the listener would
//! reset unread. The drain then reads them like every other connection.

pub mod allow;
pub mod connection;
pub mod limits;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::ratelog::{ByCause, RateLimitedLog};
use crate::server::connection::ConnectionContext;
use crate::server::limits::{BoardSocket, Connections, Refused};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Binds `addr` with address reuse (so a restart does not wait for TIME_WAIT) and the
/// given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Accept IPv4 too on [::] where the system allows it (the usual default).
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// How long shutdown keeps taking in boards that were already waiting to be accepted.
const BACKLOG_DRAIN: Duration = Duration::from_millis(500);

/// Runs until shutdown is requested, then takes in the boards still queued. Each accepted board gets a slot and a thread.
pub fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<ConnectionContext>,
    conns: &Arc<Connections>,
    shutdown: &Shutdown,
    stack_bytes: usize,
    tls: Option<&Arc<tls::TlsAcceptor>>,
) {
    let refusals = RateLimitedLog::new(Duration::from_secs(10));
    let per_ip_refusals = ByCause::new(Duration::from_secs(10), 256);
    let accept_errors = RateLimitedLog::new(Duration::from_secs(10));
    // Set once shutdown is seen: accept without blocking until the queue is empty, for
    // at most BACKLOG_DRAIN (boards that keep connecting must not hold shutdown up).
    let mut drain_until: Option<Instant> = None;
    loop {
        if drain_until.is_some_and(|t| Instant::now() >= t) {
            return;
        }
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) if drain_until.is_some() => return, // the queue is empty
            Err(e) => {
                if shutdown.is_requested() {
                    return;
                }
                accept_errors.log(|n| {
                    log::error!(
                        "Cannot accept a connection ({e}; {n} such errors). If this says 'Too many open files', raise the open-files limit (ulimit -n) or lower server.max_connections."
                    )
                });
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shutdown.is_requested() && drain_until.is_none() {
            if listener.set_nonblocking(true).is_err() {
                return;
            }
            drain_until = Some(Instant::now() + BACKLOG_DRAIN);
        }
        if drain_until.is_some() && shutdown.is_wake_connection(peer) {
            continue;
        }
        if !shared.doorman.admit(peer.ip()) {
            continue; // dropping the stream closes it
        }
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        let conn = BoardSocket::new(stream);
        let slot = match conns.try_acquire(&conn, peer.ip()) {
            Ok(slot) => slot,
            Err(Refused::PerIp) => {
                Stats::add(&shared.stats.connections_refused, 1);
                Stats::add(&shared.stats.refused_per_ip, 1);
                per_ip_refusals.log(&peer.ip().to_string(), |n| {
                    log::warn!(
                        "Refused board {peer}: its address already holds {} connections (server.max_connections_per_ip); {n} refused from it since the last such line. Raise the limit if many real boards share this address (NAT).",
                        conns.max_per_ip()
                    )
                });
                refuse(
                    &conn.stream,
                    &format!("ERR too-many-connections-from-address {}\n", conns.max_per_ip()),
                );
                continue;
            }
            Err(Refused::Full | Refused::Closing) => {
                Stats::add(&shared.stats.connections_refused, 1);
                refusals.log(|n| {
                    log::warn!(
                        "Refused board {peer}: {} boards are connected, the limit (server.max_connections); {n} refused so far. Raise the limit if these are real boards.",
                        conns.max()
                    )
                });
                refuse(&conn.stream, &format!("ERR too-many-connections {}\n", conns.max()));
                continue;
            }
        };
        let worker = {
            let conn = Arc::clone(&conn);
            let shared = Arc::clone(shared);
            let tls = tls.map(Arc::clone);
            move || connection::serve(conn, peer, shared, slot, tls)
        };
        if let Err(e) = std::thread::Builder::new()
            .name(format!("conn-{peer}"))
            .stack_size(stack_bytes)
            .spawn(worker)
        {
            // The closure (and with it the slot) is dropped: the slot is released.
            log::error!("Cannot start a thread for board {peer}: {e}. The board was told to retry; lower server.max_connections or raise the system's thread limit.");
            refuse(&conn.stream, "ERR server-busy\n");
        }
    }
}

/// Connects once to a listener of ours so that its blocked `accept` returns (the
/// accept loop then sees the shutdown flag). Unspecified addresses become loopback.
pub fn wake_listener(addr: SocketAddr) {
    let ip: std::net::IpAddr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), Duration::from_secs(1));
}

/// Most bytes read and thrown away from a refused board, before and after the reply.
const REFUSE_DRAIN_BYTES: usize = 64 * 1024;

/// Tells the board why in one line, then closes. Closing a socket with unread input
/// makes the kernel send a reset, and a reset can make the board's stack discard the
/// reply before the board reads it; so what the board already sent is read (without
/// blocking, bounded) before and after the reply, and the close is a FIN.
fn refuse(stream: &TcpStream, line: &str) {
    let _ = stream.set_nonblocking(true);
    drain(stream);
    let _ = (&*stream).write_all(line.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    drain(stream);
}

fn drain(stream: &TcpStream) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < REFUSE_DRAIN_BYTES {
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
