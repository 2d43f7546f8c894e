//! Refused connections by reason and address, for the dashboard and `/metrics`.
//!
//! Many refusals from one address tell a NAT (a building's router: many real boards,
//! steady, each retrying now and then) from a flood (one client, fast). The table is
//! bounded: at most [`MAX_ADDRESSES`] (reason, address) entries; past that, refusals are
//! counted under the address `other`, and the per-reason totals are always exact. The
//! address is the board's real one (from the PROXY header when there is one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

/// (reason, address) entries remembered; the rest share `other`.
pub const MAX_ADDRESSES: usize = 256;

/// Why a connection was refused before it became a board's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `server.max_connections` boards were connected (or the daemon was closing).
    TooManyConnections,
    /// The address already held `server.max_connections_per_ip` connections.
    TooManyFromAddress,
    /// Outside `server.allow`, or inside `server.deny`.
    NotAllowed,
    /// A PROXY header from a peer outside `server.trusted_proxies`.
    ProxyHeaderNotTrusted,
    /// A malformed PROXY header (or none) from a trusted proxy.
    BadProxyHeader,
    /// The PROXY header was not complete within `server.proxy_header_timeout_secs`.
    ProxyHeaderTimeout,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::TooManyConnections,
        Reason::TooManyFromAddress,
        Reason::NotAllowed,
        Reason::ProxyHeaderNotTrusted,
        Reason::BadProxyHeader,
        Reason::ProxyHeaderTimeout,
    ];

    /// The label value in `/metrics` and the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooManyConnections => "too_many_connections",
            Reason::TooManyFromAddress => "too_many_from_ip",
            Reason::NotAllowed => "not_allowed",
            Reason::ProxyHeaderNotTrusted => "proxy_header_not_trusted",
            Reason::BadProxyHeader => "bad_proxy_header",
            Reason::ProxyHeaderTimeout => "proxy_header_timeout",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedView {
    pub reason: &'static str,
    /// The address, or `other` for those past [`MAX_ADDRESSES`].
    pub address: String,
    pub count: u64,
    pub last_unix_ms: u64,
}

/// (reason, address; `None` = the overflow row) -> (count, last refusal in Unix ms).
type Table = HashMap<(Reason, Option<IpAddr>), (u64, u64)>;

#[derive(Debug, Default)]
pub struct Refusals {
    totals: [AtomicU64; 6],
    by_address: Mutex<Table>,
}

impl Refusals {
    pub fn record(&self, reason: Reason, ip: IpAddr) {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.totals[reason as usize].fetch_add(1, Relaxed);
        let now = crate::fleet::boards::unix_ms(SystemTime::now());
        let mut t = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let key = if t.contains_key(&(reason, Some(ip))) || t.len() < MAX_ADDRESSES {
            (reason, Some(ip))
        } else {
            (reason, None)
        };
        let e = t.entry(key).or_insert((0, 0));
        e.0 += 1;
        e.1 = now;
    }

    pub fn total(&self, reason: Reason) -> u64 {
        self.totals[reason as usize].load(Relaxed)
    }

    /// The table, most refused first (then by reason and address), at most `limit` rows.
    pub fn snapshot(&self, limit: usize) -> Vec<RefusedView> {
        let t = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<_> = t.iter().map(|(k, v)| (*k, *v)).collect();
        drop(t);
        rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        rows.into_iter()
            .take(limit)
            .map(|((reason, ip), (count, last))| RefusedView {
                reason: reason.as_str(),
                address: ip.map_or_else(|| "other".to_string(), |ip| ip.to_string()),
                count,
                last_unix_ms: last,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_by_reason_and_address_and_bounded() {
        let r = Refusals::default();
        let a: IpAddr = "192.168.1.1".parse().unwrap();
        for _ in 0..3 {
            r.record(Reason::TooManyFromAddress, a);
        }
        r.record(Reason::TooManyFromAddress, "::ffff:192.168.1.1".parse().unwrap());
        r.record(Reason::NotAllowed, a);
        let s = r.snapshot(10);
        assert_eq!(s[0].reason, "too_many_from_ip");
        assert_eq!((s[0].address.as_str(), s[0].count), ("192.168.1.1", 4));
        assert_eq!(s[1].reason, "not_allowed");
        for i in 0..1000u32 {
            r.record(Reason::BadProxyHeader, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(r.total(Reason::BadProxyHeader), 1000);
        let all = r.snapshot(usize::MAX);
        assert!(all.len() <= MAX_ADDRESSES + 1, "{} rows", all.len());
        let other = all.iter().find(|v| v.address == "other").expect("an overflow row");
        let listed: u64 = all
            .iter()
            .filter(|v| v.reason == "bad_proxy_header")
            .map(|v| v.count)
            .sum();
        assert_eq!(listed, 1000, "the overflow row ({}) keeps the sum exact", other.count);
    }
}
