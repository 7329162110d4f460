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
mod accounts;
mod audit;
mod catalog;
mod changes;
mod connection;
mod coordination;
mod kill_switch;
mod log;
mod outbox;
mod residents;
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
    /// The keys `commit.lua` reads, by its names (`abandon.lua` reads the
    /// same but the kill-switch flag: `CommitKeys::for_abandon`).
    fn for_commit(&self) -> CommitKeys<'_> {
        CommitKeys {
            kill_switch_flag: &self.kill_switch,
            owner_epoch_key: &self.owner,
            applied_key: &self.applied,
            reservations: &self.reservations,
            audit_log: &self.audit,
            outbox: &self.mail.outbox,
            pending_by_next_try: &self.mail.due,
            pending_by_due: &self.mail.waiting,
            withdrawn: &self.mail.withdrawn,
            reminded_mark: &self.reminded,
            changes: &self.changes,
        }
    }

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
