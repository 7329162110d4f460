//! `VenueDayActor`: the only writer of one venue-day.
//!
//! Group commit: each message is moved from the mailbox into `waiting`; a
//! flush, spawned once per round, runs after actix has drained the mailbox, so
//! it sees everything that arrived together. It decides the waiting requests in
//! memory against committed state, commits the decisions as one batch under
//! `ctx.wait` (the mailbox is not read meanwhile, so it fills to its bound and
//! the gateway sheds load), then answers every request of the batch. A failed
//! commit is undone in memory and answered `503`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Shared;
use super::messages::{
    Book, Cancel, CheckIn, ListReservations, QueueReminders, ReplaceDayPlan, Retire, Superseded,
};
use super::registry::{Lifecycle, MAILBOX_CLOSED};
use crate::domain::{
    BookingError, CheckInError, DayPlanError, MailId, OutboxMail, Reservation, VenueDay,
    VenueDayKey,
};
use crate::residents::DoseClaim;
use crate::store::{
    AbandonError, AbandonedBatch, AuditEntry, BatchKind, CommitError, Decision, ReservationBatch,
    StoreError,
};
use crate::telemetry;

/// Ceiling of `--venue-day-queue-max`: most messages queued in one
/// venue-day's mailbox; beyond it the gateway answers `503 overloaded` at once.
pub const VENUE_DAY_MAILBOX_MAX: usize = 65_536;
/// Most requests taken out of the mailbox and waiting for the next flush.
pub const VENUE_DAY_WAITING_MAX: usize = 2048;
/// Most decisions committed in one batch.
pub const COMMIT_BATCH_MAX: usize = 512;
/// How soon an uncertain batch's abandonment is tried (again) without waiting
/// for a request, so a refused batch never stays applied.
pub const ABANDON_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Default of `--venue-day-idle-s`: how long a venue-day's actor (and its
/// reservations in memory) stays after its last request.
pub const VENUE_DAY_IDLE_MAX_DEFAULT: Duration = Duration::from_secs(600);
/// A past day's actor stops after this much idleness, whatever the setting.
pub const PAST_DAY_IDLE_MAX: Duration = Duration::from_secs(10);
/// Bounds of how often an actor checks whether it is idle.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(100);
const IDLE_CHECK_MAX: Duration = Duration::from_secs(30);
/// With several processes, how often at least an actor checks that its day
/// is still this process's (`retire_if_moved`): how long at most an actor
/// outlives its day's move when no `Retire` reached it.
const OWNERSHIP_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const _: () = assert!(
    COMMIT_BATCH_MAX <= VENUE_DAY_WAITING_MAX && VENUE_DAY_WAITING_MAX <= VENUE_DAY_MAILBOX_MAX,
    "a batch is taken from what waits, which is taken from the mailbox"
);
const _: () = assert!(IDLE_CHECK_MIN.as_millis() < IDLE_CHECK_MAX.as_millis());
const _: () = assert!(
    OWNERSHIP_CHECK_INTERVAL.as_millis() < crate::cluster::MEMBER_LEASE.as_millis(),
    "an actor looks at who owns its day more often than a lease lasts"
);
const _: () = assert!(
    PAST_DAY_IDLE_MAX.as_secs() <= VENUE_DAY_IDLE_MAX_DEFAULT.as_secs(),
    "a past day's actor stops sooner than a day to come"
);

enum Pending {
    Book(Book),
    Cancel(Cancel),
    CheckIn(CheckIn),
    Plan(ReplaceDayPlan),
    Reminders(QueueReminders),
}

impl Pending {
    /// The batch a decision for this request goes into (`None`: a plan, decided alone).
    fn batch_kind(&self) -> Option<BatchKind> {
        match self {
            Pending::Book(_) | Pending::Cancel(_) => Some(BatchKind::Reservations),
            Pending::CheckIn(_) => Some(BatchKind::CheckIns),
            Pending::Plan(_) | Pending::Reminders(_) => None,
        }
    }
}

impl Pending {
    fn refuse_overloaded(self) {
        self.refuse(BookingError::Overloaded, DayPlanError::Overloaded);
    }

    fn refuse(self, booking: BookingError, plan: DayPlanError) {
        // A requester that has gone away is not an error.
        match self {
            Pending::Book(Book { claim, reply, .. }) => {
                // Release the dose before answering, so a retry finds it free.
                drop(claim);
                let _ = reply.send(Err(booking));
            }
            Pending::Cancel(m) => {
                let _ = m.reply.send(Err(booking));
            }
            Pending::CheckIn(m) => {
                let _ = m.reply.send(Err(check_in_refusal(booking)));
            }
            Pending::Plan(m) => {
                let _ = m.reply.send(Err(plan));
            }
            Pending::Reminders(m) => {
                let _ = m.reply.send(Err(StoreError::Unavailable(
                    "the venue-day is overloaded".into(),
                )));
            }
        }
    }
}

/// Whom a decision answers: a booking or cancellation, or a check-in.
enum Reply {
    Booking(tokio::sync::oneshot::Sender<Result<Reservation, BookingError>>),
    CheckIn(tokio::sync::oneshot::Sender<Result<Reservation, CheckInError>>),
}

impl Reply {
    /// A requester that has gone away is not an error.
    fn send(self, answer: Result<Reservation, BookingError>) {
        match self {
            Reply::Booking(reply) => {
                let _ = reply.send(answer);
            }
            Reply::CheckIn(reply) => {
                let _ = reply.send(answer.map_err(check_in_refusal));
            }
        }
    }
}

/// A commit failure as a check-in's answer (the kill switch never refuses one).
fn check_in_refusal(error: BookingError) -> CheckInError {
    match error {
        BookingError::Overloaded => CheckInError::Overloaded,
        _ => CheckInError::StoreUnavailable,
    }
}

/// A decision taken in memory, waiting for its batch to commit: what the
/// store commits, and whom to answer.
struct Decided {
    decision: Decision,
    /// Its audit entry, committed with it (operator calls).
    audit: Option<AuditEntry>,
    /// The mail announcing it, queued with it.
    mail: Vec<OutboxMail>,
    /// A cancelled reservation's reminder, withdrawn with it.
    withdraw: Option<MailId>,
    /// The booking's dose claim: settled on commit, released on failure.
    claim: Option<DoseClaim>,
    /// The booking's deadline (`BookingRequest::commit_by`).
    commit_by: Option<chrono::DateTime<chrono::Utc>>,
    reply: Reply,
}

pub struct VenueDayActor {
    /// The venue-day this actor alone decides for.
    key: VenueDayKey,
    /// Store, resident index and catalog.
    shared: Arc<Shared>,
    /// Messages in the mailbox, counted by the senders: the mailbox's real bound.
    queued: Arc<AtomicUsize>,
    /// The allocator; `None` only until the store has answered at start.
    day: Option<VenueDay>,
    /// Requests out of the mailbox, waiting for the next flush (≤ `VENUE_DAY_WAITING_MAX`).
    waiting: VecDeque<Pending>,
    /// A flush has been spawned and will run once the mailbox is drained.
    flush_scheduled: bool,
    /// Fencing token from loading the day; every batch carries it.
    owner_epoch: u64,
    /// Sequence of the last batch sent under `owner_epoch`.
    sequence: u64,
    /// A batch whose commit outcome was unknown: it must be abandoned in the
    /// store before anything else is decided.
    abandoned: Option<AbandonedBatch>,
    /// The day's reminders were queued (loaded with the day; set by the
    /// batch that queued them): later bookings are reminded at once.
    reminded: bool,
    /// Idle limit and the registry entry to remove on stopping.
    lifecycle: Lifecycle,
    /// When the last message arrived (or the actor started).
    last_active: Instant,
    /// Another process owns the day now: stop as soon as nothing is in
    /// flight (sticky, so a `Retire` that arrives while busy is not lost).
    retiring: bool,
}

impl VenueDayActor {
    pub(super) fn new(
        key: VenueDayKey,
        shared: Arc<Shared>,
        queued: Arc<AtomicUsize>,
        lifecycle: Lifecycle,
    ) -> Self {
        Self {
            key,
            shared,
            queued,
            day: None,
            waiting: VecDeque::new(),
            flush_scheduled: false,
            owner_epoch: 0,
            sequence: 0,
            abandoned: None,
            reminded: false,
            lifecycle,
            last_active: Instant::now(),
            retiring: false,
        }
    }

    /// Stops once quiet if the day is another process's now, or this
    /// process's lease lapsed since the actor started (`must_retire`; told
    /// so by a `Retire`, or seen at start, after a batch, or at an idle
    /// check): an actor left on a moved day would serve a stale view.
    fn retire_if_moved(&mut self, ctx: &mut Context<Self>) {
        self.retiring |= self.lifecycle.must_retire(&self.key);
        if self.retiring {
            self.stop_if_quiet(
                ctx,
                "venue-day moved, or this process's lease lapsed; actor stops",
            );
        }
    }

    /// How long this day may sit idle before its actor stops: its own limit,
    /// or `PAST_DAY_IDLE_MAX` once the day is over (nobody books a past day;
    /// its roster and check-ins reload on demand).
    fn idle_max(&self) -> Duration {
        let today = crate::clock::today();
        if self.key.date < today {
            self.lifecycle.idle_max.min(PAST_DAY_IDLE_MAX)
        } else {
            self.lifecycle.idle_max
        }
    }

    /// Stops the actor if it has been idle long enough and nothing is in
    /// flight. Closing the mailbox counter first (only when it is zero) makes
    /// the hand-over exact: a sender either got in before (and the actor stays)
    /// or sees it closed and starts a fresh actor, which reloads the day.
    fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.last_active.elapsed() >= self.idle_max() {
            self.stop_if_quiet(ctx, "venue-day idle; actor stops");
        } else {
            self.retire_if_moved(ctx);
        }
    }

    /// Stops the actor unless a request waits, a commit is in flight or an
    /// abandonment is unconfirmed, closing the mailbox counter first (see
    /// `stop_if_idle`).
    fn stop_if_quiet(&mut self, ctx: &mut Context<Self>, why: &'static str) {
        let busy = !self.waiting.is_empty() || self.flush_scheduled || self.abandoned.is_some();
        if !busy
            && self
                .queued
                .compare_exchange(0, MAILBOX_CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            tracing::debug!(venue_day = %self.key, "{why}");
            ctx.stop();
        }
    }

    fn day(&mut self) -> &mut VenueDay {
        self.day
            .as_mut()
            .expect("messages are handled only after the venue-day is loaded")
    }

    fn publish(&self) {
        if let Some(snapshot) = self.day.as_ref().and_then(VenueDay::snapshot) {
            self.shared.catalog.publish(snapshot);
        }
    }

    fn enqueue(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.last_active = Instant::now();
        if self.waiting.len() >= VENUE_DAY_WAITING_MAX {
            pending.refuse_overloaded();
            return;
        }
        self.waiting.push_back(pending);
        self.schedule_flush(ctx);
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.waiting.is_empty() {
            // Every batch ends here: a retiring actor stops once drained.
            if !self.flush_scheduled && self.retiring {
                self.stop_if_quiet(ctx, "venue-day owned by another process now; actor stops");
            }
            return;
        }
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        // Spawned items run after actix has drained the mailbox: the flush sees
        // every request that arrived together.
        ctx.spawn(fut::ready(()).map(|(), act: &mut Self, ctx| act.flush(ctx)));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if self.take_priority(ctx) {
            return;
        }
        let Some(kind) = self.waiting.front().and_then(Pending::batch_kind) else {
            return;
        };
        let today = crate::clock::today();
        let mut decided = Vec::new();
        while decided.len() < COMMIT_BATCH_MAX {
            // One kind per batch: the kill switch refuses bookings, not check-ins.
            if self.waiting.front().and_then(Pending::batch_kind) != Some(kind) {
                break;
            }
            let next = match self.waiting.pop_front() {
                Some(Pending::Book(message)) => self.decide_book(message, today),
                Some(Pending::Cancel(message)) => self.decide_cancel(message),
                Some(Pending::CheckIn(message)) => self.decide_check_in(message),
                Some(Pending::Plan(_) | Pending::Reminders(_)) | None => {
                    unreachable!("the front was of the batch's kind")
                }
            };
            decided.extend(next);
        }
        assert!(decided.len() <= COMMIT_BATCH_MAX);
        assert!(
            self.abandoned.is_none(),
            "nothing is decided over an uncertain batch"
        );
        if decided.is_empty() {
            self.schedule_flush(ctx);
            return;
        }
        self.commit(kind, decided, ctx);
    }

    /// What goes before any decision, alone: an uncertain batch's
    /// abandonment, a plan's replacement or the reminders' queueing at the
    /// front. Answers whether one was started (the flush ends there).
    fn take_priority(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.abandoned.is_some() {
            self.settle_abandoned(ctx);
            return true;
        }
        match self.waiting.front() {
            Some(Pending::Plan(_)) => {
                let Some(Pending::Plan(message)) = self.waiting.pop_front() else {
                    unreachable!("front was a plan")
                };
                self.replace_plan(message, ctx);
                true
            }
            Some(Pending::Reminders(_)) => {
                let Some(Pending::Reminders(message)) = self.waiting.pop_front() else {
                    unreachable!("front was the reminders")
                };
                self.queue_reminders(message, ctx);
                true
            }
            _ => false,
        }
    }

    /// A booking decided in memory, or answered at once (refused, or past
    /// its deadline).
    fn decide_book(&mut self, message: Book, today: chrono::NaiveDate) -> Option<Decided> {
        let Book {
            request,
            claim,
            audit,
            mail,
            reply,
        } = message;
        if past_deadline(request.commit_by) {
            // Its dose claim ended, or whoever forwarded it stopped waiting
            // (this process was paused, or its queue long): committed now, it
            // could take a dose booked elsewhere meanwhile, or turn the 503
            // its caller answered into a booking.
            metrics::counter!(telemetry::BOOKINGS_PAST_DEADLINE_TOTAL, "when" => "decided")
                .increment(1);
            drop(claim);
            let _ = reply.send(Err(BookingError::StoreUnavailable));
            return None;
        }
        match self.day().decide_booking(&request, today) {
            Ok(reservation) => {
                assert_eq!(reservation.ticket_number, request.ticket_number);
                Some(Decided {
                    audit: audit.map(|draft| draft.complete(reservation.id)),
                    mail: mail
                        .map(|policy| policy.on_booking(&reservation, request.now, self.reminded))
                        .unwrap_or_default(),
                    withdraw: None,
                    decision: Decision::Created(reservation),
                    claim: Some(claim),
                    commit_by: request.commit_by,
                    reply: Reply::Booking(reply),
                })
            }
            Err(refusal) => {
                // Release the dose before answering, so a retry finds it free.
                drop(claim);
                let _ = reply.send(Err(refusal));
                None
            }
        }
    }

    /// A cancellation decided in memory, or refused at once.
    fn decide_cancel(&mut self, message: Cancel) -> Option<Decided> {
        let before = self.day().reservation(message.reservation_id).cloned();
        match self
            .day()
            .decide_cancel(message.reservation_id, &message.owner, message.now)
        {
            Ok(cancelled) => Some(Decided {
                audit: message.audit.map(|draft| draft.complete(cancelled.id)),
                mail: message
                    .notice
                    .map(|notice| {
                        vec![notice.policy.on_cancel(
                            &cancelled,
                            &notice.also_cancelled,
                            message.now,
                        )]
                    })
                    .unwrap_or_default(),
                withdraw: Some(MailId::reminder_of(cancelled.id)),
                decision: Decision::Updated {
                    reservation: cancelled,
                    previous: before.expect("a cancelled reservation existed before"),
                },
                claim: None,
                commit_by: None,
                reply: Reply::Booking(message.reply),
            }),
            Err(refusal) => {
                let _ = message.reply.send(Err(refusal));
                None
            }
        }
    }

    /// A check-in decided in memory, or refused at once.
    fn decide_check_in(&mut self, message: CheckIn) -> Option<Decided> {
        let CheckIn {
            owner,
            now,
            audit,
            reply,
        } = message;
        match self.day().decide_check_in(&owner, now) {
            Ok((attended, previous)) => {
                assert_eq!(
                    attended.id, previous.id,
                    "a check-in updates one reservation"
                );
                Some(Decided {
                    audit: audit.map(|draft| draft.complete(attended.id)),
                    mail: Vec::new(),
                    withdraw: None,
                    decision: Decision::Updated {
                        previous,
                        reservation: attended,
                    },
                    claim: None,
                    commit_by: None,
                    reply: Reply::CheckIn(reply),
                })
            }
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
                None
            }
        }
    }

    /// The batch that commits `decided` under the current sequence.
    fn batch_of(&self, kind: BatchKind, decided: &[Decided]) -> ReservationBatch {
        ReservationBatch {
            kind,
            venue_day: self.key.clone(),
            owner_epoch: self.owner_epoch,
            sequence: self.sequence,
            decisions: decided.iter().map(|d| d.decision.clone()).collect(),
            audit: decided.iter().filter_map(|d| d.audit.clone()).collect(),
            mail: decided
                .iter()
                .flat_map(|d| d.mail.iter().cloned())
                .collect(),
            withdraw: decided.iter().filter_map(|d| d.withdraw).collect(),
            reminded: false,
            commit_by: decided.iter().filter_map(|d| d.commit_by).min(),
        }
    }

    fn commit(&mut self, kind: BatchKind, decided: Vec<Decided>, ctx: &mut Context<Self>) {
        assert!(!decided.is_empty() && decided.len() <= COMMIT_BATCH_MAX);
        assert!(
            self.abandoned.is_none(),
            "an uncertain batch is abandoned first"
        );
        self.sequence += 1;
        let batch = self.batch_of(kind, &decided);
        let store = Arc::clone(&self.shared.store);
        let started = Instant::now();
        let size = decided.len();
        ctx.wait(
            async move { store.commit_reservations(batch).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let store_kind = act.shared.store.label();
                    metrics::histogram!(telemetry::COMMIT_DURATION_SECONDS, "store" => store_kind)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(telemetry::COMMIT_BATCH_SIZE).record(size as f64);
                    let fenced = matches!(result, Err(CommitError::Fenced));
                    act.finish_commit(kind, result, decided);
                    if act.abandoned.is_some() {
                        act.retry_abandon_later(ctx);
                    }
                    if fenced {
                        // Another process owns the day now: stop, so the next
                        // request starts a fresh actor that reloads it.
                        tracing::warn!(venue_day = %act.key, "venue-day fenced by another owner; actor stops");
                        ctx.stop();
                    } else {
                        act.schedule_flush(ctx);
                    }
                }),
        );
    }

    /// Applies a batch's outcome: memory and the resident index first, then
    /// the published snapshot, and only then the answers, so that whoever gets
    /// an answer sees its effect everywhere.
    fn finish_commit(
        &mut self,
        kind: BatchKind,
        result: Result<(), CommitError>,
        decided: Vec<Decided>,
    ) {
        let size = decided.len();
        let answers = match result {
            Ok(()) => self.settle_committed(decided),
            Err(error) => {
                let refusal = self.refusal_for(&error, kind, &decided);
                self.undo_refused(decided, refusal)
            }
        };
        assert_eq!(answers.len(), size, "every decision is answered once");
        self.publish();
        for (reply, answer) in answers {
            reply.send(answer);
        }
    }

    /// A committed batch: its dose claims settled and the resident index
    /// told; answers in the batch's order.
    fn settle_committed(
        &mut self,
        decided: Vec<Decided>,
    ) -> Vec<(Reply, Result<Reservation, BookingError>)> {
        let audited = decided.iter().filter(|d| d.audit.is_some()).count();
        if audited > 0 {
            metrics::counter!(telemetry::AUDIT_ENTRIES_TOTAL, "written" => "with_commit")
                .increment(audited as u64);
        }
        let mut answers = Vec::with_capacity(decided.len());
        for Decided {
            decision,
            claim,
            reply,
            ..
        } in decided
        {
            let reservation = decision.reservation().clone();
            match (decision, claim) {
                (Decision::Created(_), Some(claim)) => claim.settle(reservation.clone()),
                (Decision::Created(_), None) => unreachable!("a booking carries its dose claim"),
                (Decision::Updated { .. }, claim) => {
                    assert!(claim.is_none(), "only a booking carries a dose claim");
                    self.shared.residents.record(reservation.clone());
                }
            }
            answers.push((reply, Ok(reservation)));
        }
        answers
    }

    /// What a batch's decisions are answered when the store did not commit
    /// it; an uncertain batch is kept to be abandoned first.
    fn refusal_for(
        &mut self,
        error: &CommitError,
        kind: BatchKind,
        decided: &[Decided],
    ) -> BookingError {
        match error {
            CommitError::KillSwitchEngaged => BookingError::BookingClosed,
            CommitError::Fenced => BookingError::StoreUnavailable,
            CommitError::PastDeadline => {
                // Paused between deciding and the store's answer: certain,
                // nothing was written.
                metrics::counter!(telemetry::BOOKINGS_PAST_DEADLINE_TOTAL, "when" => "committed")
                    .increment(decided.iter().filter(|d| d.commit_by.is_some()).count() as u64);
                tracing::warn!(venue_day = %self.key, decisions = decided.len(),
                    "batch refused by the store: a booking's deadline had passed; undone in memory");
                BookingError::StoreUnavailable
            }
            CommitError::Store(cause) => {
                tracing::error!(venue_day = %self.key, error = %cause, decisions = decided.len(),
                    "batch commit failed; undone in memory");
                BookingError::StoreUnavailable
            }
            CommitError::Uncertain(cause) => {
                tracing::error!(venue_day = %self.key, error = %cause, decisions = decided.len(),
                    "batch commit outcome unknown; undone in memory, to be abandoned in the store");
                assert!(self.abandoned.is_none(), "one uncertain batch at a time");
                self.abandoned = Some(self.batch_of(kind, decided).to_abandon());
                BookingError::StoreUnavailable
            }
        }
    }

    /// A batch the store did not commit, undone in memory newest first (so
    /// each undo meets the state it left); its claims released before the
    /// answers, so a retry finds the dose free.
    fn undo_refused(
        &mut self,
        decided: Vec<Decided>,
        refusal: BookingError,
    ) -> Vec<(Reply, Result<Reservation, BookingError>)> {
        let mut answers = Vec::with_capacity(decided.len());
        for Decided {
            decision,
            claim,
            reply,
            ..
        } in decided.into_iter().rev()
        {
            match decision {
                Decision::Created(reservation) => {
                    self.day().undo_booking(reservation.id);
                }
                Decision::Updated { previous, .. } => {
                    self.day().undo_update(previous);
                }
            }
            drop(claim);
            answers.push((reply, Err(refusal)));
        }
        answers
    }

    fn retry_abandon_later(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(ABANDON_RETRY_DELAY, |act, ctx| {
            if act.abandoned.is_some() {
                act.settle_abandoned(ctx);
            }
        });
    }

    /// Abandons the uncertain batch before anything else is decided. Until the
    /// store confirms, waiting requests are answered `503` at once.
    fn settle_abandoned(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.abandoned.take() else {
            return;
        };
        let store = Arc::clone(&self.shared.store);
        let retry = batch.clone();
        ctx.wait(
            async move { store.abandon_batch(batch).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(()) => {
                        tracing::info!(venue_day = %act.key, "uncertain batch abandoned; committing again");
                        act.schedule_flush(ctx);
                    }
                    Err(AbandonError::Fenced) => {
                        // Another process loaded the day after the uncertain
                        // batch, and owns it now: this actor's view is stale.
                        // Stop, so that the next request reloads the day.
                        tracing::warn!(venue_day = %act.key, "venue-day fenced while abandoning a batch; actor stops");
                        ctx.stop();
                    }
                    Err(AbandonError::Store(error)) => {
                        tracing::error!(venue_day = %act.key, error = %error, "store still unavailable");
                        act.abandoned = Some(retry);
                        act.retry_abandon_later(ctx);
                        for pending in act.waiting.drain(..) {
                            pending.refuse(BookingError::StoreUnavailable, DayPlanError::StoreUnavailable);
                        }
                    }
                }),
        );
    }

    /// Queues a reminder for each booked reservation whose resident has an
    /// address, and marks the day reminded, in one commit (decided alone).
    fn queue_reminders(&mut self, message: QueueReminders, ctx: &mut Context<Self>) {
        let QueueReminders { policy, now, reply } = message;
        if self.reminded || !policy.reminders_due(self.key.date, now) {
            let _ = reply.send(Ok(0));
            self.schedule_flush(ctx);
            return;
        }
        let shared = Arc::clone(&self.shared);
        let mail: Vec<_> = self
            .day()
            .reservations_by_time()
            .into_iter()
            .filter(|r| r.status == crate::domain::ReservationStatus::Booked)
            .filter(|r| shared.residents.has_email(&r.ticket_number))
            .map(|r| policy.reminder(r, now))
            .collect();
        let queued = mail.len();
        self.sequence += 1;
        let batch = ReservationBatch {
            kind: BatchKind::Reminders,
            venue_day: self.key.clone(),
            owner_epoch: self.owner_epoch,
            sequence: self.sequence,
            decisions: Vec::new(),
            audit: Vec::new(),
            mail,
            withdraw: Vec::new(),
            reminded: true,
            commit_by: None,
        };
        let abandon = batch.to_abandon();
        let store = Arc::clone(&self.shared.store);
        ctx.wait(
            async move { store.commit_reservations(batch).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let fenced = matches!(result, Err(CommitError::Fenced));
                    let answer = match result {
                        Ok(()) => {
                            act.reminded = true;
                            Ok(queued)
                        }
                        Err(CommitError::Uncertain(cause)) => {
                            act.abandoned = Some(abandon);
                            act.retry_abandon_later(ctx);
                            Err(cause)
                        }
                        Err(CommitError::Store(cause)) => Err(cause),
                        Err(
                            CommitError::Fenced
                            | CommitError::KillSwitchEngaged
                            | CommitError::PastDeadline,
                        ) => Err(StoreError::Unavailable(
                            "another process owns the venue-day".into(),
                        )),
                    };
                    let _ = reply.send(answer);
                    if fenced {
                        // As for any batch: stop; the next message reloads the day.
                        ctx.stop();
                    } else {
                        act.schedule_flush(ctx);
                    }
                }),
        );
    }

    fn replace_plan(&mut self, message: ReplaceDayPlan, ctx: &mut Context<Self>) {
        let ReplaceDayPlan { plan, reply } = message;
        if let Err(refusal) = self.day().check_new_plan(&plan) {
            let _ = reply.send(Err(refusal));
            self.schedule_flush(ctx);
            return;
        }
        let created = self.day().plan().is_none();
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        let stored_plan = plan.clone();
        ctx.wait(
            async move { store.put_day_plan(key, stored_plan).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    match result {
                        Ok(()) => {
                            act.day().set_plan(plan);
                            act.publish();
                            let _ = reply.send(Ok(created));
                        }
                        Err(error) => {
                            tracing::error!(venue_day = %act.key, error = %error, "day plan not stored");
                            let _ = reply.send(Err(DayPlanError::StoreUnavailable));
                        }
                    }
                    act.schedule_flush(ctx);
                }),
        );
    }
}

impl Actor for VenueDayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let mut check_every = (self.idle_max() / 2).clamp(IDLE_CHECK_MIN, IDLE_CHECK_MAX);
        if self.lifecycle.shares_days() {
            check_every = check_every.min(OWNERSHIP_CHECK_INTERVAL);
        }
        ctx.run_interval(check_every, Self::stop_if_idle);
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        // `wait`: no message is handled before the day is loaded.
        ctx.wait(
            async move { store.load_venue_day(key).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(stored) => {
                        act.owner_epoch = stored.owner_epoch;
                        act.reminded = stored.reminded;
                        // The store is the truth: the resident state learns
                        // every stored reservation of the day (a no-op after
                        // an idle stop; after a fence, it learns what another
                        // owner committed, or what an uncertain batch left).
                        for reservation in &stored.reservations {
                            act.shared.residents.record(reservation.clone());
                        }
                        act.day = Some(VenueDay::restore(
                            act.key.clone(),
                            stored.plan,
                            stored.reservations,
                        ));
                        act.publish();
                        // Started for a message from a process whose view
                        // said this one owns the day: it serves what it was
                        // sent (fenced if stale), then stops if it does not.
                        act.retiring |= act.lifecycle.must_retire(&act.key);
                    }
                    Err(error) => {
                        // Queued requests are dropped with the mailbox; their
                        // senders answer 503 and their claims are released.
                        // A record that cannot be read stops this day alone
                        // (never skipped: that could sell its place twice).
                        if matches!(error, crate::store::StoreError::Corrupt(_)) {
                            metrics::counter!(crate::telemetry::RECORDS_SKIPPED_TOTAL, "what" => "venue-day")
                                .increment(1);
                        }
                        tracing::error!(venue_day = %act.key, error = %error, "cannot load venue-day; actor stops");
                        ctx.stop();
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.on_stopped();
    }
}

impl VenueDayActor {
    fn on_stopped(&mut self) {
        self.lifecycle.forget(&self.key);
        // Whatever is still waiting was never decided: refuse it, which also
        // releases its dose claims.
        for pending in self.waiting.drain(..) {
            pending.refuse(
                BookingError::StoreUnavailable,
                DayPlanError::StoreUnavailable,
            );
        }
    }
}

impl Handler<Book> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: Book, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Book(message), ctx);
    }
}

impl Handler<CheckIn> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: CheckIn, ctx: &mut Context<Self>) {
        self.enqueue(Pending::CheckIn(message), ctx);
    }
}

impl Handler<Cancel> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: Cancel, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Cancel(message), ctx);
    }
}

impl Handler<ListReservations> for VenueDayActor {
    type Result = ();
    /// Answered at once from memory: committed state (a batch in flight is
    /// answered only after its commit, and the mailbox is not read meanwhile).
    fn handle(&mut self, message: ListReservations, _ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.last_active = Instant::now();
        let all = self
            .day
            .as_ref()
            .map(|day| day.reservations_by_time().into_iter().cloned().collect())
            .unwrap_or_default();
        let _ = message.reply.send(all);
    }
}

impl Handler<Retire> for VenueDayActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.retiring = true;
        self.retire_if_moved(ctx);
    }
}

impl Handler<Superseded> for VenueDayActor {
    type Result = ();

    /// A stale day decides nothing more: what waits (and what is still in
    /// the mailbox) is answered `503` and retried against a fresh actor,
    /// which loads the day (a refusal such as `slot_full` from the stale
    /// day would be final). Only an unconfirmed abandonment keeps the actor
    /// until it is settled; a commit in flight is never interrupted (the
    /// actor reads no message meanwhile).
    fn handle(&mut self, message: Superseded, ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if message.owner_epoch <= self.owner_epoch || self.retiring && self.abandoned.is_some() {
            return;
        }
        tracing::warn!(venue_day = %self.key, "another process committed on this venue-day after it was loaded here; actor stops");
        self.retiring = true;
        if self.abandoned.is_some() {
            self.retire_if_moved(ctx);
        } else {
            self.queued.store(MAILBOX_CLOSED, Ordering::Release);
            ctx.stop();
        }
    }
}

impl Handler<QueueReminders> for VenueDayActor {
    type Result = ();

    fn handle(&mut self, message: QueueReminders, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Reminders(message), ctx);
    }
}

impl Handler<ReplaceDayPlan> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: ReplaceDayPlan, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Plan(message), ctx);
    }
}

/// Whether a booking's deadline has passed (by this process's real clock;
/// the store checks it again at the commit, by its own).
fn past_deadline(commit_by: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    commit_by.is_some_and(|by| crate::clock::real_now_utc() >= by)
}

#[cfg(test)]
mod tests {
    use crate::cluster::LocalDays;
    use crate::store::prelude::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use super::super::{Registry, Shared};
    use crate::catalog::Catalog;
    use crate::domain::{
        BookingError, BookingRequest, Channel, DayPlan, Dose, SlotPlan, SlotTime, TicketNumber,
        Vaccine, VenueDayKey, VenueId, municipality_offset, test_resident,
    };
    use crate::residents::{ClaimRequest, InMemoryResidents, Residents};
    use crate::store::flaky::FlakyStore;
    use crate::store::{AuditEntry, EmbeddedStore, KillSwitchState, Store};
    use crate::tokens::TokenKey;

    fn ticket(n: u8) -> TicketNumber {
        TicketNumber::parse(&format!("13114800{n:02}")).unwrap()
    }

    fn claim_request(slot_date: chrono::NaiveDate) -> ClaimRequest {
        ClaimRequest {
            dose: None,
            vaccine: Vaccine::Moderna,
            slot_date,
            today: crate::domain::local_date(chrono::Utc::now()),
        }
    }

    fn request(n: u8, dose: Dose) -> BookingRequest {
        BookingRequest {
            ticket_number: ticket(n),
            time: SlotTime::parse("10:30").unwrap(),
            dose,
            access_code: None,
            channel: Channel::Web,
            now: chrono::Utc::now().with_timezone(&municipality_offset()),
            idempotency: None,
            commit_by: None,
        }
    }

    struct Fixture<S> {
        _dir: tempfile::TempDir,
        store: Arc<FlakyStore<S>>,
        residents: Residents,
        catalog: Arc<Catalog>,
        registry: Registry,
        key: VenueDayKey,
    }

    /// One venue-day with one slot of `capacity`, residents 1 and 2, on an
    /// embedded store.
    async fn fixture(capacity: u32, idle_max: Duration) -> Fixture<EmbeddedStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        fixture_on(store, dir, capacity, idle_max).await
    }

    async fn fixture_on<S: Store>(
        store: S,
        dir: tempfile::TempDir,
        capacity: u32,
        idle_max: Duration,
    ) -> Fixture<S> {
        let store = Arc::new(FlakyStore::new(store));
        let residents = Residents::new(InMemoryResidents::new(TokenKey::from_secret("t")));
        residents.upsert_residents(vec![test_resident(ticket(1)), test_resident(ticket(2))]);
        let catalog = Arc::new(Catalog::default());
        let shared = Arc::new(Shared {
            store: Arc::clone(&store) as Arc<dyn Store>,
            residents: residents.clone(),
            catalog: Arc::clone(&catalog),
        });
        let registry = Registry::new(shared, None, 1, 64, idle_max);
        let key = VenueDayKey {
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: crate::domain::local_date(chrono::Utc::now()) + chrono::Duration::days(10),
        };
        let plan = DayPlan::new(
            Vaccine::Moderna,
            vec![SlotPlan {
                operator_hold: 0,
                time: SlotTime::parse("10:30").unwrap(),
                capacity,
            }],
            None,
        )
        .unwrap();
        assert_eq!(registry.replace_plan(&key, plan).await, Ok(true));
        Fixture {
            _dir: dir,
            store,
            residents,
            catalog,
            registry,
            key,
        }
    }

    impl<S: Store> Fixture<S> {
        async fn book(&self, n: u8) -> Result<crate::domain::Reservation, BookingError> {
            let claim = self
                .residents
                .claim(&ticket(n), &claim_request(self.key.date))?;
            let request = request(n, claim.dose());
            self.registry
                .book(&self.key, request, claim, None, None)
                .await
        }

        fn remaining(&self) -> u32 {
            self.catalog.day(&self.key).unwrap().slots[0].remaining
        }
    }

    /// A booking whose deadline passed before its actor decided it (its dose
    /// claim ended, or whoever forwarded it stopped waiting), or while the
    /// store committed it (the process paused), is answered `503`, never
    /// committed, and its place and dose are free again.
    #[actix_rt::test]
    async fn a_booking_past_its_deadline_is_answered_503_and_never_committed() {
        let fixture = fixture(1, Duration::from_secs(600)).await;
        let (store, residents, key) = (&fixture.store, &fixture.residents, &fixture.key);
        let book_by = |deadline: chrono::Duration| {
            let claim = residents
                .claim(&ticket(1), &claim_request(key.date))
                .unwrap();
            let mut request = request(1, claim.dose());
            request.commit_by = Some(crate::clock::real_now_utc() + deadline);
            fixture.registry.book(key, request, claim, None, None)
        };

        let passed = book_by(chrono::Duration::seconds(-1)).await;
        assert_eq!(passed.err(), Some(BookingError::StoreUnavailable));
        assert_eq!(fixture.remaining(), 1);
        assert!(store.load_reservations().await.unwrap().is_empty());

        // Decided in time, and at the store a minute late: the store refuses.
        store.late_commits.store(true, SeqCst);
        let late = book_by(chrono::Duration::seconds(30)).await;
        assert_eq!(late.err(), Some(BookingError::StoreUnavailable));
        assert_eq!(fixture.remaining(), 1);
        assert!(store.load_reservations().await.unwrap().is_empty());

        // In time: booked, with the same dose.
        store.late_commits.store(false, SeqCst);
        let booked = book_by(chrono::Duration::seconds(30)).await.unwrap();
        assert_eq!(fixture.remaining(), 0);
        let stored = store.load_reservations().await.unwrap();
        assert_eq!(
            stored.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![booked.id]
        );
    }

    #[actix_rt::test]
    async fn a_failed_commit_is_undone_and_answered_503_and_a_refused_one_booking_closed() {
        let fixture = fixture(1, Duration::from_secs(600)).await;
        let (store, residents, key) = (&fixture.store, &fixture.residents, &fixture.key);
        let remaining = || fixture.remaining();

        // The store fails: 503, the place is given back, the dose released.
        store.set_failing(true);
        let claim = residents
            .claim(&ticket(1), &claim_request(key.date))
            .unwrap();
        let answer = fixture
            .registry
            .book(key, request(1, claim.dose()), claim, None, None)
            .await;
        assert_eq!(answer.err(), Some(BookingError::StoreUnavailable));
        assert_eq!(remaining(), 1);
        assert!(store.load_reservations().await.unwrap().is_empty());

        // The store is back: the same resident books the same dose.
        store.set_failing(false);
        let claim = residents
            .claim(&ticket(1), &claim_request(key.date))
            .unwrap();
        assert_eq!(claim.dose(), Dose::FIRST, "the failed claim was released");
        let booked = fixture
            .registry
            .book(key, request(1, claim.dose()), claim, None, None)
            .await
            .unwrap();
        assert_eq!(remaining(), 0);
        assert_eq!(residents.reservations_of(&ticket(1)).len(), 1);

        // The switch is engaged in the store: the commit is refused, undone.
        let engaged = KillSwitchState {
            engaged: true,
            ..KillSwitchState::default()
        };
        let audit = AuditEntry::new(
            crate::domain::Actor::Env(crate::domain::Role::Sre),
            crate::domain::Role::Sre,
            "kill_switch.set",
            crate::store::AuditTarget::default(),
            "200 ok".into(),
        );
        store.set_kill_switch(engaged, audit).await.unwrap();
        let cancel = fixture
            .registry
            .cancel(key, booked.id, ticket(1), booked.created_at, None, None)
            .await;
        assert_eq!(cancel.err(), Some(BookingError::BookingClosed));
        assert_eq!(remaining(), 0, "the cancellation was undone");
        let stored = store.load_reservations().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, crate::domain::ReservationStatus::Booked);
    }

    /// Waits (polling, bounded) until the registry runs `count` actors.
    async fn until_actor_count(registry: &Registry, count: usize) {
        for _ in 0..200 {
            if registry.actor_count() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the registry still runs {} actors", registry.actor_count());
    }

    #[actix_rt::test]
    async fn a_fenced_abandonment_stops_the_actor_and_the_next_request_reloads_and_books() {
        let fixture = fixture(2, Duration::from_secs(600)).await;
        // The commit's outcome is unknown, and another owner took the day
        // over meanwhile: abandoning the batch is fenced.
        fixture.store.uncertain_commits.store(true, SeqCst);
        fixture.store.fence_abandons.store(true, SeqCst);
        assert_eq!(
            fixture.book(1).await.err(),
            Some(BookingError::StoreUnavailable)
        );
        until_actor_count(&fixture.registry, 0).await;
        // The new owner is this process again: the next request starts a
        // fresh actor that reloads the day and books.
        fixture.store.uncertain_commits.store(false, SeqCst);
        fixture.store.fence_abandons.store(false, SeqCst);
        assert!(fixture.book(1).await.is_ok());
        assert!(fixture.book(2).await.is_ok());
        assert_eq!(fixture.remaining(), 0);
    }

    use crate::store::test_redis::Redis;

    /// On real Redis: a commit whose reply is lost (it was applied), then
    /// another process loads the day (a newer epoch) before the abandonment
    /// runs. The real abandon script answers FENCED; the actor stops, and the
    /// next request reloads the day (taking it back) and books with exact
    /// capacity: the applied booking answered 503 is there, as the new
    /// owner loaded it.
    #[actix_rt::test]
    async fn on_redis_a_fenced_abandonment_stops_the_actor_and_the_day_reloads() {
        let redis = Redis::start().await;
        let store = crate::store::RedisStore::connect(&redis.url())
            .await
            .unwrap();
        let fixture = fixture_on(
            store,
            tempfile::tempdir().unwrap(),
            2,
            Duration::from_secs(600),
        )
        .await;
        fixture.store.lose_commit_replies.store(true, SeqCst);
        fixture.store.gate_abandons.store(true, SeqCst);
        assert_eq!(
            fixture.book(1).await.err(),
            Some(BookingError::StoreUnavailable)
        );
        // Another process takes the day over.
        let other = crate::store::RedisStore::connect(&redis.url())
            .await
            .unwrap();
        other.load_venue_day(fixture.key.clone()).await.unwrap();
        fixture.store.lose_commit_replies.store(false, SeqCst);
        fixture.store.abandon_permits.add_permits(1);
        until_actor_count(&fixture.registry, 0).await;
        // Reloaded: the applied booking counts, one place is left.
        assert!(fixture.book(2).await.is_ok());
        assert_eq!(fixture.remaining(), 0);
        assert_eq!(fixture.store.load_reservations().await.unwrap().len(), 2);
        // The resident state learned it too: resident 1 sees the booking
        // that was answered 503, and cannot book the same dose again.
        assert_eq!(fixture.residents.reservations_of(&ticket(1)).len(), 1);
        assert_eq!(
            fixture.book(1).await.err(),
            Some(BookingError::NotEligible(
                crate::domain::IneligibleReason::TooEarly
            )),
            "dose 1 is taken; dose 2 is not due yet"
        );
    }

    /// An actor told that the store changed its day under a later owner
    /// epoch (another process took it over and committed) decides nothing
    /// more on its stale day: a booking that waited behind its commit is
    /// answered `503` (a refusal such as `slot_full` from a stale day would
    /// be final), and the next one goes to a fresh actor, which loads it.
    #[actix_rt::test]
    async fn a_superseded_actor_decides_nothing_more_on_its_stale_day() {
        let fixture = fixture(2, Duration::from_secs(600)).await;
        let store = &fixture.store;
        store.gate_commits.store(true, SeqCst);
        let mut first = Box::pin(fixture.book(1));
        assert!(futures::poll!(&mut first).is_pending());
        while store.commits_at_gate.load(SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Behind the commit in the mailbox: a booking, then the news.
        let mut second = Box::pin(fixture.book(2));
        assert!(futures::poll!(&mut second).is_pending());
        fixture.registry.superseded(&fixture.key, u64::MAX);
        // Two permits: a second commit (of the stale day) would not wait.
        store.commit_permits.add_permits(2);
        assert!(first.await.is_ok());
        assert_eq!(second.await.err(), Some(BookingError::StoreUnavailable));
        until_actor_count(&fixture.registry, 0).await;
        store.gate_commits.store(false, SeqCst);
        assert!(fixture.book(2).await.is_ok());
        assert_eq!(fixture.remaining(), 0);
        assert_eq!(store.load_reservations().await.unwrap().len(), 2);
    }

    #[actix_rt::test]
    async fn an_idle_actor_stops_and_its_day_reloads_with_exact_counters() {
        let fixture = fixture(2, Duration::from_millis(200)).await;
        let first = fixture.book(1).await.unwrap();
        assert_eq!(fixture.registry.actor_count(), 1);
        until_actor_count(&fixture.registry, 0).await;
        // Reloaded from the store: one place taken, one left, and the
        // cancellation of the reservation made before the stop works.
        assert!(fixture.book(2).await.is_ok());
        assert_eq!(fixture.remaining(), 0);
        until_actor_count(&fixture.registry, 0).await;
        let cancelled = fixture
            .registry
            .cancel(
                &fixture.key,
                first.id,
                ticket(1),
                first.created_at,
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            cancelled.status,
            crate::domain::ReservationStatus::Cancelled
        );
        assert_eq!(fixture.remaining(), 1);
    }
}
