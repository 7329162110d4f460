//! What the other processes change, kept in this one's caches: every
//! `FOLLOW_INTERVAL` the store's change streams are read from where the last
//! read ended (`Coordination::read_changes`), and each change is applied in order:
//!
//! - imports go into the resident index (a resident imported through
//!   another process can log in here);
//! - venues and day plans into the catalog (a day put through another
//!   process can be booked here);
//! - every committed reservation into the resident index (dose history for
//!   eligibility and check-ins, cascades, the next dose, `Idempotency-Key`
//!   replays), and into a **mirror** of its venue-day: a read-only copy
//!   whose availability is published while no actor of this process runs
//!   the day (its owner's commits are what this process shows); a batch
//!   committed under a later owner epoch than this process's actor of the
//!   day loaded it retires that actor (`Registry::superseded`).
//!
//! A process that has not read the streams for about as long as they keep
//! their entries (`--change-streams-keep-s`, 5 min), or is further behind than a
//! venue or day stream keeps, reloads everything from the store. Applying
//! a change twice is harmless: records replace their older versions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::domain::{VenueDay, VenueDayKey};
use crate::residents::Residents;
use crate::store::{CHANGES_READ_MAX, Change, ChangeCursor, Coordination, Store, StoreError};
use crate::tasks::{Place, Tasks};

/// How often the change streams are read: how long another process's
/// change takes, at most about, to show here.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
const _: () = assert!(
    FOLLOW_INTERVAL.as_millis() * 100 <= crate::store::CHANGES_KEPT_FOR.as_millis(),
    "changes are read long before the streams trim them"
);
/// How much of the streams' keeping time may pass without a read before
/// a reload (the rest is slack for a slow read and the clocks).
const UNREAD_SHARE_MAX: f64 = 0.8;
/// Most reads in a row in one round while the streams keep giving full
/// reads (catching up), before the next round.
const READS_PER_ROUND_MAX: usize = 16;

/// What the follower asks of this process's venue-day actors: implemented
/// by `actors::Registry`, named here so that `cluster` needs nothing above it.
pub trait LocalDays: Send + Sync {
    /// The days whose actor stopped since the last call.
    fn stopped_days(&self) -> Vec<VenueDayKey>;
    /// The store changed `day` under `owner_epoch`: an actor here that
    /// loaded it under an earlier one retires.
    fn superseded(&self, day: &VenueDayKey, owner_epoch: u64);
    /// Whether an actor here runs `day` as its owner (and publishes it).
    fn runs_actor_for(&self, day: &VenueDayKey) -> bool;
}

pub struct Follower {
    store: Arc<dyn Store>,
    /// The change streams, and the reads that catch up with them.
    shared: Arc<dyn Coordination>,
    residents: Residents,
    catalog: Arc<Catalog>,
    registry: Arc<dyn LocalDays>,
    /// Every venue-day as its commits left it (see the module's comment).
    mirrors: HashMap<VenueDayKey, VenueDay>,
    cursor: ChangeCursor,
    /// When the streams were last read up to `cursor` (or it was taken).
    read_at: Instant,
    /// Opens connections of the follower's own (`with_own_connections`).
    own_connections: Option<OpenConnections>,
}

/// Opens connections to the shared store for the follower alone.
///
/// The follower runs on a thread of its own, where its reads are decoded
/// and a reload's seconds of work done. A Redis connection's driver runs on
/// the runtime that opened it, or that made the call after which it
/// reconnected: on the process's connections, the follower's calls could
/// bring a driver onto its thread, and every commit's I/O would then wait
/// for the follower's work. With connections of its own, opened on its
/// thread, it waits for nothing of the others, nor they for it.
pub type OpenConnections = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<(Arc<dyn Store>, Arc<dyn Coordination>), StoreError>,
                    >,
            >,
        > + Send
        + Sync,
>;

/// The wait before opening the follower's connections again.
const OPEN_RETRY_PAUSE: Duration = Duration::from_secs(1);

impl Follower {
    /// `cursor` was taken at `cursor_at`, before the state (and `mirrors`)
    /// were loaded.
    pub fn new(
        store: Arc<dyn Store>,
        shared: Arc<dyn Coordination>,
        residents: Residents,
        catalog: Arc<Catalog>,
        registry: Arc<dyn LocalDays>,
        (cursor, cursor_at): (ChangeCursor, Instant),
        mirrors: HashMap<VenueDayKey, VenueDay>,
    ) -> Self {
        Self {
            store,
            shared,
            residents,
            catalog,
            registry,
            mirrors,
            cursor,
            read_at: cursor_at,
            own_connections: None,
        }
    }

    /// Follows through connections of its own, opened by `open` on its
    /// thread (`OpenConnections`).
    pub fn with_own_connections(mut self, open: OpenConnections) -> Self {
        self.own_connections = Some(open);
        self
    }

    /// Opens the follower's own connections, trying again until they open.
    async fn open_own_connections(&mut self, open: &OpenConnections) {
        loop {
            match open().await {
                Ok((store, shared)) => {
                    (self.store, self.shared) = (store, shared);
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "the follower's connections did not open; trying again");
                    tokio::time::sleep(OPEN_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Follows the changes until the process stops, on a thread of its own
    /// (a full reload is seconds of work). While the store is unreachable
    /// the caches keep what they have.
    ///
    /// Answers once its connections are open and its first round has been
    /// tried: start-up waits for that before serving, so that the process
    /// answers nothing while the changes made before it started are still
    /// coming (a reply to a read issued before this process's own first
    /// change, arriving after it, would show that change's predecessor).
    pub fn start(mut self, tasks: &Tasks) -> tokio::sync::oneshot::Receiver<()> {
        let (ready, first_round) = tokio::sync::oneshot::channel();
        tasks.spawn(
            "follow other processes",
            Place::OwnThread,
            move || async move {
                if let Some(open) = self.own_connections.take() {
                    self.open_own_connections(&open).await;
                }
                let mut ready = Some(ready);
                let mut every = tokio::time::interval(FOLLOW_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if let Err(error) = self.round().await {
                        tracing::warn!(error = %error, "changes of other processes not read");
                    }
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
            },
        );
        first_round
    }

    /// Reads and applies until caught up (or `READS_PER_ROUND_MAX` reads).
    pub async fn round(&mut self) -> Result<(), StoreError> {
        // Entries not read yet were appended after the last read, and are
        // trimmed `changes_kept` after their append: near that, some may be
        // gone unread (the store unreachable for minutes, a slow start).
        if self.read_at.elapsed() > self.shared.changes_kept().mul_f64(UNREAD_SHARE_MAX) {
            tracing::warn!("the change streams were not read for minutes: reloading everything");
            return self.reload().await;
        }
        for _ in 0..READS_PER_ROUND_MAX {
            let started = Instant::now();
            let read = self.shared.read_changes(&self.cursor).await?;
            if read.lost {
                tracing::warn!("fell behind the change streams: reloading everything");
                return self.reload().await;
            }
            self.read_at = started;
            let count = read.changes.len();
            // Days whose actor here stopped: their seats as followed.
            let mut touched: HashSet<VenueDayKey> =
                self.registry.stopped_days().into_iter().collect();
            for change in read.changes {
                self.apply(change, &mut touched);
            }
            self.cursor = read.cursor;
            self.publish(touched);
            if count < CHANGES_READ_MAX {
                return Ok(());
            }
        }
        Ok(())
    }

    fn apply(&mut self, change: Change, touched: &mut HashSet<VenueDayKey>) {
        let now = crate::clock::now();
        match change {
            Change::Residents(residents) => {
                self.residents.upsert_residents(residents);
            }
            Change::Venue(venue) => self.catalog.put_venue(venue),
            Change::DayPlan(key, plan) => {
                let held = self
                    .mirrors
                    .remove(&key)
                    .map(VenueDay::into_reservations)
                    .unwrap_or_default();
                self.mirrors.insert(
                    key.clone(),
                    VenueDay::restore(key.clone(), Some(plan), held),
                );
                touched.insert(key);
            }
            Change::Reservations {
                day,
                stored,
                owner_epoch,
            } => {
                self.superseded(&day, owner_epoch);
                let mirror = self.mirror(&day);
                for reservation in &stored {
                    mirror.apply_stored(reservation.clone());
                }
                for reservation in stored {
                    self.residents.apply_stored(reservation, false, now);
                }
                touched.insert(day);
            }
            Change::Reverted {
                day,
                forgotten,
                restored,
                owner_epoch,
            } => {
                self.superseded(&day, owner_epoch);
                let mirror = self.mirror(&day);
                // The mirror had it from the batch's own entry, with its owner.
                let owners: Vec<_> = forgotten
                    .iter()
                    .filter_map(|id| mirror.reservation(*id).map(|r| (*id, r.ticket_number)))
                    .collect();
                for id in &forgotten {
                    mirror.forget_stored(*id);
                }
                for reservation in &restored {
                    mirror.apply_stored(reservation.clone());
                }
                for (id, ticket) in owners {
                    self.residents.forget_reservation(&ticket, id);
                }
                for reservation in restored {
                    self.residents.apply_stored(reservation, true, now);
                }
                touched.insert(day);
            }
        }
    }

    /// The store changed the day under `owner_epoch`: an actor of this
    /// process that loaded it under an earlier epoch was fenced without
    /// knowing (another process took the day over and committed, their views
    /// of the members differing for a moment) and retires, so that the day's
    /// seats are shown as followed, and the next request loads the day again.
    fn superseded(&self, day: &VenueDayKey, owner_epoch: Option<u64>) {
        if let Some(owner_epoch) = owner_epoch {
            self.registry.superseded(day, owner_epoch);
        }
    }

    fn mirror(&mut self, key: &VenueDayKey) -> &mut VenueDay {
        self.mirrors
            .entry(key.clone())
            .or_insert_with(|| VenueDay::restore(key.clone(), None, Vec::new()))
    }

    /// Publishes the availability of the days that changed, except where an
    /// actor here runs the day (it publishes its own).
    fn publish(&self, touched: HashSet<VenueDayKey>) {
        for key in touched {
            if self.registry.runs_actor_for(&key) {
                continue;
            }
            if let Some(snapshot) = self.mirrors.get(&key).and_then(VenueDay::snapshot) {
                self.catalog.publish(snapshot);
            }
        }
    }

    /// Rebuilds every cache from the store, after changes were lost.
    async fn reload(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let cursor = self.shared.change_cursor().await?;
        self.residents
            .upsert_residents(self.store.load_residents().await?);
        for venue in self.store.load_venues().await? {
            self.catalog.put_venue(venue);
        }
        // Seconds of work on a large ward: on this thread of its own, it
        // holds up no heartbeat, kill switch or commit.
        let crate::store::ReadableDays {
            plans,
            reservations,
        } = self.store.load_readable_days().await?;
        self.mirrors = VenueDay::restore_all(plans, &reservations);
        let now = crate::clock::now();
        for reservation in reservations {
            self.residents.apply_stored(reservation, true, now);
        }
        let touched = self.mirrors.keys().cloned().collect();
        self.cursor = cursor;
        self.read_at = started;
        self.publish(touched);
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "reloaded from the store"
        );
        Ok(())
    }
}
