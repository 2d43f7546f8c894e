//! What can go wrong in the PostgreSQL sink, and what to say about it: why the sink
//! stalls, which failures pass by themselves and which need the operator, and the
//! server's error as one redacted line with advice. Kept apart from the sink's loop so
//! that the schema and COPY code below it can name their failures without importing it.

use postgres::error::SqlState;

use super::settings::{self, PostgresConfig};
use crate::sink::follower::rows::Position;
use crate::sink::follower::Class;

/// Why the sink cannot continue right now.
#[derive(Debug)]
pub enum Stall {
    Db(postgres::Error),
    Csv(std::io::Error),
    /// The cursor row changed under this daemon: another one uses the same source.
    CursorMoved,
    /// The CSV does not hold the last row the cursor confirmed.
    NotInCsv(Position),
    /// The connection failed while rows were being handed to it.
    Copy(std::io::Error),
}

impl From<postgres::Error> for Stall {
    fn from(e: postgres::Error) -> Stall {
        Stall::Db(e)
    }
}

/// Sorts a database error: retried soon (the network, a restart of the server) or
/// slowly (something the operator must fix).
pub fn classify(e: &postgres::Error) -> Class {
    let Some(code) = e.code() else {
        // A certificate that TLS refused stays refused until the operator acts.
        if describe(e).contains("invalid peer certificate") {
            return Class::Operator;
        }
        return Class::Transient; // I/O, closed connection, timeout
    };
    let c = code.code();
    let transient_class = ["08", "53", "57", "40", "55"].iter().any(|p| c.starts_with(p));
    if transient_class && *code != SqlState::INSUFFICIENT_PRIVILEGE {
        Class::Transient
    } else {
        Class::Operator
    }
}

/// A database error as one line: the server's message, detail and hint, and SQLSTATE.
pub fn describe(e: &postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    };
    settings::redact(&text)
}

/// What to tell the operator for an error that needs them.
pub fn advice(e: &postgres::Error, cfg: &PostgresConfig) -> String {
    let names = format!(
        "{} and {}",
        cfg.qualified_table(),
        match &cfg.schema {
            Some(s) => format!("{s}.sensorlog_cursors"),
            None => "sensorlog_cursors".into(),
        }
    );
    let user = cfg.pg.get_user().unwrap_or("?");
    match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => format!(
            "user {user} lacks a privilege: it needs SELECT, INSERT on {names}, UPDATE on the cursors table, and CREATE on the schema the first time (the tables are created then). E.g. GRANT SELECT, INSERT ON {} TO {user}; GRANT SELECT, INSERT, UPDATE ON sensorlog_cursors TO {user};",
            cfg.qualified_table()
        ),
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            format!("the server refused user {user}: check the user and the password (postgres.password_file or PGPASSWORD)")
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            "the database does not exist: create it (createdb) or fix postgres.url".into()
        }
        Some(c) if *c == SqlState::UNDEFINED_TABLE => format!(
            "a sensorlog table is missing although sensorlog_migrations says it was created; was {names} dropped? Restore it, or delete the rows of {} from sensorlog_migrations to create it again",
            cfg.qualified_table()
        ),
        None if describe(e).contains("certificate") => format!(
            "the server's TLS certificate was not accepted ({}): give the CA that signed it as sslrootcert=/path/ca.pem in postgres.url, and for verify-full connect by the name the certificate was issued for",
            cfg.tls.describe()
        ),
        _ => "see the PostgreSQL server log".into(),
    }
}
