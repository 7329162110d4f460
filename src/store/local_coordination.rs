//! `Coordination` in one process's memory, and the contract every
//! implementation keeps, run on it and on Redis.
//!
//! A process alone on its store needs no `Coordination` (its own indexes
//! coordinate, and `Placement` is `None`), so this one serves the contract
//! only: it states in Rust, next to a test that also runs the Lua scripts,
//! what the shared per-resident records, refusals, lockout and member list
//! mean. Its records are the scripts' own strings (`claim_dose.lua`), so
//! that a value read from one and handed back (`replacing`) means the same.
//! With one process there are no other writers: its change streams are
//! always empty, and what it reads "as stored" it reads from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ChangeCursor, ChangesRead, Coordination, LoginLimits, RefusalKept, RefusalToKeep,
    SHARED_CLAIM_LEASE, SharedClaimAnswer, SharedDoseClaim, Store, StoreError,
};
use crate::domain::{
    Dose, Reservation, ReservationId, TicketNumber, Venue, VenueDayKey, VenueId, parse_date,
};

#[derive(Default)]
struct State {
    /// Each resident's record: `dose:<n>` → `pending <claim> <until ms>
    /// <day>` or `booked <id> <day>`, and `cascade` → `<until ms>`.
    doses: HashMap<TicketNumber, BTreeMap<String, String>>,
    /// Kept refusals by (ticket, key): the record and when it goes.
    refusals: HashMap<(TicketNumber, String), (String, i64)>,
    /// Failed logins (ms) and the lock's end (ms), by ticket.
    logins: HashMap<TicketNumber, (Vec<i64>, i64)>,
    /// Member → its lease's end (ms).
    members: BTreeMap<String, i64>,
}

pub struct LocalCoordination {
    store: Arc<dyn Store>,
    state: Mutex<State>,
}

impl LocalCoordination {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("coordination lock")
    }
}

fn now_ms() -> i64 {
    crate::clock::real_now_utc().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).expect("a lease fits in i64 ms")
}

fn day_field(day: &VenueDayKey) -> String {
    format!("{}/{}", day.venue_id, day.date)
}

fn day_of(value: &str) -> Option<VenueDayKey> {
    let (venue, date) = value.rsplit(' ').next()?.split_once('/')?;
    Some(VenueDayKey {
        venue_id: VenueId::parse(venue).ok()?,
        date: parse_date(date).ok()?,
    })
}

/// A dose's field in a resident's record.
fn dose_field(dose: Dose) -> String {
    format!("dose:{}", dose.number())
}

/// The dose a record's field names; `None` for another field (`cascade`).
fn dose_of_field(field: &str) -> Option<Result<Dose, StoreError>> {
    let number = field.strip_prefix("dose:")?;
    Some(
        number
            .parse::<u8>()
            .ok()
            .and_then(|n| Dose::new(n).ok())
            .ok_or_else(corrupt),
    )
}

/// Whether a cancellation cascade runs on the record at `now`.
fn cascade_runs(doses: &BTreeMap<String, String>, now: i64) -> bool {
    doses
        .get("cascade")
        .and_then(|until| until.parse::<i64>().ok())
        .is_some_and(|until| until >= now)
}

/// A pending claim's lease end, if `value` is one.
fn pending_until(value: &str) -> Option<i64> {
    let mut words = value.split(' ');
    (words.next()? == "pending").then_some(())?;
    words.nth(1)?.parse().ok()
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("shared dose record".into())
}

#[async_trait]
impl Coordination for LocalCoordination {
    async fn stored_venue(&self, id: &VenueId) -> Result<Option<Venue>, StoreError> {
        let venues = self.store.load_venues().await?;
        Ok(venues.into_iter().find(|venue| venue.id == *id))
    }

    async fn heartbeat(&self, member: &str, lease: Duration) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut state = self.state();
        state.members.retain(|_, until| *until > now);
        state.members.insert(member.to_owned(), now + millis(lease));
        Ok(state.members.keys().cloned().collect())
    }

    async fn claim_dose(
        &self,
        claim: &SharedDoseClaim,
        replacing: Option<&str>,
    ) -> Result<SharedClaimAnswer, StoreError> {
        let now = now_ms();
        let mut state = self.state();
        if let Some(key) = &claim.idempotency_key
            && let Some((refused, until)) = state.refusals.get(&(claim.ticket, key.clone()))
            && *until > now
        {
            return Ok(SharedClaimAnswer::Refused(refused.clone()));
        }
        let doses = state.doses.entry(claim.ticket).or_default();
        if cascade_runs(doses, now) {
            return Ok(SharedClaimAnswer::InFlight);
        }
        if let Some(prior) = claim.prior
            && !doses.contains_key(&dose_field(prior))
        {
            return Ok(SharedClaimAnswer::PriorGone);
        }
        let field = dose_field(claim.dose);
        if let Some(current) = doses.get(&field)
            && Some(current.as_str()) != replacing
        {
            let day = day_of(current).ok_or_else(corrupt)?;
            return Ok(match pending_until(current) {
                Some(until) if until < now => SharedClaimAnswer::Expired {
                    day,
                    value: current.clone(),
                },
                Some(_) => SharedClaimAnswer::InFlight,
                None => SharedClaimAnswer::Booked {
                    reservation_id: current
                        .split(' ')
                        .nth(1)
                        .and_then(ReservationId::parse)
                        .ok_or_else(corrupt)?,
                    day,
                    value: current.clone(),
                },
            });
        }
        let until = now + millis(SHARED_CLAIM_LEASE);
        let value = format!(
            "pending {:016x} {until} {}",
            claim.id,
            day_field(&claim.day)
        );
        doses.insert(field, value);
        Ok(SharedClaimAnswer::Claimed {
            lease_ends: chrono::DateTime::from_timestamp_millis(until),
        })
    }

    async fn end_dose_claim(
        &self,
        claim: &SharedDoseClaim,
        booked: Option<ReservationId>,
    ) -> Result<(), StoreError> {
        let expected = format!("pending {:016x} ", claim.id);
        let new_value = booked.map(|id| format!("booked {id} {}", day_field(&claim.day)));
        self.change_dose_record(&claim.ticket, claim.dose, &expected, new_value);
        Ok(())
    }

    async fn remember_refusal(
        &self,
        refusal: RefusalToKeep<'_>,
    ) -> Result<RefusalKept, StoreError> {
        let now = now_ms();
        let mut state = self.state();
        let key = (*refusal.ticket, refusal.idempotency_key.to_owned());
        if let Some((kept, until)) = state.refusals.get(&key)
            && *until > now
        {
            return Ok(RefusalKept::Before(kept.clone()));
        }
        let doses = state.doses.get(refusal.ticket).cloned().unwrap_or_default();
        let mut recorded = Vec::new();
        for (field, value) in &doses {
            let Some(dose) = dose_of_field(field).transpose()? else {
                continue;
            };
            if refusal.dose.is_some_and(|asked| asked != dose) {
                continue;
            }
            if pending_until(value).is_some_and(|until| until >= now) {
                return Ok(RefusalKept::DoseInFlight);
            }
            recorded.push((dose, day_of(value).ok_or_else(corrupt)?));
        }
        if refusal.unless_dose_recorded && !recorded.is_empty() {
            return Ok(RefusalKept::DoseRecorded(recorded));
        }
        let until = now + millis(refusal.window);
        state
            .refusals
            .insert(key, (refusal.value.to_owned(), until));
        Ok(RefusalKept::Now)
    }

    async fn start_shared_cascade(
        &self,
        ticket: &TicketNumber,
    ) -> Result<Option<Vec<(Dose, VenueDayKey)>>, StoreError> {
        let now = now_ms();
        let mut state = self.state();
        let doses = state.doses.entry(*ticket).or_default();
        if cascade_runs(doses, now) {
            return Ok(None);
        }
        let mut held = Vec::new();
        for (field, value) in doses.iter() {
            let Some(dose) = dose_of_field(field).transpose()? else {
                continue;
            };
            if pending_until(value).is_some_and(|until| until >= now) {
                return Ok(None);
            }
            held.push((dose, day_of(value).ok_or_else(corrupt)?));
        }
        let until = now + millis(SHARED_CLAIM_LEASE);
        doses.insert("cascade".into(), until.to_string());
        Ok(Some(held))
    }

    async fn end_shared_cascade(&self, ticket: &TicketNumber) -> Result<(), StoreError> {
        if let Some(doses) = self.state().doses.get_mut(ticket) {
            doses.remove("cascade");
        }
        Ok(())
    }

    async fn forget_booked_dose(&self, cancelled: &Reservation) -> Result<(), StoreError> {
        let expected = format!("booked {} ", cancelled.id);
        self.change_dose_record(&cancelled.ticket_number, cancelled.dose, &expected, None);
        Ok(())
    }

    async fn active_reservation_on(
        &self,
        day: &VenueDayKey,
        ticket: &TicketNumber,
        dose: Dose,
    ) -> Result<Option<Reservation>, StoreError> {
        let all = self.store.load_reservations().await?;
        Ok(all.into_iter().find(|r| {
            r.venue_id == day.venue_id
                && r.date == day.date
                && r.ticket_number == *ticket
                && r.dose == dose
                && r.status.is_active()
        }))
    }

    async fn login_attempt(
        &self,
        ticket: &TicketNumber,
        matched: bool,
        limits: LoginLimits,
    ) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let mut state = self.state();
        let (failures, locked_until) = state.logins.entry(*ticket).or_default();
        if *locked_until > now {
            let left = u64::try_from(*locked_until - now).expect("positive");
            return Ok(Some(Duration::from_millis(left)));
        }
        if matched {
            failures.clear();
            return Ok(None);
        }
        failures.retain(|at| *at > now - millis(limits.window));
        failures.push(now);
        if failures.len() >= limits.failures {
            *locked_until = now + millis(limits.lock);
            failures.clear();
        }
        Ok(None)
    }

    fn changes_kept(&self) -> Duration {
        super::CHANGES_KEPT_FOR
    }

    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        Ok(ChangeCursor::default())
    }

    async fn read_changes(&self, after: &ChangeCursor) -> Result<ChangesRead, StoreError> {
        Ok(ChangesRead {
            changes: Vec::new(),
            cursor: after.clone(),
            lost: false,
        })
    }

    async fn stored_reservation(
        &self,
        day: &VenueDayKey,
        id: ReservationId,
    ) -> Result<Option<Reservation>, StoreError> {
        let all = self.store.load_reservations().await?;
        Ok(all
            .into_iter()
            .find(|r| r.id == id && r.venue_id == day.venue_id && r.date == day.date))
    }
}

impl LocalCoordination {
    /// `end_dose_claim.lua`: the record of `dose` becomes `new_value` (or
    /// goes) if it still starts with `expected`.
    fn change_dose_record(
        &self,
        ticket: &TicketNumber,
        dose: Dose,
        expected: &str,
        new_value: Option<String>,
    ) {
        let mut state = self.state();
        let Some(doses) = state.doses.get_mut(ticket) else {
            return;
        };
        let field = dose_field(dose);
        if !doses.get(&field).is_some_and(|v| v.starts_with(expected)) {
            return;
        }
        match new_value {
            Some(value) => doses.insert(field, value),
            None => doses.remove(&field),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Dose, ReservationStatus};

    fn ticket() -> TicketNumber {
        TicketNumber::parse("1311480001").unwrap()
    }

    fn day(venue: &str) -> VenueDayKey {
        VenueDayKey {
            venue_id: VenueId::parse(venue).unwrap(),
            date: parse_date("2027-03-02").unwrap(),
        }
    }

    fn claim(id: u64, dose: u8, prior: Option<u8>, key: Option<&str>) -> SharedDoseClaim {
        SharedDoseClaim {
            ticket: ticket(),
            dose: Dose::new(dose).unwrap(),
            id,
            day: day("clinic-001"),
            idempotency_key: key.map(str::to_owned),
            prior: prior.map(|n| Dose::new(n).unwrap()),
        }
    }

    fn cancelled(id: ReservationId, dose: u8) -> Reservation {
        let at = chrono::DateTime::parse_from_rfc3339("2027-03-01T09:00:00+09:00").unwrap();
        Reservation {
            id,
            ticket_number: ticket(),
            venue_id: VenueId::parse("clinic-001").unwrap(),
            date: parse_date("2027-03-02").unwrap(),
            time: crate::domain::SlotTime::parse("10:00").unwrap(),
            dose: Dose::new(dose).unwrap(),
            vaccine: crate::domain::Vaccine::Pfizer,
            status: ReservationStatus::Cancelled,
            channel: crate::domain::Channel::Web,
            created_at: at,
            updated_at: at,
            idempotency: None,
        }
    }

    fn keep<'a>(
        key: &'a str,
        value: &'a str,
        dose: u8,
        ticket: &'a TicketNumber,
    ) -> RefusalToKeep<'a> {
        RefusalToKeep {
            ticket,
            idempotency_key: key,
            value,
            window: Duration::from_secs(60),
            dose: Some(Dose::new(dose).unwrap()),
            unless_dose_recorded: true,
        }
    }

    /// What every `Coordination` keeps, on a fresh store: one booking of a
    /// dose at a time, a booked dose held until it is forgotten, a claim
    /// ended only by itself, the prior dose checked, no booking during a
    /// cascade, the first kept refusal standing, the shared lockout, and
    /// the member list.
    async fn the_contract(shared: &dyn Coordination) {
        let ticket = ticket();
        // One booking of a dose at a time.
        let first = claim(1, 1, None, None);
        let claimed = shared.claim_dose(&first, None).await.unwrap();
        let SharedClaimAnswer::Claimed {
            lease_ends: Some(ends),
        } = claimed
        else {
            panic!("a first claim is taken: {claimed:?}");
        };
        assert!(ends > chrono::Utc::now(), "its lease runs");
        let second = claim(2, 1, None, None);
        assert_eq!(
            shared.claim_dose(&second, None).await.unwrap(),
            SharedClaimAnswer::InFlight
        );
        // Another claim's end leaves the record alone.
        shared.end_dose_claim(&second, None).await.unwrap();
        assert_eq!(
            shared.claim_dose(&second, None).await.unwrap(),
            SharedClaimAnswer::InFlight
        );
        // No cascade while a booking is in flight; a refusal is not kept then.
        assert_eq!(shared.start_shared_cascade(&ticket).await.unwrap(), None);
        assert_eq!(
            shared
                .remember_refusal(keep("k-1", "r-1", 1, &ticket))
                .await
                .unwrap(),
            RefusalKept::DoseInFlight
        );
        // Booked: the dose is held by that reservation.
        let id = ReservationId::random();
        shared.end_dose_claim(&first, Some(id)).await.unwrap();
        let held = shared.claim_dose(&second, None).await.unwrap();
        let SharedClaimAnswer::Booked {
            reservation_id,
            day: held_on,
            value,
        } = held
        else {
            panic!("a booked dose is held: {held:?}");
        };
        assert_eq!((reservation_id, &held_on), (id, &day("clinic-001")));
        // A refusal resting on a view behind the record is not kept.
        assert_eq!(
            shared
                .remember_refusal(keep("k-1", "r-1", 1, &ticket))
                .await
                .unwrap(),
            RefusalKept::DoseRecorded(vec![(Dose::FIRST, day("clinic-001"))])
        );
        // The prior dose: held for dose 2, gone for dose 3.
        assert!(matches!(
            shared
                .claim_dose(&claim(3, 3, Some(2), None), None)
                .await
                .unwrap(),
            SharedClaimAnswer::PriorGone
        ));
        // A caller that found the record stale replaces it.
        let replaced = shared.claim_dose(&second, Some(&value)).await.unwrap();
        assert!(
            matches!(replaced, SharedClaimAnswer::Claimed { .. }),
            "{replaced:?}"
        );
        shared.end_dose_claim(&second, Some(id)).await.unwrap();
        // Forgotten once cancelled: the dose is free.
        shared.forget_booked_dose(&cancelled(id, 1)).await.unwrap();
        let again = claim(4, 1, None, None);
        assert!(matches!(
            shared.claim_dose(&again, None).await.unwrap(),
            SharedClaimAnswer::Claimed { .. }
        ));
        shared.end_dose_claim(&again, None).await.unwrap();
        // A cascade holds every booking back until it ends.
        let booked = claim(5, 1, None, None);
        shared.claim_dose(&booked, None).await.unwrap();
        shared.end_dose_claim(&booked, Some(id)).await.unwrap();
        assert_eq!(
            shared.start_shared_cascade(&ticket).await.unwrap(),
            Some(vec![(Dose::FIRST, day("clinic-001"))])
        );
        assert_eq!(shared.start_shared_cascade(&ticket).await.unwrap(), None);
        assert_eq!(
            shared
                .claim_dose(&claim(6, 2, None, None), None)
                .await
                .unwrap(),
            SharedClaimAnswer::InFlight
        );
        shared.end_shared_cascade(&ticket).await.unwrap();
        let after = claim(7, 2, None, None);
        assert!(matches!(
            shared.claim_dose(&after, None).await.unwrap(),
            SharedClaimAnswer::Claimed { .. }
        ));
        shared.end_dose_claim(&after, None).await.unwrap();
        // The first kept refusal stands, and a keyed claim answers it.
        assert_eq!(
            shared
                .remember_refusal(keep("k-2", "r-2", 3, &ticket))
                .await
                .unwrap(),
            RefusalKept::Now
        );
        assert_eq!(
            shared
                .remember_refusal(keep("k-2", "r-other", 3, &ticket))
                .await
                .unwrap(),
            RefusalKept::Before("r-2".into())
        );
        assert_eq!(
            shared
                .claim_dose(&claim(8, 3, None, Some("k-2")), None)
                .await
                .unwrap(),
            SharedClaimAnswer::Refused("r-2".into())
        );
        // The lockout: the third failure locks; a match does not unlock.
        let limits = LoginLimits {
            failures: 3,
            window: Duration::from_secs(60),
            lock: Duration::from_secs(60),
        };
        for _ in 0..3 {
            assert_eq!(
                shared.login_attempt(&ticket, false, limits).await.unwrap(),
                None
            );
        }
        let locked = shared.login_attempt(&ticket, true, limits).await.unwrap();
        assert!(locked.is_some_and(|left| left <= limits.lock), "{locked:?}");
        // A match clears the count before the limit.
        let other = TicketNumber::parse("1311480002").unwrap();
        for matched in [false, false, true, false, false] {
            assert_eq!(
                shared.login_attempt(&other, matched, limits).await.unwrap(),
                None
            );
        }
        // The member list.
        let lease = Duration::from_secs(3);
        assert_eq!(
            shared.heartbeat("a http://a", lease).await.unwrap(),
            ["a http://a"]
        );
        let mut live = shared.heartbeat("b http://b", lease).await.unwrap();
        live.sort();
        assert_eq!(live, ["a http://a", "b http://b"]);
        // Nothing stored yet to read.
        let venue = VenueId::parse("clinic-001").unwrap();
        assert!(shared.stored_venue(&venue).await.unwrap().is_none());
        assert!(
            shared
                .stored_reservation(&day("clinic-001"), id)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_contract_holds_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::EmbeddedStore::open(dir.path()).unwrap());
        the_contract(&LocalCoordination::new(store)).await;
    }

    #[tokio::test]
    async fn the_contract_holds_on_redis() {
        let redis = crate::store::test_redis::Redis::start().await;
        let store = crate::store::RedisStore::connect(&redis.url())
            .await
            .unwrap();
        the_contract(&store).await;
    }
}
