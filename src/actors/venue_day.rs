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
use super::messages::{Book, Cancel, ListReservations, ReplaceDayPlan};
use crate::domain::{BookingError, DayPlanError, Reservation, VenueDay, VenueDayKey};
use crate::resident_index::DoseClaim;
use crate::store::{AbandonedBatch, CommitError, ReservationBatch};
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

enum Pending {
    Book(Book),
    Cancel(Cancel),
    Plan(ReplaceDayPlan),
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
            Pending::Plan(m) => {
                let _ = m.reply.send(Err(plan));
            }
        }
    }
}

/// A decision taken in memory, waiting for its batch to commit.
enum Decided {
    Booked {
        reservation: Reservation,
        claim: DoseClaim,
        reply: tokio::sync::oneshot::Sender<Result<Reservation, BookingError>>,
    },
    Cancelled {
        cancelled: Reservation,
        before: Reservation,
        reply: tokio::sync::oneshot::Sender<Result<Reservation, BookingError>>,
    },
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
}

impl VenueDayActor {
    pub fn new(key: VenueDayKey, shared: Arc<Shared>, queued: Arc<AtomicUsize>) -> Self {
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
        if self.waiting.len() >= VENUE_DAY_WAITING_MAX {
            pending.refuse_overloaded();
            return;
        }
        self.waiting.push_back(pending);
        self.schedule_flush(ctx);
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled || self.waiting.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        // Spawned items run after actix has drained the mailbox: the flush sees
        // every request that arrived together.
        ctx.spawn(fut::ready(()).map(|(), act: &mut Self, ctx| act.flush(ctx)));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if self.abandoned.is_some() {
            self.settle_abandoned(ctx);
            return;
        }
        if matches!(self.waiting.front(), Some(Pending::Plan(_))) {
            let Some(Pending::Plan(message)) = self.waiting.pop_front() else {
                unreachable!("front was a plan")
            };
            self.replace_plan(message, ctx);
            return;
        }
        let today = crate::domain::local_date(chrono::Utc::now());
        let mut decided = Vec::new();
        while decided.len() < COMMIT_BATCH_MAX {
            match self.waiting.front() {
                None | Some(Pending::Plan(_)) => break,
                Some(_) => {}
            }
            match self.waiting.pop_front() {
                Some(Pending::Book(message)) => {
                    let Book {
                        request,
                        claim,
                        reply,
                    } = message;
                    match self.day().decide_booking(&request, today) {
                        Ok(reservation) => decided.push(Decided::Booked {
                            reservation,
                            claim,
                            reply,
                        }),
                        Err(refusal) => {
                            // Release the dose before answering, so a retry finds it free.
                            drop(claim);
                            let _ = reply.send(Err(refusal));
                        }
                    }
                }
                Some(Pending::Cancel(message)) => {
                    let before = self.day().reservation(message.reservation_id).cloned();
                    match self.day().decide_cancel(
                        message.reservation_id,
                        &message.owner,
                        message.now,
                    ) {
                        Ok(cancelled) => decided.push(Decided::Cancelled {
                            cancelled,
                            before: before.expect("a cancelled reservation existed before"),
                            reply: message.reply,
                        }),
                        Err(refusal) => {
                            let _ = message.reply.send(Err(refusal));
                        }
                    }
                }
                Some(Pending::Plan(_)) | None => unreachable!("checked above"),
            }
        }
        if decided.is_empty() {
            self.schedule_flush(ctx);
            return;
        }
        self.commit(decided, ctx);
    }

    fn commit(&mut self, decided: Vec<Decided>, ctx: &mut Context<Self>) {
        let reservations = decided
            .iter()
            .map(|d| match d {
                Decided::Booked { reservation, .. } => reservation.clone(),
                Decided::Cancelled { cancelled, .. } => cancelled.clone(),
            })
            .collect();
        self.sequence += 1;
        let batch = ReservationBatch {
            venue_day: self.key.clone(),
            owner_epoch: self.owner_epoch,
            sequence: self.sequence,
            reservations,
        };
        let store = Arc::clone(&self.shared.store);
        let started = Instant::now();
        let size = decided.len();
        ctx.wait(
            async move { store.commit_reservations(batch).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let kind = act.shared.store.kind();
                    metrics::histogram!(telemetry::COMMIT_DURATION_SECONDS, "store" => kind)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(telemetry::COMMIT_BATCH_SIZE).record(size as f64);
                    let fenced = matches!(result, Err(CommitError::Fenced));
                    act.finish_commit(result, decided);
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
    fn finish_commit(&mut self, result: Result<(), CommitError>, decided: Vec<Decided>) {
        type Reply = tokio::sync::oneshot::Sender<Result<Reservation, BookingError>>;
        let mut answers: Vec<(Reply, Result<Reservation, BookingError>)> =
            Vec::with_capacity(decided.len());
        match result {
            Ok(()) => {
                for decision in decided {
                    match decision {
                        Decided::Booked {
                            reservation,
                            claim,
                            reply,
                        } => {
                            claim.settle(reservation.clone());
                            answers.push((reply, Ok(reservation)));
                        }
                        Decided::Cancelled {
                            cancelled, reply, ..
                        } => {
                            self.shared.residents.record(cancelled.clone());
                            answers.push((reply, Ok(cancelled)));
                        }
                    }
                }
            }
            Err(error) => {
                let refusal = match &error {
                    CommitError::KillSwitchEngaged => BookingError::BookingClosed,
                    CommitError::Fenced => BookingError::StoreUnavailable,
                    CommitError::Store(cause) => {
                        tracing::error!(venue_day = %self.key, error = %cause, decisions = decided.len(),
                            "batch commit failed; undone in memory");
                        BookingError::StoreUnavailable
                    }
                    CommitError::Uncertain(cause) => {
                        tracing::error!(venue_day = %self.key, error = %cause, decisions = decided.len(),
                            "batch commit outcome unknown; undone in memory, to be abandoned in the store");
                        self.abandoned = Some(self.abandoned_batch(&decided));
                        BookingError::StoreUnavailable
                    }
                };
                // Undo newest first, so each undo meets the state it left.
                for decision in decided.into_iter().rev() {
                    match decision {
                        Decided::Booked {
                            reservation,
                            claim,
                            reply,
                        } => {
                            self.day().undo_booking(reservation.id);
                            // Released before answering, so a retry finds the dose free.
                            drop(claim);
                            answers.push((reply, Err(refusal)));
                        }
                        Decided::Cancelled { before, reply, .. } => {
                            self.day().undo_cancel(before);
                            answers.push((reply, Err(refusal)));
                        }
                    }
                }
            }
        }
        self.publish();
        for (reply, answer) in answers {
            // A requester that has gone away is not an error.
            let _ = reply.send(answer);
        }
    }

    /// What the store must make never-applied of an uncertain batch.
    fn abandoned_batch(&self, decided: &[Decided]) -> AbandonedBatch {
        let mut created = Vec::new();
        let mut previous = Vec::new();
        for decision in decided {
            match decision {
                Decided::Booked { reservation, .. } => created.push(reservation.id),
                Decided::Cancelled { before, .. } => previous.push(before.clone()),
            }
        }
        AbandonedBatch {
            venue_day: self.key.clone(),
            owner_epoch: self.owner_epoch,
            sequence: self.sequence,
            created,
            previous,
        }
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
                    Err(error) => {
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
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        // `wait`: no message is handled before the day is loaded.
        ctx.wait(
            async move { store.load_venue_day(key).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(stored) => {
                        act.owner_epoch = stored.owner_epoch;
                        act.day = Some(VenueDay::restore(
                            act.key.clone(),
                            stored.plan,
                            stored.reservations,
                        ));
                        act.publish();
                    }
                    Err(error) => {
                        // Queued requests are dropped with the mailbox; their
                        // senders answer 503 and their claims are released.
                        tracing::error!(venue_day = %act.key, error = %error, "cannot load venue-day; actor stops");
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Handler<Book> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: Book, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Book(message), ctx);
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
        let all = self
            .day
            .as_ref()
            .map(|day| day.reservations_by_time().into_iter().cloned().collect())
            .unwrap_or_default();
        let _ = message.reply.send(all);
    }
}

impl Handler<ReplaceDayPlan> for VenueDayActor {
    type Result = ();
    fn handle(&mut self, message: ReplaceDayPlan, ctx: &mut Context<Self>) {
        self.enqueue(Pending::Plan(message), ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Registry, Shared};
    use crate::catalog::Catalog;
    use crate::domain::{
        BookingError, BookingRequest, Channel, DayPlan, Dose, SlotPlan, SlotTime, TicketNumber,
        Vaccine, VenueDayKey, VenueId, municipality_offset, test_resident,
    };
    use crate::resident_index::{ClaimRequest, ResidentIndex};
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
        }
    }

    #[actix_rt::test]
    async fn a_failed_commit_is_undone_and_answered_503_and_a_refused_one_booking_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FlakyStore::new(EmbeddedStore::open(dir.path()).unwrap()));
        let residents = Arc::new(ResidentIndex::new(TokenKey::from_secret("t")));
        residents.upsert_residents(vec![test_resident(ticket(1)), test_resident(ticket(2))]);
        let catalog = Arc::new(Catalog::default());
        let shared = Arc::new(Shared {
            store: Arc::clone(&store) as Arc<dyn Store>,
            residents: Arc::clone(&residents),
            catalog: Arc::clone(&catalog),
        });
        let registry = Registry::new(shared, 1, 64);
        let key = VenueDayKey {
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: crate::domain::local_date(chrono::Utc::now()) + chrono::Duration::days(10),
        };
        let handle = registry.handle(&key).unwrap();
        let plan = DayPlan::new(
            Vaccine::Moderna,
            vec![SlotPlan {
                time: SlotTime::parse("10:30").unwrap(),
                capacity: 1,
            }],
            None,
        )
        .unwrap();
        assert_eq!(handle.replace_plan(plan).await, Ok(true));
        let remaining = || catalog.day(&key).unwrap().slots[0].remaining;

        // The store fails: 503, the place is given back, the dose released.
        store.set_failing(true);
        let claim = residents
            .claim(&ticket(1), &claim_request(key.date))
            .unwrap();
        let answer = handle.book(request(1, claim.dose()), claim).await;
        assert_eq!(answer.err(), Some(BookingError::StoreUnavailable));
        assert_eq!(remaining(), 1);
        assert!(store.load_reservations().await.unwrap().is_empty());

        // The store is back: the same resident books the same dose.
        store.set_failing(false);
        let claim = residents
            .claim(&ticket(1), &claim_request(key.date))
            .unwrap();
        assert_eq!(claim.dose(), Dose::FIRST, "the failed claim was released");
        let booked = handle.book(request(1, claim.dose()), claim).await.unwrap();
        assert_eq!(remaining(), 0);
        assert_eq!(residents.reservations_of(&ticket(1)).len(), 1);

        // The switch is engaged in the store: the commit is refused, undone.
        let engaged = KillSwitchState {
            engaged: true,
            ..KillSwitchState::default()
        };
        let audit = AuditEntry {
            at: chrono::Utc::now().fixed_offset(),
            role: "sre".into(),
            action: "kill_switch.engage".into(),
            outcome: "ok".into(),
            detail: None,
        };
        store.set_kill_switch(engaged, audit).await.unwrap();
        let cancel = handle.cancel(booked.id, ticket(1), booked.created_at).await;
        assert_eq!(cancel.err(), Some(BookingError::BookingClosed));
        assert_eq!(remaining(), 0, "the cancellation was undone");
        let stored = store.load_reservations().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, crate::domain::ReservationStatus::Booked);
    }
}
