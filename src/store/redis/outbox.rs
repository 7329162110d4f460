//! The mail outbox on Redis, per partition: claimed, held and settled by script.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl MailOutbox for RedisStore {
    async fn claim_due_mail(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
        limit: usize,
        token: MailClaimToken,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let lease_ms = i64::try_from(MAIL_LEASE.as_millis()).expect("the lease is short");
        // Which partitions have due mail: one count per partition, all sent
        // at once (each to its shard), so an idle outbox costs one round
        // trip per look, not a script call per partition.
        let due = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zcount::<_, _, _, u64>(
                        MailKeys::of_partition(partition).due,
                        "-inf",
                        now.timestamp_millis(),
                    )
                    .await
            })
            .await?;
        let mut claimed = Vec::new();
        // One partition with due mail at a time, oldest first within each,
        // until `limit`.
        for (partition, _) in (0..KILL_SWITCH_PARTITIONS)
            .zip(due)
            .filter(|(_, count)| *count > 0)
        {
            if claimed.len() >= limit {
                break;
            }
            let keys = MailKeys::of_partition(partition);
            let invocation = self.claim_mail.invoke(
                &ClaimMailKeys {
                    pending_by_next_try: &keys.due,
                    outbox: &keys.outbox,
                    claims: &keys.claims,
                },
                &ClaimMailArgs {
                    now_ms: now.timestamp_millis().to_string(),
                    most: (limit - claimed.len()).to_string(),
                    lease_ms: lease_ms.to_string(),
                    token: token.0.to_string(),
                },
            );
            // A claim counts once a replica holds it: one lost in a failover
            // would let another worker claim, and send, the same mail.
            let (page, replicated): (Vec<String>, bool) = self
                .durable_call(partition, &invocation, self.claim_mail.script())
                .await?;
            if !replicated {
                tracing::warn!("a mail claim was not replicated in time; left to its lease");
                continue;
            }
            // One that cannot be read stays claimed until its lease ends
            // (and is skipped again then): the rest goes out.
            claimed.extend(
                page.iter()
                    .filter_map(|json| decode_or_skip(json.as_bytes(), "mail", "")),
            );
        }
        Ok(claimed)
    }

    async fn hold_mail(
        &self,
        mail: &OutboxMail,
        token: MailClaimToken,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<bool, StoreError> {
        let keys = MailKeys::of(mail);
        let until = now + chrono::Duration::from_std(MAIL_LEASE).expect("the lease is short");
        let invocation = self.hold_mail.invoke(
            &HoldMailKeys {
                pending_by_next_try: &keys.due,
                pending_by_due: &keys.waiting,
                claims: &keys.claims,
            },
            &HoldMailArgs {
                id: mail.id.to_string(),
                token: token.0.to_string(),
                lease_ends_ms: until.timestamp_millis().to_string(),
            },
        );
        // Renewed only once a replica holds it (see `claim_due_mail`).
        let (held, replicated): (i64, bool) = self
            .durable_call(keys.partition, &invocation, self.hold_mail.script())
            .await?;
        Ok(held == 1 && replicated)
    }

    async fn settle_mail(
        &self,
        mail: OutboxMail,
        token: MailClaimToken,
    ) -> Result<bool, StoreError> {
        let keys = MailKeys::of(&mail);
        let invocation = self.settle_mail.invoke(
            &SettleMailKeys {
                outbox: &keys.outbox,
                pending_by_next_try: &keys.due,
                pending_by_due: &keys.waiting,
                claims: &keys.claims,
            },
            &SettleMailArgs {
                id: mail.id.to_string(),
                json: encode(&mail),
                next_try_ms: next_try_ms(&mail)
                    .map(|ms| ms.to_string())
                    .unwrap_or_default(),
                token: token.0.to_string(),
                delivered: flag(matches!(mail.delivery, Delivery::Delivered { .. })),
            },
        );
        let (answer, replicated): (String, bool) = self
            .durable_call(keys.partition, &invocation, self.settle_mail.script())
            .await?;
        if !replicated {
            // Written on the master only: a failover before its replica
            // copies it would bring the claim back, and the mail would be
            // sent again after its lease (seen by the nemesis's review). The
            // worker tries again while the lease runs; that try finds it
            // written (`SETTLED`) and waits for the replica once more.
            return Err(not_replicated());
        }
        Ok(answer != "LOST")
    }

    async fn day_reminded(&self, key: VenueDayKey) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        limited(connection.exists(VenueDayKeys::of(&key).reminded))
            .await
            .map_err(unavailable)
    }

    async fn mail_outbox_figures(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<OutboxFigures, StoreError> {
        let now_ms = now.timestamp_millis();
        let counts = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zcount::<_, _, _, u64>(
                        MailKeys::of_partition(partition).waiting,
                        "-inf",
                        now_ms,
                    )
                    .await
            })
            .await?;
        let firsts = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zrange_withscores::<_, Vec<(String, f64)>>(
                        MailKeys::of_partition(partition).waiting,
                        0,
                        0,
                    )
                    .await
            })
            .await?;
        let figures_pending: u64 = counts.iter().sum();
        #[allow(clippy::cast_possible_truncation)]
        let oldest_ms = firsts
            .iter()
            .filter_map(|first| first.first().map(|(_, score)| *score as i64))
            .filter(|ms| *ms <= now_ms)
            .min();
        let mut figures = OutboxFigures {
            pending: figures_pending,
            oldest_due: None,
        };
        figures.oldest_due = oldest_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|at| at.with_timezone(&crate::domain::municipality_offset()));
        Ok(figures)
    }
}
