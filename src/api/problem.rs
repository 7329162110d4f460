//! Every error answer, as RFC 9457 `application/problem+json` with a stable
//! `code`. The one place where errors become HTTP. `detail` never holds
//! another person's data; a 500 is opaque to the client and logged here.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use super::codes::ErrorCode;
use crate::domain::{BookingError, DayPlanError, DomainError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    /// The `reason` member of `422 not_eligible`.
    reason: Option<&'static str>,
    /// The `opens_at` member of `409 not_open_yet`.
    opens_at: Option<String>,
    /// The `field` member of `400 invalid_text`: the member that holds it.
    field: Option<&'static str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl ApiError {
    /// An answer with this code; status, title and `Retry-After` come from its row
    /// in `codes.rs`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            reason: None,
            opens_at: None,
            field: None,
            retry_after_s: code.retry_after_s(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        super::codes::http_status(self.code)
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
            ErrorCode::Unauthorized,
            "send Authorization: Bearer <token or key>",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "this role may not use this endpoint")
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidJson, detail)
    }

    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidQuery, detail)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the body may be at most {limit_bytes} bytes"),
        )
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            format!("send Content-Type: {expected}"),
        )
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            ErrorCode::InvalidCredentials,
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
            ErrorCode::InternalError,
            "something went wrong on our side; nothing was changed",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let mut problem = Self::new(error.into(), error.to_string());
        problem.field = error.field();
        problem
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        let mut problem = Self::new(error.into(), error.to_string());
        if let BookingError::NotEligible(reason) = error {
            problem.reason = Some(reason.as_str());
        }
        if let BookingError::NotOpenYet(opens_at) = error {
            let wait_s = (opens_at - crate::clock::now()).num_seconds().max(1);
            problem.opens_at = Some(opens_at.to_rfc3339());
            problem.retry_after_s = Some(u32::try_from(wait_s).unwrap_or(u32::MAX));
        }
        problem
    }
}

impl From<crate::domain::CheckInError> for ApiError {
    fn from(error: crate::domain::CheckInError) -> Self {
        Self::new(error.into(), error.to_string())
    }
}

impl From<DayPlanError> for ApiError {
    fn from(error: DayPlanError) -> Self {
        Self::new(error.into(), error.to_string())
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
        write!(f, "{} {}", self.status().as_u16(), self.code.as_str())
    }
}

impl ApiError {
    /// The problem document, as sent (for answers that are replayed).
    pub fn body_bytes(&self) -> Vec<u8> {
        let body = ProblemBody {
            kind: "about:blank",
            title: self.code.title(),
            status: self.status().as_u16(),
            code: self.code.as_str(),
            detail: &self.detail,
            reason: self.reason,
            opens_at: self.opens_at.as_deref(),
            field: self.field,
        };
        serde_json::to_vec(&body).expect("problem bodies serialise")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(seconds) = self.retry_after_s {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.code == ErrorCode::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.body(self.body_bytes())
    }
}
