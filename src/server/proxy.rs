//! The PROXY protocol (HAProxy's specification, versions 1 and 2): a load balancer in
//! TCP mode tells us the board's real address in a short header at the start of the
//! connection, before any reading (and before the TLS handshake).
//!
//! Only peers in `server.trusted_proxies` may send it; from them a connection must start
//! with a valid header (`server.proxy_protocol` says which versions), and the address in
//! it becomes the connection's address everywhere (limits, allow/deny, token backoff,
//! the `peer` column, logs, dashboard, `/metrics`). A `LOCAL` (v2) or `UNKNOWN` (v1)
//! header is a health check or the balancer's own connection: it keeps the balancer's
//! address and never counts as a board.
//!
//! [`parse`] is pure and total (fuzzed in `fuzz/fuzz_targets/proxy_header.rs`): it looks
//! at the bytes received so far and says whether they are a complete header, could still
//! become one, or cannot. Sizes are bounded: a v1 line is at most [`V1_MAX_BYTES`]
//! (107, the specification's limit, CRLF included); a v2 header at most 16 bytes plus
//! [`V2_MAX_ADDRESS_BYTES`] of addresses plus [`V2_MAX_TLV_BYTES`] of TLVs, which are
//! length-checked and otherwise ignored. [`read_header`] is the only I/O: it peeks at the
//! socket and consumes exactly the header's bytes (never a byte of what follows), within
//! `server.proxy_header_timeout_secs` overall.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// The v1 line's maximum length, CRLF included (the specification's figure).
pub const V1_MAX_BYTES: usize = 107;
/// The v2 fixed part: signature (12), version/command, family/protocol, length (2).
pub const V2_FIXED_BYTES: usize = 16;
/// The largest address block (two AF_UNIX paths of 108 bytes).
pub const V2_MAX_ADDRESS_BYTES: usize = 216;
/// TLVs after the addresses (AWS NLB's endpoint id, HAProxy's unique id, ALPN, SSL
/// details): accepted up to this many bytes in all, each one's length checked.
pub const V2_MAX_TLV_BYTES: usize = 1024;
/// The most bytes a header may take.
pub const MAX_HEADER_BYTES: usize = V2_FIXED_BYTES + V2_MAX_ADDRESS_BYTES + V2_MAX_TLV_BYTES;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// `server.proxy_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    V1,
    V2,
    /// Either version, told apart by the first bytes.
    Any,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "off" => Mode::Off,
            "v1" => Mode::V1,
            "v2" => Mode::V2,
            "any" => Mode::Any,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::V1 => "v1",
            Mode::V2 => "v2",
            Mode::Any => "any",
        }
    }
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection was relayed for this client (to this address of the balancer).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `LOCAL` (v2), `UNKNOWN` (v1), or an address family we do not carry (AF_UNIX,
    /// UDP): the connection is the balancer's own, e.g. a health check.
    Local,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header could still follow; read more.
    Incomplete,
    /// A header of `len` bytes (what follows belongs to the connection).
    Complete { header: Header, len: usize },
}

/// Why the bytes are not an acceptable header: said in the WARN line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// The connection does not start with a PROXY header at all.
    Missing,
    /// A v1 header where only v2 is accepted, or the reverse.
    WrongVersion {
        got: u8,
        mode: Mode,
    },
    /// No CRLF within 107 bytes.
    V1TooLong,
    V1Malformed(&'static str),
    V2UnknownVersion(u8),
    V2UnknownCommand(u8),
    /// The length field is larger than addresses plus TLVs may be.
    V2TooLong(usize),
    /// The length is too short for the address family it names.
    V2ShortAddresses {
        family: u8,
        len: usize,
    },
    /// A TLV runs past the end of the header.
    V2BadTlv,
}

impl std::fmt::Display for BadHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadHeader::Missing => f.write_str("the connection does not start with a PROXY protocol header"),
            BadHeader::WrongVersion { got, mode } => write!(
                f,
                "a version {got} header, but server.proxy_protocol = \"{}\"",
                mode.as_str()
            ),
            BadHeader::V1TooLong => write!(f, "a v1 header without CRLF in its first {V1_MAX_BYTES} bytes"),
            BadHeader::V1Malformed(why) => write!(f, "a malformed v1 header ({why})"),
            BadHeader::V2UnknownVersion(v) => write!(f, "a v2 signature with version {v}"),
            BadHeader::V2UnknownCommand(c) => write!(f, "a v2 header with unknown command {c}"),
            BadHeader::V2TooLong(n) => write!(
                f,
                "a v2 header announcing {n} bytes after the fixed part (at most {} accepted)",
                V2_MAX_ADDRESS_BYTES + V2_MAX_TLV_BYTES
            ),
            BadHeader::V2ShortAddresses { family, len } => {
                write!(f, "a v2 header of {len} bytes, too short for address family {family}")
            }
            BadHeader::V2BadTlv => f.write_str("a v2 header whose TLVs overrun its length"),
        }
    }
}

/// Whether `data` (the first bytes of a connection) begins like a PROXY header, either
/// version; used to refuse one from a peer that is not a trusted proxy. Needs the
/// whole v1 prefix (6 bytes) or v2 signature (12 bytes).
pub fn looks_like_header(data: &[u8]) -> bool {
    data.starts_with(V1_PREFIX) || data.starts_with(V2_SIGNATURE)
}

/// Looks at the first bytes of a connection from a trusted proxy. Total: any input gets
/// an answer, never a panic, and never an index past `data`.
pub fn parse(data: &[u8], mode: Mode) -> Result<Parsed, BadHeader> {
    let v1 = is_prefix(data, V1_PREFIX);
    let v2 = is_prefix(data, V2_SIGNATURE);
    match (v1, v2) {
        (false, false) => Err(BadHeader::Missing),
        (true, _) if mode == Mode::V2 => Err(BadHeader::WrongVersion { got: 1, mode }),
        (_, true) if mode == Mode::V1 => Err(BadHeader::WrongVersion { got: 2, mode }),
        (true, _) => parse_v1(data),
        (_, true) => parse_v2(data),
    }
}

/// Whether `data` and `prefix` agree on their common length (and `data` is not empty).
fn is_prefix(data: &[u8], prefix: &[u8]) -> bool {
    let n = data.len().min(prefix.len());
    n > 0 && data[..n] == prefix[..n]
}

fn parse_v1(data: &[u8]) -> Result<Parsed, BadHeader> {
    let window = &data[..data.len().min(V1_MAX_BYTES)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if data.len() >= V1_MAX_BYTES {
            Err(BadHeader::V1TooLong)
        } else if window
            .iter()
            .any(|b| !(b.is_ascii_graphic() || *b == b' ' || *b == b'\r'))
        {
            Err(BadHeader::V1Malformed("a byte that is not printable ASCII"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(BadHeader::V1Malformed("the line does not end with CRLF"));
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..lf - 1])
        .map_err(|_| BadHeader::V1Malformed("a byte that is not printable ASCII"))?;
    if line.bytes().any(|b| !(b.is_ascii_graphic() || b == b' ')) {
        return Err(BadHeader::V1Malformed("a byte that is not printable ASCII"));
    }
    let len = lf + 1;
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The rest of the line is to be ignored (the specification's words).
        return Ok(Parsed::Complete {
            header: Header::Local,
            len,
        });
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(BadHeader::V1Malformed("the protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(BadHeader::V1Malformed(
            "not four fields after the protocol, one space apart",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, BadHeader> {
        let ip = if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| BadHeader::V1Malformed("an address that does not match the protocol"))
    };
    Ok(Parsed::Complete {
        header: Header::Proxied {
            source: SocketAddr::new(ip(src)?, port(sport)?),
            destination: SocketAddr::new(ip(dst)?, port(dport)?),
        },
        len,
    })
}

/// A decimal port: 1 to 5 digits, no sign, no leading zero (but "0" itself).
fn port(s: &str) -> Result<u16, BadHeader> {
    let ok =
        !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u16>().ok())
        .flatten()
        .ok_or(BadHeader::V1Malformed("a port that is not a number from 0 to 65535"))
}

fn parse_v2(data: &[u8]) -> Result<Parsed, BadHeader> {
    if data.len() < V2_FIXED_BYTES {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = data[12];
    let (version, command) = (ver_cmd >> 4, ver_cmd & 0x0f);
    if version != 2 {
        return Err(BadHeader::V2UnknownVersion(version));
    }
    if command > 1 {
        return Err(BadHeader::V2UnknownCommand(command));
    }
    let fam = data[13];
    let body_len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if body_len > V2_MAX_ADDRESS_BYTES + V2_MAX_TLV_BYTES {
        return Err(BadHeader::V2TooLong(body_len));
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    let address_bytes = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        // An unknown family: its addresses cannot be read, only skipped (below).
        _ => 0,
    };
    // The length is checked before waiting for the rest: a short one is refused at once.
    if command == 1 && body_len < address_bytes {
        return Err(BadHeader::V2ShortAddresses { family, len: body_len });
    }
    let len = V2_FIXED_BYTES + body_len;
    if data.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &data[V2_FIXED_BYTES..len];
    if command == 0 {
        // LOCAL: the balancer's own connection; the block is to be skipped unread.
        return Ok(Parsed::Complete {
            header: Header::Local,
            len,
        });
    }
    if body_len - address_bytes > V2_MAX_TLV_BYTES {
        return Err(BadHeader::V2TooLong(body_len));
    }
    check_tlvs(&body[address_bytes..])?;
    let header = match (family, transport) {
        (1, 1) => {
            let a = |i: usize| Ipv4Addr::new(body[i], body[i + 1], body[i + 2], body[i + 3]);
            Header::Proxied {
                source: SocketAddr::new(a(0).into(), u16::from_be_bytes([body[8], body[9]])),
                destination: SocketAddr::new(a(4).into(), u16::from_be_bytes([body[10], body[11]])),
            }
        }
        (2, 1) => {
            let a = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[i..i + 16]);
                Ipv6Addr::from(o)
            };
            Header::Proxied {
                source: SocketAddr::new(a(0).into(), u16::from_be_bytes([body[32], body[33]])),
                destination: SocketAddr::new(a(16).into(), u16::from_be_bytes([body[34], body[35]])),
            }
        }
        // UNSPEC, AF_UNIX, datagrams: the specification says to use the connection's own
        // addresses.
        _ => Header::Local,
    };
    Ok(Parsed::Complete { header, len })
}

/// Each TLV is type (1 byte), length (2 bytes, big-endian), value; they must tile `tlvs`.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), BadHeader> {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(BadHeader::V2BadTlv);
        }
        let n = 3 + usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        if n > tlvs.len() {
            return Err(BadHeader::V2BadTlv);
        }
        tlvs = &tlvs[n..];
    }
    Ok(())
}

/// `server.proxy_protocol`, `server.trusted_proxies`, `server.proxy_header_timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub mode: Mode,
    pub trusted: Vec<IpNet>,
    pub header_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: Mode::Off,
            trusted: Vec::new(),
            header_timeout: Duration::from_secs(5),
        }
    }
}

impl ProxyConfig {
    pub fn is_on(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped address is checked as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.is_on() && self.trusted.iter().any(|n| n.contains(&ip))
    }
}

/// Why no header could be read.
#[derive(Debug)]
pub enum ReadError {
    /// Not complete within `server.proxy_header_timeout_secs`.
    Timeout,
    /// The proxy closed before the header was complete.
    Closed,
    Io(std::io::Error),
    Bad(BadHeader),
}

/// Reads the header from a trusted proxy's connection: peeks at what has arrived,
/// consumes exactly the header's bytes (the rest stays in the socket for the board's
/// session or the TLS handshake), all within `timeout`. Holds at most
/// [`MAX_HEADER_BYTES`]. Leaves the socket's read timeout to the caller to reset.
pub fn read_header(stream: &TcpStream, mode: Mode, timeout: Duration) -> Result<Header, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER_BYTES];
    let mut have = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        let n = match stream.peek(&mut buf[have..]) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ReadError::Timeout)
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        let end = have + n;
        let (consume, done) = match parse(&buf[..end], mode).map_err(ReadError::Bad)? {
            Parsed::Complete { header, len } => (len, Some(header)),
            // Every byte seen so far is the header's: take them, wait for more.
            Parsed::Incomplete => (end, None),
        };
        (&*stream).read_exact(&mut buf[have..consume]).map_err(ReadError::Io)?;
        have = consume;
        if let Some(header) = done {
            return Ok(header);
        }
        if have == buf.len() {
            // Cannot happen (parse bounds every header below the buffer), but never spin.
            return Err(ReadError::Bad(BadHeader::V2TooLong(have)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(data: &[u8], mode: Mode) -> (Header, usize) {
        match parse(data, mode) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("expected a complete header from {data:?}, got {other:?}"),
        }
    }

    /// A v2 header: command, family/transport byte, address block and TLVs.
    fn v2(command: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn v4_body() -> Vec<u8> {
        let mut b = vec![127, 0, 0, 7, 10, 0, 0, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&8090u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.168.1.7 10.0.0.1 56324 8090\r\nboard data";
        let (h, len) = complete(line, Mode::V1);
        assert_eq!(len, line.len() - b"board data".len(), "the header ends at its CRLF");
        assert_eq!(
            h,
            Header::Proxied {
                source: sa("192.168.1.7:56324"),
                destination: sa("10.0.0.1:8090")
            }
        );
        let (h, _) = complete(b"PROXY TCP6 2001:db8::7 ::1 1 65535\r\n", Mode::Any);
        assert_eq!(
            h,
            Header::Proxied {
                source: sa("[2001:db8::7]:1"),
                destination: sa("[::1]:65535")
            }
        );
        assert_eq!(complete(b"PROXY UNKNOWN\r\n", Mode::V1).0, Header::Local);
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Mode::V1).0,
            Header::Local,
            "the rest of an UNKNOWN line is ignored"
        );
    }

    #[test]
    fn v1_at_exactly_107_bytes_and_at_108() {
        // TCP6 with the longest addresses: the specification's worst case is 104 bytes.
        let long = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let worst = format!("PROXY TCP6 {long} {long} 65535 65535\r\n");
        assert_eq!(worst.len(), 104);
        complete(worst.as_bytes(), Mode::V1);
        // UNKNOWN may carry anything up to the limit.
        let mut at_limit = b"PROXY UNKNOWN ".to_vec();
        at_limit.resize(V1_MAX_BYTES - 2, b'x');
        at_limit.extend_from_slice(b"\r\n");
        assert_eq!(at_limit.len(), 107);
        assert_eq!(complete(&at_limit, Mode::V1).0, Header::Local);
        let mut over = at_limit.clone();
        over.insert(20, b'x');
        assert_eq!(parse(&over, Mode::V1), Err(BadHeader::V1TooLong));
        // Without a CRLF, 106 bytes may still become a header; 107 cannot.
        assert_eq!(parse(&at_limit[..106], Mode::V1), Ok(Parsed::Incomplete));
        assert_eq!(parse(&[b'x'; 200][..], Mode::V1), Err(BadHeader::Missing));
        let mut no_crlf = b"PROXY ".to_vec();
        no_crlf.resize(107, b'1');
        assert_eq!(parse(&no_crlf, Mode::V1), Err(BadHeader::V1TooLong));
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],  // no CR
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       // three fields
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",    // two spaces
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",   // five fields
            b"PROXY TCP4 ::1 ::1 1 2\r\n",             // v6 under TCP4
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",     // v4 under TCP6
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", // port too large
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",    // signed port
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",    // leading zero
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",   // not an address
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",     // not TCP
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",   // stray CR
            b"PROXY \xff\r\n",                         // not ASCII
        ] {
            assert!(
                matches!(parse(bad, Mode::Any), Err(BadHeader::V1Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(bad),
                parse(bad, Mode::Any)
            );
        }
        assert!(
            matches!(parse(b"PROXY TCP4\x00", Mode::V1), Err(BadHeader::V1Malformed(_))),
            "a NUL before the CRLF is refused without waiting for more"
        );
    }

    #[test]
    fn truncated_headers_are_incomplete_at_every_length() {
        let v1 = b"PROXY TCP4 192.168.1.7 10.0.0.1 56324 8090\r\n";
        let v2h = v2(1, 0x11, &v4_body());
        for (h, mode) in [
            (&v1[..], Mode::V1),
            (&v2h[..], Mode::V2),
            (&v1[..], Mode::Any),
            (&v2h[..], Mode::Any),
        ] {
            for n in 1..h.len() {
                assert_eq!(parse(&h[..n], mode), Ok(Parsed::Incomplete), "{n} bytes of {h:?}");
            }
            assert!(matches!(parse(h, mode), Ok(Parsed::Complete { len, .. }) if len == h.len()));
        }
        assert_eq!(parse(b"", Mode::Any), Err(BadHeader::Missing));
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_unix() {
        let h = v2(1, 0x11, &v4_body());
        assert_eq!(
            complete(&h, Mode::V2),
            (
                Header::Proxied {
                    source: sa("127.0.0.7:40000"),
                    destination: sa("10.0.0.1:8090")
                },
                28
            )
        );
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x9a]);
        assert_eq!(
            complete(&v2(1, 0x21, &body), Mode::Any).0,
            Header::Proxied {
                source: sa("[2001:db8::7]:40000"),
                destination: sa("[::1]:8090")
            }
        );
        // LOCAL: health checks; whatever its block says is skipped.
        assert_eq!(complete(&v2(0, 0x00, &[]), Mode::V2), (Header::Local, 16));
        assert_eq!(complete(&v2(0, 0x11, &v4_body()), Mode::V2).0, Header::Local);
        // AF_UNIX and UNSPEC carry no IP: the connection is the balancer's own.
        assert_eq!(complete(&v2(1, 0x31, &[0u8; 216]), Mode::V2).0, Header::Local);
        assert_eq!(complete(&v2(1, 0x00, &[]), Mode::V2).0, Header::Local);
        assert_eq!(complete(&v2(1, 0x12, &v4_body()), Mode::V2).0, Header::Local, "UDP");
    }

    #[test]
    fn v2_tlvs_are_length_checked_and_ignored() {
        let mut body = v4_body();
        body.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']); // UNIQUE_ID "abc"
        body.extend_from_slice(&[0xEA, 0x00, 0x00]); // an empty AWS TLV
        let h = v2(1, 0x11, &body);
        assert!(matches!(
            complete(&h, Mode::V2).0,
            Header::Proxied { source, .. } if source == sa("127.0.0.7:40000")
        ));
        let mut overrun = v4_body();
        overrun.extend_from_slice(&[0x05, 0x00, 0x09, b'a']);
        assert_eq!(parse(&v2(1, 0x11, &overrun), Mode::V2), Err(BadHeader::V2BadTlv));
        let mut stub = v4_body();
        stub.extend_from_slice(&[0x05, 0x00]);
        assert_eq!(parse(&v2(1, 0x11, &stub), Mode::V2), Err(BadHeader::V2BadTlv));
        // TLVs up to the limit are fine; one byte more is refused.
        let mut big = v4_body();
        big.push(0x05);
        big.extend_from_slice(&((V2_MAX_TLV_BYTES - 3) as u16).to_be_bytes());
        big.resize(12 + V2_MAX_TLV_BYTES, b'x');
        complete(&v2(1, 0x11, &big), Mode::V2);
        let mut bigger = v4_body();
        bigger.push(0x05);
        bigger.extend_from_slice(&((V2_MAX_TLV_BYTES - 2) as u16).to_be_bytes());
        bigger.resize(12 + V2_MAX_TLV_BYTES + 1, b'x');
        assert!(matches!(
            parse(&v2(1, 0x11, &bigger), Mode::V2),
            Err(BadHeader::V2TooLong(_))
        ));
    }

    #[test]
    fn v2_oversize_and_garbage() {
        // A length of 65535 is refused from the 16 fixed bytes, without waiting for them.
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&h, Mode::V2), Err(BadHeader::V2TooLong(65535)));
        let mut h = v2(1, 0x11, &v4_body());
        h[12] = 0x31;
        assert_eq!(parse(&h, Mode::V2), Err(BadHeader::V2UnknownVersion(3)));
        h[12] = 0x2f;
        assert_eq!(parse(&h, Mode::V2), Err(BadHeader::V2UnknownCommand(15)));
        assert_eq!(
            parse(&v2(1, 0x21, &v4_body()), Mode::V2),
            Err(BadHeader::V2ShortAddresses { family: 2, len: 12 }),
            "an IPv6 family with IPv4-sized addresses"
        );
        assert_eq!(parse(b"\r\n\r\nxyz", Mode::V2), Err(BadHeader::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", Mode::Any), Err(BadHeader::Missing));
        assert_eq!(parse(b"temp=21.5\n", Mode::Any), Err(BadHeader::Missing));
        assert_eq!(
            parse(&[0x16, 0x03, 0x01], Mode::Any),
            Err(BadHeader::Missing),
            "a TLS hello"
        );
    }

    #[test]
    fn the_configured_version_is_enforced() {
        let v1 = b"PROXY UNKNOWN\r\n";
        let v2h = v2(0, 0, &[]);
        assert_eq!(
            parse(v1, Mode::V2),
            Err(BadHeader::WrongVersion { got: 1, mode: Mode::V2 })
        );
        assert_eq!(
            parse(&v2h, Mode::V1),
            Err(BadHeader::WrongVersion { got: 2, mode: Mode::V1 })
        );
        assert!(parse(v1, Mode::Any).is_ok() && parse(&v2h, Mode::Any).is_ok());
        assert!(BadHeader::WrongVersion { got: 1, mode: Mode::V2 }
            .to_string()
            .contains("server.proxy_protocol = \"v2\""));
    }

    #[test]
    fn looks_like_header_needs_the_whole_signature() {
        assert!(looks_like_header(b"PROXY TCP4 ..."));
        assert!(looks_like_header(&v2(0, 0, &[])));
        assert!(!looks_like_header(b"PROX"));
        assert!(!looks_like_header(b"PROXYtemp=1\n"));
        assert!(!looks_like_header(b"temp=21.5\n"));
    }

    #[test]
    fn trust_is_by_cidr_and_only_when_on() {
        let mut c = ProxyConfig {
            mode: Mode::Any,
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ..ProxyConfig::default()
        };
        assert!(c.trusts("10.1.2.3".parse().unwrap()));
        assert!(c.trusts("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped");
        assert!(c.trusts("fd12::1".parse().unwrap()));
        assert!(!c.trusts("11.1.2.3".parse().unwrap()));
        c.mode = Mode::Off;
        assert!(!c.trusts("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn read_header_consumes_exactly_the_header() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        // Sent in pieces, with the board's first line right behind the header.
        let h = b"PROXY TCP4 127.0.0.9 127.0.0.1 5000 8090\r\ntemp=1\n";
        c.write_all(&h[..10]).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c.write_all(&h[10..]).unwrap();
            c
        });
        let got = read_header(&s, Mode::Any, Duration::from_secs(10)).unwrap();
        assert!(matches!(got, Header::Proxied { source, .. } if source == sa("127.0.0.9:5000")));
        let _c = t.join().unwrap();
        let mut rest = [0u8; 7];
        (&s).read_exact(&mut rest).unwrap();
        assert_eq!(
            &rest, b"temp=1\n",
            "the bytes after the header are left for the session"
        );
    }

    #[test]
    fn read_header_times_out_and_sees_a_close() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        c.write_all(b"PROXY TCP4 ").unwrap();
        assert!(matches!(
            read_header(&s, Mode::V1, Duration::from_millis(100)),
            Err(ReadError::Timeout)
        ));
        drop(c);
        assert!(matches!(
            read_header(&s, Mode::V1, Duration::from_secs(10)),
            Err(ReadError::Closed)
        ));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Header-like bytes: a real start, then bytes from the header's alphabet.
        fn input() -> impl Strategy<Value = Vec<u8>> {
            let start = prop_oneof![
                Just(b"PROXY TCP4 ".to_vec()),
                Just(b"PROXY TCP6 ".to_vec()),
                Just(b"PROXY UNKNOWN".to_vec()),
                Just(V2_SIGNATURE.to_vec()),
                Just(Vec::new()),
            ];
            let byte = prop_oneof![
                Just(b' '),
                Just(b'\r'),
                Just(b'\n'),
                Just(b'.'),
                Just(b':'),
                Just(b'1'),
                Just(0x21),
                Just(0x11),
                Just(0u8),
                any::<u8>()
            ];
            (start, proptest::collection::vec(byte, 0..300)).prop_map(|(mut s, rest)| {
                s.extend(rest);
                s
            })
        }

        proptest! {
            #![proptest_config(config())]

            /// What `read_header` relies on, peeking at growing prefixes: once refused,
            /// always refused; a complete header is bounded, independent of what follows,
            /// and every shorter prefix of it is incomplete. (fuzz/fuzz_targets/proxy_header.rs
            /// checks the same on libFuzzer's inputs.)
            #[test]
            fn prefixes_agree(data in input(), m in 0..3usize) {
                let mode = [Mode::V1, Mode::V2, Mode::Any][m];
                let mut refused = false;
                let mut complete: Option<(Header, usize)> = None;
                for k in 1..=data.len() {
                    match parse(&data[..k], mode) {
                        Err(_) => {
                            prop_assert!(complete.is_none(), "complete, then refused at {}", k);
                            refused = true;
                        }
                        Ok(Parsed::Incomplete) => {
                            prop_assert!(!refused && complete.is_none(), "incomplete again at {}", k);
                            prop_assert!(k < MAX_HEADER_BYTES);
                        }
                        Ok(Parsed::Complete { header, len }) => {
                            prop_assert!(!refused);
                            prop_assert!(len <= k && len <= MAX_HEADER_BYTES);
                            if data.starts_with(V1_PREFIX) {
                                prop_assert!(len <= V1_MAX_BYTES);
                            }
                            if let Some(first) = complete {
                                prop_assert_eq!(first, (header, len));
                            }
                            complete = Some((header, len));
                        }
                    }
                }
            }

            /// Valid headers of both versions give back the addresses they carry.
            #[test]
            fn valid_headers_round_trip(
                src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
                sport in any::<u16>(), dport in any::<u16>(), v6 in any::<bool>(),
                tlv in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let (s, d): (IpAddr, IpAddr) = if v6 {
                    (Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into())
                } else {
                    let (a, b) = (&src[..4], &dst[..4]);
                    (Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(), Ipv4Addr::new(b[0], b[1], b[2], b[3]).into())
                };
                let want = Header::Proxied { source: SocketAddr::new(s, sport), destination: SocketAddr::new(d, dport) };
                let line = format!("PROXY {} {s} {d} {sport} {dport}\r\n", if v6 { "TCP6" } else { "TCP4" });
                prop_assert_eq!(parse(line.as_bytes(), Mode::Any), Ok(Parsed::Complete { header: want, len: line.len() }));
                let mut body = Vec::new();
                match (s, d) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => { body.extend(a.octets()); body.extend(b.octets()); }
                    (IpAddr::V6(a), IpAddr::V6(b)) => { body.extend(a.octets()); body.extend(b.octets()); }
                    _ => unreachable!(),
                }
                body.extend(sport.to_be_bytes());
                body.extend(dport.to_be_bytes());
                body.push(0xE0);
                body.extend((tlv.len() as u16).to_be_bytes());
                body.extend(&tlv);
                let mut h = V2_SIGNATURE.to_vec();
                h.push(0x21);
                h.push(if v6 { 0x21 } else { 0x11 });
                h.extend((body.len() as u16).to_be_bytes());
                h.extend(&body);
                prop_assert_eq!(parse(&h, Mode::V2), Ok(Parsed::Complete { header: want, len: h.len() }));
            }
        }
    }
}
