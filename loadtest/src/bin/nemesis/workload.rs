//! The clients: each books dose 1 and 2 and cancels for residents of its
//! own, through a random process each time, every booking with an
//! `Idempotency-Key` and retried with it after a `5xx`, a timeout or
//! `change_in_progress`; a quarter of dose-1 bookings are sent twice at
//! once, to two days through two processes. Every request is recorded.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// How long a client keeps retrying one request (with the same key): past
/// a shared dose claim's 10 s lease, which an unknown outcome leaves.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// A client gives up on one try after this long (the forwarder's 8 s, and
/// a commit's wait for a replica, fit inside).
const TRY_TIMEOUT: Duration = Duration::from_secs(20);

/// A resident the nemesis imported, logged in.
#[derive(Clone)]
pub struct Resident {
    pub ticket: String,
    pub token: String,
}

/// A day the residents book: venue, date, its one slot time and capacity.
#[derive(Clone)]
pub struct Day {
    pub venue: String,
    pub date: String,
    pub time: &'static str,
    pub capacity: u64,
    /// Dose 1 days come first; dose 2 days are 60 days later.
    pub dose: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Book,
    Cancel,
}

/// One request as sent and answered.
#[derive(Clone, Debug)]
pub struct Event {
    pub ticket: String,
    /// The process it was sent to.
    pub via: usize,
    pub op: Op,
    /// The booking's `Idempotency-Key`.
    pub key: Option<String>,
    /// The cancelled reservation.
    pub target: Option<String>,
    /// Unix ms.
    pub sent_ms: i64,
    pub answered_ms: i64,
    /// 0: no answer (timeout, connection refused or reset).
    pub status: u16,
    pub code: Option<String>,
    /// The reservation a `201` (or a cancel's `200`) names.
    pub reservation: Option<String>,
    /// A cancel's cascade.
    pub also: Vec<String>,
}

/// What one client shares with the nemesis.
pub struct Shared {
    /// The processes' base URLs, as the fault runner restarts them.
    pub urls: Arc<RwLock<Vec<String>>>,
    pub days: Vec<Day>,
    pub http: reqwest::Client,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn retried(status: u16, code: Option<&str>) -> bool {
    status == 0
        || (status >= 500 && code != Some("booking_closed"))
        || status == 429
        || code == Some("change_in_progress")
        || code == Some("idempotency_key_in_use")
}

/// What the client believes about one resident (a hint: the checker reads
/// the truth from the store).
#[derive(Default, Clone)]
struct Belief {
    dose1: Option<String>,
    dose2: Option<String>,
}

pub struct Client {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub residents: Vec<Resident>,
    pub rng: StdRng,
    pub history: Vec<Event>,
    keys: u64,
}

impl Client {
    pub fn new(id: usize, seed: u64, shared: Arc<Shared>, residents: Vec<Resident>) -> Self {
        Self {
            id,
            shared,
            residents,
            rng: StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id as u64)),
            history: Vec::new(),
            keys: 0,
        }
    }

    /// A process at random: its number, and its base URL.
    fn process_url(&mut self) -> (usize, String) {
        let urls = self.shared.urls.read().expect("urls lock").clone();
        let via = self.rng.random_range(0..urls.len());
        (via, urls[via].clone())
    }

    fn new_key(&mut self) -> String {
        self.keys += 1;
        format!("nemesis-{}-{}", self.id, self.keys)
    }

    fn day(&mut self, dose: u8) -> Day {
        let days: Vec<&Day> = self.shared.days.iter().filter(|d| d.dose == dose).collect();
        days[self.rng.random_range(0..days.len())].clone()
    }

    /// Runs until `until`, then returns its history.
    pub async fn run(mut self, until: Instant) -> Vec<Event> {
        let mut beliefs = vec![Belief::default(); self.residents.len()];
        while Instant::now() < until {
            let r = self.rng.random_range(0..self.residents.len());
            let resident = self.residents[r].clone();
            let belief = beliefs[r].clone();
            let roll: f64 = self.rng.random();
            beliefs[r] = match (&belief.dose1, &belief.dose2) {
                (None, _) => {
                    let booked = if roll < 0.25 {
                        self.book_twice(&resident).await
                    } else {
                        let day = self.day(1);
                        self.book(&resident, &day, 1).await
                    };
                    Belief {
                        dose1: booked,
                        dose2: None,
                    }
                }
                (Some(first), None) => {
                    if roll < 0.6 {
                        let day = self.day(2);
                        Belief {
                            dose2: self.book(&resident, &day, 2).await,
                            ..belief
                        }
                    } else {
                        self.cancel(&resident, first).await;
                        Belief::default()
                    }
                }
                (Some(first), Some(second)) => {
                    if roll < 0.5 {
                        self.cancel(&resident, second).await;
                        Belief {
                            dose2: None,
                            ..belief
                        }
                    } else {
                        self.cancel(&resident, first).await;
                        Belief::default()
                    }
                }
            };
        }
        self.history
    }

    /// Dose 1 sent at once to two days through two processes (two keys):
    /// at most one may book. Answers the reservation booked, if any.
    async fn book_twice(&mut self, resident: &Resident) -> Option<String> {
        let (a, b) = (self.day(1), self.day(1));
        let mut other = Client {
            id: self.id,
            shared: Arc::clone(&self.shared),
            residents: Vec::new(),
            rng: StdRng::seed_from_u64(self.rng.random()),
            history: Vec::new(),
            keys: 0,
        };
        let key_b = self.new_key() + "-twin";
        let (first, second) = tokio::join!(
            self.book(resident, &a, 1),
            other.book_keyed(resident, &b, 1, key_b)
        );
        self.history.append(&mut other.history);
        first.or(second)
    }

    async fn book(&mut self, resident: &Resident, day: &Day, dose: u8) -> Option<String> {
        let key = self.new_key();
        self.book_keyed(resident, day, dose, key).await
    }

    async fn book_keyed(
        &mut self,
        resident: &Resident,
        day: &Day,
        dose: u8,
        key: String,
    ) -> Option<String> {
        let body = json!({"venue_id": day.venue, "date": day.date, "time": day.time, "dose": dose});
        let started = Instant::now();
        loop {
            let (via, url) = self.process_url();
            let url = format!("{url}/v1/reservations");
            let request = self
                .shared
                .http
                .post(url)
                .bearer_auth(&resident.token)
                .header("Idempotency-Key", &key)
                .json(&body);
            let event = self
                .send(request, via, resident, Op::Book, Some(key.clone()), None)
                .await;
            let again = retried(event.status, event.code.as_deref());
            let booked = (event.status == 201)
                .then(|| event.reservation.clone())
                .flatten();
            self.history.push(event);
            if !again || started.elapsed() > RETRY_FOR {
                return booked;
            }
            self.pause().await;
        }
    }

    async fn cancel(&mut self, resident: &Resident, id: &str) {
        let started = Instant::now();
        loop {
            let (via, url) = self.process_url();
            let url = format!("{url}/v1/reservations/{id}");
            let request = self.shared.http.delete(url).bearer_auth(&resident.token);
            let event = self
                .send(
                    request,
                    via,
                    resident,
                    Op::Cancel,
                    None,
                    Some(id.to_owned()),
                )
                .await;
            let again = retried(event.status, event.code.as_deref());
            self.history.push(event);
            if !again || started.elapsed() > RETRY_FOR {
                return;
            }
            self.pause().await;
        }
    }

    async fn pause(&mut self) {
        let ms = self.rng.random_range(200..800);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        via: usize,
        resident: &Resident,
        op: Op,
        key: Option<String>,
        target: Option<String>,
    ) -> Event {
        let sent_ms = now_ms();
        let answer = tokio::time::timeout(TRY_TIMEOUT, async {
            let response = request.send().await.ok()?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Some((status, body))
        })
        .await
        .ok()
        .flatten();
        let (status, body) = answer.unwrap_or((0, Value::Null));
        Event {
            ticket: resident.ticket.clone(),
            via,
            op,
            key,
            target,
            sent_ms,
            answered_ms: now_ms(),
            status,
            code: body["code"].as_str().map(str::to_owned),
            reservation: body["reservation_id"].as_str().map(str::to_owned),
            also: body["also_cancelled"]
                .as_array()
                .map(|also| {
                    also.iter()
                        .filter_map(|r| r["reservation_id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
