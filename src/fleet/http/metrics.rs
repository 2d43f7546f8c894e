//! `/metrics`: Prometheus text exposition (format 0.0.4) through `prometheus-client`.
//!
//! One [`Collector`] reads the daemon's existing counters at scrape time, so ingest
//! keeps its plain relaxed atomics and pays nothing per scrape. Per-board series
//! (`sensorlog_board_*{device=...}`) cover at most `http.metrics_max_boards` boards, the
//! first by name; `sensorlog_board_series_omitted` says how many were left out, so a flood
//! of device names cannot blow up the exposition (label cardinality is bounded).

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::state::HttpState;
use crate::server::refused::Reason;
use crate::stats::LatencyHistogram;

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

struct Exporter(Arc<HttpState>);

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// One family of the exposition: its name, its help text and its series. The exposition
/// is a table of these, written in order.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    series: Series<'a>,
}

enum Series<'a> {
    /// Counts since start (`_total`).
    Counter(Vec<(Labels<'a>, u64)>),
    /// A level now.
    Gauge(Vec<(Labels<'a>, f64)>),
    Histogram(&'a LatencyHistogram),
}

fn counter<'a>(name: &'static str, help: &'static str, rows: Vec<(Labels<'a>, u64)>) -> Family<'a> {
    Family {
        name,
        help,
        series: Series::Counter(rows),
    }
}

fn gauge<'a>(name: &'static str, help: &'static str, rows: Vec<(Labels<'a>, f64)>) -> Family<'a> {
    Family {
        name,
        help,
        series: Series::Gauge(rows),
    }
}

/// The one series of a family without labels.
fn one<T>(value: T) -> Vec<(Labels<'static>, T)> {
    vec![(Labels::new(), value)]
}

/// A series per value of one label (`outcome="written"`, ...).
fn by<T, const N: usize>(key: &'static str, rows: [(&'static str, T); N]) -> Vec<(Labels<'static>, T)> {
    rows.into_iter()
        .map(|(v, n)| (vec![(key, Cow::Borrowed(v))], n))
        .collect()
}

/// A series per board (`device="kitchen"`).
fn by_device<'a, T>(rows: impl Iterator<Item = (&'a str, T)>) -> Vec<(Labels<'a>, T)> {
    rows.map(|(d, n)| (vec![("device", Cow::Borrowed(d))], n)).collect()
}

impl Family<'_> {
    fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let kind = match &self.series {
            Series::Counter(_) => MetricType::Counter,
            Series::Gauge(_) => MetricType::Gauge,
            Series::Histogram(_) => MetricType::Histogram,
        };
        let mut m = e.encode_descriptor(self.name, self.help, None, kind)?;
        match &self.series {
            Series::Counter(rows) => rows
                .iter()
                .try_for_each(|(labels, v)| ConstCounter::new(*v).encode(m.encode_family(labels)?)),
            Series::Gauge(rows) => rows
                .iter()
                .try_for_each(|(labels, v)| ConstGauge::new(*v).encode(m.encode_family(labels)?)),
            Series::Histogram(h) => h.0.encode(m),
        }
    }
}

impl Collector for Exporter {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let st = &self.0;
        let s = &st.stats;
        let n = |counter: &AtomicU64| counter.load(Relaxed);
        let (rows, bytes) = st.sink.position();
        let refused_by_address: Vec<(Labels, u64)> = s
            .refused
            .snapshot(usize::MAX)
            .into_iter()
            .map(|v| {
                let labels = vec![("reason", Cow::Borrowed(v.reason)), ("address", Cow::Owned(v.address))];
                (labels, v.count)
            })
            .collect();
        let mut table = vec![
            counter(
                "sensorlog_readings",
                "Readings by outcome: written to the CSV, skipped as a resend (duplicate), or lost to a failed write.",
                by(
                    "outcome",
                    [
                        ("written", n(&s.readings)),
                        ("duplicate", n(&s.duplicates)),
                        ("write_failed", n(&s.write_failures)),
                    ],
                ),
            ),
            counter(
                "sensorlog_parse_errors",
                "Lines that could not become readings (or only partly), by kind.",
                by(
                    "kind",
                    [
                        ("line_too_long", n(&s.lines_too_long)),
                        ("unterminated_line", n(&s.partial_lines)),
                        ("line_timeout", n(&s.line_timeouts)),
                        ("bad_hello", n(&s.bad_hellos)),
                        ("json_too_deep", n(&s.json_too_deep)),
                    ],
                ),
            ),
            counter("sensorlog_csv_rows_written", "CSV rows written since start.", one(n(&s.rows_written))),
            counter(
                "sensorlog_csv_bytes_written",
                "CSV bytes written since start.",
                one(bytes.saturating_sub(st.csv_at_start.1)),
            ),
            gauge("sensorlog_csv_size_bytes", "Size of the CSV file.", one(bytes as f64)),
            gauge("sensorlog_csv_rows", "Rows in the CSV file.", one(rows as f64)),
            Family {
                name: "sensorlog_csv_write_seconds",
                help: "Time of one CSV append (lock, write, and fsync under csv.fsync = always).",
                series: Series::Histogram(&s.csv_write_seconds),
            },
            Family {
                name: "sensorlog_csv_fsync_seconds",
                help: "Time of one interval fsync of the CSV.",
                series: Series::Histogram(&s.csv_fsync_seconds),
            },
            gauge(
                "sensorlog_connections_open",
                "Board connections open now.",
                one(n(&s.connections_open) as f64),
            ),
            counter("sensorlog_connections", "Board connections accepted since start.", one(n(&s.connections_total))),
            counter(
                "sensorlog_connections_refused",
                "Board connections refused, by reason.",
                by(
                    "reason",
                    [
                        (
                            "too_many_connections",
                            s.connections_refused
                                .load(Relaxed)
                                .saturating_sub(n(&s.refused_per_ip)),
                        ),
                        ("too_many_from_ip", n(&s.refused_per_ip)),
                        ("not_allowed", s.refused.total(Reason::NotAllowed)),
                        ("proxy_header_not_trusted", s.refused.total(Reason::ProxyHeaderNotTrusted)),
                        ("bad_proxy_header", s.refused.total(Reason::BadProxyHeader)),
                        ("proxy_header_timeout", s.refused.total(Reason::ProxyHeaderTimeout)),
                    ],
                ),
            ),
            counter(
                "sensorlog_connections_refused_by_address",
                "Board connections refused, by reason and the board's real address (at most 256 addresses; the rest as address=\"other\").",
                refused_by_address,
            ),
            counter(
                "sensorlog_proxy_connections",
                "Connections through a trusted proxy, by PROXY header: a board's real address, or a health check (LOCAL/UNKNOWN).",
                by(
                    "header",
                    [
                        ("proxied", n(&s.proxied_connections)),
                        ("health_check", n(&s.proxy_health_checks)),
                    ],
                ),
            ),
            counter(
                "sensorlog_connections_closed",
                "Board connections closed by the daemon, by reason.",
                by("reason", [("idle_timeout", n(&s.idle_timeouts))]),
            ),
        ];
        if let Some(sh) = super::api::sheets_view(st) {
            table.extend([
                gauge(
                    "sensorlog_sheets_backlog_rows",
                    "CSV rows not yet confirmed in the sheet (all rows until the uploader is set up).",
                    one(sh.backlog_rows.unwrap_or(rows) as f64),
                ),
                counter("sensorlog_sheets_rows_uploaded", "Rows Google confirmed since start.", one(sh.rows_uploaded)),
                counter(
                    "sensorlog_sheets_requests",
                    "Sheets upload attempts by outcome (failed ones are retried).",
                    by(
                        "outcome",
                        [
                            ("ok", n(&s.sheets_requests_ok)),
                            ("failed", n(&s.sheets_requests_failed)),
                        ],
                    ),
                ),
                counter(
                    "sensorlog_sheets_refused_requests",
                    "Sheets requests Google refused (not applied), by reason: quota (429), invalid (400, 413), permission (403), not_found (404), other (other 4xx).",
                    by(
                        "reason",
                        [
                            ("quota", n(&s.sheets_refused_quota)),
                            ("invalid", n(&s.sheets_refused_invalid)),
                            ("permission", n(&s.sheets_refused_permission)),
                            ("not_found", n(&s.sheets_refused_not_found)),
                            ("other", n(&s.sheets_refused_other)),
                        ],
                    ),
                ),
                gauge(
                    "sensorlog_sheets_last_upload_timestamp_seconds",
                    "Unix time of the last batch Google confirmed (0: none since start).",
                    one(sh.last_upload_unix_ms.unwrap_or(0) as f64 / 1000.0),
                ),
            ]);
        }
        let (totals, _) = st.boards.snapshot(false, 0);
        let (per_board, omitted) = st.boards.metric_rows(st.config.metrics_max_boards);
        let boards = || per_board.iter().map(|r| (r.0.as_str(), r));
        table.extend([
            gauge(
                "sensorlog_boards",
                "Boards tracked, by status.",
                by(
                    "status",
                    [
                        ("ok", totals.ok as f64),
                        ("silent", totals.silent as f64),
                        ("never_seen_since_start", totals.unseen as f64),
                    ],
                ),
            ),
            gauge(
                "sensorlog_boards_silent",
                "Boards silent now (quiet longer than alerts.silent_factor x their usual interval).",
                one(totals.silent as f64),
            ),
            counter(
                "sensorlog_boards_evicted",
                "Boards dropped from memory at boards.max_boards (least recently seen first).",
                one(totals.evicted),
            ),
            counter(
                "sensorlog_board_readings_untracked",
                "Readings under new device names past their connection's budget (boards.new_name_burst, boards.new_names_per_minute): in the CSV, not tracked here.",
                one(totals.untracked_readings),
            ),
            gauge(
                "sensorlog_board_silent",
                "1 if the board is silent now.",
                by_device(boards().map(|(d, r)| (d, if r.1 { 1.0 } else { 0.0 }))),
            ),
            counter(
                "sensorlog_board_readings",
                "Readings written per board since start.",
                by_device(boards().map(|(d, r)| (d, r.2))),
            ),
            gauge(
                "sensorlog_board_last_seen_timestamp_seconds",
                "Unix time of the board's last reading.",
                by_device(boards().filter_map(|(d, r)| Some((d, r.3?)))),
            ),
            gauge(
                "sensorlog_board_series_omitted",
                "Boards left out of the sensorlog_board_* series (http.metrics_max_boards).",
                one(omitted as f64),
            ),
            counter(
                "sensorlog_http_connections_refused",
                "Dashboard connections answered 503 because http.max_connections were open.",
                one(st.refused_connections.load(Relaxed)),
            ),
            gauge(
                "sensorlog_start_time_seconds",
                "Unix time the daemon started.",
                one(st.started_unix_ms as f64 / 1000.0),
            ),
        ]);
        table.iter().try_for_each(|family| family.encode(&mut e))
    }
}

/// The whole exposition.
pub fn render(state: &Arc<HttpState>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exporter(Arc::clone(state))));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}
