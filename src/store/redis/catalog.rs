//! The catalog on Redis: venues and day plans, each change streamed to the other processes.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl CatalogStore for RedisStore {
    async fn load_venues(&self) -> Result<Vec<Venue>, StoreError> {
        let pairs = self.scan_hash(VENUES).await?;
        Ok(pairs
            .iter()
            .filter_map(|(id, json)| decode_or_skip(json.as_bytes(), "venue", id))
            .collect())
    }

    async fn put_venue(&self, venue: Venue) -> Result<bool, StoreError> {
        let json = encode(&venue);
        let mut write = ::redis::pipe();
        write
            .atomic()
            .hset(VENUES, venue.id.as_str(), &json)
            .add_command(changes::venue_change(&json))
            .ignore();
        let (added,): (i64,) = limited(write.query_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn load_day_plans(&self) -> Result<Vec<(VenueDayKey, DayPlan)>, StoreError> {
        let pairs = self.scan_hash(DAYS).await?;
        pairs
            .iter()
            .map(|(field, json)| Ok((parse_day_field(field)?, decode(json, "day plan")?)))
            .collect()
    }

    async fn put_day_plan(&self, key: VenueDayKey, plan: DayPlan) -> Result<(), StoreError> {
        let (day, json) = (day_field(&key), encode(&plan));
        let mut write = ::redis::pipe();
        write
            .atomic()
            .hset(DAYS, &day, &json)
            .ignore()
            .add_command(changes::day_change(&day, &json))
            .ignore();
        let () = limited(write.query_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
