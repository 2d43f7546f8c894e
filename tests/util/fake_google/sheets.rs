//! The Sheets endpoints after authentication (steps 3 and 4 of the order of checks), and
//! `spreadsheets.batchUpdate` with `addSheet` (the other kinds: `charts`, `dimensions`).
use super::*;

pub(super) fn sheets_endpoint(
    st: &mut State,
    kind: RequestKind,
    id: &str,
    range: &str,
    req: &HttpRequest,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let account = match st.authenticate(req, now) {
        Ok(account) => account,
        Err(response) => {
            st.stats.unauthenticated += 1;
            return (response, None, "bad bearer token");
        }
    };
    let result = authorized_sheets(st, kind, id, range, req, &account, now);
    let why = match &result {
        Err(r) if r.status == 429 => "quota",
        _ => "",
    };
    (result.unwrap_or_else(|e| e), Some(account), why)
}

fn authorized_sheets(
    st: &mut State,
    kind: RequestKind,
    id: &str,
    range: &str,
    req: &HttpRequest,
    account: &str,
    now: Instant,
) -> Result<Response, Response> {
    if st.rules.api_disabled {
        return Err(service_disabled());
    }
    st.charge_quota(account, kind, now)?;
    let max_cells = st.rules.max_cells;
    let State {
        spreadsheets,
        rng,
        stats,
        ..
    } = st;
    let Some(ss) = spreadsheets.get_mut(id) else {
        return Err(status_error(404));
    };
    match (ss.access.get(account), kind.is_write()) {
        (Some(Role::Writer), _) | (Some(Role::Reader), false) => {}
        _ => return Err(status_error(403)),
    }
    // The uploader sends `fields` with spreadsheets.get and `valueRenderOption` with
    // values.get, nothing else; Google has more (`includeGridData`, `majorDimension`, …).
    let modelled = match kind {
        RequestKind::GetSpreadsheet => "fields",
        RequestKind::GetValues => "valueRenderOption",
        _ => "",
    };
    if let Some((name, _)) = req.query.iter().find(|(name, _)| name != modelled) {
        return Err(unimplemented(&format!("the query parameter {name}")));
    }
    let body = match kind {
        RequestKind::GetSpreadsheet => partial(ss.to_json(), "Spreadsheet", req.query_param("fields"))?,
        RequestKind::GetValues => get_values(ss, range, req)?,
        _ => {
            let schema = match kind {
                RequestKind::BatchUpdate => "BatchUpdateSpreadsheetRequest",
                _ => "BatchUpdateValuesRequest",
            };
            let body = json_body(req)?;
            if let Err(message) = discovery::check(schema, &body, "") {
                stats.schema_violations += 1;
                return Err(invalid_argument(&message));
            }
            let body = body.as_object().expect("json_body returns an object");
            if kind == RequestKind::BatchUpdate {
                let reply = batch_update(ss, body, max_cells, rng)?;
                let cells: u64 = ss.sheets.iter().map(|s| s.props.cells()).sum();
                stats.max_workbook_cells = stats.max_workbook_cells.max(cells);
                reply
            } else {
                stats.non_raw_writes += u64::from(text(body, "valueInputOption").is_some_and(|o| o != "RAW"));
                let reply = values_batch_update(ss, body)?;
                stats.writes_applied += 1;
                reply
            }
        }
    };
    Ok(json_response(200, &body))
}

/// The request body, a JSON object (an empty body counts as `{}`).
fn json_body(req: &HttpRequest) -> Result<Value, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(body) if body.is_object() => Ok(body),
        Ok(_) => invalid!("Invalid JSON payload received. Root element must be a message."),
        Err(e) => invalid!("Invalid JSON payload received. {e}"),
    }
}

// --- reading a body the discovery document has passed ----------------------------------
//
// `discovery::check` has refused unknown names, wrong types and values outside an enum
// before any of these reads, so they cannot fail: absent and `null` read as unset. What
// is left to refuse here is what the schema cannot say (required fields, ranges, the
// grid, the parts the fake does not implement).

pub(super) fn int(obj: &Map<String, Value>, name: &str) -> Option<i64> {
    obj.get(name)?.as_i64()
}

pub(super) fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)?.as_str()
}

pub(super) fn object<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    obj.get(name)?.as_object()
}

pub(super) fn list<'a>(obj: &'a Map<String, Value>, name: &str) -> &'a [Value] {
    obj.get(name).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Refuses as unimplemented a field outside `modelled`, the fields the uploader sends here
/// (`at`: where, as Google names it).
pub(super) fn only_modelled(obj: &Map<String, Value>, modelled: &[&str], at: &str) -> Result<(), Response> {
    match obj
        .iter()
        .find(|(k, v)| !v.is_null() && !modelled.contains(&k.as_str()))
    {
        None => Ok(()),
        Some((name, _)) => Err(unimplemented(&format!("'{}'", discovery::field_path(at, name)))),
    }
}

/// An enum field set to its `…_UNSPECIFIED` value is refused, as an unknown value.
pub(super) fn specified<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Result<Option<&'a str>, Response> {
    match text(obj, name) {
        Some(v) if v.ends_with("_UNSPECIFIED") => invalid!("Invalid value at '{at}.{name}' (TYPE_ENUM), \"{v}\""),
        other => Ok(other),
    }
}

// --- spreadsheets.batchUpdate ------------------------------------------------------------

pub(super) fn batch_update(
    ss: &mut Spreadsheet,
    body: &Map<String, Value>,
    max_cells: u64,
    rng: &mut Rng,
) -> Result<Value, Response> {
    only_modelled(body, &["requests"], "")?;
    let requests = list(body, "requests");
    if requests.is_empty() {
        return Err(invalid_argument("Must specify at least one request."));
    }
    // Validate and apply on a copy of the tab properties; commit only if all succeed.
    let mut work: Vec<SheetProps> = ss.sheets.iter().map(|s| s.props.clone()).collect();
    let mut replies = Vec::with_capacity(requests.len());
    let mut deletions = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        // The schema let through exactly one kind, as an object.
        let kind = request.as_object().and_then(|o| o.iter().find(|(_, v)| !v.is_null()));
        let (name, inner) = kind.and_then(|(k, v)| Some((k, v.as_object()?))).expect("one kind");
        let reply = match name.as_str() {
            "addSheet" => add_sheet(&mut work, i, inner, max_cells, rng)?,
            "appendDimension" => append_dimension(&mut work, i, inner, max_cells)?,
            "addChart" => add_chart(&mut work, i, inner, rng)?,
            "updateChartSpec" => update_chart_spec(&mut work, i, inner)?,
            "deleteDimension" => delete_dimension(&mut work, i, inner, &mut deletions)?,
            other => {
                let message = discovery::unknown_name(other, &format!("requests[{i}]"));
                return invalid!(
                    "{message} (The fake Google implements only addSheet, appendDimension, addChart, \
                     updateChartSpec and deleteDimension.)"
                );
            }
        };
        replies.push(reply);
    }
    // Commit: keep each surviving tab's cells, in the new order.
    let mut old: HashMap<i64, Sheet> = ss.sheets.drain(..).map(|s| (s.props.sheet_id, s)).collect();
    ss.sheets = work
        .into_iter()
        .map(|props| {
            let cells = old.remove(&props.sheet_id).map(|s| s.cells).unwrap_or_default();
            Sheet { props, cells }
        })
        .collect();
    apply_deletions(&mut ss.sheets, &deletions);
    Ok(json!({ "spreadsheetId": ss.id, "replies": replies }))
}

/// Where the tab with `sheet_id` is in a batch's working copy, or Google's error for there
/// being none.
pub(super) fn grid_index(work: &[SheetProps], sheet_id: i64, ctx: &str) -> Result<usize, Response> {
    let index = work.iter().position(|p| p.sheet_id == sheet_id);
    index.ok_or_else(|| invalid_argument(&format!("{ctx}: No grid with id: {sheet_id}")))
}

/// Google's caps, columns per sheet and then cells per workbook, for a grid of `rows` ×
/// `cols` that takes the place of `old_cells` cells in a batch's working copy.
pub(super) fn check_caps(
    work: &[SheetProps],
    old_cells: u64,
    (rows, cols): (u64, u64),
    max_cells: u64,
    ctx: &str,
) -> Result<(), Response> {
    if cols > u64::from(MAX_COLUMNS) {
        return invalid!(
            "{ctx}: This action would increase the number of columns in the sheet above the \
             limit of {MAX_COLUMNS}."
        );
    }
    let total = work.iter().map(SheetProps::cells).sum::<u64>() - old_cells + rows * cols;
    if total > max_cells || rows > u64::from(u32::MAX) {
        return invalid!(
            "This action would increase the number of cells in the workbook above the limit of \
             {max_cells} cells."
        );
    }
    Ok(())
}

pub(super) fn add_sheet(
    work: &mut Vec<SheetProps>,
    i: usize,
    obj: &Map<String, Value>,
    max_cells: u64,
    rng: &mut Rng,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].addSheet");
    let empty = Map::new();
    let props = object(obj, "properties").unwrap_or(&empty);
    // The uploader names every tab and makes grids only; Google's defaults for an untitled
    // tab ("SheetN") and its other sheet types are not modelled.
    let at = format!("requests[{i}].addSheet.properties");
    only_modelled(props, &["sheetId", "title", "index", "gridProperties"], &at)?;
    let Some(title) = text(props, "title").filter(|t| !t.is_empty()).map(str::to_string) else {
        return Err(unimplemented("addSheet without a title"));
    };
    if work.iter().any(|p| p.title == title) {
        return invalid!("{ctx}: A sheet with the name \"{title}\" already exists. Please enter another name.");
    }
    let sheet_id = match int(props, "sheetId") {
        Some(id) if id < 0 => return invalid!("{ctx}: sheetId must not be negative."),
        Some(id) if work.iter().any(|p| p.sheet_id == id) => {
            // (fake's wording)
            return invalid!("{ctx}: A sheet with the id {id} already exists.");
        }
        Some(id) => id,
        None => random_sheet_id(rng, &work.iter().map(|p| p.sheet_id).collect::<Vec<_>>()),
    };
    let grid = object(props, "gridProperties").unwrap_or(&empty);
    only_modelled(
        grid,
        &["rowCount", "columnCount", "frozenRowCount"],
        &format!("{at}.gridProperties"),
    )?;
    let count = |name: &str, default: u32| -> Result<u32, Response> {
        match int(grid, name) {
            None | Some(0) => Ok(default),
            Some(n) if n < 0 => invalid!("{ctx}: {name} must not be negative."),
            Some(n) => Ok(n as u32),
        }
    };
    let rows = count("rowCount", DEFAULT_GRID.0)?;
    let cols = count("columnCount", DEFAULT_GRID.1)?;
    let frozen_rows = count("frozenRowCount", 0)?;
    if frozen_rows >= rows {
        // (fake's wording, after the Sheets UI)
        return invalid!("{ctx}: You can't freeze all visible rows or columns on the sheet.");
    }
    check_caps(work, 0, (rows.into(), cols.into()), max_cells, &ctx)?;
    let index = match int(props, "index") {
        Some(n) if n < 0 => return invalid!("{ctx}: index must not be negative."),
        Some(n) => (n as usize).min(work.len()),
        None => work.len(),
    };
    let new = SheetProps {
        sheet_id,
        title,
        rows,
        cols,
        frozen_rows,
        ..SheetProps::default()
    };
    let reply = json!({ "addSheet": { "properties": new.to_json(index) } });
    work.insert(index, new);
    Ok(reply)
}
