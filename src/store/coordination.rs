//! What processes on one shared store coordinate through, and nothing else:
//! the member list (`heartbeat`), residents' shared dose claims, cascades
//! and kept refusals, the login lockout every process counts, and the
//! change streams with the reads that catch a process up with what others
//! wrote. Venue-day ownership is fenced where it lands, in the day log's
//! commit (`DayLog::load_venue_day` takes the day, `commit_reservations`
//! checks its epoch).
//!
//! Two implementations: Redis (`store/redis/coordination.rs`), which
//! processes share; and one process's memory (`store/local_coordination.rs`,
//! tests only), which states the contract in Rust beside a test that runs
//! it on both (`the_contract_holds_in_one_process`, `…_on_redis`). A process
//! alone on its store runs with none (`Placement` is `None`): its own
//! indexes are the coordination (the residents' in-memory dose claims, the
//! login guard, the catalog). No method has a default that answers "fine",
//! and a store that shares state but forgets a method does not compile.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    ChangeCursor, ChangesRead, LoginLimits, RefusalKept, RefusalToKeep, SharedClaimAnswer,
    SharedDoseClaim, StoreError,
};
use crate::domain::{Dose, Reservation, ReservationId, TicketNumber, Venue, VenueDayKey, VenueId};

#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// One venue as stored, read when this process has not heard of it yet
    /// (several processes on one Redis: it was put through another a moment
    /// ago).
    async fn stored_venue(&self, id: &VenueId) -> Result<Option<Venue>, StoreError>;

    /// Renews this process's lease in the member list (`member` is
    /// `"<id> <url>"`) for `lease`; answers the live members.
    async fn heartbeat(
        &self,
        member: &str,
        lease: std::time::Duration,
    ) -> Result<Vec<String>, StoreError>;

    /// Takes a shared claim on a resident's dose, unless another booking of it
    /// is in flight or the record says it is booked; `replacing`: a record
    /// the caller found stale (checked against the day's reservations).
    async fn claim_dose(
        &self,
        claim: &SharedDoseClaim,
        replacing: Option<&str>,
    ) -> Result<SharedClaimAnswer, StoreError>;

    /// Ends this shared claim: with the reservation that now holds the dose,
    /// or without (the dose is free). Another claim's record is left alone.
    async fn end_dose_claim(
        &self,
        claim: &SharedDoseClaim,
        booked: Option<ReservationId>,
    ) -> Result<(), StoreError>;

    /// Keeps a keyed booking's final refusal for every process, unless one
    /// is kept under that key already (the first refusal stands), or the
    /// resident's shared dose record says a booking of the dose is in flight
    /// or held (see `RefusalKept`).
    async fn remember_refusal(&self, refusal: RefusalToKeep<'_>)
    -> Result<RefusalKept, StoreError>;

    /// Starts a cancellation cascade on the resident's shared dose record
    /// (several processes on one Redis): `None` while a booking of any of
    /// the resident's doses is in flight; else no booking starts until
    /// `end_shared_cascade` (or the claim lease), and the answer is every
    /// dose the record holds, with the venue-day to check it against.
    async fn start_shared_cascade(
        &self,
        ticket: &TicketNumber,
    ) -> Result<Option<Vec<(Dose, VenueDayKey)>>, StoreError>;

    async fn end_shared_cascade(&self, ticket: &TicketNumber) -> Result<(), StoreError>;

    /// A cancelled reservation no longer holds its dose in the shared record.
    async fn forget_booked_dose(&self, cancelled: &Reservation) -> Result<(), StoreError>;

    /// The resident's active reservation of `dose` on a venue-day, as
    /// stored (read only: the day's owner is not changed).
    async fn active_reservation_on(
        &self,
        day: &VenueDayKey,
        ticket: &TicketNumber,
        dose: Dose,
    ) -> Result<Option<Reservation>, StoreError>;

    /// One login attempt of `ticket` (`matched`: the birth date was right)
    /// for the lockout every process on one Redis shares: answers how long
    /// the ticket's lock still runs if it was locked before this attempt.
    /// A mismatch is counted (`limits.failures` within `limits.window` lock
    /// it for `limits.lock`), a match clears the count.
    async fn login_attempt(
        &self,
        ticket: &TicketNumber,
        matched: bool,
        limits: LoginLimits,
    ) -> Result<Option<Duration>, StoreError>;

    /// How long the change streams keep an entry (see `CHANGES_KEPT_FOR`).
    fn changes_kept(&self) -> Duration;

    /// Where the change streams end now (see `ChangeCursor`).
    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError>;

    /// The changes after `after`, at most `CHANGES_READ_MAX` per stream.
    async fn read_changes(&self, after: &ChangeCursor) -> Result<ChangesRead, StoreError>;

    /// One reservation as its day stores it (read only: the day's owner is
    /// not changed); `None` when the day holds no such reservation.
    async fn stored_reservation(
        &self,
        day: &VenueDayKey,
        id: ReservationId,
    ) -> Result<Option<Reservation>, StoreError>;
}
