//! Several vaxslot processes on one Redis (or Redis Cluster): who is alive,
//! which process owns each venue-day, and the internal calls that take a
//! venue-day's work to its owner.
//!
//! - **Members**: each process renews a lease of `MEMBER_LEASE` in the store
//!   every `HEARTBEAT_INTERVAL` (`Coordination::heartbeat`, by Redis's clock) and
//!   reads back the live members. Nothing else is agreed between processes.
//! - **Owners**: a venue-day's owner is the live member with the highest
//!   rendezvous weight for it (`owner_of`), so every process that sees the
//!   same members picks the same owner, and when a member joins or leaves
//!   only the days it wins or held move. Two processes whose views differ
//!   for a moment may both load a day: the owner epoch that the commit
//!   script checks fences the older one, so a stale owner never commits.
//! - **Forwarding** (`forward.rs`): a venue-day message (book, cancel,
//!   check in, roster, plan) for a day another process owns goes to that
//!   process's `/internal/v1/…` (`api/internal.rs`), authenticated with a key
//!   derived from the shared token secret. The owner serves it with its own
//!   actor and never forwards it again. A dead owner's lease ends within
//!   `MEMBER_LEASE`; from then on the next live member by weight is the
//!   owner, loads the day and so fences the dead one.

mod follow;
mod forward;
pub mod wire;

pub use follow::{FOLLOW_INTERVAL, Follower, LocalDays, OpenConnections};
pub use forward::{FORWARD_TIMEOUT, FORWARDED_COMMIT_WINDOW, Forwarder, Unanswered, internal_key};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::VenueDayKey;
use crate::store::Coordination;
use crate::tasks::{Place, Tasks};

/// How long a member stays live after its last heartbeat.
pub const MEMBER_LEASE: Duration = Duration::from_secs(3);
/// How often a member renews its lease and reads the live members.
/// Short, so that a process that joins is seen by the others quickly (until
/// then, they and it may disagree on owners, and fence each other once).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
const _: () = assert!(
    HEARTBEAT_INTERVAL.as_millis() * 4 <= MEMBER_LEASE.as_millis(),
    "a lease must survive a few missed heartbeats, or a busy member drops out"
);
/// Most members a process keeps in its view.
pub const MEMBERS_MAX: usize = 256;

/// One process: a random id per start, and where the others reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Base URL of its HTTP listener, e.g. `http://10.0.0.5:8080`.
    pub url: String,
}

impl Member {
    fn record(&self) -> String {
        format!("{} {}", self.id, self.url)
    }

    /// `<id> <url>`, as `record` writes it; `None` for anything else.
    fn parse(record: &str) -> Option<Member> {
        let (id, url) = record.split_once(' ')?;
        let url_ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(char::is_whitespace);
        if id.is_empty() || !url_ok {
            return None;
        }
        Some(Member {
            id: id.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// Where a venue-day's work is done.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// This process.
    Here,
    /// Another live process.
    There(Member),
}

/// This process's view of the members.
pub struct Membership {
    me: Member,
    /// The live members as last read, this one always among them.
    live: RwLock<Arc<Vec<Member>>>,
    /// Counts changes of `live`, for whoever follows them (the registry
    /// retires actors of days that moved away).
    changes: tokio::sync::watch::Sender<u64>,
    /// Members that refused a connection, and until when they are taken for
    /// dead although their lease runs (a process SIGKILLed, or restarted on
    /// another port, leaves a lease behind for up to `MEMBER_LEASE`).
    suspected: std::sync::Mutex<Vec<(String, std::time::Instant)>>,
    /// Counts this process's own lapses: renewals that came after its lease
    /// had ended (it was paused, or cut off from the store), during which
    /// others may have taken its days over and committed on them.
    lapses: std::sync::atomic::AtomicU64,
}

impl Membership {
    pub fn new(url: String) -> Self {
        let me = Member {
            id: uuid::Uuid::new_v4().simple().to_string(),
            url,
        };
        Self {
            live: RwLock::new(Arc::new(vec![me.clone()])),
            me,
            changes: tokio::sync::watch::Sender::new(0),
            suspected: std::sync::Mutex::new(Vec::new()),
            lapses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn live(&self) -> Arc<Vec<Member>> {
        Arc::clone(&self.live.read().expect("members lock poisoned"))
    }

    /// How many times this process's lease lapsed (see `lapses`): an actor
    /// that started before the last one may hold a stale day.
    pub fn lapses(&self) -> u64 {
        self.lapses.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wakes up after each change of the live members, and after a lapse.
    pub fn follow_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Who owns `key` by this process's view.
    pub fn owner_of(&self, key: &VenueDayKey) -> Owner {
        let live = self.live();
        let owner = owner_among(&live, key).expect("this process is always live");
        if owner.id == self.me.id {
            Owner::Here
        } else {
            Owner::There(owner.clone())
        }
    }

    /// Takes `member` for dead (it refused a connection): its days are
    /// picked among the others until its lease ends, or for `MEMBER_LEASE`
    /// if it keeps renewing it (then it is alive after all, and reachable
    /// again, or its refusals suspect it again).
    pub fn suspect(&self, member: &Member) {
        let until = std::time::Instant::now() + MEMBER_LEASE;
        {
            let mut suspected = self.suspected.lock().expect("suspects lock poisoned");
            suspected.retain(|(id, _)| *id != member.id);
            suspected.push((member.id.clone(), until));
        }
        tracing::warn!(owner = %member.id, "a process refused a connection; its venue-days are taken over");
        let live: Vec<String> = self.live().iter().map(Member::record).collect();
        self.set_live(&live);
    }

    fn set_live(&self, records: &[String]) {
        let suspected: Vec<String> = {
            let mut suspected = self.suspected.lock().expect("suspects lock poisoned");
            let now = std::time::Instant::now();
            suspected.retain(|(_, until)| *until > now);
            suspected.iter().map(|(id, _)| id.clone()).collect()
        };
        let mut members: Vec<Member> = records
            .iter()
            .filter_map(|record| {
                let member = Member::parse(record);
                if member.is_none() {
                    metrics::counter!(crate::telemetry::RECORDS_SKIPPED_TOTAL, "what" => "member")
                        .increment(1);
                    tracing::error!("a member record could not be read; skipped");
                }
                member
            })
            .filter(|member| member.id != self.me.id && !suspected.contains(&member.id))
            .take(MEMBERS_MAX - 1)
            .collect();
        members.push(self.me.clone());
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let changed = *self.live() != members;
        if changed {
            tracing::info!(
                live = members.len(),
                members = %members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(","),
                "the live processes changed"
            );
        }
        *self.live.write().expect("members lock poisoned") = Arc::new(members);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Renews this process's lease every `HEARTBEAT_INTERVAL` and follows
    /// the live members, for as long as the system runs. While the store is
    /// unreachable the last view stands (a stale owner is fenced anyway).
    /// On the System thread, beside the store's connections: nothing heavy
    /// runs there (the follower has a thread of its own).
    pub fn keep_alive(self: &Arc<Self>, shared: Arc<dyn Coordination>, tasks: &Tasks) {
        let membership = Arc::clone(self);
        tasks.spawn("member heartbeat", Place::System, move || async move {
            let record = membership.me.record();
            let mut every = tokio::time::interval(HEARTBEAT_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewed = std::time::Instant::now();
            loop {
                every.tick().await;
                let asked = std::time::Instant::now();
                match shared.heartbeat(&record, MEMBER_LEASE).await {
                    Ok(records) => {
                        // Measured from the last renewal to this one's
                        // asking: past the lease, this process was gone for
                        // the others, which may have taken its days over.
                        if asked.duration_since(renewed) >= MEMBER_LEASE {
                            membership
                                .lapses
                                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                            tracing::warn!(
                                "this process's lease lapsed (paused, or cut off from the store): its venue-days are loaded again"
                            );
                            membership.changes.send_modify(|n| *n += 1);
                        }
                        renewed = asked;
                        membership.set_live(&records);
                    }
                    Err(error) => tracing::warn!(error = %error, "member lease not renewed"),
                }
            }
        });
    }
}

/// The owner of `key` among `members` (by id and URL, as the store lists
/// them): the one with the highest rendezvous weight for it, whatever their
/// order; `None` for no members.
pub fn owner_among<'a>(members: &'a [Member], key: &VenueDayKey) -> Option<&'a Member> {
    let day = format!("{}/{}", key.venue_id, key.date);
    members
        .iter()
        .max_by_key(|member| (weight(&member.id, &day), member.id.clone()))
}

/// The rendezvous weight of `member` for `day`: FNV-1a over both, stable
/// across processes and versions.
fn weight(member: &str, day: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain([b'|']).chain(day.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // A final mix, so that nearby inputs do not give nearby weights.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{VenueId, parse_date};

    fn day(n: usize) -> VenueDayKey {
        VenueDayKey {
            venue_id: VenueId::parse(&format!("venue-{n}")).unwrap(),
            date: parse_date("2030-07-07").unwrap(),
        }
    }

    fn view(urls: &[&str]) -> Vec<Membership> {
        let members: Vec<Membership> = urls.iter().map(|u| Membership::new((*u).into())).collect();
        let records: Vec<String> = members.iter().map(|m| m.me.record()).collect();
        for member in &members {
            member.set_live(&records);
        }
        members
    }

    #[test]
    fn every_member_picks_the_same_owner_and_the_days_spread() {
        let members = view(&["http://a", "http://b", "http://c"]);
        let mut owned = [0usize; 3];
        for n in 0..3_000 {
            let here: Vec<usize> = (0..3)
                .filter(|&i| members[i].owner_of(&day(n)) == Owner::Here)
                .collect();
            assert_eq!(here.len(), 1, "exactly one member owns day {n}");
            owned[here[0]] += 1;
        }
        for count in owned {
            assert!((800..1_200).contains(&count), "{owned:?}");
        }
    }

    #[test]
    fn when_a_member_leaves_only_its_days_move() {
        let members = view(&["http://a", "http://b", "http://c"]);
        let before: Vec<String> = (0..1_000)
            .map(|n| match members[0].owner_of(&day(n)) {
                Owner::Here => members[0].me.id.clone(),
                Owner::There(m) => m.id,
            })
            .collect();
        let gone = members[2].me.id.clone();
        let remaining: Vec<String> = members[..2].iter().map(|m| m.me.record()).collect();
        members[0].set_live(&remaining);
        for (n, owner) in before.iter().enumerate() {
            let now = match members[0].owner_of(&day(n)) {
                Owner::Here => members[0].me.id.clone(),
                Owner::There(m) => m.id,
            };
            if *owner != gone {
                assert_eq!(&now, owner, "day {n} stays where it was");
            } else {
                assert_ne!(now, gone);
            }
        }
    }

    #[test]
    fn a_suspected_member_owns_nothing_until_its_suspicion_ends() {
        let members = view(&["http://a", "http://b"]);
        let other = members[1].me().clone();
        members[0].suspect(&other);
        assert_eq!(members[0].live().len(), 1);
        for n in 0..100 {
            assert_eq!(members[0].owner_of(&day(n)), Owner::Here);
        }
        // Its lease is read again: still taken for dead.
        let records: Vec<String> = members.iter().map(|m| m.me.record()).collect();
        members[0].set_live(&records);
        assert_eq!(members[0].live().len(), 1);
    }

    #[test]
    fn a_member_is_always_in_its_own_view() {
        let alone = Membership::new("http://a".into());
        alone.set_live(&["someone http://b".to_owned(), "bad-record".to_owned()]);
        assert_eq!(alone.live().len(), 2);
        assert!(alone.live().contains(alone.me()));
    }
}
