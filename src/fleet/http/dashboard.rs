//! The dashboard page and its assets, embedded in the binary so that it works with no
//! internet access. The chart library is uPlot (MIT, ~50 KB), vendored unchanged from
//! the npm registry with its licence under `assets/vendor/uplot/` (see its README for
//! the exact `npm pack` command). The page loads `/api/boards?series=1` once, then
//! follows `/events` (Server-Sent Events) and updates values and charts in place.

pub const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/vendor/uplot/LICENSE");

/// `(content type, body)` of an embedded asset.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ("text/css; charset=utf-8", APP_CSS),
        "/vendor/uPlot.iife.min.js" => ("text/javascript; charset=utf-8", UPLOT_JS),
        "/vendor/uPlot.min.css" => ("text/css; charset=utf-8", UPLOT_CSS),
        "/vendor/uPlot.LICENSE" => ("text/plain; charset=utf-8", UPLOT_LICENSE),
        _ => return None,
    })
}
