//! Resident state: every resident, their reservations, the doses they are in
//! the middle of booking or cancelling, and their recent `Idempotency-Key`s.
//! One trait, `ResidentState`, so that the booking service is written once
//! against it; `memory.rs` is today's in-process implementation (loaded
//! from the store at start, kept current by the import handler and by the
//! venue-day actors after each commit). The rules it applies are pure
//! functions in `domain/doses.rs` and `domain/eligibility.rs`; the keys'
//! bookkeeping is `idempotency.rs`.
//!
//! A **dose claim** is how one active reservation per (resident, dose)
//! holds across venue-days: the booking service claims the dose (checking
//! the eligibility table) before routing a booking; the actor settles the
//! claim when the reservation is committed, and dropping an unsettled claim
//! (refusal, failed commit, lost message) releases it. The durable form of a
//! claim is the reservation itself: at start the state is rebuilt from
//! stored reservations, so no claim can be orphaned.
//!
//! A **cancellation cascade** (cancelling dose N cancels the booked doses
//! N, N+1, …) marks its reservations while it runs: no claim for that
//! resident is taken meanwhile, and it does not start while a claim is
//! pending, so no later dose can be booked on top of a dose being cancelled.

mod idempotency;
mod memory;

pub use idempotency::{FirstAnswer, IDEMPOTENCY_KEYS_PER_RESIDENT_MAX, IDEMPOTENCY_WINDOW, Lookup};
pub use memory::{InMemoryResidents, RESIDENTS_MAX};

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::domain::{
    BookingError, Dose, FingerprintScheme, Reservation, ReservationId, Resident, TicketNumber,
    Vaccine,
};
use crate::tokens::ResidentHandle;

/// What one import call changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: usize,
    pub updated: usize,
}

/// What a booking asks for of the resident's doses.
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

/// Every per-resident rule is decided inside one call of this trait, for one
/// resident at a time (an implementation holds that resident's lock, or runs
/// one script, for the whole call; never across an `.await`).
pub trait ResidentState: Send + Sync + 'static {
    /// Room for `additional` new residents?
    fn has_room_for(&self, additional: usize) -> bool;
    fn contains(&self, ticket: &TicketNumber) -> bool;
    /// Inserts or replaces residents, keeping their reservations and claims.
    fn upsert(&self, residents: Vec<Resident>) -> ImportCounts;
    fn resident(&self, ticket: &TicketNumber) -> Option<Resident>;
    /// Has the resident an e-mail address (is there anyone to mail)?
    fn has_email(&self, ticket: &TicketNumber) -> bool;
    /// Checks a login: unknown ticket and wrong birth date take the same path
    /// and give the same `None`.
    fn login(&self, ticket: &TicketNumber, birth_date: NaiveDate) -> Option<ResidentHandle>;
    fn ticket_for_handle(&self, handle: &ResidentHandle) -> Option<TicketNumber>;

    /// All of the resident's reservations, newest first.
    fn reservations_of(&self, ticket: &TicketNumber) -> Vec<Reservation>;
    /// One of the resident's reservations; another's is `None`, like a missing one.
    fn reservation_of(&self, ticket: &TicketNumber, id: ReservationId) -> Option<Reservation>;
    /// Records a committed reservation (new or changed) under its owner.
    fn record(&self, reservation: Reservation);
    /// Takes in a reservation as another process committed it (the change
    /// stream): kept unless the version held is newer; `revert`: an undone
    /// batch puts it back as it was, older or not. Its `Idempotency-Key`
    /// answers a retry here too.
    fn apply_stored(&self, reservation: Reservation, revert: bool, now: DateTime<FixedOffset>);
    /// Forgets a reservation whose batch was undone.
    fn forget_reservation(&self, ticket: &TicketNumber, id: ReservationId);
    /// What the resident may book next, by today's rules.
    fn outlook(&self, ticket: &TicketNumber, today: NaiveDate) -> Option<Outlook>;

    /// Claims a dose: the requested one, or the next one neither received
    /// nor reserved, checked against the eligibility table.
    fn take_claim(
        &self,
        ticket: &TicketNumber,
        request: &ClaimRequest,
    ) -> Result<Dose, BookingError>;
    /// Ends a claim: with the committed reservation, in the same step, or
    /// without (the dose is free again).
    fn release_claim(&self, ticket: &TicketNumber, dose: Dose, committed: Option<Reservation>);
    /// Starts cancelling one of the resident's reservations: what the
    /// cascade cancels, latest dose first (`domain::cancel_cascade`).
    fn start_cascade(
        &self,
        ticket: &TicketNumber,
        id: ReservationId,
    ) -> Result<Vec<Reservation>, BookingError>;
    fn end_cascade(&self, ticket: &TicketNumber);

    /// Looks up an `Idempotency-Key` of the resident's booking.
    fn look_up_key(
        &self,
        ticket: &TicketNumber,
        key: &str,
        fingerprint: &dyn Fn(FingerprintScheme) -> u64,
        now: DateTime<FixedOffset>,
    ) -> Lookup;
    fn finish_key(&self, ticket: &TicketNumber, key: &str, answer: Option<FirstAnswer>);
}

/// The resident state the service shares: a cheap handle, and the guards
/// that make claims, cascades and keys end on every path.
#[derive(Clone)]
pub struct Residents {
    state: Arc<dyn ResidentState>,
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

impl Residents {
    pub fn new(state: impl ResidentState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    pub fn has_room_for(&self, additional: usize) -> bool {
        self.state.has_room_for(additional)
    }

    pub fn contains(&self, ticket: &TicketNumber) -> bool {
        self.state.contains(ticket)
    }

    pub fn upsert_residents(&self, residents: Vec<Resident>) -> ImportCounts {
        self.state.upsert(residents)
    }

    pub fn resident(&self, ticket: &TicketNumber) -> Option<Resident> {
        self.state.resident(ticket)
    }

    pub fn has_email(&self, ticket: &TicketNumber) -> bool {
        self.state.has_email(ticket)
    }

    pub fn login(&self, ticket: &TicketNumber, birth_date: NaiveDate) -> Option<ResidentHandle> {
        self.state.login(ticket, birth_date)
    }

    pub fn ticket_for_handle(&self, handle: &ResidentHandle) -> Option<TicketNumber> {
        self.state.ticket_for_handle(handle)
    }

    pub fn reservations_of(&self, ticket: &TicketNumber) -> Vec<Reservation> {
        self.state.reservations_of(ticket)
    }

    pub fn reservation_of(&self, ticket: &TicketNumber, id: ReservationId) -> Option<Reservation> {
        self.state.reservation_of(ticket, id)
    }

    pub fn record(&self, reservation: Reservation) {
        self.state.record(reservation);
    }

    pub fn apply_stored(&self, reservation: Reservation, revert: bool, now: DateTime<FixedOffset>) {
        self.state.apply_stored(reservation, revert, now);
    }

    pub fn forget_reservation(&self, ticket: &TicketNumber, id: ReservationId) {
        self.state.forget_reservation(ticket, id);
    }

    pub fn outlook(&self, ticket: &TicketNumber, today: NaiveDate) -> Option<Outlook> {
        self.state.outlook(ticket, today)
    }

    /// Claims a dose for a booking (see `ResidentState::take_claim`).
    pub fn claim(
        &self,
        ticket: &TicketNumber,
        request: &ClaimRequest,
    ) -> Result<DoseClaim, BookingError> {
        let dose = self.state.take_claim(ticket, request)?;
        Ok(DoseClaim {
            state: Arc::clone(&self.state),
            ticket: *ticket,
            dose,
            settled: false,
            forwarded: false,
        })
    }

    /// The owner's side of a claim another process took (see `DoseClaim`).
    pub fn forwarded_claim(&self, ticket: &TicketNumber, dose: Dose) -> DoseClaim {
        DoseClaim {
            state: Arc::clone(&self.state),
            ticket: *ticket,
            dose,
            settled: false,
            forwarded: true,
        }
    }

    /// Starts cancelling one of the resident's reservations and every booked
    /// later dose.
    pub fn begin_cancel(
        &self,
        ticket: &TicketNumber,
        id: ReservationId,
    ) -> Result<CancelCascade, BookingError> {
        let chain = self.state.start_cascade(ticket, id)?;
        Ok(CancelCascade {
            state: Arc::clone(&self.state),
            ticket: *ticket,
            chain,
        })
    }

    /// Looks up an `Idempotency-Key`; `fingerprint` gives the request's
    /// fingerprint under a scheme.
    pub fn begin_keyed_booking(
        &self,
        ticket: &TicketNumber,
        key: &str,
        fingerprint: &dyn Fn(FingerprintScheme) -> u64,
        now: DateTime<FixedOffset>,
    ) -> KeyedBooking {
        match self.state.look_up_key(ticket, key, fingerprint, now) {
            Lookup::New => KeyedBooking::New(IdempotencyGuard {
                state: Arc::clone(&self.state),
                ticket: *ticket,
                key: key.to_owned(),
                finished: false,
            }),
            Lookup::Replay(answer) => KeyedBooking::Replay(answer),
            Lookup::InProgress => KeyedBooking::InProgress,
            Lookup::Mismatch => KeyedBooking::Mismatch,
        }
    }
}

/// A resident's hold on one dose while its booking is decided and committed.
/// Settle it with the committed reservation; drop it to release the dose.
pub struct DoseClaim {
    state: Arc<dyn ResidentState>,
    ticket: TicketNumber,
    dose: Dose,
    settled: bool,
    /// Taken by another process, which forwarded the booking to this day's
    /// owner: here it only records the committed reservation.
    forwarded: bool,
}

impl DoseClaim {
    pub fn dose(&self) -> Dose {
        self.dose
    }

    /// Turns the claim into the committed reservation, in one step, so the
    /// dose is never seen free in between.
    pub fn settle(mut self, committed: Reservation) {
        self.settled = true;
        if self.forwarded {
            self.state.record(committed);
        } else {
            self.state
                .release_claim(&self.ticket, self.dose, Some(committed));
        }
    }
}

impl Drop for DoseClaim {
    fn drop(&mut self) {
        if !self.settled && !self.forwarded {
            self.state.release_claim(&self.ticket, self.dose, None);
        }
    }
}

/// A running cancellation cascade; dropping it ends the cascade.
pub struct CancelCascade {
    state: Arc<dyn ResidentState>,
    ticket: TicketNumber,
    /// The reservations to cancel, latest dose first; the asked-for one last.
    pub chain: Vec<Reservation>,
}

impl Drop for CancelCascade {
    fn drop(&mut self) {
        self.state.end_cascade(&self.ticket);
    }
}

/// A new `Idempotency-Key` being answered. `finish` it with the answer to keep
/// (or `None` for an answer that must not be replayed, like a `503`);
/// dropping it unfinished forgets the key.
pub struct IdempotencyGuard {
    state: Arc<dyn ResidentState>,
    ticket: TicketNumber,
    key: String,
    finished: bool,
}

impl IdempotencyGuard {
    pub fn finish(mut self, answer: Option<FirstAnswer>) {
        self.finished = true;
        self.state.finish_key(&self.ticket, &self.key, answer);
    }
}

impl Drop for IdempotencyGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.finish_key(&self.ticket, &self.key, None);
        }
    }
}
