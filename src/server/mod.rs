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
//! (tiny_http's trick), see `crate::shutdown`. Before the listener closes, the loop
//! takes in what is still in the accept queue: those boards connected before the
//! signal and have likely sent their readings already, which closing the listener would
//! reset unread. The drain then reads them like every other connection.

pub(crate) mod allow;
pub(crate) mod connection;
pub(crate) mod limits;
pub mod proxy;
pub(crate) mod refused;
pub(crate) mod settings;
pub(crate) mod tls_listener;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::ratelog::{ByCause, RateLimitedLog};
use crate::server::connection::ConnectionContext;
use crate::server::limits::{BoardSocket, Connections, Refused, Slot};
use crate::server::refused::Reason;
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

/// What one listener's accept loop shares with the threads it starts before a board's
/// session: the proxy settings and the rate-limited refusal logs.
struct Front {
    proxy: proxy::ProxyConfig,
    refusals: RateLimitedLog,
    per_ip_refusals: ByCause,
    /// WARN lines about PROXY headers, per proxy (bad, late) or per peer (untrusted).
    proxy_warnings: ByCause,
    /// Threads reading a PROXY header (no slot yet): at most `server.max_connections`.
    pending_headers: AtomicUsize,
}

/// One thread reading a PROXY header; released on drop.
struct PendingHeader<'a>(&'a AtomicUsize);

impl Drop for PendingHeader<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs until shutdown is requested, then takes in the boards still queued. Each accepted board gets a slot and a thread.
///
/// A connection from a trusted proxy (`server.trusted_proxies`, when
/// `server.proxy_protocol` is on) gets its thread first: the thread reads the PROXY
/// header (the accept loop must never wait on a peer), and only then is the board judged
/// by its real address: allow/deny, the per-address cap, its slot.
pub fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<ConnectionContext>,
    conns: &Arc<Connections>,
    shutdown: &Shutdown,
    stack_bytes: usize,
    tls: Option<&Arc<tls_listener::TlsAcceptor>>,
    proxy: &proxy::ProxyConfig,
) {
    let front = Arc::new(Front {
        proxy: proxy.clone(),
        refusals: RateLimitedLog::new(Duration::from_secs(10)),
        per_ip_refusals: ByCause::new(Duration::from_secs(10), 256),
        proxy_warnings: ByCause::new(Duration::from_secs(10), 256),
        pending_headers: AtomicUsize::new(0),
    });
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
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        if front.proxy.trusts(peer.ip()) {
            if front.pending_headers.fetch_add(1, Ordering::AcqRel) >= conns.max() {
                front.pending_headers.fetch_sub(1, Ordering::AcqRel);
                refuse_full(&front, shared, conns, &stream, peer);
                continue;
            }
            let worker = {
                let (shared, conns, front) = (Arc::clone(shared), Arc::clone(conns), Arc::clone(&front));
                let tls = tls.map(Arc::clone);
                move || {
                    let pending = PendingHeader(&front.pending_headers);
                    let Some(real) = read_proxy_header(&stream, peer, &front, &shared) else {
                        return;
                    };
                    drop(pending);
                    let conn = BoardSocket::new(stream);
                    if let Some(slot) = admit(&front, &shared, &conns, &conn, real) {
                        connection::serve(conn, real, shared, slot, tls);
                    }
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name(format!("proxied-{peer}"))
                .stack_size(stack_bytes)
                .spawn(worker)
            {
                front.pending_headers.fetch_sub(1, Ordering::AcqRel);
                log::error!("Cannot start a thread for a connection from proxy {peer}: {e}. Lower server.max_connections or raise the system's thread limit.");
            }
            continue;
        }
        let conn = BoardSocket::new(stream);
        let Some(slot) = admit(&front, shared, conns, &conn, peer) else {
            continue;
        };
        let worker = {
            let conn = Arc::clone(&conn);
            let shared = Arc::clone(shared);
            let tls = tls.map(Arc::clone);
            let front = Arc::clone(&front);
            move || {
                if front.proxy.is_on() && untrusted_header(&conn, peer, &front, &shared, tls.is_some()) {
                    return;
                }
                connection::serve(conn, peer, shared, slot, tls)
            }
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

/// Judges a board by its address (the real one, behind a proxy): `server.allow` and
/// `server.deny`, then a slot within `server.max_connections` and
/// `server.max_connections_per_ip`. Answers and counts a refusal.
fn admit(
    front: &Front,
    shared: &ConnectionContext,
    conns: &Arc<Connections>,
    conn: &Arc<BoardSocket>,
    peer: SocketAddr,
) -> Option<Slot> {
    if !shared.doorman.admit(peer.ip()) {
        shared.stats.refused.record(Reason::NotAllowed, peer.ip());
        return None; // dropping the stream closes it
    }
    match conns.try_acquire(conn, peer.ip()) {
        Ok(slot) => Some(slot),
        Err(Refused::PerIp) => {
            Stats::add(&shared.stats.connections_refused, 1);
            Stats::add(&shared.stats.refused_per_ip, 1);
            shared.stats.refused.record(Reason::TooManyFromAddress, peer.ip());
            front.per_ip_refusals.log(&peer.ip().to_string(), |n| {
                log::warn!(
                    "Refused board {peer}: its address already holds {} connections (server.max_connections_per_ip); {n} refused from it since the last such line. If many real boards share this address (NAT: a router, a building), raise server.max_connections_per_ip; if it is one client flooding, leave it or add the address to server.deny. The dashboard and /metrics list refusals by address.",
                    conns.max_per_ip()
                )
            });
            refuse(
                &conn.stream,
                &format!(
                    "ERR too-many-connections-from-address {} server.max_connections_per_ip\n",
                    conns.max_per_ip()
                ),
            );
            None
        }
        Err(Refused::Full | Refused::Closing) => {
            refuse_full(front, shared, conns, &conn.stream, peer);
            None
        }
    }
}

fn refuse_full(front: &Front, shared: &ConnectionContext, conns: &Connections, stream: &TcpStream, peer: SocketAddr) {
    Stats::add(&shared.stats.connections_refused, 1);
    shared.stats.refused.record(Reason::TooManyConnections, peer.ip());
    front.refusals.log(|n| {
        log::warn!(
            "Refused board {peer}: {} boards are connected, the limit (server.max_connections); {n} refused so far. Raise the limit if these are real boards.",
            conns.max()
        )
    });
    refuse(stream, &format!("ERR too-many-connections {}\n", conns.max()));
}

/// Reads the PROXY header from a trusted proxy's connection: the board's real address,
/// or `None` when the connection is over (a refused header, a health check).
fn read_proxy_header(
    stream: &TcpStream,
    proxy_addr: SocketAddr,
    front: &Front,
    shared: &ConnectionContext,
) -> Option<SocketAddr> {
    let cfg = &front.proxy;
    let header = proxy::read_header(stream, cfg.mode, cfg.header_timeout);
    // The session sets its own timeouts; until then, none left from the header's.
    let _ = stream.set_read_timeout(None);
    let stats = &shared.stats;
    match header {
        Ok(proxy::Header::Proxied { source, .. }) if !same_ip(source.ip(), proxy_addr.ip()) => {
            Stats::add(&stats.proxied_connections, 1);
            Some(source)
        }
        Ok(proxy::Header::Proxied { .. } | proxy::Header::Local) => {
            // The balancer's own connection: LOCAL (v2), UNKNOWN (v1), or a header naming
            // the balancer itself (HAProxy's `check send-proxy` health checks describe
            // their own connection). A health check never counts as a board; one that
            // goes on to send data is served as the proxy's own connection.
            let _ = stream.set_read_timeout(Some(shared.idle_timeout));
            match stream.peek(&mut [0u8; 1]) {
                Ok(n) if n > 0 => {
                    let _ = stream.set_read_timeout(None);
                    Some(proxy_addr)
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => None,
                // Closed (HAProxy's checks end with a reset) without a byte: a health check.
                Ok(_) | Err(_) => {
                    Stats::add(&stats.proxy_health_checks, 1);
                    log::trace!("Health check from proxy {proxy_addr}.");
                    None
                }
            }
        }
        Err(proxy::ReadError::Closed) => {
            log::debug!("Proxy {proxy_addr} closed a connection before its PROXY header was complete.");
            None
        }
        Err(proxy::ReadError::Io(e)) => {
            log::debug!("Cannot read the PROXY header from {proxy_addr}: {e}.");
            None
        }
        Err(proxy::ReadError::Timeout) => {
            stats.refused.record(Reason::ProxyHeaderTimeout, proxy_addr.ip());
            front.proxy_warnings.log(&proxy_addr.ip().to_string(), |n| {
                log::warn!(
                    "Closed a connection from proxy {proxy_addr}: its PROXY header was not complete within {} s (server.proxy_header_timeout_secs); {n} such from it since the last such line. Check that the balancer sends the header (HAProxy: send-proxy-v2 on the server line).",
                    cfg.header_timeout.as_secs()
                )
            });
            None
        }
        Err(proxy::ReadError::Bad(why)) => {
            stats.refused.record(Reason::BadProxyHeader, proxy_addr.ip());
            front.proxy_warnings.log(&proxy_addr.ip().to_string(), |n| {
                log::warn!(
                    "Refused a connection from proxy {proxy_addr}: {why}; {n} such from it since the last such line. Connections from server.trusted_proxies must start with a PROXY header of the version set in server.proxy_protocol = \"{}\"; check the balancer's send-proxy setting, or remove the address from server.trusted_proxies if boards connect from it directly.",
                    cfg.mode.as_str()
                )
            });
            refuse(stream, "ERR bad-proxy-header\n");
            None
        }
    }
}

/// Whether two addresses are the same host (an IPv4-mapped IPv6 address as IPv4).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    };
    v4(a) == v4(b)
}

/// Whether a peer outside `server.trusted_proxies` began with a PROXY header (then it is
/// refused, answered, counted and logged): a header is only believed from a trusted
/// proxy. Looks without consuming, before the session (and before a TLS handshake).
fn untrusted_header(
    conn: &BoardSocket,
    peer: SocketAddr,
    front: &Front,
    shared: &ConnectionContext,
    tls: bool,
) -> bool {
    let stream = &conn.stream;
    let _ = stream.set_read_timeout(Some(shared.idle_timeout));
    let mut first = [0u8; 12];
    // Marked as in a read, so that shutdown half-closes a board that has sent nothing.
    conn.in_read.store(true, Ordering::Release);
    let peeked = stream.peek(&mut first);
    conn.in_read.store(false, Ordering::Release);
    match peeked {
        Ok(n) if proxy::looks_like_header(&first[..n]) => {
            shared.stats.refused.record(Reason::ProxyHeaderNotTrusted, peer.ip());
            front.proxy_warnings.log(&peer.ip().to_string(), |n| {
                log::warn!(
                    "Refused a PROXY header from {peer}, which is not in server.trusted_proxies; {n} such from it since the last such line. If {} is your load balancer, add it to server.trusted_proxies.",
                    peer.ip()
                )
            });
            refuse(stream, "ERR proxy-header-not-trusted\n");
            true
        }
        Ok(_) => false,
        Err(e) if !tls && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            // Silent for the whole idle timeout: the session would say the same.
            Stats::add(&shared.stats.idle_timeouts, 1);
            let secs = shared.idle_timeout.as_secs();
            let _ = (&*stream).write_all(format!("ERR idle-timeout {secs}\n").as_bytes());
            true
        }
        Err(_) => false,
    }
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
