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
//! State is in memory (a restart forgets it) and each map has a named bound;
//! past it, expired entries are dropped and, if still full, new ones are not
//! tracked (failing open beats locking every resident out).

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

#[derive(Default)]
struct TicketFailures {
    /// Recent failures, oldest first (at most `TICKET_FAILURES_MAX`).
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl TicketFailures {
    fn expired(&self, now: Instant) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && self
                .failures
                .back()
                .is_none_or(|last| now.duration_since(*last) > TICKET_FAILURE_WINDOW)
    }
}

struct AddressFailures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl AddressFailures {
    fn expired(&self, now: Instant) -> bool {
        self.blocked_until.is_none_or(|until| until <= now)
            && now.duration_since(self.window_start) > ADDRESS_WINDOW
    }
}

pub struct LoginGuard {
    tickets: DashMap<TicketNumber, TicketFailures>,
    addresses: DashMap<IpAddr, AddressFailures>,
    /// 0 disables the per-address limit.
    address_failures_max: u32,
}

/// Whether a bounded map may take one more entry, dropping expired ones
/// first when it is full.
fn make_room<K, V>(
    map: &DashMap<K, V>,
    max: usize,
    expired: impl Fn(&V) -> bool,
    what: &'static str,
) -> bool
where
    K: Eq + std::hash::Hash,
{
    if map.len() < max {
        return true;
    }
    map.retain(|_, v| !expired(v));
    let room = map.len() < max;
    if !room {
        tracing::warn!(
            tracked = what,
            limit = max,
            "login failure tracking is full"
        );
    }
    room
}

fn seconds_until(until: Instant, now: Instant) -> u64 {
    until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64
}

impl LoginGuard {
    pub fn new(address_failures_max: u32) -> Self {
        Self {
            tickets: DashMap::new(),
            addresses: DashMap::new(),
            address_failures_max,
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
        if let Some(entry) = self.tickets.get(ticket)
            && let Some(until) = entry.locked_until
            && until > now
        {
            return Err(seconds_until(until, now));
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
        make_room(
            &self.tickets,
            TRACKED_TICKETS_MAX,
            |f| f.expired(now),
            "tickets",
        )
    }

    fn room_for_address(&self, now: Instant) -> bool {
        make_room(
            &self.addresses,
            TRACKED_ADDRESSES_MAX,
            |f| f.expired(now),
            "addresses",
        )
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
