//! Silent-board alerts: the `board-watch` thread and the optional webhook.
//!
//! Once a second `board-watch` asks [`Boards::check`] which boards went silent or came
//! back, and logs each change once: WARN when a board goes silent, INFO when it reports
//! again (never a line per check). With `alerts.webhook_url` set, each change also goes
//! on a bounded queue (`alerts.webhook_queue`) that the `alerts-webhook` thread POSTs,
//! in order, as JSON:
//!
//! ```json
//! {"board":"kitchen","status":"silent","last_seen":"2026-12-01T10:15:02.123Z",
//!  "last_seen_unix_ms":1796...,"usual_interval_secs":10.0,"quiet_secs":61.2,
//!  "text":"Board kitchen is silent: ..."}
//! ```
//!
//! (`text` lets chat webhooks show it as is.) A failed POST (network error, timeout or
//! a non-2xx answer) is retried with exponential backoff (1 s doubling to
//! [`MAX_BACKOFF`]) and the alert stays at the head of the queue, so a receiver that is
//! down for a while gets every alert, in order, when it is back. Only when the queue is
//! full is the oldest alert dropped (an ERROR says so). Ingest never waits for any of
//! this: the connection threads only update [`Boards`]; this module reads it.
//!
//! The URL can carry a secret (chat webhooks put their token in the path), so logs name
//! only its scheme and host.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;

use crate::fleet::boards::settings::AlertsConfig;
use crate::fleet::boards::{Boards, Change, Status};
use crate::shutdown::Shutdown;

/// How often `board-watch` checks the boards.
pub const CHECK_PERIOD: Duration = Duration::from_secs(1);
/// Longest wait between two webhook attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub board: String,
    pub status: Status,
    pub last_seen: String,
    pub last_seen_unix_ms: u64,
    pub usual_interval_secs: Option<f64>,
    pub quiet_secs: f64,
    pub text: String,
}

#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<Alert>>,
    ready: Condvar,
    closed: AtomicBool,
}

impl Queue {
    /// Queues `alert`; at `cap` alerts the oldest is dropped first. Returns whether one was.
    fn push(&self, alert: Alert, cap: usize) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = items.len() >= cap;
        if dropped {
            items.pop_front();
        }
        items.push_back(alert);
        self.ready.notify_one();
        dropped
    }
}

/// The running alert threads; [`Alerts::finish`] stops them at shutdown.
pub struct Alerts {
    watch: Option<JoinHandle<()>>,
    webhook: Option<(JoinHandle<()>, Arc<Queue>)>,
    flush_for: Duration,
}

/// Starts `board-watch` (always) and `alerts-webhook` (when a URL is configured).
pub fn start(boards: Arc<Boards>, cfg: &AlertsConfig, shutdown: &Arc<Shutdown>) -> std::io::Result<Alerts> {
    let webhook = match &cfg.webhook_url {
        Some(url) => {
            let queue = Arc::new(Queue::default());
            let (url, timeout, q) = (url.clone(), cfg.webhook_timeout, Arc::clone(&queue));
            let h = std::thread::Builder::new()
                .name("alerts-webhook".into())
                .spawn(move || deliver(&url, timeout, &q))?;
            Some((h, queue))
        }
        None => None,
    };
    let queue = webhook.as_ref().map(|(_, q)| Arc::clone(q));
    let (factor, min_silent, cap) = (cfg.silent_factor, cfg.min_silent, cfg.webhook_queue);
    let shutdown = Arc::clone(shutdown);
    let watch = std::thread::Builder::new().name("board-watch".into()).spawn(move || {
        let mut dropped_logged: Option<Instant> = None;
        while !shutdown.sleep(CHECK_PERIOD) {
            for c in boards.check() {
                let alert = describe(&c, factor, min_silent);
                match c.status {
                    Status::Silent => log::warn!("{}", alert.text),
                    _ => log::info!("{}", alert.text),
                }
                if let Some(q) = &queue {
                    let dropped = q.push(alert, cap);
                    if dropped && dropped_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        log::error!(
                            "The alert webhook queue is full ({cap} alerts, alerts.webhook_queue): dropped the oldest alert. Check that the webhook receiver is up."
                        );
                        dropped_logged = Some(Instant::now());
                    }
                }
            }
        }
    })?;
    Ok(Alerts {
        watch: Some(watch),
        webhook,
        flush_for: cfg.webhook_timeout,
    })
}

impl Alerts {
    /// Stops checking; gives the webhook `alerts.webhook_timeout_secs` to send what is
    /// queued, then says what was left.
    pub fn finish(mut self) {
        if let Some(w) = self.watch.take() {
            let _ = w.join();
        }
        if let Some((h, q)) = self.webhook.take() {
            let deadline = Instant::now() + self.flush_for;
            while !q.items.lock().unwrap_or_else(|p| p.into_inner()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            q.closed.store(true, Ordering::Release);
            q.ready.notify_all();
            let left = q.items.lock().unwrap_or_else(|p| p.into_inner()).len();
            if left > 0 {
                log::warn!("Stopped with {left} alerts not delivered to the webhook.");
            }
            // The thread may be inside one request (bounded by the timeout); do not wait longer.
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// The alert for a change, with its one-line log text.
pub fn describe(c: &Change, factor: f64, min_silent: Duration) -> Alert {
    let last_seen = crate::sink::csv::encode::rfc3339_millis(UNIX_EPOCH + Duration::from_millis(c.last_seen_unix_ms));
    let usual = match c.usual_interval_secs {
        Some(u) => format!("usually every {u:.1} s"),
        None => "too few readings to know its usual interval".to_string(),
    };
    let text = match c.status {
        Status::Silent => format!(
            "Board {} is silent: nothing for {:.0} s, {usual} (alerts.silent_factor {factor}, alerts.min_silent_secs {}). Last reading at {last_seen}.",
            c.device,
            c.quiet_secs,
            min_silent.as_secs()
        ),
        _ => format!(
            "Board {} is reporting again after about {:.0} s of silence.",
            c.device, c.quiet_secs
        ),
    };
    Alert {
        board: c.device.clone(),
        status: c.status,
        last_seen,
        last_seen_unix_ms: c.last_seen_unix_ms,
        usual_interval_secs: c.usual_interval_secs,
        quiet_secs: (c.quiet_secs * 10.0).round() / 10.0,
        text,
    }
}

/// `scheme://host[:port]` of a URL: what logs may show of it.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(webhook)".to_string(),
    }
}

fn deliver(url: &str, timeout: Duration, q: &Queue) {
    let shown = redact(url);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("Cannot start the alert webhook ({shown}): {e}. Alerts are only logged.");
            return;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("sensorlog/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!("Cannot build the alert webhook client ({shown}): {e}. Alerts are only logged.");
            return;
        }
    };
    let mut backoff = Duration::from_secs(1);
    let mut failures: u32 = 0;
    loop {
        let next = {
            let mut items = q.items.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(a) = items.front() {
                    break Some(a.clone());
                }
                if q.closed.load(Ordering::Acquire) {
                    break None;
                }
                items = q
                    .ready
                    .wait_timeout(items, Duration::from_millis(500))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let Some(alert) = next else { return };
        let result = rt.block_on(async { client.post(url).json(&alert).send().await });
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(if e.is_timeout() {
                format!("no answer within {} s", timeout.as_secs())
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            }),
        };
        match error {
            None => {
                q.items.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                if failures > 0 {
                    log::info!("The alert webhook ({shown}) answers again after {failures} failed attempts; sending the queued alerts.");
                }
                failures = 0;
                backoff = Duration::from_secs(1);
            }
            Some(why) => {
                failures += 1;
                let waiting = q.items.lock().unwrap_or_else(|p| p.into_inner()).len();
                if failures == 1 || failures.is_multiple_of(10) {
                    log::warn!(
                        "The alert webhook ({shown}) failed: {why}. Retrying in {} s; {waiting} alerts are kept until it answers.",
                        backoff.as_secs()
                    );
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !q.closed.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                }
                if q.closed.load(Ordering::Acquire) {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_drops_the_oldest_only_past_its_cap() {
        let q = Queue::default();
        let alert = |n: &str| Alert {
            board: n.into(),
            status: Status::Silent,
            last_seen: String::new(),
            last_seen_unix_ms: 0,
            usual_interval_secs: None,
            quiet_secs: 0.0,
            text: String::new(),
        };
        assert!(!q.push(alert("a"), 2));
        assert!(!q.push(alert("b"), 2), "at the cap: nothing dropped");
        assert!(q.push(alert("c"), 2), "one over: the oldest goes");
        let names: Vec<String> = q.items.lock().unwrap().iter().map(|a| a.board.clone()).collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn redact_keeps_only_scheme_and_host() {
        assert_eq!(
            redact("https://hooks.example.com/services/T0/B0/secret"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact("http://user:pw@127.0.0.1:9000/x?token=1"),
            "http://127.0.0.1:9000/…"
        );
    }

    #[test]
    fn describe_says_what_happened() {
        let c = Change {
            device: "kitchen".into(),
            status: Status::Silent,
            last_seen_unix_ms: 1_000,
            usual_interval_secs: Some(10.0),
            quiet_secs: 61.0,
        };
        let a = describe(&c, 5.0, Duration::from_secs(120));
        assert_eq!(a.last_seen, "1970-01-01T00:00:01.000Z");
        assert!(
            a.text
                .starts_with("Board kitchen is silent: nothing for 61 s, usually every 10.0 s"),
            "{}",
            a.text
        );
        assert!(a.text.ends_with('.'));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["status"], "silent");
        assert_eq!(json["board"], "kitchen");
    }
}
