//! One batch into the table with binary `COPY ... FROM STDIN`: the fastest way into
//! PostgreSQL (no SQL text per row, no per-row round trip, no text parsing of numbers
//! and times on the server).
//!
//! The CSV text becomes typed columns here: `received_at` to `timestamptz` (a row
//! whose time does not parse gets `-infinity` rather than being dropped), `value` to a
//! double for `number` rows, `seq` to `bigint`, empty optional columns to NULL. Board
//! text that the CSV neutralised against spreadsheet formulas (a leading `'`, see
//! [`crate::sink::csv::encode::neutralise`]) goes in as the board sent it ([`crate::sink::csv::encode::original`]).

use std::error::Error;
use std::io::Write;

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::Transaction;

use super::failure::Stall;
use super::schema::{Names, COPY_COLUMNS};
use crate::sink::csv::encode::{original, original_value};
use crate::sink::follower::rows::SourceRow;

/// A `timestamptz` as PostgreSQL stores it: microseconds since 2000-01-01 UTC, with
/// `i64::MIN` meaning `-infinity`.
#[derive(Debug, Clone, Copy)]
pub struct PgTime(pub i64);

impl ToSql for PgTime {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.0.to_sql(&Type::INT8, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

const TYPES: [Type; 12] = [
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

/// The `value` column: a double for `number` rows, NULL otherwise.
pub fn numeric_value(value: &str, kind: &str) -> Option<f64> {
    if kind == "number" {
        value.parse::<f64>().ok().filter(|f| !f.is_nan())
    } else {
        None
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The buffers of [`copy_rows`], kept between batches so that encoding a batch
/// allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct CopyBuffers {
    data: Vec<u8>,
    order: Vec<(u32, i64)>,
}

/// Bytes handed to the connection at a time (one CopyData message each).
const CHUNK: usize = 256 * 1024;

/// The binary COPY header: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            out.extend_from_slice(&(t.len() as i32).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn put_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// Appends one row in PostgreSQL's binary COPY format, columns in
/// [`COPY_COLUMNS`] order; `time` is `None` when `received_at` is not a time.
fn encode_row(out: &mut Vec<u8>, r: &SourceRow, time: Option<i64>, source: &str) {
    let f = &r.fields;
    let (device, field, kind, peer, boot, seq, device_time) = (&f[1], &f[2], &f[4], &f[5], &f[6], &f[7], &f[8]);
    let value = original_value(&f[3], kind);
    out.extend_from_slice(&(TYPES.len() as i16).to_be_bytes());
    put_i64(out, Some(time.unwrap_or(i64::MIN)));
    put_text(out, Some(original(device)));
    put_text(out, Some(original(field)));
    match numeric_value(value, kind) {
        Some(f) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    put_text(out, Some(value));
    put_text(out, Some(kind));
    put_text(out, non_empty(peer));
    put_text(out, non_empty(original(boot)));
    put_i64(out, seq.parse().ok());
    put_text(out, non_empty(original(device_time)));
    put_text(out, Some(source));
    put_i64(out, Some(r.start as i64));
}

/// COPYs `rows` (from the CSV of `source`) into the table within `tx`. Returns the
/// number of rows whose `received_at` did not parse (stored as `-infinity`).
///
/// The rows go in the index's order, `(device, field, received_at)`, not in CSV
/// order (`csv_offset` keeps that): consecutive index insertions then land on the
/// same few leaf pages, which costs the server 10-15% less CPU than CSV order,
/// measured with `\copy` of 1,000,000 rows (docs/scale-out.md). The rows are encoded
/// here straight into PostgreSQL's binary COPY format in a reused buffer: no per-value
/// `ToSql` calls and no allocation per row.
///
/// `between` runs once all rows are handed to the connection and before the end of
/// the COPY is confirmed, i.e. while the server still works through them: the sink
/// reads the next batch from the CSV there, so the two processes work in parallel.
pub fn copy_rows(
    tx: &mut Transaction<'_>,
    names: &Names,
    source: &str,
    rows: &[SourceRow],
    bufs: &mut CopyBuffers,
    between: impl FnOnce(),
) -> Result<u64, Stall> {
    let CopyBuffers { data, order } = bufs;
    order.clear();
    let mut bad_times = 0;
    for (i, r) in rows.iter().enumerate() {
        let time = pg_micros(&r.fields[0]).unwrap_or_else(|| {
            bad_times += 1;
            i64::MIN
        });
        order.push((i as u32, time));
    }
    order.sort_unstable_by(|a, b| {
        let (x, y) = (&rows[a.0 as usize].fields, &rows[b.0 as usize].fields);
        (original(&x[1]), original(&x[2]), a.1).cmp(&(original(&y[1]), original(&y[2]), b.1))
    });
    let mut w = tx.copy_in(&format!(
        "COPY {} ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)",
        names.table
    ))?;
    data.clear();
    data.extend_from_slice(HEADER);
    for &(i, time) in order.iter() {
        encode_row(data, &rows[i as usize], (time != i64::MIN).then_some(time), source);
        if data.len() >= CHUNK {
            w.write_all(data).map_err(copy_error)?;
            data.clear();
        }
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    w.write_all(data).map_err(copy_error)?;
    w.flush().map_err(copy_error)?;
    data.clear();
    between();
    w.finish()?;
    Ok(bad_times)
}

/// The writer's I/O errors wrap the connection's own error: unwrap it so that the
/// sink classifies it like any other database error.
fn copy_error(e: std::io::Error) -> Stall {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<postgres::Error>() {
            Ok(pg) => Stall::Db(*pg),
            Err(other) => Stall::Copy(std::io::Error::other(other)),
        },
        None => Stall::Copy(std::io::Error::other("the connection failed during COPY")),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what [`crate::sink::csv::encode::rfc3339_millis`] writes) as
/// microseconds since 2000-01-01 UTC, PostgreSQL's `timestamptz` epoch. `None` if the
/// text is not in that form or not a real time (parsed by `jiff`).
pub fn pg_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shaped = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b.last() == Some(&b'Z')
        && (b.len() == 20 || b[19] == b'.');
    if !shaped {
        return None;
    }
    let t: jiff::Timestamp = text.parse().ok()?;
    Some(t.as_microsecond() - PG_EPOCH_MICROS)
}

/// 2000-01-01T00:00:00Z in microseconds since 1970.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn numbers_only_for_number_rows() {
        assert_eq!(numeric_value("21.5", "number"), Some(21.5));
        assert_eq!(numeric_value("42", "text"), None);
        assert_eq!(numeric_value("true", "bool"), None);
        assert_eq!(numeric_value("oops", "number"), None);
    }

    #[test]
    fn timestamps_match_the_row_encoder() {
        for (secs, ms) in [
            (0u64, 0u64),
            (946_684_800, 0),
            (1_767_225_600, 123),
            (4_102_444_799, 999),
        ] {
            let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms);
            let text = crate::sink::csv::encode::rfc3339_millis(t);
            let want = (secs as i64 - 946_684_800) * 1_000_000 + ms as i64 * 1000;
            assert_eq!(pg_micros(&text), Some(want), "{text}");
        }
        assert_eq!(pg_micros("2000-01-01T00:00:00Z"), Some(0));
        assert_eq!(pg_micros("2000-01-01T00:00:00.5Z"), Some(500_000));
        for bad in [
            "",
            "2000-01-01 00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00.000",
        ] {
            assert_eq!(pg_micros(bad), None, "{bad}");
        }
    }
}
