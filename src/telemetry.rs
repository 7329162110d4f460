//! Logging and metrics set-up, and every metric name in one place
//! (`<namespace>_<name>_<unit>`; label values are bounded: outcome codes and
//! store kinds, never personal data or ids).

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::codes::ErrorCode;

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
/// Gauge: `/v1` requests being served (the in-flight gate's count).
pub const REQUESTS_IN_FLIGHT: &str = "vaxslot_requests_in_flight";
/// Gauge: `/v1` request bodies on their way, read before their request is
/// admitted (a crowd of slow clients shows here, not in `requests_in_flight`).
pub const REQUEST_BODIES_ARRIVING: &str = "vaxslot_request_bodies_arriving";
/// Counter, label `written`: audit entries, `with_commit` (in a
/// reservation batch) or `before_answer` (on their own).
pub const AUDIT_ENTRIES_TOTAL: &str = "vaxslot_audit_entries_total";
/// Counter, label `outcome`: check-ins by answer code, or `attended`.
pub const CHECKIN_REQUESTS_TOTAL: &str = "vaxslot_checkin_requests_total";

/// Gauge: places held for the call centre, not yet taken, before their release.
pub const SLOTS_HELD_OPEN: &str = "vaxslot_slots_held_open";
/// Gauge: CPU seconds this process has used (user + system), read at scrape.
pub const PROCESS_CPU_SECONDS: &str = "vaxslot_process_cpu_seconds";
/// Gauge: this process's resident memory, in bytes, read at scrape.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "vaxslot_process_resident_memory_bytes";

/// Counter, label `kind`: mail accepted by the SMTP server.
pub const MAIL_SENT_TOTAL: &str = "vaxslot_mail_sent_total";
/// Counter, labels `kind` and `outcome`: `retry` (a temporary failure; tried
/// again later) or `failed` (never sent: refused for good, no address, given up).
pub const MAIL_FAILURES_TOTAL: &str = "vaxslot_mail_failures_total";
/// Counter, label `when`: a worker's claim on a mail was found taken by
/// another worker (its lease ran out while this one was paused or slow):
/// `before_send` (not sent here) or `after_send` (sent here, recorded there).
pub const MAIL_CLAIMS_LOST_TOTAL: &str = "vaxslot_mail_claims_lost_total";
/// Counter, label `what` (`change_entry`, `reservation`, `resident`):
/// records changed by another process that this one could not read from
/// the change streams, and skipped.
pub const CHANGE_RECORDS_SKIPPED_TOTAL: &str = "vaxslot_change_records_skipped_total";
/// Counter, label `what` (`resident`, `venue`, `account`, `mail`,
/// `member`, `day reservations` at start, `venue-day` at each load): stored
/// records that could not be read and were skipped, so that one bad record
/// stops nothing else. A venue-day with one is refused (`503`), never
/// loaded without it.
pub const RECORDS_SKIPPED_TOTAL: &str = "vaxslot_records_skipped_total";
/// Counter: request bodies that had not arrived within `--body-timeout-s`
/// (answered `408 request_timeout`): slow clients, or an attack with them.
pub const REQUEST_BODIES_TIMED_OUT_TOTAL: &str = "vaxslot_request_bodies_timed_out_total";
/// Counter, by `when` (`decided`, `committed`): bookings refused because
/// their deadline had passed (their dose claim ended, or the process that
/// forwarded them stopped waiting), before deciding or by the store.
pub const BOOKINGS_PAST_DEADLINE_TOTAL: &str = "vaxslot_bookings_past_deadline_total";
/// Counter: Redis Cluster connections built again after answering nothing
/// for `CLUSTER_WEDGED_AFTER` although asked.
pub const REDIS_CLUSTER_RECONNECTS_TOTAL: &str = "vaxslot_redis_cluster_reconnects_total";
/// Gauge: mail due and not sent yet (whatever process sends it).
pub const MAIL_OUTBOX_PENDING: &str = "vaxslot_mail_outbox_pending";
/// Gauge: how long the oldest unsent mail has been due, in seconds (0: none).
pub const MAIL_OUTBOX_OLDEST_SECONDS: &str = "vaxslot_mail_outbox_oldest_seconds";

/// Clock ticks per second of `/proc/self/stat` (Linux: `getconf CLK_TCK` is 100).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Reads this process's CPU time and resident memory (Linux `/proc`) into
/// their gauges; elsewhere they stay 0.
pub fn sample_process() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest)
    {
        // Fields after the command name: state is the 1st; utime, stime the 12th and 13th.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        metrics::gauge!(PROCESS_CPU_SECONDS).set((ticks(11) + ticks(12)) / CLOCK_TICKS_PER_S);
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(kib * 1024.0);
    }
}

/// A request's `outcome` label: what it did, or the error code it was
/// answered with (`crate::codes`, never spelled here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A booking or cancellation committed.
    Committed,
    /// A keyed booking answered with its first answer again.
    Replayed,
    /// A check-in recorded.
    Attended,
    /// A resident logged in.
    LoggedIn,
    Refused(ErrorCode),
}

impl Outcome {
    pub const fn label(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Replayed => "replayed",
            Outcome::Attended => "attended",
            Outcome::LoggedIn => "ok",
            Outcome::Refused(code) => code.as_str(),
        }
    }
}

/// Every metric: name, kind, `# HELP` text, and the label values to show
/// (at zero) from the start, so that a healthy idle system has data.
const DESCRIPTIONS: &[Description] = &[
    (
        BOOKING_REQUESTS_TOTAL,
        Kind::Counter,
        "Booking requests by outcome: committed, replayed, or the answer's error code.",
        &[
            ("outcome", Outcome::Committed.label()),
            ("outcome", ErrorCode::BookingClosed.as_str()),
            ("outcome", ErrorCode::Overloaded.as_str()),
            ("outcome", ErrorCode::SlotFull.as_str()),
            ("outcome", ErrorCode::StoreUnavailable.as_str()),
        ],
    ),
    (
        BOOKING_DURATION_SECONDS,
        Kind::Histogram,
        "Time a booking request spends in the service, in seconds.",
        &[],
    ),
    (
        COMMIT_BATCH_SIZE,
        Kind::Histogram,
        "Decisions per committed venue-day batch.",
        &[],
    ),
    (
        COMMIT_DURATION_SECONDS,
        Kind::Histogram,
        "Time of one venue-day batch commit, in seconds, by store.",
        &[],
    ),
    (
        STORE_TRANSACTION_JOBS,
        Kind::Histogram,
        "Write jobs merged into one embedded-store transaction.",
        &[],
    ),
    (
        STORE_TRANSACTION_DURATION_SECONDS,
        Kind::Histogram,
        "Time of one embedded-store transaction with its fsync, in seconds.",
        &[],
    ),
    (
        KILL_SWITCH_ENGAGED,
        Kind::Gauge,
        "1 while the kill switch is engaged (no booking commits), else 0.",
        &[],
    ),
    (
        VENUE_DAY_ACTORS,
        Kind::Gauge,
        "Venue-day actors running in this process.",
        &[],
    ),
    (
        MAILBOX_DEPTH,
        Kind::Histogram,
        "Depth of a venue-day's mailbox when a request is queued.",
        &[],
    ),
    (
        LOGIN_ATTEMPTS_TOTAL,
        Kind::Counter,
        "Resident logins by outcome: ok, invalid_credentials, too_many_attempts (locked).",
        &[
            ("outcome", Outcome::LoggedIn.label()),
            ("outcome", ErrorCode::InvalidCredentials.as_str()),
            ("outcome", ErrorCode::TooManyAttempts.as_str()),
        ],
    ),
    (
        SLOTS_REMAINING,
        Kind::Gauge,
        "Free places over every published venue-day.",
        &[],
    ),
    (
        STORE_UP,
        Kind::Gauge,
        "1 when the store answered its last check, else 0.",
        &[],
    ),
    (
        CANCEL_REQUESTS_TOTAL,
        Kind::Counter,
        "Cancellation requests by outcome: committed or the answer's error code.",
        &[("outcome", Outcome::Committed.label())],
    ),
    (
        REQUESTS_IN_FLIGHT,
        Kind::Gauge,
        "/v1 requests being served now (bounded by --max-in-flight).",
        &[],
    ),
    (
        REQUEST_BODIES_ARRIVING,
        Kind::Gauge,
        "/v1 request bodies on their way, read (within --body-timeout-s) before their request is admitted.",
        &[],
    ),
    (
        AUDIT_ENTRIES_TOTAL,
        Kind::Counter,
        "Audit entries written, with a reservation commit or on their own before the answer.",
        &[("written", "with_commit"), ("written", "before_answer")],
    ),
    (
        CHECKIN_REQUESTS_TOTAL,
        Kind::Counter,
        "Venue check-ins by outcome: attended or the answer's error code.",
        &[("outcome", Outcome::Attended.label())],
    ),
    (
        SLOTS_HELD_OPEN,
        Kind::Gauge,
        "Places held for the call centre and not yet taken, on days before their hold release.",
        &[],
    ),
    (
        MAIL_SENT_TOTAL,
        Kind::Counter,
        "Mail accepted by the SMTP server, by kind.",
        &[
            ("kind", "confirmation"),
            ("kind", "cancellation"),
            ("kind", "reminder"),
        ],
    ),
    (
        MAIL_FAILURES_TOTAL,
        Kind::Counter,
        "Mail not delivered on a try, by kind and outcome: retry (tried again later) or failed (never sent).",
        &[("outcome", "retry"), ("outcome", "failed")],
    ),
    (
        MAIL_CLAIMS_LOST_TOTAL,
        Kind::Counter,
        "Claims on mail found taken by another worker after a lease ran out: before_send (not sent here) or after_send.",
        &[("when", "before_send"), ("when", "after_send")],
    ),
    (
        CHANGE_RECORDS_SKIPPED_TOTAL,
        Kind::Counter,
        "Records changed by another process that could not be read from the change streams and were skipped.",
        &[
            ("what", "change_entry"),
            ("what", "reservation"),
            ("what", "resident"),
        ],
    ),
    (
        RECORDS_SKIPPED_TOTAL,
        Kind::Counter,
        "Stored records that could not be read and were skipped (one bad record stops nothing else), by what.",
        &[("what", "resident"), ("what", "mail")],
    ),
    (
        REQUEST_BODIES_TIMED_OUT_TOTAL,
        Kind::Counter,
        "Request bodies that had not arrived within --body-timeout-s (answered 408 request_timeout).",
        &[],
    ),
    (
        BOOKINGS_PAST_DEADLINE_TOTAL,
        Kind::Counter,
        "Bookings refused because their deadline had passed (dose claim ended, or the forwarding process stopped waiting).",
        &[("when", "decided"), ("when", "committed")],
    ),
    (
        REDIS_CLUSTER_RECONNECTS_TOTAL,
        Kind::Counter,
        "Redis Cluster connections built again after answering nothing for 10 s although asked.",
        &[],
    ),
    (
        MAIL_OUTBOX_PENDING,
        Kind::Gauge,
        "Mail due and not sent yet.",
        &[],
    ),
    (
        MAIL_OUTBOX_OLDEST_SECONDS,
        Kind::Gauge,
        "How long the oldest unsent mail has been due, in seconds (0 when none is).",
        &[],
    ),
    (
        PROCESS_CPU_SECONDS,
        Kind::Gauge,
        "CPU seconds (user and system) this process has used; rate() gives cores in use.",
        &[],
    ),
    (
        PROCESS_RESIDENT_MEMORY_BYTES,
        Kind::Gauge,
        "Resident memory of this process, in bytes.",
        &[],
    ),
];

/// A metric's name, kind, `# HELP` text, and its label values shown at zero.
type Description = (&'static str, Kind, &'static str, &'static [LabelPair]);
type LabelPair = (&'static str, &'static str);

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Registers the series labelled by store kind, once the store is chosen.
pub fn register_store(kind: &'static str) {
    let _ = metrics::histogram!(COMMIT_DURATION_SECONDS, "store" => kind);
}

/// Gives every metric its `# HELP` and registers the listed series at zero.
fn describe_all() {
    for &(name, kind, help, zeroes) in DESCRIPTIONS {
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(name, help);
                if zeroes.is_empty() {
                    metrics::counter!(name).increment(0);
                }
                for &(label, value) in zeroes {
                    metrics::counter!(name, label => value).increment(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(name, help);
                metrics::gauge!(name).increment(0.0);
            }
            Kind::Histogram => {
                metrics::describe_histogram!(name, help);
                // Registered now, so that it is exported (empty) from the start.
                let _ = metrics::histogram!(name);
            }
        }
    }
}

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
    describe_all();
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

/// The access log an SRE reads on launch day (`--access-log`, read by
/// `api/access_log.rs`): how much of the traffic is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    /// One request in `n` (1: every request).
    Sampled {
        n: u64,
    },
}

impl AccessLog {
    /// `off`, `all`, or `1/N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(AccessLog::Off),
            "all" => Ok(AccessLog::Sampled { n: 1 }),
            _ => text
                .strip_prefix("1/")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n >= 1)
                .map(|n| AccessLog::Sampled { n })
                .ok_or_else(|| "expected off, all, or 1/N (one request in N)".to_owned()),
        }
    }
}

#[cfg(test)]
mod access_log_tests {
    use super::*;

    #[test]
    fn the_setting_reads_off_all_and_one_in_n() {
        assert_eq!(AccessLog::parse("off"), Ok(AccessLog::Off));
        assert_eq!(AccessLog::parse("all"), Ok(AccessLog::Sampled { n: 1 }));
        assert_eq!(AccessLog::parse("1/100"), Ok(AccessLog::Sampled { n: 100 }));
        for bad in ["", "1/0", "half", "2/3"] {
            assert!(AccessLog::parse(bad).is_err(), "{bad}");
        }
    }
}
