//! Venues and the plan of one venue-day.

use chrono::{DateTime, FixedOffset, NaiveDate};

use super::{DomainError, SlotTime, TextRule, Vaccine, VenueId};

/// Longest venue name, address or phone text, in characters.
pub const VENUE_TEXT_CHARS_MAX: usize = 200;
/// Most slots one day may have (every 5 minutes for 24 hours).
pub const SLOTS_PER_DAY_MAX: usize = 288;
/// Largest capacity of one slot.
pub const SLOT_CAPACITY_MAX: u32 = 10_000;
/// Longest access code of a restricted day, in bytes.
pub const ACCESS_CODE_LENGTH_MAX: usize = 64;

/// Also the API's vocabulary (`"clinic"`, …): serde here is for `api/`; the
/// store has its own (`store/records.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueKind {
    Clinic,
    Mass,
    Facility,
}

/// How residents book a venue.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingMode {
    /// Booked through this API.
    Central,
    /// Listed only: the resident calls the clinic.
    Direct,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Venue {
    pub id: VenueId,
    pub name: String,
    pub kind: VenueKind,
    pub booking: BookingMode,
    pub address: String,
    pub phone: String,
    pub vaccines: Vec<Vaccine>,
}

impl Venue {
    /// Checks the free-text fields and normalises the vaccine list (sorted, unique).
    pub fn validated(mut self) -> Result<Self, DomainError> {
        TextRule::required("name", VENUE_TEXT_CHARS_MAX).check(&self.name)?;
        TextRule::optional("address", VENUE_TEXT_CHARS_MAX).check(&self.address)?;
        TextRule::optional("phone", VENUE_TEXT_CHARS_MAX).check(&self.phone)?;
        self.vaccines.sort();
        self.vaccines.dedup();
        Ok(self)
    }

    pub fn offers(&self, vaccine: Vaccine) -> bool {
        self.vaccines.contains(&vaccine)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotPlan {
    pub time: SlotTime,
    pub capacity: u32,
    /// Places kept for the call centre until the day's hold release (≤ capacity).
    pub operator_hold: u32,
}

/// When a day may be booked (API.md "Operator holds and booking windows").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BookingWindow {
    /// Before it, every booking is `not_open_yet`.
    pub opens_at: Option<DateTime<FixedOffset>>,
    /// From it on, every booking is `booking_window_closed`.
    pub closes_at: Option<DateTime<FixedOffset>>,
    /// Until it, residents may not take the operators' held places
    /// (default: 17:00 local time the day before).
    pub hold_release_at: Option<DateTime<FixedOffset>>,
}

/// The whole plan of one venue-day, as an admin puts it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DayPlan {
    pub vaccine: Vaccine,
    /// Sorted by time, times distinct.
    pub slots: Vec<SlotPlan>,
    /// A restricted ("secret") day needs this code to be listed or booked.
    pub access_code: Option<String>,
    pub window: BookingWindow,
}

impl DayPlan {
    /// Builds a plan, sorting slots and checking every limit.
    pub fn new(
        vaccine: Vaccine,
        slots: Vec<SlotPlan>,
        access_code: Option<String>,
    ) -> Result<Self, DomainError> {
        Self::with_window(vaccine, slots, access_code, BookingWindow::default())
    }

    /// Builds a plan with a booking window, checking that it closes after it opens.
    pub fn with_window(
        vaccine: Vaccine,
        mut slots: Vec<SlotPlan>,
        access_code: Option<String>,
        window: BookingWindow,
    ) -> Result<Self, DomainError> {
        if slots.len() > SLOTS_PER_DAY_MAX
            || slots.iter().any(|s| {
                s.capacity == 0 || s.capacity > SLOT_CAPACITY_MAX || s.operator_hold > s.capacity
            })
        {
            return Err(DomainError::InvalidSlots);
        }
        if let (Some(opens), Some(closes)) = (window.opens_at, window.closes_at)
            && closes <= opens
        {
            return Err(DomainError::InvalidWindow);
        }
        slots.sort_by_key(|s| s.time);
        if slots.windows(2).any(|w| w[0].time == w[1].time) {
            return Err(DomainError::InvalidSlots);
        }
        if let Some(code) = &access_code {
            let ok = !code.is_empty()
                && code.len() <= ACCESS_CODE_LENGTH_MAX
                && code.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(DomainError::InvalidAccessCode);
            }
        }
        Ok(Self {
            vaccine,
            slots,
            access_code,
            window,
        })
    }

    /// When residents may take held places: the day's `hold_release_at`, or
    /// 17:00 local time the day before `date`.
    pub fn hold_release_at(&self, date: NaiveDate) -> DateTime<FixedOffset> {
        self.window.hold_release_at.unwrap_or_else(|| {
            let day_before = date.pred_opt().unwrap_or(date);
            let five_pm = day_before
                .and_hms_opt(17, 0, 0)
                .expect("17:00 is a valid time");
            five_pm
                .and_local_timezone(super::municipality_offset())
                .single()
                .expect("a fixed offset has one local time")
        })
    }

    pub fn capacity_total(&self) -> u64 {
        self.slots.iter().map(|s| u64::from(s.capacity)).sum()
    }
}
