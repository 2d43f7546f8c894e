//! Property tests (proptest) of the pure parts of the ingest path, each against a
//! simple model: framing, parsing, CSV encoding, the resend memory, and start-up
//! recovery at random cut points. Case counts are bounded so the suite stays fast.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use proptest::prelude::*;
use sensorlog::protocol::framing::{Frame, Leftover, LineFramer};
use sensorlog::protocol::reading::{parse_line, Line};
use sensorlog::sink::csv::dedup::{Dedup, Key, Verdict};
use sensorlog::sink::csv::encode::{original, original_value, split_row, Encoder, ReadingColumns};
use sensorlog::sink::csv::settings::{DedupConfig, Fsync};
use sensorlog::sink::csv::CsvSink;

use crate::util::TestDir;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What framing must produce: split on `\n`, drop one trailing `\r`, lines longer than
/// `max` become `Overlong` with their length.
fn model_frames(data: &[u8], max: usize) -> (Vec<Result<Vec<u8>, usize>>, Vec<u8>) {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let rest = parts.pop().unwrap_or_default().to_vec();
    for p in parts {
        let line = p.strip_suffix(b"\r").unwrap_or(p);
        if line.len() > max {
            out.push(Err(line.len()));
        } else {
            out.push(Ok(line.to_vec()));
        }
    }
    (out, rest)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn framing_matches_the_model_wherever_the_chunks_split(
        data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
        cuts in proptest::collection::vec(0usize..400, 0..8),
        max in 1usize..40,
    ) {
        let mut framer = LineFramer::new(max);
        let mut got = Vec::new();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        for w in points.windows(2) {
            framer.push(&data[w[0]..w[1]], |f| got.push(match f {
                Frame::Line(l) => Ok(l.to_vec()),
                Frame::Overlong { bytes } => Err(bytes),
            }));
        }
        let (want, rest) = model_frames(&data, max);
        prop_assert_eq!(got, want);
        let left = framer.finish();
        match left {
            Leftover::Nothing => prop_assert!(rest.is_empty()),
            Leftover::Partial { bytes } => prop_assert_eq!(bytes, rest.len()),
            Leftover::Overlong { .. } => prop_assert!(rest.len() > max),
        }
    }

    #[test]
    fn parsing_is_total_and_never_lets_a_control_character_through(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let line: Vec<u8> = line.into_iter().filter(|&b| b != b'\n').collect();
        let clean = |s: &str| !s.chars().any(|c| c.is_control() && c != '\t');
        match parse_line(&line) {
            Line::Blank => prop_assert!(line.iter().all(|b| b" \t\r".contains(b))),
            Line::Hello(h) => prop_assert!(clean(&h.device) && !h.device.is_empty()),
            Line::BadHello(reason) => prop_assert!(clean(&reason)),
            Line::Reading(r) => {
                prop_assert!(!r.fields.is_empty());
                for f in &r.fields {
                    prop_assert!(clean(&f.name) && clean(f.value.as_text()));
                }
            }
        }
    }

    #[test]
    fn every_encoded_row_reads_back_with_the_csv_crate_to_the_same_fields(
        device in "[a-z=+@'\"-][a-z ,\"'=\t]{0,12}",
        fields in proptest::collection::vec(("[a-z=@,\"-]{0,8}", "[ -~\t\u{e9}\u{fffd}]{0,16}", prop_oneof![Just("number"), Just("text"), Just("bool")]), 1..5),
        seq in proptest::option::of(any::<u64>()),
        boot in "[a-z0-9.:_-]{0,8}",
        device_time in "[ -~]{0,10}",
    ) {
        let cols = ReadingColumns {
            received_at: "2026-12-01T00:00:00.000Z",
            device: &device,
            peer: "127.0.0.1:9",
            boot: &boot,
            seq,
            device_time: &device_time,
        };
        let mut out = Vec::new();
        cols.encode_rows(fields.iter().map(|(f, v, k)| (f.as_str(), v.as_str(), *k)), &mut Encoder::default(), &mut out);
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(&out[..]);
        let back: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        prop_assert_eq!(back.len(), fields.len());
        // row::split_row, the encoder's own inverse, agrees with the csv crate cell for cell.
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        prop_assert_eq!(lines.len(), back.len(), "no cell holds a newline: a record is a line");
        for (line, rec) in lines.iter().zip(&back) {
            let cells = split_row(line);
            prop_assert_eq!(cells.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), rec.iter().collect::<Vec<_>>());
        }
        for (rec, (f, v, k)) in back.iter().zip(&fields) {
            prop_assert_eq!(rec.len(), 9);
            prop_assert_eq!(original(&rec[1]), device.as_str());
            prop_assert_eq!(original(&rec[2]), f.as_str());
            prop_assert_eq!(original_value(&rec[3], k), v.as_str());
            prop_assert_eq!(&rec[4], *k);
            prop_assert_eq!(original(&rec[6]), boot.as_str());
            prop_assert_eq!(rec[7].to_string(), seq.map(|s| s.to_string()).unwrap_or_default());
            prop_assert_eq!(original(&rec[8]), device_time.as_str());
            // Formula neutralisation: no board text starts a cell with a formula character.
            for i in [1, 2, 6, 8] {
                prop_assert!(!rec[i].starts_with(['=', '+', '-', '@']));
            }
        }
    }

    /// Against a model that remembers everything: the memory never calls a reading a
    /// resend unless exactly that key and content was written (no reading is ever
    /// dropped), and recognises every resend still inside its window.
    #[test]
    fn the_resend_memory_never_swallows_a_new_reading(
        ops in proptest::collection::vec((0u8..6, 0u8..3, 0u64..40, 0u64..3), 1..400),
    ) {
        let limits = DedupConfig { max_boards: 4, window_seqs: 8, ..DedupConfig::default() };
        let mut dedup = Dedup::new(limits);
        let mut model: HashMap<(String, String, u64), u64> = HashMap::new();
        let mut recent: Vec<(String, String, u64)> = Vec::new();
        for (dev, boot, seq, content) in ops {
            let key = Key { device: format!("d{dev}"), boot: format!("b{boot}"), seq, content };
            let id = (key.device.clone(), key.boot.clone(), seq);
            match dedup.check(&key) {
                Verdict::Resend => prop_assert_eq!(model.get(&id), Some(&content), "a resend that was never written"),
                Verdict::Conflict => prop_assert!(model.get(&id).is_some_and(|c| *c != content)),
                Verdict::New => {
                    // Only allowed to forget what fell out of the bounds.
                    let just_written = recent.iter().rev().take(1).any(|r| *r == id);
                    prop_assert!(!(just_written && model.get(&id) == Some(&content)), "forgot the last write");
                }
            }
            dedup.record(&key);
            model.insert(id.clone(), content);
            recent.push(id);
            prop_assert!(dedup.len() <= 4);
        }
    }
}

/// Complete rows of a file, as the csv crate reads them (header included).
fn complete_rows(text: &[u8]) -> Vec<Vec<String>> {
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&text[..end])
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Cut a valid file anywhere (a crash mid-write): recovery keeps every complete
    /// row, removes only the torn bytes, and appending afterwards gives whole rows.
    #[test]
    fn recovery_at_any_cut_point_never_removes_a_complete_row(cut_permille in 0u64..=1000, rows in 1usize..30) {
        let dir = TestDir::new("prop-recover");
        let path = dir.join("r.csv");
        let mut text = b"received_at,device,field,value,type,peer,boot,seq,device_time\n".to_vec();
        let mut seen = HashSet::new();
        for i in 0..rows {
            let t = format!("2026-12-01T00:00:00.{:03}Z", i / 3);
            writeln!(text, "{t},d{},f,\"v,{i}\",text,,b,{},", i % 4, i / 2).unwrap();
            seen.insert(i);
        }
        let cut = (text.len() as u64 * cut_permille / 1000) as usize;
        let cut = cut.max(1);
        std::fs::write(&path, &text[..cut]).unwrap();
        let before = complete_rows(&text[..cut]);
        let (sink, report) = CsvSink::open(&path, Fsync::Never, DedupConfig::default()).unwrap();
        drop(sink);
        let after_text = std::fs::read(&path).unwrap();
        let after = complete_rows(&after_text);
        prop_assert!(after_text.ends_with(b"\n"));
        if before.is_empty() {
            // Only a prefix of the header: started afresh with the header.
            prop_assert_eq!(after.len(), 1);
        } else {
            prop_assert_eq!(&after, &before, "complete rows kept, nothing else");
            prop_assert_eq!(report.rows as usize, before.len() - 1);
        }
    }
}
