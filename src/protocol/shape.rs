//! The shape of a board's last flat JSON line: its bytes outside the values.
//!
//! A board sends the same keys in the same order with the same spacing, line after
//! line; only the values change. Once one line has been read by the tokenizer
//! ([`json::for_each_flat_pair_placed`]), the next is matched against that line's
//! skeleton: each stretch between two values (`{"device":`, `,"seq":`, ..., `}`) is
//! compared whole, and only the values are scanned, by the tokenizer's own value
//! grammar (`json::flat_value`). Issue 22: the tokenizer walked every byte of a line
//! (about 1,100 instructions of a reading's 2,200); most of those bytes are the skeleton.
//!
//! A line that does not match takes the tokenizer, as before, and its shape is kept if
//! the tokenizer accepts it (`reading::parse_flat_line` skips a line that misses right
//! after one the shape was made from, so that alternating shapes are not made again on
//! every line). So the shape decides nothing: a line that matches gives
//! exactly the pairs, and the quoting answer, that the tokenizer gives (its keys are
//! the accepted line's keys, byte for byte, so none repeats; every byte between two
//! values is the one the tokenizer walked there; a test checks this on random lines).
//! A device name or any other value may change freely without a miss, so a flood of
//! new names is matched as cheaply as a board's usual stream.

use super::json::{self, FlatValue, PairPlace, FLAT_MAX_KEYS};

/// A skeleton longer than this is not kept (a line of long keys takes the tokenizer):
/// it bounds the memory a connection holds for it.
const MAX_SKELETON_BYTES: usize = 1024;

/// The skeleton of the last flat line the tokenizer accepted (see the module docs),
/// with a tag per key that the caller decides once, when the shape is kept (for
/// [`super::reading`], what the key is to a reading).
#[derive(Debug, Clone, Default)]
pub struct LineShape<T> {
    /// The line's bytes outside its values, stretch after stretch.
    skeleton: Vec<u8>,
    /// Per value: the stretch before it, and its key.
    slots: [Slot<T>; FLAT_MAX_KEYS],
    /// The stretch after the last value, to the end of the line.
    last: Stretch,
    /// How many values; 0: no shape kept.
    values: usize,
    /// Whether a key has a comma (part of the tokenizer's quoting answer).
    key_comma: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot<T> {
    /// The stretch before the value.
    before: Stretch,
    /// The value's key, as bytes back from the value's start to the key's first byte
    /// (the key lies in the stretch before its value), and its length.
    key_back: usize,
    key_len: usize,
    tag: T,
}

/// A stretch of the skeleton: where it ends in it, and its bytes as words, so that
/// the usual stretch (`,"humidity":`, up to 16 bytes) is compared in two loads
/// instead of a call to `memcmp`.
#[derive(Debug, Clone, Copy, Default)]
struct Stretch {
    end: usize,
    /// The first 8 bytes (8 to 16 bytes), or all of them zero-padded (fewer than 8).
    head: u64,
    /// The last 8 bytes (8 to 16 bytes), or the mask of the bytes there are (fewer).
    tail: u64,
}

impl Stretch {
    fn new(skeleton: &[u8], start: usize) -> Stretch {
        let bytes = &skeleton[start..];
        // Fixed-width loads and a short fold: no copy of a length known only at run time.
        let load = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
        let (head, tail) = match bytes.len() {
            n @ 0..=7 => (
                bytes.iter().rev().fold(0, |w, &c| w << 8 | u64::from(c)),
                u64::MAX.checked_shr(64 - 8 * n as u32).unwrap_or(0),
            ),
            n @ 8..=16 => (load(&bytes[..8]), load(&bytes[n - 8..])),
            _ => (0, 0),
        };
        Stretch {
            end: skeleton.len(),
            head,
            tail,
        }
    }

    /// Whether `b[at..]` starts with this stretch, `skeleton[from..self.end]`.
    #[inline(always)]
    fn starts(&self, b: &[u8], at: usize, skeleton: &[u8], from: usize) -> bool {
        let n = self.end - from;
        let load = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
        match (n, b.get(at..at + n.max(8))) {
            (8..=16, Some(w)) => load(&w[..8]) == self.head && load(&w[n - 8..]) == self.tail,
            (0..=7, Some(w)) => load(w) & self.tail == self.head,
            _ => b.get(at..at + n) == skeleton.get(from..self.end),
        }
    }
}

impl<T: Copy + Default> LineShape<T> {
    /// The pairs of `text` if it has this shape, handed to `each` with their key's tag
    /// as the tokenizer would hand them, with the tokenizer's answer (`Some(unquoted)`).
    /// `None`: not this shape, or a value the fast grammar does not take; `each` may
    /// have had some pairs already, which the caller discards.
    #[inline]
    pub fn pairs<'a>(&self, text: &'a str, mut each: impl FnMut(T, &'a str, FlatValue<'a>)) -> Option<bool> {
        let b = text.as_bytes();
        let mut comma = self.key_comma;
        let (mut at, mut from) = (0, 0);
        for slot in self.slots.get(..self.values)? {
            if !slot.before.starts(b, at, &self.skeleton, from) {
                return None;
            }
            let start = at + (slot.before.end - from);
            let key_start = start.checked_sub(slot.key_back)?;
            let key = text.get(key_start..key_start + slot.key_len)?;
            let (value, end) = json::flat_value(text, start, &mut comma)?;
            each(slot.tag, key, value);
            (at, from) = (end, slot.before.end);
        }
        let whole = self.values > 0 && b.len() - at == self.last.end - from;
        (whole && self.last.starts(b, at, &self.skeleton, from)).then_some(!comma)
    }

    /// Keeps the shape of `text`, a line the tokenizer has just accepted, from where its
    /// pairs lie (`places`, as [`json::for_each_flat_pair_placed`] gave them), with each
    /// key's `tag`. A line without pairs, or with a skeleton over `MAX_SKELETON_BYTES`,
    /// leaves no shape. No byte of the line is looked at again: a board that changes its
    /// shape every line (alternating two kinds of lines, say) pays little for it.
    pub fn learn(&mut self, text: &'_ str, places: &[PairPlace], tag: impl Fn(&str) -> T) {
        if self.learn_or_fail(text, places, tag).is_none() {
            self.values = 0;
        }
    }

    fn learn_or_fail(&mut self, text: &str, places: &[PairPlace], tag: impl Fn(&str) -> T) -> Option<()> {
        self.values = 0;
        self.skeleton.clear();
        self.key_comma = false;
        // The bound is checked before anything is copied: a line of a megabyte of keys
        // must not leave a megabyte of capacity behind on the connection.
        let values: usize = places.iter().map(|p| p.value.1.saturating_sub(p.value.0)).sum();
        let skeleton = text.len().checked_sub(values)?;
        if places.is_empty() || places.len() > self.slots.len() || skeleton > MAX_SKELETON_BYTES {
            return None;
        }
        let b = text.as_bytes();
        // The first byte of the stretch before the next value.
        let mut stretch = 0;
        for (slot, place) in self.slots.iter_mut().zip(places) {
            let ((key_start, key_end), (value, end)) = (place.key, place.value);
            let key = text.get(key_start..key_end)?;
            self.key_comma |= key.contains(',');
            let from = self.skeleton.len();
            self.skeleton.extend_from_slice(b.get(stretch..value)?);
            *slot = Slot {
                before: Stretch::new(&self.skeleton, from),
                key_back: value.checked_sub(key_start)?,
                key_len: key.len(),
                tag: tag(key),
            };
            stretch = end;
        }
        let from = self.skeleton.len();
        self.skeleton.extend_from_slice(b.get(stretch..)?);
        self.last = Stretch::new(&self.skeleton, from);
        self.values = places.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::for_each_flat_pair;
    use crate::protocol::reading::{mutate_line, MUTATION_PIECES};

    type Pairs = Vec<(String, String)>;

    /// Keeps the shape of `text` as `parse_flat_line` does: from the places the tokenizer
    /// gives, with each key's length as its tag. `None`: the tokenizer does not take it.
    fn learn(shape: &mut LineShape<usize>, text: &str) -> Option<()> {
        let mut places = Vec::new();
        json::for_each_flat_pair_placed(text, |_, _, place| places.push(place))?;
        shape.learn(text, &places, str::len);
        Some(())
    }

    fn tokenized(text: &str) -> (Option<bool>, Pairs) {
        let mut pairs = Vec::new();
        let r = for_each_flat_pair(text, |k, v| pairs.push((k.to_string(), format!("{v:?}"))));
        (r, pairs)
    }

    /// The pairs of a matched line; each key's tag, its length, is checked on the way.
    fn matched(shape: &LineShape<usize>, text: &str) -> (Option<bool>, Pairs) {
        let mut pairs = Vec::new();
        let r = shape.pairs(text, |len, k, v| {
            assert_eq!(len, k.len(), "the tag kept with {k:?}");
            pairs.push((k.to_string(), format!("{v:?}")))
        });
        (r, pairs)
    }

    /// Issue 22: a line that matches the kept shape gives what the tokenizer gives, on
    /// random mutations of lines that had a shape kept (the near misses: a changed byte
    /// in a key, a space more or less, a value of another kind or grammar, a comma in a
    /// string, a cut or a doubled end); and the usual stream does match.
    #[test]
    fn issue_22_a_line_of_the_kept_shape_gives_what_the_tokenizer_gives() {
        let mut next = crate::testing::xorshift(0x51a9_e0c3_77d2_4b1f);
        let seeds = [
            r#"{"device":"sim-01","seq":12,"temp_c":21.50,"humidity":40.5}"#,
            r#" { "device" : "k" , "t" : 1 } "#,
            r#"{"a":null,"b":true,"c":false,"d":"","e":-0.5,"f":"=1+2","g":"-x","h":"'q"}"#,
            r#"{"note":"a, b","t":1}"#,
            r#"{"a,b":1,"":2,"c":"x"}"#,
            r#"{"seq":1,"boot":"b1","ts":"x"}"#,
            r#"{"t":1}"#,
            r#"{"f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9,"f10":10,"f11":11,"f12":12,"f13":13,"f14":14,"f15":15}"#,
        ];
        let values = [
            "0", "-1", "1.25", "\"x\"", "\"a,b\"", "true", "false", "null", "1e5", "01", "\"\\n\"", "1.", "-",
        ];
        let pieces: Vec<&str> = MUTATION_PIECES.iter().copied().chain(values).collect();
        let mut shape = LineShape::<usize>::default();
        let (mut hits, mut checked) = (0, 0);
        for round in 0..40_000 {
            let seed = seeds[round % seeds.len()];
            // Learn the seed's shape as a connection would, then try a near miss.
            learn(&mut shape, seed).expect("the tokenizer takes every seed");
            let mut text = seed.to_string();
            if round % 3 == 0 {
                // Same skeleton, other values: what a board sends next.
                let v = |next: &mut dyn FnMut() -> u64| values[(next() as usize) % values.len()];
                text = text
                    .replace("21.50", v(&mut next))
                    .replace("\"k\"", v(&mut next))
                    .replace(":1}", &format!(":{}}}", v(&mut next)));
            } else {
                mutate_line(&mut text, 1 + round % 3, &pieces, &mut next);
            }
            let got = matched(&shape, &text);
            if got.0.is_some() {
                assert_eq!(got, tokenized(&text), "shape of {seed:?}, line {text:?}");
                hits += 1;
            }
            checked += 1;
        }
        assert!(hits > 8_000, "{hits} of {checked} lines matched a kept shape");
        // A board's usual stream matches line after line, whatever its values.
        learn(&mut shape, seeds[0]).expect("the tokenizer takes it");
        for line in [
            r#"{"device":"sim-02","seq":13,"temp_c":-3,"humidity":41}"#,
            r#"{"device":"a new name","seq":18446744073709551615,"temp_c":0.001,"humidity":"n/a"}"#,
        ] {
            assert!(matched(&shape, line).0.is_some(), "{line:?}");
            assert_eq!(matched(&shape, line), tokenized(line));
        }
    }

    /// What cannot be a shape leaves none: no pairs, or a skeleton over the bound.
    #[test]
    fn issue_22_no_shape_is_kept_without_pairs_or_past_the_bound() {
        let mut shape = LineShape::<usize>::default();
        learn(&mut shape, r#"{"t":1}"#).expect("the tokenizer takes it");
        assert!(shape.pairs(r#"{"t":2}"#, |_, _, _| {}).is_some());
        learn(&mut shape, "{}").expect("the tokenizer takes it");
        assert_eq!(shape.pairs("{}", |_, _, _| {}), None);
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(MAX_SKELETON_BYTES));
        assert!(tokenized(&long_key).0.is_some());
        learn(&mut shape, &long_key).expect("the tokenizer takes it");
        assert_eq!(shape.pairs(&long_key, |_, _, _| {}), None);
        // A line of a megabyte of key leaves no megabyte behind.
        let huge_key = format!(r#"{{"{}":1,"t":"{}"}}"#, "k".repeat(1 << 20), "v".repeat(1 << 20));
        learn(&mut shape, &huge_key).expect("the tokenizer takes it");
        assert_eq!(shape.pairs(&huge_key, |_, _, _| {}), None);
        assert!(
            shape.skeleton.capacity() <= 2 * MAX_SKELETON_BYTES,
            "{}",
            shape.skeleton.capacity()
        );
        let just_under = format!(r#"{{"{}":1}}"#, "k".repeat(MAX_SKELETON_BYTES - 7));
        learn(&mut shape, &just_under).expect("the tokenizer takes it");
        assert!(shape.pairs(&just_under, |_, _, _| {}).is_some());
    }
}
