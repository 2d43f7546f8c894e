//! One batch into the table with binary `COPY ... FROM STDIN`: the fastest way into
//! PostgreSQL (no SQL text per row, no per-row round trip, no text parsing of numbers
//! and times on the server).
//!
//! The CSV text becomes typed columns here: `received_at` to `timestamptz` (a row
//! whose time does not parse gets `-infinity` rather than being dropped), `value` to a
//! double for `number` rows, `seq` to `bigint`, empty optional columns to NULL. Board
//! text that the CSV neutralised against spreadsheet formulas (a leading `'`, see
//! [`crate::row::neutralise`]) goes in as the board sent it ([`crate::row::original`]).

use std::error::Error;

use bytes::BytesMut;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::Transaction;

use super::schema::{Names, COPY_COLUMNS};
use super::source::{pg_micros, SourceRow};
use crate::row::{original, original_value};

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

/// COPYs `rows` (from the CSV of `source`) into the table within `tx`. Returns the
/// number of rows whose `received_at` did not parse (stored as `-infinity`).
pub fn copy_rows(
    tx: &mut Transaction<'_>,
    names: &Names,
    source: &str,
    rows: &[SourceRow],
) -> Result<u64, postgres::Error> {
    let sink = tx.copy_in(&format!(
        "COPY {} ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)",
        names.table
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &TYPES);
    let mut bad_times = 0;
    for r in rows {
        let [received_at, device, field, value, kind, peer, boot, seq, device_time] = &r.fields;
        let time = pg_micros(received_at).unwrap_or_else(|| {
            bad_times += 1;
            i64::MIN
        });
        let value = original_value(value, kind);
        let seq: Option<i64> = seq.parse().ok();
        w.write(&[
            &PgTime(time),
            &original(device),
            &original(field),
            &numeric_value(value, kind),
            &value,
            &kind.as_str(),
            &non_empty(peer),
            &non_empty(original(boot)),
            &seq,
            &non_empty(original(device_time)),
            &source,
            &(r.start as i64),
        ])?;
    }
    w.finish()?;
    Ok(bad_times)
}

/// The baseline the benchmark compares COPY with: multi-row `INSERT ... VALUES`
/// statements of up to 1,000 rows (65,535 parameters at most per statement).
pub fn insert_rows(
    tx: &mut Transaction<'_>,
    names: &Names,
    source: &str,
    rows: &[SourceRow],
) -> Result<(), postgres::Error> {
    for chunk in rows.chunks(1000) {
        let mut sql = format!("INSERT INTO {} ({COPY_COLUMNS}) VALUES ", names.table);
        let mut owned: Vec<(PgTime, Option<f64>, Option<i64>, i64)> = Vec::with_capacity(chunk.len());
        for r in chunk {
            let f = &r.fields;
            owned.push((
                PgTime(pg_micros(&f[0]).unwrap_or(i64::MIN)),
                numeric_value(original_value(&f[3], &f[4]), &f[4]),
                f[7].parse().ok(),
                r.start as i64,
            ));
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 12);
        let texts: Vec<[Option<&str>; 8]> = chunk
            .iter()
            .map(|r| {
                let f = &r.fields;
                [
                    Some(original(&f[1])),
                    Some(original(&f[2])),
                    Some(original_value(&f[3], &f[4])),
                    Some(f[4].as_str()),
                    non_empty(&f[5]),
                    non_empty(original(&f[6])),
                    non_empty(original(&f[8])),
                    Some(source),
                ]
            })
            .collect();
        for (i, (o, t)) in owned.iter().zip(texts.iter()).enumerate() {
            let b = i * 12;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11,
                b + 12
            ));
            params.extend_from_slice(&[
                &o.0, &t[0], &t[1], &o.1, &t[2], &t[3], &t[4], &t[5], &o.2, &t[6], &t[7], &o.3,
            ]);
        }
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_only_for_number_rows() {
        assert_eq!(numeric_value("21.5", "number"), Some(21.5));
        assert_eq!(numeric_value("42", "text"), None);
        assert_eq!(numeric_value("true", "bool"), None);
        assert_eq!(numeric_value("oops", "number"), None);
    }
}
