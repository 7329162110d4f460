//! The last ten seconds of bookings and logins, for `GET /v1/admin/status`:
//! per-second buckets of atomic counters (no lock on the booking path; a
//! bucket is reset when its second comes round again). Figures only.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codes::ErrorCode;
use crate::telemetry::Outcome;

/// Seconds the status figures cover.
pub const RECENT_WINDOW_S: u64 = 10;
/// Buckets kept: the window plus the second being filled and one spare.
const BUCKETS: usize = RECENT_WINDOW_S as usize + 2;

/// Refusals counted on their own; every other code counts as `other`.
const REFUSALS_COUNTED: [ErrorCode; 9] = [
    ErrorCode::BookingClosed,
    ErrorCode::Overloaded,
    ErrorCode::SlotFull,
    ErrorCode::StoreUnavailable,
    ErrorCode::AlreadyReserved,
    ErrorCode::NotEligible,
    ErrorCode::ChangeInProgress,
    ErrorCode::NotOpenYet,
    ErrorCode::BookingWindowClosed,
];
/// The counters' slots: one per counted refusal, then `other`.
const REFUSAL_SLOTS: usize = REFUSALS_COUNTED.len() + 1;
/// The status document's name for the last slot.
const OTHER_REFUSALS: &str = "other";

/// Upper bounds of the latency buckets, in microseconds (the last is "more").
const LATENCY_BOUNDS_US: [u64; 18] = [
    500,
    1_000,
    2_000,
    3_000,
    5_000,
    8_000,
    13_000,
    20_000,
    30_000,
    50_000,
    80_000,
    130_000,
    200_000,
    300_000,
    500_000,
    1_000_000,
    2_000_000,
    u64::MAX,
];

struct Second {
    /// Which second (unix) the counters are for.
    at_s: AtomicU64,
    committed: AtomicU64,
    refused: [AtomicU64; REFUSAL_SLOTS],
    latency: [AtomicU64; LATENCY_BOUNDS_US.len()],
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    logins_locked: AtomicU64,
}

impl Second {
    const fn new() -> Self {
        Self {
            at_s: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            refused: [const { AtomicU64::new(0) }; REFUSAL_SLOTS],
            latency: [const { AtomicU64::new(0) }; LATENCY_BOUNDS_US.len()],
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            logins_locked: AtomicU64::new(0),
        }
    }

    fn reset(&self) {
        let all = [
            &self.committed,
            &self.logins_ok,
            &self.logins_failed,
            &self.logins_locked,
        ];
        for counter in all.into_iter().chain(&self.refused).chain(&self.latency) {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

static SECONDS: [Second; BUCKETS] = [const { Second::new() }; BUCKETS];

fn now_s() -> u64 {
    u64::try_from(crate::clock::now_utc().timestamp()).unwrap_or(0)
}

/// `at_s` while a bucket is being reset for a new second.
const RESETTING: u64 = u64::MAX;

/// The bucket of the current second, reset first if it held an older one.
/// The second is published only after the reset, so no count made in the
/// new second is wiped by it (another thread waits the few stores it takes).
fn current() -> &'static Second {
    let now = now_s();
    let second = &SECONDS[(now % BUCKETS as u64) as usize];
    loop {
        let held = second.at_s.load(Ordering::Acquire);
        if held == now {
            return second;
        }
        if held == RESETTING {
            std::hint::spin_loop();
            continue;
        }
        if second
            .at_s
            .compare_exchange(held, RESETTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            second.reset();
            second.at_s.store(now, Ordering::Release);
            return second;
        }
    }
}

/// One booking request's outcome and how long it took.
pub fn record_booking(outcome: Outcome, took: std::time::Duration) {
    let second = current();
    match outcome {
        Outcome::Committed => {
            second.committed.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Replayed | Outcome::Attended | Outcome::LoggedIn => {}
        Outcome::Refused(code) => {
            let index = REFUSALS_COUNTED
                .iter()
                .position(|c| *c == code)
                .unwrap_or(REFUSALS_COUNTED.len());
            second.refused[index].fetch_add(1, Ordering::Relaxed);
        }
    }
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let bucket = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(0);
    second.latency[bucket].fetch_add(1, Ordering::Relaxed);
}

/// One resident login's outcome.
pub fn record_login(outcome: Outcome) {
    let second = current();
    let counter = match outcome {
        Outcome::LoggedIn => &second.logins_ok,
        Outcome::Refused(ErrorCode::TooManyAttempts) => &second.logins_locked,
        _ => &second.logins_failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The last `RECENT_WINDOW_S` seconds, per second.
pub struct Figures {
    pub committed_per_s: f64,
    /// Per refusal code; codes with none are left out.
    pub refused_per_s: Vec<(&'static str, f64)>,
    /// `None` before any booking in the window.
    pub p99_ms: Option<f64>,
    pub logins_ok_per_s: f64,
    pub logins_failed_per_s: f64,
    pub logins_locked_per_s: f64,
}

/// Sums the complete seconds of the window (the current one is still filling).
pub fn figures() -> Figures {
    let now = now_s();
    let window = (now.saturating_sub(RECENT_WINDOW_S)..now).collect::<Vec<_>>();
    let seconds: Vec<&Second> = SECONDS
        .iter()
        .filter(|s| window.contains(&s.at_s.load(Ordering::Acquire)))
        .collect();
    let sum = |f: &dyn Fn(&Second) -> &AtomicU64| -> u64 {
        seconds.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    let per_s = |n: u64| n as f64 / RECENT_WINDOW_S as f64;
    let mut latency = [0u64; LATENCY_BOUNDS_US.len()];
    for s in &seconds {
        for (total, counter) in latency.iter_mut().zip(&s.latency) {
            *total += counter.load(Ordering::Relaxed);
        }
    }
    let count: u64 = latency.iter().sum();
    let p99_ms = (count > 0).then(|| {
        let wanted = (count * 99).div_ceil(100);
        let mut seen = 0;
        let bucket = latency
            .iter()
            .position(|n| {
                seen += n;
                seen >= wanted.min(count)
            })
            .unwrap_or(LATENCY_BOUNDS_US.len() - 1);
        let bound = LATENCY_BOUNDS_US[bucket.min(LATENCY_BOUNDS_US.len() - 2)];
        bound as f64 / 1000.0
    });
    let refused_per_s = REFUSALS_COUNTED
        .iter()
        .map(|code| code.as_str())
        .chain([OTHER_REFUSALS])
        .enumerate()
        .map(|(i, code)| (code, sum(&|s| &s.refused[i])))
        .filter(|(_, n)| *n > 0)
        .map(|(code, n)| (code, per_s(n)))
        .collect();
    Figures {
        committed_per_s: per_s(sum(&|s| &s.committed)),
        refused_per_s,
        p99_ms,
        logins_ok_per_s: per_s(sum(&|s| &s.logins_ok)),
        logins_failed_per_s: per_s(sum(&|s| &s.logins_failed)),
        logins_locked_per_s: per_s(sum(&|s| &s.logins_locked)),
    }
}
