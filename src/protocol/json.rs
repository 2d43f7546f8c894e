//! The JSON line format: one object per line, scanned in place.
//!
//! Readings are flat objects of numbers, booleans and short strings, and they arrive
//! by the hundred thousand per second. Building a `serde_json::Value` for each one
//! (an ordered map, a `String` per key and value, a float round trip per number) was
//! the largest cost of the ingest path in the profile. This scanner borrows keys,
//! numbers and plain strings straight from the line and allocates only for what
//! needs decoding: strings with escapes, and nested arrays or objects, which are
//! handed to `serde_json` and kept as their compact JSON text.
//!
//! It accepts exactly what `serde_json::from_str::<Value>` accepts for a top-level
//! object (RFC 8259: whitespace, escapes, number grammar, no trailing bytes), which a
//! differential test against `serde_json` checks on random input. Two deliberate
//! differences in the result, both in the board's favour: numbers keep the text the
//! board sent (`21.50` stays `21.50`, where a float round trip would print `21.5`),
//! and a number that is not a finite `f64` (`1e999`) makes the line invalid JSON, as
//! `serde_json` also refuses it.

use std::borrow::Cow;

/// One value of the top-level object.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue<'a> {
    /// The number's text as sent.
    Number(&'a str),
    Bool(bool),
    Null,
    Str(Cow<'a, str>),
    /// An array or object, as compact JSON text.
    Nested(String),
}

/// Parses `text` as one JSON object; `None` if it is not exactly that. Keys keep the
/// order of their first appearance; a repeated key keeps its last value (as
/// `serde_json`'s ordered map does).
pub fn parse_object(text: &str) -> Option<Vec<(Cow<'_, str>, JsonValue<'_>)>> {
    let mut pairs = Vec::with_capacity(8);
    scan_object(text, |key, value| pairs.push((key, value)))?;
    merge_repeated_keys(&mut pairs);
    Some(pairs)
}

/// The allocation-free form of [`parse_object`] for the ingest path: hands each pair
/// to `each` as it is scanned. `None`: not a JSON object (discard what `each` got).
/// `Some(true)`: some key may repeat, and the caller must start over with
/// [`parse_object`] to get `serde_json`'s merging; `Some(false)`: done.
pub fn for_each_pair<'a>(text: &'a str, mut each: impl FnMut(Cow<'a, str>, JsonValue<'a>)) -> Option<bool> {
    const TRACKED: usize = 16;
    let mut keys: [&str; TRACKED] = [""; TRACKED];
    let mut count = 0;
    let mut may_repeat = false;
    scan_object(text, |key, value| {
        if count < TRACKED {
            may_repeat |= keys[..count].contains(&&*key) || matches!(key, Cow::Owned(_));
            if let Cow::Borrowed(k) = key {
                keys[count] = k;
            }
        } else {
            may_repeat = true;
        }
        count += 1;
        each(key, value);
    })?;
    Some(may_repeat)
}

/// Bytes that end a plain run inside a string on the fast path of [`for_each_flat_pair`]:
/// the quote, the backslash, and everything that is not printable ASCII (controls, DEL,
/// and every byte of a multi-byte character); and the comma, which does not end the
/// string but is noted (a CSV field with a comma is quoted), at no cost to the other
/// bytes.
const NOT_PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = false;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b',' as usize] = true;
    t
};

/// How many bytes at the start of `b` are plain string content (see [`NOT_PLAIN`]).
/// Not inlined on purpose: inside [`for_each_flat_pair`]'s loop LLVM strength-reduced
/// this loop into a dozen induction variables, about 20 instructions a byte; alone it
/// is a tight loop (issue 22, callgrind).
#[inline(never)]
fn plain_run(b: &[u8]) -> usize {
    b.iter().position(|&c| NOT_PLAIN[c as usize]).unwrap_or(b.len())
}

/// The end of the run of ASCII digits at `b[i..]`: eight bytes at a time while eight are
/// left (issue 22: a byte at a time was about 8 instructions a digit). Per byte of
/// `x = word ^ 0x30..30`, a digit is `x < 10`: `(x + 0x76) | x` has its top bit set exactly
/// for the other bytes (no carry leaves a byte below 0x80; a carry from a byte at or above
/// it only marks bytes after one that is marked already), so the lowest marked byte ends
/// the run.
fn digits_end(b: &[u8], mut i: usize) -> usize {
    const LOW: u64 = u64::MAX / 255;
    while let Some(w) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ (LOW * u64::from(b'0'));
        let stop = (x.wrapping_add(LOW * 0x76) | x) & (LOW * 0x80);
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// A plain string's end from `i`, its first content byte: the index of its closing quote.
/// `None`: the string has a byte that is not plain (see [`NOT_PLAIN`]); `comma` is set when
/// it has a comma.
#[inline(always)]
fn plain_end(b: &[u8], mut i: usize, comma: &mut bool) -> Option<usize> {
    loop {
        let end = i + plain_run(b.get(i..)?);
        match b.get(end) {
            Some(b'"') => return Some(end),
            Some(b',') => {
                *comma = true;
                i = end + 1;
            }
            _ => return None,
        }
    }
}

/// The value of the fast path's grammar (see [`for_each_flat_pair`]) at `text[i..]`, and
/// where it ends: a plain string, a number without an exponent, or a literal. `None`:
/// anything else (the full scanner decides). `comma`: set when a string has a comma.
/// Shared by [`for_each_flat_pair_placed`] and the line shape's matcher
/// ([`super::shape`]), so that the two read values by one grammar.
#[inline(always)]
pub(crate) fn flat_value<'a>(text: &'a str, mut i: usize, comma: &mut bool) -> Option<(FlatValue<'a>, usize)> {
    let b = text.as_bytes();
    let start = i;
    let value = match *b.get(i)? {
        b'"' => {
            let end = plain_end(b, i + 1, comma)?;
            i = end + 1;
            FlatValue::Str(text.get(start + 1..end)?)
        }
        b'-' | b'0'..=b'9' => {
            if b[i] == b'-' {
                i += 1;
            }
            i = match b.get(i)? {
                b'0' => i + 1,
                b'1'..=b'9' => digits_end(b, i + 1),
                _ => return None,
            };
            if b.get(i) == Some(&b'.') {
                let after = digits_end(b, i + 1);
                if after == i + 1 {
                    return None;
                }
                i = after;
            }
            // An exponent, or 300 digits and more, may not be a finite f64: the
            // full scanner checks.
            if matches!(b.get(i), Some(b'e' | b'E')) || i - start >= 300 {
                return None;
            }
            FlatValue::Number(text.get(start..i)?)
        }
        b't' if b[i..].starts_with(b"true") => {
            i += 4;
            FlatValue::Bool(true)
        }
        b'f' if b[i..].starts_with(b"false") => {
            i += 5;
            FlatValue::Bool(false)
        }
        b'n' if b[i..].starts_with(b"null") => {
            i += 4;
            FlatValue::Null
        }
        _ => return None,
    };
    Some((value, i))
}

/// Most keys [`for_each_flat_pair`] checks for repeats; more go to the full scanner.
pub(crate) const FLAT_MAX_KEYS: usize = 16;

/// A value of [`for_each_flat_pair`]: what [`JsonValue`] would be, borrowed from the line
/// without a `Cow` (a plain string has no escape to decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatValue<'a> {
    /// The number's text as sent.
    Number(&'a str),
    /// The string's text, quotes removed.
    Str(&'a str),
    Bool(bool),
    Null,
}

impl<'a> From<FlatValue<'a>> for JsonValue<'a> {
    fn from(v: FlatValue<'a>) -> JsonValue<'a> {
        match v {
            FlatValue::Number(n) => JsonValue::Number(n),
            FlatValue::Str(s) => JsonValue::Str(Cow::Borrowed(s)),
            FlatValue::Bool(b) => JsonValue::Bool(b),
            FlatValue::Null => JsonValue::Null,
        }
    }
}

/// The fast path for the common reading (issue 22): a flat object of plain keys,
/// numbers without an exponent, literals and strings of printable ASCII without escapes,
/// no whitespace but spaces, no repeated key. Validates and splits the line in one pass
/// and hands each pair to `each`. `None`: not such a line (it may still be valid JSON,
/// or not JSON at all); discard what `each` got and use [`for_each_pair`], which
/// decides. `Some(unquoted)`: done, and every byte of `text` is printable ASCII (so the
/// line is clean text, with nothing to sanitize); `unquoted`: no key or string has a
/// comma, so no key or value needs quoting in the CSV (no `"`, `\n` or `\r` either: a
/// plain string has none, a number or literal has none of the four).
///
/// Whatever it accepts, [`for_each_pair`] accepts with the same pairs (a differential
/// test checks this on random input): only the rare forms fall back.
pub fn for_each_flat_pair<'a>(text: &'a str, mut each: impl FnMut(&'a str, FlatValue<'a>)) -> Option<bool> {
    for_each_flat_pair_placed(text, |key, value, _| each(key, value))
}

/// The bit of a key in [`for_each_flat_pair`]'s 64-bit filter of (length, first byte, last byte).
fn key_bit(kb: &[u8]) -> u64 {
    match (kb.first(), kb.last()) {
        (Some(&f), Some(&l)) => 1u64 << ((kb.len() * 7 + usize::from(f) + usize::from(l) * 3) & 63),
        _ => 1,
    }
}

/// Where a pair of [`for_each_flat_pair_placed`] lies in its line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairPlace {
    /// The key's first byte (after its opening quote) and the byte after its last (its
    /// closing quote).
    pub key: (usize, usize),
    /// The value's first byte (its opening quote, for a string) and the byte after its
    /// last (after its closing quote).
    pub value: (usize, usize),
}

/// [`for_each_flat_pair`], also telling where each pair lies: what a line's shape is made
/// from (see [`super::shape`]) without another walk over the line.
pub fn for_each_flat_pair_placed<'a>(
    text: &'a str,
    mut each: impl FnMut(&'a str, FlatValue<'a>, PairPlace),
) -> Option<bool> {
    let b = text.as_bytes();
    let n = b.len();
    // One look in the common case, compact JSON without spaces.
    let spaces = |i: usize| {
        if b.get(i) == Some(&b' ') {
            i + 1 + b[i + 1..].iter().position(|&c| c != b' ').unwrap_or(n - i - 1)
        } else {
            i
        }
    };
    // Whether a string had a comma.
    let mut comma = false;
    let mut i = spaces(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = spaces(i + 1);
    if b.get(i) == Some(&b'}') {
        return (spaces(i + 1) == n).then_some(true);
    }
    // Keys seen so far, with a 64-bit filter of (length, first byte, last byte): only a
    // filter hit compares the key with the earlier ones.
    let mut keys = [(0, 0); FLAT_MAX_KEYS];
    let mut count = 0;
    let mut filter = 0u64;
    loop {
        if b.get(i) != Some(&b'"') || count == FLAT_MAX_KEYS {
            return None;
        }
        let start = i + 1;
        let key_end = plain_end(b, start, &mut comma)?;
        let key = text.get(start..key_end)?;
        let kb = key.as_bytes();
        let bit = key_bit(kb);
        if filter & bit != 0 && keys[..count].iter().any(|&(s, e)| &b[s..e] == kb) {
            return None; // a repeated key: the full scanner merges repeats
        }
        filter |= bit;
        keys[count] = (start, key_end);
        count += 1;
        i = spaces(key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = spaces(i + 1);
        let (value, end) = flat_value(text, i, &mut comma)?;
        let place = PairPlace {
            key: (start, key_end),
            value: (i, end),
        };
        i = end;
        each(key, value, place);
        i = spaces(i);
        match b.get(i)? {
            b',' => i = spaces(i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    if spaces(i + 1) != n {
        return None;
    }
    Some(!comma)
}

fn scan_object<'a>(text: &'a str, each: impl FnMut(Cow<'a, str>, JsonValue<'a>)) -> Option<()> {
    scan_object_noting_depth(text, each).ok()
}

/// [`scan_object`], telling "nested too deep" (`Err(true)`) apart from other
/// invalid JSON (`Err(false)`).
fn scan_object_noting_depth<'a>(text: &'a str, mut each: impl FnMut(Cow<'a, str>, JsonValue<'a>)) -> Result<(), bool> {
    let mut s = Scanner {
        text,
        at: 0,
        too_deep: false,
    };
    scan_pairs(&mut s, &mut each).ok_or(s.too_deep)
}

/// Whether `text` would be a JSON object but for nesting deeper than [`MAX_DEPTH`].
pub fn is_too_deep(text: &str) -> bool {
    scan_object_noting_depth(text, |_, _| {}) == Err(true)
}

fn scan_pairs<'a>(s: &mut Scanner<'a>, each: &mut impl FnMut(Cow<'a, str>, JsonValue<'a>)) -> Option<()> {
    let text = s.text;
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.at += 1;
    } else {
        loop {
            s.skip_ws();
            let key = s.string()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let value = s.value()?;
            each(key, value);
            s.skip_ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.at == text.len()).then_some(())
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
    /// Set when a value nested deeper than [`MAX_DEPTH`] made the line invalid.
    too_deep: bool,
}

/// Deepest nesting of arrays and objects inside a reading's values. Readings are flat;
/// a few levels of structure are kept as JSON text, a bracket bomb is not.
pub const MAX_DEPTH: usize = 32;

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        // Compact JSON has no whitespace: one look decides, without building an iterator.
        if !matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            return;
        }
        let rest = &self.bytes()[self.at..];
        self.at += rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
    }

    fn value(&mut self) -> Option<JsonValue<'a>> {
        match self.peek()? {
            b'"' => self.string().map(JsonValue::Str),
            b'-' | b'0'..=b'9' => self.number().map(JsonValue::Number),
            b't' => self.literal("true", JsonValue::Bool(true)),
            b'f' => self.literal("false", JsonValue::Bool(false)),
            b'n' => self.literal("null", JsonValue::Null),
            b'[' | b'{' => self.nested(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, value: JsonValue<'a>) -> Option<JsonValue<'a>> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Some(value)
        } else {
            None
        }
    }

    /// A string at the cursor (opening quote included). Borrowed unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let open = self.at;
        self.expect(b'"')?;
        // Fast path: most strings are plain, so find the first byte that is not.
        let plain = self.bytes()[self.at..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        self.at += plain;
        if self.next()? == b'"' {
            return Some(Cow::Borrowed(&self.text[open + 1..self.at - 1]));
        }
        self.at -= 1;
        loop {
            match self.next()? {
                b'"' => break,
                // The escape itself is checked when decoding below; skipping one byte
                // is enough to step over an escaped quote or backslash.
                b'\\' => {
                    self.next()?;
                }
                b if b < 0x20 => return None,
                _ => {}
            }
        }
        serde_json::from_str::<String>(&self.text[open..self.at])
            .ok()
            .map(Cow::Owned)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, and finite as an `f64`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.one_or_more_digits()?;
        }
        let mut exponent = false;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            exponent = true;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        let text = &self.text[start..self.at];
        // Without an exponent, only a number of 309 or more digits can overflow an f64.
        let surely_finite = !exponent && text.len() < 300;
        (surely_finite || text.parse::<f64>().is_ok_and(f64::is_finite)).then_some(text)
    }

    fn digits(&mut self) {
        let rest = &self.bytes()[self.at..];
        self.at += rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// An array or object, validated and printed compactly (whitespace outside
    /// strings removed; strings and numbers exactly as sent). Iterative, with an
    /// explicit stack of at most [`MAX_DEPTH`] brackets: a recursive parser would let
    /// a short line of brackets overflow a board thread's small stack (the debug-build
    /// `serde_json` needs more than 32 KiB for 16 levels), and that aborts the whole
    /// process. Deeper nesting makes the line invalid JSON (it is then kept as text).
    fn nested(&mut self) -> Option<JsonValue<'a>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Want {
            Value,
            ValueOrClose,
            Key,
            KeyOrClose,
            CommaOrClose,
        }
        let mut out = String::new();
        let mut open: Vec<u8> = Vec::new();
        let mut want = Want::Value;
        loop {
            self.skip_ws();
            let b = self.peek()?;
            // `]` or `}` closing the innermost container, where one may stand.
            let closes = matches!(want, Want::ValueOrClose | Want::KeyOrClose | Want::CommaOrClose)
                && matches!((b, open.last()), (b']', Some(b'[')) | (b'}', Some(b'{')));
            if closes {
                self.at += 1;
                out.push(b as char);
                open.pop();
            } else {
                let start = self.at;
                match want {
                    Want::Value | Want::ValueOrClose => {
                        match b {
                            b'[' | b'{' => {
                                if open.len() >= MAX_DEPTH {
                                    self.too_deep = true;
                                    return None;
                                }
                                self.at += 1;
                                open.push(b);
                                out.push(b as char);
                                want = if b == b'[' {
                                    Want::ValueOrClose
                                } else {
                                    Want::KeyOrClose
                                };
                                continue;
                            }
                            b'"' => self.string().map(drop)?,
                            b'-' | b'0'..=b'9' => self.number().map(drop)?,
                            b't' => self.literal("true", JsonValue::Null).map(drop)?,
                            b'f' => self.literal("false", JsonValue::Null).map(drop)?,
                            b'n' => self.literal("null", JsonValue::Null).map(drop)?,
                            _ => return None,
                        }
                        out.push_str(&self.text[start..self.at]);
                    }
                    Want::Key | Want::KeyOrClose => {
                        self.string()?;
                        out.push_str(&self.text[start..self.at]);
                        self.skip_ws();
                        self.expect(b':')?;
                        out.push(':');
                        want = Want::Value;
                        continue;
                    }
                    Want::CommaOrClose => {
                        if b != b',' {
                            return None;
                        }
                        self.at += 1;
                        out.push(',');
                        want = if open.last() == Some(&b'[') {
                            Want::Value
                        } else {
                            Want::Key
                        };
                        continue;
                    }
                }
            }
            // A value (or a whole container) just ended.
            if open.is_empty() {
                return Some(JsonValue::Nested(out));
            }
            want = Want::CommaOrClose;
        }
    }
}

/// `{"a":1,"b":2,"a":3}` becomes `a=3, b=2`: first position, last value. Only the rare
/// path (see [`for_each_pair`]) gets here, so one map per object is fine.
fn merge_repeated_keys(pairs: &mut Vec<(Cow<'_, str>, JsonValue<'_>)>) {
    let mut merged: Vec<(Cow<'_, str>, JsonValue<'_>)> = Vec::with_capacity(pairs.len());
    let mut index: std::collections::HashMap<_, usize> = std::collections::HashMap::with_capacity(pairs.len());
    for (key, value) in pairs.drain(..) {
        match index.get(&key) {
            Some(&i) => merged[i].1 = value,
            None => {
                index.insert(key.clone(), merged.len());
                merged.push((key, value));
            }
        }
    }
    *pairs = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    #[test]
    fn issue_8_deep_nesting_is_refused_without_recursion() {
        // Run where a recursive parser would overflow: a small stack, a debug build.
        std::thread::Builder::new()
            .stack_size(32 * 1024)
            .spawn(|| {
                let deep = format!("{{\"x\":{}1{}}}", "[".repeat(127), "]".repeat(127));
                assert_eq!(parse_object(&deep), None);
                assert!(is_too_deep(&deep));
                let bomb = format!("{{\"x\":{}", "[{\"a\":".repeat(100_000));
                assert_eq!(parse_object(&bomb), None);
                let ok = format!("{{\"x\":{}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
                assert!(parse_object(&ok).is_some(), "exactly MAX_DEPTH levels are kept");
                assert!(!is_too_deep(&ok));
                let over = format!("{{\"x\":{}1{}}}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
                assert!(is_too_deep(&over), "MAX_DEPTH + 1 is refused");
                assert!(!is_too_deep("{\"x\":[1,"), "merely broken JSON is not 'too deep'");
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn nested_values_keep_their_text_without_whitespace() {
        let pairs = parse_object(r#"{"a": [ 1.50 , {"k" : "v w"}, [] , {} ], "b": {"x":[true,null]}}"#).unwrap();
        assert_eq!(pairs[0].1, JsonValue::Nested(r#"[1.50,{"k":"v w"},[],{}]"#.into()));
        assert_eq!(pairs[1].1, JsonValue::Nested(r#"{"x":[true,null]}"#.into()));
    }

    /// What `serde_json` makes of `text`, in this module's terms. Numbers are compared
    /// to 12 significant digits: without its `float_roundtrip` feature `serde_json` may
    /// parse a float one unit in the last place away from the exact value.
    fn reference(text: &str) -> Option<Vec<(String, String)>> {
        let Ok(Json::Object(map)) = serde_json::from_str::<Json>(text) else {
            return None;
        };
        Some(map.into_iter().map(|(k, v)| (k, canonical_json(&v))).collect())
    }

    fn canonical_json(v: &Json) -> String {
        match v {
            Json::Number(n) => format!("n:{:.12e}", n.as_f64().unwrap()),
            Json::String(s) => format!("s:{s}"),
            Json::Bool(b) => format!("b:{b}"),
            Json::Null => "null".to_string(),
            nested => format!("j:{nested}"),
        }
    }

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        let pairs = parse_object(text)?;
        Some(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        JsonValue::Number(n) => format!("n:{:.12e}", n.parse::<f64>().unwrap()),
                        JsonValue::Str(s) => format!("s:{s}"),
                        JsonValue::Bool(b) => format!("b:{b}"),
                        JsonValue::Null => "null".to_string(),
                        // Compare values, not spelling: the scanner keeps numbers and
                        // escapes as sent where serde_json prints its own form.
                        JsonValue::Nested(j) => format!("j:{}", serde_json::from_str::<Json>(&j).unwrap()),
                    };
                    (k.into_owned(), v)
                })
                .collect(),
        )
    }

    #[test]
    fn flat_reading_borrows_from_the_line() {
        let pairs = parse_object(r#" {"device":"kitchen", "temp_c":21.50,"n":-0,"ok":true,"x":null} "#).unwrap();
        assert!(matches!(pairs[0].0, Cow::Borrowed("device")));
        assert!(matches!(pairs[0].1, JsonValue::Str(Cow::Borrowed("kitchen"))));
        assert_eq!(pairs[1].1, JsonValue::Number("21.50"));
        assert_eq!(pairs[2].1, JsonValue::Number("-0"));
        assert_eq!(pairs[3].1, JsonValue::Bool(true));
        assert_eq!(pairs[4].1, JsonValue::Null);
    }

    #[test]
    fn escapes_nesting_and_repeats() {
        let pairs = parse_object(r#"{"a\"b":"x\u00e9\n","n":[1,{"y":"]"}],"a\"b":2}"#).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0], (Cow::Borrowed("a\"b"), JsonValue::Number("2")));
        assert_eq!(pairs[1].1, JsonValue::Nested(r#"[1,{"y":"]"}]"#.to_string()));
        assert_eq!(parse_object("{}"), Some(vec![]));
    }

    #[test]
    fn for_each_pair_flags_possible_repeats() {
        let mut n = 0;
        assert_eq!(for_each_pair(r#"{"a":1,"b":2}"#, |_, _| n += 1), Some(false));
        assert_eq!(n, 2);
        assert_eq!(for_each_pair(r#"{"a":1,"b":2,"a":3}"#, |_, _| {}), Some(true));
        assert_eq!(for_each_pair(r#"{"a\u0062":1,"ab":2}"#, |_, _| {}), Some(true));
        assert_eq!(for_each_pair(r#"{"a":1,"b":}"#, |_, _| {}), None);
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for bad in [
            "",
            "{",
            "}",
            "[]",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e999}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x"} x"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b":}}"#,
            r#"{"a":1"b":2}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":]}"#,
            r#"{"a":[}"#,
        ] {
            assert_eq!(parse_object(bad), None, "{bad:?}");
            assert_eq!(reference(bad), None, "serde_json agrees about {bad:?}");
        }
    }

    /// Random JSON-ish lines: half start from a valid reading (nested and escaped, or
    /// flat) and are mutated, half are noise after a `{`.
    fn random_lines(seed: u64, rounds: usize) -> impl Iterator<Item = String> {
        let mut next = crate::testing::xorshift(seed);
        let pieces: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\"",
            "\"a\"",
            "\"dev\"",
            "\"x\\\"y\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\q\"",
            "1",
            "-",
            "0",
            "2.5",
            "1e3",
            "1E-2",
            ".",
            "e",
            "true",
            "false",
            "null",
            "\"é\"",
            "\t",
            "\n",
            "\u{1}",
            "\\",
            "00",
            "-0.0",
        ];
        (0..rounds).map(move |round| {
            let mut text = String::new();
            // Half the rounds start from a valid object and mutate it; half are noise.
            if round % 2 == 0 {
                text.push_str(if round % 4 == 0 {
                    r#"{"device":"k","t":21.5,"a":[1,{"b":null}],"s":"x\"y"}"#
                } else {
                    r#"{"device":"k","seq":7,"t":-21.50,"ok":true,"s":"x y","n":null}"#
                });
                for _ in 0..(next() % 3) {
                    let at = (next() as usize) % (text.len() + 1);
                    let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap();
                    let piece = pieces[(next() as usize) % pieces.len()];
                    if next().is_multiple_of(2) {
                        text.insert_str(at, piece);
                    } else {
                        let end = (at + 1..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(at);
                        text.replace_range(at..end, "");
                    }
                }
            } else {
                text.push('{');
                for _ in 0..(next() % 12) {
                    text.push_str(pieces[(next() as usize) % pieces.len()]);
                }
            }
            text
        })
    }

    /// Differential fuzzing: on random JSON-ish input, the scanner and `serde_json`
    /// agree on whether it is an object, and on every key and value.
    #[test]
    fn agrees_with_serde_json_on_random_input() {
        let mut agreed_objects = 0;
        for text in random_lines(0x9e37_79b9_7f4a_7c15, 60_000) {
            let (a, b) = (ours(&text), reference(&text));
            assert_eq!(a, b, "input {text:?}");
            agreed_objects += usize::from(a.is_some());
        }
        assert!(
            agreed_objects > 5_000,
            "the fuzzer reached valid objects only {agreed_objects} times"
        );
    }

    /// The fast path's pairs, or `None` where it falls back.
    fn flat(text: &str) -> Option<Vec<(Cow<'_, str>, JsonValue<'_>)>> {
        let mut pairs = Vec::new();
        for_each_flat_pair(text, |k, v| pairs.push((Cow::Borrowed(k), v.into())))?;
        Some(pairs)
    }

    #[test]
    fn issue_22_digits_end_is_the_digit_run() {
        let mut next = crate::testing::xorshift(0x3039_2f3a_c0de_0a09);
        for len in 0..40 {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| match next() % 4 {
                        0 => [b'/', b':', 0xb0, 0xb9, 0x30 + 0x80, 0, b'0', b'9'][(next() % 8) as usize],
                        _ => b'0' + (next() % 10) as u8,
                    })
                    .collect();
                for i in 0..=len {
                    let simple = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                    assert_eq!(digits_end(&b, i), simple, "{b:?} from {i}");
                }
            }
        }
    }

    /// Issue 22: where `for_each_flat_pair_placed` says a pair lies is where it lies (the
    /// key between its quotes, the value's whole token, which reads back as the value),
    /// and it gives the pairs `for_each_flat_pair` gives; on random lines and on lines of
    /// the usual keys with values of every kind, repeats, commas and spaces.
    #[test]
    fn issue_22_each_pair_is_where_the_placed_scan_says() {
        let usual = (0..3000).map(|i| match i % 6 {
            0 => format!(r#"{{"device":"d{i}","seq":{i},"temp_c":2{i}.5,"humidity":40}}"#),
            1 => format!(r#"{{"device":"d{i}","seq":{i},"temp_c":"a,b","humidity":true}}"#),
            2 => format!(r#"{{"device":"d{i}","seq":{i},"seq":1,"humidity":40}}"#),
            3 => format!(r#"{{"device":"d{i}","temp_c":{i},"temp_c":null}}"#),
            4 => format!(r#"{{"humidity":1,"device":"d","abcdefghi":{i},"a,b":false,"":2}}"#),
            _ => format!(r#"{{"devices":1,"device":"x", "seq" :{i} ,"temp_c":1,"humidit":2}}"#),
        });
        let mut placed_lines = 0;
        for text in random_lines(0x1f2e_3d4c_5b6a_7988, 30_000).chain(usual) {
            let (mut pairs, mut placed) = (Vec::new(), Vec::new());
            let r = for_each_flat_pair_placed(&text, |k, v, place| {
                let ((ks, ke), (vs, ve)) = (place.key, place.value);
                assert_eq!(&text[ks..ke], k, "input {text:?}");
                assert_eq!(&text[ks - 1..ks], "\"", "input {text:?}");
                let mut comma = false;
                assert_eq!(flat_value(&text, vs, &mut comma), Some((v, ve)), "input {text:?}");
                placed.push((k.to_string(), format!("{v:?}")));
            });
            let plain = for_each_flat_pair(&text, |k, v| pairs.push((k.to_string(), format!("{v:?}"))));
            assert_eq!(r, plain, "input {text:?}");
            if r.is_some() {
                assert_eq!(placed, pairs, "input {text:?}");
                placed_lines += 1;
            }
        }
        assert!(placed_lines > 2_000, "only {placed_lines} lines were placed");
    }

    /// What the fast path accepts, the full scanner accepts with the same pairs, and the
    /// line is printable ASCII; and it does take the common readings.
    #[test]
    fn flat_fast_path_agrees_with_the_full_scanner() {
        let mut taken = 0;
        let sources = random_lines(0x2545_f491_4f6c_dd1d, 60_000).chain(
            [
                r#"{"device":"sim-01","seq":12,"temp_c":21.50,"humidity":-4}"#,
                r#" { "a" : 1 , "b" : "x y" , "c":true,"d":false,"e":null } "#,
                "{}",
                " { } ",
                r#"{"a":0}"#,
                r#"{"a":1,"b":2,"a":3}"#,
                r#"{"a":"\u0041"}"#,
                r#"{"a":1e5}"#,
                r#"{"a":[1]}"#,
                "{\"a\":\"é\"}",
                "{\"a\":1}\r",
                "{\"a\":\t1}",
                r#"{"device":"x","temp_c":6,"device":"y"}"#,
            ]
            .map(String::from),
        );
        for text in sources {
            let Some(fast) = flat(&text) else { continue };
            taken += 1;
            assert_eq!(Some(fast), parse_object(&text), "input {text:?}");
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "input {text:?}");
        }
        assert!(taken > 1_000, "the fast path took only {taken} lines");
        assert!(flat(r#"{"device":"sim-01","seq":12,"temp_c":21.50,"humidity":-4}"#).is_some());
        assert!(
            flat(r#"{"a":1,"b":2,"a":3}"#).is_none(),
            "repeats are merged by the full path"
        );
        assert!(flat(r#"{"a":1e5}"#).is_none(), "exponents are checked by the full path");
    }
}
