//! What one process sends another for a venue-day it owns, and the answers:
//! serde types apart from `domain/`, so that two releases side by side
//! during a rolling restart agree on the format.
//!
//! - Requests (`BookWire`, `CancelWire`, `CheckInWire`) and refusals are
//!   this module's own types. A refusal crosses as its code from the one
//!   table (`crate::codes`): a booking refusal with the data the code does
//!   not carry (`BookingRefusalWire`), a check-in or plan refusal as the
//!   bare `ErrorCode`.
//! - A reservation, a day's plan and an audit entry cross in the form the
//!   store keeps them (`store::records`), on purpose: the owner answers with
//!   the record it committed, which every other process also reads from the
//!   store when it follows the day, so a forwarded answer and a followed
//!   change cannot disagree. Those records change only by a new `…V2` whose
//!   decoder reads `V1`, the rule the wire needs too, and `tests::golden`
//!   pins the bytes of each, so that a change to a record that would change
//!   the wire fails here and has to be made on purpose.
//!
//! These bodies hold ticket numbers: they have no `Debug` and are never
//! logged.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::codes::{BookingRefusal, ErrorCode};
use crate::domain::{
    BookingError, BookingRequest, Channel, DayPlan, Dose, FingerprintScheme, IdempotencyTag,
    Reservation, ReservationId, SlotTime, TicketNumber,
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

/// A booking refusal as the owner decided it: its code (`crate::codes`),
/// and the data the code alone does not carry. Check-in and plan refusals
/// cross as their bare `ErrorCode`.
#[derive(Serialize, Deserialize)]
pub struct BookingRefusalWire {
    pub error: ErrorCode,
    /// `not_eligible`'s reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `not_open_yet`'s opening time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<FixedOffset>>,
}

impl From<BookingError> for BookingRefusalWire {
    fn from(error: BookingError) -> Self {
        let named = BookingRefusal::from(error);
        Self {
            error: named.code,
            reason: named.reason.map(|reason| reason.as_str().to_owned()),
            opens_at: named.opens_at,
        }
    }
}

impl BookingRefusalWire {
    /// The refusal; `None` when the code is not a booking refusal or lacks
    /// its data (a bug, or another release).
    pub fn error(&self) -> Option<BookingError> {
        BookingRefusal::new(self.error, self.reason.as_deref(), self.opens_at).error()
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

    /// What one process sends another today, byte for byte: a rolling
    /// restart runs two releases side by side, so a change here must be a
    /// deliberate new version, never an accident of a refactor.
    mod golden {
        use super::*;
        use crate::codes::CodedRefusal;
        use crate::domain::{
            BookingError, CheckInError, DayPlanError, IneligibleReason, ReservationStatus,
            SlotAvailability, SlotPlan, Vaccine, VenueId, parse_date,
        };

        fn at(text: &str) -> DateTime<FixedOffset> {
            DateTime::parse_from_rfc3339(text).unwrap()
        }

        fn reservation() -> Reservation {
            Reservation {
                id: ReservationId::parse("5f0c8d1e-2b7a-4c3e-9d41-0a6b8e2f7c15").unwrap(),
                ticket_number: TicketNumber::parse("1311480001").unwrap(),
                venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
                date: parse_date("2027-03-02").unwrap(),
                time: SlotTime::parse("10:30").unwrap(),
                dose: Dose::new(2).unwrap(),
                vaccine: Vaccine::Pfizer,
                status: ReservationStatus::Booked,
                channel: Channel::Operator,
                created_at: at("2027-03-01T09:00:01+09:00"),
                updated_at: at("2027-03-01T09:00:02+09:00"),
                idempotency: Some(IdempotencyTag {
                    key: "k-1".into(),
                    fingerprint: 0x0123_4567_89ab_cdef,
                    scheme: FingerprintScheme::Canonical,
                }),
            }
        }

        fn json(value: &impl Serialize) -> String {
            serde_json::to_string(value).unwrap()
        }

        #[test]
        fn booking_refusals() {
            let opens = at("2027-03-01T09:00:00+09:00");
            let cases = [
                (BookingError::NotFound, r#"{"error":"not_found"}"#),
                (BookingError::SlotFull, r#"{"error":"slot_full"}"#),
                (
                    BookingError::AlreadyReserved,
                    r#"{"error":"already_reserved"}"#,
                ),
                (
                    BookingError::DirectBookingVenue,
                    r#"{"error":"direct_booking_venue"}"#,
                ),
                (
                    BookingError::AccessCodeInvalid,
                    r#"{"error":"access_code_invalid"}"#,
                ),
                (
                    BookingError::NotEligible(IneligibleReason::TooEarly),
                    r#"{"error":"not_eligible","reason":"too_early"}"#,
                ),
                (
                    BookingError::NotCancellable,
                    r#"{"error":"not_cancellable"}"#,
                ),
                (
                    BookingError::ChangeInProgress,
                    r#"{"error":"change_in_progress"}"#,
                ),
                (BookingError::BookingClosed, r#"{"error":"booking_closed"}"#),
                (BookingError::Overloaded, r#"{"error":"overloaded"}"#),
                (
                    BookingError::StoreUnavailable,
                    r#"{"error":"store_unavailable"}"#,
                ),
                (
                    BookingError::IdempotencyKeyInUse,
                    r#"{"error":"idempotency_key_in_use"}"#,
                ),
                (
                    BookingError::NotOpenYet(opens),
                    r#"{"error":"not_open_yet","opens_at":"2027-03-01T09:00:00+09:00"}"#,
                ),
                (
                    BookingError::BookingWindowClosed,
                    r#"{"error":"booking_window_closed"}"#,
                ),
                (
                    BookingError::IdempotencyKeyReused,
                    r#"{"error":"idempotency_key_reused"}"#,
                ),
                (BookingError::SlotStarted, r#"{"error":"slot_started"}"#),
            ];
            for (error, expected) in cases {
                assert_eq!(json(&BookingRefusalWire::from(error)), expected);
                let back: BookingRefusalWire = serde_json::from_str(expected).unwrap();
                assert_eq!(back.error(), Some(error), "{expected}");
            }
        }

        #[test]
        fn check_in_and_plan_refusals() {
            let check_ins = [
                (CheckInError::InvalidCode, r#""invalid_code""#),
                (CheckInError::NoReservation, r#""no_reservation""#),
                (CheckInError::PriorDoseMissing, r#""prior_dose_missing""#),
                (CheckInError::AlreadyAttended, r#""already_attended""#),
                (CheckInError::StoreUnavailable, r#""store_unavailable""#),
                (CheckInError::Overloaded, r#""overloaded""#),
            ];
            for (error, expected) in check_ins {
                assert_eq!(json(&ErrorCode::from(error)), expected);
                let back: ErrorCode = serde_json::from_str(expected).unwrap();
                assert_eq!(CheckInError::from_code(back), Some(error));
            }
            let plans = [
                (
                    DayPlanError::CapacityBelowBooked,
                    r#""capacity_below_booked""#,
                ),
                (
                    DayPlanError::VaccineChangeWithBookings,
                    r#""vaccine_change_with_bookings""#,
                ),
                (DayPlanError::StoreUnavailable, r#""store_unavailable""#),
                (DayPlanError::Overloaded, r#""overloaded""#),
            ];
            for (error, expected) in plans {
                assert_eq!(json(&ErrorCode::from(error)), expected);
                let back: ErrorCode = serde_json::from_str(expected).unwrap();
                assert_eq!(DayPlanError::from_code(back), Some(error));
            }
        }

        #[test]
        fn answers() {
            let refused: Answer<ReservationV1, BookingRefusalWire> =
                Answer::Refused(BookingError::SlotFull.into());
            assert_eq!(json(&refused), r#"{"refused":{"error":"slot_full"}}"#);
            let booked: Answer<ReservationV1, BookingRefusalWire> =
                Answer::Ok(reservation().to_record());
            assert_eq!(
                json(&booked),
                r#"{"ok":{"id":"5f0c8d1e-2b7a-4c3e-9d41-0a6b8e2f7c15","ticket_number":"1311480001","venue_id":"nakano-sunplaza","date":"2027-03-02","time":"10:30","dose":2,"vaccine":"pfizer","status":"booked","channel":"operator","created_at":"2027-03-01T09:00:01+09:00","updated_at":"2027-03-01T09:00:02+09:00","idempotency":{"key":"k-1","fingerprint":81985529216486895,"scheme":"canonical"}}}"#
            );
            let replaced: Answer<PlanReplacedWire, ErrorCode> = Answer::Ok(PlanReplacedWire {
                created: true,
                slots: vec![SlotWire::from(&SlotAvailability {
                    time: SlotTime::parse("09:00").unwrap(),
                    capacity: 20,
                    remaining: 18,
                    held_open: 2,
                })],
            });
            assert_eq!(
                json(&replaced),
                r#"{"ok":{"created":true,"slots":[{"time":"09:00","capacity":20,"remaining":18,"held_open":2}]}}"#
            );
        }

        /// An operator's booking carries its audit entry to the owner.
        #[test]
        fn an_audit_entry() {
            let r = reservation();
            let entry = AuditEntry {
                id: 7,
                at: at("2027-03-01T09:00:00.123456+09:00"),
                actor: crate::domain::Actor::Account(
                    crate::domain::AccountId::parse("op-1").unwrap(),
                ),
                role: crate::domain::Role::Operator,
                action: "operator.book".into(),
                target: crate::store::AuditTarget {
                    venue_id: Some(r.venue_id.clone()),
                    date: Some(r.date),
                    reservation_id: None,
                    ticket_number: Some(r.ticket_number),
                    account_id: None,
                },
                outcome: "201 ok".into(),
                detail: None,
            };
            assert_eq!(
                json(&entry.to_record()),
                r#"{"v":2,"id":7,"at":"2027-03-01T09:00:00.123456+09:00","actor":"account:op-1","role":"operator","action":"operator.book","target":{"venue_id":"nakano-sunplaza","date":"2027-03-02","ticket_number":"1311480001"},"outcome":"201 ok"}"#
            );
            let back = audit_from_wire(serde_json::from_str(&json(&entry.to_record())).unwrap());
            assert!(back.is_ok(), "the owner reads it");
        }

        #[test]
        fn requests() {
            let r = reservation();
            let request = BookingRequest {
                ticket_number: r.ticket_number,
                time: r.time,
                dose: r.dose,
                access_code: Some("secret".into()),
                channel: Channel::Operator,
                now: at("2027-03-01T09:00:00+09:00"),
                commit_by: Some(at("2027-03-01T00:00:08+00:00").to_utc()),
                idempotency: r.idempotency.clone(),
            };
            assert_eq!(
                json(&BookWire::new(&request, None, true)),
                r#"{"ticket_number":"1311480001","time":"10:30","dose":2,"access_code":"secret","channel":"operator","now":"2027-03-01T09:00:00+09:00","idempotency":{"key":"k-1","fingerprint":81985529216486895,"scheme":"canonical"},"audit":null,"mail":true,"commit_by":"2027-03-01T00:00:08Z"}"#
            );
            let cancel = CancelWire::new(
                r.id,
                &r.ticket_number,
                at("2027-03-01T10:00:00+09:00"),
                None,
                Some(std::slice::from_ref(&r)),
            );
            assert_eq!(
                json(&cancel),
                r#"{"reservation_id":"5f0c8d1e-2b7a-4c3e-9d41-0a6b8e2f7c15","owner":"1311480001","now":"2027-03-01T10:00:00+09:00","audit":null,"notice":[{"id":"5f0c8d1e-2b7a-4c3e-9d41-0a6b8e2f7c15","ticket_number":"1311480001","venue_id":"nakano-sunplaza","date":"2027-03-02","time":"10:30","dose":2,"vaccine":"pfizer","status":"booked","channel":"operator","created_at":"2027-03-01T09:00:01+09:00","updated_at":"2027-03-01T09:00:02+09:00","idempotency":{"key":"k-1","fingerprint":81985529216486895,"scheme":"canonical"}}]}"#
            );
            let check_in = CheckInWire {
                owner: r.ticket_number.expose().to_owned(),
                now: at("2027-03-02T10:31:00+09:00"),
                audit: None,
            };
            assert_eq!(
                json(&check_in),
                r#"{"owner":"1311480001","now":"2027-03-02T10:31:00+09:00","audit":null}"#
            );
            let plan = DayPlan::new(
                Vaccine::Moderna,
                vec![SlotPlan {
                    time: SlotTime::parse("09:00").unwrap(),
                    capacity: 20,
                    operator_hold: 2,
                }],
                None,
            )
            .unwrap();
            assert_eq!(
                json(&plan.to_record()),
                r#"{"vaccine":"moderna","slots":[{"time":"09:00","capacity":20,"operator_hold":2}],"access_code":null}"#
            );
        }
    }
}
