//! The history checker: every request's answer against the state read
//! straight from Redis (each master scanned, every venue-day's reservations
//! and every partition's change stream, whose entry ids are the commits'
//! times by Redis's clock), and every process's view against the store.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::workload::{Day, Event, Op};
use super::world::Accepted;

/// One reservation as the store holds it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub id: String,
    pub ticket: String,
    pub venue: String,
    pub date: String,
    pub time: String,
    pub dose: u64,
    pub active: bool,
    pub key: Option<String>,
}

/// The store as read after the run.
#[derive(Default)]
pub struct StoreState {
    pub reservations: HashMap<String, Stored>,
    /// Reservation id → the times (unix ms, Redis's clock) of the commits
    /// that wrote it. An abandoned batch's undoing (`forget`, `revert`:
    /// what the store holds, told to followers, even after the stop) is
    /// not a commit.
    pub changed_at: HashMap<String, Vec<i64>>,
}

/// Reads every master's reservations and change streams.
pub async fn read_store(ports: &[u16]) -> anyhow::Result<StoreState> {
    let mut state = StoreState::default();
    for port in ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let role: Vec<Value> = redis::cmd("ROLE")
            .query_async::<redis::Value>(&mut connection)
            .await
            .map(|v| match v {
                redis::Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        redis::Value::BulkString(bytes) => {
                            Value::String(String::from_utf8_lossy(&bytes).into_owned())
                        }
                        _ => Value::Null,
                    })
                    .collect(),
                _ => Vec::new(),
            })?;
        if role.first().and_then(Value::as_str) != Some("master") {
            continue;
        }
        for key in scan(&mut connection, "vaxslot:{vx*}:day:*:reservations").await? {
            let records: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut connection)
                .await?;
            for json in records.values() {
                let record: Value = serde_json::from_str(json)?;
                let text = |field: &str| record[field].as_str().unwrap_or_default().to_owned();
                let stored = Stored {
                    id: text("id"),
                    ticket: text("ticket_number"),
                    venue: text("venue_id"),
                    date: text("date"),
                    time: text("time"),
                    dose: record["dose"].as_u64().unwrap_or(0),
                    active: matches!(record["status"].as_str(), Some("booked" | "attended")),
                    key: record["idempotency"]["key"].as_str().map(str::to_owned),
                };
                state.reservations.insert(stored.id.clone(), stored);
            }
        }
        for key in scan(&mut connection, "vaxslot:{vx*}:changes").await? {
            let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut connection)
                .await?;
            for (entry, fields) in entries {
                let at: i64 = entry
                    .split('-')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                for id in fields.get("ids").map(String::as_str).unwrap_or("").lines() {
                    state.changed_at.entry(id.to_owned()).or_default().push(at);
                }
            }
        }
    }
    Ok(state)
}

async fn scan(
    connection: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Every anomaly kind the checker knows, in the order it reports them.
pub const KINDS: [&str; 13] = [
    "over_capacity",
    "dose_held_twice",
    "refusal_left_booked",
    "key_with_two_reservations",
    "commit_after_stop",
    "acknowledged_booking_lost",
    "acknowledged_cancel_lost",
    "5xx_left_standing",
    "process_stuck",
    "stale_seats",
    "process_disagrees_with_store",
    "mail_sent_twice",
    "mail_missing",
];

/// Anomalies found, by kind, each with a line saying what.
#[derive(Default)]
pub struct Anomalies(pub BTreeMap<&'static str, Vec<String>>);

impl Anomalies {
    pub fn add(&mut self, kind: &'static str, what: String) {
        debug_assert!(KINDS.contains(&kind));
        self.0.entry(kind).or_default().push(what);
    }

    pub fn count(&self, kind: &str) -> usize {
        self.0.get(kind).map_or(0, Vec::len)
    }

    pub fn total(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
}

/// A refusal that is the key's answer (replayed), as opposed to a failure.
fn final_refusal(event: &Event) -> bool {
    (400..500).contains(&event.status)
        && event.status != 429
        && !matches!(
            event.code.as_deref(),
            Some("change_in_progress" | "idempotency_key_in_use")
        )
}

/// One key's tries, for a report: process, answer and when (ms after the
/// first was sent).
fn tries(events: &[&Event]) -> String {
    let first = events.first().map_or(0, |e| e.sent_ms);
    let each: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "p{} {} {} at +{}..{} ms",
                e.via,
                e.status,
                e.code.as_deref().unwrap_or("-"),
                e.sent_ms - first,
                e.answered_ms - first
            )
        })
        .collect();
    each.join(", ")
}

/// Checks the history and the store (the part that needs no process).
pub fn check_history(
    history: &[Event],
    store: &StoreState,
    days: &[Day],
    stopped_at_ms: i64,
    anomalies: &mut Anomalies,
) {
    let stored = &store.reservations;
    // Capacity: active reservations per slot.
    let mut per_slot: HashMap<(String, String, String), u64> = HashMap::new();
    for r in stored.values().filter(|r| r.active) {
        *per_slot
            .entry((r.venue.clone(), r.date.clone(), r.time.clone()))
            .or_default() += 1;
    }
    for day in days {
        let taken = per_slot
            .get(&(day.venue.clone(), day.date.clone(), day.time.to_owned()))
            .copied()
            .unwrap_or(0);
        if taken > day.capacity {
            anomalies.add(
                "over_capacity",
                format!(
                    "{}/{} {}: {taken} of {}",
                    day.venue, day.date, day.time, day.capacity
                ),
            );
        }
    }
    // One active reservation per resident and dose.
    let mut per_dose: HashMap<(String, u64), Vec<&str>> = HashMap::new();
    for r in stored.values().filter(|r| r.active) {
        per_dose
            .entry((r.ticket.clone(), r.dose))
            .or_default()
            .push(&r.id);
    }
    for ((ticket, dose), ids) in per_dose.iter().filter(|(_, ids)| ids.len() > 1) {
        anomalies.add("dose_held_twice", format!("{ticket} dose {dose}: {ids:?}"));
    }
    // Keys: one reservation each, none after a final refusal.
    let mut by_key: HashMap<(&str, &str), Vec<&Stored>> = HashMap::new();
    for r in stored.values() {
        if let Some(key) = &r.key {
            by_key.entry((&r.ticket, key)).or_default().push(r);
        }
    }
    for ((ticket, key), reservations) in by_key.iter().filter(|(_, r)| r.len() > 1) {
        anomalies.add(
            "key_with_two_reservations",
            format!("{ticket} key {key}: {}", reservations.len()),
        );
    }
    let mut requests_of_key: HashMap<(&str, &str), Vec<&Event>> = HashMap::new();
    for event in history.iter().filter(|e| e.op == Op::Book) {
        if let Some(key) = &event.key {
            requests_of_key
                .entry((&event.ticket, key))
                .or_default()
                .push(event);
        }
    }
    for (&(ticket, key), events) in &requests_of_key {
        let refused = events.iter().find(|e| final_refusal(e));
        let held = by_key.get(&(ticket, key));
        if let (Some(refusal), Some(held)) = (refused, held) {
            anomalies.add(
                "refusal_left_booked",
                format!(
                    "{ticket} key {key}: answered {} {:?}, store holds {}; tries: {}",
                    refusal.status,
                    refusal.code,
                    held[0].id,
                    tries(events)
                ),
            );
        }
        // A reservation committed when no request for its key was in
        // flight any more: its caller was told it failed.
        if let Some(held) = held {
            let last_answer = events.iter().map(|e| e.answered_ms).max().unwrap_or(0);
            let committed = store
                .changed_at
                .get(&held[0].id)
                .and_then(|times| times.iter().min().copied());
            if let Some(committed) = committed
                && committed > last_answer
                && events.iter().all(|e| e.status != 201)
            {
                anomalies.add(
                    "5xx_left_standing",
                    format!(
                        "{ticket} key {key}: committed {} ms after its last answer ({} {:?})",
                        committed - last_answer,
                        events.last().map_or(0, |e| e.status),
                        events.last().and_then(|e| e.code.clone())
                    ),
                );
            }
        }
    }
    // Every 201 is in the store; every 200 cancel left it cancelled.
    for event in history {
        match (event.op, event.status, &event.reservation) {
            (Op::Book, 201, Some(id)) if !stored.contains_key(id) => {
                anomalies.add(
                    "acknowledged_booking_lost",
                    format!(
                        "{} {id}: sent at {}, answered 201 at {}",
                        event.ticket, event.sent_ms, event.answered_ms
                    ),
                );
            }
            (Op::Cancel, 200, _) => {
                for cancelled in event.target.iter().chain(&event.also) {
                    if stored.get(cancelled).is_none_or(|r| r.active) {
                        anomalies.add(
                            "acknowledged_cancel_lost",
                            format!(
                                "{} {cancelled} answered 200 at {}",
                                event.ticket, event.answered_ms
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // Nothing committed after the kill switch's PUT returned.
    let mut late: Vec<(&String, i64)> = store
        .changed_at
        .iter()
        .filter_map(|(id, times)| times.iter().max().map(|t| (id, *t)))
        .filter(|(_, t)| *t > stopped_at_ms)
        .collect();
    late.sort();
    for (id, at) in late {
        anomalies.add(
            "commit_after_stop",
            format!(
                "{id} changed {} ms after the stop returned",
                at - stopped_at_ms
            ),
        );
    }
}

/// How much of `from..to` none of `intervals` covers.
fn uncovered_ms(intervals: &mut [(i64, i64)], from: i64, to: i64) -> i64 {
    intervals.sort_unstable();
    let mut uncovered = 0;
    let mut reached = from;
    for &(began, ended) in intervals.iter() {
        if began > reached {
            uncovered += began.min(to) - reached;
        }
        reached = reached.max(ended);
        if reached >= to {
            return uncovered;
        }
    }
    uncovered + (to - reached).max(0)
}

/// The remaining seats per (venue, date, time) by the store.
pub fn remaining_by_store(store: &StoreState, days: &[Day]) -> HashMap<(String, String), u64> {
    let mut remaining: HashMap<(String, String), u64> = days
        .iter()
        .map(|d| ((d.venue.clone(), d.date.clone()), d.capacity))
        .collect();
    for r in store.reservations.values().filter(|r| r.active) {
        if let Some(left) = remaining.get_mut(&(r.venue.clone(), r.date.clone())) {
            *left = left.saturating_sub(1);
        }
    }
    remaining
}

/// How long after a mail's send began its sender may still be recording the
/// delivery when the store does not answer: the mail's lease (vaxslot's
/// `MAIL_LEASE`), renewed right before the send, for as long as which the
/// sender retries. Only once that lease ends may another worker send it.
const SENDER_RECORDS_WITHIN_MS: i64 = 30_000;
/// How soon after the server took a mail a sender records it when the store
/// answers (a loaded two-core machine: generous).
const RECORDED_WITHIN_MS: i64 = 2_000;
/// How long after a master fault healed the store may still not answer a
/// process: a failover, then a client rebuilt after vaxslot's
/// `CLUSTER_WEDGED_AFTER` (10 s).
const STORE_BACK_WITHIN_MS: i64 = 15_000;
/// How long before the SMTP server received a mail its sender may have
/// renewed the mail's lease (`hold_mail`, right before the send: a pooled
/// connection's MAIL and RCPT come between). The lease ends that much
/// before `received_ms` + the lease, and another worker may claim the mail
/// from then on (seed 20009: a resend 1 ms before the checker's estimate of
/// the lease's end, after its sender was killed while the store was down).
const HOLD_BEFORE_RECEIVED_MS: i64 = 1_000;

/// Mail: every stored reservation of a resident with an address got its
/// confirmation once; no message arrived twice, but one whose sender (the
/// process that sent the first copy) was SIGKILLed before it could record
/// the delivery: the one repeat the README admits, with the same
/// `Message-ID`, only after the first copy's lease, and counted in
/// `resent_after_crash`. "Before it could record" is while the server took
/// it, or soon after, or (when a master fault was under way as the server
/// accepted it) while the sender retried the store within the mail's lease.
/// A sender SIGSTOPped while the server took it is the same as one killed
/// when it could not act for the rest of the lease: its pauses, its kill
/// and the store's faults leave it at most `RECORDED_WITHIN_MS` of it.
pub fn check_mail(
    messages: &[Accepted],
    process_kills_ms: &[(usize, i64)],
    process_pauses_ms: &[(usize, i64, i64)],
    store_faults_ms: &[(i64, i64)],
    store: &StoreState,
    with_email: &HashSet<String>,
    anomalies: &mut Anomalies,
) -> usize {
    let mut copies: HashMap<&str, Vec<&Accepted>> = HashMap::new();
    for message in messages {
        copies
            .entry(message.message_id.as_str())
            .or_default()
            .push(message);
    }
    let mut resent_after_crash = 0;
    for (id, sent) in copies.iter().filter(|(_, sent)| sent.len() > 1) {
        let (first, again) = (sent[0], sent[sent.len() - 1]);
        let lease_end = first.received_ms + SENDER_RECORDS_WITHIN_MS;
        let store_down = store_faults_ms.iter().any(|(began, ended)| {
            (*began..=ended + STORE_BACK_WITHIN_MS).contains(&first.accepted_ms)
        });
        let unrecorded_until = if store_down {
            lease_end
        } else {
            first.accepted_ms + RECORDED_WITHIN_MS
        };
        let killed = process_kills_ms.iter().any(|(process, kill)| {
            *process == first.sender && (first.received_ms..=unrecorded_until).contains(kill)
        });
        let paused_while_sent = process_pauses_ms.iter().any(|(process, began, ended)| {
            *process == first.sender
                && *began <= first.accepted_ms + RECORDED_WITHIN_MS
                && *ended >= first.received_ms
        });
        let crashed = killed
            || paused_while_sent && {
                let mut unable: Vec<(i64, i64)> = process_pauses_ms
                    .iter()
                    .filter(|(process, ..)| *process == first.sender)
                    .map(|(_, began, ended)| (*began, *ended))
                    .chain(
                        process_kills_ms
                            .iter()
                            .filter(|(process, _)| *process == first.sender)
                            .map(|(_, kill)| (*kill, i64::MAX)),
                    )
                    .chain(
                        store_faults_ms
                            .iter()
                            .map(|(began, ended)| (*began, ended + STORE_BACK_WITHIN_MS)),
                    )
                    .collect();
                uncovered_ms(&mut unable, first.accepted_ms, lease_end) <= RECORDED_WITHIN_MS
            };
        if crashed && sent.len() == 2 && again.received_ms >= lease_end - HOLD_BEFORE_RECEIVED_MS {
            resent_after_crash += 1;
        } else {
            anomalies.add("mail_sent_twice", format!("{id}: {} times", sent.len()));
        }
    }
    let counts = copies;
    for r in store.reservations.values() {
        if !with_email.contains(&r.ticket) {
            continue;
        }
        let wanted = format!("<{}.confirmation@", r.id);
        if !counts.keys().any(|id| id.starts_with(&wanted)) {
            anomalies.add("mail_missing", format!("{} confirmation", r.id));
        }
    }
    resent_after_crash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Day {
        Day {
            venue: "v".into(),
            date: "2030-01-01".into(),
            time: "10:00",
            capacity: 1,
            dose: 1,
        }
    }

    fn stored(id: &str, ticket: &str, key: Option<&str>, active: bool) -> Stored {
        Stored {
            id: id.into(),
            ticket: ticket.into(),
            venue: "v".into(),
            date: "2030-01-01".into(),
            time: "10:00".into(),
            dose: 1,
            active,
            key: key.map(str::to_owned),
        }
    }

    fn booking(
        ticket: &str,
        key: &str,
        answered_ms: i64,
        status: u16,
        code: Option<&str>,
        id: Option<&str>,
    ) -> Event {
        Event {
            ticket: ticket.into(),
            via: 0,
            op: Op::Book,
            key: Some(key.into()),
            target: None,
            sent_ms: answered_ms - 10,
            answered_ms,
            status,
            code: code.map(str::to_owned),
            reservation: id.map(str::to_owned),
            also: Vec::new(),
        }
    }

    fn store_of(reservations: Vec<Stored>, changed: &[(&str, i64)]) -> StoreState {
        let mut state = StoreState::default();
        for r in reservations {
            state.reservations.insert(r.id.clone(), r);
        }
        for (id, at) in changed {
            state
                .changed_at
                .entry((*id).to_owned())
                .or_default()
                .push(*at);
        }
        state
    }

    fn kinds(history: &[Event], store: &StoreState, stopped_at_ms: i64) -> Vec<&'static str> {
        let mut anomalies = Anomalies::default();
        check_history(history, store, &[day()], stopped_at_ms, &mut anomalies);
        anomalies.0.keys().copied().collect()
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let history = [booking("1", "k", 100, 201, None, Some("r1"))];
        let store = store_of(vec![stored("r1", "1", Some("k"), true)], &[("r1", 90)]);
        assert!(kinds(&history, &store, 1_000).is_empty());
    }

    #[test]
    fn each_anomaly_kind_of_the_history_is_found() {
        // Over capacity, and one resident's dose held twice.
        let store = store_of(
            vec![stored("r1", "1", None, true), stored("r2", "1", None, true)],
            &[],
        );
        assert_eq!(
            kinds(&[], &store, 1_000),
            ["dose_held_twice", "over_capacity"]
        );
        // A 201 whose reservation is gone.
        let history = [booking("1", "k", 100, 201, None, Some("r1"))];
        assert_eq!(
            kinds(&history, &store_of(vec![], &[]), 1_000),
            ["acknowledged_booking_lost"]
        );
        // A final refusal whose key holds a reservation, committed while
        // the key's request was in flight.
        let history = [booking("1", "k", 100, 409, Some("slot_full"), None)];
        let store = store_of(vec![stored("r1", "1", Some("k"), true)], &[("r1", 90)]);
        assert_eq!(kinds(&history, &store, 1_000), ["refusal_left_booked"]);
        // A 503 after which the booking committed anyway.
        let history = [booking("1", "k", 100, 503, Some("store_unavailable"), None)];
        let store = store_of(vec![stored("r1", "1", Some("k"), true)], &[("r1", 5_000)]);
        assert_eq!(kinds(&history, &store, 10_000), ["5xx_left_standing"]);
        // A commit after the stop.
        let store = store_of(vec![stored("r1", "1", None, true)], &[("r1", 2_000)]);
        assert_eq!(kinds(&[], &store, 1_000), ["commit_after_stop"]);
        // Two reservations under one key.
        let store = store_of(
            vec![
                stored("r1", "1", Some("k"), true),
                stored("r2", "1", Some("k"), false),
            ],
            &[],
        );
        assert_eq!(kinds(&[], &store, 1_000), ["key_with_two_reservations"]);
    }

    #[test]
    fn mail_twice_and_missing_are_found() {
        let store = store_of(
            vec![stored("r1", "1", None, true), stored("r2", "2", None, true)],
            &[],
        );
        let with_email: HashSet<String> = ["1".to_owned(), "2".to_owned()].into();
        let copy = |received_ms| Accepted {
            message_id: "<r1.confirmation@city.example.jp>".to_owned(),
            sender: 0,
            received_ms,
            accepted_ms: received_ms + 5_000,
        };
        let twice = [copy(1_000), copy(40_000)];
        let sent_twice_paused = |messages: &[Accepted],
                                 kills: &[(usize, i64)],
                                 pauses: &[(usize, i64, i64)],
                                 store_faults: &[(i64, i64)]| {
            let mut anomalies = Anomalies::default();
            let excused = check_mail(
                messages,
                kills,
                pauses,
                store_faults,
                &store,
                &with_email,
                &mut anomalies,
            );
            (anomalies.count("mail_sent_twice"), excused)
        };
        let sent_twice =
            |messages: &[Accepted], kills: &[(usize, i64)], store_faults: &[(i64, i64)]| {
                let mut anomalies = Anomalies::default();
                let excused = check_mail(
                    messages,
                    kills,
                    &[],
                    store_faults,
                    &store,
                    &with_email,
                    &mut anomalies,
                );
                assert_eq!(anomalies.count("mail_missing"), 1);
                (anomalies.count("mail_sent_twice"), excused)
            };
        assert_eq!(sent_twice(&twice, &[], &[]), (1, 0));
        // The sender was killed while the server took the first copy; not
        // another process.
        assert_eq!(sent_twice(&twice, &[(0, 3_000)], &[]), (0, 1));
        assert_eq!(sent_twice(&twice, &[(1, 3_000)], &[]), (1, 0));
        // Killed after, while a master fault kept it from recording it.
        let fault = [(4_000, 8_000)];
        assert_eq!(sent_twice(&twice, &[(0, 20_000)], &fault), (0, 1));
        // Killed after, with the store answering: it had recorded it.
        assert_eq!(sent_twice(&twice, &[(0, 20_000)], &[]), (1, 0));
        // A kill after the first copy's lease ended explains nothing; nor
        // does one when the second copy came within that lease.
        assert_eq!(sent_twice(&twice, &[(0, 35_000)], &fault), (1, 0));
        let early = [copy(1_000), copy(20_000)];
        assert_eq!(sent_twice(&early, &[(0, 3_000)], &[]), (1, 0));
        // The lease was renewed a moment before the server received the
        // first copy (seed 20009: the second came 1 ms before received +
        // lease); a second copy well before that is still counted.
        let at_lease_end = [copy(1_000), copy(1_000 + 30_000 - 1)];
        assert_eq!(sent_twice(&at_lease_end, &[(0, 3_000)], &[]), (0, 1));
        let before = [copy(1_000), copy(1_000 + 30_000 - 1_500)];
        assert_eq!(sent_twice(&before, &[(0, 3_000)], &[]), (1, 0));
        // Paused while the server took it (seed 7003), then kept from the
        // store by master faults and paused again past the lease: excused.
        let pauses = [(0, 5_500, 19_100), (0, 19_200, 33_000)];
        let faults = [(7_200, 14_500), (18_600, 23_000)];
        assert_eq!(sent_twice_paused(&twice, &[], &pauses, &faults), (0, 1));
        // Not when it had time to record it: woke with the store up.
        let short = [(0, 5_500, 8_000)];
        assert_eq!(sent_twice_paused(&twice, &[], &short, &[]), (1, 0));
        assert_eq!(
            sent_twice_paused(&twice, &[], &short, &[(7_200, 9_000)]),
            (1, 0)
        );
        // Nor another process's pause, nor a pause only after the send.
        let other = [(1, 5_500, 19_100), (1, 19_200, 33_000)];
        assert_eq!(sent_twice_paused(&twice, &[], &other, &faults), (1, 0));
        let later = [(0, 9_000, 33_000)];
        assert_eq!(sent_twice_paused(&twice, &[], &later, &[]), (1, 0));
    }

    #[test]
    fn uncovered_time_is_what_no_interval_covers() {
        assert_eq!(uncovered_ms(&mut [], 0, 10), 10);
        assert_eq!(uncovered_ms(&mut [(2, 4), (3, 6), (8, 20)], 0, 10), 4);
        assert_eq!(uncovered_ms(&mut [(-5, 50)], 0, 10), 0);
        assert_eq!(uncovered_ms(&mut [(0, 3), (5, i64::MAX)], 0, 10), 2);
    }
}
