//! The catalog in the embedded store: venues and day plans.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl CatalogStore for EmbeddedStore {
    async fn load_venues(&self) -> Result<Vec<Venue>, StoreError> {
        self.read_all(VENUES, "venue").await
    }

    async fn put_venue(&self, venue: Venue) -> Result<bool, StoreError> {
        match self.write_plain(WriteOp::Venue(venue)).await? {
            WriteOutcome::Created(created) => Ok(created),
            WriteOutcome::Done => unreachable!("venue writes report whether they created"),
        }
    }

    async fn load_day_plans(&self) -> Result<Vec<(VenueDayKey, DayPlan)>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(DAYS).map_err(unavailable)?;
            let mut plans = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (key, value) = row.map_err(unavailable)?;
                plans.push((
                    parse_day_key(key.value())?,
                    decode(value.value(), "day plan")?,
                ));
            }
            Ok(plans)
        })
        .await
    }

    async fn put_day_plan(&self, key: VenueDayKey, plan: DayPlan) -> Result<(), StoreError> {
        self.write_plain(WriteOp::DayPlan(key, plan))
            .await
            .map(|_| ())
    }
}
