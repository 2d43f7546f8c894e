//! LineFramer: the same bytes, split into chunks anywhere, frame exactly as in one
//! piece and as a simple model says (split on `\n`, drop one `\r`, lines over the limit
//! reported as overlong with their length); no line longer than the limit gets out.
//!
//! Input: byte 0 sets the limit (1..=128), byte 1 the number of chunks, then one byte
//! per chunk giving its length; the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sensorlog::protocol::framing::{Frame, Leftover, LineFramer};

#[derive(Debug, PartialEq)]
enum Out {
    Line(Vec<u8>),
    Overlong(usize),
}

fn push(framer: &mut LineFramer, data: &[u8], max: usize, out: &mut Vec<Out>) {
    framer.push(data, |f| {
        out.push(match f {
            Frame::Line(l) => {
                assert!(l.len() <= max, "a line of {} bytes passed the limit {max}", l.len());
                assert!(!l.contains(&b'\n'));
                Out::Line(l.to_vec())
            }
            Frame::Overlong { bytes } => {
                assert!(bytes > max, "overlong of {bytes} bytes is within the limit {max}");
                Out::Overlong(bytes)
            }
        })
    });
}

/// The model: `(frames, bytes after the last newline)`.
fn model(data: &[u8], max: usize) -> (Vec<Out>, &[u8]) {
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let rest = parts.pop().unwrap_or_default();
    let frames = parts
        .into_iter()
        .map(|p| {
            let line = p.strip_suffix(b"\r").unwrap_or(p);
            if line.len() > max {
                Out::Overlong(line.len())
            } else {
                Out::Line(line.to_vec())
            }
        })
        .collect();
    (frames, rest)
}

fuzz_target!(|input: &[u8]| {
    let [head, n, rest @ ..] = input else { return };
    let max = 1 + usize::from(head % 128);
    let (sizes, data) = rest.split_at(usize::from(n % 16).min(rest.len()));

    // In one piece.
    let mut whole = LineFramer::new(max);
    let mut want = Vec::new();
    push(&mut whole, data, max, &mut want);
    let whole_partial = whole.has_partial();
    let whole_left = whole.finish();

    // In chunks of the given sizes (empty chunks too), the last one taking the rest.
    let mut chunked = LineFramer::new(max);
    let mut got = Vec::new();
    let mut at = 0;
    for &size in sizes {
        let end = (at + usize::from(size)).min(data.len());
        push(&mut chunked, &data[at..end], max, &mut got);
        at = end;
    }
    push(&mut chunked, &data[at..], max, &mut got);
    assert_eq!(got, want, "chunking changed the frames");
    assert_eq!(chunked.has_partial(), whole_partial);
    let chunked_left = chunked.finish();
    assert_eq!(chunked_left, whole_left, "chunking changed the leftover");

    // Against the model.
    let (model_frames, rest) = model(data, max);
    assert_eq!(want, model_frames, "frames differ from the model");
    assert_eq!(whole_partial, !rest.is_empty());
    match whole_left {
        Leftover::Nothing => assert!(rest.is_empty()),
        // Up to `max + 1` bytes wait (room for a `\r` before the `\n`); more are discarded.
        Leftover::Partial { bytes } => assert!(bytes == rest.len() && bytes <= max + 1),
        Leftover::Overlong { bytes } => assert!(bytes == rest.len() && bytes > max + 1),
    }

    // `finish` leaves the framer as new.
    let mut again = Vec::new();
    push(&mut chunked, data, max, &mut again);
    assert_eq!(again, want, "a framer reused after finish frames differently");
    assert_eq!(chunked.finish(), whole_left);
});
