//! Wires the threads together and owns start-up and shutdown order.
//!
//! ```text
//!   main thread: accept loop ──spawns──> conn-<peer> threads ──> CsvSink (mutex) ──channel──> sheets-uploader
//!   csv-fsync:   fsync every csv.fsync_interval_ms          stats: info summary every log.stats_interval_secs
//! ```
//!
//! Shutdown (first Ctrl-C or SIGTERM) runs here, in this order, each step bounded:
//! 1. stop accepting (the accept loop returns);
//! 2. half-close every board connection for reading; their threads finish the lines
//!    already received and exit (at most `server.shutdown_grace_secs`);
//! 3. close the CSV: refuse further writes, fsync;
//! 4. drop the uploader's channel and give it `sheets.shutdown_timeout_secs` to send
//!    what is pending and save its cursor;
//! 5. exit 0. A second signal exits at once with code 130.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::config::{Config, Fsync};
use crate::error::{Error, Result};
use crate::server::{self, connection::ConnectionContext, limits::Connections};
use crate::shutdown::Shutdown;
use crate::sink::csv::CsvSink;
use crate::sink::sheets::Uploader;
use crate::stats::Stats;

/// How often the CSV's path is checked against the open file.
const PATH_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub fn serve(config: Config) -> Result<()> {
    raise_open_files_limit(config.max_connections);
    let (sink, report) = CsvSink::open(&config.csv_path, config.fsync, config.dedup)?;
    if let Some(bytes) = report.torn_bytes {
        log::warn!(
            "Repaired {}: cut a torn last row ({bytes} bytes) left by a crash or power cut; no complete row was removed. Boards using acknowledgements will resend that reading.",
            config.csv_path.display()
        );
    }
    if report.header_newline_added {
        log::warn!(
            "Repaired {}: its header had no newline; added one.",
            config.csv_path.display()
        );
    }
    if report.malformed_rows > 0 {
        log::warn!(
            "{} has {} rows without the expected {} columns in its last {} bytes (edited by hand?). They are kept as they are.",
            config.csv_path.display(),
            report.malformed_rows,
            crate::row::COLUMNS,
            report.tail_scanned
        );
    }
    let sink = Arc::new(sink);
    let stats = Arc::new(Stats::default());
    let shutdown = Shutdown::new();
    shutdown
        .install_signal_handler()
        .map_err(|e| Error::startup("install the Ctrl-C/SIGTERM handler", e))?;

    let uploader = match &config.sheets {
        Some(sc) => Some(Uploader::start(sc.clone(), &sink, Arc::clone(&stats))?),
        None => None,
    };

    let pg_sink = match &config.postgres {
        Some(pc) => Some(crate::sink::postgres::PgSink::start(pc.clone(), &sink)?),
        None => None,
    };
    // Live board state, dashboard/metrics/health over HTTP, silent-board alerts (issue 13).
    let boards = Arc::new(crate::boards::Boards::new(&config.boards, &config.alerts));
    match boards.load_previous_run(&config.csv_path) {
        Ok(n) if n > 0 => log::debug!("Listed {n} boards from the end of the CSV as not seen since start."),
        Ok(_) => {}
        Err(e) => log::warn!(
            "Cannot read the end of {} to list earlier boards: {e}. The dashboard shows boards as they report.",
            config.csv_path.display()
        ),
    }
    let http = match config.http.listen {
        Some(addr) => {
            let state = Arc::new(crate::http::HttpState {
                boards: Arc::clone(&boards),
                stats: Arc::clone(&stats),
                sink: Arc::clone(&sink),
                csv_path: config.csv_path.clone(),
                sheets: uploader.is_some(),
                ready_upload_stall: config.http.ready_upload_stall,
                metrics_max_boards: config.http.metrics_max_boards,
                max_event_clients: config.http.max_event_clients,
                started_unix_ms: crate::boards::unix_ms(std::time::SystemTime::now()),
                csv_at_start: sink.position(),
                event_clients: Default::default(),
                event_cache: Default::default(),
            });
            Some(crate::http::start(addr, state, &shutdown).map_err(|e| {
                Error::startup(
                    format!("listen on {addr} for the dashboard (http.listen; \"\" turns it off)"),
                    e,
                )
            })?)
        }
        None => None,
    };
    let alerts = crate::alerts::start(Arc::clone(&boards), &config.alerts, &shutdown)
        .map_err(|e| Error::startup("start the board-watch thread", e))?;

    let listener = server::bind(config.listen, config.listen_backlog).map_err(|e| {
        Error::startup(
            format!(
                "listen on {} (is another sensorlog or program using this port?)",
                config.listen
            ),
            e,
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::startup("read the listening address", e))?;
    shutdown.set_wake_addr(local);
    log::info!(
        "Listening on {local}. Appending readings to {} ({} rows already there, fsync {}). Limits: {} boards, lines up to {} bytes, idle timeout {} s. Google Sheets: {}.",
        config.csv_path.display(),
        report.rows,
        match config.fsync {
            Fsync::Always => "always".to_string(),
            Fsync::Interval(d) => format!("every {} ms", d.as_millis()),
            Fsync::Never => "never".to_string(),
        },
        config.max_connections,
        config.max_line_bytes,
        config.idle_timeout.as_secs(),
        match &config.sheets {
            Some(s) => format!("spreadsheet {} tab {:?}", s.spreadsheet_id, s.tab),
            None => "off".to_string(),
        }
    );
    match &http {
        Some(h) => log::info!(
            "Dashboard at http://{}/ (also /metrics, /healthz, /readyz, /api/boards).",
            h.addr
        ),
        None => log::info!("Dashboard and metrics off (http.listen = \"\")."),
    }

    let shared = Arc::new(ConnectionContext {
        sink: Arc::clone(&sink),
        stats: Arc::clone(&stats),
        max_line_bytes: config.max_line_bytes,
        idle_timeout: config.idle_timeout,
        line_timeout: config.line_timeout,
        write_errors: crate::ratelog::ByCause::new(crate::ratelog::DEFAULT_EVERY, 64),
        bad_hellos: crate::ratelog::RateLimitedLog::new(crate::ratelog::DEFAULT_EVERY),
        shutdown: Arc::clone(&shutdown),
        rows_for_uploader: uploader.is_some(),
        csv_path: config.csv_path.clone(),
        boards: Some(Arc::clone(&boards)),
    });
    let conns = Connections::new(
        config.max_connections,
        config.max_connections_per_ip,
        Arc::clone(&stats),
    );
    let mut background = Vec::new();
    {
        // csv-maintenance: the interval fsync, and noticing (within a second, or at
        // once on SIGHUP) that the CSV was moved or deleted, to reopen it.
        let (sink, shutdown, stats) = (Arc::clone(&sink), Arc::clone(&shutdown), Arc::clone(&stats));
        let fsync_every = match config.fsync {
            Fsync::Interval(every) => Some(every),
            _ => None,
        };
        let tick = fsync_every.map_or(PATH_CHECK_EVERY, |e| e.min(PATH_CHECK_EVERY));
        background.push(spawn("csv-maintenance", move || {
            let mut hangups = shutdown.hangups();
            let (mut last_sync, mut last_check) = (Instant::now(), Instant::now());
            let fsync_errors = crate::ratelog::RateLimitedLog::new(crate::ratelog::DEFAULT_EVERY);
            loop {
                let stopping = shutdown.sleep(tick);
                if fsync_every.is_some_and(|e| stopping || last_sync.elapsed() >= e) {
                    last_sync = Instant::now();
                    let before = sink.durable_position();
                    let synced = sink.sync_if_dirty();
                    if sink.durable_position() != before {
                        // For /metrics (issue 13): only fsyncs that happened.
                        stats.csv_fsync_seconds.observe(last_sync.elapsed());
                    }
                    if let Err(e) = synced {
                        fsync_errors.log(|n| log::error!(
                            "{e} ({n} failed fsyncs so far). Rows written since the last fsync could be lost on power failure; check the disk."
                        ));
                    }
                }
                if stopping {
                    break;
                }
                let hup = shutdown.hangups();
                if hup != hangups || last_check.elapsed() >= PATH_CHECK_EVERY {
                    last_check = Instant::now();
                    if let Err(e) = sink.check_path(hup != hangups) {
                        fsync_errors.log(|n| log::error!(
                            "Cannot reopen the CSV file after it was moved or deleted: {e} ({n} errors so far). Readings cannot be written until this is fixed; boards using acknowledgements will resend."
                        ));
                    }
                    hangups = hup;
                }
            }
        })?);
    }
    if let Some(every) = config.stats_interval {
        let (stats, shutdown, sink) = (Arc::clone(&stats), Arc::clone(&shutdown), Arc::clone(&sink));
        let sheets = uploader.is_some();
        background.push(spawn("stats", move || {
            let mut before = stats.snapshot();
            let mut at = Instant::now();
            while !shutdown.sleep(every) {
                let now = stats.snapshot();
                let (remembered, forgotten) = sink.dedup_boards();
                log::info!(
                    "{} Resend memory: {remembered} boards ({forgotten} least recently seen forgotten, dedup.max_boards).",
                    Stats::summary(&now, &before, at.elapsed(), sheets)
                );
                (before, at) = (now, Instant::now());
            }
        })?);
    }

    server::accept_loop(&listener, &shared, &conns, &shutdown, config.thread_stack_bytes);
    drop(listener);

    // Ordered shutdown; see the module docs.
    log::info!("Shutting down: closing {} board connections.", conns.len());
    conns.close_reads();
    let left = conns.wait_empty(config.shutdown_grace);
    if left > 0 {
        log::warn!(
            "{left} boards were still sending after {} s (server.shutdown_grace_secs); closing the CSV without waiting for them.",
            config.shutdown_grace.as_secs()
        );
    }
    sink.close()?;
    if let Some(p) = &pg_sink {
        p.stop_soon(); // runs its shutdown time alongside the uploader's
    }
    alerts.finish();
    if let Some(h) = http {
        h.stop();
    }
    if let Some(u) = uploader {
        u.finish(&sink);
    }
    if let Some(p) = pg_sink {
        p.finish();
    }
    for h in background {
        let _ = h.join();
    }
    let (rows, _) = sink.position();
    let s = stats.snapshot();
    log::info!(
        "Stopped cleanly: {} readings ({} rows) written in this run; {} has {rows} rows.",
        s.readings,
        s.rows_written,
        config.csv_path.display()
    );
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| Error::startup(format!("start the {name} thread"), e))
}

/// Each board holds one file descriptor; raise the soft limit to the hard one.
fn raise_open_files_limit(max_connections: usize) {
    let wanted = max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => log::warn!(
            "The open-files limit is {limit}, below server.max_connections + 64 = {wanted}; boards beyond it will be refused. Raise it with `ulimit -n` or LimitNOFILE= in the systemd unit."
        ),
        Ok(_) => {}
        Err(e) => log::warn!("Cannot read or raise the open-files limit: {e}."),
    }
}
