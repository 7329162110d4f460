//! Venues and their days: `PUT /v1/admin/venues/{id}`, `GET /v1/venues`,
//! `PUT /v1/admin/venues/{id}/days/{date}` (admin).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::audit::recorded;
use super::auth;
use super::codes::ErrorCode;
use super::problem::ApiError;
use super::views::{DayView, VenueView};
use super::{AppState, body};
use crate::catalog::VENUES_MAX;
use crate::domain::{
    BookingMode, DayPlan, SlotPlan, SlotTime, Vaccine, Venue, VenueDayKey, VenueId, VenueKind,
    parse_date, parse_day_date,
};
use crate::store::AuditTarget;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VenueBody {
    name: String,
    kind: VenueKind,
    booking: BookingMode,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    vaccines: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotBody {
    time: String,
    capacity: u32,
    #[serde(default)]
    operator_hold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayBody {
    vaccine: String,
    slots: Vec<SlotBody>,
    #[serde(default)]
    access_code: Option<String>,
    #[serde(default)]
    opens_at: Option<String>,
    #[serde(default)]
    closes_at: Option<String>,
    #[serde(default)]
    hold_release_at: Option<String>,
}

/// An optional RFC 3339 instant of a day's booking window.
fn window_instant(
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, crate::domain::DomainError> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| crate::domain::DomainError::InvalidWindow)
    })
    .transpose()
}

#[derive(serde::Serialize)]
struct VenueList {
    venues: Vec<VenueView>,
}

fn created_or_replaced(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

pub async fn put_venue(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[])?;
    let target = AuditTarget {
        venue_id: VenueId::parse(&path).ok(),
        ..AuditTarget::default()
    };
    let result = put_venue_unaudited(&request, &path, payload, &state).await;
    recorded(&state, &staff, "admin.venue_put", target, result).await
}

async fn put_venue_unaudited(
    request: &HttpRequest,
    path: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let id = VenueId::parse(path)?;
    let body: VenueBody = body::json(request, payload).await?;
    let vaccines = body
        .vaccines
        .iter()
        .map(|v| Vaccine::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let venue = Venue {
        id,
        name: body.name,
        kind: body.kind,
        booking: body.booking,
        address: body.address,
        phone: body.phone,
        vaccines,
    }
    .validated()?;
    if state.catalog.venue(&venue.id).is_none() && state.catalog.venue_count() >= VENUES_MAX {
        return Err(ApiError::new(
            ErrorCode::TooManyVenues,
            format!("at most {VENUES_MAX} venues"),
        ));
    }
    let created = state.store.put_venue(venue.clone()).await?;
    let view = VenueView::from(&venue);
    state.catalog.put_venue(venue);
    Ok(HttpResponse::build(created_or_replaced(created)).json(view))
}

/// `GET /v1/venues` (public): the same for everyone, from prepared bytes.
pub async fn list_venues(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let built_by = state.clone();
    let prepared = state.public_reads.get_or_build("venues", move || {
        let venues: Vec<VenueView> = built_by
            .catalog
            .venues()
            .iter()
            .map(|v| VenueView::from(v.as_ref()))
            .collect();
        serde_json::to_vec(&VenueList { venues }).expect("venues serialise")
    });
    super::public_reads::answer(&request, &prepared)
}

/// `GET /v1/staff/venues` (staff, admin): the venues this key may work
/// at (check in, read rosters), so that a tablet offers only those.
pub async fn staff_venues(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[auth::Role::Staff])?;
    let venues: Vec<VenueView> = state
        .catalog
        .venues()
        .iter()
        .filter(|v| staff.may_use(&v.id))
        .map(|v| VenueView::from(v.as_ref()))
        .collect();
    Ok(HttpResponse::Ok().json(VenueList { venues }))
}

pub async fn put_day(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[])?;
    let (venue_id, date) = path.into_inner();
    let target = AuditTarget {
        venue_id: VenueId::parse(&venue_id).ok(),
        date: parse_date(&date).ok(),
        ..AuditTarget::default()
    };
    let result = put_day_unaudited(&request, &venue_id, &date, payload, &state).await;
    recorded(&state, &staff, "admin.day_put", target, result).await
}

async fn put_day_unaudited(
    request: &HttpRequest,
    venue_id: &str,
    date: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let key = VenueDayKey {
        venue_id: VenueId::parse(venue_id)?,
        date: parse_day_date(date, crate::clock::today())?,
    };
    let body: DayBody = body::json(request, payload).await?;
    let venue = match state.catalog.venue(&key.venue_id) {
        Some(venue) => venue,
        // Put through another process a moment ago, before this one read
        // the change: the store says.
        None => {
            let placement = state.registry.placement().ok_or_else(ApiError::not_found)?;
            let stored = placement
                .coordination
                .stored_venue(&key.venue_id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            state.catalog.put_venue(stored);
            state
                .catalog
                .venue(&key.venue_id)
                .ok_or_else(ApiError::not_found)?
        }
    };
    let vaccine = Vaccine::parse(&body.vaccine)?;
    if !venue.offers(vaccine) {
        return Err(crate::domain::DomainError::VaccineNotOffered.into());
    }
    let slots = body
        .slots
        .iter()
        .map(|s| {
            Ok(SlotPlan {
                time: SlotTime::parse(&s.time)?,
                capacity: s.capacity,
                operator_hold: s.operator_hold.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, crate::domain::DomainError>>()?;
    let window = crate::domain::BookingWindow {
        opens_at: window_instant(body.opens_at.as_deref())?,
        closes_at: window_instant(body.closes_at.as_deref())?,
        hold_release_at: window_instant(body.hold_release_at.as_deref())?,
    };
    let plan = DayPlan::with_window(vaccine, slots, body.access_code, window)?;
    let created = state.registry.replace_plan(&key, plan).await?;
    // The actor published the new snapshot before answering.
    let day = state
        .catalog
        .day(&key)
        .ok_or_else(ApiError::store_unavailable)?;
    Ok(HttpResponse::build(created_or_replaced(created)).json(DayView::from(day.as_ref())))
}
