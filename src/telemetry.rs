//! Logging and metrics set-up, and every metric name in one place
//! (`<namespace>_<name>_<unit>`; label values are bounded: outcome codes and
//! store kinds, never personal data or ids).

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Counter, label `outcome` = the answer's `code`, or `committed`.
pub const BOOKING_REQUESTS_TOTAL: &str = "vaxslot_booking_requests_total";
/// Histogram of a booking request's time in the gateway, in seconds.
pub const BOOKING_DURATION_SECONDS: &str = "vaxslot_booking_duration_seconds";
/// Histogram of decisions per committed batch.
pub const COMMIT_BATCH_SIZE: &str = "vaxslot_commit_batch_size";
/// Histogram of one batch commit, label `store`.
pub const COMMIT_DURATION_SECONDS: &str = "vaxslot_commit_duration_seconds";
/// Histogram of write jobs (venue-day batches and others) merged into one
/// embedded-store transaction.
pub const STORE_TRANSACTION_JOBS: &str = "vaxslot_store_transaction_jobs";
/// Histogram of one embedded-store transaction, commit and fsync included.
pub const STORE_TRANSACTION_DURATION_SECONDS: &str = "vaxslot_store_transaction_duration_seconds";
/// Gauge: 1 while the kill switch is engaged.
pub const KILL_SWITCH_ENGAGED: &str = "vaxslot_kill_switch_engaged";
/// Gauge: venue-day actors running.
pub const VENUE_DAY_ACTORS: &str = "vaxslot_venue_day_actors";
/// Histogram of a venue-day's mailbox depth when a request is queued.
pub const MAILBOX_DEPTH: &str = "vaxslot_mailbox_depth";
/// Counter, label `outcome`: `ok`, `invalid_credentials`, ….
pub const LOGIN_ATTEMPTS_TOTAL: &str = "vaxslot_login_attempts_total";
/// Gauge: free places over every published venue-day.
pub const SLOTS_REMAINING: &str = "vaxslot_slots_remaining";
/// Gauge: 1 when the store answered the last check.
pub const STORE_UP: &str = "vaxslot_store_up";
/// Counter, label `outcome`: cancellations by answer code.
pub const CANCEL_REQUESTS_TOTAL: &str = "vaxslot_cancel_requests_total";

const SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// How often histogram samples are folded into their buckets. Until then the
/// exporter keeps every sample (8 bytes each, several per booking), so without
/// this a launch-day herd with no scraper grows memory without bound.
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs the process-wide Prometheus recorder, starts its upkeep thread
/// (see [`METRICS_UPKEEP_INTERVAL`]) and returns its handle.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(COMMIT_BATCH_SIZE.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(MAILBOX_DEPTH.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STORE_TRANSACTION_JOBS.into()), BATCH_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })?;
    Ok(handle)
}
