//! Issue 19: the README's test command (`scripts/test`, which `.ci/run` runs) names each
//! missing prerequisite on one line with the command that installs it, and stops.

use std::process::Command;

fn deps_check(path: &str) -> (i32, String) {
    let out = Command::new("/bin/bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test"))
        .arg("--deps")
        .env("PATH", path)
        .env_remove("SENSORLOG_PG_BIN")
        .output()
        .expect("run scripts/test --deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn issue19_test_command_names_each_missing_program_and_how_to_get_it() {
    // Nothing on the PATH: every program is missing (PostgreSQL's, in /usr/lib, and haproxy,
    // in /usr/sbin, which the check also looks at, may be found).
    let (code, out) = deps_check("/nonexistent");
    assert_eq!(code, 1, "{out}");
    for (what, install) in [
        ("a C++ compiler", "sudo apt-get install g++"),
        ("make", "sudo apt-get install make"),
        ("clang-format", "sudo apt-get install clang-format"),
        ("Chromium", "sudo apt-get install chromium"),
        ("chromedriver", "sudo apt-get install chromium-driver"),
        ("openssl", "sudo apt-get install openssl"),
        ("systemd-analyze", "sudo apt-get install systemd"),
        ("cargo-deb", "cargo install cargo-deb --version ^3.8 --locked"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("missing {what}")))
            .unwrap_or_else(|| panic!("no line for {what}:\n{out}"));
        assert!(line.ends_with(install), "{what}: {line:?}");
    }
    assert!(out.contains("scripts/test --install"), "{out}");
    assert!(!out.contains("== cargo"), "it must stop before running anything: {out}");
    // One line per missing piece, nothing twice.
    let lines: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("missing ")).collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(lines, unique, "{out}");
}
