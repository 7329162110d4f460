//! The kill switch in the embedded store: one copy, written with its audit entry.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl KillSwitchStore for EmbeddedStore {
    async fn load_kill_switch(&self) -> Result<KillSwitchState, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let meta = txn.open_table(META).map_err(unavailable)?;
            match meta.get(KILL_SWITCH_KEY).map_err(unavailable)? {
                Some(bytes) => decode(bytes.value(), "kill switch"),
                None => Ok(KillSwitchState::default()),
            }
        })
        .await
    }

    async fn set_kill_switch(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        self.write_plain(WriteOp::KillSwitch(state, audit))
            .await
            .map(|_| ())
    }

    /// One copy of the switch, written in one transaction with its audit
    /// entry: there is nothing that could disagree.
    async fn reconcile_kill_switch_flags(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
