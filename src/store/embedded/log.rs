//! The venue-day log in the embedded store: one log of batches, a day loaded from its index, commits through the one writer.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl DayLog for EmbeddedStore {
    async fn load_venue_day(&self, key: VenueDayKey) -> Result<StoredVenueDay, StoreError> {
        // The day's writer is the caller: no entry for this day is being
        // committed meanwhile, so the index is complete for it.
        let sequences = self
            .day_index
            .lock()
            .expect("day index lock poisoned")
            .get(&day_key(&key))
            .cloned()
            .unwrap_or_default();
        self.read(move |db| {
            let day = day_key(&key);
            let txn = db.begin_read().map_err(unavailable)?;
            let days = txn.open_table(DAYS).map_err(unavailable)?;
            let plan = match days.get(day.as_str()).map_err(unavailable)? {
                Some(bytes) => Some(decode(bytes.value(), "day plan")?),
                None => None,
            };
            let log = txn.open_table(RESERVATION_LOG).map_err(unavailable)?;
            let mut replay = Replay::default();
            for sequence in sequences {
                if let Some(records) = log.get(sequence).map_err(unavailable)? {
                    let records: Vec<Reservation> =
                        decode_all(records.value(), "reservation log entry")?;
                    replay.add(
                        records
                            .into_iter()
                            .filter(|r| day_key(&r.venue_day()) == day),
                    );
                }
            }
            let reservations = replay.into_reservations();
            let reminded = txn
                .open_table(REMINDED_DAYS)
                .map_err(unavailable)?
                .get(day.as_str())
                .map_err(unavailable)?
                .is_some();
            Ok(StoredVenueDay {
                plan,
                reservations,
                owner_epoch: 0,
                reminded,
            })
        })
        .await
    }

    async fn commit_reservations(&self, batch: ReservationBatch) -> Result<(), CommitError> {
        batch.assert_well_formed();
        self.write(WriteOp::Reservations(batch)).await.map(|_| ())
    }

    /// A redb commit either happened or did not: never uncertain.
    async fn abandon_batch(&self, _batch: AbandonedBatch) -> Result<(), AbandonError> {
        Ok(())
    }

    async fn load_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let log = txn.open_table(RESERVATION_LOG).map_err(unavailable)?;
            // Folded entry by entry: the log is never held decoded whole.
            let mut replay = Replay::default();
            for entry in log.iter().map_err(unavailable)? {
                let (_, records) = entry.map_err(unavailable)?;
                replay.add(decode_all::<Reservation>(
                    records.value(),
                    "reservation log entry",
                )?);
            }
            Ok(replay.into_reservations())
        })
        .await
    }

    /// The log's entries are written and read whole by this process (a
    /// transaction's batch is one entry): an entry that cannot be read fails
    /// the load rather than leave out what it held.
    async fn load_readable_days(&self) -> Result<crate::store::ReadableDays, StoreError> {
        Ok(crate::store::ReadableDays {
            plans: self.load_day_plans().await?,
            reservations: self.load_reservations().await?,
        })
    }
}
