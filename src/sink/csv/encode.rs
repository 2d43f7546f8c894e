//! The row: one field of one reading, as encoded in the CSV (and read back by every other sink).
//!
//! The CSV encoder here is hand-written rather than `csv::Writer` because the ingest
//! path encodes every row of a read chunk into one reusable buffer and writes that
//! buffer with a single system call (group commit); it quotes exactly as the `csv`
//! crate does with `QuoteStyle::Necessary`, which a property test checks by reading
//! the output back with `csv::Reader`.

use std::borrow::Cow;
use std::time::SystemTime;

/// Whether a spreadsheet app would take a cell starting with this byte for a formula
/// (OWASP's CSV injection list: `=`, `+`, `-`, `@`, tab, carriage return), or it is
/// the escape itself (`'`), which must be escaped too for the rule to be reversible.
fn risky_first_byte(b: u8) -> bool {
    matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
}

/// The CSV cell for board-supplied text: prefixed with `'` when it starts with a
/// formula character, so that Excel and LibreOffice show it as text instead of running
/// it (`=HYPERLINK(...)` stays inert). Text starting with `'` gets one more `'`, so the
/// original is always the cell minus one leading `'` ([`original`]). Numbers are never
/// passed here: `-5` of type `number` is stored as `-5`.
pub fn neutralise(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(&b) if risky_first_byte(b) => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

/// What the board sent for a text cell written by [`neutralise`].
pub fn original(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.bytes().next().is_some_and(risky_first_byte) => rest,
        _ => cell,
    }
}

/// The original value of a `value` cell: only text values were neutralised.
pub fn original_value<'a>(cell: &'a str, kind: &str) -> &'a str {
    if kind == "text" {
        original(cell)
    } else {
        cell
    }
}

/// The CSV header, also the header row of the Google Sheet tab.
pub const HEADER: [&str; COLUMNS] = [
    "received_at",
    "device",
    "field",
    "value",
    "type",
    "peer",
    "boot",
    "seq",
    "device_time",
];
pub const COLUMNS: usize = 9;

/// A row borrowed from a parsed reading; what the connection thread encodes.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub received_at: &'a str,
    pub device: &'a str,
    pub field: &'a str,
    pub value: &'a str,
    pub kind: &'a str,
    pub peer: &'a str,
    pub boot: &'a str,
    pub seq: Option<u64>,
    pub device_time: &'a str,
}

/// An owned row, as the uploader handles it (read back from the CSV or received
/// over the channel). Columns in [`HEADER`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<String>);

impl RowRef<'_> {
    /// The row as its CSV cells (board text neutralised, see [`neutralise`]): exactly
    /// what reading the row back from the file gives.
    pub fn to_owned_row(&self) -> Row {
        let seq = self.seq.map(|s| s.to_string()).unwrap_or_default();
        let value = if self.kind == "text" {
            neutralise(self.value)
        } else {
            Cow::Borrowed(self.value)
        };
        Row(vec![
            self.received_at.to_string(),
            neutralise(self.device).into_owned(),
            neutralise(self.field).into_owned(),
            value.into_owned(),
            self.kind.to_string(),
            self.peer.to_string(),
            neutralise(self.boot).into_owned(),
            seq,
            neutralise(self.device_time).into_owned(),
        ])
    }
}

/// The columns that all rows of one reading share. Encoding them once per reading,
/// not once per row, is worth it on the ingest path: a reading has a row per field.
#[derive(Debug, Clone, Copy)]
pub struct ReadingColumns<'a> {
    pub received_at: &'a str,
    pub device: &'a str,
    pub peer: &'a str,
    pub boot: &'a str,
    pub seq: Option<u64>,
    pub device_time: &'a str,
}

/// Reusable buffers for [`ReadingColumns::encode_rows`].
///
/// Consecutive readings of a read chunk usually share the receive time, the device,
/// the peer and the boot: the encoded `received_at,device,` head and the `,peer,boot,`
/// middle are kept with the text they were made from and reused while it stays the
/// same (issue 22: re-encoding them was about a tenth of the encoder's cost).
///
/// A new device at the same receive time (boards taking turns in a chunk, or a flood of
/// new names) keeps the head's time and replaces only the device (issue 22, sixth round).
#[derive(Debug, Default)]
pub struct Encoder {
    head: Vec<u8>,
    head_at: String,
    head_device: String,
    mid: Vec<u8>,
    mid_peer: String,
    mid_boot: String,
    tail: Vec<u8>,
}

impl<'a> ReadingColumns<'a> {
    /// The row of one field, for the uploader.
    pub fn row(&self, field: &'a str, value: &'a str, kind: &'a str) -> RowRef<'a> {
        RowRef {
            received_at: self.received_at,
            device: self.device,
            field,
            value,
            kind,
            peer: self.peer,
            boot: self.boot,
            seq: self.seq,
            device_time: self.device_time,
        }
    }

    /// Appends one CSV row per `(field, value, kind)` to `out`, each `\n`-terminated.
    ///
    /// `received_at`, `kind` and `peer` never need quoting (a timestamp, a type name, a
    /// socket address), so they are copied without the scan; debug assertions hold
    /// callers to that.
    pub fn encode_rows<'f>(
        &self,
        fields: impl IntoIterator<Item = (&'f str, &'f str, &'f str)>,
        enc: &mut Encoder,
        out: &mut Vec<u8>,
    ) {
        self.encode::<true>(fields, enc, out);
    }

    /// [`Self::encode_rows`] for fields that the caller knows need no quoting: no field
    /// name or value has `,`, `"`, `\n` or `\r` (what [`crate::protocol::reading::parse_line_unquoted`]
    /// tells of a reading). The same bytes, without the quoting test on the fields
    /// (issue 22: the JSON fast path has seen every byte already); the formula escape
    /// is still applied. Debug assertions hold callers to that.
    pub fn encode_rows_unquoted<'f>(
        &self,
        fields: impl IntoIterator<Item = (&'f str, &'f str, &'f str)>,
        enc: &mut Encoder,
        out: &mut Vec<u8>,
    ) {
        self.encode::<false>(fields, enc, out);
    }

    /// The encoder; `SCAN`: whether the fields' names and values are tested for quoting.
    #[inline(always)]
    fn encode<'f, const SCAN: bool>(
        &self,
        fields: impl IntoIterator<Item = (&'f str, &'f str, &'f str)>,
        enc: &mut Encoder,
        out: &mut Vec<u8>,
    ) {
        debug_assert!(!needs_quotes(self.received_at) && !needs_quotes(self.peer));
        let Encoder {
            head,
            head_at,
            head_device,
            mid,
            mid_peer,
            mid_boot,
            tail,
        } = enc;
        let same_at = !head.is_empty() && same_text(head_at, self.received_at);
        if !same_at || !same_text(head_device, self.device) {
            if same_at {
                head.truncate(self.received_at.len() + 1);
            } else {
                head.clear();
                head.extend_from_slice(self.received_at.as_bytes());
                head.push(b',');
                head_at.clear();
                head_at.push_str(self.received_at);
            }
            push_field(head, &neutralise(self.device));
            head.push(b',');
            head_device.clear();
            head_device.push_str(self.device);
        }
        if mid.is_empty() || !same_text(mid_peer, self.peer) || !same_text(mid_boot, self.boot) {
            mid.clear();
            mid.push(b',');
            mid.extend_from_slice(self.peer.as_bytes());
            mid.push(b',');
            push_field(mid, &neutralise(self.boot));
            mid.push(b',');
            mid_peer.clear();
            mid_peer.push_str(self.peer);
            mid_boot.clear();
            mid_boot.push_str(self.boot);
        }
        tail.clear();
        tail.extend_from_slice(mid);
        if let Some(seq) = self.seq {
            push_u64(tail, seq);
        }
        tail.push(b',');
        push_field(tail, &neutralise(self.device_time));
        tail.push(b'\n');
        for (field, value, kind) in fields {
            debug_assert!(!needs_quotes(kind));
            out.extend_from_slice(head);
            debug_assert!(SCAN || !(needs_quotes(field) || needs_quotes(value)));
            push_field_if::<SCAN>(out, &neutralise(field));
            out.push(b',');
            if kind == "text" {
                push_field_if::<SCAN>(out, &neutralise(value));
            } else {
                push_field_if::<SCAN>(out, value);
            }
            out.push(b',');
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(tail);
        }
    }
}

impl Row {
    /// Bytes this row takes in the CSV, newline included (what [`ReadingColumns::encode_rows`] wrote for it).
    pub fn encoded_len(&self) -> usize {
        let fields: usize = self.0.iter().map(|f| field_len(f)).sum();
        fields + self.0.len().saturating_sub(1) + 1
    }
}

/// `a == b` for the encoder's kept columns (a timestamp, a device name, a peer, a boot
/// id: short), in a few word compares instead of a `bcmp` call (issue 22: four calls per
/// reading, about 100 instructions with their set-up).
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same(a.as_bytes(), b.as_bytes())
}

/// [`same_text`] for bytes.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        // The first and the last four (eight) bytes, overlapping: every byte is in one.
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=24 => word(a, 0) == word(b, 0) && word(a, 8) == word(b, 8) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The bytes that make a field quoted: `,`, `"`, `\n` and `\r`.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

/// One above the highest byte of [`SPECIAL`] (`,` is 0x2C).
const SPECIAL_BELOW: u8 = b',' + 1;

fn needs_quotes(s: &str) -> bool {
    // This runs on several fields of every row. The four special bytes are all below
    // `-`, and readings' names and values are mostly letters, digits, `.`, `_` and `-`:
    // eight bytes at a time, a word with no byte below `-` needs no quotes, and only a
    // field with such a byte (a space, say) takes the table lookup per byte (issue 22:
    // the lookup per byte was 369 of a stable reading's instructions).
    has_byte_below(s.as_bytes(), SPECIAL_BELOW) && s.bytes().any(|b| SPECIAL[b as usize])
}

/// Whether a byte of `b` is below `n` (`n` at most 128), a word at a time.
fn has_byte_below(b: &[u8], n: u8) -> bool {
    // Per byte of a word `w`: `(w - n) & !w` has its top bit set exactly when the byte
    // is below `n` and below 128, or a borrow came from a lower byte that is itself below
    // `n` (Bit Twiddling Hacks, "hasless"); so the word is non-zero iff some byte is
    // below `n`.
    const LOW: u64 = u64::MAX / 255;
    let less = |w: u64| w.wrapping_sub(LOW * u64::from(n)) & !w & (LOW * 0x80) != 0;
    let len = b.len();
    if len >= 8 {
        let mut chunks = b.chunks_exact(8);
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // The last eight bytes, overlapping the chunks, cover the remainder.
        chunks.any(|c| less(word(c))) || less(word(&b[len - 8..]))
    } else if len >= 4 {
        // The first and the last four bytes (overlapping) as one word.
        let half = |c: &[u8]| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes")));
        less(half(&b[..4]) | half(&b[len - 4..]) << 32)
    } else {
        b.iter().any(|&c| c < n)
    }
}

fn field_len(s: &str) -> usize {
    if needs_quotes(s) {
        s.len() + 2 + s.bytes().filter(|&b| b == b'"').count()
    } else {
        s.len()
    }
}

/// Inlined for the common unquoted field (the call's register saves were a third of its
/// cost, issue 22); the quoting is [`push_quoted`], out of line.
#[inline(always)]
fn push_field(out: &mut Vec<u8>, s: &str) {
    if needs_quotes(s) {
        push_quoted(out, s);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// [`push_field`] when `SCAN`, else a copy (the caller knows `s` needs no quotes).
#[inline(always)]
fn push_field_if<const SCAN: bool>(out: &mut Vec<u8>, s: &str) {
    if SCAN {
        push_field(out, s);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

#[cold]
#[inline(never)]
fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for part in s.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

/// Splits one encoded row (no trailing newline) back into its cells, unquoting as
/// the encoder quoted them: the exact inverse of [`ReadingColumns::encode_rows`], for readers that already
/// hold the bytes (the dashboard's hook reads the last reading of each run of a chunk
/// back from the chunk's CSV buffer instead of copying every reading's fields).
/// Borrows every cell that was not quoted.
pub fn split_row(line: &str) -> Vec<Cow<'_, str>> {
    let mut cells = Vec::with_capacity(COLUMNS);
    cells.extend(cells_of(line));
    cells
}

/// The cells of one encoded row, as [`split_row`] gives them, without collecting them:
/// the dashboard's hook reads a row's cells 2 to 4 once per reading when every reading
/// comes from a new device, and a vector per row was most of that cost (issue 22).
pub fn cells_of(line: &str) -> Cells<'_> {
    Cells { rest: Some(line) }
}

/// Iterator of [`cells_of`].
#[derive(Debug, Clone)]
pub struct Cells<'a> {
    /// What is left of the row; `None` once its last cell was given out.
    rest: Option<&'a str>,
}

impl<'a> Iterator for Cells<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.rest?;
        if let Some(quoted) = rest.strip_prefix('"') {
            // A quoted cell ends at a `"` not followed by another `"`.
            let mut cell = String::new();
            let mut tail = quoted;
            loop {
                match tail.find('"') {
                    Some(i) if tail[i + 1..].starts_with('"') => {
                        cell.push_str(&tail[..=i]);
                        tail = &tail[i + 2..];
                    }
                    Some(i) => {
                        cell.push_str(&tail[..i]);
                        tail = &tail[i + 1..];
                        break;
                    }
                    None => {
                        cell.push_str(tail);
                        tail = "";
                        break;
                    }
                }
            }
            self.rest = tail.strip_prefix(',');
            Some(Cow::Owned(cell))
        } else {
            // Cells are short: a plain loop beats a `memchr` call per cell.
            match rest.bytes().position(|b| b == b',') {
                Some(i) => {
                    self.rest = Some(&rest[i + 1..]);
                    Some(Cow::Borrowed(&rest[..i]))
                }
                None => {
                    self.rest = None;
                    Some(Cow::Borrowed(rest))
                }
            }
        }
    }
}

/// Appends `n` in decimal (no formatting machinery: this runs for every row).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    // Two digits per division, from a table (about half the instructions of one).
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let p = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if n >= 10 {
        let p = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the Unix epoch (UTC).
///
/// Formatted by `jiff` (already in the tree through env_logger): `cargo bench --bench
/// parse` measured it 2.8 times as fast as the hand-written civil-date code it replaced
/// (1.76 M against 0.64 M timestamps/s), and it is one less thing of our own to get right.
pub fn rfc3339_millis(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(), // before the epoch: a broken clock
    }
}

/// [`rfc3339_millis`] into `text`, formatted only when the millisecond differs from the
/// last call's (`last_ms`): a busy board's reads come many per millisecond, and the
/// text's buffer is reused instead of a new `String` per read (issue 22).
pub fn stamp_millis(text: &mut String, last_ms: &mut Option<u128>, t: SystemTime) {
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis());
    if ms.is_some() && ms == *last_ms && !text.is_empty() {
        return;
    }
    *last_ms = ms;
    text.clear();
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => {
            use std::fmt::Write as _;
            let _ = write!(text, "{ts:.3}");
        }
        Err(_) => text.push_str("1970-01-01T00:00:00.000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_22_same_is_string_equality() {
        for n in 0..40 {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same_text(&a, &a.clone()), "{a:?}");
            assert!(
                !same_text(&a, &format!("{a}x")) && !same_text(&format!("x{a}"), &a),
                "{a:?}"
            );
            for at in 0..n {
                let mut b = a.clone().into_bytes();
                b[at] = b'_';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_text(&a, &b), "{a:?} {b:?}");
            }
        }
    }
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn issue_22_a_stamp_is_the_same_text_as_rfc3339_millis_and_changes_with_the_millisecond() {
        let (mut text, mut last) = (String::new(), None);
        let base = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        for (offset_us, want_ms) in [
            (0, 123),
            (400, 123),
            (999, 123),
            (1000, 124),
            (1500, 124),
            (2_000_000, 123),
        ] {
            let t = base + Duration::from_micros(offset_us);
            stamp_millis(&mut text, &mut last, t);
            assert_eq!(text, rfc3339_millis(t), "at +{offset_us} us");
            assert!(text.ends_with(&format!(".{want_ms:03}Z")), "{text}");
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        stamp_millis(&mut text, &mut last, before_epoch);
        assert_eq!(text, rfc3339_millis(before_epoch));
    }

    #[test]
    fn issue_22_push_u64_writes_what_to_string_writes() {
        let mut values = vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65_535, u64::MAX, u64::MAX - 1];
        values.extend((0..20).map(|p| 10u64.pow(p)));
        values.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for n in values {
            let mut out = b"x".to_vec();
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn issue_22_the_kept_head_and_middle_change_with_the_time_device_peer_and_boot() {
        let mut enc = Encoder::default();
        let mut out = Vec::new();
        let cols = |at, device, peer, boot, seq| ReadingColumns {
            received_at: at,
            device,
            peer,
            boot,
            seq,
            device_time: "",
        };
        let a = "2026-01-01T00:00:00.000Z";
        let b = "2026-01-01T00:00:00.001Z";
        let cases = [
            cols(a, "d", "p:1", "", Some(1)),
            cols(a, "d", "p:1", "", Some(2)),
            cols(b, "d", "p:1", "", None),
            cols(b, "=e", "p:1", "", None),
            cols(b, "=e", "p:2", "x", Some(3)),
            cols(b, "=e", "p:2", "y,z", Some(4)),
            cols(a, "d", "p:1", "", Some(1)),
            // Sixth round: a new device at the same time keeps the time; a device whose
            // cell is escaped or quoted is compared with the device as sent, not the cell
            // (`'=e` is the cell of `=e`, and a device of its own).
            cols(a, "=e", "p:1", "", None),
            cols(a, "'=e", "p:1", "", None),
            cols(a, "=e", "p:1", "", None),
            cols(a, "a,b", "p:1", "", None),
            cols(a, "\"a,b\"", "p:1", "", None),
            cols(a, "a", "p:1", "", None),
            cols(a, "a,b", "p:1", "", None),
            cols(a, "dd", "p:1", "", None),
            cols(a, "d", "p:1", "", None),
            cols(b, "d", "p:1", "", None),
            cols(b, "e", "p:1", "", None),
        ];
        for c in cases {
            out.clear();
            c.encode_rows([("t", "1", "number"), ("n", "@x", "text")], &mut enc, &mut out);
            let mut fresh = Vec::new();
            c.encode_rows(
                [("t", "1", "number"), ("n", "@x", "text")],
                &mut Encoder::default(),
                &mut fresh,
            );
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&fresh), "{c:?}");
        }
    }

    /// The word-at-a-time test says what the byte-by-byte test says, for every length
    /// up to three words and every position of a byte near the boundary.
    #[test]
    fn issue_22_unquoted_entry_writes_what_encode_rows_writes() {
        // Fields with no byte that makes quotes, formula starts among them: the entry
        // without the quoting test gives the same bytes, row after row (kept head too).
        let texts = [
            "t", "21.5", "-3", "=1+1", "@x", "'a", "a b", "x;y", "", "true", "é", "a=b",
        ];
        let kinds = ["number", "text", "bool"];
        let (mut enc_a, mut enc_b) = (Encoder::default(), Encoder::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, name) in texts.iter().enumerate() {
            for (j, value) in texts.iter().enumerate() {
                let kind = kinds[(i + j) % kinds.len()];
                let cols = shared(if i % 2 == 0 { "d1" } else { "-d2" }, Some((i * j) as u64));
                let fields = [(*name, *value, kind), (*value, *name, "text")];
                cols.encode_rows(fields, &mut enc_a, &mut a);
                cols.encode_rows_unquoted(fields, &mut enc_b, &mut b);
            }
        }
        assert!(a.len() > 1_000);
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    }

    #[test]
    fn issue_22_needs_quotes_word_at_a_time_agrees_with_the_byte_table() {
        let by_table = |s: &[u8]| s.iter().any(|&b| SPECIAL[b as usize]);
        let below = |s: &[u8], n: u8| s.iter().any(|&b| b < n);
        let probes = [
            0u8, 1, b'\n', b'\r', b' ', b'"', b'+', b',', b'-', b'.', b'a', 0x7f, 0x80, 0xac, 0xad, 0xff,
        ];
        for len in 0..=24 {
            for fill in [b'a', b'-', b'.', b'0', 0xad, 0xff] {
                for pos in 0..len.max(1) {
                    for p in probes {
                        let mut s = vec![fill; len];
                        if len > 0 {
                            s[pos] = p;
                        }
                        assert_eq!(has_byte_below(&s, SPECIAL_BELOW), below(&s, SPECIAL_BELOW), "{s:?}");
                        if let Ok(text) = std::str::from_utf8(&s) {
                            assert_eq!(needs_quotes(text), by_table(&s), "{s:?}");
                        }
                    }
                }
            }
        }
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d_u64);
        for _ in 0..20_000 {
            let s: Vec<u8> = (0..next() % 40)
                .map(|_| probes[(next() % probes.len() as u64) as usize])
                .collect();
            assert_eq!(has_byte_below(&s, SPECIAL_BELOW), below(&s, SPECIAL_BELOW), "{s:?}");
            assert_eq!(has_byte_below(&s, 1), below(&s, 1), "{s:?}");
            assert_eq!(has_byte_below(&s, 128), below(&s, 128), "{s:?}");
        }
    }

    #[test]
    fn timestamps() {
        let t = |s: u64, ms: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(t(1_795_602_902, 123), "2026-11-25T10:35:02.123Z");
        assert_eq!(t(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    fn shared<'a>(device: &'a str, seq: Option<u64>) -> ReadingColumns<'a> {
        ReadingColumns {
            received_at: "2026-01-01T00:00:00.000Z",
            device,
            peer: "127.0.0.1:1",
            boot: "",
            seq,
            device_time: "",
        }
    }

    /// One row with field `f` of type text, encoded on its own.
    fn encode_one(value: &str, device: &str, seq: Option<u64>, out: &mut Vec<u8>) {
        shared(device, seq).encode_rows([("f", value, "text")], &mut Encoder::default(), out);
    }

    #[test]
    fn issue_8_12_formulas_are_neutralised_and_recoverable() {
        for (text, cell) in [
            ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
            ("+1", "'+1"),
            ("-a", "'-a"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("'=x", "''=x"),
            ("'quoted", "''quoted"),
            ("plain", "plain"),
            ("", ""),
        ] {
            assert_eq!(neutralise(text), cell, "{text:?}");
            assert_eq!(original(&neutralise(text)), text);
        }
        let mut out = Vec::new();
        let cols = ReadingColumns {
            device: "=dev",
            ..shared("", None)
        };
        cols.encode_rows(
            [("@f", "-5", "number"), ("-g", "=1+1", "text")],
            &mut Encoder::default(),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(",'=dev,'@f,-5,number,"), "{text}");
        assert!(text.contains(",'=dev,'-g,'=1+1,text,"), "{text}");
    }

    #[test]
    fn encoding_quotes_only_when_needed() {
        let mut out = Vec::new();
        encode_one("plain", "d", Some(0), &mut out);
        encode_one("a,\"b\"\nc", "d\r", Some(18_446_744_073_709_551_615), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:00.000Z,d,f,plain,text,127.0.0.1:1,,0,\n\
             2026-01-01T00:00:00.000Z,\"d\r\",f,\"a,\"\"b\"\"\nc\",text,127.0.0.1:1,,18446744073709551615,\n"
        );
    }

    /// A reading's rows encoded together (shared columns encoded once, buffers reused
    /// from the reading before) are the rows encoded one at a time.
    #[test]
    fn shared_columns_encode_like_single_rows() {
        let fields = [
            ("temp_c", "21.50", "number"),
            ("note", "a,\"b\"\nc", "text"),
            ("", "", "text"),
        ];
        let mut enc = Encoder::default();
        for (device, seq, device_time) in [
            ("kitchen", Some(7), "12:00"),
            ("a,b", None, ""),
            ("\"q\"", Some(0), "x,y"),
        ] {
            let shared = ReadingColumns {
                received_at: "2026-11-25T10:15:02.123Z",
                device,
                peer: "[::1]:5000",
                boot: "b1",
                seq,
                device_time,
            };
            let mut together = Vec::new();
            shared.encode_rows(fields, &mut enc, &mut together);
            let mut one_by_one = Vec::new();
            for field in fields {
                shared.encode_rows([field], &mut Encoder::default(), &mut one_by_one);
            }
            assert_eq!(
                String::from_utf8(together).unwrap(),
                String::from_utf8(one_by_one).unwrap()
            );
        }
    }

    /// Whatever the text, the csv crate reads back exactly the fields we wrote.
    #[test]
    fn encoding_round_trips_through_the_csv_reader() {
        let mut next = crate::testing::xorshift(0x853c_49e6_748f_ea9b_u64);
        let alphabet = [
            'a', ',', '"', '\n', '\r', ' ', 'é', '\t', '\u{FFFD}', '=', '\'', '-', '@', '+',
        ];
        let mut rows = Vec::new();
        for _ in 0..500 {
            let mut s = || -> String {
                (0..next() % 12)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            };
            rows.push((s(), s(), (!next().is_multiple_of(3)).then(&mut next)));
        }
        let mut out = Vec::new();
        for (v, d, seq) in &rows {
            let before = out.len();
            encode_one(v, d, *seq, &mut out);
            let r = shared(d, *seq).row("f", v, "text");
            assert_eq!(
                r.to_owned_row().encoded_len(),
                out.len() - before,
                "encoded_len of {r:?}"
            );
        }
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(&out[..]);
        let back: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(back.len(), rows.len());
        for (rec, (v, d, seq)) in back.iter().zip(&rows) {
            assert_eq!(original(&rec[1]), d.as_str());
            assert_eq!(original(&rec[3]), v.as_str());
            assert_eq!(rec[7], seq.map(|s| s.to_string()).unwrap_or_default());
        }
    }
}
