//! Operator holds and booking windows, decided inside the venue-day actor
//! with the capacity: a hold is never sold to residents before its release,
//! and a window never opens early or closes late, under concurrency.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, TestApp, future_date, ticket};

fn rfc3339_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .with_timezone(&vaxslot::domain::municipality_offset())
        .to_rfc3339()
}

async fn put_day(app: &TestApp, date: &str, day: Value) {
    app.put_venue("hold-clinic", "central", &["moderna"]).await;
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/hold-clinic/days/{date}"),
            Some(ADMIN_KEY),
            Some(&day),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// The slot's `(remaining, held_remaining)` as `key` sees it (`None`: public).
async fn slot_view(app: &TestApp, date: &str, key: Option<&str>) -> (u64, Option<u64>) {
    let (_, body) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}&venue_id=hold-clinic"),
            key,
            None,
        )
        .await;
    let slot = &body["days"][0]["slots"][0];
    (
        slot["remaining"].as_u64().unwrap(),
        slot["held_remaining"].as_u64(),
    )
}

async fn book_resident(app: &TestApp, token: &str, date: &str) -> (u16, Value) {
    app.book(token, "hold-clinic", date, "10:00").await
}

async fn book_operator(app: &TestApp, ticket_number: &str, date: &str) -> (u16, Value) {
    app.send(
        Method::POST,
        "/v1/operator/reservations",
        Some(OPERATOR_KEY),
        Some(
            &json!({"ticket_number": ticket_number, "birth_date": "1960-01-01",
            "venue_id": "hold-clinic", "date": date, "time": "10:00"}),
        ),
    )
    .await
}

async fn held_places_go_only_to_operators_until_the_release(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    put_day(
        &app,
        &date,
        json!({"vaccine": "moderna", "slots": [{"time": "10:00", "capacity": 10, "operator_hold": 4}]}),
    )
    .await;
    assert_eq!(
        slot_view(&app, &date, None).await,
        (6, None),
        "public: residents may book 6"
    );
    assert_eq!(
        slot_view(&app, &date, Some(OPERATOR_KEY)).await,
        (6, Some(4))
    );
    assert_eq!(held_open_metric(&app).await, 4);

    // 30 residents and 4 operator calls, all at once.
    app.import_residents(4_700_000_000, 34).await;
    let tokens = app.login_many(4_700_000_000, 30).await;
    let residents = futures::future::join_all(tokens.iter().map(|t| book_resident(&app, t, &date)));
    let operators = futures::future::join_all((30..34).map(|i| {
        let ticket_number = ticket(4_700_000_000 + i);
        let (app, date) = (&app, &date);
        async move { book_operator(app, &ticket_number, date).await }
    }));
    let (residents, operators) = tokio::join!(residents, operators);
    let created = |answers: &[(u16, Value)]| answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(
        created(&residents),
        6,
        "residents get exactly the unheld places"
    );
    assert_eq!(created(&operators), 4, "operators get the held ones");
    assert!(
        residents
            .iter()
            .all(|(s, b)| *s == 201 || b["code"] == "slot_full")
    );
    assert_eq!(
        slot_view(&app, &date, Some(OPERATOR_KEY)).await,
        (0, Some(0))
    );
    assert_eq!(app.slots("hold-clinic", &date).await[0].2, 0);
    assert_eq!(
        held_open_metric(&app).await,
        0,
        "the operators took the held places"
    );
}

async fn after_the_release_residents_may_take_what_is_left(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.import_residents(4_800_000_000, 11).await;
    let tokens = app.login_many(4_800_000_000, 11).await;
    let release = rfc3339_in(2);
    put_day(
        &app,
        &date,
        json!({"vaccine": "moderna", "hold_release_at": release,
            "slots": [{"time": "10:00", "capacity": 10, "operator_hold": 4}]}),
    )
    .await;
    let answers =
        futures::future::join_all(tokens[..7].iter().map(|t| book_resident(&app, t, &date))).await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 6);
    // Polled (bounded) until the release has passed: then the held places
    // are anyone's.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slot_view(&app, &date, None).await.0 == 0 {
        assert!(Instant::now() < deadline, "the hold was never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        slot_view(&app, &date, Some(OPERATOR_KEY)).await,
        (4, Some(0))
    );
    let answers =
        futures::future::join_all(tokens[6..].iter().map(|t| book_resident(&app, t, &date))).await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 4);
    assert_eq!(app.slots("hold-clinic", &date).await[0].2, 0);
}

async fn a_window_never_opens_early_nor_closes_late(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.import_residents(4_900_000_000, 400).await;
    let tokens = app.login_many(4_900_000_000, 400).await;
    let opens_at = rfc3339_in(2);
    let closes_at = rfc3339_in(4);
    put_day(
        &app,
        &date,
        json!({"vaccine": "moderna", "opens_at": opens_at, "closes_at": closes_at,
            "slots": [{"time": "10:00", "capacity": 1000}]}),
    )
    .await;
    let (_, availability) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}&venue_id=hold-clinic"),
            None,
            None,
        )
        .await;
    let shown = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(availability["days"][0][field].as_str().unwrap())
            .unwrap()
    };
    let (opens, closes) = (
        chrono::DateTime::parse_from_rfc3339(&opens_at).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&closes_at).unwrap(),
    );
    assert_eq!((shown("opens_at"), shown("closes_at")), (opens, closes));

    // Before: not_open_yet with opens_at and Retry-After.
    let response = app
        .client
        .post(app.url("/v1/reservations"))
        .bearer_auth(&tokens[0])
        .json(&json!({"venue_id": "hold-clinic", "date": date, "time": "10:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_open_yet");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(body["opens_at"].as_str().unwrap()).unwrap(),
        opens
    );

    // Fire across both boundaries, 8 at a time every 100 ms, residents and
    // operators mixed, until the window has closed.
    let mut outcomes = Vec::new();
    let mut next = 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    while outcomes
        .last()
        .is_none_or(|(code, _): &(String, _)| code != "booking_window_closed")
    {
        assert!(
            Instant::now() < deadline && next + 8 < tokens.len(),
            "the window never closed"
        );
        let round = futures::future::join_all((next..next + 8).map(|i| {
            let (app, date, token) = (&app, &date, &tokens[i]);
            async move {
                if i % 2 == 0 {
                    book_resident(app, token, date).await
                } else {
                    book_operator(app, &ticket(4_900_000_000 + i as u64), date).await
                }
            }
        }))
        .await;
        next += 8;
        for (status, body) in round {
            let code = if status == 201 {
                "created".to_owned()
            } else {
                body["code"].as_str().unwrap().to_owned()
            };
            let created_at = body["created_at"]
                .as_str()
                .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap());
            outcomes.push((code, created_at));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created: Vec<_> = outcomes.iter().filter(|(c, _)| c == "created").collect();
    assert!(
        !created.is_empty(),
        "some bookings landed inside the window"
    );
    for (_, at) in &created {
        let at = at.unwrap();
        assert!(
            at >= opens && at < closes,
            "booked at {at}, window {opens}..{closes}"
        );
    }
    assert!(
        outcomes
            .iter()
            .all(|(c, _)| c == "created" || c == "not_open_yet" || c == "booking_window_closed")
    );
    // Once closed, closed: nothing after the first booking_window_closed.
    let first_closed = outcomes
        .iter()
        .position(|(c, _)| c == "booking_window_closed")
        .unwrap();
    assert!(
        outcomes[first_closed..]
            .iter()
            .all(|(c, _)| c != "not_open_yet")
    );
    let (status, body) = book_operator(&app, &ticket(4_900_000_399), &date).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("booking_window_closed"))
    );
}

async fn bad_holds_and_windows_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_venue("hold-clinic", "central", &["moderna"]).await;
    let date = future_date(20);
    for (day, code) in [
        (
            json!({"vaccine": "moderna", "slots": [{"time": "10:00", "capacity": 3, "operator_hold": 4}]}),
            "invalid_slots",
        ),
        (
            json!({"vaccine": "moderna", "opens_at": "tomorrow", "slots": [{"time": "10:00", "capacity": 3}]}),
            "invalid_window",
        ),
        (
            json!({"vaccine": "moderna", "opens_at": rfc3339_in(10), "closes_at": rfc3339_in(5),
            "slots": [{"time": "10:00", "capacity": 3}]}),
            "invalid_window",
        ),
    ] {
        let (status, body) = app
            .send(
                Method::PUT,
                &format!("/v1/admin/venues/hold-clinic/days/{date}"),
                Some(ADMIN_KEY),
                Some(&day),
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{day}");
    }
}

/// `vaxslot_slots_held_open` as `/metrics` shows it.
async fn held_open_metric(app: &TestApp) -> u64 {
    let (_, body) = app.send(Method::GET, "/metrics", None, None).await;
    body.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("vaxslot_slots_held_open "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the held-places gauge") as u64
}

on_both_stores!(
    held_places_go_only_to_operators_until_the_release,
    after_the_release_residents_may_take_what_is_left,
    a_window_never_opens_early_nor_closes_late,
    bad_holds_and_windows_are_refused,
);
