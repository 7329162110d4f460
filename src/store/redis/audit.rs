//! The audit log on Redis: one sorted set per partition and per kind of record, read merged.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl AuditLog for RedisStore {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: i64 =
            limited(connection.zadd(AUDIT, audit_member(&entry), entry.at.timestamp_micros()))
                .await
                .map_err(unavailable)?;
        Ok(())
    }

    async fn read_audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = query.limit.clamp(1, AUDIT_PAGE_MAX);
        let low = match (query.since, query.after) {
            (Some(since), Some(after)) => since.timestamp_micros().max(after.at_micros),
            (Some(since), None) => since.timestamp_micros(),
            (None, Some(after)) => after.at_micros,
            (None, None) => i64::MIN,
        };
        let low = if low == i64::MIN {
            "-inf".to_owned()
        } else {
            low.to_string()
        };
        let high = match query.until {
            Some(until) => format!("({}", until.timestamp_micros()),
            None => "+inf".to_owned(),
        };
        // Each log yields its first `limit + 1` matches; the page's entries
        // are the first `limit + 1` of their union, in log order.
        let mut matches = Vec::new();
        let sources = AUDIT_LOGS
            .iter()
            .map(|&log| log.to_owned())
            .chain((0..KILL_SWITCH_PARTITIONS).map(partition_audit));
        let mut connection = self.connection();
        for source in sources {
            let mut found = 0;
            let mut offset = 0;
            loop {
                let members: Vec<String> = limited(
                    ::redis::cmd("ZRANGE")
                        .arg(&source)
                        .arg(&low)
                        .arg(&high)
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(AUDIT_SCAN_PAGE)
                        .query_async(&mut connection),
                )
                .await
                .map_err(unavailable)?;
                let fetched = members.len();
                for member in members {
                    let entry = decode_audit_member(&member)?;
                    if query.matches(&entry) && found <= limit {
                        found += 1;
                        matches.push(entry);
                    }
                }
                offset += fetched;
                if fetched < AUDIT_SCAN_PAGE || found > limit {
                    break;
                }
            }
        }
        matches.sort_by_key(AuditEntry::cursor);
        matches.truncate(limit + 1);
        Ok(page_of(matches, limit))
    }
}
