//! A real HAProxy (Debian's `haproxy` package) for the PROXY-protocol tests and bench:
//! where it is installed, starting it on a config the caller wrote and waiting until it
//! listens, and clients bound to a chosen loopback address so that each board arrives
//! from its own. Shared by `tests/proxy.rs` and `benches/proxy.rs` (`#[path]` include).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The installed `haproxy`: Debian puts it in /usr/sbin, not on a user's PATH.
pub fn installed() -> Option<&'static str> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// A HAProxy process listening on `fronts`; killed (by its pid) on drop.
pub struct Haproxy {
    child: Child,
    /// The frontends' addresses, in the order of the config.
    pub fronts: Vec<SocketAddr>,
}

impl Haproxy {
    /// Starts `bin` on the config at `config` and waits up to 10 s for every front to
    /// listen. Listening is seen as the port no longer bindable, not probed by
    /// connecting: a probe would reach the daemon as a connection of its own.
    pub fn start(bin: &str, config: &Path, fronts: Vec<SocketAddr>) -> Haproxy {
        let child = Command::new(bin)
            .args(["-db", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy (Debian package `haproxy`, installed by scripts/test --install)");
        let h = Haproxy { child, fronts };
        let deadline = Instant::now() + Duration::from_secs(10);
        for f in &h.fronts {
            while TcpListener::bind(f).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "HAProxy did not listen on {f}; config:\n{}",
                    std::fs::read_to_string(config).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `to` from the loopback address `from` (a board of its own), within
/// `connect`; reads and writes time out after `io`.
pub fn connect_from(from: &str, to: SocketAddr, connect: Duration, io: Duration) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{from}:0")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{from}: {e}")))?;
    s.bind(&local.into())?;
    s.connect_timeout(&to.into(), connect)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(io))?;
    s.set_write_timeout(Some(io))?;
    Ok(s)
}
