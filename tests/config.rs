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
    // The first summary may come before the lines are written (a loaded machine): wait
    // for the one that counts all three rows.
    let line = d
        .wait_for_log("rows written (3 in total)", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{}", d.log_text()));
    assert!(
        line.contains("Stats: 1 boards connected") && line.contains("readings/min"),
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

/// Every key the code accepts is in the commented example file and in the configuration
/// reference (docs/configuration.md, linked from the README); and the example file itself
/// is valid.
#[test]
fn documented_config_matches_the_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/config/sensorlog.toml")).unwrap();
    let reference = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
    sensorlog::config::parse_file(&example).expect("config/sensorlog.toml parses");
    let keys = sensorlog::settings::accepted_keys::<sensorlog::config::FileConfig>();
    assert!(keys.len() > 50, "the walk found the keys: {keys:?}");
    for key in &keys {
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
            reference.contains(&format!("| `{key}` |")),
            "{key} missing from the table in docs/configuration.md"
        );
    }
}

/// Issue 19: a value of the wrong type names the key and the form it takes, from the
/// documented example, instead of the parser's words ("invalid float, expected nothing").
#[test]
fn issue19_type_errors_name_the_key_and_the_expected_form() {
    let dir = TestDir::new("config-types");
    for (toml, needle) in [
        (
            "[server]\nlisten = 0.0.0.0:8090\n",
            "server.listen: expected a string like \"0.0.0.0:8090\"",
        ),
        (
            "[server]\nmax_connections = \"lots\"\n",
            "server.max_connections: expected a whole number like 4096 (no quotes), got \"lots\"",
        ),
        (
            "[csv]\nfsync = true\n",
            "csv.fsync: expected a string like \"interval\"",
        ),
        ("[server]\nallow = \"10.0.0.0/8\"\n", "server.allow: expected a list"),
        (
            "[sheets]\nenabled = \"yes\"\n",
            "sheets.enabled: expected true or false",
        ),
    ] {
        dir.write("c.toml", toml);
        let (code, out) = run(&dir, &["serve", "--config", "c.toml", "--csv", "r.csv"]);
        assert_eq!(code, 2, "{toml}: {out}");
        assert!(out.contains(needle), "{toml}: expected {needle:?} in {out}");
        assert!(out.contains("line 2"), "{toml}: no line number in {out}");
    }
}

/// Issue 19: one rule for relative paths. In a config file they are relative to the file's
/// directory (csv.path here, as auth.tokens_file and the TLS files always were); as flags,
/// to the working directory.
#[test]
fn issue19_relative_paths_in_the_file_are_beside_it_flags_are_from_the_working_directory() {
    let dir = TestDir::new("config-relative");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    dir.write("etc/c.toml", "[csv]\npath = \"from-file.csv\"\n");
    let args = |extra: &[&str]| -> Vec<String> {
        ["serve", "--config", "etc/c.toml", "--listen", "127.0.0.1:0"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let mut d = Daemon::start_raw(&dir, &args(&[]));
    d.shutdown();
    assert!(dir.join("etc/from-file.csv").exists(), "{}", d.log_text());
    assert!(!dir.join("from-file.csv").exists());
    let mut d = Daemon::start_raw(&dir, &args(&["--csv", "from-flag.csv"]));
    d.shutdown();
    assert!(dir.join("from-flag.csv").exists(), "{}", d.log_text());
    assert!(!dir.join("etc/from-flag.csv").exists());
}

/// Issue 19: a spreadsheet without a key file used to turn Sheets off at INFO, silently.
#[test]
fn issue19_spreadsheet_without_key_file_warns_naming_the_missing_key() {
    let dir = TestDir::new("config-sheets-half");
    let mut d = Daemon::start_with_config(
        &dir,
        "[sheets]\nspreadsheet = \"1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdef\"\n",
        &[],
    );
    let log = d.shutdown();
    let warn = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("Google Sheets: off"))
        .unwrap_or_else(|| panic!("no WARN about Sheets being off:\n{log}"));
    assert!(
        warn.contains("sheets.key_file") && warn.contains("--sheets-key-file"),
        "{warn}"
    );
    // Turned off on purpose: no warning.
    let cfg = dir.write(
        "off.toml",
        "[sheets]\nenabled = false\nspreadsheet = \"1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdef\"\n",
    );
    let mut d = Daemon::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let log = d.shutdown();
    assert!(!log.contains("WARN"), "{log}");
}

/// Issue 19: a port already taken names the flag that picks another, not only the key.
#[test]
fn issue19_a_port_clash_names_the_flag() {
    let dir = TestDir::new("config-port-clash");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, out) = run(&dir, &["serve", "--csv", "r.csv", "--listen", &port]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&port) && out.contains("--listen"), "{out}");
    let (code, out) = run(
        &dir,
        &[
            "serve",
            "--csv",
            "r.csv",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            &port,
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&port) && out.contains("--http-listen"), "{out}");
    drop(taken);
}

/// A path that names the wrong thing (a device, a pipe, a directory, a huge file) as the
/// config file, the Google key, the PostgreSQL password or the TLS certificate: the start
/// stops at once, naming the file and why, instead of reading forever or loading
/// gigabytes before a parser refuses them.
#[test]
fn a_path_naming_a_device_a_pipe_or_a_huge_file_stops_the_start_at_once() {
    let dir = TestDir::new("config-wrong-files");
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // Sparse: 3 GB that take no disk.
    let huge = dir.join("readings-by-mistake.csv");
    std::fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap();
    std::fs::create_dir_all(dir.join("a-directory")).unwrap();
    let sheet = "spreadsheet = \"1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdef\"";
    let cases: [(&str, &str, &str); 9] = [
        ("the config file is a device", "/dev/zero", "not a regular file"),
        (
            "the tokens file is the CSV",
            "tokens-huge.toml",
            "(auth.tokens_file): cannot read: it is 3221225472 bytes",
        ),
        (
            "the Sheets cursor is a device",
            "cursor-dev.toml",
            "read the Sheets cursor file /dev/zero: it is a device, pipe or socket, not a regular file",
        ),
        ("the config file is a pipe", "fifo", "not a regular file"),
        ("the config file is a directory", "a-directory", "directory"),
        ("the key is a device", "sheets-dev.toml", "not a regular file"),
        ("the key is the CSV", "sheets-huge.toml", "it is 3221225472 bytes"),
        ("the password is a device", "postgres.toml", "not a regular file"),
        ("the certificate is a device", "tls.toml", "not a regular file"),
    ];
    let huge_path = huge.display();
    dir.write(
        "sheets-dev.toml",
        &format!("[sheets]\n{sheet}\nkey_file = \"/dev/zero\"\n"),
    );
    dir.write(
        "sheets-huge.toml",
        &format!("[sheets]\n{sheet}\nkey_file = \"{huge_path}\"\n"),
    );
    dir.write(
        "postgres.toml",
        "[postgres]\nurl = \"postgres://u@127.0.0.1:1/db\"\npassword_file = \"/dev/zero\"\n",
    );
    dir.write(
        "tls.toml",
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"/dev/zero\"\nkey_file = \"/dev/zero\"\n",
    );
    dir.write("tokens-huge.toml", &format!("[auth]\ntokens_file = \"{huge_path}\"\n"));
    // The cursor is read after the key is checked: a real key, for the fake Google.
    let fake = crate::util::fake_google::FakeGoogle::start();
    let cfg = crate::util::sheets::config(&dir, &fake, "s1", "", "cursor_file = \"/dev/zero\"");
    std::fs::rename(cfg, dir.join("cursor-dev.toml")).unwrap();
    for (case, config, needle) in cases {
        let (code, out) = run(&dir, &["serve", "--config", config, "--listen", "127.0.0.1:0"]);
        assert!(
            code > 0,
            "{case}: exit code {code} (-1: still running after 20 s):\n{out}"
        );
        assert!(out.contains(needle), "{case}: {needle:?} not in:\n{out}");
    }
}
