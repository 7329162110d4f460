//! Every error `code` the API answers with, in one table: its wire name, HTTP
//! status, problem `title` and `Retry-After`. Clients branch on the code
//! (API.md "Errors"); nothing else in the crate spells a code as a string.

use actix_web::http::StatusCode;

use crate::domain::{BookingError, CheckInError, DayPlanError, DomainError};

/// Seconds a client should wait after `503 booking_closed`.
pub const RETRY_AFTER_BOOKING_CLOSED_S: u32 = 60;
/// Seconds a client should wait after `503 overloaded` (and other "retry shortly" answers).
pub const RETRY_AFTER_OVERLOADED_S: u32 = 1;
/// Seconds a client should wait after `503 store_unavailable`.
pub const RETRY_AFTER_STORE_UNAVAILABLE_S: u32 = 5;

macro_rules! error_codes {
    ($($variant:ident: $code:literal, $status:ident, $title:literal, $retry_after:expr;)*) => {
        /// A stable error code of the API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `code` member, as clients see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)*
                }
            }

            /// The problem document's `title`.
            pub fn title(self) -> &'static str {
                match self {
                    $(Self::$variant => $title,)*
                }
            }

            /// The `Retry-After` header in seconds, for answers worth retrying.
            pub fn retry_after_s(self) -> Option<u32> {
                match self {
                    $(Self::$variant => $retry_after,)*
                }
            }
        }
    };
}

error_codes! {
    // Requests that cannot be read.
    InvalidJson: "invalid_json", BAD_REQUEST, "Malformed request body", None;
    InvalidQuery: "invalid_query", BAD_REQUEST, "Malformed query", None;
    InvalidIdempotencyKey: "invalid_idempotency_key", BAD_REQUEST, "Malformed Idempotency-Key", None;
    InvalidRecord: "invalid_record", BAD_REQUEST, "Malformed record", None;
    PayloadTooLarge: "payload_too_large", PAYLOAD_TOO_LARGE, "Request body too large", None;
    RequestTimeout: "request_timeout", REQUEST_TIMEOUT, "Request body too slow", None;
    TooManyRecords: "too_many_records", PAYLOAD_TOO_LARGE, "Too many records", None;
    UnsupportedMediaType: "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported content type", None;
    // Fields that do not have the contract's shape.
    InvalidVenueId: "invalid_venue_id", BAD_REQUEST, "Invalid venue_id", None;
    InvalidTicketNumber: "invalid_ticket_number", BAD_REQUEST, "Invalid ticket_number", None;
    InvalidBirthDate: "invalid_birth_date", BAD_REQUEST, "Invalid birth_date", None;
    InvalidVaccine: "invalid_vaccine", BAD_REQUEST, "Invalid vaccine", None;
    InvalidDose: "invalid_dose", BAD_REQUEST, "Invalid dose", None;
    InvalidTime: "invalid_time", BAD_REQUEST, "Invalid time", None;
    InvalidDate: "invalid_date", BAD_REQUEST, "Invalid date", None;
    InvalidText: "invalid_text", BAD_REQUEST, "Invalid text field", None;
    InvalidHighRisk: "invalid_high_risk", BAD_REQUEST, "Invalid high_risk", None;
    InvalidHistory: "invalid_history", BAD_REQUEST, "Invalid dose history", None;
    InvalidSlots: "invalid_slots", BAD_REQUEST, "Invalid slots", None;
    InvalidAccessCode: "invalid_access_code", BAD_REQUEST, "Invalid access_code", None;
    InvalidAccountId: "invalid_account_id", BAD_REQUEST, "Invalid account_id", None;
    InvalidRole: "invalid_role", BAD_REQUEST, "Invalid role", None;
    InvalidVenues: "invalid_venues", BAD_REQUEST, "Invalid venues", None;
    VaccineNotOffered: "vaccine_not_offered", UNPROCESSABLE_ENTITY, "Vaccine not offered by this venue", None;
    // Who is asking.
    Unauthorized: "unauthorized", UNAUTHORIZED, "Authentication required", None;
    InvalidCredentials: "invalid_credentials", UNAUTHORIZED, "Ticket number or birth date is wrong", None;
    Forbidden: "forbidden", FORBIDDEN, "Not allowed for this role", None;
    TooManyAttempts: "too_many_attempts", TOO_MANY_REQUESTS, "Too many attempts", None;
    // What is asked for.
    NotFound: "not_found", NOT_FOUND, "Not found", None;
    MethodNotAllowed: "method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed", None;
    // Booking and cancelling.
    SlotFull: "slot_full", CONFLICT, "Slot is full", None;
    AlreadyReserved: "already_reserved", CONFLICT, "Dose already reserved", None;
    DirectBookingVenue: "direct_booking_venue", CONFLICT, "Venue books directly", None;
    AccessCodeInvalid: "access_code_invalid", FORBIDDEN, "Access code invalid", None;
    NotEligible: "not_eligible", UNPROCESSABLE_ENTITY, "Not eligible", None;
    NotCancellable: "not_cancellable", CONFLICT, "Reservation cannot be cancelled", None;
    ChangeInProgress: "change_in_progress", CONFLICT, "Another change is in progress", Some(RETRY_AFTER_OVERLOADED_S);
    IdempotencyKeyInUse: "idempotency_key_in_use", CONFLICT, "Idempotency key in use", Some(RETRY_AFTER_OVERLOADED_S);
    IdempotencyKeyReused: "idempotency_key_reused", UNPROCESSABLE_ENTITY, "Idempotency key reused", None;
    NotOpenYet: "not_open_yet", CONFLICT, "Booking has not opened yet", Some(RETRY_AFTER_OVERLOADED_S);
    BookingWindowClosed: "booking_window_closed", CONFLICT, "Booking has closed for this day", None;
    InvalidWindow: "invalid_window", BAD_REQUEST, "Invalid booking window", None;
    // Check-in.
    InvalidCode: "invalid_code", BAD_REQUEST, "Not this municipality's code", None;
    NoReservation: "no_reservation", NOT_FOUND, "No reservation here today", None;
    PriorDoseMissing: "prior_dose_missing", CONFLICT, "Previous dose missing", None;
    AlreadyAttended: "already_attended", CONFLICT, "Already checked in", None;
    // Admin changes.
    CapacityBelowBooked: "capacity_below_booked", CONFLICT, "Capacity below booked", None;
    VaccineChangeWithBookings: "vaccine_change_with_bookings", CONFLICT, "Day has bookings for its vaccine", None;
    TooManyVenues: "too_many_venues", CONFLICT, "Too many venues", None;
    TooManyResidents: "too_many_residents", CONFLICT, "Too many residents", None;
    TooManyAccounts: "too_many_accounts", CONFLICT, "Too many accounts", None;
    // The service cannot serve it now.
    BookingClosed: "booking_closed", SERVICE_UNAVAILABLE, "Booking is closed", Some(RETRY_AFTER_BOOKING_CLOSED_S);
    Overloaded: "overloaded", SERVICE_UNAVAILABLE, "Too busy, retry shortly", Some(RETRY_AFTER_OVERLOADED_S);
    StoreUnavailable: "store_unavailable", SERVICE_UNAVAILABLE, "Storage unavailable", Some(RETRY_AFTER_STORE_UNAVAILABLE_S);
    InternalError: "internal_error", INTERNAL_SERVER_ERROR, "Internal error", None;
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
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn every_answer_worth_retrying_says_when() {
        for code in ErrorCode::ALL {
            if code.status() == StatusCode::SERVICE_UNAVAILABLE {
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
}
