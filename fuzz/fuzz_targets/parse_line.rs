//! parse_line on arbitrary bytes: never panics; nothing it returns holds a control
//! character other than tab; greetings and reserved keys obey their grammar; and the
//! reading encoded as CSV rows reads back, with the csv crate and with
//! `row::split_row`, to exactly what was parsed (formula escapes undone by
//! `row::original`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sensorlog::protocol::reading::{
    parse_line, parse_line_reusing, recycle_fields, valid_boot, Line, Reading, Value, MAX_DEVICE_CHARS,
};
use sensorlog::sink::csv::encode::{original, original_value, split_row, Encoder, ReadingColumns, COLUMNS};

fn clean(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\t')
}

fn check_reading(line: &[u8], r: &Reading) {
    assert!(!r.fields.is_empty(), "a reading without fields leaves no row");
    if std::str::from_utf8(line).is_err() {
        assert_eq!(r.fields.len(), 1, "a non-UTF-8 line is kept whole as one message");
        assert_eq!(r.fields[0].name, "message");
    }
    for f in &r.fields {
        assert!(clean(&f.name), "field name {:?}", f.name);
        assert!(clean(f.value.as_text()), "value {:?}", f.value);
        if let Value::Number(n) = &f.value {
            assert!(n.parse::<f64>().is_ok(), "number {n:?} is not a number");
        }
    }
    if let Some(d) = &r.device {
        assert!(
            !d.is_empty() && clean(d) && d.chars().count() <= MAX_DEVICE_CHARS,
            "device {d:?}"
        );
        assert_eq!(d.trim(), d, "device {d:?} not trimmed");
    }
    if let Some(b) = &r.boot {
        assert!(valid_boot(b), "boot {b:?}");
    }
    if let Some(t) = &r.device_time {
        assert!(clean(t), "ts {t:?}");
    }
    check_rows(r);
}

/// Encodes the reading as the connection does and reads the rows back.
fn check_rows(r: &Reading) {
    let cols = ReadingColumns {
        received_at: "2026-12-01T00:00:00.000Z",
        device: r.device.as_deref().unwrap_or("127.0.0.1"),
        peer: "127.0.0.1:40000",
        boot: r.boot.as_deref().unwrap_or(""),
        seq: r.seq,
        device_time: r.device_time.as_deref().unwrap_or(""),
    };
    let mut out = Vec::new();
    let fields = r.fields.iter().map(|f| (&*f.name, f.value.as_text(), f.value.kind()));
    cols.encode_rows(fields, &mut Encoder::default(), &mut out);
    let text = std::str::from_utf8(&out).expect("rows are UTF-8");
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(
        lines.len(),
        r.fields.len(),
        "one line per field: no cell holds a newline"
    );
    let records: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&out[..])
        .records()
        .map(|rec| rec.expect("the csv crate reads every row"))
        .collect();
    assert_eq!(records.len(), r.fields.len());
    for ((line, rec), f) in lines.iter().zip(&records).zip(&r.fields) {
        let cells = split_row(line);
        assert_eq!(
            cells.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
            rec.iter().collect::<Vec<_>>(),
            "split_row and the csv crate disagree on {line:?}"
        );
        assert_eq!(rec.len(), COLUMNS);
        assert_eq!(&rec[0], cols.received_at);
        assert_eq!(original(&rec[1]), cols.device);
        assert_eq!(original(&rec[2]), f.name);
        assert_eq!(original_value(&rec[3], &rec[4]), f.value.as_text());
        assert_eq!(&rec[4], f.value.kind());
        assert_eq!(&rec[5], cols.peer);
        assert_eq!(original(&rec[6]), cols.boot);
        assert_eq!(rec[7].to_string(), r.seq.map(|s| s.to_string()).unwrap_or_default());
        assert_eq!(original(&rec[8]), cols.device_time);
        let text_cells: &[usize] = if f.value.kind() == "text" {
            &[1, 2, 3, 6, 8]
        } else {
            &[1, 2, 6, 8]
        };
        for &i in text_cells {
            assert!(
                !rec[i].starts_with(['=', '+', '-', '@', '\t', '\r']),
                "live formula in cell {i}: {:?}",
                &rec[i]
            );
        }
    }
}

fuzz_target!(|line: &[u8]| {
    let parsed = parse_line(line);
    match &parsed {
        Line::Blank => assert!(line.iter().all(|b| b" \t\r".contains(b))),
        Line::Hello(h) => {
            let d = &h.device;
            assert!(
                !d.is_empty() && clean(d) && d.chars().count() <= MAX_DEVICE_CHARS,
                "device {d:?}"
            );
            assert!(!d.contains([' ', '\t', ',', '=']), "device {d:?}");
            if let Some(b) = &h.boot {
                assert!(valid_boot(b), "boot {b:?}");
            }
            if let Some(t) = &h.token {
                assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
        Line::BadHello(reason) => {
            assert!(clean(reason), "reason {reason:?}");
            assert!(line.windows(6).any(|w| w == b"HELLO " || w == b"HELLO\t"));
        }
        Line::Reading(r) => check_reading(line, r),
    }
    // Parsing into a recycled field vector gives the same result.
    let Line::Reading(warm) = parse_line(b"a=1 b=x c=true") else {
        unreachable!()
    };
    let mut spare = recycle_fields(warm.fields);
    assert_eq!(parse_line_reusing(line, &mut spare), parsed);
});
