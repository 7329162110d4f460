//! The imported residents on Redis, with their change entries (`put_residents.lua`).

use async_trait::async_trait;

use super::*;

#[async_trait]
impl ResidentStore for RedisStore {
    async fn put_residents(&self, residents: Vec<Resident>) -> Result<(), StoreError> {
        if residents.is_empty() {
            return Ok(());
        }
        let fields: Vec<(String, String)> = residents
            .iter()
            .map(|r| (r.ticket_number.expose().to_owned(), encode(r)))
            .collect();
        // With its change entry, in one script call (the stream is trimmed
        // by time, as an import's entry holds a whole call's residents).
        let mut invocation = self.put_residents.invoke(
            &PutResidentsKeys {
                residents: RESIDENTS,
                changes: changes::RESIDENT_CHANGES,
            },
            &PutResidentsArgs {
                changes_kept_ms: self.changes_kept_ms().to_string(),
            },
        );
        for (ticket, json) in &fields {
            invocation.arg(ticket).arg(json);
        }
        let _: i64 = limited(invocation.invoke_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn load_residents(&self) -> Result<Vec<Resident>, StoreError> {
        let pairs = self.scan_hash(RESIDENTS).await?;
        Ok(pairs
            .iter()
            .filter_map(|(_, json)| decode_or_skip(json.as_bytes(), "resident", ""))
            .collect())
    }
}
