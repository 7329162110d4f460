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
use crate::telemetry::Outcome as Counted;

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

/// A booking's body, read only when booking is open. A refusal still drains
/// the small, bounded body: an unread body makes actix close the connection,
/// and a stop must stay cheap.
pub async fn booking_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, ApiError> {
    if let Err(closed) = state.booking.refuse_if_closed() {
        let _ = body::read(request, payload, body::BODY_BYTES_MAX).await;
        return Err(ApiError::from(closed));
    }
    body::read(request, payload, body::BODY_BYTES_MAX).await
}

/// How a booking call ended: whether it committed a reservation (whose
/// audit entry, if any, was committed with it) and the answer.
pub struct Booked {
    pub committed: bool,
    pub response: HttpResponse,
}

/// Books for `caller` through the service.
pub async fn book(
    request: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    booking: Booking,
) -> Result<Booked, ApiError> {
    let command = Command::Book {
        booking,
        idempotency_key: idempotency_key(request)?,
    };
    match state.booking.execute(caller, command).await? {
        Outcome::Booked(reservation) => Ok(Booked {
            committed: true,
            response: created(&reservation),
        }),
        Outcome::Replayed(reservation) => Ok(Booked {
            committed: false,
            response: created(&reservation),
        }),
        Outcome::Cancelled { .. } => unreachable!("a booking command books"),
    }
}

/// Counts a booking call's outcome (every channel) and gives it back.
pub fn counted(result: Result<Booked, ApiError>, started: Instant) -> Result<Booked, ApiError> {
    let outcome = match &result {
        Ok(booked) if booked.committed => Counted::Committed,
        Ok(_) => Counted::Replayed,
        Err(error) => Counted::Refused(error.code()),
    };
    booking::count_booking(outcome, started);
    result
}

pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = async {
        let bytes = booking_body(&request, payload, &state).await?;
        let caller = Caller {
            ticket: auth::resident(&request, &state)?,
            channel: Channel::Web,
            audit: None,
        };
        let booking = body::parse_json::<BookingBody>(&request, &bytes)?.parse()?;
        book(&request, &state, &caller, booking).await
    }
    .await;
    counted(result, started).map(|booked| booked.response)
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

/// Cancels through the booking service and counts it (every channel).
pub async fn cancel_through_service(
    state: &AppState,
    caller: impl std::future::Future<Output = Result<Caller, ApiError>>,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let result: Result<CancelView, ApiError> = async {
        state.booking.refuse_if_closed()?;
        // Not begun until now: a stopped service refuses before the caller
        // is even identified.
        let caller = caller.await?;
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
        Ok(_) => Counted::Committed,
        Err(error) => Counted::Refused(error.code()),
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
        async {
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
