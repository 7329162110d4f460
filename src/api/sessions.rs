//! `POST /v1/sessions` (log in with ticket number and birth date) and
//! `GET /v1/me`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth;
use super::codes::ErrorCode;
use super::problem::ApiError;
use super::views::{DoseRecordView, ReservationList};
use super::{AppState, body};
use crate::domain::{TicketNumber, parse_date};
use crate::telemetry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    ticket_number: String,
    birth_date: String,
}

#[derive(Serialize)]
struct Session {
    token: String,
    expires_at: String,
}

fn count_login(outcome: telemetry::Outcome) {
    metrics::counter!(telemetry::LOGIN_ATTEMPTS_TOTAL, "outcome" => outcome.label()).increment(1);
    crate::recent::record_login(outcome);
}

/// Checks a resident's identity (ticket number and birth date) as every
/// channel must: a locked ticket or a blocked `address` is `429` even with
/// the right birth date; a mismatch is `mismatch()` and one more failure
/// toward the lockout; a match clears the ticket's failures. With several
/// processes the ticket's lockout is also kept in the store, so that it
/// counts the failures made through every process (the per-address limit
/// stays per process; README "Running several processes").
pub async fn check_identity(
    state: &AppState,
    ticket: &TicketNumber,
    birth_date: chrono::NaiveDate,
    address: Option<std::net::IpAddr>,
    locked_detail: &'static str,
    mismatch: fn() -> ApiError,
) -> Result<crate::tokens::ResidentHandle, ApiError> {
    let locked = |wait_s: u64| {
        ApiError::new(ErrorCode::TooManyAttempts, locked_detail)
            .with_retry_after(u32::try_from(wait_s).unwrap_or(u32::MAX))
    };
    let now = std::time::Instant::now();
    state
        .login_guard
        .admit(ticket, address, now)
        .map_err(locked)?;
    let handle = state.residents.login(ticket, birth_date);
    if let Some(placement) = state.registry.placement() {
        match placement
            .coordination
            .login_attempt(ticket, handle.is_some(), crate::login_guard::TICKET_LIMITS)
            .await
        {
            Ok(Some(left)) => return Err(locked(left.as_secs_f64().ceil().max(1.0) as u64)),
            Ok(None) => {}
            // Failing open: a store that cannot count must not lock every
            // resident out (the in-memory guard still counts here).
            Err(error) => tracing::warn!(error = %error, "shared login lockout not consulted"),
        }
    }
    let Some(handle) = handle else {
        state.login_guard.record_failure(ticket, address, now);
        return Err(mismatch());
    };
    state.login_guard.record_success(ticket);
    Ok(handle)
}

pub async fn login(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let attempt = async {
        let login: LoginRequest = body::json(&request, payload).await?;
        let ticket = TicketNumber::parse(&login.ticket_number)?;
        let birth_date = parse_date(&login.birth_date)
            .map_err(|_| crate::domain::DomainError::InvalidBirthDate)?;
        let address = request.peer_addr().map(|a| a.ip());
        let handle = check_identity(
            &state,
            &ticket,
            birth_date,
            address,
            "too many failed logins: wait before trying again",
            ApiError::invalid_credentials,
        )
        .await?;
        let (token, expires_at) = state.tokens.issue(&handle, crate::clock::now_utc());
        Ok::<_, ApiError>(Session {
            token,
            expires_at: expires_at
                .with_timezone(&crate::domain::municipality_offset())
                .to_rfc3339(),
        })
    };
    match attempt.await {
        Ok(session) => {
            count_login(telemetry::Outcome::LoggedIn);
            Ok(HttpResponse::Created().json(session))
        }
        Err(error) => {
            count_login(telemetry::Outcome::Refused(error.code()));
            Err(error)
        }
    }
}

#[derive(Serialize)]
struct Eligibility {
    next_dose: u8,
    vaccines: Vec<&'static str>,
    earliest_date: String,
}

#[derive(Serialize)]
struct Profile {
    ticket_number: String,
    name: String,
    birth_date: String,
    high_risk: bool,
    history: Vec<DoseRecordView>,
    #[serde(flatten)]
    reservations: ReservationList,
    eligibility: Option<Eligibility>,
}

pub async fn me(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ticket = auth::resident(&request, &state)?;
    profile(&state, &ticket).ok_or_else(ApiError::unauthorized)
}

/// A resident's profile, history, reservations and what comes next: what
/// `/v1/me` shows, and what an operator sees of the caller.
pub fn profile(state: &AppState, ticket: &TicketNumber) -> Option<HttpResponse> {
    let ticket = *ticket;
    let resident = state.residents.resident(&ticket)?;
    let reservations = state.residents.reservations_of(&ticket);
    let eligibility = state
        .residents
        .outlook(&ticket, crate::clock::today())
        .map(|outlook| Eligibility {
            next_dose: outlook.next_dose.number(),
            vaccines: outlook.vaccines.iter().map(|v| v.as_str()).collect(),
            earliest_date: outlook.earliest_date.to_string(),
        });
    Some(
        HttpResponse::Ok().json(Profile {
            ticket_number: ticket.expose().to_owned(),
            name: resident.name.clone(),
            birth_date: resident.birth_date.to_string(),
            high_risk: resident.high_risk,
            history: crate::domain::received_history(&resident, &reservations)
                .iter()
                .map(DoseRecordView::from)
                .collect(),
            reservations: ReservationList::of(&reservations),
            eligibility,
        }),
    )
}
