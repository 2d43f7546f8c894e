//! `appendDimension` and `deleteDimension` (spreadsheets.batchUpdate). Append grows a
//! grid by rows or columns within the column and workbook cell caps, on a `sheetId` that
//! exists. Delete takes `DimensionRange {sheetId, dimension, startIndex, endIndex}`,
//! half-open and zero-based; the rows below move up. Like Google, it refuses to delete
//! every row of a tab, and a repeat deletes again (it is not idempotent). The fake deletes
//! `ROWS` only.
use super::*;

/// `ROWS` (true) or `COLUMNS` (false); unset or unspecified is refused.
fn dimension(obj: &Map<String, Value>, ctx: &str) -> Result<bool, Response> {
    match text(obj, "dimension") {
        Some("ROWS") => Ok(true),
        Some("COLUMNS") => Ok(false),
        _ => invalid!("{ctx}: dimension must be ROWS or COLUMNS."),
    }
}

pub(super) fn append_dimension(
    work: &mut [SheetProps],
    i: usize,
    obj: &Map<String, Value>,
    max_cells: u64,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].appendDimension");
    // proto3: an absent sheetId is 0.
    let sheet_id = int(obj, "sheetId").unwrap_or(0);
    let rows_dimension = dimension(obj, &ctx)?;
    let length = match int(obj, "length") {
        Some(n) if n > 0 => n as u64,
        _ => return invalid!("{ctx}: length must be greater than zero."),
    };
    let g = grid_index(work, sheet_id, &ctx)?;
    let (add_rows, add_cols) = if rows_dimension { (length, 0) } else { (0, length) };
    let (rows, cols) = (u64::from(work[g].rows) + add_rows, u64::from(work[g].cols) + add_cols);
    check_caps(work, work[g].cells(), (rows, cols), max_cells, &ctx)?;
    (work[g].rows, work[g].cols) = (rows as u32, cols as u32);
    Ok(json!({}))
}

/// Validates one request; the rows go at commit ([`apply_deletions`]).
pub(super) fn delete_dimension(
    work: &mut [SheetProps],
    i: usize,
    obj: &Map<String, Value>,
    deletions: &mut Vec<(i64, u32, u32)>,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].deleteDimension");
    let empty = Map::new();
    let range = object(obj, "range").unwrap_or(&empty);
    let sheet_id = int(range, "sheetId").unwrap_or(0);
    if !dimension(range, &ctx)? {
        return invalid!("{ctx}: the fake Google deletes ROWS only.");
    }
    let start = int(range, "startIndex").unwrap_or(0);
    let Some(end) = int(range, "endIndex") else {
        return invalid!("{ctx}: endIndex must be specified.");
    };
    let props = &mut work[grid_index(work, sheet_id, &ctx)?];
    if start < 0 || end <= start || end > i64::from(props.rows) {
        return invalid!(
            "{ctx}: Invalid dimension range [{start}, {end}) for a grid of {} rows.",
            props.rows
        );
    }
    let n = (end - start) as u32;
    if n >= props.rows {
        return invalid!("{ctx}: You can't delete all the rows on the sheet.");
    }
    props.rows -= n;
    deletions.push((sheet_id, start as u32, end as u32));
    Ok(json!({}))
}

/// Removes the deleted rows' cells and moves the rows below up, in request order.
pub(super) fn apply_deletions(sheets: &mut [Sheet], deletions: &[(i64, u32, u32)]) {
    for &(id, start, end) in deletions {
        let Some(sheet) = sheets.iter_mut().find(|s| s.props.sheet_id == id) else {
            continue;
        };
        let n = end - start;
        let cells = std::mem::take(&mut sheet.cells);
        sheet.cells = cells
            .into_iter()
            .filter(|((r, _), _)| !(start..end).contains(r))
            .map(|((r, c), v)| (if r >= end { (r - n, c) } else { (r, c) }, v))
            .collect();
    }
}
