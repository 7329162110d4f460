//! Venue staff: check-in at the door, and the roster of a venue-day (staff, admin). CSV by default or
//! with `Accept: text/csv`; JSON with `Accept: application/json`. Holds
//! personal data: only these roles get it, and it is never logged.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::AppState;
use super::auth::{self, Role};
use super::problem::ApiError;
use crate::csv_text::CsvAnswer;
use crate::domain::{
    CheckInError, Reservation, ReservationStatus, TicketNumber, VenueDayKey, VenueId, one_line,
    parse_date, prior_dose_received, received_history,
};
use crate::store::{AuditDraft, AuditTarget};
use crate::telemetry::Outcome;

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
        // On one line and in reading order, whenever it was stored.
        name: resident
            .as_ref()
            .map(|r| one_line(&r.name).into_owned())
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
    let result = roster_unaudited(&request, &staff, &venue_id, &date, &state).await;
    super::audit::recorded(&state, &staff, "staff.roster", target, result).await
}

async fn roster_unaudited(
    request: &HttpRequest,
    staff: &auth::Staff,
    venue_id: &str,
    date: &str,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let key = VenueDayKey {
        venue_id: VenueId::parse(venue_id)?,
        date: parse_date(date)?,
    };
    staff.at_venue(&key.venue_id)?;
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
    let mut answer = CsvAnswer::new();
    answer.row(ROSTER_COLUMNS);
    for row in &rows {
        answer.row([
            row.time.as_str(),
            &row.reservation_id,
            &row.ticket_number,
            &row.name,
            &row.birth_date,
            &row.dose.to_string(),
            row.vaccine,
            row.status,
            row.channel,
        ]);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(answer.into_bytes()))
}

/// Digits of a ticket number printed after the municipality code.
const CODE_WITH_MUNICIPALITY_DIGITS: usize = 16;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInBody {
    venue_id: String,
    date: String,
    /// What the tablet scanned: the ticket number, or the municipality
    /// code followed by it.
    code: String,
}

/// The ticket number in a scanned code: 10 digits, or 16 that start with
/// this municipality's code.
fn ticket_in_code(code: &str, municipality: Option<&str>) -> Result<TicketNumber, CheckInError> {
    let code = code.trim();
    // Digits only, before any split by position: a split inside a
    // multi-byte character would panic.
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckInError::InvalidCode);
    }
    if code.len() == CODE_WITH_MUNICIPALITY_DIGITS {
        let (prefix, ticket) = code.split_at(CODE_WITH_MUNICIPALITY_DIGITS - 10);
        return match municipality {
            Some(ours) if ours == prefix => {
                TicketNumber::parse(ticket).map_err(|_| CheckInError::InvalidCode)
            }
            _ => Err(CheckInError::InvalidCode),
        };
    }
    TicketNumber::parse(code).map_err(|_| CheckInError::InvalidCode)
}

/// `POST /v1/staff/checkins`: the resident's booked reservation of that
/// venue-day becomes attended, and the dose counts as received from then on
/// (the attended reservation is its durable record). Never dose N without
/// dose N-1 received. Keeps working while the kill switch is engaged.
pub async fn check_in(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[Role::Staff])?;
    let mut target = AuditTarget::default();
    let result: Result<HttpResponse, ApiError> = async {
        let body: CheckInBody = super::body::json(&request, payload).await?;
        let key = VenueDayKey {
            venue_id: VenueId::parse(&body.venue_id)?,
            date: parse_date(&body.date)?,
        };
        target.venue_id = Some(key.venue_id.clone());
        target.date = Some(key.date);
        staff.at_venue(&key.venue_id)?;
        let ticket = ticket_in_code(&body.code, state.municipality_code.as_deref())?;
        target.ticket_number = Some(ticket);
        if state.catalog.day(&key).is_none() {
            return Err(CheckInError::NoReservation.into());
        }
        // Never dose N before dose N-1. Whether there is a booked
        // reservation here at all (or it is already attended) is the
        // venue-day actor's decision.
        let reservations = state.residents.reservations_of(&ticket);
        let mut booked = reservations
            .iter()
            .find(|r| r.venue_day() == key && r.status == ReservationStatus::Booked)
            .cloned();
        if booked.is_none() && state.registry.shares_days() {
            // Booked through another process, this one's resident state may
            // not know it: the day's owner does. Its dose is then checked
            // against the history this process knows, so that an unknown
            // previous dose refuses the check-in (never dose N on a dose
            // N-1 nobody here can see).
            booked = state
                .registry
                .reservations(&key)
                .await
                .map_err(|_| CheckInError::StoreUnavailable)?
                .into_iter()
                .find(|r| r.ticket_number == ticket && r.status == ReservationStatus::Booked);
        }
        if let (Some(booked), Some(resident)) = (booked, state.residents.resident(&ticket)) {
            let history = received_history(&resident, &reservations);
            if !prior_dose_received(&history, booked.dose) {
                return Err(CheckInError::PriorDoseMissing.into());
            }
        }
        let draft = AuditDraft {
            actor: staff.actor.clone(),
            role: staff.role,
            action: "staff.checkin".into(),
            target: target.clone(),
            outcome_if_committed: "200 ok".into(),
        };
        let attended = state
            .registry
            .check_in(&key, ticket, crate::clock::now(), Some(draft))
            .await?;
        Ok(HttpResponse::Ok().json(super::views::ReservationView::from(&attended)))
    }
    .await;
    let outcome = match &result {
        Ok(_) => Outcome::Attended,
        Err(error) => Outcome::Refused(error.code()),
    };
    metrics::counter!(crate::telemetry::CHECKIN_REQUESTS_TOTAL, "outcome" => outcome.label())
        .increment(1);
    match result {
        // Its audit entry committed with the check-in.
        Ok(answer) => Ok(answer),
        Err(error) => {
            super::audit::recorded(&state, &staff, "staff.checkin", target, Err(error)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_digits_or_sixteen_starting_with_our_municipality() {
        let ours = Some("131148");
        assert!(ticket_in_code("1311480001", ours).is_ok());
        assert!(ticket_in_code("1311481311480001", ours).is_ok());
        assert_eq!(
            ticket_in_code("1311491311480001", ours).err(),
            Some(CheckInError::InvalidCode),
            "another municipality's code"
        );
        assert_eq!(
            ticket_in_code("1311481311480001", None).err(),
            Some(CheckInError::InvalidCode),
            "no municipality configured"
        );
        for bad in [
            "",
            "131148000",
            "13114800011",
            "13114800x1",
            "１３１１４８０００１",
        ] {
            assert!(ticket_in_code(bad, ours).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever a scanner types: never a panic, and a ticket only from
        /// 10 digits, or 16 that start with this municipality's code.
        #[test]
        fn any_scanned_code_is_a_ticket_or_invalid(code in "\\PC{0,20}|[0-9]{9,17}") {
            let ours = Some("131148");
            if let Ok(ticket) = ticket_in_code(&code, ours) {
                let digits = code.trim();
                proptest::prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                proptest::prop_assert!(digits.len() == 10 || digits.starts_with("131148"));
                proptest::prop_assert!(digits.ends_with(ticket.expose()));
            }
        }
    }
}
