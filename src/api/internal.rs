//! `/internal/v1/…`: the calls one vaxslot process makes to another for a
//! venue-day the other owns (`cluster/`). Not part of the public API: a load
//! balancer must not pass `/internal/` through (the nginx example refuses
//! it), and each call needs the key derived from the shared token secret.
//! The owner serves the message with its own actor (`Registry::…_here`) and
//! never forwards it again, so two processes whose member views differ for
//! a moment cannot bounce a message between them.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::body;
use super::problem::ApiError;
use crate::actors::CancelNotice;
use crate::cluster::wire::{
    self, Answer, BookWire, BookingRefusalWire, CancelWire, CheckInWire, Malformed,
    PlanReplacedWire, PlanWire, SlotWire,
};
use crate::codes::ErrorCode;
use crate::domain::{VenueDayKey, VenueId, parse_date};
use crate::store::records::Stored;

/// Bodies of internal calls: a booking or a cancel notice listing a few
/// reservations.
pub const INTERNAL_BODY_BYTES_MAX: usize = 256 * 1024;

/// The venue-day named by the path, once the caller is known to be another
/// process of this deployment.
fn venue_day(
    request: &HttpRequest,
    state: &AppState,
    path: &(String, String),
) -> Result<VenueDayKey, ApiError> {
    let placement = state.registry.placement().ok_or_else(ApiError::not_found)?;
    let presented = super::auth::bearer(request).ok_or_else(ApiError::unauthorized)?;
    if !placement.forwarder.accepts(presented) {
        return Err(ApiError::unauthorized());
    }
    Ok(VenueDayKey {
        venue_id: VenueId::parse(&path.0)?,
        date: parse_date(&path.1)?,
    })
}

/// An internal call's JSON body, of at most `INTERNAL_BODY_BYTES_MAX`.
async fn wire_body<T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let bytes = body::read(request, payload, INTERNAL_BODY_BYTES_MAX).await?;
    body::parse_json(request, &bytes)
}

fn malformed(Malformed(what): Malformed) -> ApiError {
    ApiError::invalid_json(format!("internal call: {what}"))
}

/// `POST /internal/v1/venue-days/{venue_id}/{date}/bookings`.
pub async fn book(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = venue_day(&request, &state, &path)?;
    let wire: BookWire = wire_body(&request, payload).await?;
    let booking = wire.request().map_err(malformed)?;
    let audit = wire
        .audit
        .map(wire::audit_from_wire)
        .transpose()
        .map_err(malformed)?;
    let claim = state
        .residents
        .forwarded_claim(&booking.ticket_number, booking.dose);
    let mail = state.booking.mail_policy().filter(|_| wire.mail);
    let answer: Answer<_, BookingRefusalWire> = match state
        .registry
        .book_here(&key, booking, claim, audit, mail)
        .await
    {
        Ok(reservation) => Answer::Ok(reservation.to_record()),
        Err(refusal) => Answer::Refused(refusal.into()),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /internal/v1/venue-days/{venue_id}/{date}/cancellations`.
pub async fn cancel(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = venue_day(&request, &state, &path)?;
    let wire: CancelWire = wire_body(&request, payload).await?;
    let (id, owner) = (
        wire.reservation_id().map_err(malformed)?,
        wire.owner().map_err(malformed)?,
    );
    let audit = wire
        .audit
        .map(wire::audit_from_wire)
        .transpose()
        .map_err(malformed)?;
    let notice = match (state.booking.mail_policy(), wire.notice) {
        (Some(policy), Some(also)) => Some(CancelNotice {
            policy,
            also_cancelled: also
                .into_iter()
                .map(wire::reservation_from_wire)
                .collect::<Result<_, _>>()
                .map_err(malformed)?,
        }),
        _ => None,
    };
    let answer: Answer<_, BookingRefusalWire> = match state
        .registry
        .cancel_here(&key, id, owner, wire.now, audit, notice)
        .await
    {
        Ok(reservation) => Answer::Ok(reservation.to_record()),
        Err(refusal) => Answer::Refused(refusal.into()),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /internal/v1/venue-days/{venue_id}/{date}/check-ins`.
pub async fn check_in(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = venue_day(&request, &state, &path)?;
    let wire: CheckInWire = wire_body(&request, payload).await?;
    let owner = wire.owner().map_err(malformed)?;
    let audit = wire
        .audit
        .map(wire::audit_from_wire)
        .transpose()
        .map_err(malformed)?;
    let answer: Answer<_, ErrorCode> = match state
        .registry
        .check_in_here(&key, owner, wire.now, audit)
        .await
    {
        Ok(reservation) => Answer::Ok(reservation.to_record()),
        Err(refusal) => Answer::Refused(refusal.into()),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /internal/v1/venue-days/{venue_id}/{date}/reservations`.
pub async fn reservations(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let key = venue_day(&request, &state, &path)?;
    let answer: Answer<Vec<_>, BookingRefusalWire> =
        match state.registry.reservations_here(&key).await {
            Ok(all) => Answer::Ok(all.iter().map(Stored::to_record).collect()),
            Err(refusal) => Answer::Refused(refusal.into()),
        };
    Ok(HttpResponse::Ok().json(answer))
}

/// `PUT /internal/v1/venue-days/{venue_id}/{date}/plan`.
pub async fn replace_plan(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = venue_day(&request, &state, &path)?;
    let wire: PlanWire = wire_body(&request, payload).await?;
    let plan = wire::plan_from_wire(wire).map_err(malformed)?;
    let answer: Answer<PlanReplacedWire, ErrorCode> =
        match state.registry.replace_plan_here(&key, plan).await {
            // The actor published the new snapshot before answering.
            Ok(created) => Answer::Ok(PlanReplacedWire {
                created,
                slots: state
                    .catalog
                    .day(&key)
                    .map(|day| day.slots.iter().map(SlotWire::from).collect())
                    .unwrap_or_default(),
            }),
            Err(refusal) => Answer::Refused(refusal.into()),
        };
    Ok(HttpResponse::Ok().json(answer))
}
