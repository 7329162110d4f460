//! The venue-day log on Redis: a day taken by its owner (`take_ownership.lua`), batches committed and abandoned by script (`commit.lua`, `abandon.lua`), reservations read.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl DayLog for RedisStore {
    async fn load_venue_day(&self, key: VenueDayKey) -> Result<StoredVenueDay, StoreError> {
        let keys = VenueDayKeys::of(&key);
        let mut connection = self.connection();
        let plan: Option<String> = limited(connection.hget(DAYS, day_field(&key)))
            .await
            .map_err(unavailable)?;
        // The new epoch counts only once the replicas hold it: a failover
        // that lost it would hand the next loader the same epoch as this
        // owner, and two owners with one epoch both commit.
        let invocation = self.take_ownership.invoke(
            &TakeOwnershipKeys {
                owner_epoch_key: &keys.owner,
                applied_key: &keys.applied,
                reservations: &keys.reservations,
            },
            &TakeOwnershipArgs {},
        );
        let (reply, replicated): (Vec<Value>, bool) = self
            .durable_call(keys.partition, &invocation, self.take_ownership.script())
            .await?;
        if !replicated {
            return Err(StoreError::Unavailable(
                "the venue-day's new owner epoch was not replicated in time".into(),
            ));
        }
        let mut values = reply.into_iter();
        let owner_epoch = match values.next() {
            Some(Value::Int(epoch)) => {
                u64::try_from(epoch).map_err(|_| StoreError::Corrupt("owner epoch".into()))?
            }
            _ => return Err(StoreError::Corrupt("owner epoch".into())),
        };
        let mut reservations = Vec::new();
        while let (Some(_id), Some(json)) = (values.next(), values.next()) {
            let json: String = ::redis::from_redis_value(json)
                .map_err(|e| StoreError::Corrupt(format!("reservation: {e}")))?;
            reservations.push(decode(&json, "reservation")?);
        }
        // Changed only by the day's owner, which is now this caller.
        let reminded: bool = limited(connection.exists(&keys.reminded))
            .await
            .map_err(unavailable)?;
        Ok(StoredVenueDay {
            plan: plan.map(|json| decode(&json, "day plan")).transpose()?,
            reservations,
            owner_epoch,
            reminded,
        })
    }

    async fn commit_reservations(&self, batch: ReservationBatch) -> Result<(), CommitError> {
        batch.assert_well_formed();
        let keys = VenueDayKeys::of(&batch.venue_day);
        let mut invocation = self.commit.invoke(
            &keys.for_commit(),
            &CommitArgs {
                epoch: batch.owner_epoch.to_string(),
                sequence: batch.sequence.to_string(),
                stops_with_kill_switch: flag(batch.kind == BatchKind::Reservations),
                reservation_count: batch.decisions.len().to_string(),
                audit_count: batch.audit.len().to_string(),
                mail_count: batch.mail.len().to_string(),
                marks_reminded: flag(batch.reminded),
                day: day_field(&batch.venue_day),
                changes_kept_ms: self.changes_kept_ms().to_string(),
                commit_by_ms: batch
                    .commit_by
                    .map_or_else(String::new, |by| by.timestamp_millis().to_string()),
            },
        );
        for reservation in batch.decisions.iter().map(Decision::reservation) {
            invocation
                .arg(reservation.id.to_string())
                .arg(encode(reservation));
        }
        for entry in &batch.audit {
            invocation
                .arg(entry.at.timestamp_micros())
                .arg(audit_member(entry));
        }
        for queued in &batch.mail {
            invocation
                .arg(queued.id.to_string())
                .arg(encode(queued))
                .arg(next_try_ms(queued).unwrap_or_else(|| queued.due_at.timestamp_millis()))
                .arg(queued.due_at.timestamp_millis());
        }
        for id in &batch.withdraw {
            invocation.arg(id.to_string());
        }
        let mut write = ::redis::pipe();
        write.invoke_script(&invocation);
        match self
            .durably(keys.partition, &write, &[self.commit.script()])
            .await
        {
            Ok((replies, replicated)) => match script_answer(replies).as_deref() {
                // Applied on the master; with replicas asked for, it counts
                // only once they hold it too (else a failover could lose it).
                Some("OK") if replicated => Ok(()),
                Some("OK") => Err(CommitError::Uncertain(not_replicated())),
                Some("KILL_SWITCH") => Err(CommitError::KillSwitchEngaged),
                Some("FENCED") => Err(CommitError::Fenced),
                Some("PAST_DEADLINE") => Err(CommitError::PastDeadline),
                other => Err(CommitError::Uncertain(StoreError::Corrupt(format!(
                    "unexpected commit answer {other:?}"
                )))),
            },
            Err(error) => Err(commit_failure(error)),
        }
    }

    async fn abandon_batch(&self, batch: AbandonedBatch) -> Result<(), AbandonError> {
        let keys = VenueDayKeys::of(&batch.venue_day);
        let mut invocation = self.abandon.invoke(
            &keys.for_commit().for_abandon(),
            &AbandonArgs {
                epoch: batch.owner_epoch.to_string(),
                sequence: batch.sequence.to_string(),
                created_count: batch.created.len().to_string(),
                previous_count: batch.previous.len().to_string(),
                audit_count: batch.audit.len().to_string(),
                mail_count: batch.mail.len().to_string(),
                marked_reminded: flag(batch.reminded),
                day: day_field(&batch.venue_day),
                changes_kept_ms: self.changes_kept_ms().to_string(),
            },
        );
        for id in &batch.created {
            invocation.arg(id.to_string());
        }
        for reservation in &batch.previous {
            invocation
                .arg(reservation.id.to_string())
                .arg(encode(reservation));
        }
        for entry in &batch.audit {
            invocation.arg(audit_member(entry));
        }
        for id in batch.mail.iter().chain(&batch.withdrawn) {
            invocation.arg(id.to_string());
        }
        let mut write = ::redis::pipe();
        write.invoke_script(&invocation);
        let (replies, replicated) = self
            .durably(keys.partition, &write, &[self.abandon.script()])
            .await
            .map_err(unavailable)?;
        match script_answer(replies).as_deref() {
            // Retried by the actor until the replicas hold it too.
            Some("OK") if replicated => Ok(()),
            Some("OK") => Err(AbandonError::Store(not_replicated())),
            Some("FENCED") => Err(AbandonError::Fenced),
            other => Err(AbandonError::Store(StoreError::Corrupt(format!(
                "unexpected abandon answer {other:?}"
            )))),
        }
    }

    async fn load_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        let mut all = Vec::new();
        for (key, _) in self.load_day_plans().await? {
            all.extend(self.reservations_of_day(&key).await?);
        }
        Ok(all)
    }

    async fn load_readable_days(&self) -> Result<crate::store::ReadableDays, StoreError> {
        let mut readable = crate::store::ReadableDays {
            plans: Vec::new(),
            reservations: Vec::new(),
        };
        for (key, plan) in self.load_day_plans().await? {
            match self.reservations_of_day(&key).await {
                Ok(reservations) => {
                    readable.reservations.extend(reservations);
                    readable.plans.push((key, plan));
                }
                // That day alone is left out (its actor cannot load it
                // either: 503 for its bookings); the start goes on.
                Err(StoreError::Corrupt(_)) => {
                    metrics::counter!(crate::telemetry::RECORDS_SKIPPED_TOTAL, "what" => "day reservations")
                        .increment(1);
                    tracing::error!(venue_day = %key, "a venue-day has a reservation record that cannot be read: the day is left out until it is repaired");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(readable)
    }
}
