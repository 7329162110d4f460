//! `POST /v1/admin/residents` (admin): a JSON array or CSV of up to
//! `IMPORT_RECORDS_MAX` residents. Bad records are reported by line and
//! skipped; the good ones are stored in one transaction, then indexed.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth;
use super::body::{self, IMPORT_BODY_BYTES_MAX};
use super::codes::ErrorCode;
use super::problem::ApiError;
use crate::csv_text::LineCounter;
use crate::domain::{
    DOSE_MAX, DomainError, Dose, DoseRecord, Resident, TicketNumber, Vaccine, parse_date,
};

/// Most records in one import call (API.md).
pub const IMPORT_RECORDS_MAX: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryRecord {
    dose: u8,
    date: String,
    vaccine: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResidentRecord {
    ticket_number: String,
    birth_date: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    high_risk: bool,
    #[serde(default)]
    history: Vec<HistoryRecord>,
}

/// A record with its line (JSON: 1-based position; CSV: file line), or the
/// code of why it could not even be read.
type NumberedRecord = (usize, Result<ResidentRecord, ErrorCode>);

#[derive(Serialize)]
struct Rejected {
    line: usize,
    #[serde(serialize_with = "code_name")]
    code: ErrorCode,
    /// For `invalid_text`: the column (CSV) or member (JSON) that holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

fn code_name<S: serde::Serializer>(code: &ErrorCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(code.as_str())
}

#[derive(Serialize)]
struct ImportReport {
    imported: usize,
    updated: usize,
    rejected: Vec<Rejected>,
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

fn to_resident(record: ResidentRecord, today: chrono::NaiveDate) -> Result<Resident, DomainError> {
    let birth_date = parse_date(&record.birth_date).map_err(|_| DomainError::InvalidBirthDate)?;
    let history = record
        .history
        .iter()
        .map(|h| {
            Ok(DoseRecord {
                dose: Dose::new(h.dose)?,
                date: parse_date(&h.date)?,
                vaccine: Vaccine::parse(&h.vaccine)?,
            })
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    Resident {
        ticket_number: TicketNumber::parse(&record.ticket_number)?,
        birth_date,
        name: record.name,
        email: non_empty(record.email),
        phone: non_empty(record.phone),
        high_risk: record.high_risk,
        history,
    }
    .validated(today)
}

/// JSON: one record per array element; `line` is its 1-based position.
fn records_from_json(body: &[u8]) -> Result<Vec<NumberedRecord>, ApiError> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_json(format!("expected a JSON array of residents: {e}")))?;
    check_count(values.len())?;
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let parsed = serde_json::from_value(value).map_err(|_| ErrorCode::InvalidRecord);
            (i + 1, parsed)
        })
        .collect())
}

/// CSV with a header row: `ticket_number,birth_date,name,email,phone,high_risk`
/// then `dose1_date,dose1_vaccine,dose2_date,…`. `line` is the file's line.
fn records_from_csv(body: &[u8]) -> Result<Vec<NumberedRecord>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|_| ApiError::invalid_json("the CSV header row could not be read"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(ticket), Some(birth), Some(name)) = (
        column("ticket_number"),
        column("birth_date"),
        column("name"),
    ) else {
        return Err(ApiError::invalid_json(
            "the CSV header must name ticket_number, birth_date and name",
        ));
    };
    let (email, phone, risk) = (column("email"), column("phone"), column("high_risk"));
    let doses: Vec<(u8, Option<usize>, Option<usize>)> = (1..=DOSE_MAX)
        .map(|d| {
            (
                d,
                column(&format!("dose{d}_date")),
                column(&format!("dose{d}_vaccine")),
            )
        })
        .collect();
    let mut records = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut lines = LineCounter::new(body);
    loop {
        let line = match reader.read_record(&mut row) {
            Ok(true) => lines.line_at(row.position()),
            Ok(false) => break,
            Err(error) if error.is_io_error() => break,
            Err(error) => {
                check_count(records.len() + 1)?;
                records.push((
                    lines.line_at(error.position()),
                    Err(ErrorCode::InvalidRecord),
                ));
                continue;
            }
        };
        check_count(records.len() + 1)?;
        let field = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("").to_owned();
        let high_risk = match field(risk).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" => Ok(false),
            "true" | "1" | "yes" => Ok(true),
            _ => Err(ErrorCode::InvalidHighRisk),
        };
        let history = doses
            .iter()
            .filter(|(_, date, _)| !field(*date).is_empty())
            .map(|&(dose, date, vaccine)| HistoryRecord {
                dose,
                date: field(date),
                vaccine: field(vaccine),
            })
            .collect();
        let record = high_risk.map(|high_risk| ResidentRecord {
            ticket_number: field(Some(ticket)),
            birth_date: field(Some(birth)),
            name: field(Some(name)),
            email: Some(field(email)),
            phone: Some(field(phone)),
            high_risk,
            history,
        });
        records.push((line, record));
    }
    Ok(records)
}

fn check_count(count: usize) -> Result<(), ApiError> {
    if count > IMPORT_RECORDS_MAX {
        return Err(ApiError::new(
            ErrorCode::TooManyRecords,
            format!("import at most {IMPORT_RECORDS_MAX} residents per call"),
        ));
    }
    Ok(())
}

pub async fn import(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[])?;
    let result = import_unaudited(&request, payload, &state).await;
    let target = crate::store::AuditTarget::default();
    super::audit::recorded(&state, &staff, "admin.residents_import", target, result).await
}

async fn import_unaudited(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let _permit = state.imports.enter().ok_or_else(ApiError::overloaded)?;
    let body = body::read(request, payload, IMPORT_BODY_BYTES_MAX).await?;
    let records = match body::media_type(request).as_deref() {
        Some("text/csv") => records_from_csv(&body)?,
        Some("application/json") | None => records_from_json(&body)?,
        Some(_) => {
            return Err(ApiError::unsupported_media_type(
                "application/json or text/csv",
            ));
        }
    };
    let today = crate::clock::today();
    let mut good = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (line, record) in records {
        match record.map(|r| to_resident(r, today)) {
            Ok(Ok(resident)) => good.push(resident),
            Ok(Err(error)) => rejected.push(Rejected {
                line,
                code: error.into(),
                field: error.field(),
            }),
            Err(code) => rejected.push(Rejected {
                line,
                code,
                field: None,
            }),
        }
    }
    let new_tickets = good
        .iter()
        .filter(|r| !state.residents.contains(&r.ticket_number))
        .count();
    if !state.residents.has_room_for(new_tickets) {
        return Err(ApiError::new(
            ErrorCode::TooManyResidents,
            "this server holds as many residents as it may",
        ));
    }
    state.store.put_residents(good.clone()).await?;
    let counts = state.residents.upsert_residents(good);
    tracing::info!(
        imported = counts.imported,
        updated = counts.updated,
        rejected = rejected.len(),
        "residents imported"
    );
    Ok(HttpResponse::Ok().json(ImportReport {
        imported: counts.imported,
        updated: counts.updated,
        rejected,
    }))
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Bytes a ward's spreadsheet, a careless clerk or an attacker might
    /// send as a CSV import: UTF-8 with and without BOM, Shift_JIS (broken
    /// or not), quoted fields with line breaks, CR, NUL, stray quotes.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let cell = prop_oneof![
            "[0-9]{0,12}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
            "\\PC{0,12}",
            "\"[^\"]{0,8}(\r?\n)?[^\"]{0,8}\"",
            Just("=HYPERLINK(\"x\")".to_owned()),
            Just("\u{202E}名前".to_owned()),
        ];
        let row = prop::collection::vec(cell, 0..8).prop_map(|cells| cells.join(","));
        let text = (prop::collection::vec(row, 0..12), prop::bool::ANY).prop_map(|(rows, crlf)| {
            let mut text = String::from(
                "ticket_number,birth_date,name,email,phone,high_risk,dose1_date,dose1_vaccine\n",
            );
            text.push_str(&rows.join(if crlf { "\r\n" } else { "\n" }));
            text
        });
        prop_oneof![
            text.clone().prop_map(String::into_bytes),
            text.clone()
                .prop_map(|t| [crate::csv_text::UTF8_BOM, t.as_bytes()].concat()),
            text.prop_map(|t| encoding_rs::SHIFT_JIS.encode(&t).0.into_owned()),
            prop::collection::vec(any::<u8>(), 0..400),
        ]
    }

    proptest! {
        /// Never a panic; every row is a record or a rejection, named by a
        /// line that is in the file.
        #[test]
        fn any_csv_is_read_row_by_row_without_a_panic(bytes in csv_bytes()) {
            // Lines end with LF, CRLF or a lone CR.
            let lines = bytes
                .iter()
                .enumerate()
                .filter(|&(i, b)| *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
                .count()
                + 1;
            if let Ok(records) = records_from_csv(&bytes) {
                for (line, _) in &records {
                    prop_assert!((2..=lines).contains(line), "line {line} of {lines}");
                }
                let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
                for (_, record) in records {
                    // What is stored never holds a control character.
                    if let Ok(Ok(resident)) = record.map(|r| to_resident(r, today)) {
                        prop_assert!(!resident.name.chars().any(crate::domain::is_forbidden_in_text));
                    }
                }
            }
        }

        #[test]
        fn any_json_body_is_read_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = records_from_json(&bytes);
        }
    }
}
