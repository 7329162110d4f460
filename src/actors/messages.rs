//! Messages to the actors. Each carries its own reply channel, so that the
//! sender can use `try_send` (bounded, never waits) and still get an answer
//! after the commit.

use actix::Message;
use chrono::{DateTime, FixedOffset};
use tokio::sync::oneshot;

use crate::domain::{
    BookingError, BookingRequest, CheckInError, DayPlan, DayPlanError, MailPolicy, Reservation,
    ReservationId, TicketNumber,
};
use crate::residents::DoseClaim;
use crate::store::{AuditDraft, AuditEntry, KillSwitchState, StoreError};

/// Book a place; answered after the commit.
pub struct Book {
    pub request: BookingRequest,
    /// The resident's claim on the dose: settled on commit, released if dropped.
    pub claim: DoseClaim,
    /// Committed with the reservation when the booking is audited.
    pub audit: Option<AuditDraft>,
    /// The mail it leaves (confirmation, reminder): `None` when mail is off
    /// or the resident has no address.
    pub mail: Option<MailPolicy>,
    pub reply: oneshot::Sender<Result<Reservation, BookingError>>,
}

impl Message for Book {
    type Result = ();
}

/// Cancel the owner's booked reservation; answered after the commit.
pub struct Cancel {
    pub reservation_id: ReservationId,
    pub owner: TicketNumber,
    pub now: DateTime<FixedOffset>,
    /// Committed with the cancellation when it is audited.
    pub audit: Option<AuditDraft>,
    /// The cancel call's one mail, committed with the asked-for reservation's
    /// cancellation (the last of a cascade).
    pub notice: Option<CancelNotice>,
    pub reply: oneshot::Sender<Result<Reservation, BookingError>>,
}

/// Queue the day's reminders (its reminder moment has passed): one mail for
/// each booked reservation whose resident has an address, and the day marked
/// reminded, in one commit; a day already reminded queues nothing. Answers
/// how many were queued.
pub struct QueueReminders {
    pub policy: MailPolicy,
    pub now: DateTime<FixedOffset>,
    pub reply: oneshot::Sender<Result<usize, StoreError>>,
}

impl Message for QueueReminders {
    type Result = ();
}

/// What the mail of a cancel call lists besides the asked-for reservation.
pub struct CancelNotice {
    pub policy: MailPolicy,
    /// The later doses the cascade cancelled before it.
    pub also_cancelled: Vec<Reservation>,
}

impl Message for Cancel {
    type Result = ();
}

/// Check the owner in: their booked reservation of the day becomes attended.
/// Committed even while the kill switch is engaged (it stops booking, not
/// vaccination).
pub struct CheckIn {
    pub owner: TicketNumber,
    pub now: DateTime<FixedOffset>,
    pub audit: Option<AuditDraft>,
    pub reply: oneshot::Sender<Result<Reservation, CheckInError>>,
}

impl Message for CheckIn {
    type Result = ();
}

/// Replace the day's plan; answers whether the day was new.
pub struct ReplaceDayPlan {
    pub plan: DayPlan,
    pub reply: oneshot::Sender<Result<bool, DayPlanError>>,
}

impl Message for ReplaceDayPlan {
    type Result = ();
}

/// Change the kill switch; answered once the store holds the new state.
pub struct SetKillSwitch {
    pub state: KillSwitchState,
    /// Written with the state, in the same store write.
    pub audit: AuditEntry,
    pub reply: oneshot::Sender<Result<KillSwitchState, StoreError>>,
}

impl Message for SetKillSwitch {
    type Result = ();
}

/// Every reservation of the day, for its roster.
pub struct ListReservations {
    pub reply: oneshot::Sender<Vec<Reservation>>,
}

impl Message for ListReservations {
    type Result = ();
}

/// The day is another process's now (the live members changed): stop, unless
/// something is in flight (then the actor stops when idle, or when the new
/// owner fences it).
pub struct Retire;

impl Message for Retire {
    type Result = ();
}

/// The store changed the day under `owner_epoch` (a batch followed from the
/// change streams): an actor that loaded it under an earlier epoch holds a
/// stale day, and stops as `Retire` says.
pub struct Superseded {
    pub owner_epoch: u64,
}

impl Message for Superseded {
    type Result = ();
}
