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
//!    what is pending and save its cursor (the PostgreSQL sink runs its
//!    `postgres.shutdown_timeout_secs` alongside);
//! 5. exit 0. A second signal exits at once with code 130.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::{self, connection::ConnectionContext, limits::Connections};
use crate::shutdown::Shutdown;
use crate::sink::csv::settings::Fsync;
use crate::sink::csv::CsvSink;
use crate::sink::postgres::PgSink;
use crate::sink::sheets::Uploader;
use crate::stats::Stats;

/// How often the CSV's path is checked against the open file.
const PATH_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub fn serve(config: Config) -> Result<()> {
    raise_open_files_limit(config.server.max_connections);
    let (sink, rows_at_start) = open_csv(&config)?;
    let stats = Arc::new(Stats::default());
    let shutdown = Shutdown::new();
    shutdown
        .install_signal_handler()
        .map_err(|e| Error::startup("install the Ctrl-C/SIGTERM handler", e))?;
    let sinks = Sinks::start(&config, &sink, &stats)?;
    // Live board state, dashboard/metrics/health over HTTP, silent-board alerts (issue 13).
    let boards = start_boards(&config);
    let http = start_http(&config, &boards, &stats, &sink, sinks.uploader.is_some(), &shutdown)?;
    let alerts = crate::fleet::alerts::start(Arc::clone(&boards), &config.alerts, &shutdown)
        .map_err(|e| Error::startup("start the board-watch thread", e))?;
    let security = Security::start(&config)?;
    let listeners = Listeners::bind(&config, &security)?;
    shutdown.set_wake_addr(listeners.local);
    security.announce(
        listeners.local,
        listeners.main_tls.is_some(),
        listeners.extra_tls.as_ref().map(|((_, a), _)| *a),
    );
    announce(&config, listeners.local, rows_at_start, http.as_ref());
    let context = connection_context(
        &config,
        &sink,
        &stats,
        &shutdown,
        &security,
        &boards,
        sinks.uploader.is_some(),
    );
    let conns = Connections::new(
        config.server.max_connections,
        config.server.max_connections_per_ip,
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
    background.push(start_csv_maintenance(&config, &sink, &shutdown, &stats)?);
    background.extend(start_stats(
        &config,
        &sink,
        &shutdown,
        &stats,
        sinks.uploader.is_some(),
    )?);
    listeners.serve(&config, &context, &conns, &shutdown)?;

    // Ordered shutdown; see the module docs.
    shut_down(&config, &conns, &sink, sinks, alerts, http)?;
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
        config.csv.path.display()
    );
    Ok(())
}

/// Opens the CSV (start-up recovery included) and says what was repaired; returns the
/// sink and the rows the file held.
fn open_csv(config: &Config) -> Result<(Arc<CsvSink>, u64)> {
    let (sink, report) = CsvSink::open(&config.csv.path, config.csv.fsync, config.csv.dedup)?;
    if let Some(bytes) = report.torn_bytes {
        log::warn!(
            "Repaired {}: cut a torn last row ({bytes} bytes) left by a crash or power cut; no complete row was removed. Boards using acknowledgements will resend that reading.",
            config.csv.path.display()
        );
    }
    if report.header_newline_added {
        log::warn!(
            "Repaired {}: its header had no newline; added one.",
            config.csv.path.display()
        );
    }
    if report.malformed_rows > 0 {
        log::warn!(
            "{} has {} rows without the expected {} columns in its last {} bytes (edited by hand?). They are kept as they are.",
            config.csv.path.display(),
            report.malformed_rows,
            crate::sink::csv::encode::COLUMNS,
            report.tail_scanned
        );
    }
    Ok((Arc::new(sink), report.rows))
}

/// The consumers of the CSV, each on its own thread (see [`crate::sink::follower`]).
struct Sinks {
    uploader: Option<Uploader>,
    postgres: Option<PgSink>,
}

impl Sinks {
    /// Starts them before any board is accepted, so the Sheets cursor check sees the
    /// file as the last run left it.
    fn start(config: &Config, sink: &Arc<CsvSink>, stats: &Arc<Stats>) -> Result<Sinks> {
        let uploader = match &config.sheets {
            Some(sc) => Some(Uploader::start(sc.clone(), sink, Arc::clone(stats))?),
            None => None,
        };
        let postgres = match &config.postgres {
            Some(pc) => Some(PgSink::start(pc.clone(), sink)?),
            None => None,
        };
        Ok(Sinks { uploader, postgres })
    }
}

fn start_boards(config: &Config) -> Arc<crate::fleet::boards::Boards> {
    let boards = Arc::new(crate::fleet::boards::Boards::new(&config.boards, &config.alerts));
    match boards.load_previous_run(&config.csv.path) {
        Ok(n) if n > 0 => log::debug!("Listed {n} boards from the end of the CSV as not seen since start."),
        Ok(_) => {}
        Err(e) => log::warn!(
            "Cannot read the end of {} to list earlier boards: {e}. The dashboard shows boards as they report.",
            config.csv.path.display()
        ),
    }
    boards
}

fn start_http(
    config: &Config,
    boards: &Arc<crate::fleet::boards::Boards>,
    stats: &Arc<Stats>,
    sink: &Arc<CsvSink>,
    sheets: bool,
    shutdown: &Arc<Shutdown>,
) -> Result<Option<crate::fleet::http::HttpServer>> {
    Ok(match config.http.listen {
        Some(addr) => {
            let state = Arc::new(crate::fleet::http::state::HttpState {
                boards: Arc::clone(boards),
                stats: Arc::clone(stats),
                sink: Arc::clone(sink),
                csv_path: config.csv.path.clone(),
                sheets,
                config: config.http.clone(),
                started_unix_ms: crate::fleet::boards::unix_ms(std::time::SystemTime::now()),
                csv_at_start: sink.position(),
                event_clients: Default::default(),
                refused_connections: Default::default(),
                builders: Default::default(),
                event_cache: Default::default(),
            });
            Some(crate::fleet::http::start(addr, state, shutdown).map_err(|e| {
                Error::startup(
                    format!(
                        "listen on {addr} for the dashboard (is another sensorlog or program using this port? \
                         choose another with --http-listen ADDR:PORT or http.listen in the config file; \"\" turns it off)"
                    ),
                    e,
                )
            })?)
        }
        None => None,
    })
}

/// The listening sockets: the main thread's (plain, or TLS when plain TCP is off) and
/// a second TLS one next to the plain one.
struct Listeners {
    main: std::net::TcpListener,
    local: std::net::SocketAddr,
    main_tls: Option<Arc<crate::server::tls_listener::TlsAcceptor>>,
    extra_tls: Option<(Bound, Arc<crate::server::tls_listener::TlsAcceptor>)>,
}

/// A listening socket and the address it got.
type Bound = (std::net::TcpListener, std::net::SocketAddr);

impl Listeners {
    fn bind(config: &Config, security: &Security) -> Result<Listeners> {
        // `choose`: where to pick another address, flag first (a port clash names it).
        let listen_on = |addr: std::net::SocketAddr, choose: &str| {
            let l = server::bind(addr, config.server.listen_backlog).map_err(|e| {
                Error::startup(
                    format!(
                        "listen on {addr} (is another sensorlog or program using this port? choose another with {choose})"
                    ),
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
                listen_on(
                    config.tls.as_ref().map_or(config.server.listen, |t| t.listen),
                    "tls.listen in the config file",
                )?,
                Arc::clone(acceptor),
            )),
            None => None,
        };
        // The main thread runs the plain listener, or the TLS one when plain TCP is off.
        let (main, local, main_tls, extra_tls) = match (config.server.plain_tcp, tls_listener) {
            (true, extra) => {
                let (l, local) = listen_on(
                    config.server.listen,
                    "--listen ADDR:PORT or server.listen in the config file",
                )?;
                (l, local, None, extra)
            }
            (false, Some(((l, local), acceptor))) => (l, local, Some(acceptor), None),
            (false, None) => unreachable!("config refuses a daemon with no listener"),
        };
        Ok(Listeners {
            main,
            local,
            main_tls,
            extra_tls,
        })
    }

    /// Accepts boards until shutdown: the TLS listener on an `accept-tls` thread, the
    /// main one on this thread.
    fn serve(
        self,
        config: &Config,
        context: &Arc<ConnectionContext>,
        conns: &Arc<Connections>,
        shutdown: &Arc<Shutdown>,
    ) -> Result<()> {
        let tls_accept = match self.extra_tls {
            Some(((l, tls_local), acceptor)) => {
                let (context, conns, shutdown) = (Arc::clone(context), Arc::clone(conns), Arc::clone(shutdown));
                let stack = config.server.thread_stack_bytes;
                let proxy = config.server.proxy.clone();
                let h = spawn("accept-tls", move || {
                    server::accept_loop(&l, &context, &conns, &shutdown, stack, Some(&acceptor), &proxy);
                })?;
                Some((h, tls_local))
            }
            None => None,
        };
        server::accept_loop(
            &self.main,
            context,
            conns,
            shutdown,
            config.server.thread_stack_bytes,
            self.main_tls.as_ref(),
            &config.server.proxy,
        );
        drop(self.main);
        if let Some((h, tls_local)) = tls_accept {
            // Wake the TLS accept loop the way the signal handler woke this one.
            crate::shutdown::wake_listener(tls_local);
            let _ = h.join();
        }
        Ok(())
    }
}

/// The start-up line: where it listens, the CSV, the limits, and the dashboard.
fn announce(config: &Config, local: std::net::SocketAddr, rows: u64, http: Option<&crate::fleet::http::HttpServer>) {
    if config.server.proxy.is_on() {
        log::info!(
            "PROXY protocol {} from {:?} (server.trusted_proxies): boards behind them are known by their real address; others connect directly, without a header.",
            config.server.proxy.mode.as_str(),
            config.server.proxy.trusted
        );
    }
    log::info!(
        "Listening on {local}. Appending readings to {} ({} rows already there, fsync {}). Limits: {} boards, lines up to {} bytes, idle timeout {} s. Google Sheets: {}.",
        config.csv.path.display(),
        rows,
        match config.csv.fsync {
            Fsync::Always => "always".to_string(),
            Fsync::Interval(d) => format!("every {} ms", d.as_millis()),
            Fsync::Never => "never".to_string(),
        },
        config.server.max_connections,
        config.server.max_line_bytes,
        config.server.idle_timeout.as_secs(),
        match &config.sheets {
            Some(s) => format!("spreadsheet {} tab {:?}", s.spreadsheet_id, s.tab),
            None => "off".to_string(),
        }
    );
    match http {
        Some(h) => log::info!(
            "Dashboard at http://{}/ (also /metrics, /healthz, /readyz, /api/boards).",
            h.addr()
        ),
        None => log::info!("Dashboard and metrics off (http.listen = \"\")."),
    }
}

fn connection_context(
    config: &Config,
    sink: &Arc<CsvSink>,
    stats: &Arc<Stats>,
    shutdown: &Arc<Shutdown>,
    security: &Security,
    boards: &Arc<crate::fleet::boards::Boards>,
    rows_for_uploader: bool,
) -> Arc<ConnectionContext> {
    Arc::new(ConnectionContext {
        sink: Arc::clone(sink),
        stats: Arc::clone(stats),
        max_line_bytes: config.server.max_line_bytes,
        idle_timeout: config.server.idle_timeout,
        line_timeout: config.server.line_timeout,
        write_errors: crate::ratelog::ByCause::new(crate::ratelog::DEFAULT_EVERY, 64),
        bad_hellos: crate::ratelog::RateLimitedLog::new(crate::ratelog::DEFAULT_EVERY),
        shutdown: Arc::clone(shutdown),
        rows_for_uploader,
        csv_path: config.csv.path.clone(),
        gate: Arc::clone(&security.gate),
        doorman: Arc::clone(&security.doorman),
        boards: Some(Arc::clone(boards)),
    })
}

/// `csv-maintenance`: the interval fsync, and noticing (within a second, or at once on
/// SIGHUP) that the CSV was moved or deleted, to reopen it.
fn start_csv_maintenance(
    config: &Config,
    sink: &Arc<CsvSink>,
    shutdown: &Arc<Shutdown>,
    stats: &Arc<Stats>,
) -> Result<JoinHandle<()>> {
    // csv-maintenance: the interval fsync, and noticing (within a second, or at
    // once on SIGHUP) that the CSV was moved or deleted, to reopen it.
    let (sink, shutdown, stats) = (Arc::clone(sink), Arc::clone(shutdown), Arc::clone(stats));
    let fsync_every = match config.csv.fsync {
        Fsync::Interval(every) => Some(every),
        _ => None,
    };
    let tick = fsync_every.map_or(PATH_CHECK_EVERY, |e| e.min(PATH_CHECK_EVERY));
    spawn("csv-maintenance", move || {
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
    })
}

/// `stats`: the periodic INFO summary (`log.stats_interval_secs`).
fn start_stats(
    config: &Config,
    sink: &Arc<CsvSink>,
    shutdown: &Arc<Shutdown>,
    stats: &Arc<Stats>,
    sheets: bool,
) -> Result<Option<JoinHandle<()>>> {
    let Some(every) = config.stats_interval else {
        return Ok(None);
    };
    let (stats, shutdown, sink) = (Arc::clone(stats), Arc::clone(shutdown), Arc::clone(sink));
    spawn("stats", move || {
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
    })
    .map(Some)
}

/// Steps 2 to 4 of the shutdown order (see the module docs): boards, the CSV, then the
/// threads that read it, each within its own time.
fn shut_down(
    config: &Config,
    conns: &Connections,
    sink: &Arc<CsvSink>,
    sinks: Sinks,
    alerts: crate::fleet::alerts::Alerts,
    http: Option<crate::fleet::http::HttpServer>,
) -> Result<()> {
    log::info!("Shutting down: closing {} board connections.", conns.len());
    conns.close_reads();
    let left = conns.wait_empty(config.server.shutdown_grace);
    if left > 0 {
        log::warn!(
            "{left} boards were still sending after {} s (server.shutdown_grace_secs); closing the CSV without waiting for them.",
            config.server.shutdown_grace.as_secs()
        );
    }
    sink.close()?;
    if let Some(p) = &sinks.postgres {
        p.stop_soon(); // runs its shutdown time alongside the uploader's
    }
    alerts.finish();
    if let Some(h) = http {
        h.stop();
    }
    if let Some(u) = sinks.uploader {
        u.finish(sink);
    }
    if let Some(p) = sinks.postgres {
        p.finish();
    }
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
    tls: Option<Arc<crate::server::tls_listener::TlsAcceptor>>,
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
                    crate::server::tls_listener::server_config(t).map_err(|e| Error::startup("set up TLS", e))?;
                if let Some(p) = generated {
                    log::info!(
                        "Generated a self-signed TLS certificate {} (key {}, mode 0600). Boards pin it: `sensorlog tls fingerprint`.",
                        p.display(),
                        t.key_file.display()
                    );
                }
                Some(Arc::new(crate::server::tls_listener::TlsAcceptor::new(
                    t,
                    server_config,
                )))
            }
            None => None,
        };
        Ok(Security {
            tokens,
            gate: Arc::new(gate),
            doorman: Arc::new(crate::server::allow::Doorman::new(config.server.access.clone())),
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
