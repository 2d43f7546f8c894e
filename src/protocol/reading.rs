//! Turns one framed line into a [`Line`]: a greeting, a reading, or nothing (blank).
//!
//! Pure and total: every byte string maps to a result, nothing here can fail or panic,
//! and nothing a board says is dropped. A line that is not a JSON object and not a
//! list of `key=value` pairs becomes a text `message` field. Bytes that are not UTF-8
//! and control characters are replaced with U+FFFD, so what reaches the CSV is always
//! printable text. See `docs/protocol.md` for the formats this implements.
//!
//! A [`Reading`] borrows from the line it came from: on the ingest path a reading
//! lives only until its rows are encoded, so copying every key and value into its own
//! `String` would be pure cost. Only what had to change (an escape decoded, a control
//! character replaced, a long name cut) is owned.

use std::borrow::Cow;

use crate::protocol::json::{self, FlatValue, JsonValue, PairPlace, FLAT_MAX_KEYS};
use crate::protocol::shape::LineShape;

/// Longest device name kept; longer names are cut (on a char boundary).
pub const MAX_DEVICE_CHARS: usize = 64;
/// Field name used for a text line, and for a reading that carries only reserved keys.
pub const MESSAGE_FIELD: &str = "message";

#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// Empty or whitespace-only: ignored.
    Blank,
    Hello(Hello),
    /// A line starting with `HELLO ` that breaks the greeting's grammar; the reason
    /// is sent to the board (`ERR bad-hello <reason>`). Never stored as a reading:
    /// a board whose name or options were misread must not write under a wrong name.
    BadHello(String),
    Reading(Reading<'a>),
}

/// `HELLO <device> [boot=<id>] [ack=0|1] [token=<token>]`; see `docs/protocol.md`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub device: String,
    pub boot: Option<String>,
    pub ack: bool,
    /// The board's device token, checked by `auth` when a tokens file is configured.
    pub token: Option<String>,
}

impl std::fmt::Debug for Hello {
    // Hand-written so that a token can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("device", &self.device)
            .field("boot", &self.boot)
            .field("ack", &self.ack)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading<'a> {
    pub device: Option<Cow<'a, str>>,
    /// The board's own timestamp (`ts`), as sent.
    pub device_time: Option<Cow<'a, str>>,
    pub seq: Option<u64>,
    pub boot: Option<Cow<'a, str>>,
    pub fields: Vec<Field<'a>>,
    /// The line was a JSON object nested deeper than `json::MAX_DEPTH`; it is kept
    /// as a text `message` and counted.
    pub json_too_deep: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    pub name: Cow<'a, str>,
    pub value: Value<'a>,
}

/// A field value. Numbers keep the text the board sent (`21.50` stays `21.50`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Number(Cow<'a, str>),
    Bool(bool),
    Text(Cow<'a, str>),
}

impl Value<'_> {
    /// The `type` column of the CSV.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::Text(_) => "text",
        }
    }

    pub fn as_text(&self) -> &str {
        match self {
            Value::Number(s) | Value::Text(s) => s,
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
        }
    }
}

/// Parses one line (terminator already removed).
pub fn parse_line(bytes: &[u8]) -> Line<'_> {
    parse_line_reusing(bytes, &mut Vec::new())
}

/// [`parse_line`], building the reading's fields in `spare`'s allocation (taken; give
/// it back with [`recycle_fields`]). A board thread parses every line into the same
/// vector instead of allocating and freeing one per reading: that was about 4% of
/// ingest CPU (callgrind).
pub fn parse_line_reusing<'a>(bytes: &'a [u8], spare: &mut Vec<Field<'static>>) -> Line<'a> {
    parse_line_taking(bytes, spare, true, &mut false)
}

/// [`parse_line_reusing`], telling whether the reading is known to need no CSV quoting:
/// `true` only for a line that took the flat JSON fast path with no comma in a key or
/// string, whose every field name and value then has none of `,` `"` `\n` `\r`
/// (the encoder may skip its quoting test, [`crate::sink::csv::encode::ReadingColumns::encode_rows_unquoted`]).
/// `false` says nothing. Issue 22: the fast path sees every byte already.
pub fn parse_line_unquoted<'a>(bytes: &'a [u8], spare: &mut Vec<Field<'static>>) -> (Line<'a>, bool) {
    let mut unquoted = false;
    let line = parse_line_taking(bytes, spare, true, &mut unquoted);
    (line, unquoted)
}

/// [`parse_line_reusing`]; `flat`: whether a flat JSON object may take the fast path
/// (the tests compare both ways); `unquoted` set as [`parse_line_unquoted`] says.
fn parse_line_taking<'a>(
    bytes: &'a [u8],
    spare: &mut Vec<Field<'static>>,
    flat: bool,
    unquoted: &mut bool,
) -> Line<'a> {
    if bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return Line::Blank;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => return Line::Reading(text_reading(String::from_utf8_lossy(bytes))),
    };
    let trimmed = trim_blanks(text);
    if flat && trimmed.starts_with('{') {
        if let Some((r, plain)) = parse_flat_json(trimmed, spare) {
            *unquoted = plain;
            return Line::Reading(r);
        }
    }
    // One scan of the whole line instead of one per key and value: text borrowed from a
    // clean line needs no check of its own (about 3% of ingest CPU, callgrind).
    let clean = !maybe_bad(bytes);
    if trimmed.starts_with('{') {
        if let Some(r) = parse_json(trimmed, std::mem::take(spare), clean) {
            return Line::Reading(r);
        }
        if json::is_too_deep(trimmed) {
            let mut r = text_reading(Cow::Borrowed(text));
            r.json_too_deep = true;
            return Line::Reading(r);
        }
    } else if let Some(rest) = trimmed.strip_prefix("HELLO ").or(trimmed.strip_prefix("HELLO\t")) {
        return match parse_hello(rest) {
            Ok(h) => Line::Hello(h),
            Err(reason) => Line::BadHello(reason),
        };
    } else if let Some(pairs) = parse_pairs(trimmed) {
        let mut r = Reading {
            fields: std::mem::take(spare),
            ..Reading::default()
        };
        for (key, value) in pairs {
            let value = match value {
                Raw::Quoted(s) => Value::Text(sanitize(Cow::Owned(s))),
                Raw::Bare(s) => typed(s),
            };
            r.add(Cow::Borrowed(key), value, clean);
        }
        return Line::Reading(r.finish());
    }
    Line::Reading(text_reading(Cow::Borrowed(text)))
}

/// `s` without leading and trailing spaces and tabs. The same as
/// `s.trim_matches([' ', '\t'])`, on bytes: it runs on every line, and the char-pattern
/// form cost about 3% of ingest CPU (callgrind). Both are ASCII, so the cut is always
/// on a char boundary.
fn trim_blanks(s: &str) -> &str {
    let b = s.as_bytes();
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Replaces control characters (except tab) with U+FFFD; borrows when nothing changes.
pub fn sanitize(s: Cow<'_, str>) -> Cow<'_, str> {
    if !has_bad_char(&s) {
        return s;
    }
    sanitized(&s)
}

/// [`sanitize`] for text of a line: text borrowed from a line that [`maybe_bad`] found
/// clean is clean too; text unescaped into a new string is checked.
fn sanitize_in(s: Cow<'_, str>, line_clean: bool) -> Cow<'_, str> {
    if line_clean && matches!(s, Cow::Borrowed(_)) {
        return s;
    }
    sanitize(s)
}

fn sanitized(s: &str) -> Cow<'static, str> {
    Cow::Owned(s.chars().map(|c| if is_bad_char(c) { '\u{FFFD}' } else { c }).collect())
}

/// Whether `s` has a control character other than tab: the same test as
/// [`is_bad_char`] on every char, done on bytes because it runs on every key and value.
/// Controls are U+0000–U+001F, U+007F, and U+0080–U+009F (UTF-8 `C2 80`–`C2 9F`).
fn has_bad_char(s: &str) -> bool {
    let b = s.as_bytes();
    maybe_bad(b)
        && b.iter().enumerate().any(|(i, &c)| {
            (c < 0x20 && c != b'\t')
                || c == 0x7f
                || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
        })
}

/// Whether `b` may hold a control character: a branch-free pass (tab and `C2`, the
/// first byte of U+0080–U+00BF, are flagged too); only a hit needs [`has_bad_char`]'s
/// exact check. (Issue 22 tried blocks of 16 bytes and a word-at-a-time form: neither
/// was vectorized on the baseline x86-64 target, and both cost more instructions.)
fn maybe_bad(b: &[u8]) -> bool {
    b.iter()
        .fold(false, |acc, &c| acc | (c < 0x20) | (c == 0x7f) | (c == 0xc2))
}

fn is_bad_char(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Cleans a device name: sanitized, trimmed, at most [`MAX_DEVICE_CHARS`]; `None` if
/// empty. Borrows when the name was already clean.
pub fn device_name(raw: Cow<'_, str>) -> Option<Cow<'_, str>> {
    // The common case, a short ASCII name with nothing to trim, skips the Unicode trim.
    let ascii_ends = |b: &[u8]| {
        b.first()
            .zip(b.last())
            .is_some_and(|(f, l)| f.is_ascii_graphic() && l.is_ascii_graphic())
    };
    if raw.len() <= MAX_DEVICE_CHARS && ascii_ends(raw.as_bytes()) && !has_bad_char(&raw) {
        return Some(raw);
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.len() <= MAX_DEVICE_CHARS && !has_bad_char(trimmed) {
        return Some(match raw {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        });
    }
    let clean = sanitize(Cow::Borrowed(trimmed));
    let cut: String = clean.chars().take(MAX_DEVICE_CHARS).collect();
    let cut = cut.trim();
    (!cut.is_empty()).then(|| Cow::Owned(cut.to_string()))
}

/// Longest boot id: room for a UUID (36) or a counter plus a random part.
pub const MAX_BOOT_CHARS: usize = 64;

/// A boot id is 1–[`MAX_BOOT_CHARS`] of `A-Z a-z 0-9 . _ : -`.
pub fn valid_boot(s: &str) -> bool {
    (1..=MAX_BOOT_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Longest token accepted in a greeting (tokens made by `sensorlog token add` are shorter).
pub const MAX_TOKEN_CHARS: usize = 128;

fn text_reading(text: Cow<'_, str>) -> Reading<'_> {
    let text = match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.trim_end_matches('\r')),
        Cow::Owned(t) => Cow::Owned(t.trim_end_matches('\r').to_string()),
    };
    Reading {
        fields: vec![Field {
            name: Cow::Borrowed(MESSAGE_FIELD),
            value: Value::Text(sanitize(text)),
        }],
        ..Reading::default()
    }
}

impl<'a> Reading<'a> {
    /// Adds a key: reserved keys with a valid value describe the reading; every other
    /// key (and a reserved key whose value is invalid) becomes a field.
    /// `line_clean`: the line had no control character (see [`sanitize_in`]).
    fn add(&mut self, key: Cow<'a, str>, value: Value<'a>, line_clean: bool) {
        match (&*key, &value) {
            ("device", _) => {
                let name = match &value {
                    Value::Number(s) | Value::Text(s) => device_name(s.clone()),
                    Value::Bool(b) => device_name(Cow::Borrowed(if *b { "true" } else { "false" })),
                };
                if let Some(d) = name {
                    self.device = Some(d);
                    return;
                }
            }
            ("ts", Value::Number(s) | Value::Text(s)) => {
                self.device_time = Some(sanitize_in(s.clone(), line_clean));
                return;
            }
            ("seq", Value::Number(s) | Value::Text(s)) => {
                if let Some(n) = parse_u64(s) {
                    self.seq = Some(n);
                    return;
                }
            }
            ("boot", Value::Number(s) | Value::Text(s)) if valid_boot(s) => {
                self.boot = Some(s.clone());
                return;
            }
            _ => {}
        }
        self.fields.push(Field {
            name: sanitize_in(key, line_clean),
            value,
        });
    }

    /// [`Reading::add`] for a pair of [`json::for_each_flat_pair`]: printable ASCII, so
    /// nothing to sanitize; [`flat_role`] decides the common cases in one look at the key
    /// (issue 22: it was compared up to six times), the rest go to [`Reading::add`].
    fn add_flat(&mut self, key: &'a str, value: FlatValue<'a>) {
        match flat_role(key, value) {
            FlatRole::Device(s) => self.device = Some(Cow::Borrowed(s)),
            FlatRole::Seq(n) => self.seq = Some(n),
            FlatRole::Time(s) => self.device_time = Some(Cow::Borrowed(s)),
            FlatRole::Boot(s) => self.boot = Some(Cow::Borrowed(s)),
            FlatRole::Field => self.fields.push(Field {
                name: Cow::Borrowed(key),
                value: flat_value(value),
            }),
            FlatRole::Unusual => self.add(Cow::Borrowed(key), flat_value(value), true),
        }
    }

    /// A reading must have at least one field so that it shows up as a row.
    fn finish(mut self) -> Reading<'a> {
        if self.fields.is_empty() {
            self.fields.push(Field {
                name: Cow::Borrowed(MESSAGE_FIELD),
                value: Value::Text(Cow::Borrowed("")),
            });
        }
        self
    }
}

/// Largest field vector [`recycle_fields`] keeps for the next line: a typical reading
/// has a handful of fields, and a board thread must not pin the memory of the one line
/// of a thousand fields it once sent.
const RECYCLE_MAX_FIELDS: usize = 16;

/// Empties a reading's field vector for [`parse_line_reusing`] to fill again. The
/// vector borrowed from its line; emptied, it holds no borrow, and collecting it in
/// place re-types it without a new allocation (no element is ever converted).
pub fn recycle_fields(mut fields: Vec<Field<'_>>) -> Vec<Field<'static>> {
    if fields.capacity() > RECYCLE_MAX_FIELDS {
        return Vec::new();
    }
    fields.clear();
    fields
        .into_iter()
        .map(|_| unreachable!("the vector was cleared"))
        .collect()
}

/// The common reading, a flat JSON object of printable ASCII (see
/// [`json::for_each_flat_pair`]): validated, split and turned into fields in one pass,
/// with no control-character scan (it has none). `None` (and `spare` given back): the
/// line takes the full path. Issue 22: this was about 40% of a reading's instructions.
/// With the reading, whether no field needs CSV quoting (see [`parse_line_unquoted`]).
fn parse_flat_json<'a>(text: &'a str, spare: &mut Vec<Field<'static>>) -> Option<(Reading<'a>, bool)> {
    let mut fields = std::mem::take(spare);
    if fields.capacity() == 0 {
        fields.reserve(4);
    }
    let mut r = Reading {
        fields,
        ..Reading::default()
    };
    if let Some(unquoted) = json::for_each_flat_pair(text, |key, value| r.add_flat(key, value)) {
        return Some((r.finish(), unquoted));
    }
    *spare = recycle_fields(r.fields);
    None
}

/// What one pair of a flat JSON reading (see [`json::for_each_flat_pair`]) is to the
/// reading: [`Reading::add`]'s rules for the common cases, decided in one look at the
/// key. `Unusual`: a reserved key whose value needs [`Reading::add`]'s full rules (a
/// device name that must be trimmed or cut, a `seq` that is not a plain count, a null
/// or boolean `ts`, an invalid `boot`).
enum FlatRole<'a> {
    Device(&'a str),
    Seq(u64),
    Time(&'a str),
    Boot(&'a str),
    Field,
    Unusual,
}

/// What a key of a flat reading is: a field, or one of the reserved keys. Decided once
/// per key; [`LineShape`] keeps it with the key, so a line of a known shape does not
/// decide it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyRole {
    #[default]
    Field,
    Device,
    Seq,
    Time,
    Boot,
}

#[inline(always)]
fn key_role(key: &str) -> KeyRole {
    // Most keys are fields: one look at the first byte and the length rules them out
    // (issue 22: four string compares per key were 215 of a reading's instructions).
    let is = |word: &[u8], role| if key.as_bytes() == word { role } else { KeyRole::Field };
    match key.as_bytes().first() {
        Some(b'd') => is(b"device", KeyRole::Device),
        Some(b's') => is(b"seq", KeyRole::Seq),
        Some(b't') => is(b"ts", KeyRole::Time),
        Some(b'b') => is(b"boot", KeyRole::Boot),
        _ => KeyRole::Field,
    }
}

#[inline(always)]
fn flat_role<'a>(key: &str, value: FlatValue<'a>) -> FlatRole<'a> {
    value_role(key_role(key), value)
}

/// [`flat_role`] for a key whose role is known.
#[inline(always)]
fn value_role(role: KeyRole, value: FlatValue<'_>) -> FlatRole<'_> {
    if role == KeyRole::Field {
        return FlatRole::Field;
    }
    let text = match value {
        FlatValue::Number(s) | FlatValue::Str(s) => Some(s),
        FlatValue::Bool(_) | FlatValue::Null => None,
    };
    // Printable ASCII: a name kept as sent has no space at its ends (else trimmed).
    let ends = |b: &[u8]| b.first().zip(b.last()).is_some_and(|(&f, &l)| f != b' ' && l != b' ');
    match (role, text) {
        (KeyRole::Device, Some(s)) if s.len() <= MAX_DEVICE_CHARS && ends(s.as_bytes()) => FlatRole::Device(s),
        (KeyRole::Seq, _) => match value {
            FlatValue::Number(s) => parse_u64(s).map_or(FlatRole::Unusual, FlatRole::Seq),
            _ => FlatRole::Unusual,
        },
        (KeyRole::Time, Some(s)) => FlatRole::Time(s),
        (KeyRole::Boot, Some(s)) if valid_boot(s) => FlatRole::Boot(s),
        _ => FlatRole::Unusual,
    }
}

fn flat_value(v: FlatValue<'_>) -> Value<'_> {
    match v {
        FlatValue::Number(n) => Value::Number(Cow::Borrowed(n)),
        FlatValue::Str(s) => Value::Text(Cow::Borrowed(s)),
        FlatValue::Bool(b) => Value::Bool(b),
        FlatValue::Null => Value::Text(Cow::Borrowed("")),
    }
}

/// The `type` column of a field, as [`Value::kind`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    Number,
    Bool,
    #[default]
    Text,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Text => "text",
        }
    }
}

/// One field of a [`FlatReading`]: its name, its value as the CSV's `value` column gets
/// it ([`Value::as_text`]), and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlatField<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub kind: Kind,
}

/// Most fields [`parse_flat_line`] takes; a wider reading takes the full path.
pub const FLAT_MAX_FIELDS: usize = 8;

/// The common reading as [`parse_flat_line`] gives it: what [`parse_line`] would give,
/// with the fields in the caller's array instead of a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlatReading<'a> {
    pub device: Option<&'a str>,
    pub device_time: Option<&'a str>,
    pub seq: Option<u64>,
    pub boot: Option<&'a str>,
    /// The first `count` entries of the fields array are this reading's (at least one).
    pub count: usize,
    /// No field name or value needs CSV quoting (as [`parse_line_unquoted`] tells).
    pub unquoted: bool,
}

/// The ingest path's one pass for the common line (issue 22): a flat JSON object of
/// printable ASCII ([`json::for_each_flat_pair`]) with at most [`FLAT_MAX_FIELDS`] fields
/// and reserved keys of the usual form (`flat_role`) is split straight into `fields`,
/// borrowed from `text`, with no `Reading`, no field vector and no `Cow`. `None`: any
/// other line; [`parse_line`] decides (it gives the same reading for every line this
/// takes, which `server::connection`'s differential test checks down to the CSV bytes).
/// `text` is the framed line, already known to be UTF-8.
///
/// `memory`: what the board's last lines left (see [`FlatMemory`]).
pub fn parse_flat_line<'a>(
    text: &'a str,
    memory: &mut FlatMemory,
    fields: &mut [FlatField<'a>; FLAT_MAX_FIELDS],
) -> Option<FlatReading<'a>> {
    // The usual line has nothing to trim: one look at each end instead of two scans.
    let b = text.as_bytes();
    let text = match (b.first(), b.last()) {
        (Some(b'{'), Some(b'}')) => text,
        _ => trim_blanks(text),
    };
    if !text.starts_with('{') {
        return None;
    }
    let mut taker = FlatTaker {
        r: FlatReading::default(),
        usual: true,
        fields,
    };
    let unquoted = match memory
        .shape
        .pairs(text, |role, key, value| taker.take(role, key, value))
    {
        Some(unquoted) => {
            memory.learned_last = false;
            unquoted
        }
        None => {
            taker.r = FlatReading::default();
            taker.usual = true;
            let mut places = [PairPlace::default(); FLAT_MAX_KEYS];
            let mut count = 0;
            let unquoted = json::for_each_flat_pair_placed(text, |key, value, place| {
                taker.take(key_role(key), key, value);
                if let Some(slot) = places.get_mut(count) {
                    *slot = place;
                    count += 1;
                }
            })?;
            // A line that misses right after one whose shape was kept is not kept: a
            // board alternating shapes (or a client changing them on purpose) has a
            // shape made for every other line at most.
            if !std::mem::take(&mut memory.learned_last) {
                memory.shape.learn(text, &places[..count], key_role);
                memory.learned_last = true;
            }
            unquoted
        }
    };
    let FlatTaker { r, usual, .. } = taker;
    (usual && r.count > 0).then_some(FlatReading { unquoted, ..r })
}

/// What [`parse_flat_line`] keeps of a board's last lines, from line to line: the last
/// line's shape ([`LineShape`]). It changes no result, only what a line costs.
#[derive(Debug, Clone, Default)]
pub struct FlatMemory {
    shape: LineShape<KeyRole>,
    /// The last line missed the shape, and the shape was made from it.
    learned_last: bool,
}

/// [`parse_flat_line`]'s reading as its pairs come in.
struct FlatTaker<'f, 'a> {
    r: FlatReading<'a>,
    /// No pair so far needs the full path.
    usual: bool,
    fields: &'f mut [FlatField<'a>; FLAT_MAX_FIELDS],
}

impl<'a> FlatTaker<'_, 'a> {
    #[inline(always)]
    fn take(&mut self, role: KeyRole, key: &'a str, value: FlatValue<'a>) {
        let r = &mut self.r;
        match value_role(role, value) {
            FlatRole::Device(s) => r.device = Some(s),
            FlatRole::Seq(n) => r.seq = Some(n),
            FlatRole::Time(s) => r.device_time = Some(s),
            FlatRole::Boot(s) => r.boot = Some(s),
            FlatRole::Field => match self.fields.get_mut(r.count) {
                Some(slot) => {
                    *slot = match value {
                        FlatValue::Number(s) => FlatField {
                            name: key,
                            value: s,
                            kind: Kind::Number,
                        },
                        FlatValue::Str(s) => FlatField {
                            name: key,
                            value: s,
                            kind: Kind::Text,
                        },
                        FlatValue::Bool(b) => FlatField {
                            name: key,
                            value: if b { "true" } else { "false" },
                            kind: Kind::Bool,
                        },
                        FlatValue::Null => FlatField {
                            name: key,
                            value: "",
                            kind: Kind::Text,
                        },
                    };
                    r.count += 1;
                }
                None => self.usual = false,
            },
            FlatRole::Unusual => self.usual = false,
        }
    }
}

fn parse_json<'a>(text: &'a str, mut fields: Vec<Field<'static>>, clean: bool) -> Option<Reading<'a>> {
    if fields.capacity() == 0 {
        fields.reserve(4);
    }
    let mut r = Reading {
        fields,
        ..Reading::default()
    };
    if !json::for_each_pair(text, |key, value| r.add(key, json_value(value, clean), clean))? {
        return Some(r.finish());
    }
    // A key may repeat: start over, merging repeats the way serde_json does.
    let mut r = Reading::default();
    for (key, value) in json::parse_object(text)? {
        r.add(key, json_value(value, clean), clean);
    }
    Some(r.finish())
}

fn json_value(v: JsonValue<'_>, line_clean: bool) -> Value<'_> {
    match v {
        JsonValue::Number(n) => Value::Number(Cow::Borrowed(n)),
        JsonValue::Bool(b) => Value::Bool(b),
        JsonValue::Str(s) => Value::Text(sanitize_in(s, line_clean)),
        JsonValue::Null => Value::Text(Cow::Borrowed("")),
        JsonValue::Nested(json) => Value::Text(sanitize(Cow::Owned(json))),
    }
}

/// The greeting's grammar, strictly: the device name is one token (no spaces, commas,
/// `=` or control characters), then `key=value` options separated by spaces, tabs or
/// commas. Anything else is refused with the reason, never silently ignored: a greeting
/// read wrongly would store readings under a wrong name or drop `ack=1`.
fn parse_hello(rest: &str) -> Result<Hello, String> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let end = rest.find([' ', '\t', ',']).unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return Err("missing device name: HELLO <device> [boot=<id>] [ack=1]".into());
    }
    if name.contains('=') {
        return Err(format!(
            "missing device name before {:?}: HELLO <device> [boot=<id>] [ack=1]",
            truncate(name)
        ));
    }
    if name.chars().count() > MAX_DEVICE_CHARS || has_bad_char(name) {
        return Err(format!(
            "device name must be 1-{MAX_DEVICE_CHARS} printable characters without spaces, commas or '='"
        ));
    }
    let mut hello = Hello {
        device: name.to_string(),
        ..Hello::default()
    };
    let options = &rest[end..];
    if !options.trim_matches([' ', '\t', ',']).is_empty() {
        let Some(pairs) = parse_pairs(options) else {
            return Err(format!(
                "cannot read {:?} after the device name: device names cannot contain spaces or commas, and options are key=value",
                truncate(options.trim_matches([' ', '\t', ',']))
            ));
        };
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if seen.contains(&key) {
                return Err(format!("option {key} given twice"));
            }
            seen.push(key);
            let value = match &value {
                Raw::Bare(s) => *s,
                Raw::Quoted(s) => s.as_str(),
            };
            match key {
                "boot" if valid_boot(value) => hello.boot = Some(value.to_string()),
                "boot" => {
                    return Err(format!(
                        "boot id must be 1-{MAX_BOOT_CHARS} characters of A-Z a-z 0-9 . _ : -"
                    ))
                }
                "ack" => {
                    hello.ack = match value {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err("ack must be 0 or 1".into()),
                    }
                }
                "token"
                    if (1..=MAX_TOKEN_CHARS).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    hello.token = Some(value.to_string())
                }
                "token" => return Err(format!("token must be 1-{MAX_TOKEN_CHARS} printable ASCII characters")),
                other => {
                    return Err(format!(
                        "unknown option {:?} (known: boot, ack, token)",
                        truncate(other)
                    ))
                }
            }
        }
    }
    Ok(hello)
}

/// At most 32 characters of `s`, for quoting board input back in an error line.
fn truncate(s: &str) -> String {
    let cut: String = s
        .chars()
        .take(32)
        .map(|c| if is_bad_char(c) { '\u{FFFD}' } else { c })
        .collect();
    if cut.len() < s.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

enum Raw<'a> {
    Bare(&'a str),
    Quoted(String),
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b',')
}

/// Parses `k=v k2="v 2",k3=v3`; `None` unless the whole line is pairs.
fn parse_pairs(s: &str) -> Option<Vec<(&str, Raw<'_>)>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let key_start = i;
        if !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
            return None;
        }
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'.')) {
            i += 1;
        }
        let key = &s[key_start..i];
        if i == b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            loop {
                let c = s[i..].chars().next()?; // unterminated quote: not pairs
                i += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let esc = s[i..].chars().next()?;
                        i += esc.len_utf8();
                        v.push(esc);
                    }
                    c => v.push(c),
                }
            }
            if i < b.len() && !is_sep(b[i]) {
                return None;
            }
            Raw::Quoted(v)
        } else {
            let start = i;
            while i < b.len() && !is_sep(b[i]) {
                i += 1;
            }
            Raw::Bare(&s[start..i])
        };
        out.push((key, value));
    }
    (!out.is_empty()).then_some(out)
}

/// `s.parse::<u64>().ok()`, with a fast path for the usual short run of digits (the
/// `seq` of every acknowledged reading).
fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 19 {
        // At most 19 digits: always below u64::MAX, no overflow check needed. One loop
        // checks and adds up the digits.
        let mut n = 0u64;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return s.parse().ok();
            }
            n = n * 10 + u64::from(d);
        }
        return Some(n);
    }
    s.parse().ok()
}

/// Types a bare `key=value` value: finite number, boolean, or text.
fn typed(s: &str) -> Value<'_> {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let looks_numeric = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
    if looks_numeric && s.parse::<f64>().is_ok_and(f64::is_finite) {
        Value::Number(Cow::Borrowed(s))
    } else {
        Value::Text(sanitize(Cow::Borrowed(s)))
    }
}

/// Pieces that [`mutate_line`] inserts into a JSON reading: reserved keys, odd values,
/// spaces, escapes, controls, non-ASCII (each near a boundary of the flat fast path).
#[cfg(test)]
pub(crate) const MUTATION_PIECES: &[&str] = &[
    "\"device\":",
    "\"seq\":",
    "\"ts\":",
    "\"boot\":",
    "\"x\"",
    "\" k \"",
    "\"\"",
    "\"b-1\"",
    "\"bad boot\"",
    "12",
    "-0.5",
    "1e3",
    "true",
    "null",
    "[1]",
    " ",
    "\t",
    ",",
    ":",
    "\\u0041",
    "\u{1}",
    "\u{7f}",
    "\u{85}",
    "é",
    "\r",
];

/// Test lines: `times` random edits of `text` (a char removed, or one of `pieces`
/// inserted), at char boundaries.
#[cfg(test)]
pub(crate) fn mutate_line(text: &mut String, times: usize, pieces: &[&str], next: &mut impl FnMut() -> u64) {
    for _ in 0..times {
        let at = (next() as usize) % (text.len() + 1);
        let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        if next().is_multiple_of(3) {
            let end = (at + 1..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(at);
            text.replace_range(at..end, "");
        } else {
            text.insert_str(at, pieces[(next() as usize) % pieces.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flat JSON fast path gives exactly what the full path gives, on readings
    /// mutated at random (reserved keys with odd values, spaces, escapes, controls,
    /// repeats, long names), and takes the common ones.
    #[test]
    fn issue_22_flat_fast_path_agrees_with_the_full_path() {
        let mut next = crate::testing::xorshift(0x51_7cc1_b727_220a);
        let long = format!("\"{}\"", "n".repeat(MAX_DEVICE_CHARS + 1));
        let pieces: Vec<&str> = MUTATION_PIECES.iter().copied().chain([long.as_str()]).collect();
        let mut taken = 0;
        let (mut unquoted_seen, mut quoted_seen) = (0, 0);
        for round in 0..40_000 {
            // Every other line without the comma in `note` (issue 22: the fast path tells
            // whether a field needs CSV quoting), with `,` among the pieces.
            let mut text = String::from(if round % 2 == 0 {
                r#"{"device":"sim-1","seq":12,"ts":"t1","boot":"b1","temp_c":21.50,"ok":false,"note":"a=b, c"}"#
            } else {
                r#"{"device":"sim-1","seq":12,"ts":"t1","boot":"b1","temp_c":21.50,"ok":false,"note":"a=b c"}"#
            });
            mutate_line(&mut text, round % 4, &pieces, &mut next);
            let (fast, unquoted) = parse_line_unquoted(text.as_bytes(), &mut Vec::new());
            let full = parse_line_taking(text.as_bytes(), &mut Vec::new(), false, &mut false);
            assert_eq!(fast, full, "line {text:?}");
            if let (true, Line::Reading(r)) = (unquoted, &fast) {
                // The flag holds: no field name or value has a byte that makes quotes.
                let quotes = |t: &str| t.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
                for f in &r.fields {
                    assert!(!quotes(&f.name) && !quotes(f.value.as_text()), "line {text:?}: {f:?}");
                }
                unquoted_seen += 1;
            } else if let Line::Reading(r) = &fast {
                quoted_seen += usize::from(r.fields.iter().any(|f| f.value.as_text().contains(',')));
            }
            taken += usize::from(json::for_each_flat_pair(trim_blanks(&text), |_, _| {}).is_some());
        }
        assert!(taken > 5_000, "the fast path took only {taken} lines");
        assert!(
            unquoted_seen > 1_000 && quoted_seen > 1_000,
            "unquoted {unquoted_seen}, with a comma {quoted_seen}"
        );
    }

    #[test]
    fn issue_22_fast_seq_parse_and_control_scan_agree_with_the_plain_ones() {
        for s in [
            "",
            "0",
            "7",
            "+7",
            "-1",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "9999999999999999999",
            "99999999999999999999",
            "1.5",
            "1e3",
            " 1",
            "١",
        ] {
            assert_eq!(parse_u64(s), s.parse::<u64>().ok(), "{s:?}");
        }
        let reference = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == 0x7f || c == 0xc2);
        for len in 0..40 {
            for at in 0..len {
                for bad in [0u8, b'\t', 0x1f, 0x7f, 0xc2] {
                    let mut line = vec![b'a'; len];
                    assert!(!maybe_bad(&line));
                    line[at] = bad;
                    assert_eq!(maybe_bad(&line), reference(&line), "{line:?}");
                }
                let mut line = vec![b'a'; len];
                line[at] = 0xc3;
                assert!(!maybe_bad(&line), "{line:?}");
            }
        }
    }

    #[test]
    fn a_recycled_field_vector_keeps_its_allocation_but_not_a_huge_one() {
        let line = br#"{"device":"k","t":1,"h":2}"#;
        let Line::Reading(r) = parse_line(line) else { panic!() };
        let cap = r.fields.capacity();
        let ptr = r.fields.as_ptr() as usize;
        let spare = recycle_fields(r.fields);
        assert!(spare.is_empty());
        assert_eq!(
            (spare.capacity(), spare.as_ptr() as usize),
            (cap, ptr),
            "same allocation"
        );
        let mut spare = spare;
        let Line::Reading(r) = parse_line_reusing(br#"{"x":"y"}"#, &mut spare) else {
            panic!()
        };
        assert_eq!(r.fields.as_ptr() as usize, ptr, "the next line is parsed into it");
        assert_eq!(r.fields.len(), 1);
        let wide: String = (0..100).map(|i| format!("f{i}={i} ")).collect();
        let Line::Reading(r) = parse_line(wide.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            recycle_fields(r.fields).capacity(),
            0,
            "a wide reading's vector is not kept"
        );
    }

    #[test]
    fn trim_blanks_is_trim_matches_of_space_and_tab() {
        for s in [
            "",
            " ",
            "\t \t",
            "a",
            " a ",
            "\ta b\t",
            "  \u{e9} ",
            "\u{a0}x\u{a0}",
            " \r ",
        ] {
            assert_eq!(trim_blanks(s), s.trim_matches([' ', '\t']), "{s:?}");
        }
    }

    fn reading(line: &str) -> Reading<'_> {
        match parse_line(line.as_bytes()) {
            Line::Reading(r) => r,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    fn fields(r: &Reading) -> Vec<(String, String, &'static str)> {
        r.fields
            .iter()
            .map(|f| (f.name.to_string(), f.value.as_text().to_string(), f.value.kind()))
            .collect()
    }

    fn f(name: &str, value: &str, kind: &'static str) -> (String, String, &'static str) {
        (name.to_string(), value.to_string(), kind)
    }

    #[test]
    fn json_object_with_reserved_keys() {
        let r = reading(
            r#"{"device":"kitchen","temp_c":21.50,"humidity":40,"open":false,"note":"ok","seq":7,"boot":"b1","ts":"12:00"}"#,
        );
        assert_eq!(r.device.as_deref(), Some("kitchen"));
        assert_eq!(r.seq, Some(7));
        assert_eq!(r.boot.as_deref(), Some("b1"));
        assert_eq!(r.device_time.as_deref(), Some("12:00"));
        assert_eq!(
            fields(&r),
            [
                f("temp_c", "21.50", "number"),
                f("humidity", "40", "number"),
                f("open", "false", "bool"),
                f("note", "ok", "text"),
            ]
        );
    }

    #[test]
    fn json_null_and_nested_values_are_kept_as_text() {
        let r = reading(r#"{"a":null,"b":[1,2],"c":{"d":1}}"#);
        assert_eq!(
            fields(&r),
            [
                f("a", "", "text"),
                f("b", "[1,2]", "text"),
                f("c", r#"{"d":1}"#, "text")
            ]
        );
    }

    #[test]
    fn repeated_json_keys_merge_before_reserved_keys_are_read() {
        let r = reading(r#"{"seq":"x","t":1,"seq":5,"t":2}"#);
        assert_eq!(r.seq, Some(5));
        assert_eq!(fields(&r), [f("t", "2", "number")]);
    }

    #[test]
    fn broken_json_is_a_text_message() {
        let r = reading(r#"{"device":"kitchen","temp"#);
        assert_eq!(fields(&r), [f("message", r#"{"device":"kitchen","temp"#, "text")]);
        let r = reading("[1,2,3]");
        assert_eq!(fields(&r), [f("message", "[1,2,3]", "text")]);
    }

    #[test]
    fn key_value_pairs_with_spaces_commas_and_quotes() {
        let r = reading(r#"device=hall temp_c=21.5,humidity=40 ok=true note="door \"left\" open" seq=12"#);
        assert_eq!(r.device.as_deref(), Some("hall"));
        assert_eq!(r.seq, Some(12));
        assert_eq!(
            fields(&r),
            [
                f("temp_c", "21.5", "number"),
                f("humidity", "40", "number"),
                f("ok", "true", "bool"),
                f("note", r#"door "left" open"#, "text"),
            ]
        );
    }

    #[test]
    fn numbers_are_finite_only() {
        let r = reading("a=1e3 b=-2 c=nan d=inf e=0x10 f=1e999");
        assert_eq!(
            fields(&r),
            [
                f("a", "1e3", "number"),
                f("b", "-2", "number"),
                f("c", "nan", "text"),
                f("d", "inf", "text"),
                f("e", "0x10", "text"),
                f("f", "1e999", "text"),
            ]
        );
    }

    #[test]
    fn anything_else_is_a_text_message() {
        for line in [
            "Boot complete, firmware 1.2.0",
            "x=1 and more",
            "=1",
            "a=\"open",
            "a=\"x\"y",
        ] {
            let r = reading(line);
            assert_eq!(fields(&r), [f("message", line, "text")], "{line}");
        }
    }

    #[test]
    fn invalid_reserved_values_become_fields() {
        let r = reading("seq=-1 boot=has!bang device= t=1");
        assert_eq!(r.seq, None);
        assert_eq!(r.boot, None);
        assert_eq!(r.device, None);
        assert_eq!(
            fields(&r),
            [
                f("seq", "-1", "number"),
                f("boot", "has!bang", "text"),
                f("device", "", "text"),
                f("t", "1", "number"),
            ]
        );
    }

    #[test]
    fn reserved_only_reading_still_has_a_row() {
        let r = reading("seq=5 boot=abc");
        assert_eq!(r.seq, Some(5));
        assert_eq!(fields(&r), [f("message", "", "text")]);
    }

    #[test]
    fn greeting() {
        assert_eq!(
            parse_line(b"HELLO kitchen boot=3f9a ack=1"),
            Line::Hello(Hello {
                device: "kitchen".into(),
                boot: Some("3f9a".into()),
                ack: true,
                token: None,
            })
        );
        assert_eq!(
            parse_line(b"HELLO  hall"),
            Line::Hello(Hello {
                device: "hall".into(),
                ..Hello::default()
            })
        );
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            parse_line(format!("HELLO hall boot={uuid},ack=1 token=abc").as_bytes()),
            Line::Hello(Hello {
                device: "hall".into(),
                boot: Some(uuid.into()),
                ack: true,
                token: Some("abc".into()),
            })
        );
        // Bare "HELLO" with nothing after it is not a greeting, kept as text.
        assert!(matches!(parse_line(b"HELLO "), Line::Blank | Line::Reading(_)));
        assert!(matches!(parse_line(b"HELLO"), Line::Reading(_)));
    }

    #[test]
    fn issue_8_greeting_that_would_be_misread_is_refused_with_the_reason() {
        let bad = |line: &str| match parse_line(line.as_bytes()) {
            Line::BadHello(reason) => reason,
            other => panic!("{line:?} was accepted: {other:?}"),
        };
        assert!(bad("HELLO living room ack=1").contains("\"room ack=1\""));
        assert!(bad("HELLO kitchen,hall ack=1").contains("hall"));
        assert!(bad("HELLO  ack=1").contains("missing device name"));
        assert!(bad("HELLO k boot=has!bang").contains("boot id"));
        assert!(bad(&format!("HELLO k boot={}", "a".repeat(65))).contains("boot id"));
        assert!(bad("HELLO k ack=maybe").contains("ack"));
        assert!(bad("HELLO k colour=red").contains("unknown option"));
        assert!(bad("HELLO k ack=1 ack=0").contains("twice"));
        assert!(bad(&format!("HELLO {}", "x".repeat(65))).contains("device name"));
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let Line::Hello(h) = parse_line(b"HELLO k token=s3cr3t-t0ken") else {
            panic!("not a greeting")
        };
        assert!(!format!("{h:?}").contains("s3cr3t"), "{h:?}");
    }

    #[test]
    fn blank_lines() {
        for l in ["", "   ", "\t \t"] {
            assert_eq!(parse_line(l.as_bytes()), Line::Blank);
        }
    }

    #[test]
    fn garbage_bytes_become_printable_text() {
        let r = reading_bytes(b"\x00\xff\xfe temp\x01=3");
        let v = r.fields[0].value.as_text();
        assert!(!v.chars().any(|c| c.is_control()), "{v:?}");
        assert!(v.contains("temp"));
    }

    fn reading_bytes(b: &[u8]) -> Reading<'_> {
        match parse_line(b) {
            Line::Reading(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_device_names_are_cut() {
        let name = "é".repeat(100);
        let line = format!("device={name} t=1");
        let r = reading(&line);
        assert_eq!(r.device.unwrap().chars().count(), MAX_DEVICE_CHARS);
    }

    #[test]
    fn byte_scan_finds_exactly_the_control_chars() {
        for c in ('\0'..='\u{800}').chain(['\u{FFFD}', '\u{1F600}']) {
            let s = format!("a{c}b");
            assert_eq!(has_bad_char(&s), is_bad_char(c), "{c:?}");
        }
    }

    /// Fuzz-style: random bytes never panic, and every output string is free of
    /// control characters other than tab, so it cannot break a CSV row or a sheet cell.
    #[test]
    fn random_bytes_never_panic_and_stay_printable() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let alphabet = b"{}\":,= \t\\abcdeqs0123456789.-HELLO\x00\xff\x7f\xc3\xa9";
        for i in 0..20_000 {
            let len = (next() % 64) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    if i % 2 == 0 {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    } else {
                        (next() % 256) as u8
                    }
                })
                .filter(|&b| b != b'\n')
                .collect();
            let check = |s: &str| assert!(!s.chars().any(is_bad_char), "{line:?} -> {s:?}");
            match parse_line(&line) {
                Line::Blank => {}
                Line::Hello(h) => check(&h.device),
                Line::BadHello(reason) => check(&reason),
                Line::Reading(r) => {
                    assert!(!r.fields.is_empty());
                    r.device.as_deref().map(check);
                    r.device_time.as_deref().map(check);
                    for f in &r.fields {
                        check(&f.name);
                        check(f.value.as_text());
                    }
                }
            }
        }
    }
}
