//! The embedded store's mail outbox, laid out like the reservation log so
//! that queuing mail with a booking costs one append per transaction, not
//! B-tree pages per mail (redb is copy-on-write: mail keyed by its random id
//! made mail-on bookings four times slower, and a due index on disk cost a
//! sixth of the rate, both measured).
//!
//! - `mail_log`: the mail each transaction queued, as queued, never changed.
//! - `mail_settled`: every change since, appended in time order: a failed
//!   try (pending again, with its tries and next try), delivered, failed for
//!   good, withdrawn.
//!
//! Which mail is pending, and when it is tried next, is `Index`: in memory,
//! rebuilt at open by reading the log and replaying the settlements (as the
//! reservations are), changed by the writer only after a transaction commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::super::records::{MailSettledV1, decode_all, encode_all};
use super::super::{OutboxFigures, StoreError};
use super::unavailable;
use crate::domain::{Delivery, MailId, OutboxMail};

/// Key: log sequence, one per transaction that queued mail; value: JSON
/// array of `OutboxMailV1`, as queued.
pub(super) const MAIL_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("mail_log");
/// Key: a sequence, in the order the changes were made (not their times: a
/// rehearsal's moved clock may run backwards across a restart); value: JSON
/// `MailSettledV1`.
pub(super) const MAIL_SETTLED: TableDefinition<u64, &[u8]> = TableDefinition::new("mail_settled");

/// Where a pending mail is in the log, its tries so far, when it is tried
/// next and when it was first due (unix µs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingMail {
    sequence: u64,
    place: u32,
    attempts: u32,
    next_at: i64,
    due_at: i64,
}

/// Every pending mail, by id and by next try.
#[derive(Default)]
pub(super) struct Index {
    by_id: HashMap<MailId, PendingMail>,
    by_next_try: BTreeMap<(i64, u64, u32), MailId>,
}

impl Index {
    fn set(&mut self, id: MailId, pending: Option<PendingMail>) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_next_try
                .remove(&(old.next_at, old.sequence, old.place));
        }
        if let Some(new) = pending {
            self.by_next_try
                .insert((new.next_at, new.sequence, new.place), id);
            self.by_id.insert(id, new);
        }
    }
}

/// Locked only briefly, never across an await.
pub(super) type MailIndex = Arc<Mutex<Index>>;

/// What a transaction changed in the index: applied once it committed.
pub(super) type IndexChanges = HashMap<MailId, Option<PendingMail>>;

fn micros(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp_micros()
}

fn instant(micros: i64) -> Result<DateTime<FixedOffset>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .map(|at| at.with_timezone(&crate::domain::municipality_offset()))
        .ok_or_else(|| StoreError::Corrupt("mail time".into()))
}

/// Reads the log and replays the settlements (at open).
pub(super) fn build_index(db: &Database) -> Result<Index, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let log = txn.open_table(MAIL_LOG).map_err(unavailable)?;
    let mut index = Index::default();
    for row in log.iter().map_err(unavailable)? {
        let (sequence, bytes) = row.map_err(unavailable)?;
        let mails: Vec<OutboxMail> = decode_all(bytes.value(), "mail log entry")?;
        for (place, mail) in mails.iter().enumerate() {
            if let Delivery::Pending { attempts, next_at } = mail.delivery {
                let pending = PendingMail {
                    sequence: sequence.value(),
                    place: u32::try_from(place).expect("a log entry's mail fits u32"),
                    attempts,
                    next_at: micros(next_at),
                    due_at: micros(mail.due_at),
                };
                index.set(mail.id, Some(pending));
            }
        }
    }
    let settled = txn.open_table(MAIL_SETTLED).map_err(unavailable)?;
    for row in settled.iter().map_err(unavailable)? {
        let (_, bytes) = row.map_err(unavailable)?;
        let record: MailSettledV1 = serde_json::from_slice(bytes.value())
            .map_err(|e| StoreError::Corrupt(format!("mail settlement: {e}")))?;
        let id = MailId::parse(&record.id).ok_or_else(|| StoreError::Corrupt("mail id".into()))?;
        let change = match (record.state.as_str(), record.next_at) {
            ("pending", Some(next_at)) => index.by_id.get(&id).map(|p| PendingMail {
                attempts: record.attempts,
                next_at: micros(next_at),
                ..*p
            }),
            _ => None,
        };
        index.set(id, change);
    }
    Ok(index)
}

pub(super) fn apply_changes(index: &MailIndex, changes: IndexChanges) {
    let mut index = index.lock().expect("mail index lock poisoned");
    for (id, change) in changes {
        index.set(id, change);
    }
}

/// The outbox's tables in one write transaction.
pub(super) struct Outbox<'t> {
    log: Table<'t, u64, &'static [u8]>,
    settled: Table<'t, u64, &'static [u8]>,
    settled_next: Option<u64>,
    index: &'t MailIndex,
    changes: IndexChanges,
    /// The mail this transaction queued, for its one log entry.
    queued: Vec<OutboxMail>,
    sequence: Option<u64>,
}

impl<'t> Outbox<'t> {
    pub(super) fn open(
        txn: &'t WriteTransaction,
        index: &'t MailIndex,
    ) -> Result<Self, redb::Error> {
        Ok(Self {
            log: txn.open_table(MAIL_LOG)?,
            settled: txn.open_table(MAIL_SETTLED)?,
            settled_next: None,
            index,
            changes: HashMap::new(),
            queued: Vec::new(),
            sequence: None,
        })
    }

    /// Where `id` is pending, as this transaction sees it.
    fn pending(&self, id: &MailId) -> Option<PendingMail> {
        match self.changes.get(id) {
            Some(change) => *change,
            None => self
                .index
                .lock()
                .expect("mail index lock poisoned")
                .by_id
                .get(id)
                .copied(),
        }
    }

    /// This transaction's log sequence.
    fn sequence(&mut self) -> Result<u64, redb::Error> {
        if let Some(sequence) = self.sequence {
            return Ok(sequence);
        }
        let sequence = match self.log.last()? {
            Some((last, _)) => last.value() + 1,
            None => 1,
        };
        self.sequence = Some(sequence);
        Ok(sequence)
    }

    /// A new mail, pending.
    pub(super) fn queue(&mut self, mail: &OutboxMail) -> Result<(), redb::Error> {
        let Delivery::Pending { attempts, next_at } = mail.delivery else {
            return Ok(());
        };
        let pending = PendingMail {
            sequence: self.sequence()?,
            place: u32::try_from(self.queued.len()).expect("a transaction's mail fits u32"),
            attempts,
            next_at: micros(next_at),
            due_at: micros(mail.due_at),
        };
        self.queued.push(mail.clone());
        self.changes.insert(mail.id, Some(pending));
        Ok(())
    }

    /// What became of a claimed mail. A mail no longer pending (settled
    /// already, or withdrawn) stays as it was.
    pub(super) fn settle(&mut self, mail: &OutboxMail) -> Result<(), redb::Error> {
        let Some(pending) = self.pending(&mail.id) else {
            return Ok(());
        };
        let now = crate::clock::now();
        let id = mail.id.to_string();
        let (at, record, change) = match &mail.delivery {
            Delivery::Pending { attempts, next_at } => (
                now,
                MailSettledV1::retry(&id, *attempts, *next_at),
                Some(PendingMail {
                    attempts: *attempts,
                    next_at: micros(*next_at),
                    ..pending
                }),
            ),
            Delivery::Delivered { at } => (*at, MailSettledV1::new(&id, "delivered", None), None),
            Delivery::Failed { at, reason } => (
                *at,
                MailSettledV1::new(&id, "failed", Some(reason.clone())),
                None,
            ),
            Delivery::Withdrawn => (now, MailSettledV1::new(&id, "withdrawn", None), None),
        };
        self.record(at, record)?;
        self.changes.insert(mail.id, change);
        Ok(())
    }

    /// A cancelled reservation's reminder, if still pending, is never sent.
    pub(super) fn withdraw(&mut self, id: &MailId) -> Result<(), redb::Error> {
        if self.pending(id).is_none() {
            return Ok(());
        }
        let record = MailSettledV1::new(&id.to_string(), "withdrawn", None);
        self.record(crate::clock::now(), record)?;
        self.changes.insert(*id, None);
        Ok(())
    }

    fn record(
        &mut self,
        at: DateTime<FixedOffset>,
        mut record: MailSettledV1,
    ) -> Result<(), redb::Error> {
        record.at = Some(at);
        let sequence = match self.settled_next {
            Some(next) => next,
            None => match self.settled.last()? {
                Some((last, _)) => last.value() + 1,
                None => 1,
            },
        };
        self.settled_next = Some(sequence + 1);
        let json = serde_json::to_vec(&record).expect("records always serialise");
        self.settled.insert(sequence, json.as_slice())?;
        Ok(())
    }

    /// Writes the transaction's log entry; the index changes to apply once
    /// it committed.
    pub(super) fn finish(mut self) -> Result<IndexChanges, redb::Error> {
        if !self.queued.is_empty() {
            let sequence = self.sequence()?;
            self.log
                .insert(sequence, encode_all(&self.queued).as_slice())?;
        }
        Ok(self.changes)
    }
}

/// Up to `limit` mails due at `now` that `is_claimed` does not hold, oldest
/// first, with their current tries.
pub(super) fn due_mail(
    db: &Database,
    index: &MailIndex,
    now: DateTime<FixedOffset>,
    limit: usize,
    is_claimed: &mut dyn FnMut(&MailId) -> bool,
) -> Result<Vec<OutboxMail>, StoreError> {
    let found: Vec<(MailId, PendingMail)> = {
        let index = index.lock().expect("mail index lock poisoned");
        index
            .by_next_try
            .range(..(micros(now) + 1, 0, 0))
            .map(|(_, id)| *id)
            .filter(|id| !is_claimed(id))
            .take(limit)
            .filter_map(|id| index.by_id.get(&id).map(|p| (id, *p)))
            .collect()
    };
    let txn = db.begin_read().map_err(unavailable)?;
    let log = txn.open_table(MAIL_LOG).map_err(unavailable)?;
    // Each log entry read once: mail queued together is claimed together.
    let mut entries: HashMap<u64, Vec<OutboxMail>> = HashMap::new();
    let mut claimed = Vec::with_capacity(found.len());
    for (id, pending) in found {
        let entry = match entries.entry(pending.sequence) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let bytes = log
                    .get(pending.sequence)
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::Corrupt("mail log entry missing".into()))?;
                vacant.insert(decode_all(bytes.value(), "mail log entry")?)
            }
        };
        let mut mail = entry
            .get(pending.place as usize)
            .filter(|m| m.id == id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("mail log entry".into()))?;
        mail.delivery = Delivery::Pending {
            attempts: pending.attempts,
            next_at: instant(pending.next_at)?,
        };
        claimed.push(mail);
    }
    Ok(claimed)
}

/// Pending mail first due by `now`, and the oldest's due time.
pub(super) fn figures(index: &MailIndex, now: DateTime<FixedOffset>) -> OutboxFigures {
    let now = micros(now);
    let index = index.lock().expect("mail index lock poisoned");
    let mut figures = OutboxFigures::default();
    let mut oldest: Option<i64> = None;
    for pending in index.by_id.values().filter(|p| p.due_at <= now) {
        figures.pending += 1;
        oldest = Some(oldest.map_or(pending.due_at, |o| o.min(pending.due_at)));
    }
    figures.oldest_due = oldest.and_then(|at| instant(at).ok());
    figures
}
