//! A blocking HTTP client for tests that talk to the dashboard, /metrics or WebDriver.

use std::time::Duration;

/// reqwest's blocking client, with the crate's rustls provider (ring) installed first.
pub fn client(timeout: Duration) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .expect("build the test HTTP client")
}

/// GET `url`: (status, body). Panics on a transport error.
pub fn get(url: &str) -> (u16, String) {
    let r = client(Duration::from_secs(10))
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_else(|e| panic!("GET {url}: body: {e}")))
}
