//! The kill switch on Redis: its record with its audit entry, then each partition's flag that commits check.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl KillSwitchStore for RedisStore {
    async fn load_kill_switch(&self) -> Result<KillSwitchState, StoreError> {
        let mut connection = self.connection();
        let stored: Option<String> = limited(connection.get(KILL_SWITCH))
            .await
            .map_err(unavailable)?;
        stored
            .map(|json| decode(&json, "kill switch"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn set_kill_switch(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        let flag = if state.engaged { "1" } else { "0" };
        // The record (what every process follows) with its audit entry
        // first, in one slot and one transaction; then each partition's
        // flag, on its own shard. The `PUT` returns after the last flag is
        // written. A process that dies between the two leaves the record
        // ahead of some flags, and every process writes the flags from the
        // record when it starts (`reconcile_kill_switch_flags`).
        let mut write = ::redis::pipe();
        write
            .cmd("MULTI")
            .set(KILL_SWITCH, encode(&state))
            .zadd(
                KILL_SWITCH_AUDIT,
                audit_member(&audit),
                audit.at.timestamp_micros(),
            )
            .cmd("EXEC");
        let (_, replicated) = self.durably(0, &write, &[]).await.map_err(unavailable)?;
        if !replicated {
            return Err(not_replicated());
        }
        self.write_partition_flags(flag, true).await
    }

    async fn reconcile_kill_switch_flags(&self) -> Result<(), StoreError> {
        let state = self.load_kill_switch().await?;
        self.write_partition_flags(if state.engaged { "1" } else { "0" }, false)
            .await
    }
}
