//! Device tokens against the real daemon: refused lines never reach the CSV, the right
//! token works, revocation needs no restart, guessing is slowed down.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::util::daemon::{read_csv, read_line, send_lines, wait_until, BIN};
use crate::util::{Daemon, TestDir};

/// Runs `sensorlog token ...`; returns stdout, panicking with stderr on failure.
pub fn token_cmd(dir: &TestDir, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("token")
        .args(args)
        .current_dir(&dir.path)
        .output()
        .expect("run sensorlog token");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "token {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `sensorlog token add <device>` into `dir/tokens`; returns the printed token.
pub fn add_token(dir: &TestDir, device: &str) -> String {
    let out = token_cmd(dir, &["add", device, "--tokens-file", "tokens"]);
    let token = out
        .split_whitespace()
        .find(|w| w.len() == 48 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no token in {out:?}"))
        .to_string();
    assert!(out.contains(&format!("#define SENSORLOG_TOKEN \"{token}\"")), "{out}");
    token
}

/// A config file requiring tokens from `dir/tokens`, plus `extra` TOML.
pub fn auth_config(dir: &TestDir, extra: &str) -> String {
    dir.write("sensorlog.toml", &format!("[auth]\ntokens_file = \"tokens\"\n{extra}"))
        .display()
        .to_string()
}

fn talk(s: &mut TcpStream, lines: &[&str]) {
    send_lines(s, &lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
}

#[test]
fn only_the_right_token_writes_and_only_as_its_own_device() {
    let dir = TestDir::new("auth-gate");
    let token = add_token(&dir, "kitchen");
    let meta = std::fs::metadata(dir.join("tokens")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!dir.read("tokens").contains(&token), "only the hash is stored");
    let cfg = auth_config(&dir, "");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);

    // A reading before any greeting.
    let mut s = d.connect();
    talk(&mut s, &["device=kitchen t=1"]);
    assert_eq!(read_line(&mut s).as_deref(), Some("ERR auth-required"));
    assert_eq!(read_line(&mut s), None, "then closed");
    // A greeting without a token, followed by a reading in the same packet.
    let mut s = d.connect();
    talk(&mut s, &["HELLO kitchen ack=1", "seq=1 t=2"]);
    assert_eq!(read_line(&mut s).as_deref(), Some("ERR auth-required"));
    assert_eq!(read_line(&mut s), None);
    // A wrong token (the right one with a digit changed).
    let wrong = format!("{}{}", if token.starts_with('0') { "1" } else { "0" }, &token[1..]);
    let mut s = d.connect();
    talk(&mut s, &[&format!("HELLO kitchen token={wrong} ack=1"), "seq=1 t=3"]);
    assert_eq!(read_line(&mut s).as_deref(), Some("ERR bad-token"));
    assert_eq!(read_line(&mut s), None);
    // The right token for another device.
    let mut s = d.connect();
    talk(&mut s, &[&format!("HELLO garage token={token} ack=1"), "seq=1 t=4"]);
    assert_eq!(read_line(&mut s).as_deref(), Some("ERR bad-token"));
    // The right token: writes as kitchen, and only as kitchen.
    let mut s = d.connect();
    talk(
        &mut s,
        &[
            &format!("HELLO kitchen token={token} boot=7 ack=1"),
            "seq=1 t=5",
            "device=garage seq=2 t=6",
            r#"{"device":"kitchen","seq":3,"t":7}"#,
        ],
    );
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO kitchen"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ERR 2 device-mismatch"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 3"));
    drop(s);
    let log = d.shutdown();
    let rows = read_csv(&d.csv);
    let got: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[1].as_str(), r[3].as_str())).collect();
    assert_eq!(got, [("kitchen", "5"), ("kitchen", "7")]);
    let csv = std::fs::read_to_string(&d.csv).unwrap();
    assert!(!csv.contains(&token) && !csv.contains(&wrong));
    assert!(
        !log.contains(&token) && !log.contains(&wrong),
        "tokens never logged (RUST_LOG=debug)"
    );
    assert!(
        log.contains("Refused 2 unauthenticated connections, 2 wrong tokens, 0 attempts during backoff and 1 readings naming another device."),
        "{log}"
    );
}

#[test]
fn tokens_added_and_revoked_apply_without_restart() {
    let dir = TestDir::new("auth-revoke");
    let kitchen = add_token(&dir, "kitchen");
    let cfg = auth_config(&dir, "");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    let greet = |device: &str, token: &str| {
        let mut s = d.connect();
        talk(&mut s, &[&format!("HELLO {device} token={token} ack=1")]);
        read_line(&mut s)
    };
    assert_eq!(greet("kitchen", &kitchen).as_deref(), Some("OK HELLO kitchen"));
    // SIGHUP reloads the file even though it did not change.
    let hup = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    assert!(
        d.wait_for_log("device tokens.", Duration::from_secs(10))
            .is_some_and(|l| l.contains("Reloaded")),
        "{}",
        d.log_text()
    );
    // A board added while the daemon runs.
    let garage = add_token(&dir, "garage");
    assert!(wait_until(Duration::from_secs(10), || greet("garage", &garage)
        .as_deref()
        == Some("OK HELLO garage")));
    // An open connection authenticated before the revocation keeps its session;
    // new greetings are refused.
    let list = token_cmd(&dir, &["list", "--tokens-file", "tokens"]);
    assert!(
        list.contains("kitchen") && list.contains("garage") && !list.contains(&kitchen),
        "{list}"
    );
    token_cmd(&dir, &["revoke", "kitchen", "--tokens-file", "tokens"]);
    assert!(wait_until(Duration::from_secs(10), || greet("kitchen", &kitchen)
        .as_deref()
        == Some("ERR bad-token")));
    assert_eq!(greet("garage", &garage).as_deref(), Some("OK HELLO garage"));
    d.shutdown();
    assert!(d.log_contains("Reloaded"), "{}", d.log_text());
}

#[test]
fn guessing_tokens_backs_off_after_n_failures_with_one_log_line() {
    let dir = TestDir::new("auth-brute");
    let token = add_token(&dir, "kitchen");
    let cfg = auth_config(&dir, "failures_before_backoff = 3\nmax_backoff_secs = 60\n");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    let greet = |token: &str| {
        let mut s = d.connect();
        talk(&mut s, &[&format!("HELLO kitchen token={token} ack=1")]);
        read_line(&mut s)
    };
    for i in 0..3 {
        assert_eq!(
            greet(&format!("guess{i}")).as_deref(),
            Some("ERR bad-token"),
            "failure {i} of N"
        );
    }
    // Failure N+1 is still checked, and starts the backoff...
    assert_eq!(greet("guess3").as_deref(), Some("ERR bad-token"));
    // ...during which not even the right token is looked at.
    let during = greet(&token).unwrap();
    assert!(during.starts_with("ERR auth-backoff "), "{during}");
    for i in 0..20 {
        assert!(greet(&format!("more{i}")).unwrap().starts_with("ERR auth-backoff "));
    }
    let log = d.shutdown();
    let lines = log
        .lines()
        .filter(|l| l.contains("Refused a wrong or unknown token"))
        .count();
    assert_eq!(lines, 1, "one line per address per interval:\n{log}");
    assert!(log.contains("attempts during backoff"), "{log}");
}

#[test]
fn token_commands_refuse_bad_input() {
    let dir = TestDir::new("auth-cmd");
    add_token(&dir, "kitchen");
    for args in [
        &["add", "kitchen", "--tokens-file", "tokens"][..],
        &["add", "bad name", "--tokens-file", "tokens"],
        &["revoke", "nobody", "--tokens-file", "tokens"],
        &["list"],
    ] {
        let out = Command::new(BIN)
            .arg("token")
            .args(args)
            .current_dir(&dir.path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let again = token_cmd(&dir, &["add", "kitchen", "--replace", "--tokens-file", "tokens"]);
    assert!(again.contains("SENSORLOG_TOKEN"));
    // Without a tokens file the daemon keeps working, and on loopback says nothing about it.
    let mut d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    talk(&mut s, &["HELLO anyone ack=1", "seq=1 t=1"]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO anyone"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    drop(s);
    let log = d.shutdown();
    assert!(!log.contains("Accepting readings from anyone"), "{log}");
}
