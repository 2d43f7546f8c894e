//! Command-line arguments: the raw, unvalidated layer of configuration.
//!
//! Doc comments on each flag are the `--help` text. Every `serve` flag has a key in
//! the TOML config file; a flag, when given, beats the file. Validation happens once,
//! in [`crate::config`], not here.
//!
//! Because these comments are read by people at a terminal, they use the plain
//! brackets of `--help` conventions (`[file: ...]`, `[::]:8090`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sensorlog",
    version,
    about = "Collects readings from Wi-Fi sensor boards over TCP into a CSV file, and mirrors them into a Google Sheet.",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start; boxing would buy nothing
pub enum Command {
    /// Run the daemon in the foreground: listen for boards, append readings to the CSV,
    /// and (if configured) upload them to Google Sheets. Ctrl-C or SIGTERM stops it cleanly.
    Serve(ServeArgs),
    /// Google Sheets set-up helpers.
    #[command(subcommand)]
    Sheets(SheetsCommand),
    /// PostgreSQL sink set-up helpers.
    #[command(subcommand)]
    Postgres(PostgresCommand),
    /// Pretend to be N boards sending readings to a daemon (a load generator, and a way
    /// to see readings arrive without hardware).
    Simulate(SimulateArgs),
    /// Device tokens: who may write readings (auth.tokens_file).
    #[command(subcommand)]
    Token(TokenCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SheetsCommand {
    /// Check the Google Sheets configuration without writing data: read the key file,
    /// get a token, open the spreadsheet, and say what works and what to fix.
    Check(CheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum PostgresCommand {
    /// Check the PostgreSQL sink's configuration without writing data: connect, check
    /// the schema, the privileges and the cursor against the CSV, and say what to fix.
    Check(PostgresCheckArgs),
}

#[derive(Debug, Args)]
pub struct PostgresCheckArgs {
    /// TOML config file with a [postgres] section.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The CSV whose cursor to check [file: csv.path; default data/readings.csv].
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// TOML config file with a [sheets] section.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub sheets: SheetsFlags,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file (see config/sensorlog.toml for every key). Without it, built-in
    /// defaults are used: listen on 0.0.0.0:8090, CSV at data/readings.csv, Sheets off.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on [file: server.listen; default 0.0.0.0:8090].
    /// Use [::]:8090 for IPv6, and port 0 to pick a free port (it is logged).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// CSV file to append readings to; created with its parent directory if missing
    /// [file: csv.path; default data/readings.csv].
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,

    /// When to fsync the CSV: "always" (before each acknowledgement), "interval"
    /// (every --fsync-interval-ms), or "never" (leave it to the OS) [file: csv.fsync;
    /// default interval].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub fsync: Option<FsyncArg>,

    /// Milliseconds between fsyncs with --fsync interval [file: csv.fsync_interval_ms;
    /// default 1000].
    #[arg(long, value_name = "MS")]
    pub fsync_interval_ms: Option<u64>,

    /// Most boards connected at once; the next one gets "ERR too-many-connections" and is
    /// closed [file: server.max_connections; default 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Longest line accepted, in bytes; a longer line is discarded up to its newline and
    /// counted, and the connection carries on [file: server.max_line_bytes; default 4096].
    #[arg(long, value_name = "BYTES")]
    pub max_line_bytes: Option<usize>,

    /// Close a connection that sends nothing for this many seconds
    /// [file: server.idle_timeout_secs; default 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,

    /// Length of the kernel's queue of connections not yet accepted, so that a burst of
    /// boards all get in [file: server.listen_backlog; default 4096; the kernel caps it at
    /// net.core.somaxconn].
    #[arg(long, value_name = "N")]
    pub listen_backlog: Option<u32>,

    /// Stack size of each board's thread, in KiB [file: server.thread_stack_kib; default 128].
    #[arg(long, value_name = "KIB")]
    pub thread_stack_kib: Option<usize>,

    /// On shutdown, how long to let boards' threads finish what they have read
    /// [file: server.shutdown_grace_secs; default 5].
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,

    /// Most connections one address may hold at once, so one client cannot take every
    /// slot [file: server.max_connections_per_ip; default 64].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Close a connection whose line is not finished (no newline) this many seconds after
    /// its first byte [file: server.line_timeout_secs; default 60].
    #[arg(long, value_name = "SECS")]
    pub line_timeout_secs: Option<u64>,

    /// Seconds between the periodic info summary; 0 turns it off
    /// [file: log.stats_interval_secs; default 60].
    #[arg(long, value_name = "SECS")]
    pub stats_interval_secs: Option<u64>,

    /// Address and port of the live dashboard, /metrics, /healthz, /readyz and /api/boards;
    /// "" turns the HTTP server off [file: http.listen; default 127.0.0.1:8091].
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_listen: Option<String>,

    #[command(flatten)]
    pub sheets: SheetsFlags,
}

/// The `[sheets]` keys most often set from the command line.
#[derive(Debug, Args, Default, Clone)]
pub struct SheetsFlags {
    /// Google service-account key (JSON) file; setting it turns Sheets upload on
    /// [file: sheets.key_file].
    #[arg(long, value_name = "FILE")]
    pub sheets_key_file: Option<PathBuf>,

    /// Spreadsheet id, or its full URL pasted from the browser [file: sheets.spreadsheet].
    #[arg(long, value_name = "ID_OR_URL")]
    pub spreadsheet: Option<String>,

    /// Tab to write to; created if missing [file: sheets.tab; default Readings].
    #[arg(long, value_name = "NAME")]
    pub sheets_tab: Option<String>,

    /// Turn Sheets upload off even if the config file sets it up.
    #[arg(long)]
    pub no_sheets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncArg {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `{"device":"sim-1","seq":1,"temp_c":21.5,...}`
    Json,
    /// `device=sim-1 seq=1 temp_c=21.5 ...`
    Kv,
    /// `sim-1 reading 1 temp 21.5` (a free-text line)
    Text,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Daemon address to send to.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR:PORT")]
    pub addr: SocketAddr,

    /// Number of simulated boards (one connection and one thread each).
    #[arg(long, short = 'n', default_value_t = 5)]
    pub boards: usize,

    /// Readings per second per board; 0 sends as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,

    /// Stop after this many readings per board.
    #[arg(long)]
    pub count: Option<u64>,

    /// Stop after this many seconds (default 10 when --count is not given).
    #[arg(long)]
    pub duration: Option<f64>,

    /// Wire format of the readings.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,

    /// Ask for acknowledgements (HELLO ... ack=1) and wait for every ACK.
    #[arg(long)]
    pub ack: bool,

    /// Device name prefix; boards are named PREFIX-1, PREFIX-2, ...
    #[arg(long, default_value = "sim")]
    pub prefix: String,

    /// Extra connections that connect and stay silent (to test many idle boards).
    #[arg(long, default_value_t = 0)]
    pub idle: usize,

    /// Stamp each reading with the time it was sent (`ts`, Unix seconds with
    /// microseconds), so the delay from board to CSV can be read off the `device_time`
    /// column.
    #[arg(long)]
    pub stamp: bool,

    /// Give every reading a device name never used before (PREFIX-N-SEQ): a flood of new
    /// names, as from a misconfigured board or a hostile client (the benchmark's
    /// name-flood workload).
    #[arg(long)]
    pub new_name_per_reading: bool,

    /// Print a one-line JSON summary at the end (for scripts and benchmarks).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a random token for DEVICE, store only its hash, and print it once with the
    /// line to paste into the board's secrets.h. A running daemon picks it up within a
    /// second.
    Add {
        /// The board's device name (as in its HELLO greeting).
        device: String,
        /// Replace DEVICE's existing token (the board must then be given the new one).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        file: TokensFileArgs,
    },
    /// List the devices that have a token (tokens themselves are not stored).
    List(TokensFileArgs),
    /// Remove DEVICE's token; a running daemon refuses it from its next greeting on.
    Revoke {
        device: String,
        #[command(flatten)]
        file: TokensFileArgs,
    },
}

#[derive(Debug, Args)]
pub struct TokensFileArgs {
    /// TOML config file whose auth.tokens_file to use.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The tokens file itself [file: auth.tokens_file].
    #[arg(long, value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Print the SHA-1 and SHA-256 fingerprints of the daemon's certificate, which
    /// boards pin (generating the self-signed one first if configured and missing).
    Fingerprint(FingerprintArgs),
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// TOML config file with a [tls] section.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A PEM certificate file to read instead of the configured one [file: tls.cert_file].
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
}
