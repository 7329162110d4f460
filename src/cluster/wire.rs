//! What one process sends another for a venue-day it owns, and the answers:
//! serde types apart from `domain/`, like the store's records (and built
//! from them where one exists: reservations, plans, audit entries), so that
//! two releases side by side during a rolling restart agree on the format.
//! These bodies hold ticket numbers: they have no `Debug` and are never
//! logged.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::domain::{
    BookingError, BookingRequest, Channel, CheckInError, DayPlan, DayPlanError, Dose,
    FingerprintScheme, IdempotencyTag, IneligibleReason, Reservation, ReservationId, SlotTime,
    TicketNumber,
};
use crate::store::records::{AuditRecord, DayPlanV1, ReservationV1, Stored};
use crate::store::{AuditDraft, AuditEntry};

/// A wire body that does not make sense (a bug, or another release).
#[derive(Debug)]
pub struct Malformed(pub String);

/// `POST …/bookings`.
#[derive(Serialize, Deserialize)]
pub struct BookWire {
    pub ticket_number: String,
    pub time: String,
    pub dose: u8,
    pub access_code: Option<String>,
    /// `web` or `operator`.
    pub channel: String,
    pub now: DateTime<FixedOffset>,
    pub idempotency: Option<IdempotencyWire>,
    pub audit: Option<AuditRecord>,
    /// The resident gets mail (the owner applies its own mail settings).
    pub mail: bool,
    /// `BookingRequest::commit_by` (absent from a process before it).
    #[serde(default)]
    pub commit_by: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, Deserialize)]
pub struct IdempotencyWire {
    pub key: String,
    pub fingerprint: u64,
    /// `canonical` or `debug_text`.
    pub scheme: String,
}

/// `POST …/cancellations`.
#[derive(Serialize, Deserialize)]
pub struct CancelWire {
    pub reservation_id: String,
    pub owner: String,
    pub now: DateTime<FixedOffset>,
    pub audit: Option<AuditRecord>,
    /// With mail: the later doses the cascade cancelled before this one.
    pub notice: Option<Vec<ReservationV1>>,
}

/// `POST …/check-ins`.
#[derive(Serialize, Deserialize)]
pub struct CheckInWire {
    pub owner: String,
    pub now: DateTime<FixedOffset>,
    pub audit: Option<AuditRecord>,
}

/// `PUT …/plan`: the day's new plan.
pub type PlanWire = DayPlanV1;

/// The answer to `PUT …/plan`: was the day new, and its availability as the
/// owner published it (the caller publishes it too, so that the admin's
/// answer, and its process's reads, show the day at once).
#[derive(Serialize, Deserialize)]
pub struct PlanReplacedWire {
    pub created: bool,
    pub slots: Vec<SlotWire>,
}

#[derive(Serialize, Deserialize)]
pub struct SlotWire {
    pub time: String,
    pub capacity: u32,
    pub remaining: u32,
    pub held_open: u32,
}

impl From<&crate::domain::SlotAvailability> for SlotWire {
    fn from(slot: &crate::domain::SlotAvailability) -> Self {
        Self {
            time: slot.time.to_string(),
            capacity: slot.capacity,
            remaining: slot.remaining,
            held_open: slot.held_open,
        }
    }
}

impl SlotWire {
    pub fn into_slot(self) -> Result<crate::domain::SlotAvailability, Malformed> {
        Ok(crate::domain::SlotAvailability {
            time: SlotTime::parse(&self.time).map_err(|_| Malformed("slot time".into()))?,
            capacity: self.capacity,
            remaining: self.remaining,
            held_open: self.held_open,
        })
    }
}

/// An answer: the value, or the refusal as the owner decided it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer<T, E> {
    Ok(T),
    Refused(E),
}

/// A `BookingError`, by name.
#[derive(Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum BookingErrorWire {
    NotFound,
    SlotFull,
    AlreadyReserved,
    DirectBookingVenue,
    AccessCodeInvalid,
    NotEligible { reason: String },
    NotCancellable,
    ChangeInProgress,
    BookingClosed,
    Overloaded,
    StoreUnavailable,
    IdempotencyKeyInUse,
    NotOpenYet { opens_at: DateTime<FixedOffset> },
    BookingWindowClosed,
    IdempotencyKeyReused,
}

impl From<BookingError> for BookingErrorWire {
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::NotFound => Self::NotFound,
            BookingError::SlotFull => Self::SlotFull,
            BookingError::AlreadyReserved => Self::AlreadyReserved,
            BookingError::DirectBookingVenue => Self::DirectBookingVenue,
            BookingError::AccessCodeInvalid => Self::AccessCodeInvalid,
            BookingError::NotEligible(reason) => Self::NotEligible {
                reason: reason.as_str().to_owned(),
            },
            BookingError::NotCancellable => Self::NotCancellable,
            BookingError::ChangeInProgress => Self::ChangeInProgress,
            BookingError::BookingClosed => Self::BookingClosed,
            BookingError::Overloaded => Self::Overloaded,
            BookingError::StoreUnavailable => Self::StoreUnavailable,
            BookingError::IdempotencyKeyInUse => Self::IdempotencyKeyInUse,
            BookingError::NotOpenYet(opens_at) => Self::NotOpenYet { opens_at },
            BookingError::BookingWindowClosed => Self::BookingWindowClosed,
            BookingError::IdempotencyKeyReused => Self::IdempotencyKeyReused,
        }
    }
}

impl From<BookingErrorWire> for BookingError {
    fn from(error: BookingErrorWire) -> Self {
        match error {
            BookingErrorWire::NotFound => Self::NotFound,
            BookingErrorWire::SlotFull => Self::SlotFull,
            BookingErrorWire::AlreadyReserved => Self::AlreadyReserved,
            BookingErrorWire::DirectBookingVenue => Self::DirectBookingVenue,
            BookingErrorWire::AccessCodeInvalid => Self::AccessCodeInvalid,
            BookingErrorWire::NotEligible { reason } => IneligibleReason::ALL
                .into_iter()
                .find(|r| r.as_str() == reason)
                // Unknown to this release: still a refusal, of the commonest kind.
                .map_or(
                    Self::NotEligible(IneligibleReason::NotInTargetGroup),
                    Self::NotEligible,
                ),
            BookingErrorWire::NotCancellable => Self::NotCancellable,
            BookingErrorWire::ChangeInProgress => Self::ChangeInProgress,
            BookingErrorWire::BookingClosed => Self::BookingClosed,
            BookingErrorWire::Overloaded => Self::Overloaded,
            BookingErrorWire::StoreUnavailable => Self::StoreUnavailable,
            BookingErrorWire::IdempotencyKeyInUse => Self::IdempotencyKeyInUse,
            BookingErrorWire::NotOpenYet { opens_at } => Self::NotOpenYet(opens_at),
            BookingErrorWire::BookingWindowClosed => Self::BookingWindowClosed,
            BookingErrorWire::IdempotencyKeyReused => Self::IdempotencyKeyReused,
        }
    }
}

/// A `CheckInError`, by name.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckInErrorWire {
    InvalidCode,
    NoReservation,
    PriorDoseMissing,
    AlreadyAttended,
    StoreUnavailable,
    Overloaded,
}

impl From<CheckInError> for CheckInErrorWire {
    fn from(error: CheckInError) -> Self {
        match error {
            CheckInError::InvalidCode => Self::InvalidCode,
            CheckInError::NoReservation => Self::NoReservation,
            CheckInError::PriorDoseMissing => Self::PriorDoseMissing,
            CheckInError::AlreadyAttended => Self::AlreadyAttended,
            CheckInError::StoreUnavailable => Self::StoreUnavailable,
            CheckInError::Overloaded => Self::Overloaded,
        }
    }
}

impl From<CheckInErrorWire> for CheckInError {
    fn from(error: CheckInErrorWire) -> Self {
        match error {
            CheckInErrorWire::InvalidCode => Self::InvalidCode,
            CheckInErrorWire::NoReservation => Self::NoReservation,
            CheckInErrorWire::PriorDoseMissing => Self::PriorDoseMissing,
            CheckInErrorWire::AlreadyAttended => Self::AlreadyAttended,
            CheckInErrorWire::StoreUnavailable => Self::StoreUnavailable,
            CheckInErrorWire::Overloaded => Self::Overloaded,
        }
    }
}

/// A `DayPlanError`, by name.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayPlanErrorWire {
    CapacityBelowBooked,
    VaccineChangeWithBookings,
    StoreUnavailable,
    Overloaded,
}

impl From<DayPlanError> for DayPlanErrorWire {
    fn from(error: DayPlanError) -> Self {
        match error {
            DayPlanError::CapacityBelowBooked => Self::CapacityBelowBooked,
            DayPlanError::VaccineChangeWithBookings => Self::VaccineChangeWithBookings,
            DayPlanError::StoreUnavailable => Self::StoreUnavailable,
            DayPlanError::Overloaded => Self::Overloaded,
        }
    }
}

impl From<DayPlanErrorWire> for DayPlanError {
    fn from(error: DayPlanErrorWire) -> Self {
        match error {
            DayPlanErrorWire::CapacityBelowBooked => Self::CapacityBelowBooked,
            DayPlanErrorWire::VaccineChangeWithBookings => Self::VaccineChangeWithBookings,
            DayPlanErrorWire::StoreUnavailable => Self::StoreUnavailable,
            DayPlanErrorWire::Overloaded => Self::Overloaded,
        }
    }
}

fn channel_name(channel: Channel) -> &'static str {
    channel.as_str()
}

fn parse_channel(name: &str) -> Result<Channel, Malformed> {
    [Channel::Web, Channel::Operator]
        .into_iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| Malformed(format!("channel {name}")))
}

fn parse_ticket(text: &str) -> Result<TicketNumber, Malformed> {
    TicketNumber::parse(text).map_err(|_| Malformed("ticket number".into()))
}

/// The audit draft as an entry without a reservation (the owner completes it).
pub fn audit_to_wire(draft: &AuditDraft) -> AuditRecord {
    AuditEntry::new(
        draft.actor.clone(),
        draft.role,
        &draft.action,
        draft.target.clone(),
        draft.outcome_if_committed.to_string(),
    )
    .to_record()
}

pub fn audit_from_wire(record: AuditRecord) -> Result<AuditDraft, Malformed> {
    let entry = AuditEntry::from_record(record).map_err(Malformed)?;
    Ok(AuditDraft {
        actor: entry.actor,
        role: entry.role,
        action: entry.action.into(),
        target: entry.target,
        outcome_if_committed: entry.outcome.into(),
    })
}

impl BookWire {
    pub fn new(request: &BookingRequest, audit: Option<&AuditDraft>, mail: bool) -> Self {
        Self {
            ticket_number: request.ticket_number.expose().to_owned(),
            time: request.time.to_string(),
            dose: request.dose.number(),
            access_code: request.access_code.clone(),
            channel: channel_name(request.channel).to_owned(),
            now: request.now,
            idempotency: request.idempotency.as_ref().map(|tag| IdempotencyWire {
                key: tag.key.clone(),
                fingerprint: tag.fingerprint,
                scheme: match tag.scheme {
                    FingerprintScheme::Canonical => "canonical",
                    FingerprintScheme::DebugText => "debug_text",
                }
                .to_owned(),
            }),
            audit: audit.map(audit_to_wire),
            mail,
            commit_by: request.commit_by,
        }
    }

    pub fn request(&self) -> Result<BookingRequest, Malformed> {
        Ok(BookingRequest {
            ticket_number: parse_ticket(&self.ticket_number)?,
            time: SlotTime::parse(&self.time).map_err(|_| Malformed("time".into()))?,
            dose: Dose::new(self.dose).map_err(|_| Malformed("dose".into()))?,
            access_code: self.access_code.clone(),
            channel: parse_channel(&self.channel)?,
            now: self.now,
            commit_by: self.commit_by,
            idempotency: match &self.idempotency {
                None => None,
                Some(tag) => Some(IdempotencyTag {
                    key: tag.key.clone(),
                    fingerprint: tag.fingerprint,
                    scheme: match tag.scheme.as_str() {
                        "canonical" => FingerprintScheme::Canonical,
                        "debug_text" => FingerprintScheme::DebugText,
                        other => return Err(Malformed(format!("fingerprint scheme {other}"))),
                    },
                }),
            },
        })
    }
}

impl CancelWire {
    pub fn new(
        reservation_id: ReservationId,
        owner: &TicketNumber,
        now: DateTime<FixedOffset>,
        audit: Option<&AuditDraft>,
        notice: Option<&[Reservation]>,
    ) -> Self {
        Self {
            reservation_id: reservation_id.to_string(),
            owner: owner.expose().to_owned(),
            now,
            audit: audit.map(audit_to_wire),
            notice: notice.map(|also| also.iter().map(Stored::to_record).collect()),
        }
    }

    pub fn reservation_id(&self) -> Result<ReservationId, Malformed> {
        ReservationId::parse(&self.reservation_id).ok_or_else(|| Malformed("reservation id".into()))
    }

    pub fn owner(&self) -> Result<TicketNumber, Malformed> {
        parse_ticket(&self.owner)
    }
}

impl CheckInWire {
    pub fn owner(&self) -> Result<TicketNumber, Malformed> {
        parse_ticket(&self.owner)
    }
}

pub fn reservation_from_wire(record: ReservationV1) -> Result<Reservation, Malformed> {
    Reservation::from_record(record).map_err(Malformed)
}

pub fn plan_from_wire(record: PlanWire) -> Result<DayPlan, Malformed> {
    DayPlan::from_record(record).map_err(Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_booking_refusal_crosses_the_wire_unchanged() {
        let opens = chrono::DateTime::parse_from_rfc3339("2027-03-01T09:00:00+09:00").unwrap();
        let mut all = vec![
            BookingError::NotFound,
            BookingError::SlotFull,
            BookingError::AlreadyReserved,
            BookingError::DirectBookingVenue,
            BookingError::AccessCodeInvalid,
            BookingError::NotCancellable,
            BookingError::ChangeInProgress,
            BookingError::BookingClosed,
            BookingError::Overloaded,
            BookingError::StoreUnavailable,
            BookingError::IdempotencyKeyInUse,
            BookingError::NotOpenYet(opens),
            BookingError::BookingWindowClosed,
            BookingError::IdempotencyKeyReused,
        ];
        all.extend(IneligibleReason::ALL.map(BookingError::NotEligible));
        for error in all {
            let json = serde_json::to_string(&BookingErrorWire::from(error)).unwrap();
            let back: BookingErrorWire = serde_json::from_str(&json).unwrap();
            assert_eq!(BookingError::from(back), error, "{json}");
        }
    }
}
