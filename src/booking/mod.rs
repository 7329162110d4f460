//! The booking service: the one way a reservation is made or cancelled, for
//! every channel. `execute(caller, command)` applies, in this order and
//! inside itself so that no channel can skip one: the kill switch, the
//! caller's identity (the resident must exist), the `Idempotency-Key`, the
//! venue and day, the resident's dose claim with the eligibility table, and
//! routing to the venue-day's actor, which decides and group-commits. `api/`
//! only turns an endpoint's body into a `Command` and an `Outcome` into HTTP.

mod command;

pub use command::{Booking, Caller, Command};

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

use crate::actors::{CancelNotice, KillSwitchHandle, Registry};
use crate::catalog::Catalog;
use crate::domain::{
    BookingError, BookingMode, BookingRequest, FingerprintScheme, IdempotencyTag, MailPolicy,
    Reservation, ReservationId, VenueDayKey,
};
use crate::residents::{ClaimRequest, FirstAnswer, KeyedBooking, Residents};
use crate::store::{SharedClaimAnswer, SharedDoseClaim, Store};

/// Tries at a shared dose claim, each after finding the record in its way
/// stale (see `BookingService::claim_shared`).
pub const SHARED_CLAIM_ATTEMPTS: usize = 3;
use crate::telemetry;

/// What a command did.
pub enum Outcome {
    /// A new reservation, committed.
    Booked(Reservation),
    /// The first answer to this `Idempotency-Key`: the reservation as booked.
    Replayed(Reservation),
    /// The asked-for reservation, cancelled, and the later doses cancelled
    /// with it (latest first).
    Cancelled {
        reservation: Reservation,
        also_cancelled: Vec<Reservation>,
    },
}

pub struct BookingService {
    /// With several processes on one Redis: the store that holds the
    /// residents' shared dose claims (`None` for a process alone).
    shared_claims: Option<Arc<dyn Store>>,
    kill_switch: KillSwitchHandle,
    catalog: Arc<Catalog>,
    residents: Residents,
    registry: Arc<Registry>,
    /// Which mail a reservation change leaves; `None`: mail is off.
    mail: Option<MailPolicy>,
}

/// Now, in the municipality's time zone.
pub fn now() -> DateTime<FixedOffset> {
    crate::clock::now()
}

impl BookingService {
    pub fn new(
        kill_switch: KillSwitchHandle,
        catalog: Arc<Catalog>,
        residents: Residents,
        registry: Arc<Registry>,
        mail: Option<MailPolicy>,
        shared_claims: Option<Arc<dyn Store>>,
    ) -> Self {
        Self {
            shared_claims,
            kill_switch,
            catalog,
            residents,
            registry,
            mail,
        }
    }

    /// Which mail this process's reservation changes leave (`None`: mail is off).
    pub fn mail_policy(&self) -> Option<MailPolicy> {
        self.mail
    }

    /// `Err(BookingClosed)` while the kill switch is engaged: what a channel
    /// may answer before it even reads a body (`execute` checks it again).
    pub fn refuse_if_closed(&self) -> Result<(), BookingError> {
        if self.kill_switch.is_engaged() {
            return Err(BookingError::BookingClosed);
        }
        Ok(())
    }

    /// Does what `command` asks for `caller`, or refuses with why.
    pub async fn execute(
        &self,
        caller: &Caller,
        command: Command,
    ) -> Result<Outcome, BookingError> {
        self.refuse_if_closed()?;
        if !self.residents.contains(&caller.ticket) {
            return Err(BookingError::NotFound);
        }
        match command {
            Command::Book {
                booking,
                idempotency_key: None,
            } => Ok(Outcome::Booked(self.book(caller, booking, None).await?)),
            Command::Book {
                booking,
                idempotency_key: Some(key),
            } => self.book_once(caller, booking, key).await,
            Command::Cancel { reservation_id } => self.cancel(caller, reservation_id).await,
        }
    }

    /// Books under an `Idempotency-Key`: the first final answer is kept and
    /// replayed; a `5xx`-kind failure is not (nothing happened: retry).
    async fn book_once(
        &self,
        caller: &Caller,
        booking: Booking,
        key: String,
    ) -> Result<Outcome, BookingError> {
        let fingerprint = |scheme| booking.fingerprint(scheme);
        let guard =
            match self
                .residents
                .begin_keyed_booking(&caller.ticket, &key, &fingerprint, now())
            {
                KeyedBooking::New(guard) => guard,
                KeyedBooking::Replay(FirstAnswer::Booked(reservation)) => {
                    return Ok(Outcome::Replayed(*reservation));
                }
                KeyedBooking::Replay(FirstAnswer::Refused(refusal)) => return Err(refusal),
                KeyedBooking::InProgress => return Err(BookingError::IdempotencyKeyInUse),
                KeyedBooking::Mismatch => return Err(BookingError::IdempotencyKeyReused),
            };
        let tag = IdempotencyTag {
            key,
            fingerprint: booking.fingerprint(FingerprintScheme::Canonical),
            scheme: FingerprintScheme::Canonical,
        };
        match self.book(caller, booking, Some(tag)).await {
            Ok(reservation) => {
                guard.finish(Some(FirstAnswer::Booked(Box::new(reservation.clone()))));
                Ok(Outcome::Booked(reservation))
            }
            Err(refusal) if is_final(refusal) => {
                guard.finish(Some(FirstAnswer::Refused(refusal)));
                Err(refusal)
            }
            Err(failure) => {
                guard.finish(None);
                Err(failure)
            }
        }
    }

    async fn book(
        &self,
        caller: &Caller,
        booking: Booking,
        idempotency: Option<IdempotencyTag>,
    ) -> Result<Reservation, BookingError> {
        let key = VenueDayKey {
            venue_id: booking.venue_id,
            date: booking.date,
        };
        let venue = self
            .catalog
            .venue(&key.venue_id)
            .ok_or(BookingError::NotFound)?;
        if venue.booking == BookingMode::Direct {
            return Err(BookingError::DirectBookingVenue);
        }
        // Only days that exist get an actor: unknown days never start one.
        let day = self.catalog.day(&key).ok_or(BookingError::NotFound)?;
        let now = now();
        let claim = self.residents.claim(
            &caller.ticket,
            &ClaimRequest {
                dose: booking.dose,
                vaccine: day.plan.vaccine,
                slot_date: key.date,
                today: now.date_naive(),
            },
        )?;
        let shared = match &self.shared_claims {
            Some(store) => Some(
                self.claim_shared(store.as_ref(), caller, claim.dose(), &key)
                    .await?,
            ),
            None => None,
        };
        let request = BookingRequest {
            ticket_number: caller.ticket,
            time: booking.time,
            dose: claim.dose(),
            access_code: booking.access_code,
            channel: caller.channel,
            now,
            idempotency,
        };
        let booked = self
            .registry
            .book(
                &key,
                request,
                claim,
                caller.audit.clone(),
                self.mail_for(caller),
            )
            .await;
        if let (Some(store), Some(shared)) = (&self.shared_claims, shared) {
            let ended = match &booked {
                Ok(reservation) => Some(Some(reservation.id)),
                // The outcome is unknown: the claim's lease ends it, and then
                // what the day stores decides.
                Err(BookingError::StoreUnavailable) => None,
                Err(_) => Some(None),
            };
            // Waited for, so that a retry right after a refusal finds the
            // dose free (not waiting measured no faster: BENCHMARKS.md).
            if let Some(booked) = ended
                && let Err(error) = store.end_dose_claim(&shared, booked).await
            {
                tracing::warn!(error = %error, "shared dose claim left to its lease");
            }
        }
        booked
    }

    /// Takes the resident's shared claim on `dose` (several processes on one
    /// Redis): refused while another booking of it is in flight anywhere,
    /// or while it is booked. A record in the way is checked against the
    /// venue-day it names (the store is the truth): a booking cancelled, or
    /// a claim whose taker died before committing, no longer counts.
    async fn claim_shared(
        &self,
        store: &dyn Store,
        caller: &Caller,
        dose: crate::domain::Dose,
        key: &VenueDayKey,
    ) -> Result<SharedDoseClaim, BookingError> {
        let claim = SharedDoseClaim {
            ticket: caller.ticket,
            dose,
            id: rand::random(),
            day: key.clone(),
        };
        let mut replacing: Option<String> = None;
        for _ in 0..SHARED_CLAIM_ATTEMPTS {
            let answer = store
                .claim_dose(&claim, replacing.as_deref())
                .await
                .map_err(|_| BookingError::StoreUnavailable)?;
            let (day, value) = match answer {
                SharedClaimAnswer::Claimed => return Ok(claim),
                SharedClaimAnswer::InFlight => return Err(BookingError::ChangeInProgress),
                SharedClaimAnswer::Booked { day, value, .. }
                | SharedClaimAnswer::Expired { day, value } => (day, value),
            };
            let stored = store
                .active_reservation_on(&day, &caller.ticket, dose)
                .await
                .map_err(|_| BookingError::StoreUnavailable)?;
            if stored.is_some() {
                return Err(BookingError::AlreadyReserved);
            }
            replacing = Some(value);
        }
        Err(BookingError::ChangeInProgress)
    }

    /// Cancels one of the caller's reservations and every booked later dose,
    /// latest dose first, each through its own venue-day's actor.
    async fn cancel(
        &self,
        caller: &Caller,
        reservation_id: ReservationId,
    ) -> Result<Outcome, BookingError> {
        let cascade = self
            .residents
            .begin_cancel(&caller.ticket, reservation_id)?;
        let now = now();
        let mut cancelled = Vec::with_capacity(cascade.chain.len());
        for (i, reservation) in cascade.chain.iter().enumerate() {
            let key = reservation.venue_day();
            // The call's audit entry commits with the asked-for reservation (last).
            let last = i + 1 == cascade.chain.len();
            let audit = caller.audit.clone().filter(|_| last);
            // So is the call's one mail, listing what the cascade cancelled before it.
            let notice = self
                .mail_for(caller)
                .filter(|_| last)
                .map(|policy| CancelNotice {
                    policy,
                    also_cancelled: cancelled.clone(),
                });
            let done = self
                .registry
                .cancel(&key, reservation.id, caller.ticket, now, audit, notice)
                .await?;
            if let Some(store) = &self.shared_claims
                && let Err(error) = store.forget_booked_dose(&done).await
            {
                // A stale record is checked against the store when it is next in the way.
                tracing::warn!(error = %error, "shared dose record not updated after a cancellation");
            }
            cancelled.push(done);
        }
        drop(cascade);
        let reservation = cancelled
            .pop()
            .expect("the asked-for reservation is cancelled last");
        Ok(Outcome::Cancelled {
            reservation,
            also_cancelled: cancelled,
        })
    }
}

impl BookingService {
    /// The mail policy for `caller`'s changes: `None` when mail is off or
    /// the resident has no address (they get none).
    fn mail_for(&self, caller: &Caller) -> Option<MailPolicy> {
        self.mail
            .filter(|_| self.residents.has_email(&caller.ticket))
    }
}

/// A refusal that is the answer (replayed for its `Idempotency-Key`), as
/// opposed to a failure after which a retry may succeed.
fn is_final(error: BookingError) -> bool {
    !matches!(
        error,
        BookingError::BookingClosed
            | BookingError::Overloaded
            | BookingError::StoreUnavailable
            | BookingError::ChangeInProgress
            | BookingError::IdempotencyKeyInUse
            | BookingError::NotOpenYet(_)
    )
}

/// Counts one booking request by outcome, with its latency: one place for
/// every channel.
pub fn count_booking(outcome: &'static str, started: Instant) {
    metrics::counter!(telemetry::BOOKING_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    let took = started.elapsed();
    metrics::histogram!(telemetry::BOOKING_DURATION_SECONDS).record(took.as_secs_f64());
    crate::recent::record_booking(outcome, took);
}

/// Counts one cancellation request by outcome.
pub fn count_cancel(outcome: &'static str) {
    metrics::counter!(telemetry::CANCEL_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
}
