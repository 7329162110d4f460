//! Finds the actor of a venue-day, starting it on demand, and talks to it with
//! bounded queues: a full mailbox is `503 overloaded` at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::dev::channel;
use actix::prelude::*;
use actix::{Arbiter, ArbiterHandle};
use dashmap::DashMap;
use tokio::sync::oneshot;

use super::Shared;
use super::messages::{Book, Cancel, ListReservations, ReplaceDayPlan};
use super::venue_day::{VENUE_DAY_MAILBOX_MAX, VenueDayActor};
use crate::catalog::VENUE_DAYS_MAX;
use crate::domain::{
    BookingError, BookingRequest, DayPlan, DayPlanError, Reservation, ReservationId, TicketNumber,
    VenueDayKey,
};
use crate::resident_index::DoseClaim;
use crate::telemetry;

/// Most threads that host venue-day actors.
pub const ACTOR_ARBITERS_MAX: usize = 16;

/// A venue-day actor's address with its mailbox counter.
#[derive(Clone)]
pub struct VenueDayHandle {
    addr: Addr<VenueDayActor>,
    queued: Arc<AtomicUsize>,
    /// Most messages queued before the sender is refused.
    mailbox_max: usize,
}

/// Why a message did not reach its actor.
enum Undelivered {
    MailboxFull,
    ActorStopped,
}

impl VenueDayHandle {
    fn try_send<M>(&self, message: M) -> Result<(), Undelivered>
    where
        M: Message<Result = ()> + Send + 'static,
        VenueDayActor: Handler<M>,
    {
        let depth = self.queued.fetch_add(1, Ordering::AcqRel);
        if depth >= self.mailbox_max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Undelivered::MailboxFull);
        }
        metrics::histogram!(telemetry::MAILBOX_DEPTH).record(depth as f64);
        self.addr.try_send(message).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Undelivered::ActorStopped
        })
    }

    /// Books a place; answers after the commit. The claim is released if the
    /// booking is refused or fails.
    pub async fn book(
        &self,
        request: BookingRequest,
        claim: DoseClaim,
    ) -> Result<Reservation, BookingError> {
        let (reply, answer) = oneshot::channel();
        let message = Book {
            request,
            claim,
            reply,
        };
        self.try_send(message).map_err(booking_undelivered)?;
        // The actor always answers; a dropped reply means it stopped before
        // deciding, and nothing was stored.
        answer.await.unwrap_or(Err(BookingError::StoreUnavailable))
    }

    pub async fn cancel(
        &self,
        reservation_id: ReservationId,
        owner: TicketNumber,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<Reservation, BookingError> {
        let (reply, answer) = oneshot::channel();
        let message = Cancel {
            reservation_id,
            owner,
            now,
            reply,
        };
        self.try_send(message).map_err(booking_undelivered)?;
        answer.await.unwrap_or(Err(BookingError::StoreUnavailable))
    }

    /// Every reservation of the day, in slot order.
    pub async fn reservations(&self) -> Result<Vec<Reservation>, BookingError> {
        let (reply, answer) = oneshot::channel();
        self.try_send(ListReservations { reply })
            .map_err(booking_undelivered)?;
        answer.await.map_err(|_| BookingError::StoreUnavailable)
    }

    /// Replaces the day's plan; `Ok(true)` when the day was new.
    pub async fn replace_plan(&self, plan: DayPlan) -> Result<bool, DayPlanError> {
        let (reply, answer) = oneshot::channel();
        self.try_send(ReplaceDayPlan { plan, reply })
            .map_err(|undelivered| match undelivered {
                Undelivered::MailboxFull => DayPlanError::Overloaded,
                Undelivered::ActorStopped => DayPlanError::StoreUnavailable,
            })?;
        answer.await.unwrap_or(Err(DayPlanError::StoreUnavailable))
    }
}

fn booking_undelivered(undelivered: Undelivered) -> BookingError {
    match undelivered {
        Undelivered::MailboxFull => BookingError::Overloaded,
        Undelivered::ActorStopped => BookingError::StoreUnavailable,
    }
}

pub struct Registry {
    shared: Arc<Shared>,
    actors: DashMap<VenueDayKey, VenueDayHandle>,
    /// Threads hosting the actors, assigned round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Each venue-day's mailbox bound (`--venue-day-queue-max`).
    mailbox_max: usize,
}

impl Registry {
    /// Must be called inside a running actix system.
    pub fn new(shared: Arc<Shared>, arbiter_count: usize, mailbox_max: usize) -> Self {
        let arbiters = (0..arbiter_count.clamp(1, ACTOR_ARBITERS_MAX))
            .map(|_| Arbiter::new().handle())
            .collect();
        Self {
            shared,
            actors: DashMap::new(),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            mailbox_max: mailbox_max.clamp(1, VENUE_DAY_MAILBOX_MAX),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// The venue-day's actor, started if needed. `None` when the process
    /// already runs `VENUE_DAYS_MAX` of them.
    pub fn handle(&self, key: &VenueDayKey) -> Option<VenueDayHandle> {
        if let Some(handle) = self.actors.get(key)
            && handle.addr.connected()
        {
            return Some(handle.clone());
        }
        if self.actors.len() >= VENUE_DAYS_MAX {
            return None;
        }
        let entry = self.actors.entry(key.clone());
        let handle = match entry {
            dashmap::Entry::Occupied(mut occupied) => {
                if !occupied.get().addr.connected() {
                    occupied.insert(self.start(key.clone()));
                }
                occupied.get().clone()
            }
            dashmap::Entry::Vacant(vacant) => vacant.insert(self.start(key.clone())).clone(),
        };
        Some(handle)
    }

    fn start(&self, key: VenueDayKey) -> VenueDayHandle {
        // Capacity 0 means actix never parks a sender; `queued` is the bound.
        let (sender, receiver) = channel::channel(0);
        let queued = Arc::new(AtomicUsize::new(0));
        let actor = VenueDayActor::new(key, Arc::clone(&self.shared), Arc::clone(&queued));
        let index = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[index].spawn_fn(move || {
            let context = Context::with_receiver(receiver);
            actix_rt::spawn(context.into_future(actor));
        });
        VenueDayHandle {
            addr: Addr::new(sender),
            queued,
            mailbox_max: self.mailbox_max,
        }
    }
}
