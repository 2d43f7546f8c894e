//! The live state of the fleet: what every board is doing right now, kept in memory
//! beside the ingest path and never read back from the CSV.
//!
//! - `boards`: one record per board (status, last seen, latest values, chart rings),
//!   fed once per read chunk by each connection's [`boards::Sightings`]; bounded by
//!   `[boards]` (O(1) eviction of the least recently seen board at the cap).
//! - `alerts`: the `board-watch` thread: a board silent for much longer than its usual
//!   interval turns `silent` (one WARN, one INFO when it returns, an optional webhook).
//! - `http`: the dashboard, `/metrics`, `/healthz`, `/readyz` and `/api/boards`, all
//!   answered from `boards` and the counters, so watching never slows the boards.
//!
//! They are one feature in three parts: the dashboard shows what `boards` holds and
//! `alerts` decides; none of them is on the path that makes a reading durable.

pub(crate) mod alerts;
pub mod boards;
pub(crate) mod http;
