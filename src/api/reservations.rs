//! A resident's reservations: book, list, get, cancel.
//!
//! Booking path: kill switch (before any other work) → authenticate → parse →
//! venue and day exist and are central → claim the dose → the venue-day's
//! actor decides and group-commits → `201` only after the commit.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth;
use super::problem::ApiError;
use super::views::{ReservationList, ReservationView};
use super::{AppState, body};
use crate::domain::{
    BookingError, BookingMode, BookingRequest, Channel, Dose, ReservationId, SlotTime,
    TicketNumber, VenueDayKey, VenueId, municipality_offset, parse_date,
};
use crate::telemetry;

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

fn refuse_if_closed(state: &AppState) -> Result<(), ApiError> {
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
) -> Result<crate::domain::Reservation, ApiError> {
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
    if state.catalog.day(&key).is_none() {
        return Err(BookingError::NotFound.into());
    }
    let claim = state.residents.claim(&ticket, dose)?;
    let request = BookingRequest {
        ticket_number: ticket,
        time,
        dose: claim.dose(),
        access_code: booking.access_code,
        channel,
        now: now(),
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

pub async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = async {
        refuse_if_closed(&state)?;
        let ticket = auth::resident(&request, &state)?;
        let booking: BookingBody = body::json(&request, payload).await?;
        book_for(&state, ticket, booking, Channel::Web).await
    }
    .await;
    match result {
        Ok(reservation) => {
            count_booking("committed", started);
            Ok(HttpResponse::Created()
                .insert_header((
                    header::LOCATION,
                    format!("/v1/reservations/{}", reservation.id),
                ))
                .json(ReservationView::from(&reservation)))
        }
        Err(error) => {
            count_booking(error.code(), started);
            Err(error)
        }
    }
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

/// Cancels one of `ticket`'s reservations through its venue-day's actor.
pub async fn cancel_for(
    state: &AppState,
    ticket: TicketNumber,
    id: &str,
) -> Result<crate::domain::Reservation, ApiError> {
    let reservation = ReservationId::parse(id)
        .and_then(|id| state.residents.reservation_of(&ticket, id))
        .ok_or_else(ApiError::not_found)?;
    let handle = state
        .registry
        .handle(&reservation.venue_day())
        .ok_or(BookingError::Overloaded)?;
    Ok(handle.cancel(reservation.id, ticket, now()).await?)
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
    Ok(HttpResponse::Ok().json(ReservationView::from(&result?)))
}
