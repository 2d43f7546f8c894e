//! `/metrics`: Prometheus text exposition (format 0.0.4) through `prometheus-client`.
//!
//! One [`Collector`] reads the daemon's existing counters at scrape time, so ingest
//! keeps its plain relaxed atomics and pays nothing per scrape. Per-board series
//! (`sensorlog_board_*{device=...}`) cover at most `http.metrics_max_boards` boards, the
//! first by name; `sensorlog_board_series_omitted` says how many were left out, so a flood
//! of device names cannot blow up the exposition (label cardinality is bounded).

use std::borrow::Cow;
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

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

struct Exporter(Arc<HttpState>);

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, u64)]) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, f64)]) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn l(k: &'static str, v: &'static str) -> Labels<'static> {
    vec![(k, Cow::Borrowed(v))]
}

impl Collector for Exporter {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let st = &self.0;
        let s = &st.stats;
        let none = Labels::new;
        counter(
            &mut e,
            "sensorlog_readings",
            "Readings by outcome: written to the CSV, skipped as a resend (duplicate), or lost to a failed write.",
            &[
                (l("outcome", "written"), s.readings.load(Relaxed)),
                (l("outcome", "duplicate"), s.duplicates.load(Relaxed)),
                (l("outcome", "write_failed"), s.write_failures.load(Relaxed)),
            ],
        )?;
        counter(
            &mut e,
            "sensorlog_parse_errors",
            "Lines that could not become readings (or only partly), by kind.",
            &[
                (l("kind", "line_too_long"), s.lines_too_long.load(Relaxed)),
                (l("kind", "unterminated_line"), s.partial_lines.load(Relaxed)),
                (l("kind", "line_timeout"), s.line_timeouts.load(Relaxed)),
                (l("kind", "bad_hello"), s.bad_hellos.load(Relaxed)),
                (l("kind", "json_too_deep"), s.json_too_deep.load(Relaxed)),
            ],
        )?;
        let (rows, bytes) = st.sink.position();
        counter(
            &mut e,
            "sensorlog_csv_rows_written",
            "CSV rows written since start.",
            &[(none(), s.rows_written.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "sensorlog_csv_bytes_written",
            "CSV bytes written since start.",
            &[(none(), bytes.saturating_sub(st.csv_at_start.1))],
        )?;
        gauge(
            &mut e,
            "sensorlog_csv_size_bytes",
            "Size of the CSV file.",
            &[(none(), bytes as f64)],
        )?;
        gauge(
            &mut e,
            "sensorlog_csv_rows",
            "Rows in the CSV file.",
            &[(none(), rows as f64)],
        )?;
        for (name, help, h) in [
            (
                "sensorlog_csv_write_seconds",
                "Time of one CSV append (lock, write, and fsync under csv.fsync = always).",
                &s.csv_write_seconds,
            ),
            (
                "sensorlog_csv_fsync_seconds",
                "Time of one interval fsync of the CSV.",
                &s.csv_fsync_seconds,
            ),
        ] {
            h.0.encode(e.encode_descriptor(name, help, None, MetricType::Histogram)?)?;
        }
        gauge(
            &mut e,
            "sensorlog_connections_open",
            "Board connections open now.",
            &[(none(), s.connections_open.load(Relaxed) as f64)],
        )?;
        counter(
            &mut e,
            "sensorlog_connections",
            "Board connections accepted since start.",
            &[(none(), s.connections_total.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "sensorlog_connections_refused",
            "Board connections refused, by reason.",
            &[
                (
                    l("reason", "too_many_connections"),
                    s.connections_refused
                        .load(Relaxed)
                        .saturating_sub(s.refused_per_ip.load(Relaxed)),
                ),
                (l("reason", "too_many_from_ip"), s.refused_per_ip.load(Relaxed)),
                (l("reason", "not_allowed"), s.refused.total(Reason::NotAllowed)),
                (
                    l("reason", "proxy_header_not_trusted"),
                    s.refused.total(Reason::ProxyHeaderNotTrusted),
                ),
                (l("reason", "bad_proxy_header"), s.refused.total(Reason::BadProxyHeader)),
                (
                    l("reason", "proxy_header_timeout"),
                    s.refused.total(Reason::ProxyHeaderTimeout),
                ),
            ],
        )?;
        let by_address: Vec<(Labels, u64)> = s
            .refused
            .snapshot(usize::MAX)
            .into_iter()
            .map(|v| {
                let labels = vec![("reason", Cow::Borrowed(v.reason)), ("address", Cow::Owned(v.address))];
                (labels, v.count)
            })
            .collect();
        counter(
            &mut e,
            "sensorlog_connections_refused_by_address",
            "Board connections refused, by reason and the board's real address (at most 256 addresses; the rest as address=\"other\").",
            &by_address,
        )?;
        counter(
            &mut e,
            "sensorlog_proxy_connections",
            "Connections through a trusted proxy, by PROXY header: a board's real address, or a health check (LOCAL/UNKNOWN).",
            &[
                (l("header", "proxied"), s.proxied_connections.load(Relaxed)),
                (l("header", "health_check"), s.proxy_health_checks.load(Relaxed)),
            ],
        )?;
        counter(
            &mut e,
            "sensorlog_connections_closed",
            "Board connections closed by the daemon, by reason.",
            &[(l("reason", "idle_timeout"), s.idle_timeouts.load(Relaxed))],
        )?;
        if let Some(sh) = super::api::sheets_view(st) {
            gauge(
                &mut e,
                "sensorlog_sheets_backlog_rows",
                "CSV rows not yet confirmed in the sheet (all rows until the uploader is set up).",
                &[(none(), sh.backlog_rows.unwrap_or(rows) as f64)],
            )?;
            counter(
                &mut e,
                "sensorlog_sheets_rows_uploaded",
                "Rows Google confirmed since start.",
                &[(none(), sh.rows_uploaded)],
            )?;
            counter(
                &mut e,
                "sensorlog_sheets_requests",
                "Sheets upload attempts by outcome (failed ones are retried).",
                &[
                    (l("outcome", "ok"), s.sheets_requests_ok.load(Relaxed)),
                    (l("outcome", "failed"), s.sheets_requests_failed.load(Relaxed)),
                ],
            )?;
            counter(
                &mut e,
                "sensorlog_sheets_refused_requests",
                "Sheets requests Google refused (not applied), by reason: quota (429), invalid (400, 413), permission (403), not_found (404), other (other 4xx).",
                &[
                    (l("reason", "quota"), s.sheets_refused_quota.load(Relaxed)),
                    (l("reason", "invalid"), s.sheets_refused_invalid.load(Relaxed)),
                    (l("reason", "permission"), s.sheets_refused_permission.load(Relaxed)),
                    (l("reason", "not_found"), s.sheets_refused_not_found.load(Relaxed)),
                    (l("reason", "other"), s.sheets_refused_other.load(Relaxed)),
                ],
            )?;
            gauge(
                &mut e,
                "sensorlog_sheets_last_upload_timestamp_seconds",
                "Unix time of the last batch Google confirmed (0: none since start).",
                &[(none(), sh.last_upload_unix_ms.unwrap_or(0) as f64 / 1000.0)],
            )?;
        }
        let (totals, _) = st.boards.snapshot(false, 0);
        gauge(
            &mut e,
            "sensorlog_boards",
            "Boards tracked, by status.",
            &[
                (l("status", "ok"), totals.ok as f64),
                (l("status", "silent"), totals.silent as f64),
                (l("status", "never_seen_since_start"), totals.unseen as f64),
            ],
        )?;
        gauge(
            &mut e,
            "sensorlog_boards_silent",
            "Boards silent now (quiet longer than alerts.silent_factor x their usual interval).",
            &[(none(), totals.silent as f64)],
        )?;
        counter(
            &mut e,
            "sensorlog_boards_evicted",
            "Boards dropped from memory at boards.max_boards (least recently seen first).",
            &[(none(), totals.evicted)],
        )?;
        let (per_board, omitted) = st.boards.metric_rows(st.metrics_max_boards);
        let dev = |d: &str| vec![("device", Cow::Owned(d.to_string()))];
        let silent: Vec<_> = per_board
            .iter()
            .map(|r| (dev(&r.0), if r.1 { 1.0 } else { 0.0 }))
            .collect();
        gauge(
            &mut e,
            "sensorlog_board_silent",
            "1 if the board is silent now.",
            &silent,
        )?;
        let readings: Vec<_> = per_board.iter().map(|r| (dev(&r.0), r.2)).collect();
        counter(
            &mut e,
            "sensorlog_board_readings",
            "Readings written per board since start.",
            &readings,
        )?;
        let seen: Vec<_> = per_board.iter().filter_map(|r| Some((dev(&r.0), r.3?))).collect();
        gauge(
            &mut e,
            "sensorlog_board_last_seen_timestamp_seconds",
            "Unix time of the board's last reading.",
            &seen,
        )?;
        gauge(
            &mut e,
            "sensorlog_board_series_omitted",
            "Boards left out of the sensorlog_board_* series (http.metrics_max_boards).",
            &[(none(), omitted as f64)],
        )?;
        gauge(
            &mut e,
            "sensorlog_start_time_seconds",
            "Unix time the daemon started.",
            &[(none(), st.started_unix_ms as f64 / 1000.0)],
        )?;
        Ok(())
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
