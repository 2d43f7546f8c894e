//! The uploader's line to Google: the REST client, the OAuth token, the request pacer
//! (`sheets.requests_per_minute`) and the stall watch (`sheets.stall_warn_secs`), on the
//! uploader's own current-thread tokio runtime.
//!
//! Every request of every part (set-up, layouts, retention, overview) goes through
//! [`Google::call`]: it waits for its turn, adds the token, renews a rejected token once,
//! never outlasts the shutdown time, and has every refusal logged and counted
//! (`refusals`). The other parts hold no client, token or pacer of their own: they are
//! handed a `&mut Google` for the requests they make.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::settings::SheetsConfig;
use crate::stats::Stats;

use super::client::{ApiError, Client, Spreadsheet, Tab};
use super::oauth::{Auth, TokenError};
use super::retry::{self, Class, Pacer};
use super::stall_watch::Watch;

/// Why the uploader cannot continue right now.
pub enum Stall {
    Api(ApiError),
    Token(TokenError),
    /// A problem the operator must fix, with the message to log.
    Operator(String),
}

/// Whether Google refused the request as invalid (a retry of the same would fail again).
pub fn refused(e: &ApiError) -> bool {
    matches!(e, ApiError::Status { code: 400 | 413, .. })
}

/// One request to the client with a token, as [`Google::call`] runs it.
type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + 'a>>;

pub struct Google {
    cfg: Arc<SheetsConfig>,
    stats: Arc<Stats>,
    email: String,
    /// The key, until the authenticator is built from it.
    key: Option<yup_oauth2::ServiceAccountKey>,
    rt: tokio::runtime::Runtime,
    client: Client,
    auth: Option<Auth>,
    pacer: Pacer,
    /// The end of the shutdown time, once it started: no request may outlast it.
    stop_at: Option<Instant>,
    /// `sheets.stall_warn_secs`: since when nothing was confirmed.
    watch: Watch,
    /// Rows waiting for the sheet, as the uploader last said (for the stall watch).
    backlog: u64,
}

impl Google {
    pub fn new(
        cfg: Arc<SheetsConfig>,
        key: yup_oauth2::ServiceAccountKey,
        stats: Arc<Stats>,
    ) -> Result<Google, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let client = Client::new(
            &cfg.api_base_url,
            &cfg.spreadsheet_id,
            cfg.request_timeout,
            cfg.max_response_bytes,
        )
        .map_err(|e| e.to_string())?;
        Ok(Google {
            pacer: Pacer::new(cfg.requests_per_minute),
            email: key.client_email.clone(),
            key: Some(key),
            cfg,
            stats,
            rt,
            client,
            auth: None,
            stop_at: None,
            watch: Watch::default(),
            backlog: 0,
        })
    }

    /// What to do about a 4xx, naming the spreadsheet and the key's e-mail.
    pub fn explain(&self, e: &ApiError) -> String {
        super::refusals::explain(e, &self.cfg.spreadsheet_id, &self.email)
    }

    /// The shutdown time started: no request may last past `deadline`.
    pub fn stop_by(&mut self, deadline: Instant) {
        self.stop_at = Some(deadline);
    }

    /// `rows` wait for the sheet (what a stall warning reports).
    pub fn waiting(&mut self, rows: u64) {
        self.backlog = rows;
    }

    /// Google confirmed a batch: no stall.
    pub fn progress(&mut self) {
        self.watch.progress();
    }

    /// Rows wait for `cause`: a WARN once nothing was confirmed for `sheets.stall_warn_secs`.
    pub fn stalled(&mut self, cause: &str) {
        self.watch.check(self.backlog, cause, self.cfg.stall_warn);
    }

    /// Builds the yup-oauth2 authenticator (once).
    pub fn authenticate(&mut self) -> Result<(), Stall> {
        if self.auth.is_some() {
            return Ok(());
        }
        let key = self.key.take().expect("the key is kept until set-up");
        match self.rt.block_on(Auth::new(
            key.clone(),
            self.cfg.request_timeout,
            self.cfg.max_response_bytes,
        )) {
            Ok(a) => {
                self.auth = Some(a);
                Ok(())
            }
            Err(e) => {
                self.key = Some(key);
                Err(Stall::Operator(e.to_string()))
            }
        }
    }

    /// One Sheets request: waits for its turn, adds the token, renews a rejected token once.
    pub fn call<T, F>(&mut self, op: F) -> Result<T, Stall>
    where
        F: for<'a> Fn(&'a Client, &'a str) -> Reply<'a, T>,
    {
        let mut fresh = false;
        loop {
            let delay = self.pacer.delay();
            if delay > Duration::from_secs(1) {
                self.stalled("the request quota (sheets.requests_per_minute)");
            }
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let auth = self.auth.as_ref().expect("set up before any call");
            let limit = self.stop_at.map_or(self.cfg.request_timeout, |s| {
                s.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100))
            });
            self.pacer.sent();
            let client = &self.client;
            let result = self.rt.block_on(async {
                let token = auth.token(fresh).await.map_err(Stall::Token)?;
                match tokio::time::timeout(limit, op(client, &token)).await {
                    Ok(r) => r.map_err(Stall::Api),
                    Err(_) => Err(Stall::Api(ApiError::Transport(format!(
                        "no answer from {} in {:.1} s",
                        client.base(),
                        limit.as_secs_f64()
                    )))),
                }
            });
            if let Err(Stall::Api(e)) = &result {
                super::refusals::note(&self.stats, e, "a request"); // issue 18: never silent
            }
            match result {
                Err(Stall::Api(e)) if retry::classify(&e) == Class::Unauthorized && !fresh => {
                    log::debug!("Google Sheets answered 401; fetching a new token.");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// `spreadsheets.get`: tabs, grid sizes, charts.
    pub fn spreadsheet(&mut self) -> Result<Spreadsheet, Stall> {
        self.call(|c, t| Box::pin(c.spreadsheet(t)))
    }

    /// The first row of `tab`, as text.
    pub fn first_row(&mut self, tab: &Tab) -> Result<Vec<String>, Stall> {
        let probe = tab.clone();
        self.call(move |c, t| {
            let probe = probe.clone();
            Box::pin(async move { c.first_row(t, &probe).await })
        })
    }

    /// `appendDimension`: `length` more rows or columns (`dimension`) for tab `sheet_id`.
    pub fn grow(&mut self, sheet_id: i64, dimension: &'static str, length: u64) -> Result<(), Stall> {
        self.call(move |c, t| Box::pin(c.grow(t, sheet_id, dimension, length)))
    }

    /// A new tab of `rows` x `columns`.
    pub fn add_tab(&mut self, title: &str, rows: u64, columns: u64) -> Result<Tab, Stall> {
        let title = title.to_string();
        self.call(move |c, t| {
            let title = title.clone();
            Box::pin(async move { c.add_tab(t, &title, rows, columns, None).await })
        })
    }

    /// `values:batchUpdate` of one range.
    pub fn write_range(&mut self, range: String, values: Vec<Vec<Value>>) -> Result<(), Stall> {
        self.call(move |c, t| {
            let (range, values) = (range.clone(), values.clone());
            Box::pin(async move { c.write(t, &range, values).await })
        })
    }

    /// One `values:batchUpdate` of many ranges.
    pub fn write_many(&mut self, writes: Vec<(String, Vec<Vec<Value>>)>) -> Result<(), Stall> {
        self.call(move |c, t| {
            let writes = writes.clone();
            Box::pin(async move { c.write_many(t, writes).await })
        })
    }

    /// The values of `range`.
    pub fn read(&mut self, range: String) -> Result<Vec<Vec<Value>>, Stall> {
        self.call(move |c, t| {
            let range = range.clone();
            Box::pin(async move { c.read(t, &range).await })
        })
    }

    /// One `spreadsheets.batchUpdate` (applied whole or not at all).
    pub fn batch_requests(&mut self, requests: Vec<Value>) -> Result<Value, Stall> {
        self.call(move |c, t| {
            let requests = requests.clone();
            Box::pin(async move { c.batch_requests(t, requests).await })
        })
    }
}
