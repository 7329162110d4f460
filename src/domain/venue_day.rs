//! The allocator of one venue-day: slot counters and the reservations that use
//! them. Pure and single-owner: exactly one `VenueDayActor` holds each one, so
//! there is no lock and no read-modify-write race.
//!
//! Invariant (asserted after every change): for each slot,
//! `booked == active reservations in that slot <= capacity`. A plan can never
//! cut a capacity below what is booked (`check_new_plan`), so a day restored
//! from the store is never over capacity. (A store edited by hand to hold
//! one would have that slot refuse every booking, and the assertion panic on
//! its next change: nothing books past capacity.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use subtle::ConstantTimeEq;

use super::{
    BookingError, Channel, CheckInError, DayPlan, DayPlanError, Dose, IdempotencyTag,
    IneligibleReason, Reservation, ReservationId, ReservationStatus, SlotTime, TicketNumber,
    VenueDayKey,
};

/// One booking decision's input, already authenticated and routed.
pub struct BookingRequest {
    pub ticket_number: TicketNumber,
    pub time: SlotTime,
    pub dose: Dose,
    pub access_code: Option<String>,
    pub channel: Channel,
    pub now: DateTime<FixedOffset>,
    pub idempotency: Option<IdempotencyTag>,
    /// The last moment this booking may commit (by the shared clock: see
    /// `CLOCKS_AGREE_WITHIN`): when its shared dose claim's lease ends, or
    /// when a process that forwarded it stops waiting. Past it, nothing of
    /// it is written; `None`: no deadline (a process alone).
    pub commit_by: Option<DateTime<Utc>>,
}

/// How far apart the clocks of the processes and the Redis nodes of one
/// deployment may be (NTP keeps them far closer): a deadline set by one
/// clock and checked by another is set this much early.
pub const CLOCKS_AGREE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SlotCounter {
    capacity: u32,
    /// Active reservations, every channel.
    booked: u32,
    /// Places kept for the call centre until the hold release.
    hold: u32,
    /// Active reservations made by operators: they fill the hold first.
    operator_booked: u32,
}

impl SlotCounter {
    fn new(capacity: u32, hold: u32) -> Self {
        Self {
            capacity,
            booked: 0,
            hold,
            operator_booked: 0,
        }
    }

    /// Held places no operator has taken yet.
    fn held_open(&self) -> u32 {
        self.hold.saturating_sub(self.operator_booked)
    }

    fn take(&mut self, channel: Channel) {
        self.booked += 1;
        if channel == Channel::Operator {
            self.operator_booked += 1;
        }
    }

    fn give_back(&mut self, channel: Channel) {
        self.booked -= 1;
        if channel == Channel::Operator {
            self.operator_booked -= 1;
        }
    }
}

/// What availability shows of one slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotAvailability {
    pub time: SlotTime,
    pub capacity: u32,
    /// Free places, any channel: `capacity − booked`.
    pub remaining: u32,
    /// Of those, places held for operators and not yet taken by one (until
    /// the hold release; see `remaining_for`).
    pub held_open: u32,
}

impl SlotAvailability {
    /// What a resident can book now, and what only an operator can, at `now`
    /// against the day's hold release.
    pub fn remaining_for(&self, before_release: bool) -> (u32, u32) {
        if before_release {
            let held = self.held_open.min(self.remaining);
            (self.remaining - held, held)
        } else {
            (self.remaining, 0)
        }
    }
}

/// A published, read-only picture of one venue-day.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DaySnapshot {
    pub key: VenueDayKey,
    /// Shared with the allocator: publishing does not copy the plan.
    pub plan: Arc<DayPlan>,
    pub slots: Vec<SlotAvailability>,
}

impl DaySnapshot {
    pub fn remaining_total(&self) -> u64 {
        self.slots.iter().map(|s| u64::from(s.remaining)).sum()
    }
}

pub struct VenueDay {
    key: VenueDayKey,
    /// `None` until an admin puts the day: bookings are then `not_found`.
    plan: Option<Arc<DayPlan>>,
    slots: BTreeMap<SlotTime, SlotCounter>,
    /// Every reservation of this day, in any status.
    reservations: HashMap<ReservationId, Reservation>,
}

impl VenueDay {
    /// Rebuilds the day from what the store holds: counters are recounted from
    /// the stored active reservations, never stored separately.
    pub fn restore(key: VenueDayKey, plan: Option<DayPlan>, stored: Vec<Reservation>) -> Self {
        let mut day = Self {
            key,
            plan: None,
            slots: BTreeMap::new(),
            reservations: HashMap::with_capacity(stored.len()),
        };
        if let Some(plan) = plan {
            day.set_plan(plan);
        }
        for reservation in stored {
            if reservation.status.is_active()
                && let Some(counter) = day.slots.get_mut(&reservation.time)
            {
                counter.take(reservation.channel);
            }
            day.reservations.insert(reservation.id, reservation);
        }
        day
    }

    /// Every day with a plan, rebuilt from the stored reservations of all
    /// days in one pass (start-up, and a follower's reload).
    pub fn restore_all(
        plans: Vec<(VenueDayKey, DayPlan)>,
        reservations: &[Reservation],
    ) -> HashMap<VenueDayKey, VenueDay> {
        let mut by_day: HashMap<VenueDayKey, Vec<Reservation>> = HashMap::new();
        for reservation in reservations {
            by_day
                .entry(reservation.venue_day())
                .or_default()
                .push(reservation.clone());
        }
        plans
            .into_iter()
            .map(|(key, plan)| {
                let stored = by_day.remove(&key).unwrap_or_default();
                (key.clone(), VenueDay::restore(key, Some(plan), stored))
            })
            .collect()
    }

    pub fn key(&self) -> &VenueDayKey {
        &self.key
    }

    pub fn plan(&self) -> Option<&DayPlan> {
        self.plan.as_deref()
    }

    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// Every reservation of the day, in slot order (for the roster).
    pub fn reservations_by_time(&self) -> Vec<&Reservation> {
        let mut all: Vec<&Reservation> = self.reservations.values().collect();
        all.sort_by(|a, b| a.time.cmp(&b.time).then(a.created_at.cmp(&b.created_at)));
        all
    }

    /// Decides a booking in memory. On `Ok` the place is taken; the caller must
    /// either commit the returned reservation or call `undo_booking`.
    pub fn decide_booking(
        &mut self,
        request: &BookingRequest,
        today: NaiveDate,
    ) -> Result<Reservation, BookingError> {
        let plan = self.plan.as_deref().ok_or(BookingError::NotFound)?;
        if let Some(expected) = &plan.access_code {
            let given = request.access_code.as_deref().unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(BookingError::AccessCodeInvalid);
            }
        }
        let vaccine = plan.vaccine;
        let window = plan.window;
        let hold_release_at = plan.hold_release_at(self.key.date);
        let counter = self
            .slots
            .get_mut(&request.time)
            .ok_or(BookingError::NotFound)?;
        if self.key.date < today {
            return Err(BookingError::NotEligible(IneligibleReason::PastDate));
        }
        if request.time.has_started(self.key.date, request.now) {
            return Err(BookingError::SlotStarted);
        }
        if let Some(opens_at) = window.opens_at
            && request.now < opens_at
        {
            return Err(BookingError::NotOpenYet(opens_at));
        }
        if window
            .closes_at
            .is_some_and(|closes_at| request.now >= closes_at)
        {
            return Err(BookingError::BookingWindowClosed);
        }
        // Until the release, a resident may not take a held place that no
        // operator has taken yet; an operator may book up to capacity.
        let limit = if request.channel == Channel::Web && request.now < hold_release_at {
            counter.capacity - counter.held_open()
        } else {
            counter.capacity
        };
        if counter.booked >= limit {
            return Err(BookingError::SlotFull);
        }
        counter.take(request.channel);
        let reservation = Reservation {
            id: ReservationId::random(),
            ticket_number: request.ticket_number,
            venue_id: self.key.venue_id.clone(),
            date: self.key.date,
            time: request.time,
            dose: request.dose,
            vaccine,
            status: ReservationStatus::Booked,
            channel: request.channel,
            created_at: request.now,
            updated_at: request.now,
            idempotency: request.idempotency.clone(),
        };
        self.reservations
            .insert(reservation.id, reservation.clone());
        self.assert_slot_invariant(request.time);
        Ok(reservation)
    }

    /// Gives back the place of a booking whose commit failed.
    pub fn undo_booking(&mut self, id: ReservationId) {
        let reservation = self
            .reservations
            .remove(&id)
            .expect("undo_booking: the reservation was decided by this day");
        if let Some(counter) = self.slots.get_mut(&reservation.time) {
            counter.give_back(reservation.channel);
        }
        self.assert_slot_invariant(reservation.time);
    }

    /// Decides a cancellation by its owner. On `Ok` returns the cancelled
    /// reservation; the caller must commit it or call `undo_update`.
    pub fn decide_cancel(
        &mut self,
        id: ReservationId,
        owner: &TicketNumber,
        now: DateTime<FixedOffset>,
    ) -> Result<Reservation, BookingError> {
        let reservation = self
            .reservations
            .get_mut(&id)
            .filter(|r| &r.ticket_number == owner)
            .ok_or(BookingError::NotFound)?;
        if reservation.status != ReservationStatus::Booked {
            return Err(BookingError::NotCancellable);
        }
        reservation.status = ReservationStatus::Cancelled;
        reservation.updated_at = now;
        let cancelled = reservation.clone();
        if let Some(counter) = self.slots.get_mut(&cancelled.time) {
            counter.give_back(cancelled.channel);
        }
        self.assert_slot_invariant(cancelled.time);
        Ok(cancelled)
    }

    /// Restores a reservation whose change (cancellation, check-in) failed
    /// to commit, as it was before.
    pub fn undo_update(&mut self, before: Reservation) {
        let time = before.time;
        let now_active = self
            .reservations
            .get(&before.id)
            .is_some_and(|r| r.status.is_active());
        if let Some(counter) = self.slots.get_mut(&time) {
            match (now_active, before.status.is_active()) {
                (false, true) => counter.take(before.channel),
                (true, false) => counter.give_back(before.channel),
                _ => {}
            }
        }
        self.reservations.insert(before.id, before);
        self.assert_slot_invariant(time);
    }

    /// Takes in a reservation as another process committed it (a mirror of a
    /// day this process does not own, `cluster/follow.rs`): it replaces the
    /// version held, and the slot's count follows its status. What the
    /// store holds is within capacity, so no check is made here.
    pub fn apply_stored(&mut self, stored: Reservation) {
        let held_active = self
            .reservations
            .get(&stored.id)
            .map(|r| (r.status.is_active(), r.channel));
        if let Some(counter) = self.slots.get_mut(&stored.time) {
            match (held_active, stored.status.is_active()) {
                (None | Some((false, _)), true) => counter.take(stored.channel),
                (Some((true, channel)), false) if counter.booked > 0 => counter.give_back(channel),
                _ => {}
            }
        }
        self.reservations.insert(stored.id, stored);
    }

    /// Drops a reservation whose batch was undone (`abandon_batch`), in a mirror.
    pub fn forget_stored(&mut self, id: ReservationId) {
        if let Some(gone) = self.reservations.remove(&id)
            && gone.status.is_active()
            && let Some(counter) = self.slots.get_mut(&gone.time)
            && counter.booked > 0
        {
            counter.give_back(gone.channel);
        }
    }

    /// Every reservation held, any status (to rebuild a mirror).
    pub fn into_reservations(self) -> Vec<Reservation> {
        self.reservations.into_values().collect()
    }

    /// Decides a check-in: the owner's booked reservation of this day becomes
    /// attended (it keeps its place). Returns it, and the version it replaces;
    /// the caller must commit it or call `undo_update`.
    pub fn decide_check_in(
        &mut self,
        owner: &TicketNumber,
        now: DateTime<FixedOffset>,
    ) -> Result<(Reservation, Reservation), CheckInError> {
        let mine = || {
            self.reservations
                .values()
                .filter(|r| &r.ticket_number == owner)
        };
        if !mine().any(|r| r.status == ReservationStatus::Booked) {
            return Err(if mine().any(|r| r.status == ReservationStatus::Attended) {
                CheckInError::AlreadyAttended
            } else {
                CheckInError::NoReservation
            });
        }
        let reservation = self
            .reservations
            .values_mut()
            .find(|r| &r.ticket_number == owner && r.status == ReservationStatus::Booked)
            .expect("checked above");
        let previous = reservation.clone();
        reservation.status = ReservationStatus::Attended;
        reservation.updated_at = now;
        let attended = reservation.clone();
        self.assert_slot_invariant(attended.time);
        Ok((attended, previous))
    }

    /// Checks that a new plan keeps every booked place (no slot with bookings
    /// dropped, no capacity below what is booked) and the vaccine those
    /// places were booked for.
    pub fn check_new_plan(&self, plan: &DayPlan) -> Result<(), DayPlanError> {
        let has_bookings = self.slots.values().any(|c| c.booked > 0);
        let vaccine_changes = self
            .plan
            .as_ref()
            .is_some_and(|p| p.vaccine != plan.vaccine);
        if has_bookings && vaccine_changes {
            return Err(DayPlanError::VaccineChangeWithBookings);
        }
        for (time, counter) in &self.slots {
            if counter.booked == 0 {
                continue;
            }
            let kept = plan
                .slots
                .iter()
                .find(|s| s.time == *time)
                .is_some_and(|s| s.capacity >= counter.booked);
            if !kept {
                return Err(DayPlanError::CapacityBelowBooked);
            }
        }
        Ok(())
    }

    /// Applies a plan that passed `check_new_plan`.
    pub fn set_plan(&mut self, plan: DayPlan) {
        let mut slots = BTreeMap::new();
        for slot in &plan.slots {
            let mut counter = SlotCounter::new(slot.capacity, slot.operator_hold);
            if let Some(old) = self.slots.get(&slot.time) {
                counter.booked = old.booked;
                counter.operator_booked = old.operator_booked;
            }
            slots.insert(slot.time, counter);
        }
        self.slots = slots;
        self.plan = Some(Arc::new(plan));
    }

    /// The picture that availability serves, or `None` before the day is put.
    pub fn snapshot(&self) -> Option<DaySnapshot> {
        let plan = Arc::clone(self.plan.as_ref()?);
        let slots = self
            .slots
            .iter()
            .map(|(time, c)| SlotAvailability {
                time: *time,
                capacity: c.capacity,
                remaining: c.capacity.saturating_sub(c.booked),
                held_open: c.held_open(),
            })
            .collect();
        Some(DaySnapshot {
            key: self.key.clone(),
            plan,
            slots,
        })
    }

    /// Active reservations per slot, recounted (for audits and tests).
    pub fn recount_active(&self, time: SlotTime) -> u32 {
        let count = self
            .reservations
            .values()
            .filter(|r| r.time == time && r.status.is_active())
            .count();
        u32::try_from(count).expect("a slot holds at most SLOT_CAPACITY_MAX reservations")
    }

    fn assert_slot_invariant(&self, time: SlotTime) {
        if let Some(counter) = self.slots.get(&time) {
            assert!(counter.booked <= counter.capacity, "slot over capacity");
            debug_assert_eq!(counter.booked, self.recount_active(time));
            debug_assert!(counter.operator_booked <= counter.booked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SlotPlan, Vaccine, VenueId, parse_date};

    fn key() -> VenueDayKey {
        VenueDayKey {
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: parse_date("2030-07-07").unwrap(),
        }
    }

    fn time(text: &str) -> SlotTime {
        SlotTime::parse(text).unwrap()
    }

    fn plan(slots: &[(&str, u32)], access_code: Option<&str>) -> DayPlan {
        DayPlan::new(
            Vaccine::Moderna,
            slots
                .iter()
                .map(|&(t, capacity)| SlotPlan {
                    operator_hold: 0,
                    time: time(t),
                    capacity,
                })
                .collect(),
            access_code.map(str::to_owned),
        )
        .unwrap()
    }

    fn request(ticket: u32, at: &str) -> BookingRequest {
        BookingRequest {
            ticket_number: TicketNumber::parse(&format!("{ticket:010}")).unwrap(),
            time: time(at),
            dose: Dose::FIRST,
            access_code: None,
            channel: Channel::Web,
            now: chrono::Utc::now().fixed_offset(),
            idempotency: None,
            commit_by: None,
        }
    }

    fn today() -> NaiveDate {
        parse_date("2030-07-01").unwrap()
    }

    #[test]
    fn books_exactly_capacity_then_slot_full() {
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 3)], None)), vec![]);
        for ticket in 0..3 {
            day.decide_booking(&request(ticket, "10:30"), today())
                .unwrap();
        }
        assert_eq!(
            day.decide_booking(&request(9, "10:30"), today()).err(),
            Some(BookingError::SlotFull)
        );
        assert_eq!(day.snapshot().unwrap().slots[0].remaining, 0);
    }

    /// From its first minute, today's slot is no longer booked; a later
    /// slot today and the same slot another day are.
    #[test]
    fn a_slot_that_has_started_today_is_refused() {
        let mut day = VenueDay::restore(
            key(),
            Some(plan(&[("14:00", 3), ("14:42", 3), ("15:00", 3)], None)),
            vec![],
        );
        let at = |time: &str, now: &str| BookingRequest {
            now: chrono::DateTime::parse_from_rfc3339(now).unwrap(),
            ..request(1, time)
        };
        let now = "2030-07-07T14:42:00+09:00";
        let on_the_day = parse_date("2030-07-07").unwrap();
        for time in ["14:00", "14:42"] {
            assert_eq!(
                day.decide_booking(&at(time, now), on_the_day).err(),
                Some(BookingError::SlotStarted),
                "{time}"
            );
        }
        assert!(day.decide_booking(&at("15:00", now), on_the_day).is_ok());
        // The evening before in Tokyo (14:42 UTC is 23:42 there): not started.
        let before = "2030-07-06T14:42:00+00:00";
        assert!(day.decide_booking(&at("14:00", before), today()).is_ok());
    }

    #[test]
    fn undo_gives_the_place_back() {
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 1)], None)), vec![]);
        let booked = day.decide_booking(&request(1, "10:30"), today()).unwrap();
        day.undo_booking(booked.id);
        assert!(day.decide_booking(&request(2, "10:30"), today()).is_ok());
    }

    #[test]
    fn unknown_day_or_slot_is_not_found() {
        let mut unplanned = VenueDay::restore(key(), None, vec![]);
        assert_eq!(
            unplanned
                .decide_booking(&request(1, "10:30"), today())
                .err(),
            Some(BookingError::NotFound)
        );
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 1)], None)), vec![]);
        assert_eq!(
            day.decide_booking(&request(1, "11:00"), today()).err(),
            Some(BookingError::NotFound)
        );
    }

    #[test]
    fn restricted_days_need_their_code() {
        let mut day = VenueDay::restore(
            key(),
            Some(plan(&[("10:30", 5)], Some("dose2-only"))),
            vec![],
        );
        assert_eq!(
            day.decide_booking(&request(1, "10:30"), today()).err(),
            Some(BookingError::AccessCodeInvalid)
        );
        let mut with_code = request(1, "10:30");
        with_code.access_code = Some("dose2-only".into());
        assert!(day.decide_booking(&with_code, today()).is_ok());
    }

    #[test]
    fn past_days_cannot_be_booked() {
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 5)], None)), vec![]);
        let later = parse_date("2030-07-08").unwrap();
        assert_eq!(
            day.decide_booking(&request(1, "10:30"), later).err(),
            Some(BookingError::NotEligible(IneligibleReason::PastDate))
        );
    }

    #[test]
    fn cancel_frees_the_place_once_and_only_for_the_owner() {
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 1)], None)), vec![]);
        let booked = day.decide_booking(&request(1, "10:30"), today()).unwrap();
        let stranger = TicketNumber::parse("0000000009").unwrap();
        let now = chrono::Utc::now().fixed_offset();
        assert_eq!(
            day.decide_cancel(booked.id, &stranger, now).err(),
            Some(BookingError::NotFound)
        );
        day.decide_cancel(booked.id, &booked.ticket_number, now)
            .unwrap();
        assert_eq!(
            day.decide_cancel(booked.id, &booked.ticket_number, now)
                .err(),
            Some(BookingError::NotCancellable)
        );
        assert!(day.decide_booking(&request(2, "10:30"), today()).is_ok());
    }

    #[test]
    fn a_new_plan_may_not_drop_booked_places() {
        let mut day = VenueDay::restore(
            key(),
            Some(plan(&[("10:30", 2), ("11:00", 2)], None)),
            vec![],
        );
        day.decide_booking(&request(1, "10:30"), today()).unwrap();
        day.decide_booking(&request(2, "10:30"), today()).unwrap();
        assert_eq!(
            day.check_new_plan(&plan(&[("10:30", 1)], None)),
            Err(DayPlanError::CapacityBelowBooked)
        );
        assert_eq!(
            day.check_new_plan(&plan(&[("11:00", 9)], None)),
            Err(DayPlanError::CapacityBelowBooked)
        );
        // Dropping the empty 11:00 slot and raising 10:30 is fine.
        let wider = plan(&[("10:30", 5)], None);
        assert_eq!(day.check_new_plan(&wider), Ok(()));
        day.set_plan(wider);
        assert_eq!(day.snapshot().unwrap().slots[0].remaining, 3);
    }

    #[test]
    fn restore_recounts_from_active_reservations() {
        let mut day = VenueDay::restore(key(), Some(plan(&[("10:30", 3)], None)), vec![]);
        let a = day.decide_booking(&request(1, "10:30"), today()).unwrap();
        let b = day.decide_booking(&request(2, "10:30"), today()).unwrap();
        let cancelled = day
            .decide_cancel(b.id, &b.ticket_number, chrono::Utc::now().fixed_offset())
            .unwrap();
        let restored = VenueDay::restore(key(), day.plan().cloned(), vec![a, cancelled]);
        assert_eq!(restored.snapshot().unwrap().slots[0].remaining, 2);
    }
}
