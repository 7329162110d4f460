//! Venue staff: the roster of a venue-day (staff, admin). CSV by default or
//! with `Accept: text/csv`; JSON with `Accept: application/json`. Holds
//! personal data: only these roles get it, and it is never logged.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::AppState;
use super::auth::{self, Role};
use super::problem::ApiError;
use crate::domain::{
    BookingError, Reservation, ReservationStatus, VenueDayKey, VenueId, parse_date,
};

/// The roster's columns (API.md), in order.
pub const ROSTER_COLUMNS: [&str; 9] = [
    "time",
    "reservation_id",
    "ticket_number",
    "name",
    "birth_date",
    "dose",
    "vaccine",
    "status",
    "channel",
];

#[derive(Serialize)]
struct RosterRow {
    time: String,
    reservation_id: String,
    ticket_number: String,
    name: String,
    birth_date: String,
    dose: u8,
    vaccine: &'static str,
    status: &'static str,
    channel: &'static str,
}

#[derive(Serialize)]
struct Roster {
    venue_id: String,
    date: String,
    rows: Vec<RosterRow>,
}

fn wants_json(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

fn row(state: &AppState, reservation: &Reservation, day_has_passed: bool) -> RosterRow {
    let resident = state.residents.resident(&reservation.ticket_number);
    let status = match reservation.status {
        ReservationStatus::Booked if day_has_passed => "no_show",
        other => other.as_str(),
    };
    RosterRow {
        time: reservation.time.to_string(),
        reservation_id: reservation.id.to_string(),
        ticket_number: reservation.ticket_number.expose().to_owned(),
        name: resident
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        birth_date: resident
            .map(|r| r.birth_date.to_string())
            .unwrap_or_default(),
        dose: reservation.dose.number(),
        vaccine: reservation.vaccine.as_str(),
        status,
        channel: reservation.channel.as_str(),
    }
}

pub async fn roster(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[Role::Staff])?;
    let (venue_id, date) = path.into_inner();
    let target = crate::store::AuditTarget {
        venue_id: VenueId::parse(&venue_id).ok(),
        date: parse_date(&date).ok(),
        ..crate::store::AuditTarget::default()
    };
    let result = roster_unaudited(&request, &venue_id, &date, &state).await;
    super::audit::recorded(&state, &staff, "staff.roster", target, result).await
}

async fn roster_unaudited(
    request: &HttpRequest,
    venue_id: &str,
    date: &str,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let key = VenueDayKey {
        venue_id: VenueId::parse(venue_id)?,
        date: parse_date(date)?,
    };
    if state.catalog.day(&key).is_none() {
        return Err(ApiError::not_found());
    }
    let reservations = state.registry.reservations(&key).await?;
    let day_has_passed = key.date < crate::clock::today();
    let rows: Vec<RosterRow> = reservations
        .iter()
        .map(|r| row(state, r, day_has_passed))
        .collect();
    if wants_json(request) {
        return Ok(HttpResponse::Ok().json(Roster {
            venue_id: key.venue_id.to_string(),
            date: key.date.to_string(),
            rows,
        }));
    }
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let csv_failed = |_| ApiError::internal(&BookingError::StoreUnavailable);
    writer.write_record(ROSTER_COLUMNS).map_err(csv_failed)?;
    for row in &rows {
        writer.serialize(row).map_err(csv_failed)?;
    }
    let body = writer
        .into_inner()
        .map_err(|_| ApiError::internal(&BookingError::StoreUnavailable))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(body))
}
