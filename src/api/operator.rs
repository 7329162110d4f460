//! The call centre: look a caller up, book and cancel on their behalf. The
//! caller is identified by ticket number and birth date, checked exactly as
//! at login (a mismatch is `404`, and counts toward the ticket's lockout);
//! booking and cancelling go through the same booking service as the
//! resident's, with `channel: "operator"`. Every call is audited before its
//! answer: a call that commits has its entry in the same commit; any other
//! call has it written here.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::audit::recorded;
use super::auth::{self, Role, Staff};
use super::problem::ApiError;
use super::reservations::{BookingBody, book, booking_body, cancel_through_service, counted};
use super::{AppState, body};
use crate::booking::Caller;
use crate::domain::{Channel, TicketNumber, parse_date};
use crate::store::{AuditDraft, AuditTarget};

/// An operator's booking: the resident's booking body plus the caller's identity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorBookingBody {
    ticket_number: String,
    birth_date: String,
    venue_id: String,
    date: String,
    time: String,
    #[serde(default)]
    dose: Option<u8>,
    #[serde(default)]
    access_code: Option<String>,
}

/// The caller's identity in a query string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityQuery {
    ticket_number: Option<String>,
    birth_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirthDateQuery {
    birth_date: Option<String>,
}

/// Checks the caller's identity as a login does: a locked ticket is `429`
/// (even with the right birth date), a mismatch `404` and one more failure
/// toward the lockout. The call centre shares one address, so only the
/// ticket's lockout applies, not the per-address limit.
async fn identify(
    state: &AppState,
    ticket: &TicketNumber,
    birth_date: Option<&str>,
) -> Result<(), ApiError> {
    let birth_date = parse_date(birth_date.unwrap_or(""))
        .map_err(|_| crate::domain::DomainError::InvalidBirthDate)?;
    super::sessions::check_identity(
        state,
        ticket,
        birth_date,
        None,
        "too many failed identity checks for this ticket: wait before trying again",
        ApiError::not_found,
    )
    .await
    .map(|_| ())
}

fn operator(request: &HttpRequest, state: &AppState) -> Result<Staff, ApiError> {
    auth::staff(request, state, &[Role::Operator])
}

fn draft(
    staff: &Staff,
    action: &'static str,
    target: &AuditTarget,
    outcome: &'static str,
) -> AuditDraft {
    AuditDraft {
        actor: staff.actor.clone(),
        role: staff.role,
        action: action.into(),
        target: target.clone(),
        outcome_if_committed: outcome.into(),
    }
}

/// `POST /v1/operator/reservations`.
pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = operator(&request, &state)?;
    let started = Instant::now();
    let mut target = AuditTarget::default();
    let result = async {
        let bytes = booking_body(&request, payload, &state).await?;
        let body: OperatorBookingBody = body::parse_json(&request, &bytes)?;
        let ticket = TicketNumber::parse(&body.ticket_number)?;
        target.ticket_number = Some(ticket);
        let booking = BookingBody {
            venue_id: body.venue_id,
            date: body.date,
            time: body.time,
            dose: body.dose,
            access_code: body.access_code,
        }
        .parse()?;
        target.venue_id = Some(booking.venue_id.clone());
        target.date = Some(booking.date);
        identify(&state, &ticket, Some(&body.birth_date)).await?;
        let caller = Caller {
            ticket,
            channel: Channel::Operator,
            audit: Some(draft(&staff, "operator.book", &target, "201 ok")),
        };
        book(&request, &state, &caller, booking).await
    }
    .await;
    match counted(result, started) {
        // Its audit entry committed with the reservation.
        Ok(booked) if booked.committed => Ok(booked.response),
        other => {
            let answer = other.map(|booked| booked.response);
            recorded(&state, &staff, "operator.book", target, answer).await
        }
    }
}

/// `DELETE /v1/operator/reservations/{id}?ticket_number=…&birth_date=…`.
pub async fn cancel(
    request: HttpRequest,
    path: web::Path<String>,
    query: Result<web::Query<IdentityQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = operator(&request, &state)?;
    let mut target = AuditTarget {
        reservation_id: crate::domain::ReservationId::parse(&path),
        ..AuditTarget::default()
    };
    let identity = query
        .map_err(|e| ApiError::invalid_query(e.to_string()))
        .and_then(|query| {
            let ticket = TicketNumber::parse(query.ticket_number.as_deref().unwrap_or(""))?;
            Ok((ticket, query.birth_date.clone()))
        });
    if let Ok((ticket, _)) = &identity {
        target.ticket_number = Some(*ticket);
    }
    let caller_target = target.clone();
    let result = cancel_through_service(
        &state,
        async {
            let (ticket, birth_date) = identity?;
            identify(&state, &ticket, birth_date.as_deref()).await?;
            Ok(Caller {
                ticket,
                channel: Channel::Operator,
                audit: Some(draft(&staff, "operator.cancel", &caller_target, "200 ok")),
            })
        },
        &path,
    )
    .await;
    match result {
        // Its audit entry committed with the cancellation.
        Ok(answer) => Ok(answer),
        Err(error) => recorded(&state, &staff, "operator.cancel", target, Err(error)).await,
    }
}

/// `GET /v1/operator/residents/{ticket_number}?birth_date=…`: the caller's
/// profile as `/v1/me` shows it.
pub async fn lookup(
    request: HttpRequest,
    path: web::Path<String>,
    query: Result<web::Query<BirthDateQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = operator(&request, &state)?;
    let mut target = AuditTarget::default();
    let result = async {
        let query = query.map_err(|e| ApiError::invalid_query(e.to_string()))?;
        let ticket = TicketNumber::parse(&path)?;
        target.ticket_number = Some(ticket);
        identify(&state, &ticket, query.birth_date.as_deref()).await?;
        super::sessions::profile(&state, &ticket).ok_or_else(ApiError::not_found)
    }
    .await;
    recorded(&state, &staff, "operator.lookup", target, result).await
}
