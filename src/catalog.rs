//! The in-memory catalog that reads are served from: venues, and the latest
//! published snapshot of every venue-day (availability may lag commits; the
//! actors publish after each commit).

use std::sync::Arc;

use chrono::NaiveDate;
use dashmap::DashMap;

use crate::domain::{DaySnapshot, Vaccine, Venue, VenueDayKey, VenueId};

/// Most venues one process serves.
pub const VENUES_MAX: usize = 10_000;
/// Most venue-days one process serves (and so at most this many actors).
pub const VENUE_DAYS_MAX: usize = 200_000;

#[derive(Default)]
pub struct Catalog {
    venues: DashMap<VenueId, Arc<Venue>>,
    days: DashMap<VenueDayKey, Arc<DaySnapshot>>,
}

/// What availability is asked for.
pub struct AvailabilityQuery<'a> {
    pub date: NaiveDate,
    pub vaccine: Option<Vaccine>,
    pub venue_id: Option<&'a VenueId>,
    pub access_code: Option<&'a str>,
}

impl Catalog {
    pub fn put_venue(&self, venue: Venue) {
        self.venues.insert(venue.id.clone(), Arc::new(venue));
    }

    pub fn venue(&self, id: &VenueId) -> Option<Arc<Venue>> {
        self.venues.get(id).map(|v| Arc::clone(&v))
    }

    pub fn venue_count(&self) -> usize {
        self.venues.len()
    }

    /// All venues, sorted by id.
    pub fn venues(&self) -> Vec<Arc<Venue>> {
        let mut all: Vec<Arc<Venue>> = self.venues.iter().map(|v| Arc::clone(&v)).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    pub fn publish(&self, snapshot: DaySnapshot) {
        self.days.insert(snapshot.key.clone(), Arc::new(snapshot));
    }

    pub fn day(&self, key: &VenueDayKey) -> Option<Arc<DaySnapshot>> {
        self.days.get(key).map(|d| Arc::clone(&d))
    }

    /// The published venue-days on `date`.
    pub fn days_on(&self, date: NaiveDate) -> Vec<VenueDayKey> {
        self.days
            .iter()
            .filter(|day| day.key().date == date)
            .map(|day| day.key().clone())
            .collect()
    }

    pub fn day_count(&self) -> usize {
        self.days.len()
    }

    /// Places on every published day.
    pub fn capacity_total(&self) -> u64 {
        self.days.iter().map(|d| d.plan.capacity_total()).sum()
    }

    /// Places held for the call centre and not yet taken, on every day whose
    /// hold is not released at `now`.
    pub fn held_open_total(&self, now: chrono::DateTime<chrono::FixedOffset>) -> u64 {
        self.days
            .iter()
            .filter(|d| now < d.plan.hold_release_at(d.key.date))
            .map(|d| {
                d.slots
                    .iter()
                    .map(|s| u64::from(s.remaining_for(true).1))
                    .sum::<u64>()
            })
            .sum()
    }

    /// Places still free on every published day.
    pub fn remaining_total(&self) -> u64 {
        self.days.iter().map(|d| d.remaining_total()).sum()
    }

    /// Days matching the query, by venue id. Restricted days appear only with
    /// their own access code.
    pub fn availability(
        &self,
        query: &AvailabilityQuery<'_>,
    ) -> Vec<(Arc<Venue>, Arc<DaySnapshot>)> {
        let mut found: Vec<(Arc<Venue>, Arc<DaySnapshot>)> = self
            .days
            .iter()
            .filter(|d| d.key.date == query.date)
            .filter(|d| query.venue_id.is_none_or(|v| &d.key.venue_id == v))
            .filter(|d| query.vaccine.is_none_or(|v| d.plan.vaccine == v))
            .filter(|d| match &d.plan.access_code {
                None => true,
                Some(code) => query.access_code == Some(code.as_str()),
            })
            .filter_map(|d| {
                let venue = self.venue(&d.key.venue_id)?;
                Some((venue, Arc::clone(&d)))
            })
            .collect();
        found.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        found
    }
}
