//! A real HAProxy (Debian's `haproxy` package) for the PROXY-protocol tests and bench:
//! where it is installed, starting it on a config the caller wrote and waiting until it
//! listens, and clients bound to a chosen loopback address so that each board arrives
//! from its own. Shared by `tests/proxy.rs` and `benches/proxy.rs` (`#[path]` include).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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

/// How many times [`Haproxy::start`] tries, each on fresh ports.
const START_ATTEMPTS: usize = 3;

impl Haproxy {
    /// Starts `bin` with `fronts` frontends on free loopback ports: `write_config` gets
    /// the ports' addresses and returns the path of the config it wrote for them. Waits
    /// up to 10 s for every front to listen, seen in `/proc` as a listening socket of
    /// HAProxy's own (a probe by connecting would reach the daemon as a connection of its
    /// own, and a port that is merely not bindable may be held by someone else).
    ///
    /// A port that was free when picked can be taken before HAProxy binds it (another
    /// client's outgoing connection gets the same ephemeral port), and then HAProxy exits
    /// at once. So an HAProxy that exits before it listens is started again on fresh
    /// ports, up to [`START_ATTEMPTS`] times; its stderr is kept next to the config and
    /// shown if it never listens.
    pub fn start(bin: &str, fronts: usize, mut write_config: impl FnMut(&[SocketAddr]) -> PathBuf) -> Haproxy {
        for attempt in 1..=START_ATTEMPTS {
            let addrs: Vec<SocketAddr> = (0..fronts).map(|_| free_loopback_port()).collect();
            let config = write_config(&addrs);
            let stderr_path = config.with_extension("stderr");
            let stderr = std::fs::File::create(&stderr_path).expect("create HAProxy's stderr file");
            let child = Command::new(bin)
                .args(["-db", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start haproxy (Debian package `haproxy`, installed by scripts/test --install)");
            let mut h = Haproxy { child, fronts: addrs };
            let why = match h.wait_listening(Duration::from_secs(10)) {
                Ok(()) => return h,
                Err(why) => why,
            };
            let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let exited = why.starts_with("exited");
            drop(h);
            assert!(
                exited && attempt < START_ATTEMPTS,
                "HAProxy {why} (attempt {attempt} of {START_ATTEMPTS}); its stderr:\n{said}\nconfig:\n{}",
                std::fs::read_to_string(&config).unwrap_or_default()
            );
            eprintln!(
                "HAProxy {why}; starting it again on fresh ports. Its stderr: {}",
                said.trim()
            );
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until HAProxy itself listens on every front; `Err` says why not (it exited,
    /// or the time ran out). Checked in `/proc`: a listening socket on the front's port
    /// among HAProxy's open files. A port held by another socket (the race above) is not
    /// taken for HAProxy's, however slowly HAProxy gets to exiting over it.
    fn wait_listening(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}) before listening on {:?}", self.fronts));
            }
            let own = socket_inodes(self.child.id());
            let missing = self
                .fronts
                .iter()
                .find(|f| !listening_inodes(f.port()).iter().any(|i| own.contains(i)));
            let Some(f) = missing else { return Ok(()) };
            if Instant::now() >= deadline {
                return Err(format!("did not listen on {f} within {} s", within.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The inodes of the sockets process `pid` has open (`/proc/PID/fd/N -> socket:[INODE]`).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The inodes of the IPv4 TCP sockets listening on `port` (`/proc/net/tcp`: the local
/// address is `HEXIP:HEXPORT`, state `0A` is LISTEN, the inode is the tenth column).
fn listening_inodes(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *cols.get(3)? == "0A").then(|| cols.get(9)?.parse().ok())?
        })
        .collect()
}

/// A loopback address with a port that is free now.
fn free_loopback_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
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
