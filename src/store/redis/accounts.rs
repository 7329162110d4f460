//! Accounts on Redis, each change with its audit entry in one slot.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl AccountStore for RedisStore {
    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let pairs = self.scan_hash(ACCOUNTS).await?;
        Ok(pairs
            .iter()
            .filter_map(|(id, json)| decode_or_skip(json.as_bytes(), "account", id))
            .collect())
    }

    async fn put_account(&self, account: Account, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut change = ::redis::pipe();
        change.hset(ACCOUNTS, account.id.as_str(), encode(&account));
        Ok(self.change_account(change, &audit).await? == 1)
    }

    async fn delete_account(&self, id: AccountId, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut change = ::redis::pipe();
        change.hdel(ACCOUNTS, id.as_str());
        Ok(self.change_account(change, &audit).await? == 1)
    }
}

impl RedisStore {
    /// One change of the accounts hash (`change`, a single command) with its
    /// audit entry, in one `MULTI`; answers the command's count.
    async fn change_account(
        &self,
        mut change: ::redis::Pipeline,
        audit: &AuditEntry,
    ) -> Result<i64, StoreError> {
        change.atomic();
        change
            .zadd(
                ACCOUNTS_AUDIT,
                audit_member(audit),
                audit.at.timestamp_micros(),
            )
            .ignore();
        let mut connection = self.connection();
        let (count,): (i64,) = limited(change.query_async(&mut connection))
            .await
            .map_err(unavailable)?;
        Ok(count)
    }
}
