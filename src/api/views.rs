//! The JSON shapes of answers (API.md). Only `api/` knows them.

use serde::Serialize;

use crate::domain::{DaySnapshot, DoseRecord, Reservation, Venue};

#[derive(Serialize)]
pub struct ReservationView {
    pub reservation_id: String,
    pub venue_id: String,
    pub date: String,
    pub time: String,
    pub dose: u8,
    pub vaccine: &'static str,
    pub status: &'static str,
    pub channel: &'static str,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.id.to_string(),
            venue_id: r.venue_id.to_string(),
            date: r.date.to_string(),
            time: r.time.to_string(),
            dose: r.dose.number(),
            vaccine: r.vaccine.as_str(),
            status: r.status.as_str(),
            channel: r.channel.as_str(),
            created_at: r.created_at.to_rfc3339(),
            updated_at: r.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize)]
pub struct ReservationList {
    pub reservations: Vec<ReservationView>,
}

impl ReservationList {
    pub fn of(reservations: &[Reservation]) -> Self {
        Self {
            reservations: reservations.iter().map(ReservationView::from).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct VenueView {
    pub venue_id: String,
    pub name: String,
    pub kind: crate::domain::VenueKind,
    pub booking: crate::domain::BookingMode,
    pub address: String,
    pub phone: String,
    pub vaccines: Vec<&'static str>,
}

impl From<&Venue> for VenueView {
    fn from(v: &Venue) -> Self {
        Self {
            venue_id: v.id.to_string(),
            name: v.name.clone(),
            kind: v.kind,
            booking: v.booking,
            address: v.address.clone(),
            phone: v.phone.clone(),
            vaccines: v.vaccines.iter().map(|x| x.as_str()).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct SlotView {
    pub time: String,
    pub capacity: u32,
    pub remaining: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_remaining: Option<u32>,
    /// The slot has started (today, from its first minute): no longer
    /// offered, `remaining` 0.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
}

/// A day as its admin sees it (with its access code).
#[derive(Serialize)]
pub struct DayView {
    pub venue_id: String,
    pub date: String,
    pub vaccine: &'static str,
    pub access_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_release_at: Option<String>,
    pub slots: Vec<SlotView>,
}

/// A day's slots as they can be booked now: `remaining` is what a resident
/// can book; `held_remaining` (shown to operators and admins only) what
/// only the call centre can, until the hold release.
pub fn slot_views(day: &DaySnapshot, show_held: bool) -> Vec<SlotView> {
    let now = crate::clock::now();
    let before_release = now < day.plan.hold_release_at(day.key.date);
    day.slots
        .iter()
        .map(|s| {
            let started = s.time.has_started(day.key.date, now);
            let (remaining, held) = if started {
                (0, 0)
            } else {
                s.remaining_for(before_release)
            };
            SlotView {
                time: s.time.to_string(),
                capacity: s.capacity,
                remaining,
                held_remaining: show_held.then_some(held),
                started,
            }
        })
        .collect()
}

impl From<&DaySnapshot> for DayView {
    fn from(day: &DaySnapshot) -> Self {
        Self {
            venue_id: day.key.venue_id.to_string(),
            date: day.key.date.to_string(),
            vaccine: day.plan.vaccine.as_str(),
            access_code: day.plan.access_code.clone(),
            opens_at: day.plan.window.opens_at.map(|t| t.to_rfc3339()),
            closes_at: day.plan.window.closes_at.map(|t| t.to_rfc3339()),
            hold_release_at: day.plan.window.hold_release_at.map(|t| t.to_rfc3339()),
            // Held places are shown for a day that has any.
            slots: slot_views(day, day.plan.slots.iter().any(|s| s.operator_hold > 0)),
        }
    }
}

#[derive(Serialize)]
pub struct DoseRecordView {
    pub dose: u8,
    pub date: String,
    pub vaccine: &'static str,
}

impl From<&DoseRecord> for DoseRecordView {
    fn from(r: &DoseRecord) -> Self {
        Self {
            dose: r.dose.number(),
            date: r.date.to_string(),
            vaccine: r.vaccine.as_str(),
        }
    }
}
