//! The Sheets REST API v4 calls the uploader makes, and nothing else.
//!
//! Only the base URL comes from configuration (`sheets.api_base_url`), so the same code
//! talks to Google or to a test server. Every write is a retry-safe explicit-range
//! `values:batchUpdate` with `valueInputOption=RAW` (a reading can never become a
//! formula); the one call that is not idempotent, `appendDimension`, only adds blank
//! rows, and the uploader re-reads the grid size after it fails ambiguously.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// A failed call: what Google said (status and message), or why no answer came.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Google answered with an error status.
    Status {
        code: u16,
        status: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No (complete) answer: connection refused or reset, timeout. The request may or
    /// may not have been applied.
    Transport(String),
    /// An answer that is not what the API documents.
    Decode(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status {
                code, status, message, ..
            } => write!(f, "HTTP {code} {status}: {}", message.trim_end().trim_end_matches('.')),
            ApiError::Transport(e) => write!(f, "no answer from Google: {e}"),
            ApiError::Decode(e) => write!(f, "unexpected answer from Google: {e}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// One tab of the spreadsheet, as `spreadsheets.get` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tab {
    pub sheet_id: i64,
    pub title: String,
    pub rows: u64,
    pub columns: u64,
}

#[derive(Debug, Clone)]
pub struct Spreadsheet {
    pub title: String,
    pub tabs: Vec<Tab>,
    /// Every chart: (the `sheetId` of the tab it sits on, its `chartId`).
    pub charts: Vec<(i64, i64)>,
}

impl Spreadsheet {
    pub fn tab(&self, title: &str) -> Option<&Tab> {
        self.tabs.iter().find(|t| t.title == title)
    }

    /// Cells of the whole workbook: what Google's cell limit counts.
    pub fn cells(&self) -> u64 {
        self.tabs.iter().map(|t| t.rows * t.columns).sum()
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    spreadsheet_id: String,
    /// `sheets.max_response_bytes`: an answer is read up to this many bytes, no further.
    max_response_bytes: usize,
}

/// `'Tab Name'` with quotes doubled, as A1 notation wants it.
pub fn quote_tab(title: &str) -> String {
    format!("'{}'", title.replace('\'', "''"))
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything but unreserved characters (for a range in a URL path).
fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

impl Client {
    pub fn new(
        base: &str,
        spreadsheet_id: &str,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Client, ApiError> {
        // reqwest is built without a default provider: ring, the one rustls uses everywhere
        // here (a second call finds it installed and changes nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .user_agent(concat!("sensorlog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            spreadsheet_id: spreadsheet_id.to_string(),
            max_response_bytes,
        })
    }

    /// The API's base URL (for messages).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, suffix: &str) -> String {
        format!("{}/v4/spreadsheets/{}{suffix}", self.base, self.spreadsheet_id)
    }

    async fn send(&self, req: reqwest::RequestBuilder, token: &str) -> Result<Value, ApiError> {
        let req = req
            .bearer_auth(token)
            .build()
            .map_err(|e| ApiError::Transport(format!("cannot build the request: {}", describe(&e))))?;
        // Name the URL that failed (without its query, which only holds `fields` and options).
        let url = format!(
            "{} {}",
            req.method(),
            req.url().as_str().split('?').next().unwrap_or("")
        );
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| ApiError::Transport(format!("{url}: {}", describe(&e))))?;
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = self.read_body(resp, &url).await?;
        if (200..300).contains(&code) {
            return serde_json::from_slice(&body)
                .map_err(|e| ApiError::Decode(format!("HTTP {code}, body is not JSON: {e}")));
        }
        // google.rpc.Status: {"error":{"code","message","status"}}; anything else (an
        // HTML 502 page) is summarised.
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let err = parsed.as_ref().and_then(|v| v.get("error"));
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                text.chars().take(200).collect()
            });
        let status = err
            .and_then(|e| e.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = if status.is_empty() {
            reqwest::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string()
        } else {
            status
        };
        // Keep SERVICE_DISABLED visible: it tells "API not enabled" from "not shared".
        let disabled = err
            .and_then(|e| e.get("details"))
            .and_then(Value::as_array)
            .is_some_and(|d| {
                d.iter()
                    .any(|x| x.get("reason").and_then(Value::as_str) == Some("SERVICE_DISABLED"))
            });
        Err(ApiError::Status {
            code,
            status: if disabled { "SERVICE_DISABLED".into() } else { status },
            message,
            retry_after,
        })
    }

    /// The answer's body, at most `max_response_bytes` of it: a longer one (announced or
    /// not) is an unexpected answer, retried like an outage (the request may have been
    /// applied), so nothing is lost and memory stays bounded whatever the other end sends.
    async fn read_body(&self, mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, ApiError> {
        let limit = self.max_response_bytes;
        let too_long = |code: u16| {
            ApiError::Decode(format!(
                "{url}: HTTP {code} with a body longer than sheets.max_response_bytes ({limit} bytes), cut off unread. Google's answers are far shorter: check sheets.api_base_url and any proxy in between"
            ))
        };
        let code = resp.status().as_u16();
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long(code));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ApiError::Transport(format!("{url}: {}", describe(&e))))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_long(code));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `spreadsheets.get` asking for exactly what the set-up decides from: the title, each
    /// tab's id, title and grid size, and each tab's charts (ids and the columns they plot).
    pub async fn spreadsheet(&self, token: &str) -> Result<Spreadsheet, ApiError> {
        let fields = "properties.title,sheets(properties(sheetId,title,gridProperties(rowCount,columnCount)),\
                      charts(chartId,spec.basicChart.series.series.sourceRange.sources(sheetId,startColumnIndex)))";
        let v = self
            .send(
                self.http.get(self.url(&format!("?fields={}", encode_path(fields)))),
                token,
            )
            .await?;
        let title = v
            .pointer("/properties/title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut tabs = Vec::new();
        let mut charts = Vec::new();
        for s in v.get("sheets").and_then(Value::as_array).into_iter().flatten() {
            let p = s
                .get("properties")
                .ok_or_else(|| ApiError::Decode("a sheet without properties".into()))?;
            let sheet_id = p.get("sheetId").and_then(Value::as_i64).unwrap_or(0);
            for c in s.get("charts").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = c.get("chartId").and_then(Value::as_i64) {
                    charts.push((sheet_id, id));
                }
            }
            tabs.push(Tab {
                sheet_id: p.get("sheetId").and_then(Value::as_i64).unwrap_or(0),
                title: p.get("title").and_then(Value::as_str).unwrap_or("").to_string(),
                rows: p
                    .pointer("/gridProperties/rowCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                columns: p
                    .pointer("/gridProperties/columnCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            });
        }
        Ok(Spreadsheet { title, tabs, charts })
    }

    /// `appendDimension`: adds `length` blank rows or columns (`dimension`) to the tab.
    pub async fn grow(&self, token: &str, sheet_id: i64, dimension: &str, length: u64) -> Result<(), ApiError> {
        let body =
            json!({"requests": [{"appendDimension": {"sheetId": sheet_id, "dimension": dimension, "length": length}}]});
        self.send(self.http.post(self.url(":batchUpdate")).json(&body), token)
            .await?;
        Ok(())
    }

    /// `values:batchUpdate` of one explicit range, RAW.
    pub async fn write(&self, token: &str, range: &str, values: Vec<Vec<Value>>) -> Result<(), ApiError> {
        let body = json!({
            "valueInputOption": "RAW",
            "data": [{"range": range, "majorDimension": "ROWS", "values": values}],
            "includeValuesInResponse": false,
        });
        self.send(self.http.post(self.url("/values:batchUpdate")).json(&body), token)
            .await?;
        Ok(())
    }

    /// `values:batchUpdate` of several explicit ranges in one request, RAW: Google
    /// applies all of them or none.
    pub async fn write_many(&self, token: &str, writes: Vec<(String, Vec<Vec<Value>>)>) -> Result<(), ApiError> {
        let data: Vec<Value> = writes
            .into_iter()
            .map(|(range, values)| json!({"range": range, "majorDimension": "ROWS", "values": values}))
            .collect();
        let body = json!({"valueInputOption": "RAW", "data": data, "includeValuesInResponse": false});
        self.send(self.http.post(self.url("/values:batchUpdate")).json(&body), token)
            .await?;
        Ok(())
    }

    /// `spreadsheets.batchUpdate` with these requests (Google applies all or none).
    pub async fn batch_requests(&self, token: &str, requests: Vec<Value>) -> Result<Value, ApiError> {
        let body = json!({ "requests": requests });
        self.send(self.http.post(self.url(":batchUpdate")).json(&body), token)
            .await
    }

    /// `addSheet` with a frozen header row, at position `index` (0 = first) or, with
    /// `None`, after the existing tabs; returns the new tab.
    pub async fn add_tab(
        &self,
        token: &str,
        title: &str,
        rows: u64,
        columns: u64,
        index: Option<u64>,
    ) -> Result<Tab, ApiError> {
        let mut properties = json!({
            "title": title,
            "gridProperties": {"rowCount": rows, "columnCount": columns, "frozenRowCount": 1}
        });
        if let Some(index) = index {
            properties["index"] = json!(index);
        }
        let body = json!({"requests": [{"addSheet": {"properties": properties}}]});
        let v = self
            .send(self.http.post(self.url(":batchUpdate")).json(&body), token)
            .await?;
        let p = v
            .pointer("/replies/0/addSheet/properties")
            .ok_or_else(|| ApiError::Decode("addSheet reply without properties".into()))?;
        Ok(Tab {
            sheet_id: p.get("sheetId").and_then(Value::as_i64).unwrap_or(0),
            title: title.to_string(),
            rows,
            columns,
        })
    }

    /// `values.get` of a range, unformatted.
    pub async fn read(&self, token: &str, range: &str) -> Result<Vec<Vec<Value>>, ApiError> {
        let url = self.url(&format!(
            "/values/{}?valueRenderOption=UNFORMATTED_VALUE",
            encode_path(range)
        ));
        let v = self.send(self.http.get(url), token).await?;
        Ok(v.get("values")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
            .unwrap_or_default())
    }
}

impl Client {
    /// The tab's first row as text, reading only the columns the tab has (a range past
    /// the grid is an error, so a narrow tab must not be asked for A1:I1).
    pub async fn first_row(&self, token: &str, tab: &Tab) -> Result<Vec<String>, ApiError> {
        let last = column_letters(tab.columns.clamp(1, crate::sink::csv::encode::COLUMNS as u64));
        let rows = self
            .read(token, &format!("{}!A1:{last}1", quote_tab(&tab.title)))
            .await?;
        Ok(rows
            .first()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Whether a first row is sensorlog's header.
pub fn is_header(row: &[String]) -> bool {
    row.iter()
        .map(String::as_str)
        .eq(crate::sink::csv::encode::HEADER.iter().copied())
}

/// reqwest's error with its causes, without the URL's query (no secrets there, but long).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Column letters of a 1-based column number (1 = A, 27 = AA).
pub fn column_letters(mut n: u64) -> String {
    let mut out = Vec::new();
    while n > 0 {
        n -= 1;
        out.push(b'A' + (n % 26) as u8);
        n /= 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns() {
        assert_eq!(column_letters(1), "A");
        assert_eq!(column_letters(9), "I");
        assert_eq!(column_letters(26), "Z");
        assert_eq!(column_letters(27), "AA");
    }

    #[test]
    fn ranges_and_paths() {
        assert_eq!(quote_tab("It's"), "'It''s'");
        assert_eq!(encode_path("'My Tab'!A1:I1"), "%27My%20Tab%27%21A1%3AI1");
        assert_eq!(encode_path("Küche-1.a_b~"), "K%C3%BCche-1.a_b~");
    }

    /// A server that answers one connection with `head` and then 16 KiB chunks of
    /// chunked encoding until the client hangs up (at most 1,000 chunks): an answer with
    /// no announced length and no end.
    fn endless_server(head: &'static str) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else { return };
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            let _ = s.write_all(head.as_bytes());
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            for _ in 0..1000 {
                if s.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        });
        addr
    }

    #[test]
    fn an_answer_longer_than_max_response_bytes_is_cut_off_announced_or_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let heads = [
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 99999999\r\n\r\n",
        ];
        for (head, code) in heads.into_iter().zip([200, 502]) {
            let addr = endless_server(head);
            let client = Client::new(&format!("http://{addr}"), "s1", Duration::from_secs(10), 65_536).unwrap();
            let started = std::time::Instant::now();
            let Err(ApiError::Decode(e)) = rt.block_on(client.read("t", "Sheet1!A1:A1")) else {
                panic!("HTTP {code}: not cut off");
            };
            assert!(
                e.contains(&format!(
                    "HTTP {code} with a body longer than sheets.max_response_bytes (65536 bytes)"
                )),
                "{e}"
            );
            assert!(e.starts_with("GET http://"), "names the call: {e}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "cut off at the limit, not at the timeout"
            );
        }
    }
}
