//! Reservations: one resident's one dose at one slot of one venue-day.

use chrono::{DateTime, FixedOffset, NaiveDate};

use super::{Dose, ReservationId, SlotTime, TicketNumber, Vaccine, VenueDayKey, VenueId};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReservationStatus {
    Booked,
    Cancelled,
    Attended,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Cancelled => "cancelled",
            Self::Attended => "attended",
        }
    }

    /// Holds a place in its slot and the resident's claim on its dose.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Booked | Self::Attended)
    }

    /// A reservation's version: how far along its one-way life it is (booked,
    /// then cancelled or attended, never back but by an undone batch). Of
    /// two records of one reservation the further along is the newer,
    /// whatever the clocks of the processes that wrote them said.
    pub fn step(self) -> u8 {
        match self {
            Self::Booked => 0,
            Self::Cancelled | Self::Attended => 1,
        }
    }
}

/// Who entered the reservation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    Web,
    Operator,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Operator => "operator",
        }
    }
}

/// The `Idempotency-Key` a booking was made with, and a fingerprint of the
/// request it came with: stored with the reservation, so a retry finds the
/// first answer even after a restart.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyTag {
    pub key: String,
    pub fingerprint: u64,
    /// How `fingerprint` was computed; records of the first release have none.
    pub scheme: FingerprintScheme,
}

/// How a request fingerprint is computed (see `booking::Booking::fingerprint`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum FingerprintScheme {
    /// The first release's: a hash of Rust `Debug` text, kept only so that
    /// its stored keys still replay.
    #[default]
    DebugText,
    /// A hash of a versioned, length-prefixed encoding of the parsed request.
    Canonical,
}

/// Holds a ticket number, so no `Debug`: it must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub ticket_number: TicketNumber,
    pub venue_id: VenueId,
    pub date: NaiveDate,
    pub time: SlotTime,
    pub dose: Dose,
    pub vaccine: Vaccine,
    pub status: ReservationStatus,
    pub channel: Channel,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    pub idempotency: Option<IdempotencyTag>,
}

impl Reservation {
    pub fn venue_day(&self) -> VenueDayKey {
        VenueDayKey {
            venue_id: self.venue_id.clone(),
            date: self.date,
        }
    }
}
