//! The embedded store: one redb file in `--data-dir`, no server needed.
//!
//! All writes go through one writer thread that takes every job waiting in its
//! queue and applies them in order in **one** write transaction (one fsync for
//! the whole group, across venue-days). The kill-switch state is read inside
//! that transaction and updated by a kill-switch job in order, so a batch
//! queued after the switch was engaged is refused, and the engaging job only
//! answers once its transaction is durable. Reads use redb's MVCC snapshots on
//! the blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::store::{
    AccountStore, AuditLog, CatalogStore, DayLog, KillSwitchStore, MailOutbox, ResidentStore,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

mod accounts;
mod audit;
mod catalog;
mod kill_switch;
mod log;
mod mail;
mod outbox;
mod residents;

use super::records::{Stored, decode, decode_all, decode_or_skip, encode, encode_all};
use super::{
    AUDIT_PAGE_MAX, AbandonError, AbandonedBatch, AuditEntry, AuditPage, AuditQuery, BatchKind,
    CommitError, KillSwitchState, MAIL_LEASE, MailClaimToken, OutboxFigures, ReservationBatch,
    Store, StoreError, StoredVenueDay, page_of,
};
use crate::domain::{
    Account, AccountId, DayPlan, MailId, OutboxMail, Reservation, Resident, Venue, VenueDayKey,
    VenueId, parse_date,
};

/// Most write jobs waiting for the writer thread; senders wait beyond it.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// redb's page cache (its default is 1 GiB). The reservation log is only
/// appended to and read back at start-up and for rosters, so a large cache
/// mostly keeps pages nobody reads again; the OS page cache still holds them.
pub const STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Most jobs merged into one write transaction.
pub const JOBS_PER_TRANSACTION_MAX: usize = 512;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VENUES: TableDefinition<&str, &[u8]> = TableDefinition::new("venues");
/// Key: `venue_id/YYYY-MM-DD`.
const DAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("days");
/// Key: ticket number.
const RESIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("residents");
/// The reservation log. Key: log sequence, one per transaction; value: every
/// reservation record the transaction's batches wrote (JSON array), of any
/// venue-days. Append-only at the right edge of one B-tree, so a transaction
/// costs about the same whatever its size (redb is copy-on-write: one key per
/// booking, or per venue-day, would rewrite a page each). Read back by
/// replaying entries in order; a later version of a reservation replaces an
/// earlier one. `day_index` says which entries hold a given day.
const RESERVATION_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("reservation_log_v3");
/// Key: (unix microseconds, the entry's random id): the log's order.
const AUDIT: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("audit");
/// Key: account id; value: the account, its key only as a hash.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// Venue-days whose reminders were queued. Key: `venue_id/YYYY-MM-DD`;
/// value: when (unix seconds).
const REMINDED_DAYS: TableDefinition<&str, i64> = TableDefinition::new("reminded_days");

const KILL_SWITCH_KEY: &str = "kill_switch";
const DATABASE_FILE: &str = "vaxslot.redb";

enum WriteOp {
    Venue(Venue),
    DayPlan(VenueDayKey, DayPlan),
    Reservations(ReservationBatch),
    Residents(Vec<Resident>),
    KillSwitch(KillSwitchState, AuditEntry),
    Audit(AuditEntry),
    PutAccount(Account, AuditEntry),
    DeleteAccount(AccountId, AuditEntry),
    SettleMail(OutboxMail),
}

enum WriteOutcome {
    Done,
    Created(bool),
}

struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, CommitError>>,
}

/// Which log entries hold reservations of each venue-day (`venue_id/date`).
/// Built at open, extended by the writer after each commit and before it
/// answers; locked only briefly, never across an await.
type DayIndex = Arc<std::sync::Mutex<HashMap<String, Vec<u64>>>>;

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<WriteJob>,
    day_index: DayIndex,
    /// Mail claimed and not settled yet, with when: one process owns the
    /// file, so the lease lives here (a restart starts with none).
    mail_claims: Arc<std::sync::Mutex<HashMap<MailId, (Instant, MailClaimToken)>>>,
    /// Every pending mail, by id and by next try (in memory; see `outbox`).
    mail_index: outbox::MailIndex,
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data dir: {e}")))?;
        let db = Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(data_dir.join(DATABASE_FILE))
            .map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        {
            txn.open_table(META).map_err(unavailable)?;
            txn.open_table(VENUES).map_err(unavailable)?;
            txn.open_table(DAYS).map_err(unavailable)?;
            txn.open_table(RESIDENTS).map_err(unavailable)?;
            txn.open_table(RESERVATION_LOG).map_err(unavailable)?;
            txn.open_table(AUDIT).map_err(unavailable)?;
            txn.open_table(ACCOUNTS).map_err(unavailable)?;
            txn.open_table(REMINDED_DAYS).map_err(unavailable)?;
            txn.open_table(outbox::MAIL_LOG).map_err(unavailable)?;
            txn.open_table(outbox::MAIL_SETTLED).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        let day_index: DayIndex = Arc::new(std::sync::Mutex::new(build_day_index(&db)?));
        let mail_index: outbox::MailIndex =
            Arc::new(std::sync::Mutex::new(outbox::build_index(&db)?));
        let db = Arc::new(db);
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let writer_db = Arc::clone(&db);
        let writer_index = Arc::clone(&day_index);
        let writer_mail_index = Arc::clone(&mail_index);
        std::thread::Builder::new()
            .name("vaxslot-store-writer".into())
            .spawn(move || run_writer(&writer_db, &writer_index, &writer_mail_index, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            db,
            writer,
            day_index,
            mail_claims: Arc::default(),
            mail_index,
        })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    async fn write_plain(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        match self.write(op).await {
            Ok(outcome) => Ok(outcome),
            Err(CommitError::Store(e)) => Err(e),
            Err(
                CommitError::KillSwitchEngaged
                | CommitError::Fenced
                | CommitError::PastDeadline
                | CommitError::Uncertain(_),
            ) => {
                unreachable!("only reservation batches are refused, and never uncertainly")
            }
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

impl EmbeddedStore {
    /// Every record of a table whose values are JSON, in key order.
    async fn read_all<K, T>(
        &self,
        definition: TableDefinition<'static, K, &'static [u8]>,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError>
    where
        K: redb::Key + Send + 'static,
        T: Stored + Send + 'static,
    {
        self.read(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(definition).map_err(unavailable)?;
            let mut records = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (_, value) = row.map_err(unavailable)?;
                // Keyed by ticket number, id or hash: not logged.
                records.extend(decode_or_skip(value.value(), what, ""));
            }
            Ok(records)
        })
        .await
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

fn day_key(key: &VenueDayKey) -> String {
    format!("{}/{}", key.venue_id, key.date)
}

fn parse_day_key(text: &str) -> Result<VenueDayKey, StoreError> {
    let corrupt = || StoreError::Corrupt("venue-day key".into());
    let (venue, date) = text.split_once('/').ok_or_else(corrupt)?;
    Ok(VenueDayKey {
        venue_id: VenueId::parse(venue).map_err(|_| corrupt())?,
        date: parse_date(date).map_err(|_| corrupt())?,
    })
}

/// Folds log records, fed in commit order, into the latest version of each
/// reservation.
#[derive(Default)]
struct Replay(HashMap<crate::domain::ReservationId, Reservation>);

impl Replay {
    fn add(&mut self, records: impl IntoIterator<Item = Reservation>) {
        for record in records {
            self.0.insert(record.id, record);
        }
    }

    fn into_reservations(self) -> Vec<Reservation> {
        self.0.into_values().collect()
    }
}

fn audit_key(entry: &AuditEntry) -> (i64, u64) {
    let cursor = entry.cursor();
    (cursor.at_micros, cursor.id)
}

/// Reads the whole log once, noting which entries hold which days. Only each
/// record's venue and date are decoded (borrowed, no allocation per record):
/// start-up decodes the full records once, in `load_reservations`.
fn build_day_index(db: &Database) -> Result<HashMap<String, Vec<u64>>, StoreError> {
    #[derive(serde::Deserialize)]
    struct RecordDay<'a> {
        #[serde(borrow)]
        venue_id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        date: std::borrow::Cow<'a, str>,
    }
    let txn = db.begin_read().map_err(unavailable)?;
    let log = txn.open_table(RESERVATION_LOG).map_err(unavailable)?;
    let mut index: HashMap<String, Vec<u64>> = HashMap::new();
    let mut key = String::new();
    for entry in log.iter().map_err(unavailable)? {
        let (sequence, records) = entry.map_err(unavailable)?;
        let sequence = sequence.value();
        let records = records.value();
        let days: Vec<RecordDay<'_>> = serde_json::from_slice(records)
            .map_err(|e| StoreError::Corrupt(format!("reservation log entry: {e}")))?;
        for day in days {
            key.clear();
            key.push_str(&day.venue_id);
            key.push('/');
            key.push_str(&day.date);
            note_day(&mut index, &key, sequence);
        }
    }
    Ok(index)
}

/// Notes that log entry `sequence` holds a record of the day `key`
/// (`venue_id/date`, as `day_key` writes it).
fn note_day(index: &mut HashMap<String, Vec<u64>>, key: &str, sequence: u64) {
    match index.get_mut(key) {
        Some(entries) => {
            if entries.last() != Some(&sequence) {
                entries.push(sequence);
            }
        }
        None => {
            index.insert(key.to_owned(), vec![sequence]);
        }
    }
}

fn note_days(index: &mut HashMap<String, Vec<u64>>, sequence: u64, records: &[Reservation]) {
    for record in records {
        note_day(index, &day_key(&record.venue_day()), sequence);
    }
}

fn run_writer(
    db: &Database,
    day_index: &DayIndex,
    mail_index: &outbox::MailIndex,
    mut queue: mpsc::Receiver<WriteJob>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < JOBS_PER_TRANSACTION_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let ops: Vec<&WriteOp> = jobs.iter().map(|j| &j.op).collect();
        let started = std::time::Instant::now();
        let applied = apply_in_one_transaction(db, &ops, mail_index);
        metrics::histogram!(crate::telemetry::STORE_TRANSACTION_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::telemetry::STORE_TRANSACTION_JOBS).record(ops.len() as f64);
        match applied {
            Ok((outcomes, logged, mail_changes)) => {
                if let Some((sequence, records)) = logged {
                    let mut index = day_index.lock().expect("day index lock poisoned");
                    note_days(&mut index, sequence, &records);
                }
                outbox::apply_changes(mail_index, mail_changes);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    // A caller that gave up waiting is not an error here.
                    let _ = job.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(error = %error, jobs = ops.len(), "store transaction failed; nothing written");
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(CommitError::Store(StoreError::Unavailable(
                            error.to_string(),
                        ))));
                }
            }
        }
    }
}

/// What one transaction appended to the reservation log: its sequence and records.
type Logged = Option<(u64, Vec<Reservation>)>;

/// Applies the jobs in order in one transaction. `Err` means nothing at all was
/// written; per-job refusals (kill switch) are in the returned outcomes.
#[allow(clippy::type_complexity)]
fn apply_in_one_transaction(
    db: &Database,
    ops: &[&WriteOp],
    mail_index: &outbox::MailIndex,
) -> Result<
    (
        Vec<Result<WriteOutcome, CommitError>>,
        Logged,
        outbox::IndexChanges,
    ),
    redb::Error,
> {
    let txn = db.begin_write()?;
    let (outcomes, logged, mail_changes) = {
        let mut tables = Tables::open(&txn, mail_index)?;
        let outcomes = ops
            .iter()
            .map(|op| tables.apply(op))
            .collect::<Result<Vec<_>, _>>()?;
        let (logged, mail_changes) = tables.finish()?;
        (outcomes, logged, mail_changes)
    };
    assert_eq!(outcomes.len(), ops.len(), "one outcome per job");
    txn.commit()?;
    Ok((outcomes, logged, mail_changes))
}

/// The tables one write transaction changes, and what it decided so far.
struct Tables<'t> {
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    venues: redb::Table<'t, &'static str, &'static [u8]>,
    days: redb::Table<'t, &'static str, &'static [u8]>,
    residents: redb::Table<'t, &'static str, &'static [u8]>,
    log: redb::Table<'t, u64, &'static [u8]>,
    audit: redb::Table<'t, (i64, u64), &'static [u8]>,
    accounts: redb::Table<'t, &'static str, &'static [u8]>,
    reminded_days: redb::Table<'t, &'static str, i64>,
    outbox: outbox::Outbox<'t>,
    /// As of the job being applied (a kill-switch job changes it for the next).
    kill_switch_engaged: bool,
    /// The reservations the transaction's batches hold, appended as one log entry.
    logged_records: Vec<Reservation>,
}

impl<'t> Tables<'t> {
    fn open(
        txn: &'t redb::WriteTransaction,
        mail_index: &'t outbox::MailIndex,
    ) -> Result<Self, redb::Error> {
        let meta = txn.open_table(META)?;
        let kill_switch_engaged = match meta.get(KILL_SWITCH_KEY)? {
            Some(bytes) => decode::<KillSwitchState>(bytes.value(), "kill switch")
                .map(|s| s.engaged)
                // An unreadable switch is treated as engaged: refusing is safe.
                .unwrap_or(true),
            None => false,
        };
        Ok(Self {
            meta,
            venues: txn.open_table(VENUES)?,
            days: txn.open_table(DAYS)?,
            residents: txn.open_table(RESIDENTS)?,
            log: txn.open_table(RESERVATION_LOG)?,
            audit: txn.open_table(AUDIT)?,
            accounts: txn.open_table(ACCOUNTS)?,
            reminded_days: txn.open_table(REMINDED_DAYS)?,
            outbox: outbox::Outbox::open(txn, mail_index)?,
            kill_switch_engaged,
            logged_records: Vec::new(),
        })
    }

    /// One job: `Err` fails the whole transaction, `Ok(Err)` refuses this
    /// job alone.
    fn apply(&mut self, op: &WriteOp) -> Result<Result<WriteOutcome, CommitError>, redb::Error> {
        Ok(match op {
            WriteOp::Venue(venue) => {
                let previous = self
                    .venues
                    .insert(venue.id.as_str(), encode(venue).as_slice())?;
                Ok(WriteOutcome::Created(previous.is_none()))
            }
            WriteOp::DayPlan(key, plan) => {
                self.days
                    .insert(day_key(key).as_str(), encode(plan).as_slice())?;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Reservations(batch) => self.apply_batch(batch)?,
            WriteOp::Residents(list) => {
                for resident in list {
                    self.residents
                        .insert(resident.ticket_number.expose(), encode(resident).as_slice())?;
                }
                Ok(WriteOutcome::Done)
            }
            WriteOp::KillSwitch(state, entry) => {
                self.meta
                    .insert(KILL_SWITCH_KEY, encode(state).as_slice())?;
                self.audit(entry)?;
                self.kill_switch_engaged = state.engaged;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Audit(entry) => {
                self.audit(entry)?;
                Ok(WriteOutcome::Done)
            }
            WriteOp::PutAccount(account, entry) => {
                let created = self
                    .accounts
                    .insert(account.id.as_str(), encode(account).as_slice())?
                    .is_none();
                self.audit(entry)?;
                Ok(WriteOutcome::Created(created))
            }
            WriteOp::DeleteAccount(id, entry) => {
                let removed = self.accounts.remove(id.as_str())?.is_some();
                self.audit(entry)?;
                Ok(WriteOutcome::Created(removed))
            }
            WriteOp::SettleMail(settled) => {
                self.outbox.settle(settled)?;
                Ok(WriteOutcome::Done)
            }
        })
    }

    /// A venue-day's batch with its audit, mail and reminders; refused while
    /// the kill switch is engaged (bookings) or past its deadline.
    fn apply_batch(
        &mut self,
        batch: &ReservationBatch,
    ) -> Result<Result<WriteOutcome, CommitError>, redb::Error> {
        if self.kill_switch_engaged && batch.kind == BatchKind::Reservations {
            return Ok(Err(CommitError::KillSwitchEngaged));
        }
        if batch
            .commit_by
            .is_some_and(|by| crate::clock::real_now_utc() > by)
        {
            return Ok(Err(CommitError::PastDeadline));
        }
        self.logged_records
            .extend(batch.decisions.iter().map(|d| d.reservation().clone()));
        for entry in &batch.audit {
            self.audit(entry)?;
        }
        for queued in &batch.mail {
            self.outbox.queue(queued)?;
        }
        for id in &batch.withdraw {
            self.outbox.withdraw(id)?;
        }
        if batch.reminded {
            self.reminded_days.insert(
                day_key(&batch.venue_day).as_str(),
                crate::clock::now_utc().timestamp(),
            )?;
        }
        Ok(Ok(WriteOutcome::Done))
    }

    fn audit(&mut self, entry: &AuditEntry) -> Result<(), redb::Error> {
        self.audit
            .insert(audit_key(entry), encode(entry).as_slice())?;
        Ok(())
    }

    /// The batches' reservations as one new log entry, and the mail index's
    /// changes (applied once the transaction commits).
    fn finish(mut self) -> Result<(Logged, outbox::IndexChanges), redb::Error> {
        let mut logged = None;
        if !self.logged_records.is_empty() {
            let sequence = match self.log.last()? {
                Some((last, _)) => last.value() + 1,
                None => 1,
            };
            self.log
                .insert(sequence, encode_all(&self.logged_records).as_slice())?;
            logged = Some((sequence, std::mem::take(&mut self.logged_records)));
        }
        Ok((logged, self.outbox.finish()?))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn label(&self) -> &'static str {
        "embedded"
    }

    /// In this process: a call never waits for a store to come back.
    fn call_time_max(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Unavailable("writer thread stopped".into()));
        }
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(META).map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
