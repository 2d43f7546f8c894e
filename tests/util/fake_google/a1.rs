//! A1 notation: parsing and resolving ranges as Sheets does.
use std::sync::LazyLock;

use regex::Regex;

use super::*;

/// One side of an A1 span; either part may be absent (`A` is a column, `5` a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CellRef {
    /// Zero-based.
    pub(crate) col: Option<u32>,
    /// Zero-based.
    pub(crate) row: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: CellRef,
    /// `None` for a single cell.
    pub(crate) end: Option<CellRef>,
}

/// Parses A1 notation without looking at a spreadsheet: `(sheet name, cells)`.
/// `'It''s'!A1:B2` → `(Some("It's"), Some(..))`; `'Tab'` → `(Some("Tab"), None)`;
/// `A1:B2` → `(None, Some(..))`. A bare word that is not a cell reference (`Readings`)
/// does not parse here; the caller tries it as a tab title.
pub(crate) fn parse_a1(text: &str) -> Option<(Option<String>, Option<Span>)> {
    // A quoted name (`''` is a quote) alone or before `!`, or a bare name before the last `!`.
    static A1: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?:'((?:[^']|'')+)'(?:!(.*))?|(?:([^']+)!)?([^'!]*))$").expect("a valid regex"));
    let c = A1.captures(text.trim())?;
    let name = match (c.get(1), c.get(3)) {
        (Some(quoted), _) => Some(quoted.as_str().replace("''", "'")),
        (None, bare) => bare.map(|m| m.as_str().to_string()),
    };
    match c.get(2).or(c.get(4)) {
        None => Some((name, None)),
        Some(cells) => Some((name, Some(parse_span(cells.as_str())?))),
    }
}

/// `A1`, `A1:B2`, `A:A`, `2:5` (a lone column or row is no span).
pub(super) fn parse_span(text: &str) -> Option<Span> {
    let (first, second) = match text.split_once(':') {
        Some((first, second)) => (first, Some(second)),
        None => (text, None),
    };
    let start = parse_cell_ref(first)?;
    match second.map(parse_cell_ref) {
        None if start.col.is_some() && start.row.is_some() => Some(Span { start, end: None }),
        None => None,
        Some(end) => Some(Span { start, end: Some(end?) }),
    }
}

/// `A1`, `$A$1`, `A`, `1` (zero-based out).
pub(crate) fn parse_cell_ref(text: &str) -> Option<CellRef> {
    static CELL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("^([A-Za-z]{0,3})([0-9]{0,9})$").expect("a valid regex"));
    let text = text.replace('$', "");
    let c = CELL.captures(&text)?;
    let digit = |b: u8| u32::from(b.to_ascii_uppercase() - b'A' + 1);
    let col = (!c[1].is_empty()).then(|| c[1].bytes().fold(0, |n, b| n * 26 + digit(b)) - 1);
    let row = match &c[2] {
        "" => None,
        row => Some(row.parse::<u32>().ok()?.checked_sub(1)?),
    };
    (col.is_some() || row.is_some()).then_some(CellRef { col, row })
}

/// A range resolved against a spreadsheet. Ends are inclusive and `None` when unbounded.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) sheet: usize,
    pub(super) r0: u32,
    pub(super) c0: u32,
    pub(super) r1: Option<u32>,
    pub(super) c1: Option<u32>,
    /// A single cell or a whole tab: for writes, where the data starts, not a bound.
    pub(super) anchor: bool,
    /// The `Sheet!` part as the client wrote it, or the tab's own name when it wrote none.
    pub(super) prefix: String,
}

/// The range `text` names in `ss`; a stated bound outside the grid is refused.
pub(super) fn resolve_range(ss: &Spreadsheet, text: &str) -> Result<Resolved, Response> {
    let unparsable = || invalid_argument(&format!("Unable to parse range: {text}"));
    let by_title = |title: &str| ss.sheets.iter().position(|s| s.props.title == title);
    let trimmed = text.trim();
    // A bare word is a tab title first (`Readings`, or a tab named like a cell).
    let bare = (!trimmed.starts_with('\'') && !trimmed.contains('!')).then(|| by_title(trimmed));
    let (sheet, span) = match bare.flatten() {
        Some(sheet) => (sheet, None),
        None => match parse_a1(trimmed).ok_or_else(unparsable)? {
            (Some(name), span) => (by_title(&name).ok_or_else(unparsable)?, span),
            (None, _) if ss.sheets.is_empty() => return Err(unparsable()),
            (None, span) => (0, span),
        },
    };
    let props = &ss.sheets[sheet].props;
    let prefix = match (span, trimmed.rfind('!')) {
        (Some(_), Some(i)) => trimmed[..=i].to_string(),
        _ => format!("{}!", quote_sheet(&props.title)),
    };
    // A whole tab starts at A1; a single cell ends where it starts.
    let whole = CellRef {
        col: Some(0),
        row: Some(0),
    };
    let (start, end, anchor) = match span {
        None => (whole, CellRef { col: None, row: None }, true),
        Some(Span { start, end: None }) => (start, start, true),
        Some(Span { start, end: Some(end) }) => (start, end, false),
    };
    let axis = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => (a.min(b), Some(a.max(b))),
        (a, b) => (a.unwrap_or(0), b),
    };
    let ((r0, r1), (c0, c1)) = (axis(start.row, end.row), axis(start.col, end.col));
    let (row_out, col_out) = (|r: u32| r >= props.rows, |c: u32| c >= props.cols);
    if row_out(r0) || col_out(c0) || r1.is_some_and(row_out) || c1.is_some_and(col_out) {
        return Err(grid_limit_error(text, props));
    }
    Ok(Resolved {
        sheet,
        r0,
        c0,
        r1,
        c1,
        anchor,
        prefix,
    })
}

/// Zero-based column → letters (0 → A, 26 → AA).
pub(crate) fn column_letters(col: u32) -> String {
    let mut n = u64::from(col) + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = ((n - 1) % 26) as u8;
        out.push(b'A' + rem);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

pub(super) fn cell_name(row: u64, col: u64) -> String {
    format!("{}{}", column_letters(col.min(u64::from(u32::MAX)) as u32), row + 1)
}

pub(crate) fn span_name(r0: u64, c0: u64, r1: u64, c1: u64) -> String {
    if r0 == r1 && c0 == c1 {
        cell_name(r0, c0)
    } else {
        format!("{}:{}", cell_name(r0, c0), cell_name(r1, c1))
    }
}

/// A tab title as Google writes it in ranges: bare if it is a plain identifier that
/// cannot be read as a cell, otherwise single-quoted with `'` doubled.
pub(crate) fn quote_sheet(title: &str) -> String {
    let plain = title
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && title.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && parse_cell_ref(title).is_none();
    if plain {
        title.to_string()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    }
}

/// The `(row, col)` of a single-cell reference like `B2`.
pub(super) fn single_cell(a1: &str) -> Option<(u32, u32)> {
    let r = parse_cell_ref(a1.trim())?;
    Some((r.row?, r.col?))
}
