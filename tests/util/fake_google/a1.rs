//! A1 notation: parsing and resolving ranges as Sheets does.
use super::*;

// ---------------------------------------------------------------------------------------
// A1 notation
// ---------------------------------------------------------------------------------------

/// One side of an A1 span; either part may be absent (`A` is a column, `5` a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CellRef {
    /// Zero-based.
    pub(super) col: Option<u32>,
    /// Zero-based.
    pub(super) row: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: CellRef,
    /// `None` for a single cell.
    pub(super) end: Option<CellRef>,
}

/// Parses A1 notation without looking at a spreadsheet: `(sheet name, cells)`.
/// `'It''s'!A1:B2` → `(Some("It's"), Some(..))`; `'Tab'` → `(Some("Tab"), None)`;
/// `A1:B2` → `(None, Some(..))`. A bare word that is not a cell reference (`Readings`)
/// does not parse here; the caller tries it as a tab title.
pub(super) fn parse_a1(text: &str) -> Option<(Option<String>, Option<Span>)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let mut name = String::new();
        let mut chars = rest.char_indices();
        let after = loop {
            match chars.next() {
                None => return None,
                Some((i, '\'')) => {
                    if rest[i + 1..].starts_with('\'') {
                        name.push('\'');
                        chars.next();
                    } else {
                        break &rest[i + 1..];
                    }
                }
                Some((_, c)) => name.push(c),
            }
        };
        if name.is_empty() {
            return None;
        }
        if after.is_empty() {
            return Some((Some(name), None));
        }
        let cells = after.strip_prefix('!')?;
        return Some((Some(name), Some(parse_span(cells)?)));
    }
    if let Some(i) = text.rfind('!') {
        let name = &text[..i];
        if name.is_empty() || name.contains('\'') {
            return None;
        }
        return Some((Some(name.to_string()), Some(parse_span(&text[i + 1..])?)));
    }
    Some((None, Some(parse_span(text)?)))
}

pub(super) fn parse_span(text: &str) -> Option<Span> {
    let mut parts = text.split(':');
    let (first, second, third) = (parts.next()?, parts.next(), parts.next());
    if third.is_some() {
        return None;
    }
    let start = parse_cell_ref(first)?;
    match second {
        None if start.col.is_some() && start.row.is_some() => Some(Span { start, end: None }),
        None => None,
        Some(second) => Some(Span {
            start,
            end: Some(parse_cell_ref(second)?),
        }),
    }
}

/// `A1`, `$A$1`, `A`, `1` (zero-based out).
pub(super) fn parse_cell_ref(text: &str) -> Option<CellRef> {
    let text: String = text.chars().filter(|&c| c != '$').collect();
    let letters = text.chars().take_while(char::is_ascii_alphabetic).count();
    let (col_text, row_text) = text.split_at(letters);
    if letters > 3 || row_text.len() > 9 || !row_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let col = if col_text.is_empty() {
        None
    } else {
        let n = col_text
            .bytes()
            .fold(0u32, |acc, b| acc * 26 + u32::from(b.to_ascii_uppercase() - b'A' + 1));
        Some(n - 1)
    };
    let row = if row_text.is_empty() {
        None
    } else {
        match row_text.parse::<u32>().ok()? {
            0 => return None,
            n => Some(n - 1),
        }
    };
    if col.is_none() && row.is_none() {
        return None;
    }
    Some(CellRef { col, row })
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
}

impl Resolved {
    /// Whether any stated bound lies outside the grid.
    pub(super) fn exceeds(&self, props: &SheetProps) -> bool {
        let row_out = |r: u32| r >= props.rows;
        let col_out = |c: u32| c >= props.cols;
        row_out(self.r0) || col_out(self.c0) || self.r1.is_some_and(row_out) || self.c1.is_some_and(col_out)
    }
}

/// The range `text` names in `ss`; a stated bound outside the grid is refused.
pub(super) fn resolve_range(ss: &Spreadsheet, text: &str) -> Result<Resolved, Response> {
    let range = resolve(ss, text)?;
    let props = &ss.sheets[range.sheet].props;
    if range.exceeds(props) {
        return Err(grid_limit_error(text, props));
    }
    Ok(range)
}

fn resolve(ss: &Spreadsheet, text: &str) -> Result<Resolved, Response> {
    let unparsable = || invalid_argument(&format!("Unable to parse range: {text}"));
    let by_title = |title: &str| ss.sheets.iter().position(|s| s.props.title == title);
    let whole = |sheet: usize| Resolved {
        sheet,
        r0: 0,
        c0: 0,
        r1: None,
        c1: None,
        anchor: true,
    };
    let trimmed = text.trim();
    // A bare word is a tab title first (`Readings`, or a tab named like a cell).
    if !trimmed.starts_with('\'') && !trimmed.contains('!') {
        if let Some(sheet) = by_title(trimmed) {
            return Ok(whole(sheet));
        }
    }
    let (name, span) = parse_a1(trimmed).ok_or_else(unparsable)?;
    let sheet = match name {
        Some(name) => by_title(&name).ok_or_else(unparsable)?,
        None if ss.sheets.is_empty() => return Err(unparsable()),
        None => 0,
    };
    let Some(span) = span else {
        return Ok(whole(sheet));
    };
    let Some(end) = span.end else {
        let (Some(c), Some(r)) = (span.start.col, span.start.row) else {
            return Err(unparsable());
        };
        return Ok(Resolved {
            sheet,
            r0: r,
            c0: c,
            r1: Some(r),
            c1: Some(c),
            anchor: true,
        });
    };
    let axis = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => (a.min(b), Some(a.max(b))),
        (Some(a), None) => (a, None),
        (None, Some(b)) => (0, Some(b)),
        (None, None) => (0, None),
    };
    let (r0, r1) = axis(span.start.row, end.row);
    let (c0, c1) = axis(span.start.col, end.col);
    Ok(Resolved {
        sheet,
        r0,
        c0,
        r1,
        c1,
        anchor: false,
    })
}

/// Zero-based column → letters (0 → A, 26 → AA).
pub(super) fn column_letters(col: u32) -> String {
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

pub(super) fn span_name(r0: u64, c0: u64, r1: u64, c1: u64) -> String {
    if r0 == r1 && c0 == c1 {
        cell_name(r0, c0)
    } else {
        format!("{}:{}", cell_name(r0, c0), cell_name(r1, c1))
    }
}

/// A tab title as Google writes it in ranges: bare if it is a plain identifier that
/// cannot be read as a cell, otherwise single-quoted with `'` doubled.
pub(super) fn quote_sheet(title: &str) -> String {
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
