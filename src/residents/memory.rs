//! Resident state in this process's memory: a `DashMap` entry per resident;
//! every per-resident rule is decided under that resident's entry lock
//! (a shard lock, never held across an `.await`).

use chrono::{DateTime, FixedOffset, NaiveDate};
use dashmap::DashMap;
use subtle::ConstantTimeEq;

use super::idempotency::{self, FirstAnswer, IdempotencyRecord, Lookup};
use super::{ClaimRequest, ImportCounts, Outlook, ResidentState};
use crate::domain::{
    BookingError, Dose, FingerprintScheme, IneligibleReason, Reservation, ReservationId,
    ReservationStatus, Resident, TODAYS_RULES, TicketNumber, Wanted, cancel_cascade, dose_is_taken,
    next_open_dose, prior_doses, reserved_doses,
};
use crate::tokens::{ResidentHandle, TokenKey};

/// Most residents one process holds: Tokyo's 14 million, with room. About
/// 0.7 KB each in memory (BENCHMARKS.md "Capacity plan"): 11 GB at the limit.
pub const RESIDENTS_MAX: usize = 16_000_000;

/// A birth date that no resident has, compared against when a ticket is
/// unknown so that both refusals take the same path.
const NO_BIRTH_DATE: &[u8; 10] = b"0000-00-00";

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
    /// Holds `reservation` in place of the version held, and remembers its
    /// `Idempotency-Key` unless this process knows the key already.
    fn keep(&mut self, reservation: Reservation, now: DateTime<FixedOffset>) {
        if let Some(record) = idempotency::from_stored(&reservation, now) {
            idempotency::remember_if_new(&mut self.idempotency, record, now);
        }
        put(&mut self.reservations, reservation);
    }

    fn new(resident: Resident) -> Self {
        Self {
            resident,
            reservations: Vec::new(),
            pending_doses: Vec::new(),
            cancelling: Vec::new(),
            idempotency: Vec::new(),
        }
    }
}

pub struct InMemoryResidents {
    key: TokenKey,
    entries: DashMap<TicketNumber, ResidentEntry>,
    by_handle: DashMap<ResidentHandle, TicketNumber>,
}

impl InMemoryResidents {
    pub fn new(key: TokenKey) -> Self {
        Self {
            key,
            entries: DashMap::new(),
            by_handle: DashMap::new(),
        }
    }

    /// Builds the state from what the store holds; keyed bookings of the
    /// last `IDEMPOTENCY_WINDOW` answer retries again.
    pub fn load(
        key: TokenKey,
        residents: Vec<Resident>,
        reservations: Vec<Reservation>,
        now: DateTime<FixedOffset>,
    ) -> Self {
        let state = Self::new(key);
        state.upsert(residents);
        for reservation in reservations {
            if let Some(record) = idempotency::from_stored(&reservation, now)
                && let Some(mut entry) = state.entries.get_mut(&reservation.ticket_number)
            {
                idempotency::remember(&mut entry.idempotency, record, now);
            }
            state.record(reservation);
        }
        state
    }
}

impl ResidentState for InMemoryResidents {
    fn has_room_for(&self, additional: usize) -> bool {
        self.entries.len().saturating_add(additional) <= RESIDENTS_MAX
    }

    fn contains(&self, ticket: &TicketNumber) -> bool {
        self.entries.contains_key(ticket)
    }

    fn upsert(&self, residents: Vec<Resident>) -> ImportCounts {
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

    fn resident(&self, ticket: &TicketNumber) -> Option<Resident> {
        self.entries.get(ticket).map(|e| e.resident.clone())
    }

    fn has_email(&self, ticket: &TicketNumber) -> bool {
        self.entries
            .get(ticket)
            .is_some_and(|e| e.resident.email.is_some())
    }

    /// The comparison is constant-time.
    fn login(&self, ticket: &TicketNumber, birth_date: NaiveDate) -> Option<ResidentHandle> {
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

    fn ticket_for_handle(&self, handle: &ResidentHandle) -> Option<TicketNumber> {
        self.by_handle.get(handle).map(|t| *t)
    }

    fn reservations_of(&self, ticket: &TicketNumber) -> Vec<Reservation> {
        let mut list = self
            .entries
            .get(ticket)
            .map(|e| e.reservations.clone())
            .unwrap_or_default();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.dose.cmp(&a.dose)));
        list
    }

    fn reservation_of(&self, ticket: &TicketNumber, id: ReservationId) -> Option<Reservation> {
        self.entries
            .get(ticket)?
            .reservations
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    fn record(&self, reservation: Reservation) {
        if let Some(mut entry) = self.entries.get_mut(&reservation.ticket_number) {
            // A booking another process forwarded here: its key answers a
            // retry here too.
            entry.keep(reservation, crate::clock::now());
        }
    }

    fn apply_stored(&self, reservation: Reservation, revert: bool, now: DateTime<FixedOffset>) {
        let Some(mut entry) = self.entries.get_mut(&reservation.ticket_number) else {
            return;
        };
        let held_newer = entry
            .reservations
            .iter()
            .any(|r| r.id == reservation.id && r.status.step() > reservation.status.step());
        if held_newer && !revert {
            return;
        }
        entry.keep(reservation, now);
    }

    fn forget_reservation(&self, ticket: &TicketNumber, id: ReservationId) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            entry.reservations.retain(|r| r.id != id);
            // Its key goes with it: a retry must book again, never be told
            // "booked" from a reservation that is gone.
            idempotency::forget_booking(&mut entry.idempotency, id);
        }
    }

    fn outlook(&self, ticket: &TicketNumber, today: NaiveDate) -> Option<Outlook> {
        let entry = self.entries.get(ticket)?;
        let reserved = reserved_doses(&entry.reservations, &entry.pending_doses);
        let next_dose = next_open_dose(&entry.resident, reserved)?;
        let priors = prior_doses(&entry.resident, &entry.reservations, &entry.cancelling);
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

    fn take_claim(
        &self,
        ticket: &TicketNumber,
        request: &ClaimRequest,
    ) -> Result<Dose, BookingError> {
        let mut entry = self.entries.get_mut(ticket).ok_or(BookingError::NotFound)?;
        if !entry.cancelling.is_empty() {
            return Err(BookingError::ChangeInProgress);
        }
        let taken = |dose| {
            dose_is_taken(
                &entry.resident,
                &entry.reservations,
                &entry.pending_doses,
                dose,
            )
        };
        let dose = match request.dose {
            Some(dose) if taken(dose) => return Err(BookingError::AlreadyReserved),
            Some(dose) => dose,
            None => next_open_dose(
                &entry.resident,
                reserved_doses(&entry.reservations, &entry.pending_doses),
            )
            .ok_or(BookingError::NotEligible(IneligibleReason::Completed))?,
        };
        let wanted = Wanted {
            dose,
            vaccine: request.vaccine,
            slot_date: request.slot_date,
        };
        let priors = prior_doses(&entry.resident, &entry.reservations, &entry.cancelling);
        crate::domain::check_eligibility(
            TODAYS_RULES,
            &entry.resident,
            &priors,
            wanted,
            request.today,
        )
        .map_err(BookingError::NotEligible)?;
        entry.pending_doses.push(dose);
        Ok(dose)
    }

    fn release_claim(&self, ticket: &TicketNumber, dose: Dose, committed: Option<Reservation>) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            if let Some(position) = entry.pending_doses.iter().position(|d| *d == dose) {
                entry.pending_doses.swap_remove(position);
            }
            if let Some(reservation) = committed {
                // The change stream may have brought it in already.
                put(&mut entry.reservations, reservation);
            }
        }
    }

    fn start_cascade(
        &self,
        ticket: &TicketNumber,
        id: ReservationId,
    ) -> Result<Vec<Reservation>, BookingError> {
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
        let chain = cancel_cascade(&entry.reservations, &target);
        entry.cancelling = chain.iter().map(|r| r.id).collect();
        Ok(chain)
    }

    fn end_cascade(&self, ticket: &TicketNumber) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            entry.cancelling.clear();
        }
    }

    fn look_up_key(
        &self,
        ticket: &TicketNumber,
        key: &str,
        fingerprint: &dyn Fn(FingerprintScheme) -> u64,
        now: DateTime<FixedOffset>,
    ) -> Lookup {
        match self.entries.get_mut(ticket) {
            Some(mut entry) => idempotency::look_up(&mut entry.idempotency, key, fingerprint, now),
            None => Lookup::Mismatch,
        }
    }

    fn finish_key(&self, ticket: &TicketNumber, key: &str, answer: Option<FirstAnswer>) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            idempotency::finish(&mut entry.idempotency, key, answer);
        }
    }
}

/// Puts `reservation` in place of the version held, or adds it.
fn put(reservations: &mut Vec<Reservation>, reservation: Reservation) {
    match reservations.iter_mut().find(|r| r.id == reservation.id) {
        Some(existing) => *existing = reservation,
        None => reservations.push(reservation),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Residents;
    use super::*;
    use crate::domain::{Vaccine, parse_date};

    fn state_with_one() -> (Residents, TicketNumber) {
        let ticket = TicketNumber::parse("1311480001").unwrap();
        let residents = Residents::new(InMemoryResidents::new(TokenKey::from_secret("t")));
        residents.upsert_residents(vec![crate::domain::test_resident(ticket)]);
        (residents, ticket)
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
        let (residents, ticket) = state_with_one();
        let first = residents.claim(&ticket, &claim_request(Some(1))).unwrap();
        assert_eq!(
            residents.claim(&ticket, &claim_request(Some(1))).err(),
            Some(BookingError::AlreadyReserved)
        );
        drop(first);
        assert!(residents.claim(&ticket, &claim_request(Some(1))).is_ok());
    }

    #[test]
    fn a_pending_dose_is_not_a_prior_dose() {
        let (residents, ticket) = state_with_one();
        let first = residents.claim(&ticket, &claim_request(None)).unwrap();
        assert_eq!(first.dose(), Dose::FIRST);
        // Dose 2 needs dose 1 received or committed, not merely being booked.
        assert_eq!(
            residents.claim(&ticket, &claim_request(None)).err(),
            Some(BookingError::NotEligible(IneligibleReason::NoPriorDose))
        );
    }

    #[test]
    fn login_refuses_unknown_and_wrong_alike() {
        let (residents, ticket) = state_with_one();
        let right = parse_date("1950-04-01").unwrap();
        let wrong = parse_date("1950-04-02").unwrap();
        assert!(residents.login(&ticket, right).is_some());
        assert!(residents.login(&ticket, wrong).is_none());
        assert!(
            residents
                .login(&TicketNumber::parse("9999999999").unwrap(), right)
                .is_none()
        );
    }

    fn booked_by_another_process(ticket: TicketNumber, now: DateTime<FixedOffset>) -> Reservation {
        Reservation {
            id: ReservationId::random(),
            ticket_number: ticket,
            venue_id: crate::domain::VenueId::parse("clinic-001").unwrap(),
            date: parse_date("2030-07-07").unwrap(),
            time: crate::domain::SlotTime::parse("10:30").unwrap(),
            dose: Dose::FIRST,
            vaccine: Vaccine::Pfizer,
            status: ReservationStatus::Booked,
            channel: crate::domain::Channel::Web,
            created_at: now,
            updated_at: now,
            idempotency: Some(crate::domain::IdempotencyTag {
                key: "k1".into(),
                fingerprint: 7,
                scheme: FingerprintScheme::Canonical,
            }),
        }
    }

    /// Of two records of one reservation, the one further along its life is
    /// kept, whatever the clocks of their writers said: a cancellation by a
    /// process whose clock runs ahead is not undone by a booking record
    /// read late from a process whose clock runs behind (it was, by
    /// `updated_at`).
    #[test]
    fn a_later_record_wins_by_its_step_not_by_its_writers_clock() {
        let (residents, ticket) = state_with_one();
        let now = chrono::Utc::now().fixed_offset();
        let booked = booked_by_another_process(ticket, now - chrono::Duration::seconds(5));
        let mut cancelled = booked.clone();
        cancelled.status = ReservationStatus::Cancelled;
        cancelled.updated_at = now - chrono::Duration::seconds(10);
        residents.apply_stored(cancelled, false, now);
        residents.apply_stored(booked.clone(), false, now);
        let held = residents.reservations_of(&ticket);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].status, ReservationStatus::Cancelled);
    }

    #[test]
    fn a_booking_learnt_from_another_process_and_then_undone_replays_nothing() {
        let (residents, ticket) = state_with_one();
        let now = chrono::Utc::now().fixed_offset();
        let booked = booked_by_another_process(ticket, now);
        // Another process's commit, followed here: its key replays it.
        residents.apply_stored(booked.clone(), false, now);
        assert!(matches!(
            residents.begin_keyed_booking(&ticket, "k1", &|_| 7, now),
            super::super::KeyedBooking::Replay(FirstAnswer::Booked(_))
        ));
        // Its batch was undone (abandoned): the key goes with it, so a retry
        // books again instead of hearing "booked" for nothing.
        residents.forget_reservation(&ticket, booked.id);
        assert!(residents.reservations_of(&ticket).is_empty());
        assert!(matches!(
            residents.begin_keyed_booking(&ticket, "k1", &|_| 7, now),
            super::super::KeyedBooking::New(_)
        ));
    }

    #[test]
    fn an_unfinished_keyed_booking_is_forgotten() {
        let (residents, ticket) = state_with_one();
        let now = chrono::Utc::now().fixed_offset();
        drop(residents.begin_keyed_booking(&ticket, "k1", &|_| 7, now));
        assert!(matches!(
            residents.begin_keyed_booking(&ticket, "k1", &|_| 9, now),
            super::super::KeyedBooking::New(_)
        ));
    }
}
