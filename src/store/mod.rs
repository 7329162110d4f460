//! Durability. One trait, two homes: `embedded` (a redb file in `--data-dir`,
//! the default) and `redis` (`--redis-url`). The trait is shaped for both: a venue-day's
//! batch is one call (`commit_reservations`), and the kill-switch check lives
//! inside that call, in the same transaction, so a batch is either committed
//! before the switch was engaged or refused.

pub mod coordination;
mod embedded;
#[cfg(test)]
pub mod flaky;
#[cfg(test)]
pub mod local_coordination;
pub mod records;
mod redis;
#[cfg(test)]
pub mod test_redis;

pub use coordination::Coordination;

/// Every store trait, for code that holds a concrete store (tests, tools):
/// `Arc<dyn Store>` reaches the roles' methods without it.
pub mod prelude {
    pub use super::{
        AccountStore, AuditLog, CatalogStore, Coordination, DayLog, KillSwitchStore, MailOutbox,
        ResidentStore, Store,
    };
}
pub use embedded::EmbeddedStore;
pub use redis::{KILL_SWITCH_PARTITIONS, RedisStore, RedisTarget, ReplicaWait, SHARED_CLAIM_LEASE};

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, NaiveDate};
use thiserror::Error;

use crate::domain::{
    Account, AccountId, Actor, DayPlan, Dose, MailId, OutboxMail, Reservation, ReservationId,
    Resident, Role, TicketNumber, Venue, VenueDayKey, VenueId,
};

/// The store could not do what was asked. Never carries personal data.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record could not be read: {0}")]
    Corrupt(String),
}

/// `DayLog::load_readable_days`'s answer: the days and their reservations,
/// without the days that have a reservation record that cannot be read.
pub struct ReadableDays {
    pub plans: Vec<(VenueDayKey, DayPlan)>,
    pub reservations: Vec<Reservation>,
}

/// Why a reservation batch was not committed.
#[derive(Debug, Error)]
pub enum CommitError {
    /// Refused: nothing was written.
    #[error("the kill switch is engaged")]
    KillSwitchEngaged,
    /// Refused: another process owns this venue-day now; nothing was written.
    #[error("another process owns this venue-day")]
    Fenced,
    /// Refused: the batch's `commit_by` had passed by the store's clock (a
    /// booking's dose claim ended, or whoever forwarded it stopped waiting);
    /// nothing was written.
    #[error("the batch's commit deadline has passed")]
    PastDeadline,
    /// Nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outcome is unknown (e.g. the connection broke after sending): the
    /// batch may have been applied. The caller must `abandon_batch` it before
    /// committing anything else for that venue-day.
    #[error("outcome unknown: {0}")]
    Uncertain(StoreError),
}

/// Why an uncertain batch could not be abandoned.
#[derive(Debug, Error)]
pub enum AbandonError {
    /// Another process took the venue-day over (and loaded it) since: this
    /// owner must stop; it can no longer change the day.
    #[error("another process owns this venue-day")]
    Fenced,
    /// Not certain yet: try again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One booking's claim on a resident's dose, shared by every process on one
/// Redis (`claim_dose.lua`): the per-process claim (`residents/`) cannot see
/// the other processes' bookings.
pub struct SharedDoseClaim {
    pub ticket: TicketNumber,
    pub dose: Dose,
    /// Random, so that only this claim's own end can end it.
    pub id: u64,
    /// The venue-day it books: where a claim whose taker died is checked.
    pub day: VenueDayKey,
    /// The booking's `Idempotency-Key`: a first refusal kept under it
    /// (`remember_refusal`) is answered instead of a claim.
    pub idempotency_key: Option<String>,
    /// The prior dose, when the caller knows it as a reservation: the record
    /// must still hold it (else `PriorGone`).
    pub prior: Option<Dose>,
}

/// What a shared claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedClaimAnswer {
    /// Claimed until its lease ends (by the resident's shard's clock; `None`
    /// for a store that shares nothing): a booking under it commits before
    /// then or not at all.
    Claimed {
        lease_ends: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Another booking of this dose is in flight (its lease runs).
    InFlight,
    /// The record does not hold the prior dose the caller named: cancelled
    /// through another process, or booked before the record was kept.
    PriorGone,
    /// The record says this reservation holds the dose; `value` is the
    /// record, which a claim may replace once the store says otherwise.
    Booked {
        reservation_id: ReservationId,
        day: VenueDayKey,
        value: String,
    },
    /// The booking's `Idempotency-Key` was refused before, through some
    /// process: the refusal as `remember_refusal` kept it.
    Refused(String),
    /// A claim whose taker never ended it (it died, or its outcome was
    /// unknown): what its day stores decides.
    Expired { day: VenueDayKey, value: String },
}

/// A keyed booking's final refusal to keep for every process
/// (`Coordination::remember_refusal`).
pub struct RefusalToKeep<'a> {
    pub ticket: &'a TicketNumber,
    pub idempotency_key: &'a str,
    /// The refusal, as the booking service writes it.
    pub value: &'a str,
    /// How long it is kept.
    pub window: Duration,
    /// The dose the booking asks for (`None`: the next one, any dose).
    pub dose: Option<Dose>,
    /// Kept only while the resident's shared dose record names nothing of
    /// `dose` (`false` once the caller checked what it names; a claim on it
    /// whose lease runs still keeps nothing, since one may have started
    /// since the check).
    pub unless_dose_recorded: bool,
}

/// What became of a refusal to keep.
#[derive(Debug, PartialEq, Eq)]
pub enum RefusalKept {
    /// Kept: it is the key's first answer.
    Now,
    /// Another refusal was kept under the key before: that one is the answer.
    Before(String),
    /// A booking of the dose is in flight (a shared claim whose lease runs),
    /// maybe the key's own: nothing kept, the answer is "in progress".
    DoseInFlight,
    /// The shared record names these doses (booked, or a claim never ended)
    /// on these days: nothing kept, the key's own booking may be there.
    DoseRecorded(Vec<(Dose, VenueDayKey)>),
}

/// The per-ticket login lockout (`login_guard`), as the store applies it
/// across processes.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    pub failures: usize,
    pub window: Duration,
    pub lock: Duration,
}

/// How long the change streams keep what they carry by default
/// (`--change-streams-keep-s`): a process that has not read them for about
/// this long may have lost changes, and reloads everything. Their memory is
/// at most this long's commits (about 80 B a booking: a whole
/// 600,000-booking launch is 50 MB, BENCHMARKS.md).
pub const CHANGES_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Most entries read from one change stream in one read.
pub const CHANGES_READ_MAX: usize = 256;

/// How far a process has read the store's change streams: each stream's
/// last entry read. Taken before a process loads its state, so that it
/// then misses nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeCursor(pub std::collections::BTreeMap<String, String>);

/// One change made through some process, as every process learns it from
/// the store (several processes on one Redis: `cluster/follow.rs`).
pub enum Change {
    /// An import: residents inserted or replaced.
    Residents(Vec<Resident>),
    Venue(Venue),
    DayPlan(VenueDayKey, DayPlan),
    /// A venue-day's committed batch: its reservations, new or changed, as stored.
    Reservations {
        day: VenueDayKey,
        stored: Vec<Reservation>,
        /// The owner epoch it was committed under (`None` in entries written
        /// before epochs were recorded): an actor that loaded the day under
        /// an earlier one holds a stale day.
        owner_epoch: Option<u64>,
    },
    /// A batch abandoned (its commit's outcome was unknown): each record it
    /// touched as the store holds it now, gone (`forgotten`) or as stored
    /// (`restored`). Sent whether or not the store applied it, and even when
    /// the abandonment was fenced: a follower may have read the batch from a
    /// master that died before its replica copied it.
    Reverted {
        day: VenueDayKey,
        forgotten: Vec<ReservationId>,
        restored: Vec<Reservation>,
        /// The owner epoch the store was changed under; `None` when the
        /// abandonment was fenced (the store is unchanged).
        owner_epoch: Option<u64>,
    },
}

/// What one read of the change streams found.
pub struct ChangesRead {
    /// Catalog and resident changes first, then each venue-day's, each
    /// stream in its order.
    pub changes: Vec<Change>,
    pub cursor: ChangeCursor,
    /// Some stream was trimmed past the cursor: changes were missed, and
    /// only a reload of everything repairs that.
    pub lost: bool,
}

/// The global kill switch as stored and as `GET /v1/admin/kill-switch` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KillSwitchState {
    pub engaged: bool,
    pub reason: Option<String>,
    pub changed_at: Option<DateTime<FixedOffset>>,
    /// The role that changed it (`sre` or `admin`): roles, never people.
    pub changed_by: Option<String>,
}

/// What an audited action was about. The ticket number is personal data: it
/// appears in the audit log (admin only) and never in logs or metrics.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuditTarget {
    pub venue_id: Option<VenueId>,
    pub date: Option<NaiveDate>,
    pub reservation_id: Option<ReservationId>,
    pub ticket_number: Option<TicketNumber>,
    pub account_id: Option<AccountId>,
}

/// One line of the audit log: who, in which role, when, what, to whom, and
/// how it ended (`"<status> <code or 'ok'>"`). Append-only. No `Debug`: it
/// may name a resident.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Random; with `at`, the entry's place in the log (`AuditCursor`).
    pub id: u64,
    pub at: DateTime<FixedOffset>,
    pub actor: Actor,
    pub role: Role,
    pub action: String,
    pub target: AuditTarget,
    pub outcome: String,
    /// Free text the action carries (the kill switch's reason).
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A new entry, now, with a fresh id.
    pub fn new(
        actor: Actor,
        role: Role,
        action: &str,
        target: AuditTarget,
        outcome: String,
    ) -> Self {
        Self {
            id: rand::random(),
            at: crate::clock::now(),
            actor,
            role,
            action: action.to_owned(),
            target,
            outcome,
            detail: None,
        }
    }

    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at_micros: self.at.timestamp_micros(),
            id: self.id,
        }
    }
}

/// An audit entry waiting for its decision: the actor completes it with the
/// reservation it made or changed, and commits it in the same batch.
#[derive(Clone)]
pub struct AuditDraft {
    pub actor: Actor,
    pub role: Role,
    pub action: std::borrow::Cow<'static, str>,
    pub target: AuditTarget,
    /// The outcome written when the decision commits (`"201 ok"`).
    pub outcome_if_committed: std::borrow::Cow<'static, str>,
}

impl AuditDraft {
    pub fn complete(self, reservation_id: ReservationId) -> AuditEntry {
        let mut target = self.target;
        target.reservation_id = Some(reservation_id);
        AuditEntry::new(
            self.actor,
            self.role,
            &self.action,
            target,
            self.outcome_if_committed.into_owned(),
        )
    }
}

/// A place in the audit log: entries are ordered by (time, id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct AuditCursor {
    pub at_micros: i64,
    pub id: u64,
}

impl AuditCursor {
    /// `<microseconds>-<id in hex>`: what `next` carries.
    pub fn to_text(self) -> String {
        format!("{}-{:016x}", self.at_micros, self.id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (at, id) = text.split_once('-')?;
        Some(Self {
            at_micros: at.parse().ok()?,
            id: u64::from_str_radix(id, 16).ok()?,
        })
    }
}

/// Which entries `read_audit` returns: oldest first, after `after`.
#[derive(Clone, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<FixedOffset>>,
    pub until: Option<DateTime<FixedOffset>>,
    pub actor: Option<Actor>,
    pub action: Option<String>,
    pub after: Option<AuditCursor>,
    /// At most `AUDIT_PAGE_MAX`.
    pub limit: usize,
}

impl AuditQuery {
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at < until)
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| &entry.actor == actor)
            && self
                .action
                .as_ref()
                .is_none_or(|action| &entry.action == action)
            && self.after.is_none_or(|after| entry.cursor() > after)
    }
}

/// Most audit entries in one page (API.md: `limit` ≤ 1000).
pub const AUDIT_PAGE_MAX: usize = 1000;

/// One page of the audit log, and where the next begins (`None`: the end).
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<AuditCursor>,
}

/// A page from up to `limit + 1` matching entries in log order: the extra
/// one only says that there is a next page.
pub fn page_of(mut entries: Vec<AuditEntry>, limit: usize) -> AuditPage {
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = if more {
        entries.last().map(AuditEntry::cursor)
    } else {
        None
    };
    AuditPage { entries, next }
}

/// What the store holds of one venue-day, and the loader's ownership of it.
pub struct StoredVenueDay {
    pub plan: Option<DayPlan>,
    pub reservations: Vec<Reservation>,
    /// Fencing token: loading takes ownership of the venue-day; a commit with
    /// an older epoch is refused (`CommitError::Fenced`). Always 0 where one
    /// process owns the whole store (embedded).
    pub owner_epoch: u64,
    /// The day's reminders were queued (a batch with `reminded`).
    pub reminded: bool,
}

/// One decision of a venue-day's actor for one request, as it is committed:
/// a new reservation, or a changed one with the version it replaces. What
/// must commit atomically with a reservation (the audit entry of a booking,
/// the mail announcing it) travels with its decision, so that the store
/// writes them in the same transaction or script call.
#[derive(Clone)]
pub enum Decision {
    Created(Reservation),
    Updated {
        reservation: Reservation,
        previous: Reservation,
    },
}

impl Decision {
    /// The reservation as it will be stored.
    pub fn reservation(&self) -> &Reservation {
        match self {
            Decision::Created(reservation) | Decision::Updated { reservation, .. } => reservation,
        }
    }
}

/// What a batch changes, which decides whether the kill switch stops it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BatchKind {
    /// Bookings and cancellations: refused while the kill switch is engaged.
    Reservations,
    /// Check-ins at the venue: committed whatever the switch (it stops
    /// booking, not vaccination).
    CheckIns,
    /// The day's reminders: mail about bookings already made, committed
    /// whatever the switch.
    Reminders,
}

/// The decisions of one venue-day's batch. Committed all together or not at
/// all; committing the same batch (same epoch and sequence) again is a no-op.
pub struct ReservationBatch {
    pub kind: BatchKind,
    pub venue_day: VenueDayKey,
    pub owner_epoch: u64,
    /// Increases by one per batch of this owner.
    pub sequence: u64,
    pub decisions: Vec<Decision>,
    /// The audit entries of the audited decisions (operator calls): written
    /// in the same transaction or script call, or not at all.
    pub audit: Vec<AuditEntry>,
    /// The mail announcing the decisions (when mail is on): queued in the
    /// same transaction or script call, or not at all.
    pub mail: Vec<OutboxMail>,
    /// Reminders of reservations this batch cancels: withdrawn in the same
    /// commit if not yet sent (a missing one is no error).
    pub withdraw: Vec<MailId>,
    /// This batch queues the day's reminders: the day is marked reminded in
    /// the same commit, so they are queued once.
    pub reminded: bool,
    /// The earliest `commit_by` of its bookings: past it (by the store's
    /// clock) the store refuses the whole batch (`PastDeadline`).
    pub commit_by: Option<chrono::DateTime<chrono::Utc>>,
}

impl ReservationBatch {
    /// What every store relies on, asserted where a batch lands: each
    /// decision is on the batch's venue-day, an update replaces a version of
    /// the same reservation, a reservation is decided once, and a batch of
    /// reminders changes no reservation.
    pub fn assert_well_formed(&self) {
        for decision in &self.decisions {
            let reservation = decision.reservation();
            assert!(
                reservation.venue_id == self.venue_day.venue_id
                    && reservation.date == self.venue_day.date,
                "a decision on another venue-day"
            );
            if let Decision::Updated { previous, .. } = decision {
                assert_eq!(
                    previous.id, reservation.id,
                    "an update of another reservation"
                );
            }
        }
        assert!(
            self.kind != BatchKind::Reminders || self.decisions.is_empty(),
            "a reminders batch changes no reservation"
        );
        assert_eq!(
            self.reminded,
            self.kind == BatchKind::Reminders,
            "only a reminders batch marks the day reminded"
        );
        debug_assert!(
            {
                let mut ids = std::collections::HashSet::new();
                self.decisions
                    .iter()
                    .all(|d| ids.insert(d.reservation().id))
            },
            "a reservation decided twice in one batch"
        );
    }

    /// What the store must make never-applied if this batch's outcome is unknown.
    pub fn to_abandon(&self) -> AbandonedBatch {
        let mut created = Vec::new();
        let mut previous = Vec::new();
        for decision in &self.decisions {
            match decision {
                Decision::Created(reservation) => created.push(reservation.id),
                Decision::Updated {
                    previous: before, ..
                } => previous.push(before.clone()),
            }
        }
        AbandonedBatch {
            venue_day: self.venue_day.clone(),
            owner_epoch: self.owner_epoch,
            sequence: self.sequence,
            created,
            previous,
            audit: self.audit.clone(),
            mail: self.mail.iter().map(|m| m.id).collect(),
            withdrawn: self.withdraw.clone(),
            reminded: self.reminded,
        }
    }
}

/// A batch whose commit outcome was unknown, to be made never-applied.
#[derive(Clone)]
pub struct AbandonedBatch {
    pub venue_day: VenueDayKey,
    pub owner_epoch: u64,
    pub sequence: u64,
    /// Reservations the batch created: removed if it was applied.
    pub created: Vec<crate::domain::ReservationId>,
    /// The records the batch changed, as they were before: put back if it was applied.
    pub previous: Vec<Reservation>,
    /// Its audit entries: removed if it was applied.
    pub audit: Vec<AuditEntry>,
    /// Its mail: removed if it was applied.
    pub mail: Vec<MailId>,
    /// The reminders it withdrew: pending again if it was applied.
    pub withdrawn: Vec<MailId>,
    /// It marked the day reminded: unmarked if it was applied.
    pub reminded: bool,
}

/// How long a claimed mail is held by the worker that claimed it: one that
/// dies mid-send lets go by then, and another (or its restart) sends it.
/// Renewed right before each send (`MailOutbox::hold_mail`), so it must outlast
/// one send (`mail::SMTP_TIMEOUT`, asserted there).
pub const MAIL_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// One `claim_due_mail` call's hold on the mail it took: random, so that
/// only that claim's own renewal (`hold_mail`) and settlement
/// (`settle_mail`) count. A worker paused past its lease finds its claim
/// taken by another and neither sends nor records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MailClaimToken(pub u64);

impl MailClaimToken {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// The outbox as the SRE sees it: mail due and not yet sent, and since when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxFigures {
    pub pending: u64,
    pub oldest_due: Option<DateTime<FixedOffset>>,
}

#[async_trait]
pub trait Store:
    CatalogStore + DayLog + ResidentStore + KillSwitchStore + AuditLog + MailOutbox + AccountStore
{
    /// `embedded` or `redis`: the `store` label of the metrics, the status
    /// and `/readyz`. Never a reason to behave differently: what differs
    /// between a process alone and processes sharing a store is whether it
    /// has a `Coordination` (`actors::Placement`).
    fn label(&self) -> &'static str;

    /// Answers when the store can take reads and writes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The longest one call can take before it fails (a store that went
    /// away answers no later), reconnecting included: how long after the
    /// store is back a caller that was waiting on it hears so.
    fn call_time_max(&self) -> std::time::Duration;
}

/// Venues and venue-days' plans: the catalog as stored.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    async fn load_venues(&self) -> Result<Vec<Venue>, StoreError>;
    /// Inserts or replaces a venue; `true` when it was new.
    async fn put_venue(&self, venue: Venue) -> Result<bool, StoreError>;

    /// Every venue-day's plan, for the catalog at start.
    async fn load_day_plans(&self) -> Result<Vec<(VenueDayKey, DayPlan)>, StoreError>;
    async fn put_day_plan(&self, key: VenueDayKey, plan: DayPlan) -> Result<(), StoreError>;
}

/// The venue-days' reservations: taken by one owner (`load_venue_day`), committed in fenced batches, abandoned when uncertain.
#[async_trait]
pub trait DayLog: Send + Sync + 'static {
    async fn load_venue_day(&self, key: VenueDayKey) -> Result<StoredVenueDay, StoreError>;

    /// Commits one venue-day's batch atomically, refusing all of it when the
    /// kill switch is engaged at commit time or the epoch is stale.
    async fn commit_reservations(&self, batch: ReservationBatch) -> Result<(), CommitError>;

    /// After `CommitError::Uncertain`: makes sure the batch is not applied and
    /// never will be (reverting it if it was), and tells followers what the
    /// store holds of it in every case, fenced too (`Change::Reverted`).
    /// `Ok` only when that is certain.
    async fn abandon_batch(&self, batch: AbandonedBatch) -> Result<(), AbandonError>;
    /// Every reservation (for tests and tools: one that cannot be read fails it).
    async fn load_reservations(&self) -> Result<Vec<Reservation>, StoreError>;
    /// Every day plan and reservation that can be read, for the indexes at
    /// start and after a follower falls behind: a venue-day with a
    /// reservation record that cannot be read is left out whole (never
    /// loaded without it: that could sell its place twice).
    async fn load_readable_days(&self) -> Result<ReadableDays, StoreError>;
}

/// The imported residents.
#[async_trait]
pub trait ResidentStore: Send + Sync + 'static {
    /// Inserts or replaces residents (by ticket number), all in one transaction.
    async fn put_residents(&self, residents: Vec<Resident>) -> Result<(), StoreError>;
    async fn load_residents(&self) -> Result<Vec<Resident>, StoreError>;
}

/// The kill switch, which every commit checks.
#[async_trait]
pub trait KillSwitchStore: Send + Sync + 'static {
    async fn load_kill_switch(&self) -> Result<KillSwitchState, StoreError>;
    /// Stores the switch and its audit line together. When this returns `Ok`,
    /// every later `commit_reservations` sees the new state.
    async fn set_kill_switch(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<(), StoreError>;
    /// Makes every copy of the switch that commits check agree with the
    /// stored state, in case a process stopped half-way through
    /// `set_kill_switch` (Redis writes a record, then each shard's flag). Run
    /// at start.
    async fn reconcile_kill_switch_flags(&self) -> Result<(), StoreError>;
}

/// Who did what, kept with what it did.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends one audit entry, durably, before its answer is sent.
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// One page of the audit log, oldest first.
    async fn read_audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError>;
}

/// Mail queued by the commits, claimed, sent and settled by the workers.
#[async_trait]
pub trait MailOutbox: Send + Sync + 'static {
    /// Up to `limit` mails whose next try is due at `now` and that no worker
    /// holds, oldest first; each is then held under `token` for `MAIL_LEASE`.
    async fn claim_due_mail(
        &self,
        now: DateTime<FixedOffset>,
        limit: usize,
        token: MailClaimToken,
    ) -> Result<Vec<OutboxMail>, StoreError>;
    /// Right before `mail` is sent: renews the claim under `token` for
    /// `MAIL_LEASE` from `now`, and answers whether it was still this
    /// claim's (`false`: its lease ran out and another worker claimed it,
    /// or it was settled or withdrawn meanwhile; it must not be sent).
    async fn hold_mail(
        &self,
        mail: &OutboxMail,
        token: MailClaimToken,
        now: DateTime<FixedOffset>,
    ) -> Result<bool, StoreError>;
    /// Records what became of a mail claimed under `token` (its `delivery`):
    /// delivered, failed for good, or pending its next try; and lets go of
    /// it. `false`: the claim was not this one's any more (see `hold_mail`),
    /// and nothing was written. A delivery wins over a claim another worker
    /// took since (this one's lease ran out while the store did not answer):
    /// it is recorded while the mail is pending, and that worker's
    /// `hold_mail` then refuses to send it again.
    async fn settle_mail(
        &self,
        mail: OutboxMail,
        token: MailClaimToken,
    ) -> Result<bool, StoreError>;
    /// Were the day's reminders queued? Read without taking the day over
    /// (the scheduler asks first, so it does not move a day between
    /// processes only to hear that they were).
    async fn day_reminded(&self, key: VenueDayKey) -> Result<bool, StoreError>;
    /// Mail due by `now` and not sent yet.
    async fn mail_outbox_figures(
        &self,
        now: DateTime<FixedOffset>,
    ) -> Result<OutboxFigures, StoreError>;
}

/// Staff, operator and SRE accounts.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Inserts or replaces an account with its audit entry; `true` when new.
    async fn put_account(&self, account: Account, audit: AuditEntry) -> Result<bool, StoreError>;
    /// Deletes an account with its audit entry; `false` when there was none.
    async fn delete_account(&self, id: AccountId, audit: AuditEntry) -> Result<bool, StoreError>;
}
