//! The `sensorlog` binary: parse the command line, set up logging, run, and map the
//! outcome to an exit code (0 ok, 1 runtime failure, 2 configuration to fix).

use clap::Parser;
use log::{Log, Metadata, Record};

/// Crates whose debug/trace output can carry secrets (yup-oauth2 logs access tokens at
/// debug; HTTP and TLS stacks can log headers): capped at info whatever RUST_LOG says.
const SECRET_BEARING: &[&str] = &[
    "yup_oauth2",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_postgres",
    "postgres",
];

struct SecretSafe(env_logger::Logger);

impl SecretSafe {
    fn allowed(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
            || !SECRET_BEARING
                .iter()
                .any(|c| m.target() == *c || m.target().starts_with(&format!("{c}::")))
    }
}

impl Log for SecretSafe {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.allowed(m) && self.0.enabled(m)
    }

    fn log(&self, r: &Record<'_>) {
        if self.allowed(r.metadata()) {
            self.0.log(r);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn main() {
    let cli = sensorlog::cli::Cli::parse();
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(SecretSafe(logger))).is_ok() {
        log::set_max_level(max);
    }
    if let Err(e) = sensorlog::run(cli) {
        eprintln!("sensorlog: error: {e}");
        std::process::exit(e.exit_code());
    }
}
