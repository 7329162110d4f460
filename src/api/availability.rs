//! `GET /v1/availability` (public), served from the published snapshots.
//! Direct-booking venues are not listed (they cannot be booked here), and
//! restricted days only with their access code.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::problem::ApiError;
use super::public_reads;
use super::views::{SlotView, slot_views};
use crate::catalog::AvailabilityQuery;
use crate::domain::{BookingMode, Vaccine, VenueId, parse_date};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    date: Option<String>,
    vaccine: Option<String>,
    venue_id: Option<String>,
    access_code: Option<String>,
}

#[derive(Serialize)]
struct Availability {
    days: Vec<DayAvailability>,
}

#[derive(Serialize)]
struct DayAvailability {
    venue_id: String,
    venue_name: String,
    date: String,
    vaccine: &'static str,
    /// The booking window, when the day has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closes_at: Option<String>,
    slots: Vec<SlotView>,
}

/// Operators and admins also see the held places.
fn sees_held(request: &HttpRequest, state: &AppState) -> bool {
    if request.headers().get(header::AUTHORIZATION).is_none() {
        return false;
    }
    matches!(
        super::auth::caller(request, state),
        Ok(super::auth::Caller::Staff(staff))
            if matches!(staff.role, crate::domain::Role::Operator | crate::domain::Role::Admin)
    )
}

pub async fn get(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<Params>::from_query(request.query_string())
        .map_err(|e| ApiError::invalid_query(e.to_string()))?
        .into_inner();
    let date = params
        .date
        .as_deref()
        .ok_or_else(|| ApiError::invalid_query("date is required (YYYY-MM-DD)"))
        .and_then(|d| parse_date(d).map_err(ApiError::from))?;
    let asked = Asked {
        date,
        vaccine: params.vaccine.as_deref().map(Vaccine::parse).transpose()?,
        venue_id: params.venue_id.as_deref().map(VenueId::parse).transpose()?,
        access_code: params.access_code,
    };
    if request.headers().get(header::AUTHORIZATION).is_none() {
        // The same for everyone: prepared bytes, at most a second old.
        let variant = asked.variant();
        let built_by = state.clone();
        let prepared = state.public_reads.get_or_build(&variant, move || {
            availability_json(&built_by, &asked.query(), false)
        });
        return Ok(public_reads::answer(&request, &prepared));
    }
    let show_held = sees_held(&request, &state);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(availability_json(&state, &asked.query(), show_held)))
}

/// A parsed availability query, owned (a prepared variant is rebuilt from
/// it in the background).
struct Asked {
    date: chrono::NaiveDate,
    vaccine: Option<Vaccine>,
    venue_id: Option<VenueId>,
    access_code: Option<String>,
}

impl Asked {
    fn query(&self) -> AvailabilityQuery<'_> {
        AvailabilityQuery {
            date: self.date,
            vaccine: self.vaccine,
            venue_id: self.venue_id.as_ref(),
            access_code: self.access_code.as_deref(),
        }
    }

    /// The prepared variant's name: one per distinct query.
    fn variant(&self) -> String {
        format!(
            "availability\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            self.date,
            self.vaccine.map(Vaccine::as_str).unwrap_or(""),
            self.venue_id.as_ref().map(VenueId::as_str).unwrap_or(""),
            self.access_code.as_deref().unwrap_or("")
        )
    }
}

/// The availability document of `query`, as JSON bytes.
fn availability_json(state: &AppState, query: &AvailabilityQuery<'_>, show_held: bool) -> Vec<u8> {
    let days: Vec<DayAvailability> = state
        .catalog
        .availability(query)
        .into_iter()
        .filter(|(venue, _)| venue.booking == BookingMode::Central)
        .map(|(venue, day)| DayAvailability {
            venue_id: venue.id.to_string(),
            venue_name: venue.name.clone(),
            date: day.key.date.to_string(),
            vaccine: day.plan.vaccine.as_str(),
            opens_at: day.plan.window.opens_at.map(|t| t.to_rfc3339()),
            closes_at: day.plan.window.closes_at.map(|t| t.to_rfc3339()),
            slots: slot_views(&day, show_held),
        })
        .collect();
    serde_json::to_vec(&Availability { days }).expect("availability serialises")
}
