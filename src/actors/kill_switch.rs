//! The global kill switch. The gateway reads `KillSwitch::is_engaged` first on
//! every booking and cancellation. Changes go through one actor, so they are
//! serialised without a lock: the new state is written to the store (where
//! every batch commit checks it), *then* the in-memory flag flips, *then* the
//! `PUT` returns. Once it has returned, no batch can commit.
//!
//! Processes sharing a Redis follow each other's changes: each reads the
//! stored state every `KILL_SWITCH_FOLLOW_INTERVAL` and applies it when it
//! differs, so another process's gateway refuses within that interval (its
//! commits were refused by the scripts from the `PUT`'s return).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::SetKillSwitch;
use crate::store::{AuditEntry, KillSwitchState, Store, StoreError};
use crate::tasks::{Place, Tasks};
use crate::telemetry;

/// How often a process reads the stored switch to follow changes made
/// through other processes (shared Redis only).
pub const KILL_SWITCH_FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// The switch as the gateway reads it.
pub struct KillSwitch {
    engaged: AtomicBool,
    /// Changes made through this process so far: a follower's read from
    /// before one of them is stale.
    own_changes: AtomicU64,
    state: RwLock<KillSwitchState>,
}

impl KillSwitch {
    pub fn new(state: KillSwitchState) -> Self {
        metrics::gauge!(telemetry::KILL_SWITCH_ENGAGED).set(if state.engaged { 1.0 } else { 0.0 });
        Self {
            engaged: AtomicBool::new(state.engaged),
            own_changes: AtomicU64::new(0),
            state: RwLock::new(state),
        }
    }

    pub fn is_engaged(&self) -> bool {
        self.engaged.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> KillSwitchState {
        self.state
            .read()
            .expect("kill switch lock poisoned")
            .clone()
    }

    fn apply(&self, state: KillSwitchState) {
        let engaged = state.engaged;
        *self.state.write().expect("kill switch lock poisoned") = state;
        self.engaged.store(engaged, Ordering::SeqCst);
        metrics::gauge!(telemetry::KILL_SWITCH_ENGAGED).set(if engaged { 1.0 } else { 0.0 });
    }
}

struct KillSwitchActor {
    /// The flag the gateway reads; flipped only after the store holds the state.
    switch: Arc<KillSwitch>,
    store: Arc<dyn Store>,
}

impl Actor for KillSwitchActor {
    type Context = Context<Self>;
}

/// The state another process stored, as read by this one's follower after
/// it saw `own_changes` at `seen`.
struct Follow {
    state: KillSwitchState,
    seen: u64,
}

impl Message for Follow {
    type Result = ();
}

impl Handler<Follow> for KillSwitchActor {
    type Result = ();

    /// Dropped when this process changed the switch since the follower
    /// began its read: that read may be older than the change.
    fn handle(&mut self, Follow { state, seen }: Follow, _: &mut Context<Self>) {
        if self.switch.own_changes.load(Ordering::SeqCst) == seen && state != self.switch.state() {
            tracing::warn!(
                engaged = state.engaged,
                changed_by = state.changed_by.as_deref().unwrap_or(""),
                "kill switch changed through another process"
            );
            self.switch.apply(state);
        }
    }
}

impl Handler<SetKillSwitch> for KillSwitchActor {
    type Result = ();

    fn handle(&mut self, message: SetKillSwitch, ctx: &mut Context<Self>) {
        let SetKillSwitch {
            state,
            audit,
            reply,
        } = message;
        let store = Arc::clone(&self.store);
        let stored = state.clone();
        // `wait`: the next change is not looked at before this one is stored.
        ctx.wait(
            async move { store.set_kill_switch(stored, audit).await }
                .into_actor(self)
                .map(move |result, act, _| {
                    let answer = result.map(|()| {
                        act.switch.apply(state.clone());
                        act.switch.own_changes.fetch_add(1, Ordering::SeqCst);
                        tracing::warn!(
                            engaged = state.engaged,
                            changed_by = state.changed_by.as_deref().unwrap_or(""),
                            reason = state.reason.as_deref().unwrap_or(""),
                            "kill switch changed"
                        );
                        state
                    });
                    let _ = reply.send(answer);
                }),
        );
    }
}

/// What `api/` holds of the switch.
#[derive(Clone)]
pub struct KillSwitchHandle {
    switch: Arc<KillSwitch>,
    addr: Addr<KillSwitchActor>,
}

impl KillSwitchHandle {
    /// Starts the switch's actor with the state loaded from the store.
    pub fn start(state: KillSwitchState, store: Arc<dyn Store>) -> Self {
        let switch = Arc::new(KillSwitch::new(state));
        let addr = KillSwitchActor {
            switch: Arc::clone(&switch),
            store,
        }
        .start();
        Self { switch, addr }
    }

    /// Follows changes other processes store (a shared Redis): reads the
    /// stored state every `KILL_SWITCH_FOLLOW_INTERVAL` until the process
    /// stops, on the System thread (where nothing heavy runs).
    pub fn follow(&self, store: Arc<dyn Store>, tasks: &Tasks) {
        let addr = self.addr.clone();
        let switch = Arc::clone(&self.switch);
        tasks.spawn(
            "follow the kill switch",
            Place::System,
            move || async move {
                let mut every = tokio::time::interval(KILL_SWITCH_FOLLOW_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let seen = switch.own_changes.load(Ordering::SeqCst);
                    match store.load_kill_switch().await {
                        Ok(state) => {
                            if addr.send(Follow { state, seen }).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "kill switch not read from the store");
                        }
                    }
                }
            },
        );
    }

    pub fn is_engaged(&self) -> bool {
        self.switch.is_engaged()
    }

    pub fn state(&self) -> KillSwitchState {
        self.switch.state()
    }

    /// Stores the new state with its audit entry, then applies it; returns
    /// once both are done.
    pub async fn set(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<KillSwitchState, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.addr
            .send(SetKillSwitch {
                state,
                audit,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("kill switch actor stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("kill switch actor stopped".into()))?
    }
}
