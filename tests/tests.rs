//! One integration-test binary (as ripgrep does): each module covers one area and
//! runs the real `sensorlog` binary over loopback sockets.

// Shared harness: temp dirs, the daemon process, line clients, the fake Google.
mod util;

// Configuration: defaults, file keys, flag precedence, errors naming the key, docs in step.
mod config;
// One definition per config key: accepted keys, the reference table and its defaults in step.
mod config_keys;
// The CSV across restarts and crashes: append, refuse foreign files, torn-row repair, kill -9.
mod durability;
// The ESP8266 and Feather M0 sketches, built for the host, against the real daemon.
mod firmware;
// The fake Google itself: it must reject what real Google rejects.
mod fake_google;
// Issue 8: every hole in the ingest path, one regression test per case.
mod issue8;
// Property tests against simple models: framing, parsing, encoding, resend memory, recovery.
mod properties;
// Many boards in every format; the 1,000-board burst; device naming; acknowledgements.
mod ingest;
// Each limit at N and N+1; garbage bytes; disconnects mid-line.
mod limits;
// `sensorlog simulate` against the daemon: every format, acks, stamps, errors.
mod simulate;
// PostgreSQL sink against a real server: exactly once through kill -9, restarts, killed backends.
mod postgres;
// Google Sheets through the fake Google: exactly once, in order, through faults and restarts.
mod sheets;
// Issue 9: no row stops the upload, the token endpoint's outages, exact numbers, the cursor's identity.
mod sheets_layout;
// Issue 18: set-up decided by one read, tabs sized to the cell budget, never silent.
mod sheets_reconcile;
mod sheets_robust;
// Ctrl-C and SIGTERM drain; the second signal.
mod shutdown;
// Device tokens: refused lines never reach the CSV; revocation without restart; backoff.
mod auth;
// server.allow / server.deny at accept, from 127.0.0.1 and 127.0.0.2.
mod allow;
// The TLS listener: rustls and openssl clients, pinned fingerprints, handshake limits.
mod tls;
// Issue 20: the PROXY protocol behind a real HAProxy; limits and allow/deny see the real board.
mod proxy;
// The live dashboard in real Chromium through WebDriver: boards, live updates, silent (issue 13).
mod dashboard;
// /metrics as Prometheus exposition, per-board series cap, /healthz, /readyz, /api/boards, /events cap.
mod metrics;
// The dashboard port under hostile clients: connection cap, request deadline, bad requests, out of files.
mod http_limits;
// Silent boards: one log line per change; the webhook through failures and an outage.
mod alerts;
// Issue 19: the README's test command names what is missing and how to get it.
mod test_command;
// Issue 22: the CSV bytes and replies for every wire format, byte for byte against golden files.
mod golden;
