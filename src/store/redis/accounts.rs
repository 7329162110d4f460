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
        let mut transaction = ::redis::pipe();
        transaction.atomic();
        transaction.hset(ACCOUNTS, account.id.as_str(), encode(&account));
        transaction
            .zadd(
                ACCOUNTS_AUDIT,
                audit_member(&audit),
                audit.at.timestamp_micros(),
            )
            .ignore();
        let mut connection = self.connection();
        let (added,): (i64,) = limited(transaction.query_async(&mut connection))
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn delete_account(&self, id: AccountId, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut transaction = ::redis::pipe();
        transaction.atomic();
        transaction.hdel(ACCOUNTS, id.as_str());
        transaction
            .zadd(
                ACCOUNTS_AUDIT,
                audit_member(&audit),
                audit.at.timestamp_micros(),
            )
            .ignore();
        let mut connection = self.connection();
        let (removed,): (i64,) = limited(transaction.query_async(&mut connection))
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }
}
