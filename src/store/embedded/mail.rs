//! The mail outbox as the workers see it in the embedded store (claims held in memory: one process owns the file).

use async_trait::async_trait;

use super::*;

#[async_trait]
impl MailOutbox for EmbeddedStore {
    async fn claim_due_mail(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
        limit: usize,
        token: MailClaimToken,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let claims = Arc::clone(&self.mail_claims);
        let index = Arc::clone(&self.mail_index);
        self.read(move |db| {
            // Held from the read to the marking, so no two claims overlap.
            let mut claims = claims.lock().expect("mail claims lock poisoned");
            claims.retain(|_, (at, _)| at.elapsed() < MAIL_LEASE);
            let claimed =
                outbox::due_mail(db, &index, now, limit, &mut |id| claims.contains_key(id))?;
            for mail in &claimed {
                claims.insert(mail.id, (Instant::now(), token));
            }
            Ok(claimed)
        })
        .await
    }

    async fn hold_mail(
        &self,
        mail: &OutboxMail,
        token: MailClaimToken,
        _now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<bool, StoreError> {
        let mut claims = self.mail_claims.lock().expect("mail claims lock poisoned");
        Ok(match claims.get_mut(&mail.id) {
            Some((at, held)) if *held == token => {
                *at = Instant::now();
                true
            }
            _ => false,
        })
    }

    async fn settle_mail(
        &self,
        mail: OutboxMail,
        token: MailClaimToken,
    ) -> Result<bool, StoreError> {
        let id = mail.id;
        // A delivery wins over a claim taken since (see the trait): the
        // outbox's write leaves it as it is if it is no longer pending.
        let delivered = matches!(mail.delivery, crate::domain::Delivery::Delivered { .. });
        let ours = |claims: &HashMap<MailId, (Instant, MailClaimToken)>| {
            delivered || claims.get(&id).is_some_and(|(_, held)| *held == token)
        };
        if !ours(&self.mail_claims.lock().expect("mail claims lock poisoned")) {
            return Ok(false);
        }
        self.write_plain(WriteOp::SettleMail(mail)).await?;
        let mut claims = self.mail_claims.lock().expect("mail claims lock poisoned");
        if ours(&claims) {
            claims.remove(&id);
        }
        Ok(true)
    }

    async fn day_reminded(&self, key: VenueDayKey) -> Result<bool, StoreError> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(REMINDED_DAYS).map_err(unavailable)?;
            Ok(table
                .get(day_key(&key).as_str())
                .map_err(unavailable)?
                .is_some())
        })
        .await
    }

    async fn mail_outbox_figures(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<OutboxFigures, StoreError> {
        Ok(outbox::figures(&self.mail_index, now))
    }
}
