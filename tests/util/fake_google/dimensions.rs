//! `deleteDimension` (spreadsheets.batchUpdate): `DeleteDimensionRequest {range:
//! DimensionRange {sheetId, dimension, startIndex, endIndex}}`, half-open and zero-based;
//! the rows below move up. Like Google, it refuses to delete every row of a tab, and a
//! repeat deletes again (it is not idempotent). The fake supports `ROWS` only.
use super::*;

/// Validates one request; the rows go at commit ([`apply_deletions`]).
pub(super) fn delete_dimension(
    work: &mut [SheetProps],
    i: usize,
    inner: &Value,
    deletions: &mut Vec<(i64, u32, u32)>,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].deleteDimension");
    let at = format!("requests[{i}].deleteDimension");
    let Some(obj) = inner.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", inner));
    };
    check_fields(obj, &["range"], &at)?;
    let at = format!("{at}.range");
    let empty = Map::new();
    let range = object_field(obj, "range", &at)?.unwrap_or(&empty);
    check_fields(range, &["sheetId", "dimension", "startIndex", "endIndex"], &at)?;
    let sheet_id = int_field(range, "sheetId", &at)?.unwrap_or(0);
    match range.get("dimension") {
        Some(Value::String(d)) if d == "ROWS" => {}
        Some(Value::String(d)) if d == "COLUMNS" => {
            return Err(invalid_argument(&format!("{ctx}: the fake Google deletes ROWS only.")))
        }
        _ => return Err(invalid_argument(&format!("{ctx}: dimension must be ROWS or COLUMNS."))),
    }
    let start = int_field(range, "startIndex", &at)?.unwrap_or(0);
    let Some(end) = int_field(range, "endIndex", &at)? else {
        return Err(invalid_argument(&format!("{ctx}: endIndex must be specified.")));
    };
    let Some(props) = work.iter_mut().find(|p| p.sheet_id == sheet_id) else {
        return Err(invalid_argument(&format!("{ctx}: No grid with id: {sheet_id}")));
    };
    if start < 0 || end <= start || end > i64::from(props.rows) {
        return Err(invalid_argument(&format!(
            "{ctx}: Invalid dimension range [{start}, {end}) for a grid of {} rows.",
            props.rows
        )));
    }
    let n = (end - start) as u32;
    if n >= props.rows {
        return Err(invalid_argument(&format!(
            "{ctx}: You can't delete all the rows on the sheet."
        )));
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
