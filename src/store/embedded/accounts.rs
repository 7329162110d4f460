//! Accounts in the embedded store, each change with its audit entry.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read_all(ACCOUNTS, "account").await
    }

    async fn put_account(&self, account: Account, audit: AuditEntry) -> Result<bool, StoreError> {
        match self
            .write_plain(WriteOp::PutAccount(account, audit))
            .await?
        {
            WriteOutcome::Created(created) => Ok(created),
            WriteOutcome::Done => unreachable!("account writes report whether they created"),
        }
    }

    async fn delete_account(&self, id: AccountId, audit: AuditEntry) -> Result<bool, StoreError> {
        match self.write_plain(WriteOp::DeleteAccount(id, audit)).await? {
            WriteOutcome::Created(existed) => Ok(existed),
            WriteOutcome::Done => unreachable!("account deletes report whether one existed"),
        }
    }
}
