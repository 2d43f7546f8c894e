//! The address allowlist: which peers may connect at all, decided at accept.
//!
//! `server.allow` (CIDRs, IPv4 and IPv6; empty = everyone) and `server.deny` (checked
//! first, so a deny inside an allowed range wins). A refused peer is closed at once,
//! before a slot or a thread is spent on it, counted, and logged at most once per
//! [`LOG_INTERVAL`] with the count. IPv4 peers reaching an IPv6 listener arrive as
//! IPv4-mapped addresses (`::ffff:a.b.c.d`); they are checked as the IPv4 address, so
//! one list serves both listeners.
//!
//! Parsing is `ipnet`'s; a bare address means that single host (`/32` or `/128`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// At most one log line about refused peers in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// Parses one entry: `10.0.0.0/8`, `fd00::/8`, or a bare address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR such as 192.168.1.0/24 or fd00::/8, nor an IP address"))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl AccessList {
    pub fn is_everyone(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// The list plus its refusal counter and log throttle, shared by the accept loops.
pub struct Doorman {
    list: AccessList,
    pub refused: AtomicU64,
    last_log: Mutex<(Option<Instant>, u64)>,
}

impl Doorman {
    pub fn new(list: AccessList) -> Doorman {
        Doorman {
            list,
            refused: AtomicU64::new(0),
            last_log: Mutex::new((None, 0)),
        }
    }

    /// Whether `ip` may connect; counts and (rate-limited) logs a refusal.
    pub fn admit(&self, ip: IpAddr) -> bool {
        if self.list.permits(ip) {
            return true;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut g = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        if g.0.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
            log::warn!(
                "Refused a connection from {ip}: not in server.allow or in server.deny ({} refused since the last such line).",
                g.1
            );
            *g = (Some(Instant::now()), 0);
        }
        false
    }

    pub fn list(&self) -> &AccessList {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        AccessList {
            allow: allow.iter().map(|s| parse_net(s).unwrap()).collect(),
            deny: deny.iter().map(|s| parse_net(s).unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allow_and_deny() {
        assert!(list(&[], &[]).permits(ip("8.8.8.8")), "empty = everyone");
        let l = list(&["192.168.1.0/24", "fd00::/8", "127.0.0.2"], &["192.168.1.13"]);
        assert!(l.permits(ip("192.168.1.7")));
        assert!(!l.permits(ip("192.168.1.13")), "deny wins");
        assert!(!l.permits(ip("192.168.2.1")));
        assert!(l.permits(ip("fd12::1")));
        assert!(l.permits(ip("127.0.0.2")));
        assert!(!l.permits(ip("127.0.0.1")));
        assert!(l.permits(ip("::ffff:192.168.1.7")), "IPv4-mapped checked as IPv4");
        assert!(!l.permits(ip("::ffff:192.168.1.13")));
        assert!(parse_net("10.0.0.1/33").is_err());
        assert!(parse_net("kitchen").is_err());
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn refusals_are_counted() {
        let d = Doorman::new(list(&["10.0.0.0/8"], &[]));
        assert!(d.admit(ip("10.1.1.1")));
        assert!(!d.admit(ip("11.1.1.1")));
        assert!(!d.admit(ip("11.1.1.2")));
        assert_eq!(d.refused.load(Ordering::Relaxed), 2);
    }
}
