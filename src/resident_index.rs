//! The in-memory resident index: every resident, their reservations, the
//! doses they are in the middle of booking or cancelling, and their recent
//! `Idempotency-Key`s. Loaded from the store at start, kept current by the
//! import handler and by the venue-day actors after each commit. Every
//! per-resident rule is decided under that resident's entry lock (DashMap
//! shard lock, never held across an `.await`).
//!
//! A **dose claim** is how one active reservation per (resident, dose) holds
//! across venue-days: the gateway claims the dose here (checking the
//! eligibility table) before routing a booking; the actor settles the claim
//! when the reservation is committed, and dropping an unsettled claim
//! (refusal, failed commit, lost message) releases it. The durable form of a
//! claim is the reservation itself: at start the index is rebuilt from stored
//! reservations, so no claim can be orphaned.
//!
//! A **cancellation cascade** (cancelling dose N cancels the booked doses N,
//! N+1, …) marks its reservations while it runs: no claim for that resident
//! is taken meanwhile, and it does not start while a claim is pending, so no
//! later dose can be booked on top of a dose being cancelled.

use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use dashmap::DashMap;
use subtle::ConstantTimeEq;

use crate::domain::{
    BookingError, Dose, FingerprintScheme, IneligibleReason, PriorDose, Reservation, ReservationId,
    ReservationStatus, Resident, TODAYS_RULES, TicketNumber, Vaccine, Wanted, next_open_dose,
};
use crate::tokens::{ResidentHandle, TokenKey};

/// Most residents one process indexes (a prefecture's worth, with room).
pub const RESIDENTS_MAX: usize = 5_000_000;
/// How long an `Idempotency-Key` answers with its first answer.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);
/// Most `Idempotency-Key`s remembered per resident (oldest forgotten first).
pub const IDEMPOTENCY_KEYS_PER_RESIDENT_MAX: usize = 16;

/// A birth date that no resident has, compared against when a ticket is
/// unknown so that both refusals take the same path.
const NO_BIRTH_DATE: &[u8; 10] = b"0000-00-00";

/// The first answer to a keyed booking.
#[derive(Clone)]
pub enum FirstAnswer {
    /// `201` with this reservation, as it was when booked.
    Booked(Box<Reservation>),
    /// A final refusal (a `4xx`), answered again as it was.
    Refused(BookingError),
}

struct IdempotencyRecord {
    key: String,
    fingerprint: u64,
    scheme: FingerprintScheme,
    at: DateTime<FixedOffset>,
    /// `None` while the first request is still being answered.
    answer: Option<FirstAnswer>,
}

struct ResidentEntry {
    resident: Resident,
    /// All of the resident's reservations, any status.
    reservations: Vec<Reservation>,
    /// Doses being booked right now (claimed, not yet settled).
    pending_doses: Vec<Dose>,
    /// Reservations a running cancellation cascade is cancelling.
    cancelling: Vec<ReservationId>,
    idempotency: Vec<IdempotencyRecord>,
}

impl ResidentEntry {
    fn new(resident: Resident) -> Self {
        Self {
            resident,
            reservations: Vec::new(),
            pending_doses: Vec::new(),
            cancelling: Vec::new(),
            idempotency: Vec::new(),
        }
    }

    fn dose_is_taken(&self, dose: Dose) -> bool {
        self.resident.has_received(dose)
            || self.pending_doses.contains(&dose)
            || self
                .reservations
                .iter()
                .any(|r| r.dose == dose && r.status.is_active())
    }

    fn reserved_doses(&self) -> impl Iterator<Item = Dose> + '_ {
        self.reservations
            .iter()
            .filter(|r| r.status.is_active())
            .map(|r| r.dose)
            .chain(self.pending_doses.iter().copied())
    }

    /// Doses received, and doses booked (committed, not being cancelled):
    /// what the eligibility rules count as "dose N-1".
    fn priors(&self) -> Vec<PriorDose> {
        let mut priors: Vec<PriorDose> = self
            .resident
            .history
            .iter()
            .map(|r| PriorDose {
                dose: r.dose,
                date: r.date,
                vaccine: r.vaccine,
            })
            .collect();
        for r in &self.reservations {
            let counts = r.status == ReservationStatus::Booked && !self.cancelling.contains(&r.id);
            if counts && !priors.iter().any(|p| p.dose == r.dose) {
                priors.push(PriorDose {
                    dose: r.dose,
                    date: r.date,
                    vaccine: r.vaccine,
                });
            }
        }
        priors
    }
}

/// What one import call changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: usize,
    pub updated: usize,
}

/// What a booking asks the index for.
pub struct ClaimRequest {
    /// `None`: the next dose neither received nor reserved.
    pub dose: Option<Dose>,
    /// The vaccine the venue-day gives.
    pub vaccine: Vaccine,
    pub slot_date: NaiveDate,
    pub today: NaiveDate,
}

/// What `GET /v1/me` says may be booked next.
pub struct Outlook {
    pub next_dose: Dose,
    pub vaccines: Vec<Vaccine>,
    pub earliest_date: NaiveDate,
}

/// The outcome of looking up an `Idempotency-Key`.
pub enum KeyedBooking {
    /// A new key: book, then `finish` the guard with the answer.
    New(IdempotencyGuard),
    /// Seen before with the same request: its first answer.
    Replay(FirstAnswer),
    /// The first request with this key is still being answered.
    InProgress,
    /// Seen before with a different request.
    Mismatch,
}

pub struct ResidentIndex {
    key: TokenKey,
    entries: DashMap<TicketNumber, ResidentEntry>,
    by_handle: DashMap<ResidentHandle, TicketNumber>,
}

impl ResidentIndex {
    pub fn new(key: TokenKey) -> Self {
        Self {
            key,
            entries: DashMap::new(),
            by_handle: DashMap::new(),
        }
    }

    /// Builds the index from what the store holds; keyed bookings of the last
    /// `IDEMPOTENCY_WINDOW` answer retries again.
    pub fn load(
        key: TokenKey,
        residents: Vec<Resident>,
        reservations: Vec<Reservation>,
        now: DateTime<FixedOffset>,
    ) -> Self {
        let index = Self::new(key);
        index.upsert_residents(residents);
        for reservation in reservations {
            index.remember_keyed_booking(&reservation, now);
            index.record(reservation);
        }
        index
    }

    fn remember_keyed_booking(&self, reservation: &Reservation, now: DateTime<FixedOffset>) {
        let Some(tag) = &reservation.idempotency else {
            return;
        };
        if now - reservation.created_at > IDEMPOTENCY_WINDOW {
            return;
        }
        if let Some(mut entry) = self.entries.get_mut(&reservation.ticket_number) {
            let mut first = reservation.clone();
            first.status = ReservationStatus::Booked;
            first.updated_at = first.created_at;
            entry.idempotency.push(IdempotencyRecord {
                key: tag.key.clone(),
                fingerprint: tag.fingerprint,
                scheme: tag.scheme,
                at: reservation.created_at,
                answer: Some(FirstAnswer::Booked(Box::new(first))),
            });
            trim_idempotency(&mut entry.idempotency, now);
        }
    }

    /// Room for `additional` new residents under `RESIDENTS_MAX`?
    pub fn has_room_for(&self, additional: usize) -> bool {
        self.entries.len().saturating_add(additional) <= RESIDENTS_MAX
    }

    pub fn contains(&self, ticket: &TicketNumber) -> bool {
        self.entries.contains_key(ticket)
    }

    /// Inserts or replaces residents, keeping their reservations and claims.
    pub fn upsert_residents(&self, residents: Vec<Resident>) -> ImportCounts {
        let mut counts = ImportCounts::default();
        for resident in residents {
            let ticket = resident.ticket_number;
            match self.entries.get_mut(&ticket) {
                Some(mut entry) => {
                    entry.resident = resident;
                    counts.updated += 1;
                }
                None => {
                    self.by_handle
                        .insert(self.key.resident_handle(&ticket), ticket);
                    self.entries.insert(ticket, ResidentEntry::new(resident));
                    counts.imported += 1;
                }
            }
        }
        counts
    }

    /// Checks a login. Unknown ticket and wrong birth date take the same path
    /// and give the same `None`; the comparison is constant-time.
    pub fn login(&self, ticket: &TicketNumber, birth_date: NaiveDate) -> Option<ResidentHandle> {
        let given = birth_date.format("%Y-%m-%d").to_string();
        let handle = self.key.resident_handle(ticket);
        let stored = self
            .entries
            .get(ticket)
            .map(|e| e.resident.birth_date.format("%Y-%m-%d").to_string());
        let expected = stored.as_deref().map_or(&NO_BIRTH_DATE[..], str::as_bytes);
        let matches = bool::from(given.as_bytes().ct_eq(expected)) && stored.is_some();
        matches.then_some(handle)
    }

    pub fn ticket_for_handle(&self, handle: &ResidentHandle) -> Option<TicketNumber> {
        self.by_handle.get(handle).map(|t| *t)
    }

    pub fn resident(&self, ticket: &TicketNumber) -> Option<Resident> {
        self.entries.get(ticket).map(|e| e.resident.clone())
    }

    /// The resident's reservations, newest first.
    pub fn reservations_of(&self, ticket: &TicketNumber) -> Vec<Reservation> {
        let mut list = self
            .entries
            .get(ticket)
            .map(|e| e.reservations.clone())
            .unwrap_or_default();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.dose.cmp(&a.dose)));
        list
    }

    /// One of the resident's reservations; another's is `None`, like a missing one.
    pub fn reservation_of(&self, ticket: &TicketNumber, id: ReservationId) -> Option<Reservation> {
        self.entries
            .get(ticket)?
            .reservations
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    /// Records a committed reservation (new or changed) under its owner.
    pub fn record(&self, reservation: Reservation) {
        if let Some(mut entry) = self.entries.get_mut(&reservation.ticket_number) {
            match entry
                .reservations
                .iter_mut()
                .find(|r| r.id == reservation.id)
            {
                Some(existing) => *existing = reservation,
                None => entry.reservations.push(reservation),
            }
        }
    }

    /// What the resident may book next, by today's rules; `None` when nothing.
    pub fn outlook(&self, ticket: &TicketNumber, today: NaiveDate) -> Option<Outlook> {
        let entry = self.entries.get(ticket)?;
        let next_dose = next_open_dose(&entry.resident, entry.reserved_doses())?;
        let priors = entry.priors();
        let (vaccines, earliest_date) = crate::domain::eligibility_outlook(
            TODAYS_RULES,
            &entry.resident,
            &priors,
            next_dose,
            today,
        )?;
        Some(Outlook {
            next_dose,
            vaccines,
            earliest_date,
        })
    }

    /// Claims a dose for a booking: the requested one, or the next one neither
    /// received nor reserved, checked against the eligibility table.
    pub fn claim(
        self: &Arc<Self>,
        ticket: &TicketNumber,
        request: &ClaimRequest,
    ) -> Result<DoseClaim, BookingError> {
        let mut entry = self.entries.get_mut(ticket).ok_or(BookingError::NotFound)?;
        if !entry.cancelling.is_empty() {
            return Err(BookingError::ChangeInProgress);
        }
        let dose = match request.dose {
            Some(dose) if entry.dose_is_taken(dose) => return Err(BookingError::AlreadyReserved),
            Some(dose) => dose,
            None => next_open_dose(&entry.resident, entry.reserved_doses())
                .ok_or(BookingError::NotEligible(IneligibleReason::Completed))?,
        };
        let wanted = Wanted {
            dose,
            vaccine: request.vaccine,
            slot_date: request.slot_date,
        };
        crate::domain::check_eligibility(
            TODAYS_RULES,
            &entry.resident,
            &entry.priors(),
            wanted,
            request.today,
        )
        .map_err(BookingError::NotEligible)?;
        entry.pending_doses.push(dose);
        Ok(DoseClaim {
            index: Arc::clone(self),
            ticket: *ticket,
            dose,
            settled: false,
        })
    }

    fn release_pending(&self, ticket: &TicketNumber, dose: Dose, committed: Option<Reservation>) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            if let Some(position) = entry.pending_doses.iter().position(|d| *d == dose) {
                entry.pending_doses.swap_remove(position);
            }
            if let Some(reservation) = committed {
                entry.reservations.push(reservation);
            }
        }
    }

    /// Starts cancelling one of the resident's reservations and every booked
    /// later dose: returns them latest dose first (so that a cascade cut short
    /// never leaves a later dose without its earlier one).
    pub fn begin_cancel(
        self: &Arc<Self>,
        ticket: &TicketNumber,
        id: ReservationId,
    ) -> Result<CancelCascade, BookingError> {
        let mut entry = self.entries.get_mut(ticket).ok_or(BookingError::NotFound)?;
        let target = entry
            .reservations
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or(BookingError::NotFound)?;
        if target.status != ReservationStatus::Booked {
            return Err(BookingError::NotCancellable);
        }
        let later_pending = entry.pending_doses.iter().any(|d| *d > target.dose);
        if !entry.cancelling.is_empty() || later_pending {
            return Err(BookingError::ChangeInProgress);
        }
        let mut chain: Vec<Reservation> = entry
            .reservations
            .iter()
            .filter(|r| r.status == ReservationStatus::Booked && r.dose >= target.dose)
            .cloned()
            .collect();
        chain.sort_by_key(|r| std::cmp::Reverse(r.dose));
        entry.cancelling = chain.iter().map(|r| r.id).collect();
        Ok(CancelCascade {
            index: Arc::clone(self),
            ticket: *ticket,
            chain,
        })
    }

    fn end_cancel(&self, ticket: &TicketNumber) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            entry.cancelling.clear();
        }
    }

    /// Looks up an `Idempotency-Key` of a resident's booking. `fingerprint`
    /// gives the request's fingerprint under a scheme: a stored key is
    /// compared under the scheme it was stored with, a new one is recorded
    /// under `FingerprintScheme::Canonical`.
    pub fn begin_keyed_booking(
        self: &Arc<Self>,
        ticket: &TicketNumber,
        key: &str,
        fingerprint: &dyn Fn(FingerprintScheme) -> u64,
        now: DateTime<FixedOffset>,
    ) -> KeyedBooking {
        let Some(mut entry) = self.entries.get_mut(ticket) else {
            return KeyedBooking::Mismatch;
        };
        trim_idempotency(&mut entry.idempotency, now);
        if let Some(record) = entry.idempotency.iter().find(|r| r.key == key) {
            let same_request = record.fingerprint == fingerprint(record.scheme);
            return match (&record.answer, same_request) {
                (_, false) => KeyedBooking::Mismatch,
                (None, true) => KeyedBooking::InProgress,
                (Some(answer), true) => KeyedBooking::Replay(answer.clone()),
            };
        }
        if entry.idempotency.len() >= IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
            // Forget the oldest finished key to make room.
            match entry.idempotency.iter().position(|r| r.answer.is_some()) {
                Some(oldest) => drop(entry.idempotency.remove(oldest)),
                None => return KeyedBooking::InProgress,
            }
        }
        entry.idempotency.push(IdempotencyRecord {
            key: key.to_owned(),
            fingerprint: fingerprint(FingerprintScheme::Canonical),
            scheme: FingerprintScheme::Canonical,
            at: now,
            answer: None,
        });
        KeyedBooking::New(IdempotencyGuard {
            index: Arc::clone(self),
            ticket: *ticket,
            key: key.to_owned(),
            finished: false,
        })
    }

    fn finish_keyed_booking(&self, ticket: &TicketNumber, key: &str, answer: Option<FirstAnswer>) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            match answer {
                Some(answer) => {
                    if let Some(record) = entry.idempotency.iter_mut().find(|r| r.key == key) {
                        record.answer = Some(answer);
                    }
                }
                None => entry.idempotency.retain(|r| r.key != key),
            }
        }
    }
}

/// Forgets keys older than the window (records are kept in arrival order).
fn trim_idempotency(records: &mut Vec<IdempotencyRecord>, now: DateTime<FixedOffset>) {
    records.retain(|r| now - r.at <= IDEMPOTENCY_WINDOW || r.answer.is_none());
    while records.len() > IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
        match records.iter().position(|r| r.answer.is_some()) {
            Some(oldest) => drop(records.remove(oldest)),
            None => break,
        }
    }
}

/// A resident's hold on one dose while its booking is decided and committed.
/// Settle it with the committed reservation; drop it to release the dose.
pub struct DoseClaim {
    index: Arc<ResidentIndex>,
    ticket: TicketNumber,
    dose: Dose,
    settled: bool,
}

impl DoseClaim {
    pub fn dose(&self) -> Dose {
        self.dose
    }

    /// Turns the claim into the committed reservation, in one step, so the
    /// dose is never seen free in between.
    pub fn settle(mut self, committed: Reservation) {
        self.settled = true;
        self.index
            .release_pending(&self.ticket, self.dose, Some(committed));
    }
}

impl Drop for DoseClaim {
    fn drop(&mut self) {
        if !self.settled {
            self.index.release_pending(&self.ticket, self.dose, None);
        }
    }
}

/// A running cancellation cascade; dropping it ends the cascade.
pub struct CancelCascade {
    index: Arc<ResidentIndex>,
    ticket: TicketNumber,
    /// The reservations to cancel, latest dose first; the asked-for one last.
    pub chain: Vec<Reservation>,
}

impl Drop for CancelCascade {
    fn drop(&mut self) {
        self.index.end_cancel(&self.ticket);
    }
}

/// A new `Idempotency-Key` being answered. `finish` it with the answer to keep
/// (or `None` for an answer that must not be replayed, like a `503`);
/// dropping it unfinished forgets the key.
pub struct IdempotencyGuard {
    index: Arc<ResidentIndex>,
    ticket: TicketNumber,
    key: String,
    finished: bool,
}

impl IdempotencyGuard {
    pub fn finish(mut self, answer: Option<FirstAnswer>) {
        self.finished = true;
        self.index
            .finish_keyed_booking(&self.ticket, &self.key, answer);
    }
}

impl Drop for IdempotencyGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.index
                .finish_keyed_booking(&self.ticket, &self.key, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_date;

    fn index_with_one() -> (Arc<ResidentIndex>, TicketNumber) {
        let ticket = TicketNumber::parse("1311480001").unwrap();
        let index = Arc::new(ResidentIndex::new(TokenKey::from_secret("t")));
        index.upsert_residents(vec![crate::domain::test_resident(ticket)]);
        (index, ticket)
    }

    fn claim_request(dose: Option<u8>) -> ClaimRequest {
        ClaimRequest {
            dose: dose.map(|d| Dose::new(d).unwrap()),
            vaccine: Vaccine::Pfizer,
            slot_date: parse_date("2030-07-07").unwrap(),
            today: parse_date("2030-07-01").unwrap(),
        }
    }

    #[test]
    fn a_claimed_dose_cannot_be_claimed_again_until_released() {
        let (index, ticket) = index_with_one();
        let first = index.claim(&ticket, &claim_request(Some(1))).unwrap();
        assert_eq!(
            index.claim(&ticket, &claim_request(Some(1))).err(),
            Some(BookingError::AlreadyReserved)
        );
        drop(first);
        assert!(index.claim(&ticket, &claim_request(Some(1))).is_ok());
    }

    #[test]
    fn a_pending_dose_is_not_a_prior_dose() {
        let (index, ticket) = index_with_one();
        let first = index.claim(&ticket, &claim_request(None)).unwrap();
        assert_eq!(first.dose(), Dose::FIRST);
        // Dose 2 needs dose 1 received or committed, not merely being booked.
        assert_eq!(
            index.claim(&ticket, &claim_request(None)).err(),
            Some(BookingError::NotEligible(IneligibleReason::NoPriorDose))
        );
    }

    #[test]
    fn login_refuses_unknown_and_wrong_alike() {
        let (index, ticket) = index_with_one();
        let right = parse_date("1950-04-01").unwrap();
        let wrong = parse_date("1950-04-02").unwrap();
        assert!(index.login(&ticket, right).is_some());
        assert!(index.login(&ticket, wrong).is_none());
        assert!(
            index
                .login(&TicketNumber::parse("9999999999").unwrap(), right)
                .is_none()
        );
    }

    #[test]
    fn an_idempotency_key_replays_its_first_answer_and_refuses_another_request() {
        let (index, ticket) = index_with_one();
        let now = chrono::Utc::now().fixed_offset();
        let seven = |_: FingerprintScheme| 7;
        let eight = |_: FingerprintScheme| 8;
        let KeyedBooking::New(guard) = index.begin_keyed_booking(&ticket, "k1", &seven, now) else {
            panic!("a new key")
        };
        assert!(matches!(
            index.begin_keyed_booking(&ticket, "k1", &seven, now),
            KeyedBooking::InProgress
        ));
        guard.finish(Some(FirstAnswer::Refused(BookingError::SlotFull)));
        assert!(matches!(
            index.begin_keyed_booking(&ticket, "k1", &seven, now),
            KeyedBooking::Replay(FirstAnswer::Refused(BookingError::SlotFull))
        ));
        assert!(matches!(
            index.begin_keyed_booking(&ticket, "k1", &eight, now),
            KeyedBooking::Mismatch
        ));
        // After the window the key is new again.
        let later = now + IDEMPOTENCY_WINDOW + Duration::seconds(1);
        assert!(matches!(
            index.begin_keyed_booking(&ticket, "k1", &seven, later),
            KeyedBooking::New(_)
        ));
    }

    #[test]
    fn an_unfinished_key_is_forgotten() {
        let (index, ticket) = index_with_one();
        let now = chrono::Utc::now().fixed_offset();
        drop(index.begin_keyed_booking(&ticket, "k1", &|_| 7, now));
        assert!(matches!(
            index.begin_keyed_booking(&ticket, "k1", &|_| 9, now),
            KeyedBooking::New(_)
        ));
    }
}
