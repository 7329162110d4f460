//! A store written by the previous release loads whole: reservations in
//! every status, cancellations (a cascade among them), residents, the kill
//! switch and a stored `Idempotency-Key`; booking then continues with exact
//! capacity. The fixture (tests/fixtures/release-1, made by its `make.sh`
//! with the release at commit d768052) was written on 2026-12-01 in the
//! Tokyo afternoon; the server's clock starts that evening, so its days are
//! ahead and the key is inside its 24-hour window whenever the test runs.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, SRE_KEY, TestApp};

const CLOCK_START: &str = "2026-12-01T21:00:00+09:00";
const VENUE: &str = "fixture-hall";
const FIRST_DAY: &str = "2026-12-10";
const SECOND_DAY: &str = "2027-01-07";

fn fixture(part: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/release-1")
        .join(part)
}

/// `(time, remaining)` of each slot of a fixture day.
async fn remaining(app: &TestApp, date: &str) -> Vec<(String, u64)> {
    app.slots(VENUE, date)
        .await
        .into_iter()
        .map(|(time, _, remaining)| (time, remaining))
        .collect()
}

/// `(date, dose, status)` of each of a resident's reservations, sorted.
async fn reservations(app: &TestApp, token: &str) -> Vec<(String, u64, String)> {
    let (status, body) = app
        .send(Method::GET, "/v1/reservations", Some(token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut list: Vec<_> = body["reservations"]
        .as_array()
        .expect("reservations")
        .iter()
        .map(|r| {
            (
                r["date"].as_str().unwrap().to_owned(),
                r["dose"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

fn booked(date: &str, dose: u64, status: &str) -> (String, u64, String) {
    (date.to_owned(), dose, status.to_owned())
}

async fn a_store_written_by_the_previous_release_loads_whole(backend: Backend) {
    let app = TestApp::spawn_on_fixture(
        backend,
        &fixture("embedded"),
        &fixture("redis/dump.rdb"),
        &[("VAXSLOT_CLOCK_START", CLOCK_START)],
    )
    .await;

    // The switch, as the previous release left it.
    let (status, switch) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(switch["engaged"], true, "{switch}");
    assert_eq!(switch["reason"], "fixture: engaged by the first release");

    // Residents, with their reservations in every status.
    let one = app.login_as("1311480001", "1950-04-01").await;
    let two = app.login_as("1311480002", "1951-05-02").await;
    let three = app.login_as("1311480003", "1952-06-03").await;
    let four = app.login_as("1311480004", "1953-07-04").await;
    assert_eq!(
        reservations(&app, &one).await,
        vec![
            booked(FIRST_DAY, 1, "booked"),
            booked(SECOND_DAY, 2, "booked")
        ]
    );
    assert_eq!(
        reservations(&app, &two).await,
        vec![booked(FIRST_DAY, 2, "booked")]
    );
    assert_eq!(
        reservations(&app, &three).await,
        vec![booked(FIRST_DAY, 1, "cancelled")]
    );
    assert_eq!(
        reservations(&app, &four).await,
        vec![
            booked(FIRST_DAY, 1, "cancelled"),
            booked(SECOND_DAY, 2, "cancelled")
        ],
        "the cascade's cancellations"
    );
    let (_, me) = app.send(Method::GET, "/v1/me", Some(&two), None).await;
    assert_eq!(me["name"], "中野 二郎", "{me}");
    assert_eq!(me["history"][0]["vaccine"], "moderna", "{me}");

    // Capacity: exactly what the stored active reservations leave.
    assert_eq!(
        remaining(&app, FIRST_DAY).await,
        vec![("10:00".into(), 2), ("10:30".into(), 1)]
    );
    assert_eq!(remaining(&app, SECOND_DAY).await, vec![("10:00".into(), 1)]);

    // Still closed: a booking is refused until the switch is released.
    let body = json!({"venue_id": VENUE, "date": FIRST_DAY, "time": "10:00"});
    let (status, refused) = app.book(&three, VENUE, FIRST_DAY, "10:00").await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (503, Some("booking_closed"))
    );
    app.set_kill_switch(false).await;

    // The stored Idempotency-Key replays its first answer, and refuses
    // another request.
    let keyed = |body: &Value| {
        app.client
            .post(app.url("/v1/reservations"))
            .bearer_auth(&one)
            .header("idempotency-key", "fixture-key-1")
            .json(body)
    };
    let replay = keyed(&body).send().await.expect("sent");
    assert_eq!(replay.status(), 201);
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(
        (replayed["date"].as_str(), replayed["dose"].as_u64()),
        (Some(FIRST_DAY), Some(1))
    );
    assert_eq!(replayed["status"], "booked");
    let other = json!({"venue_id": VENUE, "date": FIRST_DAY, "time": "10:30"});
    let mismatch = keyed(&other).send().await.expect("sent");
    assert_eq!(mismatch.status(), 422);
    assert_eq!(
        remaining(&app, FIRST_DAY).await[0].1,
        2,
        "a replay books nothing"
    );

    // Booking continues with exact capacity: two places left at 10:00.
    app.import(json!([
        {"ticket_number": "1311480005", "birth_date": "1960-01-01", "name": "中野 五郎",
         "high_risk": false, "history": []},
        {"ticket_number": "1311480006", "birth_date": "1960-01-01", "name": "中野 六郎",
         "high_risk": false, "history": []}
    ]))
    .await;
    let five = app.login_as("1311480005", "1960-01-01").await;
    let six = app.login_as("1311480006", "1960-01-01").await;
    assert_eq!(app.book(&three, VENUE, FIRST_DAY, "10:00").await.0, 201);
    assert_eq!(app.book(&five, VENUE, FIRST_DAY, "10:00").await.0, 201);
    let (status, full) = app.book(&six, VENUE, FIRST_DAY, "10:00").await;
    assert_eq!(
        (status, full["code"].as_str()),
        (409, Some("slot_full")),
        "{full}"
    );
    // A cancelled dose freed its place: resident four's dose 2 slot.
    let (status, body) = app.book(&six, VENUE, SECOND_DAY, "10:00").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(remaining(&app, SECOND_DAY).await, vec![("10:00".into(), 0)]);
    // The venue as stored.
    let (status, venues) = app
        .send(Method::GET, "/v1/venues", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(venues["venues"][0]["name"], "フィクスチャ会館", "{venues}");
}

/// The first release ran on one Redis only, so there is no cluster fixture:
/// the embedded store and a single Redis.
mod a_store_written_by_the_previous_release_loads_whole {
    use crate::helpers::Backend;

    #[tokio::test]
    async fn embedded() {
        super::a_store_written_by_the_previous_release_loads_whole(Backend::Embedded).await
    }

    #[tokio::test]
    async fn redis() {
        super::a_store_written_by_the_previous_release_loads_whole(Backend::Redis).await
    }
}
