//! `addChart` and `updateChartSpec` (spreadsheets.batchUpdate). Names, types and enums
//! are the discovery document's (`discovery`); this checks what the schema cannot say.
//! The fake models the chart the uploader builds and nothing more: a `basicChart` (its
//! type, legend, axes, one domain, series on an axis, header rows) placed by
//! `overlayPosition.anchorCell`, its source ranges whole columns. Any other field of a
//! chart, spec or position is refused as unimplemented. Where the reference does not say
//! what Google refuses, the fake is strict: a basic chart needs a `chartType`, exactly one
//! domain (the reference: "Only a single domain is supported") and at least one series,
//! and every source range is one column wide in a grid that exists.
use super::*;

/// A `GridRange` one column wide in an existing grid, without row bounds.
fn grid_range(work: &[SheetProps], v: &Value, at: &str, ctx: &str) -> Result<(), Response> {
    let obj = v.as_object().expect("the schema refuses a null list element");
    only_modelled(obj, &["sheetId", "startColumnIndex", "endColumnIndex"], at)?;
    let sheet_id = int(obj, "sheetId").unwrap_or(0);
    let props = &work[grid_index(work, sheet_id, ctx)?];
    match (int(obj, "startColumnIndex"), int(obj, "endColumnIndex")) {
        (Some(s), Some(e)) if s < 0 || e < s => invalid!("{ctx}: Invalid GridRange: {v}"),
        (Some(s), Some(e)) if e - s == 1 && e <= i64::from(props.cols) => Ok(()),
        _ => invalid!("{ctx}: the fake Google wants every chart source range one column wide inside the grid, got {v}"),
    }
}

/// `ChartData` (the `domain` of a domain, the `series` of a series): a source range of
/// one or more grid ranges.
fn chart_data(work: &[SheetProps], parent: &Value, name: &str, at: &str, ctx: &str) -> Result<(), Response> {
    let Some(data) = parent.get(name).and_then(Value::as_object) else {
        return invalid!("{ctx}: a {name} needs data.");
    };
    only_modelled(data, &["sourceRange"], &format!("{at}.{name}"))?;
    let sources = data
        .get("sourceRange")
        .and_then(|r| r.get("sources"))
        .and_then(Value::as_array);
    let sources = sources.map_or(&[][..], Vec::as_slice);
    if sources.is_empty() {
        return invalid!("{ctx}: ChartData must have a source range.");
    }
    for (i, s) in sources.iter().enumerate() {
        grid_range(work, s, &format!("{at}.{name}.sourceRange.sources[{i}]"), ctx)?;
    }
    Ok(())
}

/// A `ChartSpec` with a `basicChart`.
pub(super) fn chart_spec(work: &[SheetProps], spec: &Map<String, Value>, at: &str, ctx: &str) -> Result<(), Response> {
    only_modelled(spec, &["title", "basicChart"], at)?;
    let at = format!("{at}.basicChart");
    let Some(basic) = object(spec, "basicChart") else {
        return invalid!("{ctx}: ChartSpec must have a chart type set.");
    };
    let modelled = [
        "chartType",
        "legendPosition",
        "axis",
        "domains",
        "series",
        "headerCount",
    ];
    only_modelled(basic, &modelled, &at)?;
    if specified(basic, "chartType", &at)?.is_none() {
        return invalid!("{ctx}: chartType must be specified.");
    }
    specified(basic, "legendPosition", &at)?;
    for (i, a) in list(basic, "axis").iter().enumerate() {
        let (a_at, a) = (format!("{at}.axis[{i}]"), a.as_object().expect("a message"));
        only_modelled(a, &["position", "title"], &a_at)?;
        specified(a, "position", &a_at)?;
    }
    let domains = list(basic, "domains");
    if domains.len() != 1 {
        return invalid!("{ctx}: a basic chart has exactly one domain, got {}.", domains.len());
    }
    let d_at = format!("{at}.domains[0]");
    only_modelled(domains[0].as_object().expect("a message"), &["domain"], &d_at)?;
    chart_data(work, &domains[0], "domain", &d_at, ctx)?;
    let series = list(basic, "series");
    if series.is_empty() {
        return invalid!("{ctx}: a basic chart needs at least one series.");
    }
    for (i, s) in series.iter().enumerate() {
        let s_at = format!("{at}.series[{i}]");
        let obj = s.as_object().expect("a message");
        only_modelled(obj, &["series", "targetAxis"], &s_at)?;
        specified(obj, "targetAxis", &s_at)?;
        chart_data(work, s, "series", &s_at, ctx)?;
    }
    Ok(())
}

/// The spec of an `addChart`'s chart or an `updateChartSpec`, checked.
fn spec<'a>(
    work: &[SheetProps],
    obj: &'a Map<String, Value>,
    at: &str,
    ctx: &str,
    what: &str,
) -> Result<&'a Value, Response> {
    let spec = obj
        .get("spec")
        .filter(|s| !s.is_null())
        .ok_or_else(|| invalid_argument(&format!("{ctx}: {what} must be specified.")))?;
    let at = format!("{at}.spec");
    chart_spec(work, spec.as_object().expect("a message"), &at, ctx)?;
    Ok(spec)
}

pub(super) fn add_chart(
    work: &mut [SheetProps],
    i: usize,
    obj: &Map<String, Value>,
    rng: &mut Rng,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].addChart");
    let at = format!("requests[{i}].addChart.chart");
    let chart = object(obj, "chart").ok_or_else(|| invalid_argument(&format!("{ctx}: chart must be specified.")))?;
    let spec = spec(work, chart, &at, &ctx, "chart.spec")?;
    only_modelled(chart, &["chartId", "spec", "position"], &at)?;
    let position = object(chart, "position")
        .ok_or_else(|| invalid_argument(&format!("{ctx}: chart.position must be specified.")))?;
    only_modelled(position, &["overlayPosition"], &format!("{at}.position"))?;
    let overlay = object(position, "overlayPosition")
        .ok_or_else(|| unimplemented("a chart position other than overlayPosition"))?;
    only_modelled(overlay, &["anchorCell"], &format!("{at}.position.overlayPosition"))?;
    let anchor = object(overlay, "anchorCell")
        .ok_or_else(|| invalid_argument(&format!("{ctx}: overlayPosition needs an anchorCell.")))?;
    let anchor_sheet = int(anchor, "sheetId").unwrap_or(0);
    let (r, c) = (
        int(anchor, "rowIndex").unwrap_or(0),
        int(anchor, "columnIndex").unwrap_or(0),
    );
    let inside = work.iter().find(|p| p.sheet_id == anchor_sheet);
    if !inside.is_some_and(|p| (0..i64::from(p.rows)).contains(&r) && (0..i64::from(p.cols)).contains(&c)) {
        return invalid!("{ctx}: the anchor cell (row {r}, column {c}) is not in grid {anchor_sheet}.");
    }
    let used: Vec<i64> = work.iter().flat_map(|p| p.charts.iter().map(|(id, _)| *id)).collect();
    let id = match int(chart, "chartId") {
        Some(id) if used.contains(&id) => return invalid!("{ctx}: An object with id {id} already exists."),
        Some(id) => id,
        None => random_sheet_id(rng, &used),
    };
    work[grid_index(work, anchor_sheet, &ctx)?]
        .charts
        .push((id, spec.clone()));
    Ok(json!({"addChart": {"chart": {"chartId": id, "spec": spec, "position": chart.get("position")}}}))
}

pub(super) fn update_chart_spec(
    work: &mut [SheetProps],
    i: usize,
    obj: &Map<String, Value>,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].updateChartSpec");
    let id = int(obj, "chartId").unwrap_or(0);
    let spec = spec(work, obj, &format!("requests[{i}].updateChartSpec"), &ctx, "spec")?;
    let Some(slot) = work
        .iter_mut()
        .flat_map(|p| p.charts.iter_mut())
        .find(|(c, _)| *c == id)
    else {
        return invalid!("{ctx}: No chart with id: {id}");
    };
    slot.1 = spec.clone();
    Ok(json!({}))
}
