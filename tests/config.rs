//! Configuration: defaults with no file, file keys, flags beating the file, and errors
//! that name the key. Also keeps the documented config in step with the code.

use std::time::Duration;

use crate::util::daemon::{read_csv, send_lines, wait_until};
use crate::util::{Daemon, TestDir};

/// Runs the binary to completion (killed after 20 s); returns its exit code and output.
fn run(dir: &TestDir, args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut d = Daemon::spawn(dir, &args, "info");
    let status = d.wait_exit(Duration::from_secs(20));
    // Give the output readers a moment to drain the closed pipes.
    std::thread::sleep(Duration::from_millis(50));
    let out = d.log_text();
    (status.and_then(|s| s.code()).unwrap_or(-1), out)
}

#[test]
fn no_config_at_all_uses_the_embedded_defaults() {
    let dir = TestDir::new("config-defaults");
    // Only the port is changed, so the test does not need 8090 free.
    let mut d = Daemon::spawn(&dir, &["serve".into(), "--listen".into(), "127.0.0.1:0".into()], "info");
    let line = d
        .wait_for_log("Listening on", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{}", d.log_text()));
    assert!(line.contains("data/readings.csv"), "{line}");
    assert!(line.contains("Google Sheets: off"), "{line}");
    assert!(dir.join("data/readings.csv").exists());
    d.shutdown();
}

#[test]
fn periodic_summary_reports_boards_readings_rows_and_errors() {
    let dir = TestDir::new("config-stats");
    let mut d = Daemon::start(&dir, &["--stats-interval-secs", "1", "--max-line-bytes", "16"]);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &["t=1 u=2".into(), "t=2".into(), "this line is far too long".into()],
    );
    let line = d
        .wait_for_log("Stats: 1 boards connected", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{}", d.log_text()));
    assert!(
        line.contains("readings/min") && line.contains("3 rows written"),
        "{line}"
    );
    assert!(line.contains("1 errors (1 lines too long"), "{line}");
    drop(s);
    d.shutdown();
}

#[test]
fn unknown_key_is_refused_naming_it() {
    let dir = TestDir::new("config-unknown");
    dir.write("c.toml", "[server]\nmax_conections = 10\n");
    let (code, out) = run(&dir, &["serve", "--config", "c.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("max_conections") && out.contains("c.toml"), "{out}");
}

#[test]
fn bad_values_are_refused_naming_key_and_reason() {
    let dir = TestDir::new("config-bad");
    for (toml, needle) in [
        (
            "[server]\nmax_line_bytes = 0\n",
            "server.max_line_bytes: must be between 16 and",
        ),
        ("[server]\nlisten = \"8090\"\n", "server.listen"),
        ("[csv]\nfsync = \"sometimes\"\n", "sometimes"),
        ("[server]\nidle_timeout_secs = \"ten\"\n", "idle_timeout_secs"),
        ("[sheets]\nkey_file = \"k.json\"\n", "sheets.spreadsheet"),
        ("not toml at all [", "c.toml"),
    ] {
        dir.write("c.toml", toml);
        let (code, out) = run(&dir, &["serve", "--config", "c.toml", "--csv", "r.csv"]);
        assert_eq!(code, 2, "{toml}: {out}");
        assert!(out.contains(needle), "{toml}: expected {needle:?} in {out}");
    }
    let (code, out) = run(&dir, &["serve", "--config", "missing.toml"]);
    assert_eq!(code, 2);
    assert!(out.contains("missing.toml") && out.contains("cannot read"), "{out}");
}

#[test]
fn flags_beat_the_file_and_file_keys_apply() {
    let dir = TestDir::new("config-precedence");
    dir.write(
        "c.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_line_bytes = 20\n[csv]\npath = \"from-file.csv\"\n",
    );
    let args: Vec<String> = [
        "serve",
        "--config",
        "c.toml",
        "--listen",
        "127.0.0.1:0",
        "--csv",
        "from-flag.csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut d = Daemon::start_raw(&dir, &args);
    let mut s = d.connect();
    send_lines(&mut s, &["t=short".into(), format!("t={}", "x".repeat(30))]);
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || d.log_contains("disconnected")));
    d.shutdown();
    assert!(!dir.join("from-file.csv").exists());
    let rows = read_csv(&dir.join("from-flag.csv"));
    assert_eq!(
        rows.len(),
        2,
        "the 32-byte line is over the file's limit of 20: {rows:?}"
    );
}

#[test]
fn help_and_version() {
    let dir = TestDir::new("config-help");
    let (code, out) = run(&dir, &["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out) = run(&dir, &["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--listen",
        "--csv",
        "--fsync",
        "--fsync-interval-ms",
        "--max-connections",
        "--max-line-bytes",
        "--idle-timeout-secs",
        "--listen-backlog",
        "--thread-stack-kib",
        "--shutdown-grace-secs",
        "--stats-interval-secs",
        "--sheets-key-file",
        "--spreadsheet",
        "--http-listen",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

/// Every key the code accepts is in the commented example file and in the README's
/// config reference; and the example file itself is valid.
#[test]
fn documented_config_matches_the_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/config/sensorlog.toml")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    sensorlog::config::parse_file(&example).expect("config/sensorlog.toml parses");
    for key in sensorlog::config::ALL_KEYS {
        let (section, name) = key.split_once('.').unwrap();
        assert!(
            example.contains(&format!("[{section}]")),
            "{section} missing from config/sensorlog.toml"
        );
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{name} ="))),
            "{key} missing from config/sensorlog.toml"
        );
        assert!(
            readme.contains(&format!("`{key}`")),
            "{key} missing from the README's config reference"
        );
    }
}
