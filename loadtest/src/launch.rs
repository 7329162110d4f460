//! The launch scenario: open-loop arrivals at a target rate in
//! launch-morning proportions. In 2021 almost all of the opening minute's
//! traffic was people looking (Yokohama: about 2 million accesses in the
//! first minute for 75,000 slots), so most requests are page and
//! availability loads; the rest are logins, `/v1/me`, booking attempts that
//! try another slot on `slot_full`, and a few cancellations.
//!
//! Each connection is one worker with its own share of the residents
//! (fresh, logged in, booked); a request whose precondition is not met (a
//! booking with nobody logged in yet) becomes the request that leads there
//! (a login). Latency counts from the request's scheduled time, so a server
//! that falls behind cannot hide its queue. The report gives per-kind rates,
//! latency percentiles, bytes and outcomes, and the usual audit follows.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use tokio::sync::mpsc;

use crate::client::{Answer, Connection, bearer_header};
use crate::scenario::{SLOTS_PER_DAY, Scenario};

/// What a request of the launch mix does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Page,
    Availability,
    Venues,
    Login,
    Me,
    Book,
    Cancel,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Page => "GET / (page)",
            Kind::Availability => "GET /v1/availability (day)",
            Kind::Venues => "GET /v1/venues",
            Kind::Login => "POST /v1/sessions",
            Kind::Me => "GET /v1/me",
            Kind::Book => "POST /v1/reservations",
            Kind::Cancel => "DELETE /v1/reservations/{id}",
        }
    }
}

/// Requests of each kind per 100, in launch-morning proportions: three in
/// four look (the page, the whole day's availability, the venue list).
pub const MIX_PER_100: [(Kind, u64); 7] = [
    (Kind::Page, 20),
    (Kind::Availability, 40),
    (Kind::Venues, 5),
    (Kind::Login, 12),
    (Kind::Me, 10),
    (Kind::Book, 11),
    (Kind::Cancel, 2),
];

/// Further slots a booking tries after `slot_full`, as a resident would;
/// when they are all full, that worker's residents stop trying to book
/// (they look at the list instead) until one of its cancels frees a seat.
pub const SLOT_FULL_RETRIES_MAX: u32 = 4;
/// Scheduled requests queued ahead of each worker.
const QUEUE_PER_CONNECTION: usize = 8;

/// The kind of scheduled request `index`: the mix, spread evenly (37 is
/// coprime with 100, so every run of 100 requests has the whole mix).
pub fn kind_of(index: u64) -> Kind {
    let mut position = index.wrapping_mul(37) % 100;
    for (kind, share) in MIX_PER_100 {
        if position < share {
            return kind;
        }
        position -= share;
    }
    unreachable!("the mix adds up to 100")
}

pub struct LaunchOptions {
    pub address: SocketAddr,
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    pub accept_encoding: Option<String>,
}

/// One kind's figures.
pub struct KindStats {
    pub latency_us: Histogram<u64>,
    pub bytes: u64,
    pub outcomes: BTreeMap<String, u64>,
}

impl KindStats {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            bytes: 0,
            outcomes: BTreeMap::new(),
        }
    }

    pub fn count(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// What the whole run found.
pub struct LaunchReport {
    pub by_kind: BTreeMap<Kind, KindStats>,
    pub elapsed: Duration,
    /// Reservations answered `201` and not cancelled since: what the store
    /// must hold.
    pub standing: HashSet<String>,
    /// Cancels that got no answer: their reservation's state is unknown.
    pub unknown_cancels: u64,
}

struct LoggedIn {
    authorization: HeaderValue,
}

struct Booked {
    authorization: HeaderValue,
    path: String,
    reservation_id: String,
}

/// One connection's share of the residents and its figures.
struct Worker {
    connection: Connection,
    scenario: Arc<Scenario>,
    accept_encoding: Option<HeaderValue>,
    /// The residents of this worker: `first, first + stride, …`.
    next_fresh: u64,
    stride: u64,
    fresh_end: u64,
    logged_in: Vec<LoggedIn>,
    booked: Vec<Booked>,
    /// Which resident `/v1/me` asks for next.
    me_turn: usize,
    /// Which slot the next booking tries.
    next_slot: u64,
    /// Every slot this worker tried was full: its residents look at the
    /// list (an availability load) instead of booking, until a cancel of
    /// its own frees a seat.
    sold_out: bool,
    availability_path: String,
    by_kind: BTreeMap<Kind, KindStats>,
    standing: HashSet<String>,
    unknown_cancels: u64,
}

impl Worker {
    fn record(&mut self, kind: Kind, since: Instant, answer: &anyhow::Result<Answer>) {
        let stats = self.by_kind.entry(kind).or_insert_with(KindStats::new);
        let _ = stats
            .latency_us
            .record(since.elapsed().as_micros().clamp(1, 60_000_000) as u64);
        let outcome = match answer {
            Ok(answer) => {
                stats.bytes += answer.body.len() as u64;
                outcome_of(answer)
            }
            Err(_) => "transport_error".to_owned(),
        };
        *stats.outcomes.entry(outcome).or_default() += 1;
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Bytes>,
        encoded: bool,
    ) -> anyhow::Result<Answer> {
        let encoding = if encoded {
            self.accept_encoding.as_ref()
        } else {
            None
        };
        self.connection
            .send_encoded(method, path, authorization, body, encoding)
            .await
    }

    /// What request `kind` becomes given this worker's residents.
    fn effective(&self, kind: Kind) -> Kind {
        let can_log_in = self.next_fresh < self.fresh_end;
        let anyone = !self.logged_in.is_empty() || !self.booked.is_empty();
        match kind {
            Kind::Login if !can_log_in => {
                if anyone {
                    Kind::Me
                } else {
                    Kind::Availability
                }
            }
            Kind::Me if !anyone => {
                if can_log_in {
                    Kind::Login
                } else {
                    Kind::Availability
                }
            }
            Kind::Book if self.sold_out => Kind::Availability,
            Kind::Book if self.logged_in.is_empty() => {
                if can_log_in {
                    Kind::Login
                } else {
                    Kind::Availability
                }
            }
            Kind::Cancel if self.booked.is_empty() => Kind::Availability,
            other => other,
        }
    }

    async fn run(&mut self, kind: Kind, due: Instant) {
        let kind = self.effective(kind);
        match kind {
            Kind::Page => {
                let answer = self.send(Method::GET, "/", None, None, true).await;
                self.record(kind, due, &answer);
            }
            Kind::Availability => {
                let path = self.availability_path.clone();
                let answer = self.send(Method::GET, &path, None, None, true).await;
                self.record(kind, due, &answer);
            }
            Kind::Venues => {
                let answer = self.send(Method::GET, "/v1/venues", None, None, true).await;
                self.record(kind, due, &answer);
            }
            Kind::Login => {
                let resident = self.next_fresh;
                self.next_fresh += self.stride;
                let body = format!(
                    r#"{{"ticket_number":"{}","birth_date":"1960-01-01"}}"#,
                    self.scenario.ticket(resident)
                );
                let answer = self
                    .send(Method::POST, "/v1/sessions", None, Some(body.into()), false)
                    .await;
                self.record(kind, due, &answer);
                if let Ok(answer) = answer
                    && answer.status == 201
                    && let Some(token) = crate::json_str(&answer.body, "token")
                {
                    self.logged_in.push(LoggedIn {
                        authorization: bearer_header(token),
                    });
                }
            }
            Kind::Me => {
                let everyone = self.logged_in.len() + self.booked.len();
                self.me_turn = (self.me_turn + 1) % everyone;
                let authorization = if self.me_turn < self.logged_in.len() {
                    self.logged_in[self.me_turn].authorization.clone()
                } else {
                    self.booked[self.me_turn - self.logged_in.len()]
                        .authorization
                        .clone()
                };
                let answer = self
                    .send(Method::GET, "/v1/me", Some(&authorization), None, false)
                    .await;
                self.record(kind, due, &answer);
            }
            Kind::Book => self.book(due).await,
            Kind::Cancel => {
                let booked = self.booked.pop().expect("effective() checked");
                let answer = self
                    .send(
                        Method::DELETE,
                        &booked.path,
                        Some(&booked.authorization),
                        None,
                        false,
                    )
                    .await;
                self.record(kind, due, &answer);
                match answer {
                    Ok(answer) if answer.status == 200 => {
                        self.standing.remove(&booked.reservation_id);
                        self.sold_out = false;
                        self.logged_in.push(LoggedIn {
                            authorization: booked.authorization,
                        });
                    }
                    Ok(_) => self.booked.push(booked),
                    Err(_) => self.unknown_cancels += 1,
                }
            }
        }
    }

    /// A booking: the next slot, then another on `slot_full`, as a resident
    /// looking at the list would; each try is one measured request.
    async fn book(&mut self, due: Instant) {
        let resident = self.logged_in.pop().expect("effective() checked");
        let mut since = due;
        for _ in 0..=SLOT_FULL_RETRIES_MAX {
            let body = self.slot_body();
            let answer = self
                .send(
                    Method::POST,
                    "/v1/reservations",
                    Some(&resident.authorization),
                    Some(body),
                    false,
                )
                .await;
            self.record(Kind::Book, since, &answer);
            match answer {
                Ok(answer) if answer.status == 201 => {
                    let id = crate::json_str(&answer.body, "reservation_id")
                        .unwrap_or_default()
                        .to_owned();
                    self.standing.insert(id.clone());
                    self.booked.push(Booked {
                        authorization: resident.authorization,
                        path: format!("/v1/reservations/{id}"),
                        reservation_id: id,
                    });
                    return;
                }
                Ok(answer) if outcome_of(&answer) == "slot_full" => since = Instant::now(),
                // Anything else (overloaded, closed): the resident tries later.
                _ => {
                    self.logged_in.push(resident);
                    return;
                }
            }
        }
        self.sold_out = true;
        self.logged_in.push(resident);
    }

    fn slot_body(&mut self) -> Bytes {
        let k = self.next_slot;
        self.next_slot += 1;
        let day = k % self.scenario.venue_days;
        let slot = (k / self.scenario.venue_days) % SLOTS_PER_DAY;
        format!(
            r#"{{"venue_id":"{}","date":"{}","time":"{}"}}"#,
            self.scenario.venue_id(day),
            self.scenario.date,
            Scenario::slot_time(slot)
        )
        .into()
    }
}

fn outcome_of(answer: &Answer) -> String {
    match answer.status {
        200 | 201 | 304 => answer.status.to_string(),
        status => match crate::json_str(&answer.body, "code") {
            Some(code) => code.to_owned(),
            None => format!("http_{status}"),
        },
    }
}

/// Runs the launch mix at `options.rate` for `options.duration`.
pub async fn run(options: &LaunchOptions, scenario: Arc<Scenario>) -> LaunchReport {
    let total = (options.rate * options.duration.as_secs_f64()).round() as u64;
    let connections = options.connections.max(1);
    let accept_encoding = options
        .accept_encoding
        .as_deref()
        .map(|e| HeaderValue::from_str(e).expect("a valid Accept-Encoding"));
    let mut queues = Vec::with_capacity(connections);
    let mut workers = Vec::with_capacity(connections);
    for w in 0..connections {
        let (sender, mut receiver) = mpsc::channel::<(u64, Instant)>(QUEUE_PER_CONNECTION);
        queues.push(sender);
        let mut worker = Worker {
            connection: Connection::new(options.address),
            scenario: Arc::clone(&scenario),
            accept_encoding: accept_encoding.clone(),
            next_fresh: w as u64,
            stride: connections as u64,
            fresh_end: scenario.residents,
            logged_in: Vec::new(),
            booked: Vec::new(),
            me_turn: 0,
            next_slot: (w as u64) * 7919,
            sold_out: false,
            availability_path: format!("/v1/availability?date={}", scenario.date),
            by_kind: BTreeMap::new(),
            standing: HashSet::new(),
            unknown_cancels: 0,
        };
        workers.push(tokio::spawn(async move {
            while let Some((index, due)) = receiver.recv().await {
                worker.run(kind_of(index), due).await;
            }
            worker
        }));
    }
    let started = Instant::now();
    let rate = options.rate;
    let scheduler = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut next_queue = 0;
        for index in 0..total {
            let due = start + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due).await;
            // To the next connection with room, so that one slow request
            // (a booking trying five slots) never holds up the schedule;
            // only when every queue is full does the scheduler wait.
            let mut job = (index, due.into_std());
            let mut placed = false;
            for _ in 0..queues.len() {
                next_queue = (next_queue + 1) % queues.len();
                match queues[next_queue].try_send(job) {
                    Ok(()) => {
                        placed = true;
                        break;
                    }
                    Err(mpsc::error::TrySendError::Full(back)) => job = back,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            if !placed && queues[next_queue].send(job).await.is_err() {
                return;
            }
        }
    });
    scheduler.await.expect("the scheduler panicked");
    let mut report = LaunchReport {
        by_kind: BTreeMap::new(),
        elapsed: Duration::ZERO,
        standing: HashSet::new(),
        unknown_cancels: 0,
    };
    for worker in workers {
        let worker = worker.await.expect("a worker panicked");
        for (kind, stats) in worker.by_kind {
            let into = report.by_kind.entry(kind).or_insert_with(KindStats::new);
            into.latency_us.add(&stats.latency_us).expect("same bounds");
            into.bytes += stats.bytes;
            for (outcome, n) in stats.outcomes {
                *into.outcomes.entry(outcome).or_default() += n;
            }
        }
        report.standing.extend(worker.standing);
        report.unknown_cancels += worker.unknown_cancels;
    }
    report.elapsed = started.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hundred_requests_hold_the_whole_mix() {
        for start in [0u64, 100, 12_345] {
            let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
            for i in start..start + 100 {
                *counts.entry(kind_of(i)).or_default() += 1;
            }
            for (kind, share) in MIX_PER_100 {
                assert_eq!(counts.get(&kind).copied().unwrap_or(0), share, "{kind:?}");
            }
        }
        assert_eq!(MIX_PER_100.iter().map(|(_, s)| s).sum::<u64>(), 100);
    }
}
