//! `sensorlog postgres check`: connects with the daemon's settings and checks, one
//! step at a time, what the PostgreSQL sink needs (login, schema, privileges, and
//! the cursor against the CSV), saying what to fix. It writes nothing.

use std::fs::File;

use postgres::Client;

use super::ok;
use crate::cli::PostgresCheckArgs;
use crate::error::{Error, Result};
use crate::settings::ConfigError;
use crate::sink::csv::settings::DEFAULT_CSV_PATH;
use crate::sink::follower::rows::{self, Position, Verified};
use crate::sink::postgres::failure::{advice, describe};
use crate::sink::postgres::schema::{self, Names, MIGRATIONS};
use crate::sink::postgres::PostgresConfig;

fn fail(msg: impl std::fmt::Display) -> Error {
    super::fail("the PostgreSQL check", msg)
}

pub fn run(args: &PostgresCheckArgs) -> Result<()> {
    let file = super::file_or_defaults(args.config.as_deref())?;
    let csv_path = args
        .csv
        .clone()
        .or(file.csv.path.clone())
        .unwrap_or_else(|| DEFAULT_CSV_PATH.into());
    let cfg = PostgresConfig::build(file.postgres, std::env::var("PGPASSWORD").ok())?.ok_or_else(|| ConfigError {
        key: "postgres.url".into(),
        reason: "is not set: the PostgreSQL sink is off, nothing to check".into(),
    })?;
    let names = Names::new(&cfg);
    println!(
        "Checking PostgreSQL at {} for table {}, source {:?}:",
        cfg.target, names.plain, cfg.source
    );
    let mut client = cfg.connect().map_err(|e| {
        fail(format!(
            "cannot connect: {}. To fix: {}",
            describe(&e),
            advice(&e, &cfg)
        ))
    })?;
    let q = |client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]| {
        client
            .query_one(sql, params)
            .map_err(|e| fail(format!("{}. To fix: {}", describe(&e), advice(&e, &cfg))))
    };
    let version: String = q(&mut client, "SHOW server_version", &[])?.get(0);
    ok(format!(
        "connected as {} to PostgreSQL {version}",
        cfg.pg.get_user().unwrap_or("?")
    ));
    let encrypted: Option<bool> = client
        .query_opt("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .ok()
        .flatten()
        .map(|r| r.get(0));
    ok(format!(
        "connection {}; asked for {}",
        match encrypted {
            Some(true) => "encrypted (TLS)",
            Some(false) => "NOT encrypted",
            None => "encryption unknown",
        },
        cfg.tls.describe()
    ));
    let timescale: bool = q(
        &mut client,
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
        &[],
    )?
    .get(0);
    ok(if timescale {
        "TimescaleDB is available: a new table becomes a hypertable"
    } else {
        "TimescaleDB is not available: a plain table (works the same)"
    });
    let schema_name: String = match &cfg.schema {
        Some(s) => s.clone(),
        None => q(&mut client, "SELECT current_schema()::text", &[])?.get(0),
    };
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let has_table: bool = q(&mut client, "SELECT to_regclass($1) IS NOT NULL", &[&names.table])?.get(0);
    let has_migrations: bool = q(&mut client, "SELECT to_regclass($1) IS NOT NULL", &[&names.migrations])?.get(0);
    let user = cfg.pg.get_user().unwrap_or("?").to_string();
    if !has_table || !has_migrations {
        // A missing schema needs CREATE on the database; an existing one, CREATE on it.
        let can_create: bool = q(
            &mut client,
            "SELECT CASE WHEN to_regnamespace($1) IS NULL THEN has_database_privilege(current_database(), 'CREATE')
                         ELSE has_schema_privilege($1, 'CREATE') END",
            &[&schema_name],
        )?
        .get(0);
        if !can_create {
            return Err(fail(format!(
                "table {} does not exist yet and user {user} may not create it in schema {schema_name}: GRANT CREATE ON SCHEMA {schema_name} TO {user}, or run the daemon once as the table's owner",
                names.plain
            )));
        }
        ok(format!(
            "table {} does not exist yet; `sensorlog serve` will create it (schema version {latest})",
            names.plain
        ));
    } else {
        let v: i32 = q(
            &mut client,
            &format!(
                "SELECT coalesce(max(version), 0) FROM {} WHERE target_table = $1",
                names.migrations
            ),
            &[&names.plain],
        )?
        .get(0);
        if v > latest {
            return Err(fail(format!(
                "table {} is at schema version {v}, newer than this sensorlog ({latest}): upgrade sensorlog",
                names.plain
            )));
        }
        ok(format!(
            "table {} is at schema version {v}{}",
            names.plain,
            if v < latest {
                " (`sensorlog serve` will migrate it)"
            } else {
                ""
            }
        ));
        let privs: (bool, bool, bool, bool) = {
            let r = q(
                &mut client,
                "SELECT has_table_privilege($1, 'SELECT'), has_table_privilege($1, 'INSERT'),
                        has_table_privilege($2, 'SELECT') AND has_table_privilege($2, 'INSERT'),
                        has_table_privilege($2, 'UPDATE')",
                &[&names.table, &names.cursors],
            )?;
            (r.get(0), r.get(1), r.get(2), r.get(3))
        };
        if !(privs.0 && privs.1 && privs.2 && privs.3) {
            return Err(fail(format!(
                "user {user} lacks privileges: GRANT SELECT, INSERT ON {} TO {user}; GRANT SELECT, INSERT, UPDATE ON sensorlog_cursors TO {user};",
                names.plain
            )));
        }
        ok(format!("user {user} may read and write {} and its cursor", names.plain));
        let saved = schema::load_cursor(&mut client, &names, &cfg.source, false).map_err(|e| fail(describe(&e)))?;
        check_cursor(saved, &csv_path)?;
    }
    println!("All checks passed: `sensorlog serve` can write to this database.");
    Ok(())
}

fn check_cursor(saved: Option<Position>, csv: &std::path::Path) -> Result<()> {
    let len = match std::fs::metadata(csv) {
        Ok(m) => m.len(),
        Err(_) => {
            ok(format!(
                "{} does not exist yet: nothing to compare the cursor with",
                csv.display()
            ));
            return Ok(());
        }
    };
    let Some(saved) = saved else {
        ok("no cursor for this source yet: the whole CSV will be sent");
        return Ok(());
    };
    let mut file = File::open(csv).map_err(|e| fail(format!("cannot read {}: {e}", csv.display())))?;
    let from = match rows::verify(&mut file, &saved, len).map_err(|e| fail(format!("cannot read {}: {e}", csv.display())))? {
        Verified::Same => {
            ok(format!(
                "cursor: {} rows confirmed, and its last row matches {}",
                saved.rows,
                csv.display()
            ));
            saved
        }
        Verified::Moved(p) => {
            ok(format!(
                "cursor: {} rows confirmed, but its last row moved in {} (to row {}); `sensorlog serve` resumes after it",
                saved.rows,
                csv.display(),
                p.rows
            ));
            p
        }
        Verified::Missing => {
            return Err(fail(format!(
                "{} does not hold the last row the database confirmed ({} rows): another daemon uses the same postgres.source (give each its own), or the CSV was replaced (delete this source's row from sensorlog_cursors to send it from its first row); `sensorlog serve` sends nothing until then",
                csv.display(),
                saved.rows
            )))
        }
    };
    let f = &mut file;
    let (mut pos, mut buf, mut left) = (from, Vec::new(), 0u64);
    loop {
        let rows = rows::read_rows(f, pos.offset, len, 50_000, &mut buf)
            .map_err(|e| fail(format!("cannot read {}: {e}", csv.display())))?;
        if rows.is_empty() {
            break;
        }
        left += rows.len() as u64;
        pos = pos.after(&rows);
    }
    ok(format!("{left} rows of {} wait to be sent", csv.display()));
    Ok(())
}
