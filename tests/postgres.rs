//! The PostgreSQL sink against a real PostgreSQL server (no mocks): every CSV row in
//! the table exactly once, through kill -9 of the daemon, a server restart, a killed
//! backend, two daemons on one table, and a permission error. Each test ends with the
//! table equal to the CSVs, row for row.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv, send_lines, wait_until, BIN};
use crate::util::postgres::{PgServer, SUPER_PASSWORD};
use crate::util::{Daemon, TestDir};

/// Writes `dir/sensorlog.toml` pointing the sink at `db` as `user` (password from a file).
fn config(dir: &TestDir, pg: &PgServer, db: &str, user: &str, password: &str, source: &str, extra: &str) -> PathBuf {
    dir.write("pg-password", &format!("{password}\n"));
    let mut defaults = String::new();
    for (key, line) in [
        ("retry_max_secs", "retry_max_secs = 1\n"),
        ("pace_ms", "pace_ms = 50\n"),
    ] {
        if !extra.contains(key) {
            defaults.push_str(line);
        }
    }
    dir.write(
        "sensorlog.toml",
        &format!(
            "[postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nsource = \"{source}\"\n{defaults}{extra}\n",
            pg.url(user, db),
            dir.join("pg-password").display()
        ),
    )
}

/// [`config`] for the `postgres` superuser, as most tests connect.
fn config_as_superuser(dir: &TestDir, pg: &PgServer, db: &str, source: &str, extra: &str) -> PathBuf {
    config(dir, pg, db, "postgres", SUPER_PASSWORD, source, extra)
}

fn start(dir: &TestDir, cfg: &Path) -> Daemon {
    Daemon::start(
        dir,
        &["--config", &cfg.display().to_string(), "--stats-interval-secs", "0"],
    )
}

/// Two daemons, each on its own directory with `rows` readings of `device` already in its
/// CSV, both syncing to `db` as the superuser with the given `source`s, started at the same moment
/// (the race the schema set-up and the source claim must survive).
fn start_two(pg: &PgServer, db: &str, dirs: [(&TestDir, usize, &str, &str); 2], extra: &str) -> (Daemon, Daemon) {
    let [cfg_a, cfg_b] = dirs.map(|(dir, rows, device, source)| {
        prefill(&dir.join("readings.csv"), rows, device);
        config_as_superuser(dir, pg, db, source, extra)
    });
    std::thread::scope(|s| {
        let a = s.spawn(|| start(dirs[0].0, &cfg_a));
        let b = s.spawn(|| start(dirs[1].0, &cfg_b));
        (a.join().unwrap(), b.join().unwrap())
    })
}

/// The CSV's data rows, with board text as the board sent it: the CSV puts a `'` before
/// text starting with a formula character (= + - @ tab CR) or with `'` itself, in
/// device, field, boot, device_time, and the value of `text` rows.
fn csv_rows(csv: &Path) -> Vec<Vec<String>> {
    let unescape = |cell: &mut String| {
        if cell.starts_with('\'') && cell[1..].starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
            cell.remove(0);
        }
    };
    read_csv(csv)
        .into_iter()
        .skip(1)
        .map(|mut r| {
            r.resize(9, String::new());
            for i in [1, 2, 6, 8] {
                unescape(&mut r[i]);
            }
            if r[4] == "text" {
                unescape(&mut r[3]);
            }
            r
        })
        .collect()
}

/// The table's rows of `source`, in CSV order, as CSV fields; checks the typed columns.
fn table_rows(db: &mut postgres::Client, source: &str) -> Vec<Vec<String>> {
    db.query(
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), device, field,
                value_text, type, coalesce(peer, ''), coalesce(boot, ''), coalesce(seq::text, ''),
                coalesce(device_time, ''), value
         FROM readings WHERE source = $1 ORDER BY csv_offset",
        &[&source],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let fields: Vec<String> = (0..9).map(|i| r.get::<_, String>(i)).collect();
        let value: Option<f64> = r.get(9);
        let expected = if fields[4] == "number" {
            fields[3].parse::<f64>().ok()
        } else {
            None
        };
        assert_eq!(value, expected, "typed value of {fields:?}");
        fields
    })
    .collect()
}

fn count(db: &mut postgres::Client, source: &str) -> usize {
    db.query_one("SELECT count(*) FROM readings WHERE source = $1", &[&source])
        .map(|r| r.get::<_, i64>(0) as usize)
        .unwrap_or(0)
}

/// Waits until the table holds as many rows of `source` as the CSV, then compares them
/// row for row (and so proves none is missing, doubled or out of order).
fn assert_table_equals_csv(
    db: &mut postgres::Client,
    source: &str,
    csv: &Path,
    timeout: Duration,
    log: impl Fn() -> String,
) {
    let want = csv_rows(csv);
    let ok = wait_until(timeout, || count(db, source) >= want.len());
    let got = table_rows(db, source);
    assert!(
        ok && got.len() == want.len(),
        "table has {} rows of {source:?}, the CSV {}; log:\n{}",
        got.len(),
        want.len(),
        log()
    );
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "row {i} of {source:?} differs");
    }
}

/// After a rotation: the rows of the moved file `readings.csv.1` and of the new
/// `readings.csv`, once the new one holds `new_rows` rows.
fn rows_of_both_files(dir: &TestDir, new_rows: usize, d: &Daemon) -> Vec<Vec<String>> {
    let mut rows = csv_rows(&dir.join("readings.csv.1"));
    let new = dir.join("readings.csv");
    assert!(
        wait_until(Duration::from_secs(20), || csv_rows(&new).len() == new_rows),
        "{}",
        d.log_text()
    );
    rows.extend(csv_rows(&new));
    rows
}

/// Waits until the table holds as many rows of `source` as the two files, waits a little
/// more for a row sent twice to show, then compares them as sets: each row once.
fn assert_table_holds_both_files(db: &mut postgres::Client, source: &str, mut want: Vec<Vec<String>>, d: &Daemon) {
    assert!(
        wait_until(Duration::from_secs(60), || count(db, source) >= want.len()),
        "{} of {} rows; log:\n{}",
        count(db, source),
        want.len(),
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut got = table_rows(db, source);
    assert_eq!(got.len(), want.len(), "{}", d.log_text());
    got.sort();
    want.sort();
    assert!(got == want, "the table differs from the two files");
}

/// Waits until the last of `send_readings(_, device, n)` is in the CSV: the connection
/// writes a board's readings in order, so every earlier one is there too. Without it a
/// comparison can read the CSV before the daemon has written what was just sent.
fn wait_sent_in_csv(csv: &Path, device: &str, n: usize, log: impl Fn() -> String) {
    let last = format!("{}.5", n - 1);
    assert!(
        wait_until(Duration::from_secs(30), || csv_rows(csv)
            .iter()
            .any(|r| r[1] == device && r[2] == "t" && r[3] == last)),
        "reading {last} of {device:?} never reached {}; log:\n{}",
        csv.display(),
        log()
    );
}

/// A CSV with `n` rows written before the daemon starts: a backlog to catch up.
fn prefill(path: &Path, n: usize, device: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "received_at,device,field,value,type,peer,boot,seq,device_time").unwrap();
    for i in 0..n {
        let (field, value, kind) = match i % 4 {
            0 => ("temp", format!("{}.{}", i % 40, i % 10), "number"),
            1 => ("ok", (i % 2 == 0).to_string(), "bool"),
            2 => ("note", format!("\"line {i}, with \"\"quotes\"\"\""), "text"),
            _ => ("rssi", format!("-{}", i % 90), "number"),
        };
        writeln!(
            f,
            "2026-03-0{}T12:{:02}:{:02}.{:03}Z,{device},{field},{value},{kind},127.0.0.1:4000,b1,{i},",
            1 + i % 9,
            i / 60 % 60,
            i % 60,
            i % 1000
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// Sends `n` readings as device `device` (3 fields each), in bursts; returns when sent.
fn send_readings(addr: SocketAddr, device: &str, n: usize) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|i| format!(r#"{{"device":"{device}","t":{i}.5,"msg":"=x{i}","on":true}}"#))
            .collect();
        send_lines(&mut s, &lines);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn rows_arrive_once_typed_in_order_and_the_password_is_never_logged() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_basic");
    let dir = TestDir::new("pg-basic");
    let cfg = config_as_superuser(&dir, pg, &db, "site-a", "");
    let d = start(&dir, &cfg);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &[
            r#"{"device":"porch","temp_c":21.5,"ok":true,"note":"=1+1","n":"42","q":"'quoted"}"#.into(),
            r#"{"device":"=evil","-field":"+x"}"#.into(),
            "device=shed t=3 rh=55.5".into(),
            "a free text line".into(),
            "HELLO attic boot=b7 ack=1".into(),
            "seq=1 t=1".into(),
            "seq=2 t=2".into(),
        ],
    );
    drop(s);
    let mut c = pg.admin(&db);
    assert!(
        wait_until(Duration::from_secs(20), || count(&mut c, "site-a") >= 11),
        "{}",
        d.log_text()
    );
    let log = d.stop();
    assert_table_equals_csv(
        &mut c,
        "site-a",
        &dir.join("readings.csv"),
        Duration::from_secs(1),
        || log.clone(),
    );
    assert!(!log.contains(SUPER_PASSWORD), "the password appears in the log:\n{log}");
    assert!(
        log.contains("Created the sensorlog schema") && log.contains("PostgreSQL ready"),
        "{log}"
    );
    let v: i32 = c
        .query_one(
            "SELECT max(version) FROM sensorlog_migrations WHERE target_table = 'readings'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, 1);
    let idx: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'readings' AND indexdef LIKE '%(device, field, received_at)%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(idx, 1, "the index for one device's field over time");
    let note: String = c
        .query_one("SELECT value_text FROM readings WHERE field = 'note'", &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "=1+1", "the value as the board sent it");
    let evil: (String, String, String) = c
        .query_one(
            "SELECT device, field, value_text FROM readings WHERE device LIKE '%evil'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(
        evil,
        ("=evil".into(), "-field".into(), "+x".into()),
        "no CSV escape in the database"
    );
    let quoted: String = c
        .query_one("SELECT value_text FROM readings WHERE field = 'q'", &[])
        .unwrap()
        .get(0);
    assert_eq!(quoted, "'quoted");
    // A restart sends nothing again.
    let mut d = start(&dir, &cfg);
    assert!(d.wait_for_log("PostgreSQL ready", Duration::from_secs(20)).is_some());
    assert!(d.log_contains("11 rows already there, 0 to send"), "{}", d.log_text());
    d.shutdown();
    assert_eq!(count(&mut c, "site-a"), 11);
}

#[test]
fn kill_9_at_random_points_of_the_copy_commit_cycle() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_kill9");
    let dir = TestDir::new("pg-kill9");
    prefill(&dir.join("readings.csv"), 40_000, "backlog");
    let cfg = config_as_superuser(&dir, pg, &db, "k9", "batch_rows = 700\npace_ms = 0");
    let (seed, mut rng) = crate::util::rng::from_clock();
    let mut c = pg.admin(&db);
    let mut logs = format!("seed {seed}\n");
    let mut kills_mid_catch_up = 0;
    for round in 0..10 {
        let mut d = start(&dir, &cfg);
        // Live rows too, so the CSV grows while batches are being copied.
        let addr = d.addr;
        let sender = std::thread::spawn(move || send_readings(addr, &format!("live{round}"), 150));
        d.wait_for_log("PostgreSQL ready", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(rng() % 120));
        let before = count(&mut c, "k9");
        d.kill9();
        let _ = sender.join();
        if before < 40_000 {
            kills_mid_catch_up += 1;
        }
        logs.push_str(&d.log_text());
    }
    let mut d = start(&dir, &cfg);
    assert_table_equals_csv(&mut c, "k9", &dir.join("readings.csv"), Duration::from_secs(60), || {
        format!("{logs}\n{}", d.log_text())
    });
    d.shutdown();
    assert!(
        kills_mid_catch_up >= 2,
        "too few kills landed during the catch-up ({kills_mid_catch_up})"
    );
}

#[test]
fn server_stopped_and_started_during_load() {
    let pg = PgServer::start("restart");
    let db = pg.create_db("pg_restart");
    let dir = TestDir::new("pg-restart");
    let cfg = config_as_superuser(&dir, &pg, &db, "r", "batch_rows = 200");
    let d = start(&dir, &cfg);
    let addr = d.addr;
    let mut c = pg.admin(&db);
    let sender = std::thread::spawn(move || {
        for round in 0..6 {
            send_readings(addr, &format!("dev{round}"), 300);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    assert!(
        wait_until(Duration::from_secs(20), || count(&mut c, "r") > 0),
        "{}",
        d.log_text()
    );
    drop(c);
    pg.stop();
    assert!(
        d.wait_for_log("is unavailable", Duration::from_secs(20)).is_some(),
        "{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    pg.start_again();
    sender.join().unwrap();
    let mut c = pg.admin(&db);
    let csv = dir.join("readings.csv");
    wait_sent_in_csv(&csv, "dev5", 300, || d.log_text());
    assert_table_equals_csv(&mut c, "r", &csv, Duration::from_secs(30), || d.log_text());
    assert!(d.log_contains("reachable again"), "{}", d.log_text());
    let log = d.stop();
    assert_eq!(count(&mut c, "r"), csv_rows(&csv).len(), "{log}");
}

#[test]
fn connections_killed_from_the_server_side() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_terminate");
    let dir = TestDir::new("pg-terminate");
    prefill(&dir.join("readings.csv"), 30_000, "backlog");
    let cfg = config_as_superuser(&dir, pg, &db, "t", "batch_rows = 500\npace_ms = 0");
    let mut d = start(&dir, &cfg);
    let mut c = pg.admin(&db);
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while killed < 6 && Instant::now() < deadline {
        let n: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'sensorlog' AND datname = $1",
                &[&db],
            )
            .unwrap()
            .get(0);
        killed += n;
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        killed >= 3,
        "only {killed} backends were killed; log:\n{}",
        d.log_text()
    );
    send_readings(d.addr, "after", 100);
    wait_sent_in_csv(&dir.join("readings.csv"), "after", 100, || d.log_text());
    assert_table_equals_csv(&mut c, "t", &dir.join("readings.csv"), Duration::from_secs(60), || {
        d.log_text()
    });
    d.shutdown();
}

#[test]
fn two_daemons_write_one_table_at_once() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_two");
    let (dir_a, dir_b) = (TestDir::new("pg-two-a"), TestDir::new("pg-two-b"));
    // Started together on an empty database: the schema is created once.
    let (a, b) = start_two(
        pg,
        &db,
        [(&dir_a, 8_000, "a", "site-a"), (&dir_b, 8_000, "b", "site-b")],
        "batch_rows = 300\npace_ms = 0",
    );
    let (addr_a, addr_b) = (a.addr, b.addr);
    let la = std::thread::spawn(move || send_readings(addr_a, "live-a", 500));
    let lb = std::thread::spawn(move || send_readings(addr_b, "live-b", 500));
    la.join().unwrap();
    lb.join().unwrap();
    wait_sent_in_csv(&dir_a.join("readings.csv"), "live-a", 500, || a.log_text());
    wait_sent_in_csv(&dir_b.join("readings.csv"), "live-b", 500, || b.log_text());
    let mut c = pg.admin(&db);
    assert_table_equals_csv(
        &mut c,
        "site-a",
        &dir_a.join("readings.csv"),
        Duration::from_secs(60),
        || a.log_text(),
    );
    assert_table_equals_csv(
        &mut c,
        "site-b",
        &dir_b.join("readings.csv"),
        Duration::from_secs(60),
        || b.log_text(),
    );
    let cursors: i64 = c
        .query_one("SELECT count(*) FROM sensorlog_cursors", &[])
        .unwrap()
        .get(0);
    assert_eq!(cursors, 2, "one cursor per source");
    let total: i64 = c.query_one("SELECT count(*) FROM readings", &[]).unwrap().get(0);
    assert_eq!(total as usize, count(&mut c, "site-a") + count(&mut c, "site-b"));
    a.stop();
    b.stop();
}

#[test]
fn a_permission_error_is_clear_retried_slowly_and_loses_nothing() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_perm");
    // The schema is made by an administrator's daemon first.
    let admin_dir = TestDir::new("pg-perm-admin");
    let cfg = config_as_superuser(&admin_dir, pg, &db, "admin", "");
    start(&admin_dir, &cfg).stop();
    let mut c = pg.admin(&db);
    c.batch_execute(
        "DROP ROLE IF EXISTS writer; CREATE ROLE writer LOGIN PASSWORD 'writer-Pw-91';
         GRANT SELECT ON readings TO writer;
         GRANT SELECT, INSERT, UPDATE ON sensorlog_cursors TO writer;
         GRANT SELECT ON sensorlog_migrations TO writer;",
    )
    .unwrap();
    let dir = TestDir::new("pg-perm");
    prefill(&dir.join("readings.csv"), 500, "p");
    let cfg = config(&dir, pg, &db, "writer", "writer-Pw-91", "w", "retry_max_secs = 2");
    let d = start(&dir, &cfg);
    let first = d
        .wait_for_log("permission denied for table readings", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{}", d.log_text()));
    assert!(
        first.contains("ERROR")
            && first.contains("GRANT SELECT, INSERT ON readings TO writer")
            && first.contains("nothing is lost"),
        "{first}"
    );
    // Retried, slowly: a second attempt within a few seconds, not hundreds.
    assert!(wait_until(Duration::from_secs(10), || {
        d.log_text().matches("permission denied for table readings").count() >= 2
    }));
    let attempts = d.log_text().matches("permission denied for table readings").count();
    assert!(attempts <= 4, "{attempts} attempts in a few seconds is not slow");
    assert_eq!(count(&mut c, "w"), 0);
    c.batch_execute("GRANT INSERT ON readings TO writer").unwrap();
    assert_table_equals_csv(&mut c, "w", &dir.join("readings.csv"), Duration::from_secs(20), || {
        d.log_text()
    });
    let log = d.stop();
    assert!(!log.contains("writer-Pw-91"), "{log}");
}

#[test]
fn check_command_says_what_to_fix() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_check");
    let dir = TestDir::new("pg-check");
    let check = |cfg: &Path| {
        let out = std::process::Command::new(BIN)
            .args(["postgres", "check", "--config"])
            .arg(cfg)
            .current_dir(&dir.path)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let csv_line = format!("[csv]\npath = \"{}\"", dir.join("readings.csv").display());
    let cfg = config_as_superuser(&dir, pg, &db, "chk", &csv_line);
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("does not exist yet") && out.contains("All checks passed"),
        "{out}"
    );
    // After a run: schema at the latest version, and the cursor matches the CSV.
    let mut d = Daemon::start(&dir, &["--config", &cfg.display().to_string()]);
    send_lines(&mut d.connect(), &["t=1".into(), "t=2".into()]);
    let mut c = pg.admin(&db);
    assert!(wait_until(Duration::from_secs(20), || count(&mut c, "chk") == 2));
    d.shutdown();
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("schema version 1") && out.contains("2 rows confirmed"),
        "{out}"
    );
    // A wrong password: a FAIL line that says what to fix, and no password in it.
    dir.write("pg-password", "wrong-Secret-42\n");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL") && out.contains("password"), "{out}");
    assert!(!out.contains("wrong-Secret-42"), "{out}");
}

/// Every query of the Grafana dashboard (panels and variables) runs against the schema,
/// with Grafana's macros expanded as Grafana does, and returns the rows it should.
#[test]
fn grafana_dashboard_queries_run_against_the_schema() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_grafana");
    let dir = TestDir::new("pg-grafana");
    let cfg = config_as_superuser(&dir, pg, &db, "g", "");
    let d = start(&dir, &cfg);
    send_lines(
        &mut d.connect(),
        &[r#"{"device":"porch","temp_c":21.5,"note":"hi"}"#.into()],
    );
    let mut c = pg.admin(&db);
    assert!(
        wait_until(Duration::from_secs(20), || count(&mut c, "g") == 2),
        "{}",
        d.log_text()
    );
    d.stop();
    // A board last heard from two hours ago: "silent".
    c.batch_execute(
        "INSERT INTO readings (received_at, device, field, value, value_text, type, source, csv_offset)
         VALUES (now() - interval '2 hours', 'shed', 'temp_c', 3, '3', 'number', 'other', 0)",
    )
    .unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/docs/grafana/dashboards/sensorlog.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expand = |sql: &str| {
        sql.replace(
            "$__timeGroupAlias(received_at, $__interval)",
            "date_trunc('minute', received_at) AS time",
        )
        .replace(
            "$__timeGroupAlias(received_at, '1m')",
            "date_trunc('minute', received_at) AS time",
        )
        .replace("$__timeFilter(received_at)", "received_at > now() - interval '1 day'")
        .replace("$device", "'porch','shed'")
        .replace("$field", "temp_c")
        .replace("$silent_after", "10 minutes")
    };
    let mut results = std::collections::BTreeMap::new();
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let rows = c.query(expand(v["query"].as_str().unwrap()).as_str(), &[]).unwrap();
            let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            results.insert(v["name"].as_str().unwrap().to_string(), got);
        }
    }
    assert_eq!(results["device"], ["porch", "shed"]);
    assert_eq!(results["field"], ["temp_c"], "only numeric fields get a panel");
    let mut panels = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let sql = expand(t["rawSql"].as_str().unwrap());
            let rows = c.query(sql.as_str(), &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(!rows.is_empty(), "panel {:?} shows nothing: {sql}", p["title"]);
            if p["type"] == "table" {
                let silent: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                assert_eq!(silent, ["shed"], "the silent boards panel");
            }
            panels += 1;
        }
    }
    assert_eq!(panels, 3);
}

/// Two daemons given one `source` (e.g. two boxes with the same hostname): the second
/// never mixes its rows in; it says why, and what to do.
#[test]
fn two_daemons_with_one_source_never_mix_their_rows() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_same_source");
    let (dir_a, dir_b) = (TestDir::new("pg-same-a"), TestDir::new("pg-same-b"));
    let (a, b) = start_two(
        pg,
        &db,
        [(&dir_a, 3_000, "a", "pi"), (&dir_b, 2_000, "b", "pi")],
        "batch_rows = 200\npace_ms = 0",
    );
    let needle = "another daemon uses the same postgres.source";
    assert!(
        wait_until(Duration::from_secs(30), || a.log_contains(needle)
            || b.log_contains(needle)),
        "A:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    // Whoever lost stays out; the winner's CSV is in the table, whole and once.
    let (winner, loser) = if b.log_contains(needle) {
        (&dir_a, &b)
    } else {
        (&dir_b, &a)
    };
    let mut c = pg.admin(&db);
    assert_table_equals_csv(
        &mut c,
        "pi",
        &winner.join("readings.csv"),
        Duration::from_secs(30),
        || format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&mut c, "pi"),
        csv_rows(&winner.join("readings.csv")).len(),
        "{}",
        loser.log_text()
    );
    a.stop();
    b.stop();
}

/// The CSV moved away while the sink is behind (logrotate): the sink finishes the old
/// file through its open handle, then continues with the new one. Nothing lost, nothing
/// doubled.
#[test]
fn a_rotated_csv_is_finished_then_the_new_one_followed() {
    let pg = PgServer::shared();
    let db = pg.create_db("pg_rotate");
    let dir = TestDir::new("pg-rotate");
    prefill(&dir.join("readings.csv"), 20_000, "old");
    let cfg = config_as_superuser(&dir, pg, &db, "rot", "batch_rows = 300\npace_ms = 0");
    let d = start(&dir, &cfg);
    let mut c = pg.admin(&db);
    assert!(
        wait_until(Duration::from_secs(20), || count(&mut c, "rot") > 0),
        "{}",
        d.log_text()
    );
    std::fs::rename(dir.join("readings.csv"), dir.join("readings.csv.1")).unwrap();
    assert!(
        d.wait_for_log("moved or deleted while open", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    send_readings(d.addr, "new", 200);
    let want = rows_of_both_files(&dir, 600, &d);
    let old_rows = csv_rows(&dir.join("readings.csv.1")).len();
    assert_table_holds_both_files(&mut c, "rot", want, &d);
    assert!(
        d.log_contains(&format!("its {old_rows} rows are all in PostgreSQL")),
        "{}",
        d.log_text()
    );
    d.stop();
}

/// The CSV is rotated while the database has been unreachable since the daemon
/// started: the rows of the file the daemon started with still go first, then the new
/// file's, each once.
#[test]
fn a_csv_rotated_before_the_database_was_ever_reached_is_sent_in_full() {
    let pg = PgServer::start("rotdown");
    let db = pg.create_db("pg_rotdown");
    let dir = TestDir::new("pg-rotdown");
    prefill(&dir.join("readings.csv"), 2_000, "old");
    let cfg = config_as_superuser(&dir, &pg, &db, "rd", "batch_rows = 300\npace_ms = 0");
    pg.stop();
    let d = start(&dir, &cfg);
    assert!(
        d.wait_for_log("is unavailable", Duration::from_secs(20)).is_some(),
        "{}",
        d.log_text()
    );
    std::fs::rename(dir.join("readings.csv"), dir.join("readings.csv.1")).unwrap();
    assert!(
        d.wait_for_log("moved or deleted while open", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    send_readings(d.addr, "new", 200);
    let want = rows_of_both_files(&dir, 600, &d);
    pg.start_again();
    let mut c = pg.admin(&db);
    assert_table_holds_both_files(&mut c, "rd", want, &d);
    d.stop();
}

/// A loopback TCP proxy in front of the server that, while armed, lets a `COMMIT` through
/// to the server and then cuts the connection before the answer comes back: the
/// "committed, but the daemon never heard" case.
struct CommitCutter {
    port: u16,
    cuts_left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    cuts_done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CommitCutter {
    fn start(server_port: u16, cuts: usize) -> CommitCutter {
        use std::io::Read;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let cuts_done = Arc::new(AtomicUsize::new(0));
        let (left, done) = (Arc::clone(&cuts_left), Arc::clone(&cuts_done));
        std::thread::spawn(move || {
            // Bounded: the test makes at most a few dozen connections.
            for client in listener.incoming().take(200) {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    return;
                };
                for s in [&client, &server] {
                    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                }
                let cut = Arc::new(AtomicBool::new(false));
                let (mut c2, mut s2, cut2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&cut),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = s2.read(&mut buf) {
                        if n == 0 || cut2.load(Ordering::SeqCst) || c2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let (left, done) = (Arc::clone(&left), Arc::clone(&done));
                std::thread::spawn(move || {
                    let commit = b"Q\0\0\0\x0bCOMMIT\0";
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let is_commit = buf[..n].windows(commit.len()).any(|w| w == commit);
                        let armed = is_commit
                            && left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                                .is_ok();
                        if armed {
                            cut.store(true, Ordering::SeqCst); // the answer will not reach the daemon
                        }
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if armed {
                            std::thread::sleep(Duration::from_millis(300)); // the server commits
                            done.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Both);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CommitCutter {
            port,
            cuts_left,
            cuts_done,
        }
    }
}

#[test]
fn a_commit_whose_answer_is_lost_is_not_sent_again() {
    use std::sync::atomic::Ordering;
    let pg = PgServer::shared();
    let db = pg.create_db("pg_lost_commit");
    let cutter = CommitCutter::start(pg.port, 4);
    let dir = TestDir::new("pg-lost-commit");
    prefill(&dir.join("readings.csv"), 3_000, "lc");
    let cfg = config_as_superuser(&dir, pg, &db, "lc", "batch_rows = 400\npace_ms = 0");
    // Point the daemon at the proxy instead of the server.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!(":{}/", pg.port), &format!(":{}/", cutter.port));
    std::fs::write(&cfg, text).unwrap();
    let d = start(&dir, &cfg);
    let mut c = pg.admin(&db);
    assert_table_equals_csv(&mut c, "lc", &dir.join("readings.csv"), Duration::from_secs(60), || {
        d.log_text()
    });
    assert_eq!(cutter.cuts_done.load(Ordering::SeqCst), 4, "every armed cut happened");
    assert_eq!(cutter.cuts_left.load(Ordering::SeqCst), 0);
    assert!(d.log_contains("is unavailable"), "{}", d.log_text());
    d.stop();
}

/// TLS to a server with `ssl=on` that takes only TLS connections from the sink's user:
/// `sslmode=disable` is refused by the server, `require` connects (and rows arrive),
/// `verify-full` with the server's CA connects, with another CA or a name the
/// certificate was not issued for it fails with a clear error (and `verify-ca` ignores
/// the name); no password in any output.
#[test]
fn tls_modes_against_a_server_with_ssl_on() {
    const PW: &str = "tls-Secret-9d2";
    let (pg, certs) = PgServer::start_tls("tls");
    pg.create_db("pg_tls");
    let mut admin = pg.admin("postgres");
    admin
        .batch_execute(&format!(
            "CREATE ROLE tls_user LOGIN PASSWORD '{PW}'; ALTER DATABASE pg_tls OWNER TO tls_user"
        ))
        .unwrap();
    let dir = TestDir::new("pg-tls");
    dir.write("pg-password", &format!("{PW}\n"));
    let write_cfg = |url: &str| {
        dir.write(
            "sensorlog.toml",
            &format!(
                "[postgres]\nurl = \"{url}\"\npassword_file = \"{}\"\nsource = \"tls\"\npace_ms = 50\nretry_max_secs = 1\n",
                dir.join("pg-password").display()
            ),
        )
    };
    let check = |url: &str| {
        let cfg = write_cfg(url);
        let out = std::process::Command::new(BIN)
            .args(["postgres", "check", "--config"])
            .arg(&cfg)
            .current_dir(&dir.path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(PW), "password in the output: {text}");
        (out.status.code(), text)
    };
    let ip = format!("postgresql://tls_user@127.0.0.1:{}/pg_tls", pg.port);
    let by_name = format!("postgresql://tls_user@localhost:{}/pg_tls?hostaddr=127.0.0.1", pg.port);
    let (ca, other) = (certs.ca.display(), certs.other_ca.display());

    let (code, out) = check(&format!("{ip}?sslmode=disable"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no encryption"),
        "the server refuses plain connections: {out}"
    );

    let (code, out) = check(&format!("{ip}?sslmode=require"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("connection encrypted (TLS)"), "{out}");

    let (code, out) = check(&format!("{by_name}&sslmode=verify-full&sslrootcert={ca}"));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("connection encrypted (TLS)") && out.contains("verify-full"),
        "{out}"
    );

    let (code, out) = check(&format!("{by_name}&sslmode=verify-full&sslrootcert={other}"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("certificate") && out.contains("UnknownIssuer") && out.contains("sslrootcert"),
        "a wrong CA fails clearly: {out}"
    );

    let (code, out) = check(&format!("{ip}?sslmode=verify-full&sslrootcert={ca}"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("not valid for name"),
        "127.0.0.1 is not in the certificate: {out}"
    );
    let (code, out) = check(&format!("{ip}?sslmode=verify-ca&sslrootcert={ca}"));
    assert_eq!(code, Some(0), "verify-ca does not check the name: {out}");

    // The daemon with the wrong CA: an ERROR (the operator must act) that names the fix.
    let cfg = write_cfg(&format!("{by_name}&sslmode=verify-full&sslrootcert={other}"));
    let mut d = start(&dir, &cfg);
    assert!(wait_until(Duration::from_secs(20), || d.log_contains("UnknownIssuer")));
    let log = d.shutdown();
    let line = log.lines().find(|l| l.contains("UnknownIssuer")).unwrap();
    assert!(line.contains("ERROR") && line.contains("sslrootcert"), "{line}");

    // The daemon itself over TLS: rows arrive, and the log says how it connects.
    let cfg = write_cfg(&format!("{by_name}&sslmode=verify-full&sslrootcert={ca}"));
    let mut d = start(&dir, &cfg);
    send_lines(&mut d.connect(), &["t=1".into(), "t=2".into()]);
    let mut c = pg.admin("pg_tls");
    assert!(wait_until(Duration::from_secs(20), || count(&mut c, "tls") == 2));
    let log = d.shutdown();
    assert!(
        log.contains("certificate checked against") && log.contains("verify-full"),
        "{log}"
    );
    assert!(!log.contains(PW), "{log}");
}
