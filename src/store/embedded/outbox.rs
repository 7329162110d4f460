//! The embedded store's mail outbox, laid out like the reservation log so
//! that queuing mail with a booking costs about one append per transaction,
//! not a random B-tree page per mail (redb is copy-on-write: mail keyed by
//! its random id made mail-on bookings four times slower, measured).
//!
//! - `mail_log`: the mail each transaction queued, as queued, never changed
//!   (a booking's confirmation and reminder share one record).
//! - `mail_due`: the pending mail by next try, keyed (next try, log sequence,
//!   place in the entry), so mail queued together sits together.
//! - `mail_settled`: what became of each mail no longer pending (delivered,
//!   failed, withdrawn), keyed by (when, mail id): appended to.
//!
//! `MailIndex` (id → its `mail_due` key) is built at open from `mail_due` and
//! changed by the writer only after a transaction commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::super::records::{MailSettledV1, decode_all, encode_all};
use super::super::{OutboxFigures, StoreError};
use super::unavailable;
use crate::domain::{Delivery, MailId, MailKind, OutboxMail};

/// Key: log sequence, one per transaction that queued mail; value: JSON
/// array of `OutboxMailV1`, as queued.
pub(super) const MAIL_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("mail_log");
/// Key: (next try, unix µs; log sequence; place in its entry; kind, as
/// `kind_number`); value: (tries so far, first due time in unix µs, mail id).
pub(super) const MAIL_DUE: TableDefinition<DueKey, DueValue> = TableDefinition::new("mail_due");
type DueKey = (i64, u64, u32, u8);
type DueValue = (u32, i64, &'static str);
/// Key: (settled at, unix µs; mail id); value: JSON `MailSettledV1`.
pub(super) const MAIL_SETTLED: TableDefinition<(i64, &str), &[u8]> =
    TableDefinition::new("mail_settled");

/// A pending mail's place: its `mail_due` key, tries so far, first due time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingMail {
    next_at: i64,
    sequence: u64,
    place: u32,
    kind: u8,
    attempts: u32,
    due_at: i64,
}

impl PendingMail {
    fn key(&self) -> DueKey {
        (self.next_at, self.sequence, self.place, self.kind)
    }
}

/// A kind's number in `mail_due` keys (mail of one record differs by kind).
fn kind_number(kind: MailKind) -> u8 {
    match kind {
        MailKind::Confirmation => 0,
        MailKind::Cancellation => 1,
        MailKind::Reminder => 2,
    }
}

/// Every pending mail by id. Locked only briefly, never across an await.
pub(super) type MailIndex = Arc<Mutex<HashMap<MailId, PendingMail>>>;

/// What a transaction changed in the index: applied once it committed.
pub(super) type IndexChanges = HashMap<MailId, Option<PendingMail>>;

/// Reads `mail_due` into the index (at open).
pub(super) fn build_index(db: &Database) -> Result<HashMap<MailId, PendingMail>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let due = txn.open_table(MAIL_DUE).map_err(unavailable)?;
    let mut index = HashMap::new();
    for row in due.iter().map_err(unavailable)? {
        let (key, value) = row.map_err(unavailable)?;
        let (next_at, sequence, place, kind) = key.value();
        let (attempts, due_at, id) = value.value();
        let id = MailId::parse(id).ok_or_else(|| StoreError::Corrupt("mail id".into()))?;
        index.insert(
            id,
            PendingMail {
                next_at,
                sequence,
                place,
                kind,
                attempts,
                due_at,
            },
        );
    }
    Ok(index)
}

pub(super) fn apply_changes(index: &MailIndex, changes: IndexChanges) {
    let mut index = index.lock().expect("mail index lock poisoned");
    for (id, change) in changes {
        match change {
            Some(pending) => index.insert(id, pending),
            None => index.remove(&id),
        };
    }
}

/// The outbox's tables in one write transaction.
pub(super) struct Outbox<'t> {
    log: Table<'t, u64, &'static [u8]>,
    due: Table<'t, DueKey, DueValue>,
    settled: Table<'t, (i64, &'static str), &'static [u8]>,
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
            due: txn.open_table(MAIL_DUE)?,
            settled: txn.open_table(MAIL_SETTLED)?,
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
        // A booking's confirmation and reminder say the same of the same
        // reservation: one log record serves both (their ids and due times
        // are in `mail_due`).
        let same_as_last = self.queued.last().is_some_and(|last| {
            last.id.reservation_id == mail.id.reservation_id
                && last.ticket_number == mail.ticket_number
                && last.reservations == mail.reservations
        });
        if !same_as_last {
            self.queued.push(mail.clone());
        }
        let pending = PendingMail {
            next_at: next_at.timestamp_micros(),
            sequence: self.sequence()?,
            place: u32::try_from(self.queued.len() - 1).expect("a transaction's mail fits u32"),
            kind: kind_number(mail.id.kind),
            attempts,
            due_at: mail.due_at.timestamp_micros(),
        };
        let id = mail.id.to_string();
        self.due
            .insert(pending.key(), (attempts, pending.due_at, id.as_str()))?;
        self.changes.insert(mail.id, Some(pending));
        Ok(())
    }

    /// What became of a claimed mail. A mail no longer pending (settled
    /// already, or withdrawn) stays as it was.
    pub(super) fn settle(&mut self, mail: &OutboxMail) -> Result<(), redb::Error> {
        let Some(pending) = self.pending(&mail.id) else {
            return Ok(());
        };
        self.due.remove(pending.key())?;
        let id = mail.id.to_string();
        let (at, record) = match &mail.delivery {
            Delivery::Pending { attempts, next_at } => {
                let again = PendingMail {
                    next_at: next_at.timestamp_micros(),
                    attempts: *attempts,
                    ..pending
                };
                self.due
                    .insert(again.key(), (again.attempts, again.due_at, id.as_str()))?;
                self.changes.insert(mail.id, Some(again));
                return Ok(());
            }
            Delivery::Delivered { at } => (*at, MailSettledV1::new("delivered", None)),
            Delivery::Failed { at, reason } => {
                (*at, MailSettledV1::new("failed", Some(reason.clone())))
            }
            Delivery::Withdrawn => (crate::clock::now(), MailSettledV1::new("withdrawn", None)),
        };
        self.record_settled(at, &id, &record)?;
        self.changes.insert(mail.id, None);
        Ok(())
    }

    /// A cancelled reservation's reminder, if still pending, is never sent.
    pub(super) fn withdraw(&mut self, id: &MailId) -> Result<(), redb::Error> {
        let Some(pending) = self.pending(id) else {
            return Ok(());
        };
        self.due.remove(pending.key())?;
        let text = id.to_string();
        self.record_settled(
            crate::clock::now(),
            &text,
            &MailSettledV1::new("withdrawn", None),
        )?;
        self.changes.insert(*id, None);
        Ok(())
    }

    fn record_settled(
        &mut self,
        at: DateTime<FixedOffset>,
        id: &str,
        record: &MailSettledV1,
    ) -> Result<(), redb::Error> {
        let json = serde_json::to_vec(record).expect("records always serialise");
        self.settled
            .insert((at.timestamp_micros(), id), json.as_slice())?;
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
    now: DateTime<FixedOffset>,
    limit: usize,
    is_claimed: &mut dyn FnMut(&MailId) -> bool,
) -> Result<Vec<OutboxMail>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let due = txn.open_table(MAIL_DUE).map_err(unavailable)?;
    let log = txn.open_table(MAIL_LOG).map_err(unavailable)?;
    let mut found = Vec::new();
    for row in due
        .range(..(now.timestamp_micros() + 1, 0, 0, 0))
        .map_err(unavailable)?
    {
        if found.len() >= limit {
            break;
        }
        let (key, value) = row.map_err(unavailable)?;
        let (next_at, sequence, place, _) = key.value();
        let (attempts, due_at, id) = value.value();
        let Some(id) = MailId::parse(id) else {
            continue;
        };
        if !is_claimed(&id) {
            found.push((id, next_at, sequence, place, attempts, due_at));
        }
    }
    // Each log entry read once: mail queued together is claimed together.
    let mut entries: HashMap<u64, Vec<OutboxMail>> = HashMap::new();
    let mut claimed = Vec::with_capacity(found.len());
    for (id, next_at, sequence, place, attempts, due_at) in found {
        let entry = match entries.entry(sequence) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let bytes = log
                    .get(sequence)
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::Corrupt("mail log entry missing".into()))?;
                vacant.insert(decode_all(bytes.value(), "mail log entry")?)
            }
        };
        // The record says what; `mail_due` says which mail of it and when.
        let mut mail = entry
            .get(place as usize)
            .filter(|m| m.id.reservation_id == id.reservation_id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("mail log entry".into()))?;
        let instant = |micros: i64| {
            DateTime::from_timestamp_micros(micros)
                .map(|at| at.with_timezone(&crate::domain::municipality_offset()))
                .ok_or_else(|| StoreError::Corrupt("mail time".into()))
        };
        mail.id = id;
        mail.due_at = instant(due_at)?;
        mail.delivery = Delivery::Pending {
            attempts,
            next_at: instant(next_at)?,
        };
        claimed.push(mail);
    }
    Ok(claimed)
}

/// Pending mail first due by `now`, and the oldest's due time.
pub(super) fn figures(index: &MailIndex, now: DateTime<FixedOffset>) -> OutboxFigures {
    let now = now.timestamp_micros();
    let index = index.lock().expect("mail index lock poisoned");
    let mut figures = OutboxFigures::default();
    let mut oldest: Option<i64> = None;
    for pending in index.values().filter(|p| p.due_at <= now) {
        figures.pending += 1;
        oldest = Some(oldest.map_or(pending.due_at, |o| o.min(pending.due_at)));
    }
    figures.oldest_due = oldest
        .and_then(DateTime::from_timestamp_micros)
        .map(|at| at.with_timezone(&crate::domain::municipality_offset()));
    figures
}
