//! Finds the actor of a venue-day, starting it on demand, and talks to it with
//! bounded queues: a full mailbox is `503 overloaded` at once. With several
//! processes (`cluster/`), a venue-day another process owns gets its messages
//! through that process's internal calls instead; the `…_here` methods are
//! what the owner runs for them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::dev::channel;
use actix::prelude::*;
use actix::{Arbiter, ArbiterHandle};
use dashmap::DashMap;
use tokio::sync::oneshot;

use super::Shared;
use super::messages::{
    Book, Cancel, CancelNotice, CheckIn, ListReservations, QueueReminders, ReplaceDayPlan, Retire,
    Superseded,
};
use super::venue_day::{VENUE_DAY_MAILBOX_MAX, VenueDayActor};
use crate::catalog::VENUE_DAYS_MAX;
use crate::cluster::wire::{BookWire, CancelWire, CheckInWire, audit_to_wire};
use crate::cluster::{
    FORWARDED_COMMIT_WINDOW, Forwarder, MEMBERS_MAX, Member, Membership, Owner, Unanswered,
};
use crate::domain::{
    BookingError, BookingRequest, CheckInError, DayPlan, DayPlanError, DaySnapshot, MailPolicy,
    Reservation, ReservationId, TicketNumber, VenueDayKey,
};
use crate::residents::DoseClaim;
use crate::store::{AuditDraft, StoreError};
use crate::tasks::{Place, Tasks};
use crate::telemetry;

/// Most threads that host venue-day actors.
pub const ACTOR_ARBITERS_MAX: usize = 16;

/// `queued` is set to this when an idle actor closes: a sender that sees it
/// knows its message would not be read, and asks for a fresh actor instead.
pub(super) const MAILBOX_CLOSED: usize = usize::MAX / 2;

/// A venue-day actor's address with its mailbox counter.
#[derive(Clone)]
pub struct VenueDayHandle {
    addr: Addr<VenueDayActor>,
    queued: Arc<AtomicUsize>,
    /// Most messages queued before the sender is refused.
    mailbox_max: usize,
    /// Which actor of this venue-day it is (a stopped one is replaced).
    generation: u64,
}

/// Why a message did not reach its actor.
enum Undelivered<M> {
    MailboxFull,
    /// The actor stopped (idle, fenced, or failed to load) before reading
    /// it: the message comes back, to be sent to a fresh actor.
    ActorStopped(M),
}

impl VenueDayHandle {
    fn is_open(&self) -> bool {
        self.addr.connected() && self.queued.load(Ordering::Acquire) < MAILBOX_CLOSED
    }

    fn try_send<M>(&self, message: M) -> Result<(), Undelivered<M>>
    where
        M: Message<Result = ()> + Send + 'static,
        VenueDayActor: Handler<M>,
    {
        let depth = self.queued.fetch_add(1, Ordering::AcqRel);
        if depth >= MAILBOX_CLOSED {
            return Err(Undelivered::ActorStopped(message));
        }
        if depth >= self.mailbox_max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Undelivered::MailboxFull);
        }
        metrics::histogram!(telemetry::MAILBOX_DEPTH).record(depth as f64);
        self.addr.try_send(message).map_err(|error| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Undelivered::ActorStopped(error.into_inner())
        })
    }
}

/// Why a request could not be handed to its venue-day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteError {
    /// `VENUE_DAYS_MAX` actors run, or the mailbox is full.
    Overloaded,
    /// The actor stopped again right after starting (the store cannot load it).
    Unavailable,
}

impl From<RouteError> for BookingError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::Overloaded => BookingError::Overloaded,
            RouteError::Unavailable => BookingError::StoreUnavailable,
        }
    }
}

impl From<RouteError> for DayPlanError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::Overloaded => DayPlanError::Overloaded,
            RouteError::Unavailable => DayPlanError::StoreUnavailable,
        }
    }
}

/// How many times a message is offered to a fresh actor after the one it
/// was sent to had stopped.
const DELIVERY_ATTEMPTS_MAX: usize = 3;

/// Which process owns which venue-day, and how to reach the others.
pub struct Placement {
    pub membership: Arc<Membership>,
    pub forwarder: Arc<Forwarder>,
    /// What the processes on the shared store coordinate through.
    pub coordination: Arc<dyn crate::store::Coordination>,
}

pub struct Registry {
    shared: Arc<Shared>,
    /// `None` for a process alone on its store.
    placement: Option<Placement>,
    /// The running actors; an actor removes its own entry when it stops.
    actors: Arc<DashMap<VenueDayKey, VenueDayHandle>>,
    /// Threads hosting the actors, assigned round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    next_generation: AtomicU64,
    /// Each venue-day's mailbox bound (`--venue-day-queue-max`).
    mailbox_max: usize,
    /// How long an actor may sit idle before it stops (`--venue-day-idle-s`).
    idle_max: Duration,
    /// Days whose actor stopped since the follower last looked.
    stopped: Arc<std::sync::Mutex<HashSet<VenueDayKey>>>,
}

impl Registry {
    /// Must be called inside a running actix system.
    pub fn new(
        shared: Arc<Shared>,
        placement: Option<Placement>,
        arbiter_count: usize,
        mailbox_max: usize,
        idle_max: Duration,
    ) -> Self {
        let arbiters = (0..arbiter_count.clamp(1, ACTOR_ARBITERS_MAX))
            .map(|_| Arbiter::new().handle())
            .collect();
        let actors = Arc::new(DashMap::new());
        Self {
            shared,
            placement,
            actors,
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            next_generation: AtomicU64::new(1),
            mailbox_max: mailbox_max.clamp(1, VENUE_DAY_MAILBOX_MAX),
            idle_max,
            stopped: Arc::default(),
        }
    }

    /// With several processes: stops the actors of days that move to
    /// another process, as the live members change.
    pub fn start_retiring_moved_days(&self, tasks: &Tasks) {
        if let Some(placement) = &self.placement {
            retire_days_that_move(&placement.membership, Arc::clone(&self.actors), tasks);
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Venue-day actors running now.
    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// The venue-day's actor, started if needed. `None` when the process
    /// already runs `VENUE_DAYS_MAX` of them.
    fn handle(&self, key: &VenueDayKey) -> Option<VenueDayHandle> {
        if let Some(handle) = self.actors.get(key)
            && handle.is_open()
        {
            return Some(handle.clone());
        }
        if self.actors.len() >= VENUE_DAYS_MAX {
            return None;
        }
        let handle = match self.actors.entry(key.clone()) {
            dashmap::Entry::Occupied(mut occupied) => {
                if !occupied.get().is_open() {
                    occupied.insert(self.start(key.clone()));
                }
                occupied.get().clone()
            }
            dashmap::Entry::Vacant(vacant) => vacant.insert(self.start(key.clone())).clone(),
        };
        Some(handle)
    }

    /// Hands `message` to the venue-day's actor, starting one (again) if the
    /// last one stopped.
    fn deliver<M>(&self, key: &VenueDayKey, mut message: M) -> Result<(), RouteError>
    where
        M: Message<Result = ()> + Send + 'static,
        VenueDayActor: Handler<M>,
    {
        for _ in 0..DELIVERY_ATTEMPTS_MAX {
            let handle = self.handle(key).ok_or(RouteError::Overloaded)?;
            match handle.try_send(message) {
                Ok(()) => return Ok(()),
                Err(Undelivered::MailboxFull) => return Err(RouteError::Overloaded),
                Err(Undelivered::ActorStopped(returned)) => {
                    self.forget(key, handle.generation);
                    message = returned;
                }
            }
        }
        Err(RouteError::Unavailable)
    }

    fn forget(&self, key: &VenueDayKey, generation: u64) {
        forget(&self.actors, key, generation);
    }

    /// Whether another live process owns the venue-day, by this one's view.
    fn owned_elsewhere(&self, key: &VenueDayKey) -> bool {
        owned_elsewhere(self.placement.as_ref().map(|p| &p.membership), key)
    }

    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }

    /// Whether other live processes own some venue-days now.
    pub fn shares_days(&self) -> bool {
        self.placement
            .as_ref()
            .is_some_and(|placement| placement.membership.live().len() > 1)
    }

    /// Sends a day's message to its owner when that is another process:
    /// `None` when this process owns the day, or comes to own it because the
    /// owner refused the connection (it is taken for dead, `Membership::suspect`,
    /// and the owner picked again); `Some(Err)` when the owner got the call
    /// but no answer came back (the outcome is unknown).
    async fn at_owner<T, F, Fut>(&self, key: &VenueDayKey, call: F) -> Option<Result<T, Unanswered>>
    where
        F: Fn(Arc<Forwarder>, Member) -> Fut,
        Fut: std::future::Future<Output = Result<T, Unanswered>>,
    {
        let placement = self.placement.as_ref()?;
        // Each refusal removes one member: at most every other member.
        for _ in 0..MEMBERS_MAX {
            let owner = match placement.membership.owner_of(key) {
                Owner::Here => return None,
                Owner::There(owner) => owner,
            };
            match call(Arc::clone(&placement.forwarder), owner.clone()).await {
                Err(Unanswered::Unreachable) => placement.membership.suspect(&owner),
                answered => return Some(answered),
            }
        }
        Some(Err(Unanswered::NoAnswer))
    }

    /// Books a place; answers after the commit. The claim is released if the
    /// booking is refused or fails, and settled here too when another
    /// process's actor committed it.
    pub async fn book(
        &self,
        key: &VenueDayKey,
        request: BookingRequest,
        claim: DoseClaim,
        audit: Option<AuditDraft>,
        mail: Option<MailPolicy>,
    ) -> Result<Reservation, BookingError> {
        let forwarded = self
            .at_owner(key, |forwarder, owner| {
                let mut wire = BookWire::new(&request, audit.as_ref(), mail.is_some());
                let given_up_at = crate::clock::real_now_utc() + FORWARDED_COMMIT_WINDOW;
                wire.commit_by = Some(wire.commit_by.map_or(given_up_at, |by| by.min(given_up_at)));
                async move { forwarder.book(&owner, key, &wire).await }
            })
            .await;
        match as_answered(forwarded, BookingError::StoreUnavailable) {
            None => self.book_here(key, request, claim, audit, mail).await,
            Some(answer) => answer.inspect(|reservation| claim.settle(reservation.clone())),
        }
    }

    /// Books a place with this process's actor of the day.
    pub async fn book_here(
        &self,
        key: &VenueDayKey,
        request: BookingRequest,
        claim: DoseClaim,
        audit: Option<AuditDraft>,
        mail: Option<MailPolicy>,
    ) -> Result<Reservation, BookingError> {
        let (reply, answer) = oneshot::channel();
        let message = Book {
            request,
            claim,
            audit,
            mail,
            reply,
        };
        self.deliver(key, message)?;
        // The actor always answers what it read; a dropped reply means it
        // stopped before deciding, and nothing was stored.
        answer.await.unwrap_or(Err(BookingError::StoreUnavailable))
    }

    /// Cancels the owner's booked reservation; answers after the commit.
    pub async fn cancel(
        &self,
        key: &VenueDayKey,
        reservation_id: ReservationId,
        owner: TicketNumber,
        now: chrono::DateTime<chrono::FixedOffset>,
        audit: Option<AuditDraft>,
        notice: Option<CancelNotice>,
    ) -> Result<Reservation, BookingError> {
        let forwarded = self
            .at_owner(key, |forwarder, member| {
                let also = notice.as_ref().map(|n| n.also_cancelled.as_slice());
                let wire = CancelWire::new(reservation_id, &owner, now, audit.as_ref(), also);
                async move { forwarder.cancel(&member, key, &wire).await }
            })
            .await;
        match as_answered(forwarded, BookingError::StoreUnavailable) {
            None => {
                self.cancel_here(key, reservation_id, owner, now, audit, notice)
                    .await
            }
            Some(answer) => {
                answer.inspect(|cancelled| self.shared.residents.record(cancelled.clone()))
            }
        }
    }

    /// Cancels with this process's actor of the day.
    pub async fn cancel_here(
        &self,
        key: &VenueDayKey,
        reservation_id: ReservationId,
        owner: TicketNumber,
        now: chrono::DateTime<chrono::FixedOffset>,
        audit: Option<AuditDraft>,
        notice: Option<CancelNotice>,
    ) -> Result<Reservation, BookingError> {
        let (reply, answer) = oneshot::channel();
        let message = Cancel {
            reservation_id,
            owner,
            now,
            audit,
            notice,
            reply,
        };
        self.deliver(key, message)?;
        answer.await.unwrap_or(Err(BookingError::StoreUnavailable))
    }

    /// Queues the day's reminders if its moment has passed and they are not
    /// queued yet; answers how many were queued (0: already, or not due), or
    /// `None` when the day is another process's, whose own scheduler queues
    /// them (ask again: if that process dies first, the day comes here).
    pub async fn queue_reminders(
        &self,
        key: &VenueDayKey,
        policy: MailPolicy,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<Option<usize>, StoreError> {
        if self.owned_elsewhere(key) {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        self.deliver(key, QueueReminders { policy, now, reply })
            .map_err(|_| StoreError::Unavailable("the venue-day is overloaded".into()))?;
        answer
            .await
            .unwrap_or(Err(StoreError::Unavailable("the venue-day stopped".into())))
            .map(Some)
    }

    /// Checks the owner in at this venue-day; answers after the commit.
    pub async fn check_in(
        &self,
        key: &VenueDayKey,
        owner: TicketNumber,
        now: chrono::DateTime<chrono::FixedOffset>,
        audit: Option<AuditDraft>,
    ) -> Result<Reservation, CheckInError> {
        let forwarded = self
            .at_owner(key, |forwarder, member| {
                let wire = CheckInWire {
                    owner: owner.expose().to_owned(),
                    now,
                    audit: audit.as_ref().map(audit_to_wire),
                };
                async move { forwarder.check_in(&member, key, &wire).await }
            })
            .await;
        match as_answered(forwarded, CheckInError::StoreUnavailable) {
            None => self.check_in_here(key, owner, now, audit).await,
            Some(answer) => {
                answer.inspect(|attended| self.shared.residents.record(attended.clone()))
            }
        }
    }

    /// Checks in with this process's actor of the day.
    pub async fn check_in_here(
        &self,
        key: &VenueDayKey,
        owner: TicketNumber,
        now: chrono::DateTime<chrono::FixedOffset>,
        audit: Option<AuditDraft>,
    ) -> Result<Reservation, CheckInError> {
        let (reply, answer) = oneshot::channel();
        let message = CheckIn {
            owner,
            now,
            audit,
            reply,
        };
        self.deliver(key, message).map_err(|error| match error {
            RouteError::Overloaded => CheckInError::Overloaded,
            RouteError::Unavailable => CheckInError::StoreUnavailable,
        })?;
        answer.await.unwrap_or(Err(CheckInError::StoreUnavailable))
    }

    /// Every reservation of the day, in slot order.
    pub async fn reservations(&self, key: &VenueDayKey) -> Result<Vec<Reservation>, BookingError> {
        let forwarded = self
            .at_owner(key, |forwarder, member| async move {
                forwarder.reservations(&member, key).await
            })
            .await;
        match as_answered(forwarded, BookingError::StoreUnavailable) {
            None => self.reservations_here(key).await,
            Some(answer) => answer,
        }
    }

    /// Every reservation of the day, from this process's actor.
    pub async fn reservations_here(
        &self,
        key: &VenueDayKey,
    ) -> Result<Vec<Reservation>, BookingError> {
        let (reply, answer) = oneshot::channel();
        self.deliver(key, ListReservations { reply })?;
        answer.await.map_err(|_| BookingError::StoreUnavailable)
    }

    /// Replaces the day's plan; `Ok(true)` when the day was new.
    pub async fn replace_plan(
        &self,
        key: &VenueDayKey,
        plan: DayPlan,
    ) -> Result<bool, DayPlanError> {
        let forwarded = self
            .at_owner(key, |forwarder, member| {
                let wire = crate::store::records::Stored::to_record(&plan);
                async move { forwarder.replace_plan(&member, key, &wire).await }
            })
            .await;
        match as_answered(forwarded, DayPlanError::StoreUnavailable) {
            None => self.replace_plan_here(key, plan).await,
            Some(answer) => answer.map(|(created, slots)| {
                // What the owner published, published here too.
                self.shared.catalog.publish(DaySnapshot {
                    key: key.clone(),
                    plan: Arc::new(plan),
                    slots,
                });
                created
            }),
        }
    }

    /// Replaces the plan with this process's actor of the day.
    pub async fn replace_plan_here(
        &self,
        key: &VenueDayKey,
        plan: DayPlan,
    ) -> Result<bool, DayPlanError> {
        let (reply, answer) = oneshot::channel();
        self.deliver(key, ReplaceDayPlan { plan, reply })?;
        answer.await.unwrap_or(Err(DayPlanError::StoreUnavailable))
    }

    fn start(&self, key: VenueDayKey) -> VenueDayHandle {
        // Capacity 0 means actix never parks a sender; `queued` is the bound.
        let (sender, receiver) = channel::channel(0);
        let queued = Arc::new(AtomicUsize::new(0));
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let actor = VenueDayActor::new(
            key,
            Arc::clone(&self.shared),
            Arc::clone(&queued),
            Lifecycle {
                actors: Arc::clone(&self.actors),
                generation,
                idle_max: self.idle_max,
                membership: self.placement.as_ref().map(|p| Arc::clone(&p.membership)),
                lapses_at_start: self.placement.as_ref().map_or(0, |p| p.membership.lapses()),
                stopped: Arc::clone(&self.stopped),
            },
        );
        let index = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[index].spawn_fn(move || {
            let context = Context::with_receiver(receiver);
            actix_rt::spawn(context.into_future(actor));
        });
        VenueDayHandle {
            addr: Addr::new(sender),
            queued,
            mailbox_max: self.mailbox_max,
            generation,
        }
    }
}

/// What a day's owner elsewhere answered, as this process answers it: the
/// owner's own answer, or `unavailable` when it gave none (it may still
/// commit a booking until `FORWARDED_COMMIT_WINDOW` ends, which a retry
/// with the key finds); `None` when the day is this process's. The one
/// place where the five routed calls turn "forwarded" into an answer.
fn as_answered<T, E>(
    forwarded: Option<Result<Result<T, E>, Unanswered>>,
    unavailable: E,
) -> Option<Result<T, E>> {
    forwarded.map(|answered| answered.unwrap_or(Err(unavailable)))
}

/// After each change of the live members, tells the actors of days another
/// process owns now to stop (their next batch would be fenced by the new
/// owner anyway); until then they hold memory and a stale view of the day.
fn retire_days_that_move(
    membership: &Arc<Membership>,
    actors: Arc<DashMap<VenueDayKey, VenueDayHandle>>,
    tasks: &Tasks,
) {
    let membership = Arc::clone(membership);
    let mut changes = membership.follow_changes();
    tasks.spawn(
        "retire moved venue-days",
        Place::System,
        move || async move {
            while changes.changed().await.is_ok() {
                let moved: Vec<VenueDayHandle> = actors
                    .iter()
                    .filter(|entry| membership.owner_of(entry.key()) != Owner::Here)
                    .map(|entry| entry.value().clone())
                    .collect();
                for handle in moved {
                    // A full mailbox is busy: it stops later, or is fenced.
                    let _ = handle.try_send(Retire);
                }
            }
        },
    );
}

/// What an actor needs to stop by itself: its idle limit, and the registry
/// entry it removes when it stops.
pub(super) struct Lifecycle {
    actors: Arc<DashMap<VenueDayKey, VenueDayHandle>>,
    generation: u64,
    pub(super) idle_max: Duration,
    /// With several processes: who owns which day now.
    membership: Option<Arc<Membership>>,
    /// This process's lease lapses when the actor started.
    lapses_at_start: u64,
    /// Days whose actor stopped, for the follower to publish (`stopped_days`).
    stopped: Arc<std::sync::Mutex<HashSet<VenueDayKey>>>,
}

impl Lifecycle {
    /// Whether the actor is to stop as soon as it is quiet: another live
    /// process owns the day now, by this process's view, or this process's
    /// lease lapsed since the actor started (another may have owned the day
    /// meanwhile and committed on it: what the actor holds may be stale).
    pub(super) fn must_retire(&self, key: &VenueDayKey) -> bool {
        owned_elsewhere(self.membership.as_ref(), key)
            || self
                .membership
                .as_ref()
                .is_some_and(|m| m.lapses() != self.lapses_at_start)
    }

    /// Whether this process shares venue-days with others (has a place
    /// among them).
    pub(super) fn shares_days(&self) -> bool {
        self.membership.is_some()
    }

    /// Removes this actor's entry (not a newer actor's of the same day);
    /// with several processes, the follower then publishes the day's seats
    /// as the store has them (what the actor published may be stale).
    pub(super) fn forget(&self, key: &VenueDayKey) {
        forget(&self.actors, key, self.generation);
        if self.membership.is_some() {
            let mut stopped = self.stopped.lock().expect("stopped days lock poisoned");
            if stopped.len() < STOPPED_DAYS_MAX {
                stopped.insert(key.clone());
            }
        }
    }
}

/// Removes the entry of actor `generation` of a venue-day (not a newer one's).
fn forget(actors: &DashMap<VenueDayKey, VenueDayHandle>, key: &VenueDayKey, generation: u64) {
    actors.remove_if(key, |_, handle| handle.generation == generation);
}

/// Most days kept for the follower to publish after their actor stopped
/// (more are published at their next change).
pub const STOPPED_DAYS_MAX: usize = 100_000;

fn owned_elsewhere(membership: Option<&Arc<Membership>>, key: &VenueDayKey) -> bool {
    membership.is_some_and(|membership| membership.owner_of(key) != Owner::Here)
}

impl crate::cluster::LocalDays for Registry {
    /// The days whose actor stopped since the last call: the follower
    /// publishes their seats from what it followed.
    fn stopped_days(&self) -> Vec<VenueDayKey> {
        let mut stopped = self.stopped.lock().expect("stopped days lock poisoned");
        stopped.drain().collect()
    }

    /// Tells the venue-day's actor, if one runs here, that the store changed
    /// the day under `owner_epoch` (see `Superseded`). A full mailbox is
    /// busy: its next batch is fenced, and the actor stops then.
    fn superseded(&self, key: &VenueDayKey, owner_epoch: u64) {
        if let Some(handle) = self.actors.get(key).map(|h| h.clone())
            && handle.is_open()
        {
            let _ = handle.try_send(Superseded { owner_epoch });
        }
    }

    /// Whether an actor of this process runs the venue-day now as its owner
    /// (it then publishes the day's availability itself). An actor left on
    /// a day that moved to another process (it is retiring) does not count:
    /// what the owner commits is shown from the followed changes instead.
    fn runs_actor_for(&self, key: &VenueDayKey) -> bool {
        self.actors.get(key).is_some_and(|handle| handle.is_open()) && !self.owned_elsewhere(key)
    }
}
