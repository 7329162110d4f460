//! Domain errors. `api/codes.rs` maps each to its stable wire code and HTTP
//! status; none carries personal data.

use thiserror::Error;

/// A value that does not have the shape the contract asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("venue_id must be 1–64 characters of a-z, 0-9 and '-'")]
    InvalidVenueId,
    #[error("ticket_number must be exactly 10 digits")]
    InvalidTicketNumber,
    #[error("birth_date must be a real date, YYYY-MM-DD, not in the future")]
    InvalidBirthDate,
    #[error("vaccine must be \"pfizer\" or \"moderna\"")]
    InvalidVaccine,
    #[error("dose must be an integer from 1 to 9")]
    InvalidDose,
    #[error("time must be HH:MM (24 h)")]
    InvalidTime,
    #[error("date must be YYYY-MM-DD (a venue-day's within 400 days of today)")]
    InvalidDate,
    #[error(
        "{field} is empty, too long, or holds a control character (line break, tab, bidi control)"
    )]
    InvalidText { field: &'static str },
    #[error("the dose history must list doses 1, 2, … in order, with dates that do not go back")]
    InvalidHistory,
    #[error("slots must have distinct times and capacities from 1 to the limit")]
    InvalidSlots,
    #[error("access_code must be 1–64 visible ASCII characters, or null")]
    InvalidAccessCode,
    #[error("the day's vaccine is not one the venue offers")]
    VaccineNotOffered,
    #[error(
        "opens_at, closes_at and hold_release_at must be RFC 3339 instants, closes_at after opens_at"
    )]
    InvalidWindow,
    #[error("account_id must be 1–64 characters of a-z, 0-9 and '-'")]
    InvalidAccountId,
    #[error("role must be \"operator\", \"staff\", \"sre\" or \"admin\"")]
    InvalidRole,
    #[error("venues: only a staff account may be limited to venues, to 1–100 known venue ids")]
    InvalidVenues,
}

impl DomainError {
    /// The member a text error names (`field` of `400 invalid_text`).
    pub fn field(self) -> Option<&'static str> {
        match self {
            Self::InvalidText { field } => Some(field),
            _ => None,
        }
    }
}

/// Why a booking or cancellation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BookingError {
    #[error("no such venue, day, slot or reservation")]
    NotFound,
    #[error("this slot is fully booked")]
    SlotFull,
    #[error("an active reservation for this dose already exists")]
    AlreadyReserved,
    #[error("this venue takes bookings directly: please call the clinic")]
    DirectBookingVenue,
    #[error("this day needs a valid access code")]
    AccessCodeInvalid,
    #[error("not eligible for this booking")]
    NotEligible(IneligibleReason),
    #[error("only booked reservations can be cancelled")]
    NotCancellable,
    #[error("another booking or cancellation for this resident is in progress: retry shortly")]
    ChangeInProgress,
    #[error("booking is closed for now")]
    BookingClosed,
    #[error("too many requests at once: please retry shortly")]
    Overloaded,
    #[error("the store did not accept the change: nothing was saved, please retry")]
    StoreUnavailable,
    #[error("a request with this Idempotency-Key is still being answered: retry shortly")]
    IdempotencyKeyInUse,
    #[error("booking for this day has not opened yet")]
    NotOpenYet(chrono::DateTime<chrono::FixedOffset>),
    #[error("booking for this day has closed")]
    BookingWindowClosed,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("this slot has already started")]
    SlotStarted,
}

/// The `reason` member of a `422 not_eligible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IneligibleReason {
    TooEarly,
    TooYoung,
    WrongVaccine,
    NoPriorDose,
    NotInTargetGroup,
    Completed,
    PastDate,
}

impl IneligibleReason {
    pub const ALL: [IneligibleReason; 7] = [
        IneligibleReason::TooEarly,
        IneligibleReason::TooYoung,
        IneligibleReason::WrongVaccine,
        IneligibleReason::NoPriorDose,
        IneligibleReason::NotInTargetGroup,
        IneligibleReason::Completed,
        IneligibleReason::PastDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooEarly => "too_early",
            Self::TooYoung => "too_young",
            Self::WrongVaccine => "wrong_vaccine",
            Self::NoPriorDose => "no_prior_dose",
            Self::NotInTargetGroup => "not_in_target_group",
            Self::Completed => "completed",
            Self::PastDate => "past_date",
        }
    }
}

/// Why a check-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CheckInError {
    #[error("the code is not this municipality's ticket")]
    InvalidCode,
    #[error("no venue-day here, or no reservation booked for this ticket on it")]
    NoReservation,
    #[error("this dose's previous dose is not in the history: do not vaccinate, check the history")]
    PriorDoseMissing,
    #[error("this reservation is already checked in")]
    AlreadyAttended,
    #[error("the store did not accept the change: nothing was saved, please retry")]
    StoreUnavailable,
    #[error("too many requests at once: please retry shortly")]
    Overloaded,
}

/// Why a day's new plan was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DayPlanError {
    #[error("the new plan drops a slot or lowers a capacity below what is already booked")]
    CapacityBelowBooked,
    #[error("the day has reservations for its vaccine: cancel them before changing the vaccine")]
    VaccineChangeWithBookings,
    #[error("the store did not accept the change: nothing was saved, please retry")]
    StoreUnavailable,
    #[error("too many requests at once: please retry shortly")]
    Overloaded,
}
