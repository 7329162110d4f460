//! The imported residents in the embedded store.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl ResidentStore for EmbeddedStore {
    async fn put_residents(&self, residents: Vec<Resident>) -> Result<(), StoreError> {
        self.write_plain(WriteOp::Residents(residents))
            .await
            .map(|_| ())
    }

    async fn load_residents(&self) -> Result<Vec<Resident>, StoreError> {
        self.read_all(RESIDENTS, "resident").await
    }
}
