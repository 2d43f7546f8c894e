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
            crate::sink::csv::encode::COLUMNS,
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

    let security = Security::start(&config)?;
    let listen_on = |addr: std::net::SocketAddr| {
        let l = server::bind(addr, config.listen_backlog).map_err(|e| {
            Error::startup(
                format!("listen on {addr} (is another sensorlog or program using this port?)"),
                e,
            )
        })?;
        let local = l
            .local_addr()
            .map_err(|e| Error::startup("read the listening address", e))?;
        Ok::<_, Error>((l, local))
    };
    let tls_listener = match &security.tls {
        Some(acceptor) => Some((
            listen_on(config.tls.as_ref().map_or(config.listen, |t| t.listen))?,
            Arc::clone(acceptor),
        )),
        None => None,
    };
    // The main thread runs the plain listener, or the TLS one when plain TCP is off.
    let (listener, local, main_tls, extra_tls) = match (config.plain_tcp, tls_listener) {
        (true, extra) => {
            let (l, local) = listen_on(config.listen)?;
            (l, local, None, extra)
        }
        (false, Some(((l, local), acceptor))) => (l, local, Some(acceptor), None),
        (false, None) => unreachable!("config refuses a daemon with no listener"),
    };
    shutdown.set_wake_addr(local);
    security.announce(local, main_tls.is_some(), extra_tls.as_ref().map(|((_, a), _)| *a));
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
        gate: Arc::clone(&security.gate),
        doorman: Arc::clone(&security.doorman),
        boards: Some(Arc::clone(&boards)),
    });
    let conns = Connections::new(
        config.max_connections,
        config.max_connections_per_ip,
        Arc::clone(&stats),
    );
    let mut background = Vec::new();
    if let Some(store) = &security.tokens {
        background.push(
            store
                .spawn_watcher(Arc::clone(&shutdown))
                .map_err(|e| Error::startup("start the tokens-watch thread", e))?,
        );
    }
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
                    if let Err(e) = sink.check_path() {
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

    let tls_accept = match extra_tls {
        Some(((l, tls_local), acceptor)) => {
            let (shared, conns, shutdown) = (Arc::clone(&shared), Arc::clone(&conns), Arc::clone(&shutdown));
            let stack = config.thread_stack_bytes;
            let h = spawn("accept-tls", move || {
                server::accept_loop(&l, &shared, &conns, &shutdown, stack, Some(&acceptor));
            })?;
            Some((h, tls_local))
        }
        None => None,
    };
    server::accept_loop(
        &listener,
        &shared,
        &conns,
        &shutdown,
        config.thread_stack_bytes,
        main_tls.as_ref(),
    );
    drop(listener);
    if let Some((h, tls_local)) = tls_accept {
        // Wake the TLS accept loop the way the signal handler woke this one.
        crate::server::wake_listener(tls_local);
        let _ = h.join();
    }

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
    security.report();
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

/// Tokens, allowlist and TLS, set up before the listeners open.
struct Security {
    tokens: Option<Arc<crate::auth::tokens::TokenStore>>,
    gate: Arc<crate::auth::session::Gate>,
    doorman: Arc<crate::server::allow::Doorman>,
    tls: Option<Arc<crate::server::tls::TlsAcceptor>>,
}

impl Security {
    fn start(config: &Config) -> Result<Security> {
        let tokens = match &config.auth.tokens_file {
            Some(p) => Some(
                crate::auth::tokens::TokenStore::open(p).map_err(|e| Error::startup("load the device tokens", e))?,
            ),
            None => None,
        };
        let gate = crate::auth::session::Gate::new(tokens.clone(), config.auth.required, config.auth.backoff);
        let tls = match &config.tls {
            Some(t) => {
                let (server_config, generated) =
                    crate::server::tls::server_config(t).map_err(|e| Error::startup("set up TLS", e))?;
                if let Some(p) = generated {
                    log::info!(
                        "Generated a self-signed TLS certificate {} (key {}, mode 0600). Boards pin it: `sensorlog tls fingerprint`.",
                        p.display(),
                        t.key_file.display()
                    );
                }
                Some(Arc::new(crate::server::tls::TlsAcceptor::new(t, server_config)))
            }
            None => None,
        };
        Ok(Security {
            tokens,
            gate: Arc::new(gate),
            doorman: Arc::new(crate::server::allow::Doorman::new(config.access.clone())),
            tls,
        })
    }

    /// One line about TLS, and the once-at-start warning about an open door.
    fn announce(&self, main: std::net::SocketAddr, main_is_tls: bool, extra_tls: Option<std::net::SocketAddr>) {
        if let Some(a) = extra_tls.or(main_is_tls.then_some(main)) {
            log::info!("Listening for TLS on {a} (TLS 1.2 and 1.3).");
        }
        if let Some(store) = &self.tokens {
            log::info!(
                "Device tokens from {}: {} devices; {}.",
                store.path().display(),
                store.current().entries.len(),
                if self.gate.is_required() {
                    "boards must authenticate before anything they send is written"
                } else {
                    "auth.required = false: boards without a token may write too"
                }
            );
        }
        let addrs: Vec<_> = [Some(main), extra_tls].into_iter().flatten().collect();
        if let Some(notice) = open_door_notice(self.tokens.is_some(), &addrs) {
            log::info!("{notice}");
        }
        if !self.doorman.list().is_everyone() {
            let l = self.doorman.list();
            log::info!(
                "Peers allowed: {:?}; denied: {:?} (server.allow, server.deny).",
                l.allow,
                l.deny
            );
        }
    }

    /// Refusal counts at shutdown, when there were any.
    fn report(&self) {
        let denied = self.doorman.refused.load(std::sync::atomic::Ordering::Relaxed);
        if denied > 0 {
            log::info!("Refused {denied} connections from peers outside server.allow or in server.deny.");
        }
        if let Some(s) = self.gate.summary() {
            log::info!("{s}");
        }
        if let Some(s) = self.tls.as_ref().and_then(|t| t.summary()) {
            log::info!("{s}");
        }
    }
}

/// The once-at-start notice that anyone can write: no tokens file, and some listener
/// reachable from beyond this machine.
fn open_door_notice(tokens: bool, addrs: &[std::net::SocketAddr]) -> Option<String> {
    let exposed: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    (!tokens && !exposed.is_empty()).then(|| {
        format!(
            "Accepting readings from anyone who can reach {}, under any device name: no auth.tokens_file is set. See docs/security.md before exposing this beyond a home network.",
            exposed.join(" or ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_door_notice_only_without_tokens_beyond_loopback() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(open_door_notice(false, &[a("0.0.0.0:8090")])
            .unwrap()
            .contains("0.0.0.0:8090"));
        assert!(open_door_notice(false, &[a("127.0.0.1:8090"), a("[::]:8443")]).is_some());
        assert!(open_door_notice(false, &[a("127.0.0.1:8090"), a("[::1]:8443")]).is_none());
        assert!(open_door_notice(true, &[a("0.0.0.0:8090")]).is_none());
    }
}
