//! Who may write readings: device tokens and the brute-force brake.
//!
//! Without `auth.tokens_file` anyone who can reach the port writes under any name (the
//! home-network quick start). With it, a board proves its name in the greeting
//! (`HELLO <device> token=<token>`) before anything it sends is written, and then writes
//! only as that device. The pieces:
//! - [`tokens`]: the tokens file (device name + SHA-256 of its token), its atomic
//!   rewrite for `sensorlog token`, and the live set the daemon reloads when the file
//!   changes (a watcher thread polls it every second; no restart, no signal needed);
//! - [`backoff`]: failures counted per source address, with exponential backoff and one
//!   log line per address per interval;
//! - [`session`]: the per-connection state machine the connection thread consults, kept
//!   free of I/O so it is unit-tested here.
//!
//! `docs/security.md` has the threat model these serve.

pub mod backoff;
pub mod session;
pub mod settings;
pub mod tokens;
