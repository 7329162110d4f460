//! A resident's reservations: book, list, get, cancel.
//!
//! Booking path: kill switch (before any other work) → authenticate → parse →
//! `Idempotency-Key` → venue and day exist and are central → claim the dose
//! (eligibility) → the venue-day's actor decides and group-commits → `201`
//! only after the commit.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth;
use super::problem::ApiError;
use super::views::{ReservationList, ReservationView};
use super::{AppState, body};
use crate::domain::{
    BookingError, BookingMode, BookingRequest, Channel, Dose, IdempotencyTag, Reservation,
    ReservationId, SlotTime, TicketNumber, VenueDayKey, VenueId, municipality_offset, parse_date,
};
use crate::resident_index::{ClaimRequest, FirstAnswer, KeyedBooking};
use crate::telemetry;

/// Longest `Idempotency-Key` (API.md: 1–64 visible ASCII characters).
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingBody {
    pub venue_id: String,
    pub date: String,
    pub time: String,
    #[serde(default)]
    pub dose: Option<u8>,
    #[serde(default)]
    pub access_code: Option<String>,
}

impl BookingBody {
    /// Identifies the request an `Idempotency-Key` was first used with.
    fn fingerprint(&self) -> u64 {
        let canonical = format!(
            "{}\n{}\n{}\n{:?}\n{:?}",
            self.venue_id, self.date, self.time, self.dose, self.access_code
        );
        let digest = Sha256::digest(canonical.as_bytes());
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

pub fn refuse_if_closed(state: &AppState) -> Result<(), ApiError> {
    if state.kill_switch.is_engaged() {
        return Err(BookingError::BookingClosed.into());
    }
    Ok(())
}

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Utc::now().with_timezone(&municipality_offset())
}

/// Books for `ticket` through the venue-day's actor. Shared by the resident
/// and (later) the operator endpoints.
pub async fn book_for(
    state: &AppState,
    ticket: TicketNumber,
    booking: BookingBody,
    channel: Channel,
    idempotency: Option<IdempotencyTag>,
) -> Result<Reservation, ApiError> {
    let key = VenueDayKey {
        venue_id: VenueId::parse(&booking.venue_id)?,
        date: parse_date(&booking.date)?,
    };
    let time = SlotTime::parse(&booking.time)?;
    let dose = booking.dose.map(Dose::new).transpose()?;
    let venue = state
        .catalog
        .venue(&key.venue_id)
        .ok_or(BookingError::NotFound)?;
    if venue.booking == BookingMode::Direct {
        return Err(BookingError::DirectBookingVenue.into());
    }
    // Only days that exist get an actor: unknown days never start one.
    let day = state.catalog.day(&key).ok_or(BookingError::NotFound)?;
    let now = now();
    let claim = state.residents.claim(
        &ticket,
        &ClaimRequest {
            dose,
            vaccine: day.plan.vaccine,
            slot_date: key.date,
            today: now.date_naive(),
        },
    )?;
    let request = BookingRequest {
        ticket_number: ticket,
        time,
        dose: claim.dose(),
        access_code: booking.access_code,
        channel,
        now,
        idempotency,
    };
    let handle = state
        .registry
        .handle(&key)
        .ok_or(BookingError::Overloaded)?;
    Ok(handle.book(request, claim).await?)
}

fn count_booking(outcome: &'static str, started: Instant) {
    metrics::counter!(telemetry::BOOKING_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    metrics::histogram!(telemetry::BOOKING_DURATION_SECONDS)
        .record(started.elapsed().as_secs_f64());
}

/// The `Idempotency-Key` header, if sent: 1–64 visible ASCII characters.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= IDEMPOTENCY_KEY_LENGTH_MAX
        && bytes.iter().all(u8::is_ascii_graphic);
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1–64 visible ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

fn created(reservation: &Reservation) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/reservations/{}", reservation.id),
        ))
        .json(ReservationView::from(reservation))
}

fn replay(answer: FirstAnswer) -> HttpResponse {
    match answer {
        FirstAnswer::Booked(reservation) => created(&reservation),
        FirstAnswer::Refused { status, body } => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT))
                .insert_header((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                ))
                .body(body)
        }
    }
}

/// Books, remembering the answer under the `Idempotency-Key` if one was sent.
async fn book_once(
    request: &HttpRequest,
    state: &AppState,
    ticket: TicketNumber,
    booking: BookingBody,
) -> Result<HttpResponse, ApiError> {
    let Some(key) = idempotency_key(request)? else {
        return Ok(created(
            &book_for(state, ticket, booking, Channel::Web, None).await?,
        ));
    };
    let fingerprint = booking.fingerprint();
    let guard = match state
        .residents
        .begin_keyed_booking(&ticket, &key, fingerprint, now())
    {
        KeyedBooking::New(guard) => guard,
        KeyedBooking::Replay(answer) => return Ok(replay(answer)),
        KeyedBooking::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being answered: retry shortly",
            ));
        }
        KeyedBooking::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ));
        }
    };
    let tag = IdempotencyTag { key, fingerprint };
    match book_for(state, ticket, booking, Channel::Web, Some(tag)).await {
        Ok(reservation) => {
            let response = created(&reservation);
            guard.finish(Some(FirstAnswer::Booked(Box::new(reservation))));
            Ok(response)
        }
        // A final refusal is replayed; a 5xx is not (nothing happened: retry).
        Err(error) if error.status().is_client_error() => {
            guard.finish(Some(FirstAnswer::Refused {
                status: error.status().as_u16(),
                body: error.body_bytes(),
            }));
            Err(error)
        }
        Err(error) => {
            guard.finish(None);
            Err(error)
        }
    }
}

pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = async {
        if let Err(closed) = refuse_if_closed(&state) {
            // Read the (small, bounded) body anyway: an unread body makes
            // actix close the connection, and a stop must stay cheap.
            let _ = body::read(&request, payload, body::BODY_BYTES_MAX).await;
            return Err(closed);
        }
        let ticket = auth::resident(&request, &state)?;
        let booking: BookingBody = body::json(&request, payload).await?;
        book_once(&request, &state, ticket, booking).await
    }
    .await;
    match &result {
        Ok(response) if response.status() == StatusCode::CREATED => {
            count_booking("committed", started)
        }
        Ok(_) => count_booking("replayed", started),
        Err(error) => count_booking(error.code(), started),
    }
    result
}

pub async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ticket = auth::resident(&request, &state)?;
    Ok(HttpResponse::Ok().json(ReservationList::of(
        &state.residents.reservations_of(&ticket),
    )))
}

pub async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ticket = auth::resident(&request, &state)?;
    let reservation = ReservationId::parse(&path)
        .and_then(|id| state.residents.reservation_of(&ticket, id))
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(ReservationView::from(&reservation)))
}

/// A cancelled reservation, and the later doses cancelled with it.
#[derive(Serialize)]
pub struct CancelView {
    #[serde(flatten)]
    pub reservation: ReservationView,
    pub also_cancelled: Vec<ReservationView>,
}

/// Cancels one of `ticket`'s reservations and every booked later dose, latest
/// dose first, each through its own venue-day's actor. Shared by the resident
/// and (later) the operator endpoints.
pub async fn cancel_for(
    state: &AppState,
    ticket: TicketNumber,
    id: &str,
) -> Result<CancelView, ApiError> {
    let id = ReservationId::parse(id).ok_or_else(ApiError::not_found)?;
    let cascade = state.residents.begin_cancel(&ticket, id)?;
    let now = now();
    let mut cancelled = Vec::with_capacity(cascade.chain.len());
    for reservation in &cascade.chain {
        let handle = state
            .registry
            .handle(&reservation.venue_day())
            .ok_or(BookingError::Overloaded)?;
        cancelled.push(handle.cancel(reservation.id, ticket, now).await?);
    }
    drop(cascade);
    let asked_for = cancelled
        .pop()
        .expect("the asked-for reservation is cancelled last");
    Ok(CancelView {
        reservation: ReservationView::from(&asked_for),
        also_cancelled: cancelled.iter().map(ReservationView::from).collect(),
    })
}

pub async fn cancel(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = async {
        refuse_if_closed(&state)?;
        let ticket = auth::resident(&request, &state)?;
        cancel_for(&state, ticket, &path).await
    }
    .await;
    let outcome = match &result {
        Ok(_) => "committed",
        Err(error) => error.code(),
    };
    metrics::counter!(telemetry::CANCEL_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    Ok(HttpResponse::Ok().json(result?))
}
