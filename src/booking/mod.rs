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
    BookingError, BookingMode, BookingRequest, Dose, FingerprintScheme, IdempotencyTag,
    IneligibleReason, MailPolicy, Reservation, ReservationId, ReservationStatus, Vaccine,
    VenueDayKey,
};
use crate::residents::{ClaimRequest, DoseClaim, FirstAnswer, KeyedBooking, Residents};
use crate::store::{Coordination, RefusalKept, RefusalToKeep, SharedClaimAnswer, SharedDoseClaim};
use crate::telemetry;

/// Tries at a shared dose claim, each after finding the record in its way
/// stale (see `BookingService::claim_shared`).
pub const SHARED_CLAIM_ATTEMPTS: usize = 3;

/// A resident's shared dose claim (several processes), with when its lease
/// ends (`None`: a store that shares nothing gives none).
type SharedClaim = (SharedDoseClaim, Option<chrono::DateTime<chrono::Utc>>);

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
    shared_claims: Option<Arc<dyn Coordination>>,
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
        shared_claims: Option<Arc<dyn Coordination>>,
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
            } => Ok(Outcome::Booked(self.book_unkeyed(caller, booking).await?)),
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
        let mut confirmed = false;
        let guard = loop {
            match self
                .residents
                .begin_keyed_booking(&caller.ticket, &key, &fingerprint, now())
            {
                KeyedBooking::New(guard) => break guard,
                KeyedBooking::Replay(FirstAnswer::Booked(reservation)) => {
                    if confirmed || self.still_held(caller, &reservation).await? {
                        return Ok(Outcome::Replayed(*reservation));
                    }
                    // Undone since (an abandoned batch): the key went with
                    // it, and this request books as if new.
                    confirmed = true;
                }
                KeyedBooking::Replay(FirstAnswer::Refused(refusal)) => return Err(refusal),
                KeyedBooking::InProgress => return Err(BookingError::IdempotencyKeyInUse),
                KeyedBooking::Mismatch => return Err(BookingError::IdempotencyKeyReused),
            }
        };
        let fingerprint = booking.fingerprint(FingerprintScheme::Canonical);
        let dose = booking.dose;
        let tag = IdempotencyTag {
            key,
            fingerprint,
            scheme: FingerprintScheme::Canonical,
        };
        match self.book(caller, booking, Some(tag.clone())).await {
            Ok(reservation) => {
                guard.finish(Some(FirstAnswer::Booked(Box::new(reservation.clone()))));
                Ok(Outcome::Booked(reservation))
            }
            Err(Refused::Replay(first)) => {
                guard.finish(Some(FirstAnswer::Booked(first.clone())));
                Ok(Outcome::Replayed(*first))
            }
            Err(Refused::Error(refusal)) if is_kept_for_key(refusal) => {
                match self.first_refusal(caller, &tag, dose, refusal).await {
                    Refused::Replay(first) => {
                        guard.finish(Some(FirstAnswer::Booked(first.clone())));
                        Ok(Outcome::Replayed(*first))
                    }
                    Refused::Error(first) if is_kept_for_key(first) => {
                        guard.finish(Some(FirstAnswer::Refused(first)));
                        Err(first)
                    }
                    Refused::Error(failure) => {
                        guard.finish(None);
                        Err(failure)
                    }
                }
            }
            Err(Refused::Error(failure)) => {
                guard.finish(None);
                Err(failure)
            }
        }
    }

    /// Whether a booking about to be replayed still exists. Alone on its
    /// store a process's memory is the truth. With several, the record may
    /// come from another process's commit whose outcome that process did
    /// not know and is undoing (`abandon.lua`), so the day's owner is asked:
    /// its actor holds the day's committed state, an uncertain batch
    /// already undone in it, and answering it makes whoever asks the owner
    /// (a takeover fences a stale one, whose undoing then never happens).
    /// Not held: this process forgets it (and its key), and `false`.
    async fn still_held(
        &self,
        caller: &Caller,
        reservation: &Reservation,
    ) -> Result<bool, BookingError> {
        if self.shared_claims.is_none() {
            return Ok(true);
        }
        let day = self.registry.reservations(&reservation.venue_day()).await?;
        if day.iter().any(|r| r.id == reservation.id) {
            return Ok(true);
        }
        tracing::warn!("a keyed booking learnt from another process was undone; booking again");
        self.residents
            .forget_reservation(&caller.ticket, reservation.id);
        Ok(false)
    }

    /// When `held` (the caller's active reservation of the dose asked for)
    /// was booked under the request's own `Idempotency-Key`: that booking's
    /// first answer once its day's owner confirms it (`still_held`: the
    /// store may hold a batch whose outcome its owner does not know yet,
    /// and will undo; then "in progress", retried), or a reused key when
    /// the request differs. `None`: another booking holds the dose.
    async fn answer_of_own_key(
        &self,
        caller: &Caller,
        idempotency: Option<&IdempotencyTag>,
        held: &Reservation,
    ) -> Result<Option<Refused>, BookingError> {
        let (Some(asked), Some(first)) = (idempotency, held.idempotency.as_ref()) else {
            return Ok(None);
        };
        if asked.key != first.key {
            return Ok(None);
        }
        if asked.scheme != first.scheme || asked.fingerprint != first.fingerprint {
            return Ok(Some(Refused::Error(BookingError::IdempotencyKeyReused)));
        }
        if !self.still_held(caller, held).await? {
            return Ok(Some(Refused::Error(BookingError::ChangeInProgress)));
        }
        let mut answer = held.clone();
        answer.status = crate::domain::ReservationStatus::Booked;
        answer.updated_at = answer.created_at;
        Ok(Some(Refused::Replay(Box::new(answer))))
    }

    /// With several processes: keeps a keyed booking's final refusal in the
    /// store, so that a retry through any process answers it again; when a
    /// first refusal is kept already (the retry came here, and was refused
    /// again, maybe otherwise), that one is the answer. A refusal rests on
    /// this process's view, which may be a moment behind the store: while
    /// the resident's shared record has a booking of the dose in flight
    /// (maybe an earlier try of this key, its outcome unknown) the answer is
    /// "in progress", and where it names a reservation of the dose made
    /// under this key, that booking is the answer (`answer_of_own_key`).
    /// Without the store's answer, this process's refusal stands.
    async fn first_refusal(
        &self,
        caller: &Caller,
        tag: &IdempotencyTag,
        dose: Option<Dose>,
        refusal: BookingError,
    ) -> Refused {
        let Some(store) = &self.shared_claims else {
            return refusal.into();
        };
        let value = refusal_record(tag.fingerprint, refusal);
        let mut unless_dose_recorded = true;
        loop {
            let kept = store
                .remember_refusal(RefusalToKeep {
                    ticket: &caller.ticket,
                    idempotency_key: &tag.key,
                    value: &value,
                    window: shared_refusal_window(),
                    dose,
                    unless_dose_recorded,
                })
                .await;
            match kept {
                Ok(RefusalKept::Now) => return refusal.into(),
                Ok(RefusalKept::Before(kept)) => {
                    return kept_refusal(&kept, tag.fingerprint)
                        .unwrap_or(refusal)
                        .into();
                }
                Ok(RefusalKept::DoseInFlight) => return BookingError::ChangeInProgress.into(),
                Ok(RefusalKept::DoseRecorded(recorded)) if unless_dose_recorded => {
                    for (dose, day) in recorded {
                        let stored = match store
                            .active_reservation_on(&day, &caller.ticket, dose)
                            .await
                        {
                            Ok(stored) => stored,
                            Err(_) => return BookingError::StoreUnavailable.into(),
                        };
                        if let Some(stored) = stored {
                            match self.answer_of_own_key(caller, Some(tag), &stored).await {
                                Ok(Some(answer)) => return answer,
                                Ok(None) => {}
                                Err(failure) => return failure.into(),
                            }
                        }
                    }
                    // Nothing of this key's: the refusal is kept after all.
                    unless_dose_recorded = false;
                }
                Ok(RefusalKept::DoseRecorded(_)) => return refusal.into(),
                Err(error) => {
                    tracing::warn!(error = %error, "a keyed refusal was not shared");
                    return refusal.into();
                }
            }
        }
    }

    /// Books without a key (a replay needs one, so there is none).
    async fn book_unkeyed(
        &self,
        caller: &Caller,
        booking: Booking,
    ) -> Result<Reservation, BookingError> {
        match self.book(caller, booking, None).await {
            Ok(reservation) => Ok(reservation),
            Err(Refused::Error(refusal)) => Err(refusal),
            Err(Refused::Replay(_)) => unreachable!("only a keyed booking is replayed"),
        }
    }

    async fn book(
        &self,
        caller: &Caller,
        booking: Booking,
        idempotency: Option<IdempotencyTag>,
    ) -> Result<Reservation, Refused> {
        let (key, vaccine) = self.day_for(&booking)?;
        let now = now();
        let request = ClaimRequest {
            dose: booking.dose,
            vaccine,
            slot_date: key.date,
            today: now.date_naive(),
        };
        let (claim, shared) = self
            .claim_doses(caller, &request, &key, idempotency.as_ref())
            .await?;
        assert!(
            booking.dose.is_none_or(|dose| dose == claim.dose()),
            "the dose asked for is the dose claimed"
        );
        // Commits before its shared claim's lease ends (with room for the
        // clocks of the resident's shard and the day's to differ), or never:
        // past it another booking may hold the dose.
        let commit_by = shared.as_ref().and_then(|(_, lease_ends)| {
            lease_ends.map(|ends| ends - crate::domain::CLOCKS_AGREE_WITHIN)
        });
        let shared = shared.map(|(shared, _)| shared);
        let dose = claim.dose();
        let request = BookingRequest {
            ticket_number: caller.ticket,
            time: booking.time,
            dose: claim.dose(),
            access_code: booking.access_code,
            channel: caller.channel,
            now,
            idempotency,
            commit_by,
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
        if let Ok(reservation) = &booked {
            assert!(
                reservation.ticket_number == caller.ticket
                    && reservation.dose == dose
                    && reservation.venue_id == key.venue_id
                    && reservation.date == key.date,
                "the reservation made is the one asked for"
            );
            assert_eq!(reservation.status, ReservationStatus::Booked);
        }
        if let Some(shared) = shared {
            self.end_shared(&shared, &booked).await;
        }
        Ok(booked?)
    }

    /// The venue-day a booking names, and its vaccine: known, and booked
    /// through vaxslot (only days that exist get an actor).
    fn day_for(&self, booking: &Booking) -> Result<(VenueDayKey, Vaccine), BookingError> {
        let key = VenueDayKey {
            venue_id: booking.venue_id.clone(),
            date: booking.date,
        };
        let venue = self
            .catalog
            .venue(&key.venue_id)
            .ok_or(BookingError::NotFound)?;
        if venue.booking == BookingMode::Direct {
            return Err(BookingError::DirectBookingVenue);
        }
        let day = self.catalog.day(&key).ok_or(BookingError::NotFound)?;
        Ok((key, day.plan.vaccine))
    }

    /// The caller's dose claim in this process and, with several, the
    /// shared one with its lease's end.
    ///
    /// With several processes this process's view of the resident may be a
    /// moment behind the store (a cancellation through another): a refusal
    /// or a prior dose that rests on a reservation the store no longer holds
    /// active is checked there, the view mended, and the claim taken again,
    /// once.
    async fn claim_doses(
        &self,
        caller: &Caller,
        request: &ClaimRequest,
        key: &VenueDayKey,
        idempotency: Option<&IdempotencyTag>,
    ) -> Result<(DoseClaim, Option<SharedClaim>), Refused> {
        let mut refreshed = false;
        loop {
            let claim = match self.residents.claim(&caller.ticket, request) {
                Err(BookingError::AlreadyReserved) if !refreshed => {
                    let dose = request.dose.expect("only an asked-for dose is refused so");
                    if self.refresh_if_stale(caller, dose).await? {
                        refreshed = true;
                        continue;
                    }
                    // Held by this very key's booking: learnt here (an
                    // abandonment's undoing told followers what the store
                    // kept) while a try of the key was in progress, so the
                    // key's record was not (seen by the nemesis). Its
                    // answer, never "already reserved".
                    if let Some(held) = self.known_active(caller, dose)
                        && let Some(answer) =
                            self.answer_of_own_key(caller, idempotency, &held).await?
                    {
                        return Err(answer);
                    }
                    return Err(BookingError::AlreadyReserved.into());
                }
                other => other?,
            };
            let Some(store) = &self.shared_claims else {
                return Ok((claim, None));
            };
            let shared = self
                .claim_shared(store.as_ref(), caller, claim.dose(), key, idempotency)
                .await;
            match shared {
                Err(Refused::Error(BookingError::NotEligible(IneligibleReason::NoPriorDose)))
                    if !refreshed =>
                {
                    refreshed = true;
                    drop(claim);
                }
                Err(refused) => return Err(refused),
                Ok(shared) => {
                    assert_eq!(shared.0.dose, claim.dose(), "one dose claimed twice over");
                    return Ok((claim, Some(shared)));
                }
            }
        }
    }

    /// Ends a booking's shared dose claim with what became of it: booked
    /// (its id), or refused. An unknown outcome is left to the claim's
    /// lease, and then what the day stores decides.
    async fn end_shared(
        &self,
        shared: &SharedDoseClaim,
        booked: &Result<Reservation, BookingError>,
    ) {
        let store = self
            .shared_claims
            .as_ref()
            .expect("a shared claim is taken only with a shared store");
        let ended = match booked {
            Ok(reservation) => {
                assert!(
                    reservation.dose == shared.dose && reservation.ticket_number == shared.ticket,
                    "a shared claim ends with its own dose's booking"
                );
                Some(Some(reservation.id))
            }
            Err(BookingError::StoreUnavailable) => None,
            Err(_) => Some(None),
        };
        // Waited for, so that a retry right after a refusal finds the dose
        // free (not waiting measured no faster: BENCHMARKS.md).
        if let Some(booked) = ended
            && let Err(error) = store.end_dose_claim(shared, booked).await
        {
            tracing::warn!(error = %error, "shared dose claim left to its lease");
        }
    }

    /// Takes the resident's shared claim on `dose` (several processes on one
    /// Redis): refused while another booking of it is in flight anywhere,
    /// or while it is booked. A record in the way is checked against the
    /// venue-day it names (the store is the truth): a booking cancelled, or
    /// a claim whose taker died before committing, no longer counts.
    async fn claim_shared(
        &self,
        store: &dyn Coordination,
        caller: &Caller,
        dose: crate::domain::Dose,
        key: &VenueDayKey,
        idempotency: Option<&IdempotencyTag>,
    ) -> Result<SharedClaim, Refused> {
        // A prior dose this process knows only as a reservation must still be
        // booked (or given) in the shared record: a cancellation through
        // another process may not have reached this one yet.
        let prior = dose.number().checked_sub(1).and_then(|n| Dose::new(n).ok());
        let prior_booking = prior.and_then(|prior| self.known_active(caller, prior));
        let mut claim = SharedDoseClaim {
            ticket: caller.ticket,
            dose,
            id: rand::random(),
            day: key.clone(),
            idempotency_key: idempotency.map(|tag| tag.key.clone()),
            prior: prior_booking.as_ref().map(|r| r.dose),
        };
        let mut replacing: Option<String> = None;
        for _ in 0..SHARED_CLAIM_ATTEMPTS {
            let answer = store
                .claim_dose(&claim, replacing.as_deref())
                .await
                .map_err(|_| BookingError::StoreUnavailable)?;
            let (day, value) = match answer {
                SharedClaimAnswer::Claimed { lease_ends } => return Ok((claim, lease_ends)),
                SharedClaimAnswer::InFlight => return Err(BookingError::ChangeInProgress.into()),
                SharedClaimAnswer::PriorGone => {
                    let prior = prior_booking
                        .as_ref()
                        .expect("asked only with a prior booking");
                    self.check_prior_stands(store, caller, prior).await?;
                    // Held, only not in the record (booked before it was
                    // kept): the store says the prior dose stands.
                    claim.prior = None;
                    continue;
                }
                SharedClaimAnswer::Refused(kept) => {
                    // Refused before through some process: that answer
                    // again, or a reused key if the request differs.
                    let fingerprint = idempotency.map_or(0, |tag| tag.fingerprint);
                    return Err(kept_refusal(&kept, fingerprint)
                        .ok_or(BookingError::StoreUnavailable)?
                        .into());
                }
                SharedClaimAnswer::Booked { day, value, .. }
                | SharedClaimAnswer::Expired { day, value } => (day, value),
            };
            self.check_record_in_way(store, caller, dose, &day, idempotency)
                .await?;
            replacing = Some(value);
        }
        Err(BookingError::ChangeInProgress.into())
    }

    /// The shared record says the caller's prior dose is gone: `Ok` if the
    /// store still holds it active (booked before the record was kept);
    /// else the view is mended and the booking is not eligible.
    async fn check_prior_stands(
        &self,
        store: &dyn Coordination,
        caller: &Caller,
        prior: &Reservation,
    ) -> Result<(), Refused> {
        let stored = store
            .active_reservation_on(&prior.venue_day(), &caller.ticket, prior.dose)
            .await
            .map_err(|_| BookingError::StoreUnavailable)?;
        if stored.is_some() {
            return Ok(());
        }
        // Cancelled through another process: mend the view.
        self.refresh_if_stale(caller, prior.dose).await?;
        Err(BookingError::NotEligible(IneligibleReason::NoPriorDose).into())
    }

    /// A shared record of `dose` names the venue-day `day`: `Ok` (it may be
    /// replaced) if that day holds no active reservation of it; else this
    /// key's answer if it booked it through another process, or "already
    /// reserved".
    async fn check_record_in_way(
        &self,
        store: &dyn Coordination,
        caller: &Caller,
        dose: Dose,
        day: &VenueDayKey,
        idempotency: Option<&IdempotencyTag>,
    ) -> Result<(), Refused> {
        let stored = store
            .active_reservation_on(day, &caller.ticket, dose)
            .await
            .map_err(|_| BookingError::StoreUnavailable)?;
        let Some(stored) = stored else {
            return Ok(());
        };
        // Booked through another process under this request's key: its
        // answer, before this process has heard of it.
        Err(self
            .answer_of_own_key(caller, idempotency, &stored)
            .await?
            .unwrap_or(Refused::Error(BookingError::AlreadyReserved)))
    }

    /// The caller's active reservation of `dose`, as this process knows it.
    fn known_active(&self, caller: &Caller, dose: Dose) -> Option<Reservation> {
        self.residents
            .reservations_of(&caller.ticket)
            .into_iter()
            .find(|r| r.dose == dose && r.status.is_active())
    }

    /// Checks the caller's active reservation of `dose` that this process
    /// knows against its day in the store; when the store no longer holds
    /// it active, this process's view takes the stored version (`true`).
    async fn refresh_if_stale(&self, caller: &Caller, dose: Dose) -> Result<bool, BookingError> {
        let Some(store) = &self.shared_claims else {
            return Ok(false);
        };
        let Some(known) = self.known_active(caller, dose) else {
            return Ok(false);
        };
        let unavailable = |_| BookingError::StoreUnavailable;
        let day = known.venue_day();
        let stored = store
            .stored_reservation(&day, known.id)
            .await
            .map_err(unavailable)?;
        match stored {
            Some(stored) if stored.status.is_active() => Ok(false),
            Some(stored) => {
                self.residents.apply_stored(stored, false, now());
                Ok(true)
            }
            // Undone (an abandoned batch): gone from the store.
            None => {
                self.residents.forget_reservation(&caller.ticket, known.id);
                Ok(true)
            }
        }
    }

    /// Cancels one of the caller's reservations and every booked later dose,
    /// latest dose first, each through its own venue-day's actor.
    async fn cancel(
        &self,
        caller: &Caller,
        reservation_id: ReservationId,
    ) -> Result<Outcome, BookingError> {
        let mut cascade = self
            .residents
            .begin_cancel(&caller.ticket, reservation_id)?;
        let Some(store) = &self.shared_claims else {
            return self.run_cascade(caller, &cascade.chain).await;
        };
        // With several processes the cascade also holds the resident's
        // shared dose record: no booking of theirs starts through any
        // process until it ends, and a later dose booked through another
        // process, not heard of here yet, is cancelled with it.
        let held = store
            .start_shared_cascade(&caller.ticket)
            .await
            .map_err(|_| BookingError::StoreUnavailable)?
            .ok_or(BookingError::ChangeInProgress)?;
        let outcome = async {
            self.add_doses_booked_elsewhere(store.as_ref(), caller, &mut cascade.chain, held)
                .await?;
            self.run_cascade(caller, &cascade.chain).await
        }
        .await;
        if let Err(error) = store.end_shared_cascade(&caller.ticket).await {
            tracing::warn!(error = %error, "shared cascade mark left to its lease");
        }
        outcome
    }

    /// Adds to `chain` (latest dose first, the asked-for one last) the later
    /// doses the shared record holds that this process has not heard of,
    /// as their days store them.
    async fn add_doses_booked_elsewhere(
        &self,
        store: &dyn Coordination,
        caller: &Caller,
        chain: &mut Vec<Reservation>,
        held: Vec<(crate::domain::Dose, VenueDayKey)>,
    ) -> Result<(), BookingError> {
        let asked = chain.last().expect("a cascade cancels at least one").dose;
        for (dose, day) in held {
            if dose <= asked || chain.iter().any(|r| r.dose == dose) {
                continue;
            }
            let stored = store
                .active_reservation_on(&day, &caller.ticket, dose)
                .await
                .map_err(|_| BookingError::StoreUnavailable)?;
            if let Some(reservation) =
                stored.filter(|r| r.status == crate::domain::ReservationStatus::Booked)
            {
                chain.push(reservation);
            }
        }
        // Latest dose first, as `cancel_cascade` orders it.
        chain.sort_by_key(|r| std::cmp::Reverse(r.dose));
        Ok(())
    }

    /// Cancels `chain` in order, each through its own venue-day's actor.
    async fn run_cascade(
        &self,
        caller: &Caller,
        chain: &[Reservation],
    ) -> Result<Outcome, BookingError> {
        let now = now();
        let mut cancelled = Vec::with_capacity(chain.len());
        for (i, reservation) in chain.iter().enumerate() {
            let key = reservation.venue_day();
            // The call's audit entry commits with the asked-for reservation (last).
            let last = i + 1 == chain.len();
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

/// How long a shared first refusal is kept: an `Idempotency-Key`'s window.
fn shared_refusal_window() -> std::time::Duration {
    crate::residents::IDEMPOTENCY_WINDOW
        .to_std()
        .expect("the window is positive")
}

/// A keyed refusal as the store keeps it (`store::records::RefusalV1`).
fn refusal_record(fingerprint: u64, refusal: BookingError) -> String {
    crate::store::records::RefusalV1::kept(fingerprint, refusal)
}

/// The refusal kept for a key, as the answer to a request with
/// `fingerprint`: the same refusal, or `idempotency_key_reused` for a
/// different request. `None` when the record cannot be read.
fn kept_refusal(kept: &str, fingerprint: u64) -> Option<BookingError> {
    let (first, refusal) = crate::store::records::RefusalV1::read_kept(kept)?;
    if first != fingerprint {
        return Some(BookingError::IdempotencyKeyReused);
    }
    refusal
}

/// Why `book` made no new reservation.
enum Refused {
    Error(BookingError),
    /// The store already holds this keyed request's booking, made through
    /// another process: its first answer.
    Replay(Box<Reservation>),
}

impl From<BookingError> for Refused {
    fn from(error: BookingError) -> Self {
        Refused::Error(error)
    }
}

/// A refusal that is the answer, kept and replayed for its
/// `Idempotency-Key`, as opposed to a failure after which a retry may
/// succeed; and not "key reused": the key is another request's, whose
/// retry gets its own answer.
fn is_kept_for_key(error: BookingError) -> bool {
    !matches!(
        error,
        BookingError::BookingClosed
            | BookingError::Overloaded
            | BookingError::StoreUnavailable
            | BookingError::ChangeInProgress
            | BookingError::IdempotencyKeyInUse
            | BookingError::IdempotencyKeyReused
            | BookingError::NotOpenYet(_)
    )
}

/// Counts one booking request by outcome, with its latency: one place for
/// every channel.
pub fn count_booking(outcome: telemetry::Outcome, started: Instant) {
    metrics::counter!(telemetry::BOOKING_REQUESTS_TOTAL, "outcome" => outcome.label()).increment(1);
    let took = started.elapsed();
    metrics::histogram!(telemetry::BOOKING_DURATION_SECONDS).record(took.as_secs_f64());
    crate::recent::record_booking(outcome, took);
}

/// Counts one cancellation request by outcome.
pub fn count_cancel(outcome: telemetry::Outcome) {
    metrics::counter!(telemetry::CANCEL_REQUESTS_TOTAL, "outcome" => outcome.label()).increment(1);
}
