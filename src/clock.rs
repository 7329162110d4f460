//! The process's clock: real time, or real time moved to start at
//! `--clock-start` (for rehearsing a launch day ahead of time, and for tests
//! that must run on a known date). Every "now" of the service comes from
//! here; it advances at the real rate either way.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, FixedOffset, Utc};

use crate::domain::municipality_offset;

/// Microseconds added to the real time; 0 unless `--clock-start` was given.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// Makes the clock read `start` now (and advance from there).
pub fn start_at(start: DateTime<FixedOffset>) {
    let offset = start.with_timezone(&Utc) - Utc::now();
    let micros = offset.num_microseconds().unwrap_or(0);
    OFFSET_MICROS.store(micros, Ordering::Relaxed);
}

/// Now, in UTC.
pub fn now_utc() -> DateTime<Utc> {
    Utc::now() + Duration::microseconds(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// The real time, never moved by `--clock-start`: what deadlines shared with
/// other processes and with Redis (whose `TIME` is real) are set and
/// checked by.
pub fn real_now_utc() -> DateTime<Utc> {
    Utc::now()
}

/// Now, in the municipality's time zone.
pub fn now() -> DateTime<FixedOffset> {
    now_utc().with_timezone(&municipality_offset())
}

/// Today's date in the municipality.
pub fn today() -> chrono::NaiveDate {
    now().date_naive()
}
