//! Memory and cost of the dashboard's board state (`src/fleet/boards.rs`), for the bound
//! documented in docs/performance.md.
//!
//! `cargo bench --bench boards` fills 10,000 boards, each with 3 numeric fields whose
//! chart rings are full (every bucket of the window holds a point), and prints the
//! process's resident memory before and after next to `Boards::memory_bound_bytes` for
//! the default config (8 fields per board). It then times `Boards::record` for read
//! chunks of one reading (the ingest hook's per-chunk cost). Under
//! `cargo test --all-targets` it runs at 1/100 size as a smoke test.
//!
//! Issue 22: it also runs the hook as a connection does (rows encoded, each reading
//! noted, one `record` per chunk of 64) for known boards and for a flood of new names
//! at the `boards.max_boards` cap, and counts heap allocations per reading with a
//! counting global allocator: a flood must not allocate and free a board per name.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use sensorlog::fleet::boards::settings::{AlertsConfig, BoardsConfig};
use sensorlog::sink::csv::encode::{Encoder, ReadingColumns};

/// The system allocator, counting allocations (and reallocations).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Feeds `readings` readings through the ingest hook as a connection does, in chunks of
/// 64; `name(i)` is reading `i`'s device. Returns (allocations, nanoseconds) per reading.
fn ingest(b: &Boards, readings: u64, name: impl Fn(u64, &mut String)) -> (f64, f64) {
    let (mut seen, mut enc) = (Sightings::default(), Encoder::default());
    let (mut csv, mut device) = (Vec::with_capacity(1 << 16), String::with_capacity(64));
    let values: Vec<String> = (0..64).map(|i| format!("2{}.{}", i % 10, i)).collect();
    let allocations = ALLOCATIONS.load(Relaxed);
    let t = Instant::now();
    let mut i = 0;
    while i < readings {
        for _ in 0..64.min(readings - i) {
            device.clear();
            name(i, &mut device);
            let v = values[(i % 64) as usize].as_str();
            let cols = ReadingColumns {
                received_at: "2026-12-07T12:00:00.000Z",
                device: &device,
                peer: "192.168.1.20:50000",
                boot: "",
                seq: Some(i),
                device_time: "",
            };
            let start = csv.len();
            cols.encode_rows([("temp_c", v, "number"), ("humidity", v, "number")], &mut enc, &mut csv);
            seen.note(
                &device,
                start..csv.len(),
                [("temp_c", v, true), ("humidity", v, true)].into_iter(),
            );
            i += 1;
        }
        b.record(&mut seen, &csv, std::iter::repeat(true), PEER, false);
        csv.clear();
    }
    let ns = t.elapsed().as_nanos() as f64 / readings as f64;
    ((ALLOCATIONS.load(Relaxed) - allocations) as f64 / readings as f64, ns)
}

use sensorlog::fleet::boards::{Boards, Sightings};

/// The one connection every simulated reading comes from.
const PEER: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20)), 50000);

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let boards_n: usize = if full { 10_000 } else { 100 };
    let cfg = BoardsConfig {
        max_boards: 10_000,
        max_fields: 8,
        chart_window: Duration::from_secs(3600),
        chart_points: 120,
        // Every name tracked: the hook's worst case (the default budget is measured below).
        new_name_burst: 1_000_000,
        new_names_per_minute: 1_000_000,
    };
    let alerts = AlertsConfig {
        silent_factor: 5.0,
        min_silent: Duration::from_secs(120),
        webhook_url: None,
        webhook_queue: 1000,
        webhook_timeout: Duration::from_secs(10),
    };
    let before = rss_bytes();
    let b = Boards::new(&cfg, &alerts);
    let names: Vec<String> = (0..boards_n).map(|i| format!("board-{i:05}")).collect();
    let mut seen = Sightings::default();
    let step_ms = 30_000; // one reading per chart bucket
    let start = Instant::now();
    let mut readings = 0u64;
    for k in 0..=cfg.chart_points as u64 {
        for (i, name) in names.iter().enumerate() {
            let (t, h, p) = (
                format!("{}.{}", 20 + i % 5, k % 10),
                format!("{}", 40 + k % 9),
                format!("{}", 1000 + k),
            );
            seen.push(
                name,
                [
                    ("temp_c", t.as_str(), true),
                    ("humidity", h.as_str(), true),
                    ("pressure", p.as_str(), true),
                ]
                .into_iter(),
            );
            b.record_at(&mut seen, std::iter::once(true), PEER, true, k * step_ms + i as u64);
            seen.clear();
            readings += 1;
        }
    }
    let fill = start.elapsed();
    let after = rss_bytes();
    let (totals, views) = b.snapshot(true, 1);
    assert_eq!(totals.boards, boards_n);
    let points = views[0].series.as_ref().map_or(0, |s| s[0].points.len());
    let used = after.saturating_sub(before);
    println!(
        "boards: {boards_n} boards x 3 numeric fields, {points} points per ring (chart_points {}): resident memory grew {:.1} MiB ({:.0} bytes per board); documented bound for {} boards x {} fields: {:.1} MiB",
        cfg.chart_points,
        used as f64 / (1 << 20) as f64,
        used as f64 / boards_n as f64,
        cfg.max_boards,
        cfg.max_fields,
        Boards::memory_bound_bytes(&cfg) as f64 / (1 << 20) as f64
    );
    println!(
        "boards: filled with {readings} readings in {:.2} s ({:.0} ns per record call of one reading, 3 fields)",
        fill.as_secs_f64(),
        fill.as_nanos() as f64 / readings as f64
    );
    // The hot case: few boards sending flat out (the ingest benchmark's shape), values
    // formatted beforehand so only `record` is timed.
    let hot = Boards::new(&cfg, &alerts);
    let values: Vec<String> = (0..64).map(|i| format!("2{}.{}", i % 10, i)).collect();
    let rounds = if full { 20_000u64 } else { 200 };
    let t = Instant::now();
    for k in 0..rounds {
        for name in names.iter().take(100) {
            let v = values[(k % 64) as usize].as_str();
            seen.push(name, [("temp_c", v, true), ("humidity", v, true)].into_iter());
            hot.record(&mut seen, &[], std::iter::once(true), PEER, false);
        }
    }
    println!(
        "boards: hot path, 100 boards x {rounds} readings of 2 numeric fields: {:.0} ns per reading (push + record)",
        t.elapsed().as_nanos() as f64 / (rounds * 100) as f64
    );
    // Snapshot cost: what one /events tick or /api/boards call takes with this many boards.
    let t = Instant::now();
    let (_, v) = b.snapshot(false, 1000);
    println!(
        "boards: one dashboard snapshot (1,000 of {boards_n} boards, no series) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    drop(v);
    let t = Instant::now();
    let changes = b.check();
    println!(
        "boards: one silent check over {boards_n} boards in {:.2} ms ({} changes)",
        t.elapsed().as_secs_f64() * 1000.0,
        changes.len()
    );
    drop(b);

    // Issue 22: known boards against a flood of new names at the cap.
    let n = if full { 1_000_000 } else { 10_000 };
    let known = Boards::new(&cfg, &alerts);
    ingest(&known, 1000, |i, d| d.push_str(&names[(i % 100) as usize]));
    let (known_allocs, known_ns) = ingest(&known, n, |i, d| d.push_str(&names[(i % 100) as usize]));
    let flood = Boards::new(&cfg, &alerts);
    let flood_name = |i: u64, d: &mut String| {
        use std::fmt::Write;
        let _ = write!(d, "flood-{i:09}");
    };
    // Warm up to the cap, so that every further name evicts a board.
    ingest(&flood, cfg.max_boards as u64 + 1000, flood_name);
    let evicted = flood.evicted();
    let (flood_allocs, flood_ns) = ingest(&flood, n, |i, d| flood_name(i + 100_000_000, d));
    println!(
        "boards: ingest hook, {n} readings of 2 fields in chunks of 64: 100 known boards {known_allocs:.3} allocations and {known_ns:.0} ns per reading; a new name per reading at the cap of {} ({} evictions) {flood_allocs:.3} allocations and {flood_ns:.0} ns per reading",
        cfg.max_boards,
        flood.evicted() - evicted
    );
    assert_eq!(flood.evicted() - evicted, n, "every new name evicts one board");
    // The same flood from one connection under the default budget of new names: past
    // its burst, each name is looked up and not tracked (its readings are in the CSV).
    let defaults = BoardsConfig {
        new_name_burst: 100,
        new_names_per_minute: 60,
        ..cfg.clone()
    };
    let budgeted = Boards::new(&defaults, &alerts);
    ingest(&budgeted, cfg.max_boards as u64 + 1000, flood_name);
    let (budget_allocs, budget_ns) = ingest(&budgeted, n, |i, d| flood_name(i + 100_000_000, d));
    println!(
        "boards: the same flood under the default budget of {} new names a connection then {}/min: {} readings untracked, {budget_allocs:.3} allocations and {budget_ns:.0} ns per reading",
        defaults.new_name_burst,
        defaults.new_names_per_minute,
        budgeted.untracked_readings()
    );
    assert!(
        budgeted.untracked_readings() >= n + cfg.max_boards as u64 + 1000 - 2 * 200,
        "past the burst, new names are not tracked"
    );
    assert!(
        flood_allocs < 0.01,
        "a flood of new names allocates per name: {flood_allocs} allocations per reading"
    );
}
