//! The Redis side of `Coordination`: member leases, shared dose claims and
//! cascades, kept refusals, the shared login lockout, and the change streams.

use std::time::Duration;

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::scripts::*;
use super::*;
use crate::store::{
    ChangeCursor, ChangesRead, Coordination, LoginLimits, RefusalKept, RefusalToKeep,
    SharedClaimAnswer, SharedDoseClaim, StoreError,
};

#[async_trait]
impl Coordination for RedisStore {
    async fn stored_venue(&self, id: &VenueId) -> Result<Option<Venue>, StoreError> {
        let json: Option<String> = limited(self.connection().hget(VENUES, id.as_str()))
            .await
            .map_err(unavailable)?;
        json.map(|json| decode(&json, "venue")).transpose()
    }

    async fn heartbeat(&self, member: &str, lease: Duration) -> Result<Vec<String>, StoreError> {
        assert!(
            lease >= Duration::from_secs(1),
            "a lease shorter than a heartbeat's round trip"
        );
        let mut connection = self.connection();
        limited(
            self.heartbeat
                .invoke(
                    &HeartbeatKeys { members: MEMBERS },
                    &HeartbeatArgs {
                        member: member.to_owned(),
                        lease_ms: millis(lease).to_string(),
                    },
                )
                .invoke_async(&mut connection),
        )
        .await
        .map_err(unavailable)
    }

    async fn claim_dose(
        &self,
        claim: &SharedDoseClaim,
        replacing: Option<&str>,
    ) -> Result<SharedClaimAnswer, StoreError> {
        assert!(
            claim
                .prior
                .is_none_or(|prior| prior.number() + 1 == claim.dose.number()),
            "the prior dose is the one before"
        );
        assert!(
            replacing.is_none_or(|value| !value.is_empty()),
            "a record replaced is named"
        );
        let key = resident_doses(&claim.ticket);
        let refused = claim.idempotency_key.as_deref().map_or_else(
            || key.clone(),
            |idempotency_key| refusal_key(&claim.ticket, idempotency_key),
        );
        let mut connection = self.resident_connection(&key);
        let answer: String = limited(
            self.claim_dose
                .invoke(
                    &ClaimDoseKeys {
                        doses: &key,
                        kept_refusal: &refused,
                    },
                    &ClaimDoseArgs {
                        dose: claim.dose.number().to_string(),
                        claim_id: format!("{:016x}", claim.id),
                        lease_ms: millis(SHARED_CLAIM_LEASE).to_string(),
                        day: day_field(&claim.day),
                        replacing: replacing.unwrap_or("").to_owned(),
                        keyed: yes_or_empty(claim.idempotency_key.is_some()),
                        prior_dose: claim
                            .prior
                            .map_or_else(String::new, |d| d.number().to_string()),
                    },
                )
                .invoke_async(&mut connection),
        )
        .await
        .map_err(unavailable)?;
        claim_answer(&answer)
    }

    async fn end_dose_claim(
        &self,
        claim: &SharedDoseClaim,
        booked: Option<ReservationId>,
    ) -> Result<(), StoreError> {
        self.change_dose_record(
            &claim.ticket,
            claim.dose,
            format!("pending {:016x} ", claim.id),
            booked.map_or_else(String::new, |id| {
                format!("booked {id} {}", day_field(&claim.day))
            }),
        )
        .await
    }

    async fn remember_refusal(
        &self,
        refusal: RefusalToKeep<'_>,
    ) -> Result<RefusalKept, StoreError> {
        assert!(
            !refusal.value.is_empty() && !refusal.window.is_zero(),
            "a refusal kept is named and kept for a while"
        );
        let key = refusal_key(refusal.ticket, refusal.idempotency_key);
        let answer: Vec<String> = limited(
            self.remember_refusal
                .invoke(
                    &RememberRefusalKeys {
                        kept_refusal: &key,
                        doses: &resident_doses(refusal.ticket),
                    },
                    &RememberRefusalArgs {
                        refusal: refusal.value.to_owned(),
                        kept_for_s: refusal.window.as_secs().to_string(),
                        dose_asked: refusal
                            .dose
                            .map_or_else(String::new, |d| d.number().to_string()),
                        answer_recorded: yes_or_empty(refusal.unless_dose_recorded),
                    },
                )
                .invoke_async(&mut self.resident_connection(&key)),
        )
        .await
        .map_err(unavailable)?;
        let corrupt = || StoreError::Corrupt("kept refusal".into());
        let mut answer = answer.into_iter();
        Ok(match answer.next().as_deref() {
            Some("new") => RefusalKept::Now,
            Some("kept") => RefusalKept::Before(answer.next().ok_or_else(corrupt)?),
            Some("in_flight") => RefusalKept::DoseInFlight,
            Some("recorded") => {
                let mut recorded = Vec::new();
                while let (Some(dose), Some(value)) = (answer.next(), answer.next()) {
                    recorded.push(dose_on_day(&dose, &value)?);
                }
                RefusalKept::DoseRecorded(recorded)
            }
            _ => return Err(corrupt()),
        })
    }

    async fn start_shared_cascade(
        &self,
        ticket: &crate::domain::TicketNumber,
    ) -> Result<Option<Vec<(crate::domain::Dose, VenueDayKey)>>, StoreError> {
        let key = resident_doses(ticket);
        let answer: Vec<String> = limited(
            self.start_cascade
                .invoke(
                    &StartCascadeKeys { doses: &key },
                    &StartCascadeArgs {
                        lease_ms: millis(SHARED_CLAIM_LEASE).to_string(),
                    },
                )
                .invoke_async(&mut self.resident_connection(&key)),
        )
        .await
        .map_err(unavailable)?;
        let corrupt = || StoreError::Corrupt("shared dose record".into());
        let mut answer = answer.into_iter();
        if answer.next().as_deref() != Some("OK") {
            return Ok(None);
        }
        // "<dose> <record>" each.
        answer
            .map(|held| {
                let (dose, record) = held.split_once(' ').ok_or_else(corrupt)?;
                dose_on_day(dose, record)
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    async fn end_shared_cascade(
        &self,
        ticket: &crate::domain::TicketNumber,
    ) -> Result<(), StoreError> {
        let key = resident_doses(ticket);
        let _: i64 = limited(self.resident_connection(&key).hdel(&key, "cascade"))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget_booked_dose(&self, cancelled: &Reservation) -> Result<(), StoreError> {
        assert!(
            !cancelled.status.is_active(),
            "a dose is forgotten only once its booking is cancelled"
        );
        self.change_dose_record(
            &cancelled.ticket_number,
            cancelled.dose,
            format!("booked {} ", cancelled.id),
            String::new(),
        )
        .await
    }

    async fn active_reservation_on(
        &self,
        day: &VenueDayKey,
        ticket: &crate::domain::TicketNumber,
        dose: crate::domain::Dose,
    ) -> Result<Option<Reservation>, StoreError> {
        Ok(self
            .reservations_of_day(day)
            .await?
            .into_iter()
            .find(|r| r.ticket_number == *ticket && r.dose == dose && r.status.is_active()))
    }

    async fn login_attempt(
        &self,
        ticket: &crate::domain::TicketNumber,
        matched: bool,
        limits: LoginLimits,
    ) -> Result<Option<Duration>, StoreError> {
        assert!(
            limits.failures > 0 && !limits.window.is_zero() && !limits.lock.is_zero(),
            "a lockout needs failures, a window and a lock"
        );
        let failures = resident_key(ticket, "login_failures");
        let locked_ms: u64 = limited(
            self.login_attempt
                .invoke(
                    &LoginAttemptKeys {
                        failures: &failures,
                        lock: &resident_key(ticket, "login_lock"),
                    },
                    &LoginAttemptArgs {
                        matched: flag(matched),
                        failures_that_lock: limits.failures.to_string(),
                        window_ms: millis(limits.window).to_string(),
                        lock_ms: millis(limits.lock).to_string(),
                        suffix: format!("{:08x}", rand::random::<u32>()),
                    },
                )
                .invoke_async(&mut self.resident_connection(&failures)),
        )
        .await
        .map_err(unavailable)?;
        Ok((locked_ms > 0).then(|| Duration::from_millis(locked_ms)))
    }

    fn changes_kept(&self) -> Duration {
        self.changes_kept
    }

    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        self.change_cursor_now().await
    }

    async fn read_changes(&self, after: &ChangeCursor) -> Result<ChangesRead, StoreError> {
        self.read_changes_after(after).await
    }

    async fn stored_reservation(
        &self,
        day: &VenueDayKey,
        id: ReservationId,
    ) -> Result<Option<Reservation>, StoreError> {
        let json: Option<String> = limited(
            self.connection()
                .hget(VenueDayKeys::of(day).reservations, id.to_string()),
        )
        .await
        .map_err(unavailable)?;
        json.map(|json| decode(&json, "reservation")).transpose()
    }
}

/// A yes as "1", a no as "": how the per-resident scripts read a flag.
fn yes_or_empty(yes: bool) -> String {
    if yes { "1" } else { "" }.to_owned()
}

impl RedisStore {
    /// Sets a resident's shared record of `dose` to `new_value` ("" removes
    /// it), if it still starts with `expected` (`end_dose_claim.lua`).
    async fn change_dose_record(
        &self,
        ticket: &crate::domain::TicketNumber,
        dose: crate::domain::Dose,
        expected: String,
        new_value: String,
    ) -> Result<(), StoreError> {
        assert!(
            !expected.is_empty() && expected != new_value,
            "a dose record changes only from what its changer left"
        );
        let key = resident_doses(ticket);
        let _: i64 = limited(
            self.end_dose_claim
                .invoke(
                    &EndDoseClaimKeys { doses: &key },
                    &EndDoseClaimArgs {
                        dose: dose.number().to_string(),
                        expected,
                        new_value,
                    },
                )
                .invoke_async(&mut self.resident_connection(&key)),
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

/// What `claim_dose.lua` answered, read.
fn claim_answer(answer: &str) -> Result<SharedClaimAnswer, StoreError> {
    let corrupt = || StoreError::Corrupt("shared dose record".into());
    let mut words = answer.split(' ');
    Ok(
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("OK"), Some(until), None, None) => SharedClaimAnswer::Claimed {
                lease_ends: Some(
                    until
                        .parse()
                        .ok()
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .ok_or_else(corrupt)?,
                ),
            },
            (Some("prior_gone"), ..) => SharedClaimAnswer::PriorGone,
            (Some("refused"), ..) => {
                SharedClaimAnswer::Refused(answer.trim_start_matches("refused ").to_owned())
            }
            (Some("pending"), ..) => SharedClaimAnswer::InFlight,
            (Some("booked"), Some(id), Some(day), None) => SharedClaimAnswer::Booked {
                reservation_id: ReservationId::parse(id).ok_or_else(corrupt)?,
                day: parse_day_field(day)?,
                value: answer.to_owned(),
            },
            (Some("expired"), Some("pending"), Some(_), Some(_)) => {
                let value = answer.trim_start_matches("expired ").to_owned();
                let day = value.rsplit(' ').next().ok_or_else(corrupt)?;
                SharedClaimAnswer::Expired {
                    day: parse_day_field(day)?,
                    value,
                }
            }
            _ => return Err(corrupt()),
        },
    )
}
