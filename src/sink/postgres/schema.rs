//! The database side: table names, versioned migrations, and the cursor rows.
//!
//! # Schema (version 1)
//!
//! ```sql
//! CREATE TABLE readings (            -- postgres.table
//!     received_at timestamptz NOT NULL,  -- when the daemon received the reading
//!     device      text NOT NULL,
//!     field       text NOT NULL,
//!     value       double precision,      -- NULL unless type = 'number'
//!     value_text  text NOT NULL,         -- the value as the board sent it
//!     type        text NOT NULL,         -- number | bool | text | ...
//!     peer        text,                  -- NULL when empty in the CSV (also boot, device_time)
//!     boot        text,
//!     seq         bigint,
//!     device_time text,
//!     source      text NOT NULL,         -- postgres.source of the daemon that sent it
//!     csv_offset  bigint NOT NULL        -- where the row starts in that daemon's CSV
//! );
//! CREATE INDEX readings_device_field_time ON readings (device, field, received_at);
//! CREATE TABLE sensorlog_cursors (target_table, source, rows_done, offset_done,
//!                                 last_offset, last_hash, updated_at);
//! CREATE TABLE sensorlog_migrations (target_table, version, description, applied_at);
//! ```
//!
//! Migrations run in one transaction under an advisory lock, so several daemons
//! starting at once against an empty database do not race. Each applied version is
//! recorded in `sensorlog_migrations`; a later version adds a step to [`MIGRATIONS`]
//! and never edits an old one. If the TimescaleDB extension is available when the table
//! is created, the table becomes a hypertable on `received_at`.

use postgres::{Client, GenericClient, Transaction};

use super::settings::PostgresConfig;
use crate::sink::follower::rows::Position;

/// A fixed key for `pg_advisory_xact_lock`: every sensorlog migration takes it.
const MIGRATION_LOCK: i64 = 0x5e45_0a10_6000_0001;

/// Quoted SQL names derived from `postgres.table`.
#[derive(Debug, Clone)]
pub struct Names {
    /// The table as configured (`readings` or `schema.readings`): the key in the
    /// cursor and migration tables.
    pub plain: String,
    pub table: String,
    pub cursors: String,
    pub migrations: String,
    pub index: String,
    pub schema: Option<String>,
}

impl Names {
    pub fn new(cfg: &PostgresConfig) -> Names {
        let q = |name: &str| match &cfg.schema {
            Some(s) => format!("\"{s}\".\"{name}\""),
            None => format!("\"{name}\""),
        };
        Names {
            plain: cfg.qualified_table(),
            table: q(&cfg.table),
            cursors: q("sensorlog_cursors"),
            migrations: q("sensorlog_migrations"),
            index: format!("\"{}_device_field_time\"", cfg.table),
            schema: cfg.schema.clone(),
        }
    }
}

/// The columns of the readings table, in COPY order.
pub const COPY_COLUMNS: &str =
    "received_at, device, field, value, value_text, type, peer, boot, seq, device_time, source, csv_offset";

/// One schema version: its number, what it does, and its SQL for the configured names.
pub type Migration = (i32, &'static str, fn(&Names) -> String);

/// The schema versions, oldest first.
pub const MIGRATIONS: &[Migration] = &[(1, "readings table, index and cursors", v1)];

fn v1(n: &Names) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
            received_at timestamptz NOT NULL,
            device text NOT NULL,
            field text NOT NULL,
            value double precision,
            value_text text NOT NULL,
            type text NOT NULL,
            peer text,
            boot text,
            seq bigint,
            device_time text,
            source text NOT NULL,
            csv_offset bigint NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {i} ON {t} (device, field, received_at);
        CREATE TABLE IF NOT EXISTS {c} (
            target_table text NOT NULL,
            source text NOT NULL,
            rows_done bigint NOT NULL,
            offset_done bigint NOT NULL,
            last_offset bigint,
            last_hash bigint,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (target_table, source)
        );",
        t = n.table,
        i = n.index,
        c = n.cursors
    )
}

/// What [`migrate`] did.
#[derive(Debug, Default)]
pub struct Migrated {
    pub applied: Vec<i32>,
    pub version: i32,
    pub hypertable: Option<bool>,
}

/// Runs the migrations if the schema is not at the latest version. When it is, only
/// reads (so a user without CREATE rights can run a daemon on a prepared database).
pub fn ensure(client: &mut Client, names: &Names) -> Result<Migrated, postgres::Error> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&names.migrations])?
        .get(0);
    if exists {
        let version = version(client, names)?;
        if version >= latest {
            return Ok(Migrated {
                version,
                ..Default::default()
            });
        }
    }
    migrate(client, names)
}

/// The schema version recorded for this table (0 before the first migration).
fn version(client: &mut impl GenericClient, n: &Names) -> Result<i32, postgres::Error> {
    Ok(client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {} WHERE target_table = $1",
                n.migrations
            ),
            &[&n.plain],
        )?
        .get(0))
}

/// Brings the schema up to the latest version (creating it if missing).
pub fn migrate(client: &mut Client, n: &Names) -> Result<Migrated, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    if let Some(s) = &n.schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {m} (
            target_table text NOT NULL,
            version integer NOT NULL,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (target_table, version)
        )",
        m = n.migrations
    ))?;
    let current = version(&mut tx, n)?;
    let mut out = Migrated {
        version: current,
        ..Migrated::default()
    };
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        tx.batch_execute(&sql(n))?;
        tx.execute(
            &format!(
                "INSERT INTO {} (target_table, version, description) VALUES ($1, $2, $3)",
                n.migrations
            ),
            &[&n.plain, version, description],
        )?;
        if *version == 1 {
            out.hypertable = Some(try_hypertable(&mut tx, n)?);
        }
        out.applied.push(*version);
        out.version = *version;
    }
    tx.commit()?;
    Ok(out)
}

/// Makes the new table a TimescaleDB hypertable when the extension is available;
/// `false` (plain PostgreSQL) otherwise. A failure here never stops the sink.
fn try_hypertable(tx: &mut Transaction<'_>, n: &Names) -> Result<bool, postgres::Error> {
    let available = tx
        .query_opt("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'", &[])?
        .is_some();
    if !available {
        return Ok(false);
    }
    let mut sp = tx.savepoint("hypertable")?;
    let made = sp
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .and_then(|_| {
            sp.query(
                "SELECT create_hypertable($1::text::regclass, 'received_at', if_not_exists => TRUE, migrate_data => TRUE)",
                &[&n.table],
            )
        });
    match made {
        Ok(_) => {
            sp.commit()?;
            Ok(true)
        }
        Err(e) => {
            log::warn!(
                "TimescaleDB is installed but {} could not become a hypertable ({}); it stays a plain table, which works the same.",
                n.plain,
                super::failure::describe(&e)
            );
            sp.rollback()?;
            Ok(false)
        }
    }
}

/// The cursor row of `source`, if there is one.
pub fn load_cursor(
    c: &mut impl GenericClient,
    n: &Names,
    source: &str,
    lock: bool,
) -> Result<Option<Position>, postgres::Error> {
    let row = c.query_opt(
        &format!(
            "SELECT rows_done, offset_done, last_offset, last_hash FROM {} WHERE target_table = $1 AND source = $2{}",
            n.cursors,
            if lock { " FOR UPDATE" } else { "" }
        ),
        &[&n.plain, &source],
    )?;
    Ok(row.map(|r| {
        let last_offset: Option<i64> = r.get(2);
        let last_hash: Option<i64> = r.get(3);
        Position {
            rows: r.get::<_, i64>(0) as u64,
            offset: r.get::<_, i64>(1) as u64,
            last: last_offset.zip(last_hash).map(|(o, h)| (o as u64, h as u64)),
        }
    }))
}

/// Writes the cursor row of `source` (inserting it if missing).
pub fn save_cursor(c: &mut impl GenericClient, n: &Names, source: &str, p: &Position) -> Result<(), postgres::Error> {
    let (last_offset, last_hash) = match p.last {
        Some((o, h)) => (Some(o as i64), Some(h as i64)),
        None => (None, None),
    };
    c.execute(
        &format!(
            "INSERT INTO {} (target_table, source, rows_done, offset_done, last_offset, last_hash, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (target_table, source) DO UPDATE SET rows_done = EXCLUDED.rows_done,
               offset_done = EXCLUDED.offset_done, last_offset = EXCLUDED.last_offset,
               last_hash = EXCLUDED.last_hash, updated_at = now()",
            n.cursors
        ),
        &[
            &n.plain,
            &source,
            &(p.rows as i64),
            &(p.offset as i64),
            &last_offset,
            &last_hash,
        ],
    )?;
    Ok(())
}
