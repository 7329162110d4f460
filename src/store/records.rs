//! The stored form of every record, apart from the domain types: what is in a
//! data directory or in Redis is exactly these serde types, converted to and
//! from `domain/` here. Refactoring `domain/` cannot change the format; a
//! change of format is a new `…V2` type here whose decoder also reads `V1`.
//!
//! Version 1 is the format of the first release (its JSON, field for field);
//! `tests/api/upgrade.rs` loads a store it wrote. Records carry no version
//! field: a record without one is version 1.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{AuditEntry, AuditTarget, KillSwitchState, StoreError};
use crate::codes::{BookingRefusal, ErrorCode};
use crate::domain::{
    Account, AccountId, Actor, BookingError, BookingMode, BookingWindow, Channel, DayPlan,
    Delivery, Dose, DoseRecord, FingerprintScheme, IdempotencyTag, KEY_HASH_BYTES, MailId,
    MailedReservation, OutboxMail, Reservation, ReservationId, ReservationStatus, Resident, Role,
    SlotPlan, SlotTime, TicketNumber, Vaccine, Venue, VenueId, VenueKind,
};

/// A domain value with a stored form.
pub trait Stored: Sized {
    type Record: Serialize + DeserializeOwned;
    fn to_record(&self) -> Self::Record;
    /// `Err` names what in the record is not valid.
    fn from_record(record: Self::Record) -> Result<Self, String>;
    /// Writes the record's JSON. Records written on every booking override
    /// it to write the same JSON without building the record first.
    fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &self.to_record()).expect("store records always serialise");
    }
}

/// The stored bytes of `value`.
pub fn encode<T: Stored>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    value.write_json(&mut out);
    out
}

/// The stored bytes of several values, as one JSON array.
pub fn encode_all<T: Stored>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 400 + 2);
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        value.write_json(&mut out);
    }
    out.push(b']');
    out
}

/// Reads a stored value; `what` names it in the error.
pub fn decode<T: Stored>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    let record: T::Record =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    T::from_record(record).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The record, if it can be read; one that cannot (a hand edit, a newer
/// release's format, a torn write) is skipped, logged with what it is and
/// counted: one bad record never stops a start, a load or a loop for every
/// other record (issue 23). `key` names the record in the log: never a
/// ticket number (pass "" for a resident). Not for a venue-day's
/// reservations: skipping one could sell its place twice, so such a day is
/// left out whole instead.
pub fn decode_or_skip<T: Stored>(bytes: &[u8], what: &'static str, key: &str) -> Option<T> {
    // Logged with where the JSON broke, never its text: a value quoted in
    // the error could be a name or a ticket number.
    let why = match serde_json::from_slice::<T::Record>(bytes) {
        Ok(record) => match T::from_record(record) {
            Ok(value) => return Some(value),
            Err(error) => error,
        },
        Err(error) => format!(
            "{:?} error at line {}, column {}",
            error.classify(),
            error.line(),
            error.column()
        ),
    };
    metrics::counter!(crate::telemetry::RECORDS_SKIPPED_TOTAL, "what" => what).increment(1);
    tracing::error!(what, key, why, "a stored record could not be read; skipped");
    None
}

/// Reads a JSON array of stored values.
pub fn decode_all<T: Stored>(bytes: &[u8], what: &str) -> Result<Vec<T>, StoreError> {
    let records: Vec<T::Record> =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    records
        .into_iter()
        .map(|r| T::from_record(r).map_err(|e| StoreError::Corrupt(format!("{what}: {e}"))))
        .collect()
}

fn invalid(field: &str) -> impl Fn(crate::domain::DomainError) -> String + '_ {
    move |error| format!("{field}: {error}")
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum VaccineV1 {
    Pfizer,
    Moderna,
}

impl From<Vaccine> for VaccineV1 {
    fn from(vaccine: Vaccine) -> Self {
        match vaccine {
            Vaccine::Pfizer => Self::Pfizer,
            Vaccine::Moderna => Self::Moderna,
        }
    }
}

impl From<VaccineV1> for Vaccine {
    fn from(vaccine: VaccineV1) -> Self {
        match vaccine {
            VaccineV1::Pfizer => Self::Pfizer,
            VaccineV1::Moderna => Self::Moderna,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueKindV1 {
    Clinic,
    Mass,
    Facility,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingModeV1 {
    Central,
    Direct,
}

#[derive(Serialize, Deserialize)]
pub struct VenueV1 {
    pub id: String,
    pub name: String,
    pub kind: VenueKindV1,
    pub booking: BookingModeV1,
    pub address: String,
    pub phone: String,
    pub vaccines: Vec<VaccineV1>,
}

impl Stored for Venue {
    type Record = VenueV1;

    fn to_record(&self) -> VenueV1 {
        VenueV1 {
            id: self.id.as_str().to_owned(),
            name: self.name.clone(),
            kind: match self.kind {
                VenueKind::Clinic => VenueKindV1::Clinic,
                VenueKind::Mass => VenueKindV1::Mass,
                VenueKind::Facility => VenueKindV1::Facility,
            },
            booking: match self.booking {
                BookingMode::Central => BookingModeV1::Central,
                BookingMode::Direct => BookingModeV1::Direct,
            },
            address: self.address.clone(),
            phone: self.phone.clone(),
            vaccines: self.vaccines.iter().map(|&v| v.into()).collect(),
        }
    }

    fn from_record(record: VenueV1) -> Result<Self, String> {
        Ok(Venue {
            id: VenueId::parse(&record.id).map_err(invalid("id"))?,
            name: record.name,
            kind: match record.kind {
                VenueKindV1::Clinic => VenueKind::Clinic,
                VenueKindV1::Mass => VenueKind::Mass,
                VenueKindV1::Facility => VenueKind::Facility,
            },
            booking: match record.booking {
                BookingModeV1::Central => BookingMode::Central,
                BookingModeV1::Direct => BookingMode::Direct,
            },
            address: record.address,
            phone: record.phone,
            vaccines: record.vaccines.into_iter().map(Vaccine::from).collect(),
        })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
pub struct SlotPlanV1 {
    pub time: String,
    pub capacity: u32,
    /// Absent in the first release's records (no holds then).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub operator_hold: u32,
}

#[derive(Serialize, Deserialize)]
pub struct DayPlanV1 {
    pub vaccine: VaccineV1,
    pub slots: Vec<SlotPlanV1>,
    pub access_code: Option<String>,
    /// The booking window; absent in the first release's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_release_at: Option<DateTime<FixedOffset>>,
}

impl Stored for DayPlan {
    type Record = DayPlanV1;

    fn to_record(&self) -> DayPlanV1 {
        DayPlanV1 {
            vaccine: self.vaccine.into(),
            slots: self
                .slots
                .iter()
                .map(|s| SlotPlanV1 {
                    time: s.time.to_string(),
                    capacity: s.capacity,
                    operator_hold: s.operator_hold,
                })
                .collect(),
            access_code: self.access_code.clone(),
            opens_at: self.window.opens_at,
            closes_at: self.window.closes_at,
            hold_release_at: self.window.hold_release_at,
        }
    }

    fn from_record(record: DayPlanV1) -> Result<Self, String> {
        let slots = record
            .slots
            .iter()
            .map(|s| {
                Ok(SlotPlan {
                    time: SlotTime::parse(&s.time).map_err(invalid("slot time"))?,
                    capacity: s.capacity,
                    operator_hold: s.operator_hold,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let window = BookingWindow {
            opens_at: record.opens_at,
            closes_at: record.closes_at,
            hold_release_at: record.hold_release_at,
        };
        DayPlan::with_window(record.vaccine.into(), slots, record.access_code, window)
            .map_err(invalid("day plan"))
    }
}

#[derive(Serialize, Deserialize)]
pub struct DoseRecordV1 {
    pub dose: u8,
    pub date: NaiveDate,
    pub vaccine: VaccineV1,
}

/// Personal data: never logged (no `Debug`).
#[derive(Serialize, Deserialize)]
pub struct ResidentV1 {
    pub ticket_number: String,
    pub birth_date: NaiveDate,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub high_risk: bool,
    pub history: Vec<DoseRecordV1>,
}

impl Stored for Resident {
    type Record = ResidentV1;

    fn to_record(&self) -> ResidentV1 {
        ResidentV1 {
            ticket_number: self.ticket_number.expose().to_owned(),
            birth_date: self.birth_date,
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            high_risk: self.high_risk,
            history: self
                .history
                .iter()
                .map(|h| DoseRecordV1 {
                    dose: h.dose.number(),
                    date: h.date,
                    vaccine: h.vaccine.into(),
                })
                .collect(),
        }
    }

    fn from_record(record: ResidentV1) -> Result<Self, String> {
        let history = record
            .history
            .iter()
            .map(|h| {
                Ok(DoseRecord {
                    dose: Dose::new(h.dose).map_err(invalid("history dose"))?,
                    date: h.date,
                    vaccine: h.vaccine.into(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Resident {
            ticket_number: TicketNumber::parse(&record.ticket_number)
                .map_err(invalid("ticket_number"))?,
            birth_date: record.birth_date,
            name: record.name,
            email: record.email,
            phone: record.phone,
            high_risk: record.high_risk,
            history,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatusV1 {
    Booked,
    Cancelled,
    Attended,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelV1 {
    Web,
    Operator,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FingerprintSchemeV1 {
    /// Absent in the first release's records: its fingerprints hashed Debug text.
    #[default]
    DebugText,
    Canonical,
}

#[derive(Serialize, Deserialize)]
pub struct IdempotencyV1 {
    pub key: String,
    pub fingerprint: u64,
    #[serde(default)]
    pub scheme: FingerprintSchemeV1,
}

/// Holds a ticket number: never logged (no `Debug`).
#[derive(Serialize, Deserialize)]
pub struct ReservationV1 {
    pub id: String,
    pub ticket_number: String,
    pub venue_id: String,
    pub date: NaiveDate,
    pub time: String,
    pub dose: u8,
    pub vaccine: VaccineV1,
    pub status: ReservationStatusV1,
    pub channel: ChannelV1,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    #[serde(default)]
    pub idempotency: Option<IdempotencyV1>,
}

impl Stored for Reservation {
    type Record = ReservationV1;

    fn to_record(&self) -> ReservationV1 {
        ReservationV1 {
            id: self.id.to_string(),
            ticket_number: self.ticket_number.expose().to_owned(),
            venue_id: self.venue_id.as_str().to_owned(),
            date: self.date,
            time: self.time.to_string(),
            dose: self.dose.number(),
            vaccine: self.vaccine.into(),
            status: match self.status {
                ReservationStatus::Booked => ReservationStatusV1::Booked,
                ReservationStatus::Cancelled => ReservationStatusV1::Cancelled,
                ReservationStatus::Attended => ReservationStatusV1::Attended,
            },
            channel: match self.channel {
                Channel::Web => ChannelV1::Web,
                Channel::Operator => ChannelV1::Operator,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            idempotency: self.idempotency.as_ref().map(|tag| IdempotencyV1 {
                key: tag.key.clone(),
                fingerprint: tag.fingerprint,
                scheme: match tag.scheme {
                    FingerprintScheme::DebugText => FingerprintSchemeV1::DebugText,
                    FingerprintScheme::Canonical => FingerprintSchemeV1::Canonical,
                },
            }),
        }
    }

    /// The same JSON as `ReservationV1`, field for field, written from the
    /// domain value directly (no string copies: this runs for every booking).
    fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &ReservationV1Json(self)).expect("records always serialise");
    }

    fn from_record(record: ReservationV1) -> Result<Self, String> {
        Ok(Reservation {
            id: ReservationId::parse(&record.id).ok_or("id: not a UUID")?,
            ticket_number: TicketNumber::parse(&record.ticket_number)
                .map_err(invalid("ticket_number"))?,
            venue_id: VenueId::parse(&record.venue_id).map_err(invalid("venue_id"))?,
            date: record.date,
            time: SlotTime::parse(&record.time).map_err(invalid("time"))?,
            dose: Dose::new(record.dose).map_err(invalid("dose"))?,
            vaccine: record.vaccine.into(),
            status: match record.status {
                ReservationStatusV1::Booked => ReservationStatus::Booked,
                ReservationStatusV1::Cancelled => ReservationStatus::Cancelled,
                ReservationStatusV1::Attended => ReservationStatus::Attended,
            },
            channel: match record.channel {
                ChannelV1::Web => Channel::Web,
                ChannelV1::Operator => Channel::Operator,
            },
            created_at: record.created_at,
            updated_at: record.updated_at,
            idempotency: record.idempotency.map(|tag| IdempotencyTag {
                key: tag.key,
                fingerprint: tag.fingerprint,
                scheme: match tag.scheme {
                    FingerprintSchemeV1::DebugText => FingerprintScheme::DebugText,
                    FingerprintSchemeV1::Canonical => FingerprintScheme::Canonical,
                },
            }),
        })
    }
}

/// `ReservationV1`'s JSON, borrowed from a `Reservation`.
struct ReservationV1Json<'a>(&'a Reservation);

impl Serialize for ReservationV1Json<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let mut out = serializer.serialize_struct("ReservationV1", 12)?;
        out.serialize_field("id", &Displayed(&r.id))?;
        out.serialize_field("ticket_number", r.ticket_number.expose())?;
        out.serialize_field("venue_id", r.venue_id.as_str())?;
        out.serialize_field("date", &r.date)?;
        out.serialize_field("time", &Displayed(&r.time))?;
        out.serialize_field("dose", &r.dose.number())?;
        out.serialize_field("vaccine", &VaccineV1::from(r.vaccine))?;
        out.serialize_field("status", r.status.as_str())?;
        out.serialize_field("channel", r.channel.as_str())?;
        out.serialize_field("created_at", &r.created_at)?;
        out.serialize_field("updated_at", &r.updated_at)?;
        let idempotency = r.idempotency.as_ref().map(|tag| IdempotencyV1Json {
            key: &tag.key,
            fingerprint: tag.fingerprint,
            scheme: match tag.scheme {
                FingerprintScheme::DebugText => "debug_text",
                FingerprintScheme::Canonical => "canonical",
            },
        });
        out.serialize_field("idempotency", &idempotency)?;
        out.end()
    }
}

#[derive(Serialize)]
struct IdempotencyV1Json<'a> {
    key: &'a str,
    fingerprint: u64,
    scheme: &'static str,
}

/// Serialises as its `Display` text.
struct Displayed<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Displayed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

#[derive(Serialize, Deserialize, Default)]
pub struct KillSwitchV1 {
    pub engaged: bool,
    pub reason: Option<String>,
    pub changed_at: Option<DateTime<FixedOffset>>,
    pub changed_by: Option<String>,
}

impl Stored for KillSwitchState {
    type Record = KillSwitchV1;

    fn to_record(&self) -> KillSwitchV1 {
        KillSwitchV1 {
            engaged: self.engaged,
            reason: self.reason.clone(),
            changed_at: self.changed_at,
            changed_by: self.changed_by.clone(),
        }
    }

    fn from_record(record: KillSwitchV1) -> Result<Self, String> {
        Ok(KillSwitchState {
            engaged: record.engaged,
            reason: record.reason,
            changed_at: record.changed_at,
            changed_by: record.changed_by,
        })
    }
}

/// The first release's audit line (the kill switch only, by role).
#[derive(Serialize, Deserialize)]
pub struct AuditEntryV1 {
    pub at: DateTime<FixedOffset>,
    pub role: String,
    pub action: String,
    pub outcome: String,
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
pub struct AuditTargetV2 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// An audit line naming its actor (`account:<id>` or `env:<role>`) and target.
#[derive(Serialize, Deserialize)]
pub struct AuditEntryV2 {
    pub v: u8,
    pub id: u64,
    pub at: DateTime<FixedOffset>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: AuditTargetV2,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Either version; written as V2.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuditRecord {
    V2(AuditEntryV2),
    V1(AuditEntryV1),
}

impl Stored for AuditEntry {
    type Record = AuditRecord;

    fn to_record(&self) -> AuditRecord {
        let target = &self.target;
        AuditRecord::V2(AuditEntryV2 {
            v: 2,
            id: self.id,
            at: self.at,
            actor: self.actor.to_string(),
            role: self.role.as_str().to_owned(),
            action: self.action.clone(),
            target: AuditTargetV2 {
                venue_id: target.venue_id.as_ref().map(|v| v.as_str().to_owned()),
                date: target.date,
                reservation_id: target.reservation_id.map(|r| r.to_string()),
                ticket_number: target.ticket_number.map(|t| t.expose().to_owned()),
                account_id: target.account_id.as_ref().map(|a| a.as_str().to_owned()),
            },
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
        })
    }

    fn from_record(record: AuditRecord) -> Result<Self, String> {
        match record {
            AuditRecord::V2(entry) => {
                let target = entry.target;
                Ok(AuditEntry {
                    id: entry.id,
                    at: entry.at,
                    actor: Actor::parse(&entry.actor).ok_or("actor")?,
                    role: Role::parse(&entry.role).map_err(invalid("role"))?,
                    action: entry.action,
                    target: AuditTarget {
                        venue_id: target
                            .venue_id
                            .map(|v| VenueId::parse(&v))
                            .transpose()
                            .map_err(invalid("venue_id"))?,
                        date: target.date,
                        reservation_id: target
                            .reservation_id
                            .map(|r| ReservationId::parse(&r).ok_or("reservation_id"))
                            .transpose()?,
                        ticket_number: target
                            .ticket_number
                            .map(|t| TicketNumber::parse(&t))
                            .transpose()
                            .map_err(invalid("ticket_number"))?,
                        account_id: target
                            .account_id
                            .map(|a| AccountId::parse(&a))
                            .transpose()
                            .map_err(invalid("account_id"))?,
                    },
                    outcome: entry.outcome,
                    detail: entry.detail,
                })
            }
            // The first release had only the environment's keys, so its
            // actor is the role's: `env:<role>`.
            AuditRecord::V1(entry) => {
                let role = Role::parse(&entry.role).map_err(invalid("role"))?;
                Ok(AuditEntry {
                    // The first release kept no id: one from the time keeps
                    // the order stable across reads.
                    id: u64::try_from(entry.at.timestamp_micros()).unwrap_or(0),
                    at: entry.at,
                    actor: Actor::Env(role),
                    role,
                    action: entry.action,
                    target: AuditTarget::default(),
                    outcome: entry.outcome,
                    detail: entry.detail,
                })
            }
        }
    }
}

/// A named account: its key only as a hash (hex).
#[derive(Serialize, Deserialize)]
pub struct AccountV1 {
    pub id: String,
    pub role: String,
    pub display_name: String,
    pub created_at: DateTime<FixedOffset>,
    pub key_sha256: String,
    /// A staff account's venues; absent: every venue (and in records
    /// written before accounts could be limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venues: Option<Vec<String>>,
}

impl Stored for Account {
    type Record = AccountV1;

    fn to_record(&self) -> AccountV1 {
        AccountV1 {
            id: self.id.as_str().to_owned(),
            role: self.role.as_str().to_owned(),
            display_name: self.display_name.clone(),
            created_at: self.created_at,
            key_sha256: self.key_hash.iter().map(|b| format!("{b:02x}")).collect(),
            venues: self
                .venues
                .as_ref()
                .map(|v| v.iter().map(|id| id.as_str().to_owned()).collect()),
        }
    }

    fn from_record(record: AccountV1) -> Result<Self, String> {
        let bytes = record.key_sha256.as_bytes();
        if bytes.len() != KEY_HASH_BYTES * 2 {
            return Err("key_sha256: not 64 hex digits".into());
        }
        let mut key_hash = [0u8; KEY_HASH_BYTES];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| "key_sha256")?;
            key_hash[i] = u8::from_str_radix(text, 16).map_err(|_| "key_sha256: not hex")?;
        }
        Ok(Account {
            id: AccountId::parse(&record.id).map_err(invalid("id"))?,
            role: Role::parse(&record.role).map_err(invalid("role"))?,
            display_name: record.display_name,
            created_at: record.created_at,
            key_hash,
            venues: record
                .venues
                .map(|ids| {
                    let mut ids = ids
                        .iter()
                        .map(|id| VenueId::parse(id))
                        .collect::<Result<Vec<_>, _>>()?;
                    ids.sort();
                    Ok(ids)
                })
                .transpose()
                .map_err(invalid("venues"))?,
        })
    }
}

/// A change to a queued mail (the embedded store's `mail_settled`):
/// `pending` again after a failed try (with its tries and next try),
/// `delivered`, `failed` (with a reason code) or `withdrawn`.
#[derive(Serialize, Deserialize)]
pub struct MailSettledV1 {
    /// `<reservation id>.<kind>`.
    pub id: String,
    pub state: String,
    /// When (delivered, failed: as the worker saw it).
    #[serde(default)]
    pub at: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_at: Option<DateTime<FixedOffset>>,
}

impl MailSettledV1 {
    pub fn new(id: &str, state: &str, reason: Option<String>) -> Self {
        Self {
            id: id.to_owned(),
            state: state.to_owned(),
            at: None,
            reason,
            attempts: 0,
            next_at: None,
        }
    }

    pub fn retry(id: &str, attempts: u32, next_at: DateTime<FixedOffset>) -> Self {
        Self {
            id: id.to_owned(),
            state: "pending".to_owned(),
            at: None,
            reason: None,
            attempts,
            next_at: Some(next_at),
        }
    }
}

/// What a mail says of one reservation.
#[derive(Serialize, Deserialize)]
pub struct MailedReservationV1 {
    pub id: String,
    pub venue_id: String,
    pub date: NaiveDate,
    pub time: String,
    pub dose: u8,
    pub vaccine: VaccineV1,
}

/// A mail in the outbox (holds a ticket number: never logged).
#[derive(Serialize, Deserialize)]
pub struct OutboxMailV1 {
    /// `<reservation id>.<kind>`.
    pub id: String,
    pub ticket_number: String,
    pub reservations: Vec<MailedReservationV1>,
    pub due_at: DateTime<FixedOffset>,
    /// `pending`, `delivered`, `failed` or `withdrawn`.
    pub state: String,
    #[serde(default)]
    pub attempts: u32,
    /// Pending: when it is tried (next).
    #[serde(default)]
    pub next_at: Option<DateTime<FixedOffset>>,
    /// Delivered or failed: when.
    #[serde(default)]
    pub settled_at: Option<DateTime<FixedOffset>>,
    /// Failed: a code, never text of the mail.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Stored for OutboxMail {
    type Record = OutboxMailV1;

    fn to_record(&self) -> OutboxMailV1 {
        let (state, attempts, next_at, settled_at, reason) = match &self.delivery {
            Delivery::Pending { attempts, next_at } => {
                ("pending", *attempts, Some(*next_at), None, None)
            }
            Delivery::Delivered { at } => ("delivered", 0, None, Some(*at), None),
            Delivery::Failed { at, reason } => ("failed", 0, None, Some(*at), Some(reason.clone())),
            Delivery::Withdrawn => ("withdrawn", 0, None, None, None),
        };
        OutboxMailV1 {
            id: self.id.to_string(),
            ticket_number: self.ticket_number.expose().to_owned(),
            reservations: self
                .reservations
                .iter()
                .map(|r| MailedReservationV1 {
                    id: r.id.to_string(),
                    venue_id: r.venue_id.as_str().to_owned(),
                    date: r.date,
                    time: r.time.to_string(),
                    dose: r.dose.number(),
                    vaccine: r.vaccine.into(),
                })
                .collect(),
            due_at: self.due_at,
            state: state.to_owned(),
            attempts,
            next_at,
            settled_at,
            reason,
        }
    }

    fn from_record(record: OutboxMailV1) -> Result<Self, String> {
        let delivery = match record.state.as_str() {
            "pending" => Delivery::Pending {
                attempts: record.attempts,
                next_at: record.next_at.ok_or("next_at: missing")?,
            },
            "delivered" => Delivery::Delivered {
                at: record.settled_at.ok_or("settled_at: missing")?,
            },
            "failed" => Delivery::Failed {
                at: record.settled_at.ok_or("settled_at: missing")?,
                reason: record.reason.unwrap_or_default(),
            },
            "withdrawn" => Delivery::Withdrawn,
            _ => return Err("state: unknown".to_owned()),
        };
        Ok(OutboxMail {
            id: MailId::parse(&record.id).ok_or("id: not a mail id")?,
            ticket_number: TicketNumber::parse(&record.ticket_number)
                .map_err(invalid("ticket_number"))?,
            reservations: record
                .reservations
                .into_iter()
                .map(|r| {
                    Ok(MailedReservation {
                        id: ReservationId::parse(&r.id).ok_or("reservation id: not a UUID")?,
                        venue_id: VenueId::parse(&r.venue_id).map_err(invalid("venue_id"))?,
                        date: r.date,
                        time: SlotTime::parse(&r.time).map_err(invalid("time"))?,
                        dose: Dose::new(r.dose).map_err(invalid("dose"))?,
                        vaccine: r.vaccine.into(),
                    })
                })
                .collect::<Result<_, String>>()?,
            due_at: record.due_at,
            delivery,
        })
    }
}

/// A booking refusal kept for its `Idempotency-Key` on a shared store
/// (`Coordination::remember_refusal`), so that every process answers the
/// key's retry alike. Stored as `<fingerprint hex> <JSON>`: the fingerprint
/// of the request it answered, then the refusal by its code. Its JSON is the
/// shape of the wire's `cluster::wire::BookingRefusalWire` today, because
/// both were once one type (the wire's, stored in Redis); they are apart so
/// that the stored record and the wire can each change without the other,
/// and each has its own golden test.
#[derive(Serialize, Deserialize)]
pub struct RefusalV1 {
    pub error: ErrorCode,
    /// `not_eligible`'s reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `not_open_yet`'s opening time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<FixedOffset>>,
}

impl RefusalV1 {
    /// The stored text of `refusal`, the answer to the request `fingerprint`.
    pub fn kept(fingerprint: u64, refusal: BookingError) -> String {
        let named = BookingRefusal::from(refusal);
        let record = Self {
            error: named.code,
            reason: named.reason.map(|reason| reason.as_str().to_owned()),
            opens_at: named.opens_at,
        };
        format!(
            "{fingerprint:016x} {}",
            serde_json::to_string(&record).expect("a refusal always serialises")
        )
    }

    /// The fingerprint and refusal `kept` wrote: `None` when the text cannot
    /// be read, its refusal `None` when only the fingerprint can (a code
    /// from another release).
    pub fn read_kept(text: &str) -> Option<(u64, Option<BookingError>)> {
        let (fingerprint, json) = text.split_once(' ')?;
        let fingerprint = u64::from_str_radix(fingerprint, 16).ok()?;
        let refusal = serde_json::from_str::<Self>(json).ok().and_then(|record| {
            BookingRefusal::new(record.error, record.reason.as_deref(), record.opens_at).error()
        });
        Some((fingerprint, refusal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept refusals live in Redis for a day: this release must read what
    /// the last one wrote, byte for byte.
    #[test]
    fn a_kept_refusal_reads_and_writes_as_the_first_release_did() {
        let opens = DateTime::parse_from_rfc3339("2027-03-01T09:00:00+09:00").unwrap();
        let cases = [
            (
                BookingError::SlotFull,
                r#"00000000000000ff {"error":"slot_full"}"#,
            ),
            (
                BookingError::NotEligible(crate::domain::IneligibleReason::TooYoung),
                r#"00000000000000ff {"error":"not_eligible","reason":"too_young"}"#,
            ),
            (
                BookingError::NotOpenYet(opens),
                r#"00000000000000ff {"error":"not_open_yet","opens_at":"2027-03-01T09:00:00+09:00"}"#,
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(RefusalV1::kept(0xff, refusal), text);
            assert_eq!(RefusalV1::read_kept(text), Some((0xff, Some(refusal))));
        }
        assert_eq!(
            RefusalV1::read_kept(r#"ff {"error":"no_such"}"#),
            Some((0xff, None))
        );
        assert_eq!(RefusalV1::read_kept("not hex {}"), None);
    }

    #[test]
    fn a_first_release_audit_line_reads_as_the_roles_environment_key() {
        let stored = r#"{"at":"2026-12-01T16:12:40.5+09:00","role":"sre","action":"kill_switch.engage","outcome":"ok","detail":"fixture"}"#;
        let entry: AuditEntry = decode(stored.as_bytes(), "audit").unwrap();
        assert_eq!(entry.actor, Actor::Env(Role::Sre));
        assert_eq!(entry.detail.as_deref(), Some("fixture"));
        let again: AuditEntry = decode(&encode(&entry), "audit").unwrap();
        assert!(again == entry, "V2 round-trips");
    }

    /// The first release's JSON of a reservation, verbatim: it must decode,
    /// and re-encoding it must give the same JSON value back.
    #[test]
    fn a_first_release_reservation_decodes_and_round_trips() {
        let stored = r#"{"id":"6f1f2f8e-3a8b-4c55-9d5e-0c6f3b2a1d90","ticket_number":"1311480001","venue_id":"fixture-hall","date":"2026-12-10","time":"10:00","dose":1,"vaccine":"moderna","status":"booked","channel":"web","created_at":"2026-12-01T16:12:33.123456+09:00","updated_at":"2026-12-01T16:12:33.123456+09:00","idempotency":{"key":"fixture-key-1","fingerprint":1234567890123}}"#;
        let reservation: Reservation = decode(stored.as_bytes(), "reservation").unwrap();
        assert_eq!(reservation.dose, Dose::FIRST);
        let tag = reservation.idempotency.as_ref().unwrap();
        assert_eq!(tag.scheme, FingerprintScheme::DebugText);
        let again: serde_json::Value = serde_json::from_slice(&encode(&reservation)).unwrap();
        let mut first: serde_json::Value = serde_json::from_str(stored).unwrap();
        first["idempotency"]["scheme"] = "debug_text".into();
        assert_eq!(again, first);
    }

    /// The fast writer and the record give the same JSON, for every status,
    /// channel and key scheme.
    #[test]
    fn the_borrowed_writer_writes_exactly_the_record() {
        let stored = r#"{"id":"6f1f2f8e-3a8b-4c55-9d5e-0c6f3b2a1d90","ticket_number":"1311480001","venue_id":"fixture-hall","date":"2026-12-10","time":"09:05","dose":3,"vaccine":"pfizer","status":"booked","channel":"web","created_at":"2026-12-01T16:12:33.123456+09:00","updated_at":"2026-12-01T16:12:33.123456+09:00","idempotency":{"key":"k","fingerprint":7}}"#;
        let base: Reservation = decode(stored.as_bytes(), "reservation").unwrap();
        for status in [
            ReservationStatus::Booked,
            ReservationStatus::Cancelled,
            ReservationStatus::Attended,
        ] {
            for channel in [Channel::Web, Channel::Operator] {
                for scheme in [FingerprintScheme::DebugText, FingerprintScheme::Canonical] {
                    let mut r = base.clone();
                    r.status = status;
                    r.channel = channel;
                    r.idempotency.as_mut().unwrap().scheme = scheme;
                    let mut fast = Vec::new();
                    r.write_json(&mut fast);
                    let slow = serde_json::to_vec(&r.to_record()).unwrap();
                    assert_eq!(fast, slow);
                }
            }
        }
        let mut without_key = base.clone();
        without_key.idempotency = None;
        let mut fast = Vec::new();
        without_key.write_json(&mut fast);
        assert_eq!(fast, serde_json::to_vec(&without_key.to_record()).unwrap());
    }

    #[test]
    fn an_invalid_stored_field_is_corrupt_not_a_panic() {
        let bad = r#"{"id":"x","ticket_number":"1","venue_id":"v","date":"2026-12-10","time":"25:00","dose":0,"vaccine":"moderna","status":"booked","channel":"web","created_at":"2026-12-01T16:12:33+09:00","updated_at":"2026-12-01T16:12:33+09:00"}"#;
        let result = decode::<Reservation>(bad.as_bytes(), "reservation");
        assert!(matches!(result, Err(StoreError::Corrupt(_))));
    }
}
