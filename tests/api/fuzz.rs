//! Fuzzing the API through the real server (issue 23): seeded random
//! bodies (JSON of every shape, mutated valid bodies, CSV in every
//! encoding, bytes) and route parameters, at every route that reads them,
//! with the role each needs. Never a 5xx; every refusal a problem document
//! with its `code`; nothing stored from a refused request or import record
//! (residents, venues, accounts, reservations); the server
//! serving afterwards.
//!
//! `VAXSLOT_FUZZ_CASES` requests per store (default 300; CI's run), and
//! `VAXSLOT_FUZZ_SEED` replays a run: the seed is printed, and named in
//! every failure.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, STAFF_KEY, TestApp, future_date, ticket};

const CASES_DEFAULT: usize = 300;
const VENUE: &str = "fuzz-clinic";
const RESIDENT: u64 = 8_700_000_000;
const BIRTH: &str = "1960-01-01";

#[derive(Clone, Copy, Debug)]
enum Role {
    Nobody,
    Resident,
    Operator,
    Staff,
    Admin,
}

/// One request, as sent.
#[derive(Clone, Debug)]
struct Case {
    method: Method,
    path: String,
    role: Role,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Member names the routes read, so that random objects hit real fields.
const FIELDS: [&str; 16] = [
    "ticket_number",
    "birth_date",
    "venue_id",
    "date",
    "time",
    "dose",
    "access_code",
    "name",
    "kind",
    "booking",
    "address",
    "phone",
    "vaccines",
    "slots",
    "code",
    "venues",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        "[\\x00-\\x1f\\x7f-\\x9f\\x{202a}-\\x{202e}a]{0,8}",
        "[0-9]{0,17}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{2}:[0-9]{2}",
        Just("moderna".to_owned()),
        Just(VENUE.to_owned()),
        Just("x".repeat(5000)),
        Just("=HYPERLINK(\"http://evil.example\")".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        Just(json!(u64::MAX)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
                        "\\PC{0,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A valid body with one member changed, removed, or one added; or any JSON.
fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let base = valid.clone();
    prop_oneof![
        3 => (prop::sample::select(keys.clone()), json_value()).prop_map(move |(key, value)| {
            let mut body = base.clone();
            body[&key] = value;
            body
        }),
        1 => prop::sample::select(keys).prop_map(move |key| {
            let mut body = valid.clone();
            body.as_object_mut().unwrap().remove(&key);
            body
        }),
        1 => json_value(),
    ]
}

/// A route parameter, as sent in the URL: valid ones and anything
/// (percent-encoded), and raw escapes (a NUL, a broken one, a `..`, an
/// unreserved letter the router decodes).
fn segment(valid: &'static str) -> impl Strategy<Value = String> {
    let encoded = |s: String| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    prop_oneof![
        4 => Just(valid.to_owned()).prop_map(encoded),
        6 => text().prop_map(encoded),
        1 => prop::sample::select(vec!["%00", "%ZZ", "%", "%2e%2e", "%76", "%C0%AF", "%FF"])
            .prop_map(str::to_owned),
    ]
}

/// A body sent as bytes: the JSON, or raw bytes, or JSON cut short.
fn bytes_of(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => value.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let bytes = serde_json::to_vec(&v).unwrap();
            bytes[..cut.index(bytes.len() + 1)].to_vec()
        }),
    ]
}

fn csv_body() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![text(), "\"[^\"]{0,6}\r?\n[^\"]{0,6}\"".prop_map(|s| s)];
    let row = prop::collection::vec(cell, 0..7).prop_map(|cells| cells.join(","));
    (prop::collection::vec(row, 0..5), 0..3u8).prop_map(|(rows, encoding)| {
        let text = format!(
            "ticket_number,birth_date,name,email,phone\n{}\n",
            rows.join("\n")
        );
        match encoding {
            0 => text.into_bytes(),
            1 => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
            _ => encoding_rs::SHIFT_JIS.encode(&text).0.into_owned(),
        }
    })
}

fn json_case(method: Method, path: String, role: Role, body: Vec<u8>) -> Case {
    Case {
        method,
        path,
        role,
        content_type: "application/json",
        body,
    }
}

fn case(date: &'static str) -> impl Strategy<Value = Case> {
    let login = json!({"ticket_number": ticket(RESIDENT), "birth_date": BIRTH});
    let booking = json!({"venue_id": VENUE, "date": date, "time": "10:00"});
    let operator = json!({"ticket_number": ticket(RESIDENT + 1), "birth_date": BIRTH,
        "venue_id": VENUE, "date": date, "time": "10:00"});
    let venue = json!({"name": "会場", "kind": "clinic", "booking": "central", "address": "中野区",
        "phone": "03", "vaccines": ["moderna"]});
    let day = json!({"vaccine": "moderna", "slots": [{"time": "10:00", "capacity": 5}], "access_code": null});
    let resident = json!({"ticket_number": ticket(RESIDENT + 50), "birth_date": BIRTH, "name": "住民",
        "high_risk": false, "history": []});
    let checkin = json!({"venue_id": VENUE, "date": date, "code": ticket(RESIDENT)});
    let account = json!({"role": "staff", "display_name": "受付", "venues": [VENUE]});
    prop_oneof![
        bytes_of(mutated(login)).prop_map(move |b| json_case(
            Method::POST,
            "/v1/sessions".into(),
            Role::Nobody,
            b
        )),
        bytes_of(mutated(booking)).prop_map(move |b| json_case(
            Method::POST,
            "/v1/reservations".into(),
            Role::Resident,
            b
        )),
        bytes_of(mutated(operator)).prop_map(move |b| json_case(
            Method::POST,
            "/v1/operator/reservations".into(),
            Role::Operator,
            b
        )),
        (segment("fuzz-venue"), bytes_of(mutated(venue))).prop_map(move |(id, b)| json_case(
            Method::PUT,
            format!("/v1/admin/venues/{id}"),
            Role::Admin,
            b
        )),
        (segment(date), bytes_of(mutated(day))).prop_map(move |(d, b)| json_case(
            Method::PUT,
            format!("/v1/admin/venues/{VENUE}/days/{d}"),
            Role::Admin,
            b
        )),
        bytes_of(
            prop::collection::vec(
                (0..300u64, mutated(resident)).prop_map(|(n, mut record)| {
                    // Each record its own ticket, unless the mutation changed it.
                    if record.get("ticket_number") == Some(&json!(ticket(RESIDENT + 50))) {
                        record["ticket_number"] = json!(ticket(RESIDENT + 100 + n));
                    }
                    record
                }),
                0..3
            )
            .prop_map(Value::Array)
        )
        .prop_map(move |b| json_case(
            Method::POST,
            "/v1/admin/residents".into(),
            Role::Admin,
            b
        )),
        csv_body().prop_map(|body| Case {
            method: Method::POST,
            path: "/v1/admin/residents".into(),
            role: Role::Admin,
            content_type: "text/csv",
            body
        }),
        bytes_of(mutated(checkin)).prop_map(move |b| json_case(
            Method::POST,
            "/v1/staff/checkins".into(),
            Role::Staff,
            b
        )),
        (segment("fuzz-tablet"), bytes_of(mutated(account))).prop_map(move |(id, b)| json_case(
            Method::PUT,
            format!("/v1/admin/accounts/{id}"),
            Role::Admin,
            b
        )),
        segment(date).prop_map(|d| json_case(
            Method::GET,
            format!("/v1/availability?date={d}"),
            Role::Nobody,
            vec![]
        )),
        (segment(VENUE), segment(date)).prop_map(|(v, d)| json_case(
            Method::GET,
            format!("/v1/staff/venues/{v}/days/{d}/roster"),
            Role::Staff,
            vec![]
        )),
        (segment("8700000001"), segment(BIRTH)).prop_map(|(t, b)| json_case(
            Method::GET,
            format!("/v1/operator/residents/{t}?birth_date={b}"),
            Role::Operator,
            vec![]
        )),
        segment("00000000-0000-4000-8000-000000000000").prop_map(|id| json_case(
            Method::DELETE,
            format!("/v1/reservations/{id}"),
            Role::Resident,
            vec![]
        )),
        (segment("2026-01-01T00:00:00+09:00"), segment("10")).prop_map(|(since, limit)| json_case(
            Method::GET,
            format!("/v1/admin/audit?since={since}&limit={limit}"),
            Role::Admin,
            vec![]
        )),
    ]
}

fn seed() -> u64 {
    std::env::var("VAXSLOT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

fn cases() -> usize {
    std::env::var("VAXSLOT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES_DEFAULT)
}

async fn random_requests_get_an_answer_the_contract_describes(backend: Backend) {
    let seed = seed();
    let count = cases();
    println!("fuzz seed {seed} ({count} requests; replay: VAXSLOT_FUZZ_SEED={seed})");
    let mut app = TestApp::spawn(backend).await;
    let date: &'static str = Box::leak(future_date(10).into_boxed_str());
    app.venue_day(VENUE, date, &[("10:00", 5)]).await;
    app.import_residents(RESIDENT, 2).await;
    let token = app.login(RESIDENT).await;
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = case(date);
    let (mut venues, mut accounts) = (HashSet::from([VENUE.to_owned()]), HashSet::new());
    let (mut booked, mut cancelled) = (0usize, 0usize);
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    // Tickets of imported JSON records, by whether their record was stored.
    let mut imported = HashSet::from([ticket(RESIDENT), ticket(RESIDENT + 1)]);
    let mut refused = HashSet::new();
    for n in 0..count {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let mut request = app
            .client
            .request(case.method.clone(), app.url(&case.path))
            .header("content-type", case.content_type);
        if !case.body.is_empty() {
            request = request.body(case.body.clone());
        }
        let credential = match case.role {
            Role::Nobody => None,
            Role::Resident => Some(token.as_str()),
            Role::Operator => Some(OPERATOR_KEY),
            Role::Staff => Some(STAFF_KEY),
            Role::Admin => Some(ADMIN_KEY),
        };
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let what = format!(
            "seed {seed}, request {n}: {} {} ({:?}) {}",
            case.method,
            case.path,
            case.role,
            String::from_utf8_lossy(&case.body)
                .chars()
                .take(300)
                .collect::<String>()
        );
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer: {e}; {what}"));
        let status = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.bytes().await.unwrap();
        assert!(
            status < 500,
            "{status} {}; {what}",
            String::from_utf8_lossy(&body)
        );
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["code"].as_str().map(str::to_owned))
            .filter(|_| status >= 400)
            .unwrap_or_else(|| "ok".to_owned());
        *outcomes.entry(format!("{status} {code}")).or_default() += 1;
        if case.path == "/v1/admin/residents" && case.content_type == "application/json" {
            let report: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let rejected: HashSet<u64> = report["rejected"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x["line"].as_u64()).collect())
                .unwrap_or_default();
            let records: Vec<Value> = serde_json::from_slice(&case.body).unwrap_or_default();
            for (i, record) in records.iter().enumerate() {
                let Some(number) = record["ticket_number"].as_str() else {
                    continue;
                };
                if status == 200 && !rejected.contains(&(i as u64 + 1)) {
                    imported.insert(number.to_owned());
                } else {
                    refused.insert(number.to_owned());
                }
            }
        }
        if status >= 400 {
            assert_eq!(media, "application/problem+json", "{status}; {what}");
            let problem: Value = serde_json::from_slice(&body).unwrap();
            assert!(problem["code"].is_string(), "{problem}; {what}");
            assert_eq!(problem["status"], status, "{problem}; {what}");
            continue;
        }
        // What was answered as done, to compare with what is stored.
        let segment = |i: usize| case.path.split(['/', '?']).nth(i).unwrap_or("").to_owned();
        match (case.method.as_str(), case.path.as_str()) {
            ("PUT", p) if p.starts_with("/v1/admin/venues/") && !p.contains("/days/") => {
                venues.insert(decoded(&segment(4)));
            }
            ("PUT", p) if p.starts_with("/v1/admin/accounts/") => {
                accounts.insert(decoded(&segment(4)));
            }
            ("POST", "/v1/reservations" | "/v1/operator/reservations") if status == 201 => {
                booked += 1;
            }
            ("DELETE", _) => cancelled += 1,
            _ => {}
        }
    }
    println!(
        "answers (seed {seed}): {outcomes:?}; import records stored {}, refused {}",
        imported.len(),
        refused.len()
    );
    // The server serves, and holds only what it answered as done.
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "seed {seed}");
    let (_, listed) = app.send(Method::GET, "/v1/venues", None, None).await;
    let listed: HashSet<String> = listed["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["venue_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.is_subset(&venues),
        "seed {seed}: {listed:?} vs {venues:?}"
    );
    let (_, listed) = app
        .send(Method::GET, "/v1/admin/accounts", Some(ADMIN_KEY), None)
        .await;
    let listed: HashSet<String> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.is_subset(&accounts),
        "seed {seed}: {listed:?} vs {accounts:?}"
    );
    app.kill().await;
    let store = app.open_store().await;
    // No resident stored from a refused record (nor from anything else).
    let tickets: HashSet<String> = store
        .load_residents()
        .await
        .unwrap()
        .iter()
        .map(|r| r.ticket_number.expose().to_owned())
        .collect();
    assert!(
        tickets.is_subset(&imported),
        "seed {seed}: {:?} stored but never imported",
        tickets.difference(&imported).collect::<Vec<_>>()
    );
    let only_refused: HashSet<&String> = refused.difference(&imported).collect();
    assert!(
        tickets.iter().all(|t| !only_refused.contains(t)),
        "seed {seed}: a refused record was stored"
    );
    let stored = store.load_reservations().await.unwrap();
    assert_eq!(
        stored.len(),
        booked,
        "seed {seed}: every stored reservation was answered 201"
    );
    let active = stored
        .iter()
        .filter(|r| r.status == vaxslot::domain::ReservationStatus::Booked)
        .count();
    assert_eq!(active, booked - cancelled, "seed {seed}");
}

fn decoded(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

on_both_stores!(random_requests_get_an_answer_the_contract_describes);
