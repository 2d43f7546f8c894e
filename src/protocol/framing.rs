//! Splits a byte stream into lines, with a hard cap on line length.
//!
//! Framing is kept apart from parsing (as Vector keeps framers apart from decoders)
//! so that it can be driven by unit tests, property tests and fuzz targets without a
//! socket. The rules:
//!
//! - A line ends at `\n`; one `\r` just before it is dropped, so `\r\n` works too.
//! - A line longer than `max_line_bytes` (terminator not counted) is **discarded up to
//!   its next newline** and reported once as [`Frame::Overlong`]. Memory stays bounded
//!   by `max_line_bytes + 1` however long the line is, and the next line is read
//!   normally: one bad line does not cost a board its connection.
//! - Bytes after the last newline wait for more input; [`LineFramer::finish`] reports
//!   what was left when the stream ended.
//!
//! Lines that lie wholly inside one input chunk are handed out as borrowed slices of
//! that chunk, so the common case copies nothing.

/// One framed unit of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its terminator.
    Line(&'a [u8]),
    /// A line that exceeded the limit; `bytes` is its full length (terminator excluded).
    Overlong { bytes: usize },
}

/// What was left in the framer when the stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    Nothing,
    /// An unterminated line of this many bytes was dropped.
    Partial {
        bytes: usize,
    },
    /// An overlong line was being discarded when the stream ended.
    Overlong {
        bytes: usize,
    },
}

#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    buf: Vec<u8>,
    /// The overlong line being skipped, if any.
    discarding: Option<Discard>,
}

/// Length and last byte of a line being discarded, so its reported length does not
/// depend on where the chunks happened to split it.
#[derive(Debug, Clone, Copy)]
struct Discard {
    bytes: usize,
    ends_cr: bool,
}

impl Discard {
    fn of(buf: &[u8]) -> Discard {
        Discard {
            bytes: 0,
            ends_cr: false,
        }
        .plus(buf)
    }

    fn plus(self, more: &[u8]) -> Discard {
        Discard {
            bytes: self.bytes + more.len(),
            ends_cr: more.last().map_or(self.ends_cr, |&b| b == b'\r'),
        }
    }

    fn len_without_cr(self) -> usize {
        self.bytes - usize::from(self.ends_cr)
    }
}

impl LineFramer {
    pub fn new(max_line_bytes: usize) -> LineFramer {
        LineFramer {
            max: max_line_bytes,
            buf: Vec::new(),
            discarding: None,
        }
    }

    /// Whether part of a line (or of an overlong line being discarded) is waiting for
    /// its newline.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding.is_some()
    }

    /// Feeds `data`, calling `emit` for every frame it completes, in order.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(Frame<'_>)) {
        self.push_lines(data, "", |frame, _| emit(frame));
    }

    /// [`LineFramer::push`], also giving each line as text when it lies in `data` and is
    /// valid UTF-8 (`None` for a line joined across reads or with invalid bytes: the
    /// caller checks it itself). The chunk is checked once, not each line (issue 22: a
    /// `from_utf8` per line was 143 instructions of a 60-byte reading).
    pub fn push_text<'d>(&mut self, data: &'d [u8], emit: impl FnMut(Frame<'_>, Option<&'d str>)) {
        // The valid prefix: text up to the first invalid byte (or an unfinished last char).
        let text = match std::str::from_utf8(data) {
            Ok(text) => text,
            Err(_) => data.utf8_chunks().next().map_or("", |c| c.valid()),
        };
        self.push_lines(data, text, emit);
    }

    /// The framer; `text` is a prefix of `data` as text (lines within it are given as text).
    fn push_lines<'d>(&mut self, data: &'d [u8], text: &'d str, mut emit: impl FnMut(Frame<'_>, Option<&'d str>)) {
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let piece = &rest[..pos];
            let start = data.len() - rest.len();
            rest = &rest[pos + 1..];
            if let Some(d) = self.discarding.take() {
                emit(
                    Frame::Overlong {
                        bytes: d.plus(piece).len_without_cr(),
                    },
                    None,
                );
            } else if self.buf.is_empty() {
                let frame = self.frame(piece);
                let line = match frame {
                    Frame::Line(l) => text.get(start..start + l.len()),
                    Frame::Overlong { .. } => None,
                };
                emit(frame, line);
            } else if self.buf.len() + piece.len() > self.max + 1 {
                let d = Discard::of(&self.buf).plus(piece);
                self.buf.clear();
                emit(
                    Frame::Overlong {
                        bytes: d.len_without_cr(),
                    },
                    None,
                );
            } else {
                self.buf.extend_from_slice(piece);
                let line = std::mem::take(&mut self.buf);
                emit(self.frame(&line), None);
                self.buf = line;
                self.buf.clear();
            }
        }
        if rest.is_empty() {
            return;
        }
        if let Some(d) = self.discarding.as_mut() {
            *d = d.plus(rest);
        } else if self.buf.len() + rest.len() > self.max + 1 {
            // `max + 1` leaves room for a `\r` that may precede the coming `\n`.
            self.discarding = Some(Discard::of(&self.buf).plus(rest));
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(rest);
        }
    }

    /// Ends the stream: drops any unterminated line and says what it was.
    pub fn finish(&mut self) -> Leftover {
        if let Some(d) = self.discarding.take() {
            return Leftover::Overlong { bytes: d.bytes };
        }
        let bytes = self.buf.len();
        self.buf.clear();
        if bytes == 0 {
            Leftover::Nothing
        } else {
            Leftover::Partial { bytes }
        }
    }

    fn frame<'a>(&self, piece: &'a [u8]) -> Frame<'a> {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.len() > self.max {
            Frame::Overlong { bytes: line.len() }
        } else {
            Frame::Line(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `chunks` in order; overlong lines show as `<overlong N>`.
    fn frames(max: usize, chunks: &[&[u8]]) -> (Vec<String>, Leftover) {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, |fr| {
                out.push(match fr {
                    Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Frame::Overlong { bytes } => format!("<overlong {bytes}>"),
                })
            });
        }
        (out, f.finish())
    }

    #[test]
    fn splits_lf_and_crlf() {
        let (out, left) = frames(100, &[b"a\nb\r\nc\r", b"\nd"]);
        assert_eq!(out, ["a", "b", "c"]);
        assert_eq!(left, Leftover::Partial { bytes: 1 });
    }

    #[test]
    fn limit_exactly_n_is_kept_and_n_plus_1_is_discarded() {
        let (out, _) = frames(5, &[b"12345\n123456\n12345\r\nok\n"]);
        assert_eq!(out, ["12345", "<overlong 6>", "12345", "ok"]);
    }

    #[test]
    fn overlong_across_chunks_keeps_memory_bounded() {
        let mut f = LineFramer::new(8);
        let mut out = Vec::new();
        for _ in 0..1000 {
            f.push(&[b'x'; 64], |fr| out.push(format!("{fr:?}")));
            assert!(f.buf.capacity() <= 64, "buffer grew to {}", f.buf.capacity());
        }
        f.push(b"\nnext\n", |fr| out.push(format!("{fr:?}")));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], "Overlong { bytes: 64000 }");
        assert!(out[1].contains("[110, 101, 120, 116]"));
    }

    #[test]
    fn line_split_over_chunks_is_joined() {
        let (out, left) = frames(10, &[b"he", b"llo", b"\n"]);
        assert_eq!(out, ["hello"]);
        assert_eq!(left, Leftover::Nothing);
    }

    #[test]
    fn buffered_part_plus_piece_over_limit_is_overlong() {
        let (out, _) = frames(4, &[b"abc", b"de\nf\n"]);
        assert_eq!(out, ["<overlong 5>", "f"]);
    }

    #[test]
    fn unterminated_overlong_is_reported_at_finish() {
        let (out, left) = frames(4, &[b"abcdefgh"]);
        assert!(out.is_empty());
        assert_eq!(left, Leftover::Overlong { bytes: 8 });
    }

    /// Any split of the same bytes into chunks frames identically (a model check
    /// against framing the whole input at once), over pseudo-random inputs.
    #[test]
    fn chunking_does_not_change_frames() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % 6 {
                    0 => b'\n',
                    1 => b'\r',
                    _ => (next() % 256) as u8,
                })
                .collect();
            let max = 1 + (next() % 20) as usize;
            let whole = frames(max, &[&data]);
            let mut chunks = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(frames(max, &chunks), whole, "max {max} data {data:?}");
        }
    }

    /// Issue 22: `push_text` frames as `push` does, and gives a line as text exactly when
    /// it lies in the chunk and is valid UTF-8, the same bytes.
    #[test]
    fn push_text_gives_the_lines_of_the_chunk_as_text() {
        let mut next = crate::testing::xorshift(0x51a7_e0c2_2a1b_44d3);
        let alphabet: &[&[u8]] = &[b"\n", b"\r", b"a", b"{}", "é".as_bytes(), b"\xff", b"\xc3"];
        let mut as_text = 0;
        for _ in 0..2000 {
            let data: Vec<u8> = (0..(next() % 40))
                .flat_map(|_| alphabet[(next() as usize) % alphabet.len()].iter().copied())
                .collect();
            let cut = (next() as usize) % (data.len() + 1);
            let max = 1 + (next() % 12) as usize;
            let (mut a, mut b) = (LineFramer::new(max), LineFramer::new(max));
            let (mut plain, mut texts) = (Vec::new(), Vec::new());
            for chunk in [&data[..cut], &data[cut..]] {
                a.push(chunk, |f| plain.push(format!("{f:?}")));
                b.push_text(chunk, |f, text| {
                    if let (Frame::Line(line), Some(text)) = (&f, text) {
                        assert_eq!(text.as_bytes(), *line);
                        let start = line.as_ptr() as usize - chunk.as_ptr() as usize;
                        assert!(start + line.len() <= chunk.len(), "a line of the chunk");
                    }
                    as_text += usize::from(text.is_some());
                    texts.push(format!("{f:?}"));
                });
            }
            assert_eq!(texts, plain, "data {data:?}");
        }
        assert!(as_text > 500, "only {as_text} lines as text");
        // In a valid chunk every line but the one joined across reads is text; after an
        // invalid byte none is.
        let mut f = LineFramer::new(100);
        let mut got = Vec::new();
        f.push_text(b"x", |_, _| {});
        let data = [
            b"y\n".as_slice(),
            "{\"a\":\"\u{e9}\"}\r\n\nz\n".as_bytes(),
            b"\xffw\nv\n",
        ]
        .concat();
        f.push_text(&data, |fr, t| got.push((format!("{fr:?}"), t.map(String::from))));
        let texts: Vec<_> = got.iter().map(|(_, t)| t.as_deref()).collect();
        assert_eq!(
            texts,
            [None, Some("{\"a\":\"\u{e9}\"}"), Some(""), Some("z"), None, None]
        );
    }
}
