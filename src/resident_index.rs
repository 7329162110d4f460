//! The in-memory resident index: every resident, their reservations, and the
//! doses they are in the middle of booking. Loaded from the store at start,
//! kept current by the import handler and by the venue-day actors after each
//! commit.
//!
//! A **dose claim** is how one active reservation per (resident, dose) holds
//! across venue-days: the gateway claims the dose here before routing a
//! booking; the actor settles the claim when the reservation is committed, and
//! dropping an unsettled claim (refusal, failed commit, lost message) releases
//! it. The durable form of a claim is the reservation itself: at start the
//! index is rebuilt from stored reservations, so no claim can be orphaned.

use std::sync::Arc;

use chrono::NaiveDate;
use dashmap::DashMap;
use subtle::ConstantTimeEq;

use crate::domain::{
    BookingError, Dose, IneligibleReason, Reservation, ReservationId, Resident, TicketNumber,
    next_open_dose,
};
use crate::tokens::{ResidentHandle, TokenKey};

/// Most residents one process indexes (a prefecture's worth, with room).
pub const RESIDENTS_MAX: usize = 5_000_000;

/// A birth date that no resident has, compared against when a ticket is
/// unknown so that both refusals take the same path.
const NO_BIRTH_DATE: &[u8; 10] = b"0000-00-00";

struct ResidentEntry {
    resident: Resident,
    /// All of the resident's reservations, any status.
    reservations: Vec<Reservation>,
    /// Doses being booked right now (claimed, not yet settled).
    pending_doses: Vec<Dose>,
}

impl ResidentEntry {
    fn dose_is_taken(&self, dose: Dose) -> bool {
        self.resident.has_received(dose)
            || self.pending_doses.contains(&dose)
            || self
                .reservations
                .iter()
                .any(|r| r.dose == dose && r.status.is_active())
    }

    fn reserved_doses(&self) -> impl Iterator<Item = Dose> + '_ {
        self.reservations
            .iter()
            .filter(|r| r.status.is_active())
            .map(|r| r.dose)
            .chain(self.pending_doses.iter().copied())
    }
}

/// What one import call changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: usize,
    pub updated: usize,
}

pub struct ResidentIndex {
    key: TokenKey,
    entries: DashMap<TicketNumber, ResidentEntry>,
    by_handle: DashMap<ResidentHandle, TicketNumber>,
}

impl ResidentIndex {
    pub fn new(key: TokenKey) -> Self {
        Self {
            key,
            entries: DashMap::new(),
            by_handle: DashMap::new(),
        }
    }

    /// Builds the index from what the store holds.
    pub fn load(key: TokenKey, residents: Vec<Resident>, reservations: Vec<Reservation>) -> Self {
        let index = Self::new(key);
        index.upsert_residents(residents);
        for reservation in reservations {
            index.record(reservation);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Room for `additional` new residents under `RESIDENTS_MAX`?
    pub fn has_room_for(&self, additional: usize) -> bool {
        self.entries.len().saturating_add(additional) <= RESIDENTS_MAX
    }

    pub fn contains(&self, ticket: &TicketNumber) -> bool {
        self.entries.contains_key(ticket)
    }

    /// Inserts or replaces residents, keeping their reservations and claims.
    pub fn upsert_residents(&self, residents: Vec<Resident>) -> ImportCounts {
        let mut counts = ImportCounts::default();
        for resident in residents {
            let ticket = resident.ticket_number;
            match self.entries.get_mut(&ticket) {
                Some(mut entry) => {
                    entry.resident = resident;
                    counts.updated += 1;
                }
                None => {
                    self.by_handle
                        .insert(self.key.resident_handle(&ticket), ticket);
                    self.entries.insert(
                        ticket,
                        ResidentEntry {
                            resident,
                            reservations: Vec::new(),
                            pending_doses: Vec::new(),
                        },
                    );
                    counts.imported += 1;
                }
            }
        }
        counts
    }

    /// Checks a login. Unknown ticket and wrong birth date take the same path
    /// and give the same `None`; the comparison is constant-time.
    pub fn login(&self, ticket: &TicketNumber, birth_date: NaiveDate) -> Option<ResidentHandle> {
        let given = birth_date.format("%Y-%m-%d").to_string();
        let handle = self.key.resident_handle(ticket);
        let stored = self
            .entries
            .get(ticket)
            .map(|e| e.resident.birth_date.format("%Y-%m-%d").to_string());
        let expected = stored.as_deref().map_or(&NO_BIRTH_DATE[..], str::as_bytes);
        let matches = bool::from(given.as_bytes().ct_eq(expected)) && stored.is_some();
        matches.then_some(handle)
    }

    pub fn ticket_for_handle(&self, handle: &ResidentHandle) -> Option<TicketNumber> {
        self.by_handle.get(handle).map(|t| *t)
    }

    pub fn resident(&self, ticket: &TicketNumber) -> Option<Resident> {
        self.entries.get(ticket).map(|e| e.resident.clone())
    }

    /// The resident's reservations, newest first.
    pub fn reservations_of(&self, ticket: &TicketNumber) -> Vec<Reservation> {
        let mut list = self
            .entries
            .get(ticket)
            .map(|e| e.reservations.clone())
            .unwrap_or_default();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.dose.cmp(&a.dose)));
        list
    }

    /// One of the resident's reservations; another's is `None`, like a missing one.
    pub fn reservation_of(&self, ticket: &TicketNumber, id: ReservationId) -> Option<Reservation> {
        self.entries
            .get(ticket)?
            .reservations
            .iter()
            .find(|r| r.id == id)
            .cloned()
    }

    /// Records a committed reservation (new or changed) under its owner.
    pub fn record(&self, reservation: Reservation) {
        if let Some(mut entry) = self.entries.get_mut(&reservation.ticket_number) {
            match entry
                .reservations
                .iter_mut()
                .find(|r| r.id == reservation.id)
            {
                Some(existing) => *existing = reservation,
                None => entry.reservations.push(reservation),
            }
        }
    }

    /// Claims a dose for a booking: the requested one, or the next one neither
    /// received nor reserved. Refused when that dose is taken.
    pub fn claim(
        self: &Arc<Self>,
        ticket: &TicketNumber,
        requested: Option<Dose>,
    ) -> Result<DoseClaim, BookingError> {
        let mut entry = self.entries.get_mut(ticket).ok_or(BookingError::NotFound)?;
        let dose = match requested {
            Some(dose) if entry.dose_is_taken(dose) => return Err(BookingError::AlreadyReserved),
            Some(dose) => dose,
            None => next_open_dose(&entry.resident, entry.reserved_doses())
                .ok_or(BookingError::NotEligible(IneligibleReason::Completed))?,
        };
        entry.pending_doses.push(dose);
        Ok(DoseClaim {
            index: Arc::clone(self),
            ticket: *ticket,
            dose,
            settled: false,
        })
    }

    fn release_pending(&self, ticket: &TicketNumber, dose: Dose, committed: Option<Reservation>) {
        if let Some(mut entry) = self.entries.get_mut(ticket) {
            if let Some(position) = entry.pending_doses.iter().position(|d| *d == dose) {
                entry.pending_doses.swap_remove(position);
            }
            if let Some(reservation) = committed {
                entry.reservations.push(reservation);
            }
        }
    }
}

/// A resident's hold on one dose while its booking is decided and committed.
/// Settle it with the committed reservation; drop it to release the dose.
pub struct DoseClaim {
    index: Arc<ResidentIndex>,
    ticket: TicketNumber,
    dose: Dose,
    settled: bool,
}

impl DoseClaim {
    pub fn dose(&self) -> Dose {
        self.dose
    }

    pub fn ticket_number(&self) -> &TicketNumber {
        &self.ticket
    }

    /// Turns the claim into the committed reservation, in one step, so the
    /// dose is never seen free in between.
    pub fn settle(mut self, committed: Reservation) {
        self.settled = true;
        self.index
            .release_pending(&self.ticket, self.dose, Some(committed));
    }
}

impl Drop for DoseClaim {
    fn drop(&mut self) {
        if !self.settled {
            self.index.release_pending(&self.ticket, self.dose, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_date;

    fn index_with_one() -> (Arc<ResidentIndex>, TicketNumber) {
        let ticket = TicketNumber::parse("1311480001").unwrap();
        let index = Arc::new(ResidentIndex::new(TokenKey::from_secret("t")));
        index.upsert_residents(vec![crate::domain::test_resident(ticket)]);
        (index, ticket)
    }

    #[test]
    fn a_claimed_dose_cannot_be_claimed_again_until_released() {
        let (index, ticket) = index_with_one();
        let first = index.claim(&ticket, Some(Dose::FIRST)).unwrap();
        assert_eq!(
            index.claim(&ticket, Some(Dose::FIRST)).err(),
            Some(BookingError::AlreadyReserved)
        );
        drop(first);
        assert!(index.claim(&ticket, Some(Dose::FIRST)).is_ok());
    }

    #[test]
    fn the_default_dose_skips_pending_claims() {
        let (index, ticket) = index_with_one();
        let first = index.claim(&ticket, None).unwrap();
        let second = index.claim(&ticket, None).unwrap();
        assert_eq!(first.dose(), Dose::FIRST);
        assert_eq!(second.dose(), Dose::new(2).unwrap());
    }

    #[test]
    fn login_refuses_unknown_and_wrong_alike() {
        let (index, ticket) = index_with_one();
        let right = parse_date("1950-04-01").unwrap();
        let wrong = parse_date("1950-04-02").unwrap();
        assert!(index.login(&ticket, right).is_some());
        assert!(index.login(&ticket, wrong).is_none());
        assert!(
            index
                .login(&TicketNumber::parse("9999999999").unwrap(), right)
                .is_none()
        );
    }
}
