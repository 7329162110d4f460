//! A resident's reservations: book, list, get, cancel.
//!
//! Thin: each endpoint turns its body into a `booking::Command` and the
//! service's `Outcome` into HTTP. Every rule (kill switch, idempotency,
//! eligibility, the venue-day's decision and commit) is in `booking/`.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth;
use super::codes::ErrorCode;
use super::problem::ApiError;
use super::views::{ReservationList, ReservationView};
use super::{AppState, body};
use crate::booking::{self, Booking, Caller, Command, Outcome};
use crate::domain::{Channel, Dose, Reservation, ReservationId, SlotTime, VenueId, parse_date};

/// Longest `Idempotency-Key` (API.md: 1–64 visible ASCII characters).
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 64;

/// The resident's booking body (API.md "Reservations").
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
    /// The booking it asks for, each field checked.
    pub fn parse(self) -> Result<Booking, ApiError> {
        Ok(Booking {
            venue_id: VenueId::parse(&self.venue_id)?,
            date: parse_date(&self.date)?,
            time: SlotTime::parse(&self.time)?,
            dose: self.dose.map(Dose::new).transpose()?,
            access_code: self.access_code,
        })
    }
}

/// The `Idempotency-Key` header, if sent: 1–64 visible ASCII characters.
pub fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= IDEMPOTENCY_KEY_LENGTH_MAX
        && bytes.iter().all(u8::is_ascii_graphic);
    if !valid {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1–64 visible ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// `201 Created` with the reservation, for a new booking or its replay.
pub fn created(reservation: &Reservation) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/reservations/{}", reservation.id),
        ))
        .json(ReservationView::from(reservation))
}

/// Answers a booking: reads the body only when booking is open (a refusal
/// still drains the small, bounded body: an unread body makes actix close the
/// connection, and a stop must stay cheap), then hands the command to the
/// booking service and counts the outcome.
pub async fn book_through_service(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    caller: impl FnOnce() -> Result<Caller, ApiError>,
    parse: impl FnOnce(&HttpRequest, &[u8]) -> Result<Booking, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = async {
        if let Err(closed) = state.booking.refuse_if_closed() {
            let _ = body::read(request, payload, body::BODY_BYTES_MAX).await;
            return Err(ApiError::from(closed));
        }
        let caller = caller()?;
        let bytes = body::read(request, payload, body::BODY_BYTES_MAX).await?;
        let booking = parse(request, &bytes)?;
        let command = Command::Book {
            booking,
            idempotency_key: idempotency_key(request)?,
        };
        match state.booking.execute(&caller, command).await? {
            Outcome::Booked(reservation) => Ok((created(&reservation), "committed")),
            Outcome::Replayed(reservation) => Ok((created(&reservation), "replayed")),
            Outcome::Cancelled { .. } => unreachable!("a booking command books"),
        }
    }
    .await;
    match result {
        Ok((response, outcome)) => {
            booking::count_booking(outcome, started);
            Ok(response)
        }
        Err(error) => {
            booking::count_booking(error.code(), started);
            Err(error)
        }
    }
}

pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    book_through_service(
        &request,
        payload,
        &state,
        || {
            Ok(Caller {
                ticket: auth::resident(&request, &state)?,
                channel: Channel::Web,
                audit: None,
            })
        },
        |request, bytes| body::parse_json::<BookingBody>(request, bytes)?.parse(),
    )
    .await
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

/// Answers a cancellation through the booking service and counts it.
pub async fn cancel_through_service(
    state: &AppState,
    caller: impl FnOnce() -> Result<Caller, ApiError>,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let result: Result<CancelView, ApiError> = async {
        state.booking.refuse_if_closed()?;
        let caller = caller()?;
        let reservation_id = ReservationId::parse(id).ok_or_else(ApiError::not_found)?;
        let command = Command::Cancel { reservation_id };
        match state.booking.execute(&caller, command).await? {
            Outcome::Cancelled {
                reservation,
                also_cancelled,
            } => Ok(CancelView {
                reservation: ReservationView::from(&reservation),
                also_cancelled: also_cancelled.iter().map(ReservationView::from).collect(),
            }),
            // A cancel command cancels.
            Outcome::Booked(_) | Outcome::Replayed(_) => {
                unreachable!("a cancel command cancels")
            }
        }
    }
    .await;
    booking::count_cancel(match &result {
        Ok(_) => "committed",
        Err(error) => error.code(),
    });
    Ok(HttpResponse::Ok().json(result?))
}

pub async fn cancel(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    cancel_through_service(
        &state,
        || {
            Ok(Caller {
                ticket: auth::resident(&request, &state)?,
                channel: Channel::Web,
                audit: None,
            })
        },
        &path,
    )
    .await
}
