//! `sensorlog sheets check`: walks the set-up one step at a time (key file, token,
//! spreadsheet, tab, cells) and says what works and what to fix, writing nothing.
//!
//! It uses the same key reader, token source and API client as the uploader, so a
//! passing check means the daemon's first requests will pass too.

use std::time::Duration;

use super::ok;
use crate::cli::CheckArgs;
use crate::error::{Error, Result};
use crate::settings::ConfigError;
use crate::sink::csv::settings::DEFAULT_CSV_PATH;
use crate::sink::sheets::settings::SheetsConfig;

use crate::sink::sheets::client::{is_header, Client};
use crate::sink::sheets::oauth::{self, Auth};
use crate::sink::sheets::refusals::explain;

fn fail(msg: impl std::fmt::Display) -> Error {
    super::fail("the Google Sheets check", msg)
}

pub fn run(args: &CheckArgs) -> Result<()> {
    let file = super::file_or_defaults(args.config.as_deref())?;
    let csv_path = file.csv.path.clone().unwrap_or_else(|| DEFAULT_CSV_PATH.into());
    let cfg: SheetsConfig = SheetsConfig::build(file.sheets, &args.sheets, &csv_path)?.ok_or_else(|| ConfigError {
        key: "sheets.key_file".into(),
        reason: "is not set (nor --sheets-key-file): Google Sheets upload is off, nothing to check".into(),
    })?;
    println!(
        "Checking Google Sheets for spreadsheet {} tab {:?}:",
        cfg.spreadsheet_id, cfg.tab
    );
    let key = oauth::read_key(&cfg.key_file).map_err(fail)?;
    let email = key.client_email.clone();
    ok(format!(
        "key file {} is a service-account key for {email}",
        cfg.key_file.display()
    ));
    let token_uri = key.token_uri.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::startup("start a runtime", e))?;
    let timeout = cfg.request_timeout.min(Duration::from_secs(30));
    let auth = rt
        .block_on(Auth::new(key, timeout, cfg.max_response_bytes))
        .map_err(fail)?;
    let token = rt.block_on(auth.token(false)).map_err(fail)?;
    ok(format!("got an access token from {token_uri}"));

    let client = Client::new(&cfg.api_base_url, &cfg.spreadsheet_id, timeout, cfg.max_response_bytes).map_err(fail)?;
    let sheet = rt
        .block_on(client.spreadsheet(&token))
        .map_err(|e| fail(explain(&e, &cfg.spreadsheet_id, &email)))?;
    ok(format!(
        "spreadsheet {:?} is shared with {email} and the Sheets API is enabled",
        sheet.title
    ));
    match sheet.tab(&cfg.tab) {
        None => ok(format!(
            "tab {:?} does not exist yet; `sensorlog serve` will create it",
            cfg.tab
        )),
        Some(tab) => {
            let first = rt
                .block_on(client.first_row(&token, tab))
                .map_err(|e| fail(explain(&e, &cfg.spreadsheet_id, &email)))?;
            if first.is_empty() {
                ok(format!("tab {:?} exists and is empty ({} rows)", cfg.tab, tab.rows));
            } else if is_header(&first) {
                ok(format!(
                    "tab {:?} has the sensorlog header ({} rows)",
                    cfg.tab, tab.rows
                ));
            } else {
                return Err(fail(format!(
                    "tab {:?} already holds other data (first row {:?}); choose another sheets.tab",
                    cfg.tab,
                    first.join(",")
                )));
            }
        }
    }
    let cells = sheet.cells();
    let pct = cells * 100 / cfg.max_cells.max(1);
    let line = format!("the spreadsheet uses {cells} of {} cells ({pct}%)", cfg.max_cells);
    if pct >= 100 {
        return Err(fail(format!("{line}: it is full; use a new spreadsheet")));
    }
    ok(line);
    println!("All checks passed: `sensorlog serve` can upload to this sheet.");
    Ok(())
}
