//! One resident's recent `Idempotency-Key`s: the first final answer of each,
//! for `IDEMPOTENCY_WINDOW`, at most `IDEMPOTENCY_KEYS_PER_RESIDENT_MAX` of
//! them (the oldest finished key is forgotten first). Kept apart from the
//! store of resident state that holds the list.

use chrono::{DateTime, Duration, FixedOffset};

use crate::domain::{BookingError, FingerprintScheme, Reservation, ReservationStatus};

/// How long an `Idempotency-Key` answers with its first answer.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);
/// Most `Idempotency-Key`s remembered per resident (oldest forgotten first).
pub const IDEMPOTENCY_KEYS_PER_RESIDENT_MAX: usize = 16;

/// The first answer to a keyed booking.
#[derive(Clone)]
pub enum FirstAnswer {
    /// `201` with this reservation, as it was when booked.
    Booked(Box<Reservation>),
    /// A final refusal (a `4xx`), answered again as it was.
    Refused(BookingError),
}

pub struct IdempotencyRecord {
    key: String,
    fingerprint: u64,
    scheme: FingerprintScheme,
    at: DateTime<FixedOffset>,
    /// `None` while the first request is still being answered.
    answer: Option<FirstAnswer>,
}

/// What looking a key up found.
pub enum Lookup {
    /// New: recorded as in progress; `finish` it with the answer.
    New,
    /// Seen before with the same request: its first answer.
    Replay(FirstAnswer),
    /// The first request with this key is still being answered.
    InProgress,
    /// Seen before with a different request.
    Mismatch,
}

/// The remembered key of a booking stored with one (after a restart), if
/// it is still inside the window.
pub fn from_stored(
    reservation: &Reservation,
    now: DateTime<FixedOffset>,
) -> Option<IdempotencyRecord> {
    let tag = reservation.idempotency.as_ref()?;
    if now - reservation.created_at > IDEMPOTENCY_WINDOW {
        return None;
    }
    let mut first = reservation.clone();
    first.status = ReservationStatus::Booked;
    first.updated_at = first.created_at;
    Some(IdempotencyRecord {
        key: tag.key.clone(),
        fingerprint: tag.fingerprint,
        scheme: tag.scheme,
        at: reservation.created_at,
        answer: Some(FirstAnswer::Booked(Box::new(first))),
    })
}

/// Adds a remembered key, keeping the list within its bounds.
pub fn remember(
    records: &mut Vec<IdempotencyRecord>,
    record: IdempotencyRecord,
    now: DateTime<FixedOffset>,
) {
    records.push(record);
    trim(records, now);
}

/// Adds a key learnt from a booking made elsewhere (the change stream),
/// unless this process knows the key already (its own booking, maybe still
/// being answered).
pub fn remember_if_new(
    records: &mut Vec<IdempotencyRecord>,
    record: IdempotencyRecord,
    now: DateTime<FixedOffset>,
) {
    if !records.iter().any(|known| known.key == record.key) {
        remember(records, record, now);
    }
}

/// Looks `key` up; a new key is recorded as in progress under
/// `FingerprintScheme::Canonical`. A known key is compared under the scheme
/// it was stored with.
pub fn look_up(
    records: &mut Vec<IdempotencyRecord>,
    key: &str,
    fingerprint: &dyn Fn(FingerprintScheme) -> u64,
    now: DateTime<FixedOffset>,
) -> Lookup {
    trim(records, now);
    if let Some(record) = records.iter().find(|r| r.key == key) {
        let same_request = record.fingerprint == fingerprint(record.scheme);
        return match (&record.answer, same_request) {
            (_, false) => Lookup::Mismatch,
            (None, true) => Lookup::InProgress,
            (Some(answer), true) => Lookup::Replay(answer.clone()),
        };
    }
    if records.len() >= IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
        // Forget the oldest finished key to make room.
        match records.iter().position(|r| r.answer.is_some()) {
            Some(oldest) => drop(records.remove(oldest)),
            None => return Lookup::InProgress,
        }
    }
    records.push(IdempotencyRecord {
        key: key.to_owned(),
        fingerprint: fingerprint(FingerprintScheme::Canonical),
        scheme: FingerprintScheme::Canonical,
        at: now,
        answer: None,
    });
    Lookup::New
}

/// Keeps `answer` as the key's first answer, or forgets the key (`None`: an
/// answer that must not be replayed, like a `503`).
pub fn finish(records: &mut Vec<IdempotencyRecord>, key: &str, answer: Option<FirstAnswer>) {
    match answer {
        Some(answer) => {
            if let Some(record) = records.iter_mut().find(|r| r.key == key) {
                record.answer = Some(answer);
            }
        }
        None => records.retain(|r| r.key != key),
    }
}

/// Forgets the key whose first answer was `id`'s booking (its batch was
/// undone: the booking never happened).
pub fn forget_booking(records: &mut Vec<IdempotencyRecord>, id: crate::domain::ReservationId) {
    records.retain(|r| !matches!(&r.answer, Some(FirstAnswer::Booked(booked)) if booked.id == id));
}

/// Forgets keys older than the window (records are kept in arrival order).
fn trim(records: &mut Vec<IdempotencyRecord>, now: DateTime<FixedOffset>) {
    records.retain(|r| now - r.at <= IDEMPOTENCY_WINDOW || r.answer.is_none());
    while records.len() > IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
        match records.iter().position(|r| r.answer.is_some()) {
            Some(oldest) => drop(records.remove(oldest)),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_replays_its_first_answer_refuses_another_request_and_expires() {
        let mut records = Vec::new();
        let now = chrono::Utc::now().fixed_offset();
        let seven = |_: FingerprintScheme| 7;
        let eight = |_: FingerprintScheme| 8;
        assert!(matches!(
            look_up(&mut records, "k1", &seven, now),
            Lookup::New
        ));
        assert!(matches!(
            look_up(&mut records, "k1", &seven, now),
            Lookup::InProgress
        ));
        finish(
            &mut records,
            "k1",
            Some(FirstAnswer::Refused(BookingError::SlotFull)),
        );
        assert!(matches!(
            look_up(&mut records, "k1", &seven, now),
            Lookup::Replay(FirstAnswer::Refused(BookingError::SlotFull))
        ));
        assert!(matches!(
            look_up(&mut records, "k1", &eight, now),
            Lookup::Mismatch
        ));
        let later = now + IDEMPOTENCY_WINDOW + Duration::seconds(1);
        assert!(matches!(
            look_up(&mut records, "k1", &seven, later),
            Lookup::New
        ));
    }

    #[test]
    fn an_unfinished_key_is_forgotten_and_the_oldest_finished_makes_room() {
        let mut records = Vec::new();
        let now = chrono::Utc::now().fixed_offset();
        look_up(&mut records, "k1", &|_| 7, now);
        finish(&mut records, "k1", None);
        assert!(matches!(
            look_up(&mut records, "k1", &|_| 9, now),
            Lookup::New
        ));
        for n in 0..IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
            let key = format!("key-{n}");
            look_up(&mut records, &key, &|_| 1, now);
            finish(
                &mut records,
                &key,
                Some(FirstAnswer::Refused(BookingError::SlotFull)),
            );
        }
        assert!(records.len() <= IDEMPOTENCY_KEYS_PER_RESIDENT_MAX);
    }
}
