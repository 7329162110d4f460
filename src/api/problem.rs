//! Every error answer, as RFC 9457 `application/problem+json` with a stable
//! `code`. The one place where errors become HTTP. `detail` never holds
//! another person's data; a 500 is opaque to the client and logged here.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{BookingError, DayPlanError, DomainError};
use crate::store::StoreError;

/// Seconds a client should wait after `503 booking_closed`.
pub const RETRY_AFTER_BOOKING_CLOSED_S: u32 = 60;
/// Seconds a client should wait after `503 overloaded`.
pub const RETRY_AFTER_OVERLOADED_S: u32 = 1;
/// Seconds a client should wait after `503 store_unavailable`.
pub const RETRY_AFTER_STORE_UNAVAILABLE_S: u32 = 5;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// The `reason` member of `422 not_eligible`.
    reason: Option<&'static str>,
    retry_after_s: Option<u32>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        let retry_after_s = match code {
            "booking_closed" => Some(RETRY_AFTER_BOOKING_CLOSED_S),
            "overloaded" | "change_in_progress" | "idempotency_key_in_use" => {
                Some(RETRY_AFTER_OVERLOADED_S)
            }
            "store_unavailable" => Some(RETRY_AFTER_STORE_UNAVAILABLE_S),
            _ => None,
        };
        Self {
            status,
            code,
            detail: detail.into(),
            reason: None,
            retry_after_s,
        }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Sets the `Retry-After` header, in seconds.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token or key>",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this role may not use this endpoint",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", detail)
    }

    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", detail)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body may be at most {limit_bytes} bytes"),
        )
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send Content-Type: {expected}"),
        )
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the ticket number and birth date do not match our records",
        )
    }

    pub fn overloaded() -> Self {
        BookingError::Overloaded.into()
    }

    pub fn store_unavailable() -> Self {
        BookingError::StoreUnavailable.into()
    }

    /// A server fault: logged with its cause here, opaque to the client.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; nothing was changed",
        )
    }
}

fn title(code: &str) -> &'static str {
    match code {
        "unauthorized" => "Authentication required",
        "forbidden" => "Not allowed for this role",
        "not_found" => "Not found",
        "invalid_json" => "Malformed request body",
        "invalid_query" => "Malformed query",
        "payload_too_large" => "Request body too large",
        "too_many_records" => "Too many records",
        "unsupported_media_type" => "Unsupported content type",
        "method_not_allowed" => "Method not allowed",
        "invalid_credentials" => "Ticket number or birth date is wrong",
        "slot_full" => "Slot is full",
        "already_reserved" => "Dose already reserved",
        "direct_booking_venue" => "Venue books directly",
        "access_code_invalid" => "Access code invalid",
        "not_eligible" => "Not eligible",
        "not_cancellable" => "Reservation cannot be cancelled",
        "change_in_progress" => "Another change is in progress",
        "booking_closed" => "Booking is closed",
        "overloaded" => "Too busy, retry shortly",
        "store_unavailable" => "Storage unavailable",
        "capacity_below_booked" => "Capacity below booked",
        "idempotency_key_in_use" => "Idempotency key in use",
        "idempotency_key_reused" => "Idempotency key reused",
        "too_many_attempts" => "Too many attempts",
        "too_many_venues" => "Too many venues",
        "internal_error" => "Internal error",
        _ => "Invalid field",
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let status = match error {
            DomainError::VaccineNotOffered => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        let status = match error {
            BookingError::NotFound => StatusCode::NOT_FOUND,
            BookingError::SlotFull
            | BookingError::AlreadyReserved
            | BookingError::DirectBookingVenue
            | BookingError::NotCancellable
            | BookingError::ChangeInProgress => StatusCode::CONFLICT,
            BookingError::AccessCodeInvalid => StatusCode::FORBIDDEN,
            BookingError::NotEligible(_) => StatusCode::UNPROCESSABLE_ENTITY,
            BookingError::BookingClosed
            | BookingError::Overloaded
            | BookingError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut problem = Self::new(status, error.code(), error.to_string());
        if let BookingError::NotEligible(reason) = error {
            problem.reason = Some(reason.as_str());
        }
        problem
    }
}

impl From<DayPlanError> for ApiError {
    fn from(error: DayPlanError) -> Self {
        let status = match error {
            DayPlanError::CapacityBelowBooked => StatusCode::CONFLICT,
            DayPlanError::StoreUnavailable | DayPlanError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "store call failed");
        Self::store_unavailable()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl ApiError {
    /// The problem document, as sent (for answers that are replayed).
    pub fn body_bytes(&self) -> Vec<u8> {
        let body = ProblemBody {
            kind: "about:blank",
            title: title(self.code),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            reason: self.reason,
        };
        serde_json::to_vec(&body).expect("problem bodies serialise")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(seconds) = self.retry_after_s {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.code == "unauthorized" {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.body(self.body_bytes())
    }
}
