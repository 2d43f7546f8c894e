//! The `sensorlog` binary: parse the command line, set up logging, run, and map the
//! outcome to an exit code (0 ok, 1 runtime failure, 2 configuration to fix).

use clap::Parser;

fn main() {
    let cli = sensorlog::cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    if let Err(e) = sensorlog::run(cli) {
        eprintln!("sensorlog: error: {e}");
        std::process::exit(e.exit_code());
    }
}
