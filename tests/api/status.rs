//! `GET /v1/admin/status`: the SRE's launch-day figures, from a real herd.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, SRE_KEY, TestApp, future_date, ticket};

async fn status(app: &TestApp) -> Value {
    let (status, body) = app
        .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn the_status_shows_the_last_seconds_of_a_herd_and_no_personal_data(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(10);
    app.venue_day("status-hall", &date, &[("10:00", 15)]).await;
    app.import_residents(5_100_000_000, 20).await;
    let tokens = app.login_many(5_100_000_000, 20).await;
    let answers = futures::future::join_all(
        tokens
            .iter()
            .map(|t| app.book(t, "status-hall", &date, "10:00")),
    )
    .await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 15);

    // The figures cover complete seconds: polled (bounded) until the
    // herd's seconds are all among them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let body = status(&app).await;
        let done = body["bookings"]["committed_per_s"].as_f64() == Some(1.5)
            && body["bookings"]["refused_per_s"]["slot_full"].as_f64() == Some(0.5);
        if done || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        body["bookings"]["committed_per_s"].as_f64(),
        Some(1.5),
        "{body}"
    );
    assert_eq!(
        body["bookings"]["refused_per_s"]["slot_full"].as_f64(),
        Some(0.5),
        "{body}"
    );
    assert!(body["bookings"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(body["logins"]["ok_per_s"].as_f64(), Some(2.0), "{body}");
    assert_eq!(body["slots"]["capacity"].as_u64(), Some(15));
    assert_eq!(body["slots"]["remaining"].as_u64(), Some(0));
    assert_eq!(body["kill_switch"]["engaged"], false);
    assert_eq!(body["store"]["up"], true);
    assert_eq!(body["store"]["kind"], backend.kind());
    assert!(body["in_flight"].as_u64().unwrap() >= 1, "this request");
    assert_eq!(body["venue_day_actors"].as_u64(), Some(1));
    assert!(body["started_at"].as_str().is_some() && body["version"].as_str().is_some());
    let text = body.to_string();
    assert!(
        !text.contains(&ticket(5_100_000_000)),
        "no personal data: {text}"
    );

    // Only SREs and admins.
    let (status, _) = app
        .send(Method::GET, "/v1/admin/status", Some(&tokens[0]), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.send(Method::GET, "/v1/admin/status", None, None).await;
    assert_eq!(status, 401);
}

on_both_stores!(the_status_shows_the_last_seconds_of_a_herd_and_no_personal_data);
