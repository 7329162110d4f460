//! Login throttling (API.md "Resident session"):
//!
//! - per ticket: `TICKET_FAILURES_MAX` failures within `TICKET_FAILURE_WINDOW`
//!   lock the ticket for `TICKET_LOCK`, even for the right birth date; unknown
//!   tickets are tracked the same way, so the lock tells nothing about which
//!   tickets exist;
//! - per client address: past `address_failures_max` *failed* logins within
//!   `ADDRESS_WINDOW`, the address is refused for `ADDRESS_BLOCK`. Successful
//!   logins are never counted: thousands of residents share one carrier NAT
//!   address at 9:00.
//!
//! State is in memory (a restart forgets it) and each map has a named bound.
//! At it, expired entries are dropped, then the least recently failed of
//! those not locked (a tenth of the map); it never stops counting, so a
//! flood of failures cannot buy unlimited guesses of a birth date. Should
//! a failure find every tracked ticket locked, untracked tickets are refused
//! (fails closed) until the first lock ends. (Addresses, a second line of
//! defence that a carrier NAT shares, fail open: a full map of blocked
//! addresses tracks no new one.) On Redis the per-ticket lockout is the
//! store's (`Coordination::login_attempt`), shared by every process.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::TicketNumber;

pub const TICKET_FAILURES_MAX: usize = 5;
pub const TICKET_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const TICKET_LOCK: Duration = Duration::from_secs(15 * 60);
/// The per-ticket lockout, as the store applies it across processes.
pub const TICKET_LIMITS: crate::store::LoginLimits = crate::store::LoginLimits {
    failures: TICKET_FAILURES_MAX,
    window: TICKET_FAILURE_WINDOW,
    lock: TICKET_LOCK,
};
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
pub const ADDRESS_BLOCK: Duration = Duration::from_secs(60);
/// Default of `VAXSLOT_LOGIN_FAILURES_PER_ADDR_MAX`.
pub const ADDRESS_FAILURES_MAX_DEFAULT: u32 = 50;
/// Most tickets with recent failures tracked at once.
pub const TRACKED_TICKETS_MAX: usize = 1_000_000;
/// Most client addresses with recent failures tracked at once.
pub const TRACKED_ADDRESSES_MAX: usize = 100_000;
/// At its bound, a map forgets this share of its entries at once (the
/// least recently failed unlocked ones), so that finding them (a pass over
/// the map) happens once per that many new entries, not once per failure.
const EVICTED_SHARE_DIVISOR: usize = 10;

#[derive(Default)]
struct TicketFailures {
    /// Recent failures, oldest first (at most `TICKET_FAILURES_MAX`).
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

struct AddressFailures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

pub struct LoginGuard {
    tickets: DashMap<TicketNumber, TicketFailures>,
    addresses: DashMap<IpAddr, AddressFailures>,
    /// 0 disables the per-address limit.
    address_failures_max: u32,
    tickets_max: usize,
    addresses_max: usize,
    /// Set when a failure found the tickets full of locks: until the
    /// earliest of them ends, untracked tickets are refused.
    tickets_full_until: std::sync::Mutex<Option<Instant>>,
}

/// What a tracked entry tells `make_room`.
trait Tracked {
    /// Neither locked nor with a failure in its window: forgotten first.
    fn expired(&self, now: Instant) -> bool;
    /// Locked (or blocked) now: never forgotten.
    fn locked(&self, now: Instant) -> bool;
    /// Its latest failure: the least recent are forgotten next.
    fn last_failed(&self) -> Option<Instant>;
}

impl Tracked for TicketFailures {
    fn expired(&self, now: Instant) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && self
                .failures
                .back()
                .is_none_or(|last| now.duration_since(*last) > TICKET_FAILURE_WINDOW)
    }

    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    fn last_failed(&self) -> Option<Instant> {
        self.failures.back().copied()
    }
}

impl Tracked for AddressFailures {
    fn expired(&self, now: Instant) -> bool {
        self.blocked_until.is_none_or(|until| until <= now)
            && now.duration_since(self.window_start) > ADDRESS_WINDOW
    }

    fn locked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|until| until > now)
    }

    fn last_failed(&self) -> Option<Instant> {
        Some(self.window_start)
    }
}

/// Whether a bounded map may take one more entry. When it is full, expired
/// entries go first, then the least recently failed unlocked ones (a tenth
/// of the map). `false` only when every entry is locked.
fn make_room<K, V>(map: &DashMap<K, V>, max: usize, now: Instant, what: &'static str) -> bool
where
    K: Eq + std::hash::Hash + Clone,
    V: Tracked,
{
    if map.len() < max {
        return true;
    }
    map.retain(|_, v| !v.expired(now));
    if map.len() < max {
        return true;
    }
    let mut unlocked: Vec<(Option<Instant>, K)> = map
        .iter()
        .filter(|entry| !entry.value().locked(now))
        .map(|entry| (entry.value().last_failed(), entry.key().clone()))
        .collect();
    if unlocked.is_empty() {
        tracing::warn!(
            tracked = what,
            limit = max,
            "login failure tracking is full of locks: untracked ones are refused"
        );
        return false;
    }
    let evicted = (max / EVICTED_SHARE_DIVISOR).clamp(1, unlocked.len());
    unlocked.select_nth_unstable_by_key(evicted - 1, |(last, _)| *last);
    for (_, key) in &unlocked[..evicted] {
        map.remove(key);
    }
    tracing::warn!(
        tracked = what,
        limit = max,
        evicted,
        "login failure tracking was full: the least recently failed unlocked entries were forgotten"
    );
    true
}

fn seconds_until(until: Instant, now: Instant) -> u64 {
    until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64
}

impl LoginGuard {
    pub fn new(address_failures_max: u32) -> Self {
        Self::with_limits(
            address_failures_max,
            TRACKED_TICKETS_MAX,
            TRACKED_ADDRESSES_MAX,
        )
    }

    fn with_limits(address_failures_max: u32, tickets_max: usize, addresses_max: usize) -> Self {
        Self {
            tickets: DashMap::new(),
            addresses: DashMap::new(),
            address_failures_max,
            tickets_max,
            addresses_max,
            tickets_full_until: std::sync::Mutex::new(None),
        }
    }

    /// `Err(seconds to wait)` when this login may not even be tried.
    pub fn admit(
        &self,
        ticket: &TicketNumber,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), u64> {
        if let Some(address) = address
            && let Some(entry) = self.addresses.get(&address)
            && let Some(until) = entry.blocked_until
            && until > now
        {
            return Err(seconds_until(until, now));
        }
        match self.tickets.get(ticket) {
            Some(entry) => {
                if let Some(until) = entry.locked_until
                    && until > now
                {
                    return Err(seconds_until(until, now));
                }
            }
            // Fails closed: while every tracked ticket is locked (a failure
            // found no room), an untracked one is not tried, since its
            // failure could not be counted. Known without a pass over the map.
            None => {
                if let Some(until) = *self.tickets_full_until.lock().expect("guard lock poisoned")
                    && until > now
                {
                    return Err(seconds_until(until, now));
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, ticket: &TicketNumber, address: Option<IpAddr>, now: Instant) {
        if self.tickets.contains_key(ticket) || self.room_for_ticket(now) {
            let mut entry = self.tickets.entry(*ticket).or_default();
            while entry
                .failures
                .front()
                .is_some_and(|first| now.duration_since(*first) > TICKET_FAILURE_WINDOW)
            {
                entry.failures.pop_front();
            }
            entry.failures.push_back(now);
            if entry.failures.len() >= TICKET_FAILURES_MAX {
                entry.locked_until = Some(now + TICKET_LOCK);
                entry.failures.clear();
            }
        }
        if self.address_failures_max == 0 {
            return;
        }
        let Some(address) = address else { return };
        if self.addresses.contains_key(&address) || self.room_for_address(now) {
            let mut entry = self.addresses.entry(address).or_insert(AddressFailures {
                window_start: now,
                count: 0,
                blocked_until: None,
            });
            if now.duration_since(entry.window_start) > ADDRESS_WINDOW {
                entry.window_start = now;
                entry.count = 0;
            }
            entry.count += 1;
            if entry.count > self.address_failures_max {
                entry.blocked_until = Some(now + ADDRESS_BLOCK);
            }
        }
    }

    /// A successful login clears the ticket's failures (never the address's).
    pub fn record_success(&self, ticket: &TicketNumber) {
        self.tickets.remove(ticket);
    }

    fn room_for_ticket(&self, now: Instant) -> bool {
        let room = make_room(&self.tickets, self.tickets_max, now, "tickets");
        let mut full_until = self.tickets_full_until.lock().expect("guard lock poisoned");
        *full_until = if room {
            None
        } else {
            // Every entry is locked: room comes back when the first lock ends.
            self.tickets
                .iter()
                .filter_map(|entry| entry.locked_until)
                .min()
        };
        room
    }

    fn room_for_address(&self, now: Instant) -> bool {
        make_room(&self.addresses, self.addresses_max, now, "addresses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(n: u64) -> TicketNumber {
        TicketNumber::parse(&format!("{n:010}")).unwrap()
    }

    #[test]
    fn five_failures_in_fifteen_minutes_lock_the_ticket_for_fifteen_minutes() {
        let guard = LoginGuard::new(0);
        let t0 = Instant::now();
        for i in 0..4 {
            guard.record_failure(&ticket(1), None, t0 + Duration::from_secs(i));
            assert!(
                guard
                    .admit(&ticket(1), None, t0 + Duration::from_secs(i))
                    .is_ok()
            );
        }
        guard.record_failure(&ticket(1), None, t0 + Duration::from_secs(4));
        let wait = guard
            .admit(&ticket(1), None, t0 + Duration::from_secs(5))
            .unwrap_err();
        assert!((14 * 60..=15 * 60).contains(&wait), "{wait}");
        assert!(
            guard.admit(&ticket(2), None, t0).is_ok(),
            "other tickets unaffected"
        );
        assert!(
            guard
                .admit(&ticket(1), None, t0 + Duration::from_secs(4) + TICKET_LOCK)
                .is_ok()
        );
    }

    #[test]
    fn failures_spread_over_more_than_fifteen_minutes_do_not_lock() {
        let guard = LoginGuard::new(0);
        let t0 = Instant::now();
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(i * 4 * 60);
            guard.record_failure(&ticket(1), None, at);
            assert!(guard.admit(&ticket(1), None, at).is_ok(), "failure {i}");
        }
    }

    #[test]
    fn a_success_clears_the_ticket_failures() {
        let guard = LoginGuard::new(0);
        let t0 = Instant::now();
        for _ in 0..4 {
            guard.record_failure(&ticket(1), None, t0);
        }
        guard.record_success(&ticket(1));
        guard.record_failure(&ticket(1), None, t0);
        assert!(guard.admit(&ticket(1), None, t0).is_ok());
    }

    /// Issue 23: at its bound the guard stopped tracking new tickets, so
    /// after a flood of failures a birth date could be guessed without limit.
    #[test]
    fn a_full_guard_forgets_the_least_recently_failed_unlocked_and_keeps_counting() {
        let guard = LoginGuard::with_limits(0, 10, 10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Ticket 0 is locked; 1..10 have one failure each, 1 the oldest.
        for _ in 0..TICKET_FAILURES_MAX {
            guard.record_failure(&ticket(0), None, at(0));
        }
        for n in 1..10 {
            guard.record_failure(&ticket(n), None, at(n));
        }
        // Full: the target's failures still count to its lock.
        for i in 0..TICKET_FAILURES_MAX as u64 {
            assert!(guard.admit(&ticket(99), None, at(20 + i)).is_ok());
            guard.record_failure(&ticket(99), None, at(20 + i));
        }
        assert!(
            guard.admit(&ticket(99), None, at(30)).is_err(),
            "counted to its lock"
        );
        assert!(
            guard.admit(&ticket(0), None, at(30)).is_err(),
            "a lock is never forgotten"
        );
        assert!(
            !guard.tickets.contains_key(&ticket(1)),
            "the oldest unlocked went"
        );
        assert!(guard.tickets.contains_key(&ticket(9)));
    }

    #[test]
    fn a_guard_full_of_locks_refuses_untracked_tickets() {
        let guard = LoginGuard::with_limits(0, 3, 3);
        let t0 = Instant::now();
        for n in 0..3 {
            for _ in 0..TICKET_FAILURES_MAX {
                guard.record_failure(&ticket(n), None, t0);
            }
        }
        // A failure that finds no room is not counted: from then on, until
        // the first lock ends, untracked tickets are not tried.
        assert!(guard.admit(&ticket(50), None, t0).is_ok());
        guard.record_failure(&ticket(50), None, t0);
        assert!(guard.admit(&ticket(50), None, t0).is_err(), "fails closed");
        assert!(guard.admit(&ticket(51), None, t0).is_err(), "fails closed");
        // Once the locks run out, there is room again.
        assert!(
            guard
                .admit(&ticket(50), None, t0 + TICKET_LOCK + TICKET_FAILURE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn an_address_past_its_failure_limit_waits_a_minute_and_zero_disables() {
        let address: IpAddr = "203.0.113.7".parse().unwrap();
        let guard = LoginGuard::new(3);
        let t0 = Instant::now();
        for n in 0..3 {
            guard.record_failure(&ticket(n), Some(address), t0);
        }
        assert!(
            guard.admit(&ticket(99), Some(address), t0).is_ok(),
            "3 is not past 3"
        );
        guard.record_failure(&ticket(3), Some(address), t0);
        assert!(
            guard.admit(&ticket(99), Some(address), t0).is_err(),
            "past 3"
        );
        assert!(
            guard
                .admit(&ticket(99), Some("203.0.113.8".parse().unwrap()), t0)
                .is_ok()
        );
        assert!(
            guard
                .admit(&ticket(99), Some(address), t0 + ADDRESS_BLOCK)
                .is_ok()
        );

        let off = LoginGuard::new(0);
        for n in 0..1000 {
            off.record_failure(&ticket(n), Some(address), t0);
        }
        assert!(off.admit(&ticket(5000), Some(address), t0).is_ok());
    }
}
