//! A store for tests whose commits can be made to fail on demand, wrapping a
//! real one: it proves that a failed commit is undone and answered `503`.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::store::{
    AccountStore, AuditLog, CatalogStore, DayLog, KillSwitchStore, MailOutbox, ResidentStore,
};

use super::{
    AbandonError, AbandonedBatch, AuditEntry, AuditPage, AuditQuery, CommitError, KillSwitchState,
    MailClaimToken, OutboxFigures, ReservationBatch, Store, StoreError, StoredVenueDay,
};
use crate::domain::{
    Account, AccountId, DayPlan, OutboxMail, Reservation, Resident, Venue, VenueDayKey,
};

pub struct FlakyStore<S> {
    pub inner: S,
    /// While set, every reservation commit fails and writes nothing.
    pub fail_commits: AtomicBool,
    /// While set, every reservation commit's outcome is unknown (nothing is written).
    pub uncertain_commits: AtomicBool,
    /// While set, abandoning a batch finds another owner (as after a takeover).
    pub fence_abandons: AtomicBool,
    /// While set, commits are applied by the inner store and then reported
    /// uncertain (the reply was lost).
    pub lose_commit_replies: AtomicBool,
    /// While set, each commit reaches the inner store as if a minute late
    /// (the process was paused): its deadline is checked as of then.
    pub late_commits: AtomicBool,
    /// This many next mail settlements fail (the store did not answer).
    pub failing_settles: std::sync::atomic::AtomicUsize,
    /// This many next mail claims fail (the store did not answer).
    pub failing_claims: std::sync::atomic::AtomicUsize,
    /// While set, each abandonment waits for a permit of `abandon_permits`.
    pub gate_abandons: AtomicBool,
    pub abandon_permits: tokio::sync::Semaphore,
    /// While set, each reservation commit waits for a permit of
    /// `commit_permits`; `commits_at_gate` counts those that reached it.
    pub gate_commits: AtomicBool,
    pub commit_permits: tokio::sync::Semaphore,
    pub commits_at_gate: std::sync::atomic::AtomicUsize,
}

impl<S> FlakyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fail_commits: AtomicBool::new(false),
            uncertain_commits: AtomicBool::new(false),
            fence_abandons: AtomicBool::new(false),
            lose_commit_replies: AtomicBool::new(false),
            late_commits: AtomicBool::new(false),
            failing_settles: std::sync::atomic::AtomicUsize::new(0),
            failing_claims: std::sync::atomic::AtomicUsize::new(0),
            gate_abandons: AtomicBool::new(false),
            abandon_permits: tokio::sync::Semaphore::new(0),
            gate_commits: AtomicBool::new(false),
            commit_permits: tokio::sync::Semaphore::new(0),
            commits_at_gate: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn set_failing(&self, failing: bool) {
        self.fail_commits.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: Store> Store for FlakyStore<S> {
    fn label(&self) -> &'static str {
        self.inner.label()
    }
    fn call_time_max(&self) -> std::time::Duration {
        self.inner.call_time_max()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<S: Store> CatalogStore for FlakyStore<S> {
    async fn load_venues(&self) -> Result<Vec<Venue>, StoreError> {
        self.inner.load_venues().await
    }
    async fn put_venue(&self, venue: Venue) -> Result<bool, StoreError> {
        self.inner.put_venue(venue).await
    }
    async fn load_day_plans(&self) -> Result<Vec<(VenueDayKey, DayPlan)>, StoreError> {
        self.inner.load_day_plans().await
    }
    async fn put_day_plan(&self, key: VenueDayKey, plan: DayPlan) -> Result<(), StoreError> {
        self.inner.put_day_plan(key, plan).await
    }
}

#[async_trait]
impl<S: Store> DayLog for FlakyStore<S> {
    async fn load_venue_day(&self, key: VenueDayKey) -> Result<StoredVenueDay, StoreError> {
        self.inner.load_venue_day(key).await
    }
    async fn commit_reservations(&self, mut batch: ReservationBatch) -> Result<(), CommitError> {
        if self.gate_commits.load(Ordering::SeqCst) {
            self.commits_at_gate.fetch_add(1, Ordering::SeqCst);
            self.commit_permits
                .acquire()
                .await
                .expect("the semaphore is never closed")
                .forget();
        }
        if self.late_commits.load(Ordering::SeqCst) {
            batch.commit_by = batch.commit_by.map(|by| by - chrono::Duration::minutes(1));
        }
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected commit failure".into()).into());
        }
        if self.uncertain_commits.load(Ordering::SeqCst) {
            return Err(CommitError::Uncertain(StoreError::Unavailable(
                "injected unknown outcome".into(),
            )));
        }
        let lose_reply = self.lose_commit_replies.load(Ordering::SeqCst);
        let result = self.inner.commit_reservations(batch).await;
        if lose_reply && result.is_ok() {
            return Err(CommitError::Uncertain(StoreError::Unavailable(
                "injected lost reply".into(),
            )));
        }
        result
    }
    async fn abandon_batch(&self, batch: AbandonedBatch) -> Result<(), AbandonError> {
        if self.gate_abandons.load(Ordering::SeqCst) {
            self.abandon_permits
                .acquire()
                .await
                .expect("the semaphore is never closed")
                .forget();
        }
        if self.fence_abandons.load(Ordering::SeqCst) {
            return Err(AbandonError::Fenced);
        }
        self.inner.abandon_batch(batch).await
    }
    async fn load_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        self.inner.load_reservations().await
    }
    async fn load_readable_days(&self) -> Result<super::ReadableDays, StoreError> {
        self.inner.load_readable_days().await
    }
}

#[async_trait]
impl<S: Store> ResidentStore for FlakyStore<S> {
    async fn put_residents(&self, residents: Vec<Resident>) -> Result<(), StoreError> {
        self.inner.put_residents(residents).await
    }
    async fn load_residents(&self) -> Result<Vec<Resident>, StoreError> {
        self.inner.load_residents().await
    }
}

#[async_trait]
impl<S: Store> KillSwitchStore for FlakyStore<S> {
    async fn load_kill_switch(&self) -> Result<KillSwitchState, StoreError> {
        self.inner.load_kill_switch().await
    }
    async fn set_kill_switch(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        self.inner.set_kill_switch(state, audit).await
    }
    async fn reconcile_kill_switch_flags(&self) -> Result<(), StoreError> {
        self.inner.reconcile_kill_switch_flags().await
    }
}

#[async_trait]
impl<S: Store> AuditLog for FlakyStore<S> {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.inner.append_audit(entry).await
    }
    async fn read_audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.read_audit(query).await
    }
}

#[async_trait]
impl<S: Store> MailOutbox for FlakyStore<S> {
    async fn claim_due_mail(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
        limit: usize,
        token: MailClaimToken,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let failing = self
            .failing_claims
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Unavailable("injected claim failure".into()));
        }
        self.inner.claim_due_mail(now, limit, token).await
    }
    async fn hold_mail(
        &self,
        mail: &OutboxMail,
        token: MailClaimToken,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<bool, StoreError> {
        self.inner.hold_mail(mail, token, now).await
    }
    async fn settle_mail(
        &self,
        mail: OutboxMail,
        token: MailClaimToken,
    ) -> Result<bool, StoreError> {
        let failing = self
            .failing_settles
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Unavailable(
                "injected settlement failure".into(),
            ));
        }
        self.inner.settle_mail(mail, token).await
    }
    async fn day_reminded(&self, key: VenueDayKey) -> Result<bool, StoreError> {
        self.inner.day_reminded(key).await
    }
    async fn mail_outbox_figures(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<OutboxFigures, StoreError> {
        self.inner.mail_outbox_figures(now).await
    }
}

#[async_trait]
impl<S: Store> AccountStore for FlakyStore<S> {
    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.inner.load_accounts().await
    }
    async fn put_account(&self, account: Account, audit: AuditEntry) -> Result<bool, StoreError> {
        self.inner.put_account(account, audit).await
    }
    async fn delete_account(&self, id: AccountId, audit: AuditEntry) -> Result<bool, StoreError> {
        self.inner.delete_account(id, audit).await
    }
}
