//! What a CSV row becomes in the sheet: typed cells that keep every digit, text cut to
//! Google's cell limit with a visible marker, and the placeholder for a row Google refused.
//!
//! # Numbers keep every digit
//!
//! Sheets stores numbers as IEEE doubles. A reading of type `number` goes to the sheet as
//! a number only if the double it parses to denotes exactly the decimal in the CSV; the
//! comparison is between decimal values, not texts, so `21.50`, `2.15e1` and `21.5` all
//! go as the number 21.5 (no digit lost: trailing zeros carry none). `9007199254740993`,
//! `12345678901234567890` and `0.1000000000000000055511151231257827` do not survive a
//! double, so they go as their exact text (still RAW: never a formula). The same rule
//! covers `seq`.
//!
//! # Cell limit
//!
//! Google refuses a cell over 50,000 characters (HTTP 400 "Your input contains more than
//! the maximum of 50000 characters in a single cell."). Google's own pages do not say
//! what a character is; the limits page and the API reference are silent, and the error
//! text is only quoted by users. Sheets runs on JavaScript/Java strings, whose length is
//! in UTF-16 code units, so we count UTF-16 units: that is never less than the count of
//! Unicode scalar values, so a cell that fits under this count fits under either reading.
//! A longer cell is cut (on a character boundary) and ends with [`CUT_MARKER`]; the CSV
//! keeps the whole value.

use serde_json::Value;

use crate::sink::csv::encode::Row;

/// Google's limit for one cell, counted in UTF-16 code units (see the module docs).
pub const MAX_CELL_UNITS: usize = 50_000;
/// Ends a cell that was cut to fit; the whole value is in the CSV.
pub const CUT_MARKER: &str = " [cut to fit Google's 50,000-character cell limit; the whole value is in the CSV]";
/// Column of the reading's value and of its type (0-based, see `row::HEADER`).
const VALUE: usize = 3;
const KIND: usize = 4;
const SEQ: usize = 7;

/// A CSV row as sheet cells: numbers and bools typed by the `type` column when no
/// digit is lost, never a formula (the request is RAW), never null (Sheets would skip
/// the cell), no cell over the limit.
pub fn sheet_values(row: &Row) -> Vec<Value> {
    let kind = row.0.get(KIND).map(String::as_str).unwrap_or("");
    row.0
        .iter()
        .enumerate()
        .map(|(col, text)| match (col, kind) {
            (VALUE, "number") | (SEQ, _) => exact_number(text).map_or_else(|| text_cell(text), Value::from),
            (VALUE, "bool") => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => text_cell(text),
            },
            // Board text goes as the board sent it: the CSV's formula escape (a leading
            // `'`, see [`crate::sink::csv::encode::neutralise`]) is for spreadsheet apps opening the CSV;
            // RAW input already keeps the sheet from evaluating anything.
            (1 | 2 | VALUE | 6 | 8, _) => text_cell(crate::sink::csv::encode::original(text)),
            _ => text_cell(text),
        })
        .collect()
}

/// The cells written in place of CSV row `csv_row` (0-based) when Google refuses it:
/// the row's time, device and field (cut short), and a message naming the row and why.
pub fn placeholder(row: &Row, csv_row: u64, csv_name: &str, reason: &str) -> Vec<Value> {
    let short = |i: usize| {
        Value::from(cut_to(
            crate::sink::csv::encode::original(row.0.get(i).map(String::as_str).unwrap_or("")),
            200,
        ))
    };
    let message = format!(
        "sensorlog: CSV row {} (line {} of {csv_name}) could not be written to Google Sheets: {}",
        csv_row + 1,
        csv_row + 2,
        cut_to(reason, 1000)
    );
    vec![
        short(0),
        short(1),
        short(2),
        Value::from(message),
        Value::from("placeholder"),
        Value::from(""),
        Value::from(""),
        Value::from(""),
        Value::from(""),
    ]
}

/// Text as a cell, cut to [`MAX_CELL_UNITS`] with [`CUT_MARKER`] when longer.
pub fn text_cell(text: &str) -> Value {
    Value::from(fit_cell(text))
}

/// `text` unchanged when it fits a cell, else its longest prefix that fits with the marker.
pub fn fit_cell(text: &str) -> std::borrow::Cow<'_, str> {
    // Fast path: UTF-8 bytes >= UTF-16 units, so a short string fits without counting.
    if text.len() <= MAX_CELL_UNITS || utf16_len(text) <= MAX_CELL_UNITS {
        return std::borrow::Cow::Borrowed(text);
    }
    let room = MAX_CELL_UNITS - utf16_len(CUT_MARKER);
    let mut units = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if units + c.len_utf16() > room {
            break;
        }
        units += c.len_utf16();
        end = i + c.len_utf8();
    }
    std::borrow::Cow::Owned(format!("{}{CUT_MARKER}", &text[..end]))
}

/// Length in UTF-16 code units (what Google's cell limit counts).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// At most `max` characters of `s` (for the short texts of a placeholder).
fn cut_to(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The double for `text` if it denotes exactly the decimal `text` writes, else `None`.
pub fn exact_number(text: &str) -> Option<f64> {
    let f: f64 = text.parse().ok().filter(|f: &f64| f.is_finite())?;
    let want = decimal(text)?;
    // `{}` prints the shortest decimal that reads back as the same double.
    (decimal(&format!("{f}"))? == want).then_some(f)
}

/// A decimal number as (negative, significant digits, exponent): value = ±0.digits × 10^exp,
/// no leading or trailing zeros in `digits`; zero is (false, "", 0). `None` if not a
/// plain decimal (no `inf`, `nan`, hex, spaces).
fn decimal(s: &str) -> Option<(bool, String, i64)> {
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = format!("{int}{frac}");
    let mut point = int.len() as i64;
    let lead = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..lead);
    point -= lead as i64;
    digits.truncate(digits.trim_end_matches('0').len());
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((neg, digits, point.checked_add(exp)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: &str, kind: &str) -> Row {
        Row(
            ["2026-01-01T00:00:00.000Z", "d", "t", value, kind, "p", "b", "7", "=1+1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    #[test]
    fn typed_cells() {
        let v = sheet_values(&row("21.50", "number"));
        assert_eq!(v[3], Value::from(21.5));
        assert_eq!(v[7], Value::from(7.0));
        assert_eq!(v[8], Value::from("=1+1"), "text stays text (sent RAW)");
        assert_eq!(
            sheet_values(&row("42", "text"))[3],
            Value::from("42"),
            "a text that looks like a number stays text"
        );
        assert_eq!(sheet_values(&row("true", "bool"))[3], Value::Bool(true));
        // The CSV's formula escape is undone: the sheet gets what the board sent (RAW).
        let mut escaped = row("'=2+2", "text");
        escaped.0[1] = "'@dev".into();
        let v = sheet_values(&escaped);
        assert_eq!((v[1].as_str(), v[3].as_str()), (Some("@dev"), Some("=2+2")));
    }

    #[test]
    fn numbers_go_as_numbers_only_without_losing_a_digit() {
        for ok in [
            "21.50",
            "21.5",
            "2.15e1",
            "-0.25",
            "0",
            "-0",
            "1e3",
            "1E-7",
            "123456789012345",
            "9007199254740992",
        ] {
            assert!(exact_number(ok).is_some(), "{ok}");
        }
        for lossy in [
            "12345678901234567890",
            "9007199254740993",
            "0.1000000000000000055511151231257827",
            "1e400",
            "nan",
            "inf",
            "0x10",
            " 1",
            ".",
            "",
        ] {
            assert!(exact_number(lossy).is_none(), "{lossy}");
        }
        assert_eq!(exact_number("1."), Some(1.0), "1. is the decimal 1");
        let v = sheet_values(&row("9007199254740993", "number"));
        assert_eq!(v[3], Value::from("9007199254740993"));
    }

    #[test]
    fn cells_are_cut_at_the_limit_not_before() {
        let at = "x".repeat(MAX_CELL_UNITS);
        assert_eq!(fit_cell(&at), at.as_str(), "exactly the limit fits");
        let over = "x".repeat(MAX_CELL_UNITS + 1);
        let cut = fit_cell(&over);
        assert_eq!(utf16_len(&cut), MAX_CELL_UNITS);
        assert!(cut.ends_with(CUT_MARKER));
        // Counted in UTF-16 units: 25,000 emoji are 50,000 units and fit; one more does not.
        let emoji = "😀".repeat(MAX_CELL_UNITS / 2);
        assert_eq!(fit_cell(&emoji), emoji.as_str());
        let more = format!("{emoji}a");
        let cut = fit_cell(&more);
        assert!(utf16_len(&cut) <= MAX_CELL_UNITS && cut.ends_with(CUT_MARKER));
        assert!(cut.starts_with("😀😀"), "cut on a character boundary");
    }

    #[test]
    fn placeholder_names_the_row_and_the_reason() {
        let p = placeholder(&row("x", "text"), 41, "readings.csv", "HTTP 400 INVALID_ARGUMENT: bad");
        assert_eq!(p.len(), crate::sink::csv::encode::COLUMNS);
        let msg = p[3].as_str().unwrap();
        assert!(
            msg.contains("CSV row 42 (line 43 of readings.csv)") && msg.contains("bad"),
            "{msg}"
        );
    }
}
