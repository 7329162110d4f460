//! The single writers. One `VenueDayActor` per venue-day decides and commits
//! everything that changes that day; the `KillSwitchActor` serialises switch
//! changes. `api/` never sees an `Addr`: it holds a `Registry` and a
//! `KillSwitchHandle`, whose methods send with bounded queues.

mod kill_switch;
mod messages;
mod registry;
mod venue_day;

pub use kill_switch::{KillSwitch, KillSwitchHandle};
pub use messages::CancelNotice;
pub use registry::{ACTOR_ARBITERS_MAX, Placement, Registry, VenueDayHandle};
pub use venue_day::{
    ABANDON_RETRY_DELAY, COMMIT_BATCH_MAX, PAST_DAY_IDLE_MAX, VENUE_DAY_IDLE_MAX_DEFAULT,
    VENUE_DAY_MAILBOX_MAX, VENUE_DAY_WAITING_MAX,
};

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::residents::Residents;
use crate::store::Store;

/// What every venue-day actor shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub residents: Residents,
    pub catalog: Arc<Catalog>,
}
