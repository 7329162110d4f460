//! The Redis store, for real launches: AOF with `appendfsync always` makes a
//! script's writes durable before Redis replies.
//!
//! One connection (`redis/connection.rs`: a single server's multiplexed,
//! reconnecting manager, or a Redis Cluster's) is built at start and cloned
//! per call; every call has a time limit, so an unreachable Redis is a fast
//! `503`, never a hang.
//!
//! Key layout (see ARCHITECTURE.md): a venue-day's keys and its partition's
//! kill-switch flag share one hash tag `{vx<N>}`, so its batch is one Lua call
//! on one Redis Cluster shard. Every call names the keys of one slot only: an
//! account change and its audit entry, or the kill switch's record and its
//! audit entry, share a slot through a tag that is the record's own key name;
//! the switch's 64 partition flags are written one by one, each to its shard,
//! before the `PUT` returns.

use std::time::Duration;

use ::redis::{AsyncCommands, RedisError, Script, Value};
use async_trait::async_trait;

use crate::store::{
    AccountStore, AuditLog, CatalogStore, DayLog, KillSwitchStore, MailOutbox, ResidentStore,
};

use super::records::{self, Stored, decode_or_skip};
use super::{
    AUDIT_PAGE_MAX, AbandonError, AbandonedBatch, AuditEntry, AuditPage, AuditQuery, BatchKind,
    CommitError, Decision, KillSwitchState, MAIL_LEASE, MailClaimToken, OutboxFigures,
    ReservationBatch, Store, StoreError, StoredVenueDay, page_of,
};
mod changes;
mod connection;
mod coordination;
mod scripts;

use scripts::*;

use connection::Connection;
pub use connection::RedisTarget;

use crate::domain::{
    Account, AccountId, DayPlan, Delivery, OutboxMail, Reservation, ReservationId, Resident, Venue,
    VenueDayKey, VenueId, parse_date,
};

/// Venue-days are spread over this many hash tags, each with its own copy of
/// the kill-switch flag that its commit script checks.
pub const KILL_SWITCH_PARTITIONS: u32 = 64;
/// Longest wait for one Redis call before it counts as failed.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait to (re)connect.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const _: () = assert!(
    REDIS_CONNECT_TIMEOUT.as_millis() < REDIS_CALL_TIMEOUT.as_millis(),
    "a reconnect fits inside the call that needed it"
);
/// Connections a process opens for writes that wait for replicas. A `WAIT`
/// holds its connection on the server until the replicas answer, and every
/// command behind it on that connection waits too: with one connection, all
/// venue-days of a shard would commit one batch per replication round trip
/// (3,100 bookings/s on the loopback cluster, against 10,400/s without the
/// wait). Partition N's writes use connection N mod this, so a venue-day's
/// batches stay in order on one of them.
pub const WAITING_CONNECTIONS: usize = 16;
/// Residents' shared dose records are spread over this many hash tags.
pub const RESIDENT_PARTITIONS: u32 = 1024;
/// How long a shared dose claim holds while its booking is decided and
/// committed: longer than a forwarded booking may take (`FORWARD_TIMEOUT`).
pub const SHARED_CLAIM_LEASE: Duration = Duration::from_secs(10);
/// Fields fetched per `HSCAN` page when loading at start.
pub const REDIS_SCAN_PAGE: usize = 5_000;

const VENUES: &str = "vaxslot:venues";
const DAYS: &str = "vaxslot:days";
const RESIDENTS: &str = "vaxslot:residents";
const KILL_SWITCH: &str = "vaxslot:kill_switch";
/// The kill switch's audit entries. The hash tag is the record's own key name,
/// so both are in one slot and one `MULTI` writes them on a cluster too.
const KILL_SWITCH_AUDIT: &str = "vaxslot:{vaxslot:kill_switch}:audit";
/// The audit log of everything but bookings and cancellations (which go to
/// their partition's `vaxslot:{vxN}:audit`, in the commit's script call),
/// account changes and the kill switch (in their records' slots).
const AUDIT: &str = "vaxslot:audit";
const ACCOUNTS: &str = "vaxslot:accounts";
/// The live processes and their leases (`heartbeat.lua`).
const MEMBERS: &str = "vaxslot:members";
/// Account changes' audit entries, in the slot of `ACCOUNTS` (as above).
const ACCOUNTS_AUDIT: &str = "vaxslot:{vaxslot:accounts}:audit";
/// Every audit log but the partitions' own.
const AUDIT_LOGS: [&str; 3] = [AUDIT, KILL_SWITCH_AUDIT, ACCOUNTS_AUDIT];
/// Audit entries fetched per `ZRANGE` page while reading the log.
pub const AUDIT_SCAN_PAGE: usize = 1_000;

pub struct RedisStore {
    connection: Connection,
    /// The connections durable writes go out on, by partition (see
    /// `WAITING_CONNECTIONS`); only `connection` when no replica is waited for.
    waiting: Vec<Connection>,
    /// Where the change streams are read (`redis/changes.rs`).
    following: Connection,
    /// Replicas that must hold a batch before its commit counts (`WAIT`).
    durability: ReplicaWait,
    commit: CommitScript,
    take_ownership: TakeOwnershipScript,
    abandon: AbandonScript,
    claim_mail: ClaimMailScript,
    hold_mail: HoldMailScript,
    settle_mail: SettleMailScript,
    heartbeat: HeartbeatScript,
    claim_dose: ClaimDoseScript,
    end_dose_claim: EndDoseClaimScript,
    remember_refusal: RememberRefusalScript,
    login_attempt: LoginAttemptScript,
    start_cascade: StartCascadeScript,
    put_residents: PutResidentsScript,
    /// How long the change streams keep an entry (`--change-streams-keep-s`).
    changes_kept: Duration,
}

/// The keys of one venue-day, all under its partition's hash tag.
struct VenueDayKeys {
    partition: u32,
    kill_switch: String,
    owner: String,
    applied: String,
    reservations: String,
    /// The partition's audit log (booking and cancel entries of its days).
    audit: String,
    mail: MailKeys,
    /// Set when the day's reminders were queued.
    reminded: String,
    /// The partition's change stream (written by its commits).
    changes: String,
}

/// One partition's mail outbox, under its hash tag (written by its commits).
struct MailKeys {
    /// Mail id → JSON `OutboxMailV1`.
    outbox: String,
    /// Pending mail by next try (unix ms): what workers claim from.
    due: String,
    /// Pending mail by first due time (unix ms): what the figures count.
    waiting: String,
    /// Withdrawn reminders → `"<next ms> <due ms>"`, to put back if the
    /// cancelling batch is abandoned.
    withdrawn: String,
    /// Claimed mail → the token of the claim that holds it.
    claims: String,
    partition: u32,
}

impl MailKeys {
    fn of_partition(partition: u32) -> Self {
        let prefix = format!("vaxslot:{{vx{partition}}}:mail");
        Self {
            outbox: prefix.clone(),
            due: format!("{prefix}_due"),
            waiting: format!("{prefix}_waiting"),
            withdrawn: format!("{prefix}_withdrawn"),
            claims: format!("{prefix}_claims"),
            partition,
        }
    }

    /// The partition of the venue-day whose commit queued `mail`: the one of
    /// the reservation it is named by.
    fn of(mail: &OutboxMail) -> Self {
        let named = mail
            .reservations
            .iter()
            .find(|r| r.id == mail.id.reservation_id)
            .or(mail.reservations.first());
        let partition = named.map_or(0, |r| partition_of(&day_field(&r.venue_day())));
        Self::of_partition(partition)
    }
}

fn partition_of(day: &str) -> u32 {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in day.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % KILL_SWITCH_PARTITIONS
}

/// The key of a resident's shared dose record: named by a hash of the ticket
/// number (never the number itself), on one of `RESIDENT_PARTITIONS` tags.
fn resident_doses(ticket: &crate::domain::TicketNumber) -> String {
    resident_key(ticket, "doses")
}

/// A dose of a resident's shared dose record (`dose`, its number) and the
/// venue-day its `record` names: the last word of "booked <id> <day>" and
/// of "pending <claim> <until ms> <day>".
fn dose_on_day(dose: &str, record: &str) -> Result<(crate::domain::Dose, VenueDayKey), StoreError> {
    let corrupt = || StoreError::Corrupt("shared dose record".into());
    let dose = dose
        .parse::<u8>()
        .ok()
        .and_then(|n| crate::domain::Dose::new(n).ok())
        .ok_or_else(corrupt)?;
    let day = record.rsplit(' ').next().ok_or_else(corrupt)?;
    Ok((dose, parse_day_field(day)?))
}

/// Where a keyed booking's first refusal is kept: named by a hash of the
/// `Idempotency-Key` (any visible ASCII) on the resident's slot.
fn refusal_key(ticket: &crate::domain::TicketNumber, idempotency_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    resident_key(ticket, &format!("refused:{name}"))
}

/// One of a resident's shared keys (`what`: `doses`, `login_failures`,
/// `login_lock`), all in one slot.
fn resident_key(ticket: &crate::domain::TicketNumber, what: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(ticket.expose().as_bytes());
    let partition = u32::from(u16::from_be_bytes([digest[0], digest[1]])) % RESIDENT_PARTITIONS;
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("vaxslot:{{rs{partition}}}:resident:{name}:{what}")
}

fn partition_flag(partition: u32) -> String {
    format!("vaxslot:{{vx{partition}}}:kill_switch")
}

fn partition_audit(partition: u32) -> String {
    format!("vaxslot:{{vx{partition}}}:audit")
}

fn day_field(key: &VenueDayKey) -> String {
    format!("{}/{}", key.venue_id, key.date)
}

impl VenueDayKeys {
    fn of(key: &VenueDayKey) -> Self {
        let day = day_field(key);
        let partition = partition_of(&day);
        let prefix = format!("vaxslot:{{vx{partition}}}:day:{day}");
        Self {
            partition,
            kill_switch: partition_flag(partition),
            owner: format!("{prefix}:owner"),
            applied: format!("{prefix}:applied"),
            reservations: format!("{prefix}:reservations"),
            audit: partition_audit(partition),
            mail: MailKeys::of_partition(partition),
            reminded: format!("{prefix}:reminded"),
            changes: changes::of_partition(partition),
        }
    }
}

/// A commit call that failed: always uncertain. Even "connection refused"
/// may come after the call was sent and applied, because the client
/// retries by itself (a cluster's `.retries(3)`, a single server's
/// reconnect) and answers the last try's error; and the batch's
/// abandonment is idempotent, so taking a certain failure for an uncertain
/// one costs one script call, while the reverse undoes in memory what the
/// store holds.
fn commit_failure(error: RedisError) -> CommitError {
    CommitError::Uncertain(unavailable(error))
}

/// A write the master applied but its replicas did not acknowledge in time.
fn not_replicated() -> StoreError {
    StoreError::Unavailable("redis: the replicas did not acknowledge the write in time".into())
}

/// A script's one-word answer, the first reply of its pipeline.
fn script_answer(replies: Vec<Value>) -> Option<String> {
    replies
        .into_iter()
        .next()
        .and_then(|reply| ::redis::from_redis_value(reply).ok())
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

fn encode<T: Stored>(value: &T) -> String {
    String::from_utf8(records::encode(value)).expect("JSON is UTF-8")
}

fn decode<T: Stored>(text: &str, what: &str) -> Result<T, StoreError> {
    records::decode(text.as_bytes(), what)
}

fn parse_day_field(text: &str) -> Result<VenueDayKey, StoreError> {
    let corrupt = || StoreError::Corrupt("venue-day field".into());
    let (venue, date) = text.split_once('/').ok_or_else(corrupt)?;
    Ok(VenueDayKey {
        venue_id: VenueId::parse(venue).map_err(|_| corrupt())?,
        date: parse_date(date).map_err(|_| corrupt())?,
    })
}

/// A duration as the milliseconds a script or command takes.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one Redis call under `REDIS_CALL_TIMEOUT`.
async fn limited<T>(
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    limited_to(REDIS_CALL_TIMEOUT, call).await
}

/// Runs one Redis call under `limit`.
async fn limited_to<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis call timed out",
        ))),
    }
}

/// How many replicas must acknowledge a batch before its commit counts, and
/// how long to wait for them (`--redis-wait-replicas`, `--redis-wait-timeout-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

impl ReplicaWait {
    /// A commit counts once its master answered (a single server with AOF).
    pub const NONE: ReplicaWait = ReplicaWait {
        replicas: 0,
        timeout: Duration::ZERO,
    };
}

impl RedisStore {
    /// The change streams keep their entries for `kept` instead of
    /// `CHANGES_KEPT_FOR` (every process on one store should agree).
    pub fn with_changes_kept(mut self, kept: Duration) -> Self {
        self.changes_kept = kept;
        self
    }

    /// Connects once to a single server; the connection then reconnects by
    /// itself.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(&RedisTarget::Single(url.to_owned()), ReplicaWait::NONE).await
    }

    /// Connects once to a single server or a cluster.
    pub async fn open(target: &RedisTarget, durability: ReplicaWait) -> Result<Self, StoreError> {
        let connection = limited(Connection::open(
            target,
            REDIS_CONNECT_TIMEOUT,
            // A batch's call includes its wait for the replicas.
            REDIS_CALL_TIMEOUT + durability.timeout,
        ))
        .await
        .map_err(unavailable)?;
        let mut waiting = vec![connection.clone()];
        if durability.replicas > 0 {
            for _ in 1..WAITING_CONNECTIONS {
                waiting.push(
                    limited(Connection::open(
                        target,
                        REDIS_CONNECT_TIMEOUT,
                        REDIS_CALL_TIMEOUT + durability.timeout,
                    ))
                    .await
                    .map_err(unavailable)?,
                );
            }
        }
        // The change streams are read on a connection of their own: a read
        // returns up to thousands of reservations, and on the shared
        // connection the commits behind it would wait.
        let following = limited(Connection::open(
            target,
            REDIS_CONNECT_TIMEOUT,
            REDIS_CALL_TIMEOUT,
        ))
        .await
        .map_err(unavailable)?;
        Ok(Self {
            connection,
            waiting,
            following,
            durability,
            commit: CommitScript::new(),
            take_ownership: TakeOwnershipScript::new(),
            abandon: AbandonScript::new(),
            claim_mail: ClaimMailScript::new(),
            hold_mail: HoldMailScript::new(),
            settle_mail: SettleMailScript::new(),
            heartbeat: HeartbeatScript::new(),
            claim_dose: ClaimDoseScript::new(),
            end_dose_claim: EndDoseClaimScript::new(),
            remember_refusal: RememberRefusalScript::new(),
            login_attempt: LoginAttemptScript::new(),
            start_cascade: StartCascadeScript::new(),
            put_residents: PutResidentsScript::new(),
            changes_kept: super::CHANGES_KEPT_FOR,
        })
    }

    fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// The connection a resident's shared dose record (at `key`) is written
    /// on: one of the busy `waiting` ones, by the key, so that the booking
    /// path keeps to connections in constant use.
    fn resident_connection(&self, key: &str) -> Connection {
        let index = key.bytes().fold(0usize, |n, b| {
            n.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        self.waiting[index % self.waiting.len()].clone()
    }

    /// Sends `writes` (commands on one slot) with, when replicas are asked
    /// for, a `WAIT` for them right behind, in one pipeline; answers the
    /// writes' replies and whether the replicas acknowledged them in time.
    ///
    /// One pipeline, because the cluster client sends a pipeline to one node
    /// on one connection, so the `WAIT` is answered by the node that ran the
    /// writes. A `WAIT` sent on its own names no key, and while a slot's
    /// master is unreachable redis-rs sends such a command to any connected
    /// node, whose answer says nothing about these writes (seen in the
    /// failover test: a `201` lost). When a node does not know a script in
    /// `writes`, `scripts` are loaded and the pipeline is sent once more.
    async fn durably(
        &self,
        partition: u32,
        writes: &::redis::Pipeline,
        scripts: &[&Script],
    ) -> Result<(Vec<Value>, bool), RedisError> {
        let ReplicaWait { replicas, timeout } = self.durability;
        let mut pipeline = writes.clone();
        if replicas > 0 {
            pipeline.cmd("WAIT").arg(replicas).arg(millis(timeout));
        }
        let mut connection = self.waiting[partition as usize % self.waiting.len()].clone();
        let limit = REDIS_CALL_TIMEOUT + timeout;
        let mut answer =
            limited_to(limit, pipeline.query_async::<Vec<Value>>(&mut connection)).await;
        if matches!(&answer, Err(error) if error.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript))
        {
            for script in scripts {
                limited(script.load_async(&mut connection)).await?;
            }
            answer = limited_to(limit, pipeline.query_async(&mut connection)).await;
        }
        let mut replies = answer?;
        let replicated = if replicas > 0 {
            let acknowledged: u32 = ::redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))
                .map_err(RedisError::from)?;
            acknowledged >= replicas
        } else {
            true
        };
        Ok((replies, replicated))
    }

    /// One script call (keys of one slot), counted once the replicas hold it
    /// (`durably`): its reply, and whether they do.
    async fn durable_call<T: ::redis::FromRedisValue>(
        &self,
        partition: u32,
        invocation: &::redis::ScriptInvocation<'_>,
        script: &Script,
    ) -> Result<(T, bool), StoreError> {
        let mut write = ::redis::pipe();
        write.invoke_script(invocation);
        let (mut replies, replicated) = self
            .durably(partition, &write, &[script])
            .await
            .map_err(unavailable)?;
        let reply = ::redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))
            .map_err(|e| StoreError::Corrupt(format!("script reply: {e}")))?;
        Ok((reply, replicated))
    }

    /// `call` once for every partition, all sent at once (each goes to its
    /// own shard), answers in partition order.
    async fn per_partition<T, F, Fut>(&self, call: F) -> Result<Vec<T>, StoreError>
    where
        F: Fn(u32, Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let calls = (0..KILL_SWITCH_PARTITIONS).map(|partition| call(partition, self.connection()));
        limited(futures::future::try_join_all(calls))
            .await
            .map_err(unavailable)
    }

    /// Every partition's copy of the kill switch, as its commits see it;
    /// `Ok` once each is written (with replicas asked for, once they hold
    /// it: else a failover could bring a shard back without the stop).
    /// A repair (`durable` false) does not wait for replicas, so that a
    /// process can start while a shard has none.
    async fn write_partition_flags(
        &self,
        flag: &'static str,
        durable: bool,
    ) -> Result<(), StoreError> {
        let replicated = self
            .per_partition(|partition, mut connection| async move {
                let mut write = ::redis::pipe();
                write.set(partition_flag(partition), flag);
                if durable {
                    let (_, replicated) = self.durably(partition, &write, &[]).await?;
                    Ok(replicated)
                } else {
                    write.query_async::<()>(&mut connection).await?;
                    Ok(true)
                }
            })
            .await?;
        if replicated.iter().all(|done| *done) {
            Ok(())
        } else {
            Err(not_replicated())
        }
    }

    /// Every field of a hash, page by page.
    async fn scan_hash(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut connection = self.connection();
        let mut cursor: u64 = 0;
        let mut all = Vec::new();
        loop {
            let (next, page): (u64, Vec<(String, String)>) = limited(
                ::redis::cmd("HSCAN")
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(REDIS_SCAN_PAGE)
                    .query_async(&mut connection),
            )
            .await
            .map_err(unavailable)?;
            all.extend(page);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    async fn reservations_of_day(&self, key: &VenueDayKey) -> Result<Vec<Reservation>, StoreError> {
        let pairs = self.scan_hash(&VenueDayKeys::of(key).reservations).await?;
        pairs
            .iter()
            .map(|(_, json)| decode(json, "reservation"))
            .collect()
    }
}

#[async_trait]
impl Store for RedisStore {
    fn label(&self) -> &'static str {
        "redis"
    }

    fn call_time_max(&self) -> Duration {
        REDIS_CONNECT_TIMEOUT + REDIS_CALL_TIMEOUT + self.durability.timeout
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: String = limited(::redis::cmd("PING").query_async(&mut connection))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl CatalogStore for RedisStore {
    async fn load_venues(&self) -> Result<Vec<Venue>, StoreError> {
        let pairs = self.scan_hash(VENUES).await?;
        Ok(pairs
            .iter()
            .filter_map(|(id, json)| decode_or_skip(json.as_bytes(), "venue", id))
            .collect())
    }

    async fn put_venue(&self, venue: Venue) -> Result<bool, StoreError> {
        let json = encode(&venue);
        let mut write = ::redis::pipe();
        write
            .atomic()
            .hset(VENUES, venue.id.as_str(), &json)
            .add_command(changes::venue_change(&json))
            .ignore();
        let (added,): (i64,) = limited(write.query_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn load_day_plans(&self) -> Result<Vec<(VenueDayKey, DayPlan)>, StoreError> {
        let pairs = self.scan_hash(DAYS).await?;
        pairs
            .iter()
            .map(|(field, json)| Ok((parse_day_field(field)?, decode(json, "day plan")?)))
            .collect()
    }

    async fn put_day_plan(&self, key: VenueDayKey, plan: DayPlan) -> Result<(), StoreError> {
        let (day, json) = (day_field(&key), encode(&plan));
        let mut write = ::redis::pipe();
        write
            .atomic()
            .hset(DAYS, &day, &json)
            .ignore()
            .add_command(changes::day_change(&day, &json))
            .ignore();
        let () = limited(write.query_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl DayLog for RedisStore {
    async fn load_venue_day(&self, key: VenueDayKey) -> Result<StoredVenueDay, StoreError> {
        let keys = VenueDayKeys::of(&key);
        let mut connection = self.connection();
        let plan: Option<String> = limited(connection.hget(DAYS, day_field(&key)))
            .await
            .map_err(unavailable)?;
        // The new epoch counts only once the replicas hold it: a failover
        // that lost it would hand the next loader the same epoch as this
        // owner, and two owners with one epoch both commit.
        let invocation = self.take_ownership.invoke(
            &TakeOwnershipKeys {
                owner_epoch_key: &keys.owner,
                applied_key: &keys.applied,
                reservations: &keys.reservations,
            },
            &TakeOwnershipArgs {},
        );
        let (reply, replicated): (Vec<Value>, bool) = self
            .durable_call(keys.partition, &invocation, self.take_ownership.script())
            .await?;
        if !replicated {
            return Err(StoreError::Unavailable(
                "the venue-day's new owner epoch was not replicated in time".into(),
            ));
        }
        let mut values = reply.into_iter();
        let owner_epoch = match values.next() {
            Some(Value::Int(epoch)) => {
                u64::try_from(epoch).map_err(|_| StoreError::Corrupt("owner epoch".into()))?
            }
            _ => return Err(StoreError::Corrupt("owner epoch".into())),
        };
        let mut reservations = Vec::new();
        while let (Some(_id), Some(json)) = (values.next(), values.next()) {
            let json: String = ::redis::from_redis_value(json)
                .map_err(|e| StoreError::Corrupt(format!("reservation: {e}")))?;
            reservations.push(decode(&json, "reservation")?);
        }
        // Changed only by the day's owner, which is now this caller.
        let reminded: bool = limited(connection.exists(&keys.reminded))
            .await
            .map_err(unavailable)?;
        Ok(StoredVenueDay {
            plan: plan.map(|json| decode(&json, "day plan")).transpose()?,
            reservations,
            owner_epoch,
            reminded,
        })
    }

    async fn commit_reservations(&self, batch: ReservationBatch) -> Result<(), CommitError> {
        let keys = VenueDayKeys::of(&batch.venue_day);
        let mut invocation = self.commit.invoke(
            &CommitKeys {
                kill_switch_flag: &keys.kill_switch,
                owner_epoch_key: &keys.owner,
                applied_key: &keys.applied,
                reservations: &keys.reservations,
                audit_log: &keys.audit,
                outbox: &keys.mail.outbox,
                pending_by_next_try: &keys.mail.due,
                pending_by_due: &keys.mail.waiting,
                withdrawn: &keys.mail.withdrawn,
                reminded_mark: &keys.reminded,
                changes: &keys.changes,
            },
            &CommitArgs {
                epoch: batch.owner_epoch.to_string(),
                sequence: batch.sequence.to_string(),
                stops_with_kill_switch: flag(batch.kind == BatchKind::Reservations),
                reservation_count: batch.decisions.len().to_string(),
                audit_count: batch.audit.len().to_string(),
                mail_count: batch.mail.len().to_string(),
                marks_reminded: flag(batch.reminded),
                day: day_field(&batch.venue_day),
                changes_kept_ms: self.changes_kept_ms().to_string(),
                commit_by_ms: batch
                    .commit_by
                    .map_or_else(String::new, |by| by.timestamp_millis().to_string()),
            },
        );
        for reservation in batch.decisions.iter().map(Decision::reservation) {
            invocation
                .arg(reservation.id.to_string())
                .arg(encode(reservation));
        }
        for entry in &batch.audit {
            invocation
                .arg(entry.at.timestamp_micros())
                .arg(audit_member(entry));
        }
        for queued in &batch.mail {
            invocation
                .arg(queued.id.to_string())
                .arg(encode(queued))
                .arg(next_try_ms(queued).unwrap_or_else(|| queued.due_at.timestamp_millis()))
                .arg(queued.due_at.timestamp_millis());
        }
        for id in &batch.withdraw {
            invocation.arg(id.to_string());
        }
        let mut write = ::redis::pipe();
        write.invoke_script(&invocation);
        match self
            .durably(keys.partition, &write, &[self.commit.script()])
            .await
        {
            Ok((replies, replicated)) => match script_answer(replies).as_deref() {
                // Applied on the master; with replicas asked for, it counts
                // only once they hold it too (else a failover could lose it).
                Some("OK") if replicated => Ok(()),
                Some("OK") => Err(CommitError::Uncertain(not_replicated())),
                Some("KILL_SWITCH") => Err(CommitError::KillSwitchEngaged),
                Some("FENCED") => Err(CommitError::Fenced),
                Some("PAST_DEADLINE") => Err(CommitError::PastDeadline),
                other => Err(CommitError::Uncertain(StoreError::Corrupt(format!(
                    "unexpected commit answer {other:?}"
                )))),
            },
            Err(error) => Err(commit_failure(error)),
        }
    }

    async fn abandon_batch(&self, batch: AbandonedBatch) -> Result<(), AbandonError> {
        let keys = VenueDayKeys::of(&batch.venue_day);
        let mut invocation = self.abandon.invoke(
            &AbandonKeys {
                owner_epoch_key: &keys.owner,
                applied_key: &keys.applied,
                reservations: &keys.reservations,
                audit_log: &keys.audit,
                outbox: &keys.mail.outbox,
                pending_by_next_try: &keys.mail.due,
                pending_by_due: &keys.mail.waiting,
                withdrawn: &keys.mail.withdrawn,
                reminded_mark: &keys.reminded,
                changes: &keys.changes,
            },
            &AbandonArgs {
                epoch: batch.owner_epoch.to_string(),
                sequence: batch.sequence.to_string(),
                created_count: batch.created.len().to_string(),
                previous_count: batch.previous.len().to_string(),
                audit_count: batch.audit.len().to_string(),
                mail_count: batch.mail.len().to_string(),
                marked_reminded: flag(batch.reminded),
                day: day_field(&batch.venue_day),
                changes_kept_ms: self.changes_kept_ms().to_string(),
            },
        );
        for id in &batch.created {
            invocation.arg(id.to_string());
        }
        for reservation in &batch.previous {
            invocation
                .arg(reservation.id.to_string())
                .arg(encode(reservation));
        }
        for entry in &batch.audit {
            invocation.arg(audit_member(entry));
        }
        for id in batch.mail.iter().chain(&batch.withdrawn) {
            invocation.arg(id.to_string());
        }
        let mut write = ::redis::pipe();
        write.invoke_script(&invocation);
        let (replies, replicated) = self
            .durably(keys.partition, &write, &[self.abandon.script()])
            .await
            .map_err(unavailable)?;
        match script_answer(replies).as_deref() {
            // Retried by the actor until the replicas hold it too.
            Some("OK") if replicated => Ok(()),
            Some("OK") => Err(AbandonError::Store(not_replicated())),
            Some("FENCED") => Err(AbandonError::Fenced),
            other => Err(AbandonError::Store(StoreError::Corrupt(format!(
                "unexpected abandon answer {other:?}"
            )))),
        }
    }

    async fn load_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        let mut all = Vec::new();
        for (key, _) in self.load_day_plans().await? {
            all.extend(self.reservations_of_day(&key).await?);
        }
        Ok(all)
    }

    async fn load_readable_days(&self) -> Result<super::ReadableDays, StoreError> {
        let mut readable = super::ReadableDays {
            plans: Vec::new(),
            reservations: Vec::new(),
        };
        for (key, plan) in self.load_day_plans().await? {
            match self.reservations_of_day(&key).await {
                Ok(reservations) => {
                    readable.reservations.extend(reservations);
                    readable.plans.push((key, plan));
                }
                // That day alone is left out (its actor cannot load it
                // either: 503 for its bookings); the start goes on.
                Err(StoreError::Corrupt(_)) => {
                    metrics::counter!(crate::telemetry::RECORDS_SKIPPED_TOTAL, "what" => "day reservations")
                        .increment(1);
                    tracing::error!(venue_day = %key, "a venue-day has a reservation record that cannot be read: the day is left out until it is repaired");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(readable)
    }
}

#[async_trait]
impl ResidentStore for RedisStore {
    async fn put_residents(&self, residents: Vec<Resident>) -> Result<(), StoreError> {
        if residents.is_empty() {
            return Ok(());
        }
        let fields: Vec<(String, String)> = residents
            .iter()
            .map(|r| (r.ticket_number.expose().to_owned(), encode(r)))
            .collect();
        // With its change entry, in one script call (the stream is trimmed
        // by time, as an import's entry holds a whole call's residents).
        let mut invocation = self.put_residents.invoke(
            &PutResidentsKeys {
                residents: RESIDENTS,
                changes: changes::RESIDENT_CHANGES,
            },
            &PutResidentsArgs {
                changes_kept_ms: self.changes_kept_ms().to_string(),
            },
        );
        for (ticket, json) in &fields {
            invocation.arg(ticket).arg(json);
        }
        let _: i64 = limited(invocation.invoke_async(&mut self.connection()))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn load_residents(&self) -> Result<Vec<Resident>, StoreError> {
        let pairs = self.scan_hash(RESIDENTS).await?;
        Ok(pairs
            .iter()
            .filter_map(|(_, json)| decode_or_skip(json.as_bytes(), "resident", ""))
            .collect())
    }
}

#[async_trait]
impl KillSwitchStore for RedisStore {
    async fn load_kill_switch(&self) -> Result<KillSwitchState, StoreError> {
        let mut connection = self.connection();
        let stored: Option<String> = limited(connection.get(KILL_SWITCH))
            .await
            .map_err(unavailable)?;
        stored
            .map(|json| decode(&json, "kill switch"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn set_kill_switch(
        &self,
        state: KillSwitchState,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        let flag = if state.engaged { "1" } else { "0" };
        // The record (what every process follows) with its audit entry
        // first, in one slot and one transaction; then each partition's
        // flag, on its own shard. The `PUT` returns after the last flag is
        // written. A process that dies between the two leaves the record
        // ahead of some flags, and every process writes the flags from the
        // record when it starts (`reconcile_kill_switch_flags`).
        let mut write = ::redis::pipe();
        write
            .cmd("MULTI")
            .set(KILL_SWITCH, encode(&state))
            .zadd(
                KILL_SWITCH_AUDIT,
                audit_member(&audit),
                audit.at.timestamp_micros(),
            )
            .cmd("EXEC");
        let (_, replicated) = self.durably(0, &write, &[]).await.map_err(unavailable)?;
        if !replicated {
            return Err(not_replicated());
        }
        self.write_partition_flags(flag, true).await
    }

    async fn reconcile_kill_switch_flags(&self) -> Result<(), StoreError> {
        let state = self.load_kill_switch().await?;
        self.write_partition_flags(if state.engaged { "1" } else { "0" }, false)
            .await
    }
}

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

#[async_trait]
impl MailOutbox for RedisStore {
    async fn claim_due_mail(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
        limit: usize,
        token: MailClaimToken,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let lease_ms = i64::try_from(MAIL_LEASE.as_millis()).expect("the lease is short");
        // Which partitions have due mail: one count per partition, all sent
        // at once (each to its shard), so an idle outbox costs one round
        // trip per look, not a script call per partition.
        let due = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zcount::<_, _, _, u64>(
                        MailKeys::of_partition(partition).due,
                        "-inf",
                        now.timestamp_millis(),
                    )
                    .await
            })
            .await?;
        let mut claimed = Vec::new();
        // One partition with due mail at a time, oldest first within each,
        // until `limit`.
        for (partition, _) in (0..KILL_SWITCH_PARTITIONS)
            .zip(due)
            .filter(|(_, count)| *count > 0)
        {
            if claimed.len() >= limit {
                break;
            }
            let keys = MailKeys::of_partition(partition);
            let invocation = self.claim_mail.invoke(
                &ClaimMailKeys {
                    pending_by_next_try: &keys.due,
                    outbox: &keys.outbox,
                    claims: &keys.claims,
                },
                &ClaimMailArgs {
                    now_ms: now.timestamp_millis().to_string(),
                    most: (limit - claimed.len()).to_string(),
                    lease_ms: lease_ms.to_string(),
                    token: token.0.to_string(),
                },
            );
            // A claim counts once a replica holds it: one lost in a failover
            // would let another worker claim, and send, the same mail.
            let (page, replicated): (Vec<String>, bool) = self
                .durable_call(partition, &invocation, self.claim_mail.script())
                .await?;
            if !replicated {
                tracing::warn!("a mail claim was not replicated in time; left to its lease");
                continue;
            }
            // One that cannot be read stays claimed until its lease ends
            // (and is skipped again then): the rest goes out.
            claimed.extend(
                page.iter()
                    .filter_map(|json| decode_or_skip(json.as_bytes(), "mail", "")),
            );
        }
        Ok(claimed)
    }

    async fn hold_mail(
        &self,
        mail: &OutboxMail,
        token: MailClaimToken,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<bool, StoreError> {
        let keys = MailKeys::of(mail);
        let until = now + chrono::Duration::from_std(MAIL_LEASE).expect("the lease is short");
        let invocation = self.hold_mail.invoke(
            &HoldMailKeys {
                pending_by_next_try: &keys.due,
                pending_by_due: &keys.waiting,
                claims: &keys.claims,
            },
            &HoldMailArgs {
                id: mail.id.to_string(),
                token: token.0.to_string(),
                lease_ends_ms: until.timestamp_millis().to_string(),
            },
        );
        // Renewed only once a replica holds it (see `claim_due_mail`).
        let (held, replicated): (i64, bool) = self
            .durable_call(keys.partition, &invocation, self.hold_mail.script())
            .await?;
        Ok(held == 1 && replicated)
    }

    async fn settle_mail(
        &self,
        mail: OutboxMail,
        token: MailClaimToken,
    ) -> Result<bool, StoreError> {
        let keys = MailKeys::of(&mail);
        let invocation = self.settle_mail.invoke(
            &SettleMailKeys {
                outbox: &keys.outbox,
                pending_by_next_try: &keys.due,
                pending_by_due: &keys.waiting,
                claims: &keys.claims,
            },
            &SettleMailArgs {
                id: mail.id.to_string(),
                json: encode(&mail),
                next_try_ms: next_try_ms(&mail)
                    .map(|ms| ms.to_string())
                    .unwrap_or_default(),
                token: token.0.to_string(),
                delivered: flag(matches!(mail.delivery, Delivery::Delivered { .. })),
            },
        );
        let (answer, replicated): (String, bool) = self
            .durable_call(keys.partition, &invocation, self.settle_mail.script())
            .await?;
        if !replicated {
            // Written on the master only: a failover before its replica
            // copies it would bring the claim back, and the mail would be
            // sent again after its lease (seen by the nemesis's review). The
            // worker tries again while the lease runs; that try finds it
            // written (`SETTLED`) and waits for the replica once more.
            return Err(not_replicated());
        }
        Ok(answer != "LOST")
    }

    async fn day_reminded(&self, key: VenueDayKey) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        limited(connection.exists(VenueDayKeys::of(&key).reminded))
            .await
            .map_err(unavailable)
    }

    async fn mail_outbox_figures(
        &self,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<OutboxFigures, StoreError> {
        let now_ms = now.timestamp_millis();
        let counts = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zcount::<_, _, _, u64>(
                        MailKeys::of_partition(partition).waiting,
                        "-inf",
                        now_ms,
                    )
                    .await
            })
            .await?;
        let firsts = self
            .per_partition(|partition, mut connection| async move {
                connection
                    .zrange_withscores::<_, Vec<(String, f64)>>(
                        MailKeys::of_partition(partition).waiting,
                        0,
                        0,
                    )
                    .await
            })
            .await?;
        let figures_pending: u64 = counts.iter().sum();
        #[allow(clippy::cast_possible_truncation)]
        let oldest_ms = firsts
            .iter()
            .filter_map(|first| first.first().map(|(_, score)| *score as i64))
            .filter(|ms| *ms <= now_ms)
            .min();
        let mut figures = OutboxFigures {
            pending: figures_pending,
            oldest_due: None,
        };
        figures.oldest_due = oldest_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|at| at.with_timezone(&crate::domain::municipality_offset()));
        Ok(figures)
    }
}

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

/// A unique sorted-set member: the entry's id, then its JSON. Members of one
/// microsecond sort by id, so the set's order is the log's order.
/// A pending mail's next try (unix ms); `None` once it is settled.
fn next_try_ms(mail: &OutboxMail) -> Option<i64> {
    match mail.delivery {
        Delivery::Pending { next_at, .. } => Some(next_at.timestamp_millis()),
        _ => None,
    }
}

fn audit_member(entry: &AuditEntry) -> String {
    format!("{:016x} {}", entry.id, encode(entry))
}

fn decode_audit_member(member: &str) -> Result<AuditEntry, StoreError> {
    let (_, json) = member
        .split_once(' ')
        .ok_or_else(|| StoreError::Corrupt("audit member".into()))?;
    decode(json, "audit entry")
}

/// A yes or no as the scripts read it.
fn flag(yes: bool) -> String {
    if yes { "1" } else { "0" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_after_the_clients_own_retries_is_an_uncertain_commit() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(refused.is_connection_refusal());
        assert!(matches!(commit_failure(refused), CommitError::Uncertain(_)));
    }

    #[test]
    fn a_venue_day_and_its_kill_switch_flag_share_one_hash_tag() {
        let key = VenueDayKey {
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: parse_date("2030-07-07").unwrap(),
        };
        let keys = VenueDayKeys::of(&key);
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&keys.kill_switch), tag(&keys.owner));
        assert_eq!(tag(&keys.owner), tag(&keys.reservations));
        assert_eq!(tag(&keys.applied), tag(&keys.reservations));
        assert!(partition_of("nakano-sunplaza/2030-07-07") < KILL_SWITCH_PARTITIONS);
        // Stable: the same venue-day always lands in the same partition.
        assert_eq!(partition_of("a/2030-01-01"), partition_of("a/2030-01-01"));
    }
}
