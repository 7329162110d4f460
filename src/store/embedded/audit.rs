//! The audit log in the embedded store.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl AuditLog for EmbeddedStore {
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write_plain(WriteOp::Audit(entry)).await.map(|_| ())
    }

    async fn read_audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(AUDIT).map_err(unavailable)?;
            let since = query.since.map_or(i64::MIN, |t| t.timestamp_micros());
            let start = match query.after {
                Some(after) if after.at_micros >= since => (after.at_micros, after.id),
                _ => (since, 0),
            };
            let limit = query.limit.clamp(1, AUDIT_PAGE_MAX);
            let mut entries = Vec::new();
            for row in table.range(start..).map_err(unavailable)? {
                let (key, value) = row.map_err(unavailable)?;
                let (at_micros, _) = key.value();
                if query
                    .until
                    .is_some_and(|until| at_micros >= until.timestamp_micros())
                {
                    break;
                }
                let entry: AuditEntry = decode(value.value(), "audit entry")?;
                if query.matches(&entry) {
                    entries.push(entry);
                    if entries.len() > limit {
                        break;
                    }
                }
            }
            Ok(page_of(entries, limit))
        })
        .await
    }
}
