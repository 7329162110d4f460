//! The audit log: written for every staff call that changes or reads what a
//! ward must be able to account for (API.md "Audit log"), before its answer
//! is sent; read by `GET /v1/admin/audit` (admin only: it names residents).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{self, Staff};
use super::problem::ApiError;
use crate::csv_text::CsvAnswer;
use crate::domain::Actor;
use crate::store::{AUDIT_PAGE_MAX, AuditCursor, AuditEntry, AuditQuery, AuditTarget};

/// `limit` when none is given.
pub const AUDIT_PAGE_DEFAULT: usize = 100;

/// `"<status> <code or 'ok'>"` of an answer.
pub fn outcome_of(result: &Result<HttpResponse, ApiError>) -> String {
    match result {
        Ok(response) => outcome_ok(response.status()),
        Err(error) => format!("{} {}", error.status().as_u16(), error.code().as_str()),
    }
}

/// `"<status> ok"`: the outcome of a call answered with `status`.
pub fn outcome_ok(status: actix_web::http::StatusCode) -> String {
    format!("{} ok", status.as_u16())
}

/// Writes the entry of a staff call with its answer's outcome, then gives the
/// answer back. If the entry cannot be written, the answer is `503`: nothing
/// is answered that the log does not hold.
pub async fn recorded(
    state: &AppState,
    staff: &Staff,
    action: &str,
    target: AuditTarget,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let entry = AuditEntry::new(
        staff.actor.clone(),
        staff.role,
        action,
        target,
        outcome_of(&result),
    );
    state.store.append_audit(entry).await?;
    metrics::counter!(crate::telemetry::AUDIT_ENTRIES_TOTAL, "written" => "before_answer")
        .increment(1);
    result
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Serialize)]
struct TargetView {
    #[serde(skip_serializing_if = "Option::is_none")]
    venue_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
}

#[derive(Serialize)]
struct EntryView {
    id: String,
    at: String,
    actor: String,
    role: &'static str,
    action: String,
    target: TargetView,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl From<&AuditEntry> for EntryView {
    fn from(entry: &AuditEntry) -> Self {
        let target = &entry.target;
        Self {
            id: entry.cursor().to_text(),
            at: entry.at.to_rfc3339(),
            actor: entry.actor.to_string(),
            role: entry.role.as_str(),
            action: entry.action.clone(),
            target: TargetView {
                venue_id: target.venue_id.as_ref().map(|v| v.to_string()),
                date: target.date.map(|d| d.to_string()),
                reservation_id: target.reservation_id.map(|r| r.to_string()),
                ticket_number: target.ticket_number.map(|t| t.expose().to_owned()),
                account_id: target.account_id.as_ref().map(|a| a.to_string()),
            },
            outcome: entry.outcome.clone(),
            detail: entry.detail.clone(),
        }
    }
}

#[derive(Serialize)]
struct AuditPageView {
    entries: Vec<EntryView>,
    next: Option<String>,
}

fn instant(
    text: &Option<String>,
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, ApiError> {
    text.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::invalid_query(format!("{name} must be an RFC 3339 instant")))
        })
        .transpose()
}

fn query_of(params: &AuditParams) -> Result<AuditQuery, ApiError> {
    let limit = params.limit.unwrap_or(AUDIT_PAGE_DEFAULT);
    if limit == 0 || limit > AUDIT_PAGE_MAX {
        return Err(ApiError::invalid_query(format!(
            "limit must be from 1 to {AUDIT_PAGE_MAX}"
        )));
    }
    let actor = params
        .actor
        .as_deref()
        .map(|a| {
            Actor::parse(a)
                .ok_or_else(|| ApiError::invalid_query("actor must be account:<id> or env:<role>"))
        })
        .transpose()?;
    let after = params
        .after
        .as_deref()
        .map(|c| {
            AuditCursor::parse(c)
                .ok_or_else(|| ApiError::invalid_query("after must be a `next` cursor"))
        })
        .transpose()?;
    Ok(AuditQuery {
        since: instant(&params.since, "since")?,
        until: instant(&params.until, "until")?,
        actor,
        action: params.action.clone(),
        after,
        limit,
    })
}

fn wants_csv(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"))
}

const CSV_HEADER: [&str; 11] = [
    "id",
    "at",
    "actor",
    "role",
    "action",
    "venue_id",
    "date",
    "reservation_id",
    "ticket_number",
    "account_id",
    "outcome",
];

fn cell(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// The rows as a CSV answer (a BOM, no cell a spreadsheet runs).
fn csv_of(entries: &[EntryView]) -> Vec<u8> {
    let mut answer = CsvAnswer::new();
    answer.row(CSV_HEADER);
    for e in entries {
        let t = &e.target;
        answer.row([
            e.id.as_str(),
            &e.at,
            &e.actor,
            e.role,
            &e.action,
            cell(&t.venue_id),
            cell(&t.date),
            cell(&t.reservation_id),
            cell(&t.ticket_number),
            cell(&t.account_id),
            &e.outcome,
        ]);
    }
    answer.into_bytes()
}

/// `GET /v1/admin/audit`: oldest first, `next` is the cursor of the next
/// page (`after=`), or `null` at the end. `Accept: text/csv` gives the same
/// rows as CSV, with the cursor in a `Link`-like `X-Next-Cursor` header.
pub async fn list(
    request: HttpRequest,
    params: Result<web::Query<AuditParams>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[])?;
    if staff.role != crate::domain::Role::Admin {
        return Err(ApiError::forbidden());
    }
    let params = params.map_err(|e| ApiError::invalid_query(e.to_string()))?;
    let page = state.store.read_audit(query_of(&params)?).await?;
    let entries: Vec<EntryView> = page.entries.iter().map(EntryView::from).collect();
    let next = page.next.map(AuditCursor::to_text);
    let mut response = HttpResponse::Ok();
    if let Some(next) = &next {
        response.insert_header(("x-next-cursor", next.as_str()));
    }
    if wants_csv(&request) {
        return Ok(response
            .content_type("text/csv; charset=utf-8")
            .body(csv_of(&entries)));
    }
    Ok(response.json(AuditPageView { entries, next }))
}
