//! A1 notation as the uploader writes it: `'Tab'!A1:I20` (or `Tab!A1:I20`), both corners
//! whole cells, the first above and left of the second. The fake refuses what else Google
//! takes: a single cell, whole columns `A:A` or rows `2:5`, a tab alone, no tab, `$`,
//! corners in any order.
use std::sync::LazyLock;

use regex::Regex;

use super::*;

/// A cell's zero-based `(row, col)`.
pub(crate) type At = (u32, u32);

/// `'It''s'!A1:B2` → `("It's", (0, 0), (1, 1))`: the tab name and both corners; `None`
/// for any other form.
pub(crate) fn parse_a1(text: &str) -> Option<(String, At, At)> {
    static A1: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:'((?:[^']|'')+)'|([^'!]+))!([A-Z0-9]+):([A-Z0-9]+)$").expect("a valid regex")
    });
    let c = A1.captures(text)?;
    let name = c
        .get(1)
        .map_or_else(|| c[2].to_string(), |q| q.as_str().replace("''", "'"));
    let (start, end) = (single_cell(&c[3])?, single_cell(&c[4])?);
    (start.0 <= end.0 && start.1 <= end.1).then_some((name, start, end))
}

/// The zero-based `(row, col)` of a cell like `B2`, up to column ZZZ.
pub(crate) fn single_cell(a1: &str) -> Option<At> {
    static CELL: LazyLock<Regex> = LazyLock::new(|| Regex::new("^([A-Z]{1,3})([0-9]{1,9})$").expect("a valid regex"));
    let c = CELL.captures(a1.trim())?;
    let col = c[1].bytes().fold(0, |n, b| n * 26 + u32::from(b - b'A' + 1)) - 1;
    Some((c[2].parse::<u32>().ok()?.checked_sub(1)?, col))
}

/// The range `text` names in `ss`: the tab's index and the inclusive corners; a bound
/// outside the grid is refused.
pub(super) fn resolve_range(ss: &Spreadsheet, text: &str) -> Result<(usize, At, At), Response> {
    let Some((name, (r0, c0), (r1, c1))) = parse_a1(text.trim()) else {
        return invalid!("Unable to parse range: {text} (the fake Google implements only ranges like 'Tab'!A1:B2)");
    };
    let Some(sheet) = ss.sheets.iter().position(|s| s.props.title == name) else {
        return invalid!("Unable to parse range: {text}");
    };
    let props = &ss.sheets[sheet].props;
    if r1 >= props.rows || c1 >= props.cols {
        let (rows, cols) = (props.rows, props.cols);
        return invalid!("Range ({text}) exceeds grid limits. Max rows: {rows}, max columns: {cols}");
    }
    Ok((sheet, (r0, c0), (r1, c1)))
}

/// Zero-based column → letters (0 → A, 26 → AA).
pub(crate) fn column_letters(col: u32) -> String {
    let head = if col >= 26 {
        column_letters(col / 26 - 1)
    } else {
        String::new()
    };
    format!("{head}{}", char::from(b'A' + (col % 26) as u8))
}
