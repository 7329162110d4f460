//! Sets a run's scenario up through the admin API, and audits the server
//! afterwards through the staff roster and availability.

use std::collections::HashSet;
use std::net::SocketAddr;

use anyhow::{Context, bail, ensure};
use hyper::Method;
use serde_json::{Value, json};

use crate::client::Connection;

/// Records per import call (the API's own limit).
const IMPORT_CHUNK: u64 = 10_000;
/// Slots per venue-day (a mass venue's day: 20 slots of 15 minutes).
pub const SLOTS_PER_DAY: u64 = 20;

/// What one run creates on the server. Its venue ids and ticket range are
/// its own, so runs against one server do not collide.
pub struct Scenario {
    pub run_id: String,
    pub venue_days: u64,
    pub residents: u64,
    pub first_ticket: u64,
    pub date: String,
    pub capacity_per_slot: u64,
}

impl Scenario {
    pub fn venue_id(&self, day: u64) -> String {
        format!("lt-{}-{day:04}", self.run_id)
    }

    pub fn ticket(&self, resident: u64) -> String {
        format!("{:010}", self.first_ticket + resident)
    }

    pub fn slot_time(slot: u64) -> String {
        let minutes = 9 * 60 + slot * 15;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }

    /// Resident `i` books venue-day `i mod D`, slot `(i / D) mod S`: even fill.
    pub fn booking_body(&self, resident: u64) -> bytes::Bytes {
        let day = resident % self.venue_days;
        let slot = (resident / self.venue_days) % SLOTS_PER_DAY;
        // Ids, dates and times need no escaping.
        format!(
            r#"{{"venue_id":"{}","date":"{}","time":"{}"}}"#,
            self.venue_id(day),
            self.date,
            Self::slot_time(slot)
        )
        .into()
    }

    pub fn capacity_total(&self) -> u64 {
        self.capacity_per_slot * SLOTS_PER_DAY * self.venue_days
    }
}

async fn expect_ok(
    connection: &mut Connection,
    method: Method,
    path: &str,
    key: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let answer = connection
        .send(
            method.clone(),
            path,
            Some(key),
            Some(serde_json::to_vec(&body)?),
        )
        .await
        .with_context(|| format!("{method} {path}"))?;
    if !(200..300).contains(&answer.status) {
        bail!(
            "{method} {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
}

/// Venues, one day each, and the residents, through the admin API.
pub async fn set_up(
    address: SocketAddr,
    admin_key: &str,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let mut connection = Connection::new(address);
    for day in 0..scenario.venue_days {
        let venue = scenario.venue_id(day);
        expect_ok(
            &mut connection,
            Method::PUT,
            &format!("/v1/admin/venues/{venue}"),
            admin_key,
            json!({"name": format!("Load test venue {day}"), "kind": "mass", "booking": "central",
                "address": "", "phone": "", "vaccines": ["moderna"]}),
        )
        .await?;
        let slots: Vec<Value> = (0..SLOTS_PER_DAY)
            .map(
                |s| json!({"time": Scenario::slot_time(s), "capacity": scenario.capacity_per_slot}),
            )
            .collect();
        expect_ok(
            &mut connection,
            Method::PUT,
            &format!("/v1/admin/venues/{venue}/days/{}", scenario.date),
            admin_key,
            json!({"vaccine": "moderna", "slots": slots}),
        )
        .await?;
    }
    let mut start = 0;
    while start < scenario.residents {
        let end = (start + IMPORT_CHUNK).min(scenario.residents);
        let records: Vec<Value> = (start..end)
            .map(|i| {
                // Everyone has an address, so a run with mail on queues
                // mail for every booking (the most it can cost).
                json!({"ticket_number": scenario.ticket(i), "birth_date": "1960-01-01",
                "name": "負荷 試験", "email": format!("resident{i}@example.jp")})
            })
            .collect();
        let report = expect_ok(
            &mut connection,
            Method::POST,
            "/v1/admin/residents",
            admin_key,
            Value::Array(records),
        )
        .await?;
        ensure!(
            report["rejected"] == json!([]),
            "import rejected records: {report}"
        );
        start = end;
    }
    Ok(())
}

/// What the audit found.
pub struct AuditFindings {
    pub stored: usize,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub used_capacity: u64,
}

/// Reads back every venue-day of the run: its roster (what is stored) and
/// its availability (what the counters say).
/// What an audit of a run needs, written after the run so that a restarted
/// server can be audited against it (`--audit-record`, `--audit-from`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub run_id: String,
    pub venue_days: u64,
    pub date: String,
    /// Every reservation id answered `201`.
    pub created: Vec<String>,
}

impl AuditRecord {
    pub fn of(scenario: &Scenario, created: &HashSet<String>) -> Self {
        let mut created: Vec<String> = created.iter().cloned().collect();
        created.sort();
        Self {
            run_id: scenario.run_id.clone(),
            venue_days: scenario.venue_days,
            date: scenario.date.clone(),
            created,
        }
    }

    /// The part of the run's scenario that the audit reads.
    pub fn scenario(&self) -> Scenario {
        Scenario {
            run_id: self.run_id.clone(),
            venue_days: self.venue_days,
            residents: 0,
            first_ticket: 0,
            date: self.date.clone(),
            capacity_per_slot: 0,
        }
    }
}

impl AuditFindings {
    /// What is wrong, if `committed` bookings were answered `201`.
    pub fn failures(&self, committed: u64) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.missing.is_empty() {
            failures.push(format!(
                "{} answered 201 but not stored",
                self.missing.len()
            ));
        }
        if !self.extra.is_empty() {
            failures.push(format!("{} stored but not answered 201", self.extra.len()));
        }
        if self.used_capacity != committed {
            failures.push(format!(
                "used capacity {} ≠ {committed} answered 201",
                self.used_capacity
            ));
        }
        failures
    }
}

pub async fn audit(
    address: SocketAddr,
    staff_key: &str,
    scenario: &Scenario,
    created: &HashSet<String>,
) -> anyhow::Result<AuditFindings> {
    // Availability may lag commits by up to a second (API.md): with several
    // processes, one that does not own a day shows it as it last heard.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut connection = Connection::new(address);
    let mut stored = HashSet::new();
    let mut used_capacity = 0;
    for day in 0..scenario.venue_days {
        let venue = scenario.venue_id(day);
        let path = format!("/v1/staff/venues/{venue}/days/{}/roster", scenario.date);
        let answer = connection
            .send_accepting_json(&path, staff_key)
            .await
            .with_context(|| format!("GET {path}"))?;
        ensure!(answer.status == 200, "roster {path}: {}", answer.status);
        let roster: Value = serde_json::from_slice(&answer.body)?;
        for row in roster["rows"].as_array().context("roster rows")? {
            if row["status"] == "booked" {
                stored.insert(row["reservation_id"].as_str().context("id")?.to_owned());
            }
        }
        // With a credential: built for this request, not the public
        // prepared bytes, which may lag the last commits by a second more.
        let path = format!("/v1/availability?date={}&venue_id={venue}", scenario.date);
        let answer = connection
            .send(Method::GET, &path, Some(staff_key), None)
            .await?;
        let availability: Value = serde_json::from_slice(&answer.body)?;
        for slot in availability["days"][0]["slots"]
            .as_array()
            .context("slots")?
        {
            used_capacity += slot["capacity"].as_u64().context("capacity")?
                - slot["remaining"].as_u64().context("remaining")?;
        }
    }
    Ok(AuditFindings {
        stored: stored.len(),
        missing: created.difference(&stored).cloned().collect(),
        extra: stored.difference(created).cloned().collect(),
        used_capacity,
    })
}
