//! Every error `code` vaxslot answers with, in one table: its name, HTTP
//! status, problem `title` and `Retry-After`. Everything that names a
//! refusal reads it: the API's problem answers (`api::problem`), the wire
//! between processes (`cluster::wire`), the refusals kept for an
//! `Idempotency-Key` (`store::records::RefusalV1`), the metrics' `outcome`
//! labels (`telemetry`) and the status document's refusal figures
//! (`recent`). Nothing else spells a code as a string. Clients branch on
//! the code (docs: "Errors").

use chrono::{DateTime, FixedOffset};

use crate::domain::{BookingError, CheckInError, DayPlanError, DomainError, IneligibleReason};

/// Seconds a client should wait after `503 booking_closed`.
pub const RETRY_AFTER_BOOKING_CLOSED_S: u32 = 60;
/// Seconds a client should wait after `503 overloaded` (and other "retry shortly" answers).
pub const RETRY_AFTER_OVERLOADED_S: u32 = 1;
/// Seconds a client should wait after `503 store_unavailable`.
pub const RETRY_AFTER_STORE_UNAVAILABLE_S: u32 = 5;

macro_rules! error_codes {
    ($($variant:ident: $code:literal, $status:literal, $title:literal, $retry_after:expr;)*) => {
        /// A stable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `code` member, as clients see it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                }
            }

            /// The problem document's `title`.
            pub const fn title(self) -> &'static str {
                match self {
                    $(Self::$variant => $title,)*
                }
            }

            /// The `Retry-After` header in seconds, for answers worth retrying.
            pub const fn retry_after_s(self) -> Option<u32> {
                match self {
                    $(Self::$variant => $retry_after,)*
                }
            }
        }
    };
}

error_codes! {
    // Requests that cannot be read.
    InvalidJson: "invalid_json", 400, "Malformed request body", None;
    InvalidQuery: "invalid_query", 400, "Malformed query", None;
    InvalidIdempotencyKey: "invalid_idempotency_key", 400, "Malformed Idempotency-Key", None;
    InvalidRecord: "invalid_record", 400, "Malformed record", None;
    PayloadTooLarge: "payload_too_large", 413, "Request body too large", None;
    RequestTimeout: "request_timeout", 408, "Request body too slow", None;
    TooManyRecords: "too_many_records", 413, "Too many records", None;
    UnsupportedMediaType: "unsupported_media_type", 415, "Unsupported content type", None;
    // Fields that do not have the contract's shape.
    InvalidVenueId: "invalid_venue_id", 400, "Invalid venue_id", None;
    InvalidTicketNumber: "invalid_ticket_number", 400, "Invalid ticket_number", None;
    InvalidBirthDate: "invalid_birth_date", 400, "Invalid birth_date", None;
    InvalidVaccine: "invalid_vaccine", 400, "Invalid vaccine", None;
    InvalidDose: "invalid_dose", 400, "Invalid dose", None;
    InvalidTime: "invalid_time", 400, "Invalid time", None;
    InvalidDate: "invalid_date", 400, "Invalid date", None;
    InvalidText: "invalid_text", 400, "Invalid text field", None;
    InvalidHighRisk: "invalid_high_risk", 400, "Invalid high_risk", None;
    InvalidHistory: "invalid_history", 400, "Invalid dose history", None;
    InvalidSlots: "invalid_slots", 400, "Invalid slots", None;
    InvalidAccessCode: "invalid_access_code", 400, "Invalid access_code", None;
    InvalidAccountId: "invalid_account_id", 400, "Invalid account_id", None;
    InvalidRole: "invalid_role", 400, "Invalid role", None;
    InvalidVenues: "invalid_venues", 400, "Invalid venues", None;
    VaccineNotOffered: "vaccine_not_offered", 422, "Vaccine not offered by this venue", None;
    // Who is asking.
    Unauthorized: "unauthorized", 401, "Authentication required", None;
    InvalidCredentials: "invalid_credentials", 401, "Ticket number or birth date is wrong", None;
    Forbidden: "forbidden", 403, "Not allowed for this role", None;
    TooManyAttempts: "too_many_attempts", 429, "Too many attempts", None;
    // What is asked for.
    NotFound: "not_found", 404, "Not found", None;
    MethodNotAllowed: "method_not_allowed", 405, "Method not allowed", None;
    // Booking and cancelling.
    SlotFull: "slot_full", 409, "Slot is full", None;
    AlreadyReserved: "already_reserved", 409, "Dose already reserved", None;
    DirectBookingVenue: "direct_booking_venue", 409, "Venue books directly", None;
    AccessCodeInvalid: "access_code_invalid", 403, "Access code invalid", None;
    NotEligible: "not_eligible", 422, "Not eligible", None;
    NotCancellable: "not_cancellable", 409, "Reservation cannot be cancelled", None;
    ChangeInProgress: "change_in_progress", 409, "Another change is in progress", Some(RETRY_AFTER_OVERLOADED_S);
    IdempotencyKeyInUse: "idempotency_key_in_use", 409, "Idempotency key in use", Some(RETRY_AFTER_OVERLOADED_S);
    IdempotencyKeyReused: "idempotency_key_reused", 422, "Idempotency key reused", None;
    NotOpenYet: "not_open_yet", 409, "Booking has not opened yet", Some(RETRY_AFTER_OVERLOADED_S);
    BookingWindowClosed: "booking_window_closed", 409, "Booking has closed for this day", None;
    SlotStarted: "slot_started", 409, "Slot has started", None;
    InvalidWindow: "invalid_window", 400, "Invalid booking window", None;
    // Check-in.
    InvalidCode: "invalid_code", 400, "Not this municipality's code", None;
    NoReservation: "no_reservation", 404, "No reservation here today", None;
    PriorDoseMissing: "prior_dose_missing", 409, "Previous dose missing", None;
    AlreadyAttended: "already_attended", 409, "Already checked in", None;
    // Admin changes.
    CapacityBelowBooked: "capacity_below_booked", 409, "Capacity below booked", None;
    VaccineChangeWithBookings: "vaccine_change_with_bookings", 409, "Day has bookings for its vaccine", None;
    TooManyVenues: "too_many_venues", 409, "Too many venues", None;
    TooManyResidents: "too_many_residents", 409, "Too many residents", None;
    TooManyAccounts: "too_many_accounts", 409, "Too many accounts", None;
    // The service cannot serve it now.
    BookingClosed: "booking_closed", 503, "Booking is closed", Some(RETRY_AFTER_BOOKING_CLOSED_S);
    Overloaded: "overloaded", 503, "Too busy, retry shortly", Some(RETRY_AFTER_OVERLOADED_S);
    StoreUnavailable: "store_unavailable", 503, "Storage unavailable", Some(RETRY_AFTER_STORE_UNAVAILABLE_S);
    InternalError: "internal_error", 500, "Internal error", None;
}

impl ErrorCode {
    /// The code named `name`, as `as_str` writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == name)
    }
}

/// On the wire and in stored records a code is its name.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format_args!("unknown error code {name}")))
    }
}

/// A refusal without data of its own, told by its code alone: the way back
/// from a code (read from the wire) to the domain's error.
pub trait CodedRefusal: Copy + Into<ErrorCode> + 'static {
    /// Every value. A value missing here cannot cross between processes:
    /// `codes::tests` checks each list against the enum's variants.
    const ALL: &'static [Self];

    /// The refusal `code` names, if it is one of these.
    fn from_code(code: ErrorCode) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|refusal| (*refusal).into() == code)
    }
}

impl CodedRefusal for CheckInError {
    const ALL: &'static [Self] = &[
        CheckInError::InvalidCode,
        CheckInError::NoReservation,
        CheckInError::PriorDoseMissing,
        CheckInError::AlreadyAttended,
        CheckInError::StoreUnavailable,
        CheckInError::Overloaded,
    ];
}

impl CodedRefusal for DayPlanError {
    const ALL: &'static [Self] = &[
        DayPlanError::CapacityBelowBooked,
        DayPlanError::VaccineChangeWithBookings,
        DayPlanError::StoreUnavailable,
        DayPlanError::Overloaded,
    ];
}

/// The booking refusals told by their code alone (`not_eligible` and
/// `not_open_yet` carry data too: `BookingRefusal`).
const PLAIN_BOOKING_REFUSALS: &[BookingError] = &[
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
    BookingError::BookingWindowClosed,
    BookingError::IdempotencyKeyReused,
    BookingError::SlotStarted,
];

/// A booking refusal as its code names it, with the data the code alone does
/// not carry: the form the wire and the store's kept refusals both write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookingRefusal {
    pub code: ErrorCode,
    /// `not_eligible`'s reason.
    pub reason: Option<IneligibleReason>,
    /// `not_open_yet`'s opening time.
    pub opens_at: Option<DateTime<FixedOffset>>,
}

impl From<BookingError> for BookingRefusal {
    fn from(error: BookingError) -> Self {
        Self {
            code: error.into(),
            reason: match error {
                BookingError::NotEligible(reason) => Some(reason),
                _ => None,
            },
            opens_at: match error {
                BookingError::NotOpenYet(opens_at) => Some(opens_at),
                _ => None,
            },
        }
    }
}

impl BookingRefusal {
    /// Reads a refusal whose reason came by name. A reason this release
    /// does not know reads as `not_in_target_group`: still a refusal, of the
    /// commonest kind.
    pub fn new(
        code: ErrorCode,
        reason: Option<&str>,
        opens_at: Option<DateTime<FixedOffset>>,
    ) -> Self {
        let reason = reason.map(|name| {
            IneligibleReason::ALL
                .into_iter()
                .find(|r| r.as_str() == name)
                .unwrap_or(IneligibleReason::NotInTargetGroup)
        });
        Self {
            code,
            reason,
            opens_at,
        }
    }

    /// The domain's refusal; `None` when the code is not a booking refusal
    /// or lacks its data.
    pub fn error(&self) -> Option<BookingError> {
        match self.code {
            ErrorCode::NotEligible => self.reason.map(BookingError::NotEligible),
            ErrorCode::NotOpenYet => self.opens_at.map(BookingError::NotOpenYet),
            code => PLAIN_BOOKING_REFUSALS
                .iter()
                .copied()
                .find(|error| ErrorCode::from(*error) == code),
        }
    }
}

impl From<DomainError> for ErrorCode {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::InvalidVenueId => Self::InvalidVenueId,
            DomainError::InvalidTicketNumber => Self::InvalidTicketNumber,
            DomainError::InvalidBirthDate => Self::InvalidBirthDate,
            DomainError::InvalidVaccine => Self::InvalidVaccine,
            DomainError::InvalidDose => Self::InvalidDose,
            DomainError::InvalidTime => Self::InvalidTime,
            DomainError::InvalidDate => Self::InvalidDate,
            DomainError::InvalidText { .. } => Self::InvalidText,
            DomainError::InvalidHistory => Self::InvalidHistory,
            DomainError::InvalidSlots => Self::InvalidSlots,
            DomainError::InvalidAccessCode => Self::InvalidAccessCode,
            DomainError::VaccineNotOffered => Self::VaccineNotOffered,
            DomainError::InvalidWindow => Self::InvalidWindow,
            DomainError::InvalidAccountId => Self::InvalidAccountId,
            DomainError::InvalidRole => Self::InvalidRole,
            DomainError::InvalidVenues => Self::InvalidVenues,
        }
    }
}

impl From<BookingError> for ErrorCode {
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::NotFound => Self::NotFound,
            BookingError::SlotFull => Self::SlotFull,
            BookingError::AlreadyReserved => Self::AlreadyReserved,
            BookingError::DirectBookingVenue => Self::DirectBookingVenue,
            BookingError::AccessCodeInvalid => Self::AccessCodeInvalid,
            BookingError::NotEligible(_) => Self::NotEligible,
            BookingError::NotCancellable => Self::NotCancellable,
            BookingError::ChangeInProgress => Self::ChangeInProgress,
            BookingError::BookingClosed => Self::BookingClosed,
            BookingError::Overloaded => Self::Overloaded,
            BookingError::StoreUnavailable => Self::StoreUnavailable,
            BookingError::IdempotencyKeyInUse => Self::IdempotencyKeyInUse,
            BookingError::IdempotencyKeyReused => Self::IdempotencyKeyReused,
            BookingError::NotOpenYet(_) => Self::NotOpenYet,
            BookingError::BookingWindowClosed => Self::BookingWindowClosed,
            BookingError::SlotStarted => Self::SlotStarted,
        }
    }
}

impl From<CheckInError> for ErrorCode {
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

impl From<DayPlanError> for ErrorCode {
    fn from(error: DayPlanError) -> Self {
        match error {
            DayPlanError::CapacityBelowBooked => Self::CapacityBelowBooked,
            DayPlanError::VaccineChangeWithBookings => Self::VaccineChangeWithBookings,
            DayPlanError::StoreUnavailable => Self::StoreUnavailable,
            DayPlanError::Overloaded => Self::Overloaded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case_and_titled() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(!code.title().is_empty());
            assert!((400..600).contains(&code.status()), "{name}");
            assert_eq!(ErrorCode::parse(name), Some(*code));
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn every_answer_worth_retrying_says_when() {
        for code in ErrorCode::ALL {
            if code.status() == 503 {
                assert!(code.retry_after_s().is_some(), "{}", code.as_str());
            }
        }
        assert_eq!(
            ErrorCode::BookingClosed.retry_after_s(),
            Some(RETRY_AFTER_BOOKING_CLOSED_S)
        );
    }

    #[test]
    fn too_many_residents_is_titled_as_itself() {
        assert_eq!(ErrorCode::TooManyResidents.title(), "Too many residents");
    }

    /// Each value once, every variant there: the match has no wildcard, so
    /// a new variant fails to compile until it is listed.
    #[test]
    fn every_coded_refusal_is_listed_and_comes_back_from_its_code() {
        for error in CheckInError::ALL {
            match error {
                CheckInError::InvalidCode
                | CheckInError::NoReservation
                | CheckInError::PriorDoseMissing
                | CheckInError::AlreadyAttended
                | CheckInError::StoreUnavailable
                | CheckInError::Overloaded => {}
            }
            assert_eq!(CheckInError::from_code((*error).into()), Some(*error));
        }
        assert_eq!(CheckInError::ALL.len(), 6);
        for error in DayPlanError::ALL {
            match error {
                DayPlanError::CapacityBelowBooked
                | DayPlanError::VaccineChangeWithBookings
                | DayPlanError::StoreUnavailable
                | DayPlanError::Overloaded => {}
            }
            assert_eq!(DayPlanError::from_code((*error).into()), Some(*error));
        }
        assert_eq!(DayPlanError::ALL.len(), 4);
        assert_eq!(CheckInError::from_code(ErrorCode::SlotFull), None);
    }

    #[test]
    fn every_booking_refusal_comes_back_from_its_name() {
        let opens = DateTime::parse_from_rfc3339("2027-03-01T09:00:00+09:00").unwrap();
        let mut all = PLAIN_BOOKING_REFUSALS.to_vec();
        all.push(BookingError::NotOpenYet(opens));
        all.extend(IneligibleReason::ALL.map(BookingError::NotEligible));
        for error in &all {
            match error {
                BookingError::NotFound
                | BookingError::SlotFull
                | BookingError::AlreadyReserved
                | BookingError::DirectBookingVenue
                | BookingError::AccessCodeInvalid
                | BookingError::NotEligible(_)
                | BookingError::NotCancellable
                | BookingError::ChangeInProgress
                | BookingError::BookingClosed
                | BookingError::Overloaded
                | BookingError::StoreUnavailable
                | BookingError::IdempotencyKeyInUse
                | BookingError::NotOpenYet(_)
                | BookingError::BookingWindowClosed
                | BookingError::IdempotencyKeyReused
                | BookingError::SlotStarted => {}
            }
            assert_eq!(BookingRefusal::from(*error).error(), Some(*error));
        }
        assert_eq!(PLAIN_BOOKING_REFUSALS.len(), 14);
        let unknown = BookingRefusal::new(ErrorCode::NotEligible, Some("too_tall"), None);
        assert_eq!(
            unknown.error(),
            Some(BookingError::NotEligible(
                IneligibleReason::NotInTargetGroup
            ))
        );
        assert_eq!(
            BookingRefusal::new(ErrorCode::NotOpenYet, None, None).error(),
            None
        );
        assert_eq!(
            BookingRefusal::new(ErrorCode::InvalidCode, None, None).error(),
            None
        );
    }

    #[test]
    fn a_code_is_its_name_in_json() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::SlotFull).unwrap(),
            r#""slot_full""#
        );
        let back: ErrorCode = serde_json::from_str(r#""prior_dose_missing""#).unwrap();
        assert_eq!(back, ErrorCode::PriorDoseMissing);
        assert!(serde_json::from_str::<ErrorCode>(r#""no_such_code""#).is_err());
    }
}
