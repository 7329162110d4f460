//! Admission control: far more concurrent requests than the limits allow.
//! The excess gets `503 overloaded` with `Retry-After` at once; accepted
//! requests complete; memory stays bounded; the process stays up.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::helpers::{Backend, TestApp, future_date};

/// Requests fired at once, against an in-flight limit of 4.
const HERD: u64 = 600;
/// An overloaded answer must be fast: it does no work.
const REFUSAL_MAX: Duration = Duration::from_secs(2);
/// The server's resident memory after the herd (generous: a debug build).
const RSS_MAX_KIB: u64 = 512 * 1024;

async fn a_herd_far_over_the_limits_is_shed_quickly_and_the_rest_served(backend: Backend) {
    let app = TestApp::spawn_with_env(
        backend,
        &[
            ("VAXSLOT_MAX_IN_FLIGHT", "4"),
            ("VAXSLOT_VENUE_DAY_QUEUE_MAX", "4"),
        ],
    )
    .await;
    let date = future_date(30);
    app.venue_day("nakano-sunplaza", &date, &[("10:00", 10_000)])
        .await;
    app.import_residents(2_300_000_000, HERD).await;
    // Log in two at a time, under the limit (a login waits for the store's
    // shared lockout, so more at once would be shed too).
    let tokens: Vec<String> = {
        use futures::StreamExt;
        futures::stream::iter(2_300_000_000..2_300_000_000 + HERD)
            .map(|ticket| app.login(ticket))
            .buffered(2)
            .collect()
            .await
    };

    let answers = futures::future::join_all(tokens.iter().map(|token| {
        let app = &app;
        let date = &date;
        async move {
            let started = Instant::now();
            let response = app
                .client
                .post(app.url("/v1/reservations"))
                .bearer_auth(token)
                .json(&serde_json::json!({"venue_id": "nakano-sunplaza", "date": date, "time": "10:00"}))
                .send()
                .await
                .expect("the server answers");
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: serde_json::Value = response.json().await.expect("json");
            (status, body, retry_after, started.elapsed())
        }
    }))
    .await;

    let overloaded: Vec<_> = answers.iter().filter(|(s, ..)| *s == 503).collect();
    let created = answers.iter().filter(|(s, ..)| *s == 201).count();
    assert!(!overloaded.is_empty(), "the limits were exceeded");
    assert!(created > 0, "accepted requests complete");
    assert_eq!(overloaded.len() + created, HERD as usize, "only 201 or 503");
    for (_, body, retry_after, elapsed) in &overloaded {
        assert_eq!(body["code"], "overloaded", "{body}");
        assert!(retry_after, "503 overloaded carries Retry-After");
        assert!(*elapsed < REFUSAL_MAX, "refused in {elapsed:?}");
    }
    // What was accepted is exactly what is booked.
    let remaining = app.slots("nakano-sunplaza", &date).await[0].2;
    assert_eq!(10_000 - remaining, created as u64);
    // Still up, memory bounded.
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    let rss = app.rss_kib();
    assert!(rss < RSS_MAX_KIB, "RSS {rss} KiB");
}

on_both_stores!(a_herd_far_over_the_limits_is_shed_quickly_and_the_rest_served);

/// `GET /v1/venues`'s status and `Retry-After`.
async fn venues_answer(app: &TestApp) -> (u16, Option<String>, serde_json::Value) {
    let response = app
        .client
        .get(app.url("/v1/venues"))
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry_after, body)
}

/// Polls (bounded) until `GET /v1/venues` answers `want`.
async fn until_venues_answer(app: &TestApp, want: u16) -> (u16, Option<String>, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = venues_answer(app).await;
        if answer.0 == want || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_in_flight_gate_refuses_v1_beyond_its_limit_but_never_health(backend: Backend) {
    let app = TestApp::spawn_with_env(backend, &[("VAXSLOT_MAX_IN_FLIGHT", "2")]).await;
    let mut held = app.hold_in_flight(2).await;
    // Both held requests are in flight once the third is refused.
    let (status, retry_after, body) = until_venues_answer(&app, 503).await;
    if status != 503 {
        // Say what became of the held requests, if the server answered them.
        let mut answers = Vec::new();
        for stream in &mut held {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0u8; 2048];
            let read =
                tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await;
            answers.push(match read {
                Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
                Ok(Err(e)) => format!("read error {e}"),
                Err(_) => "still held (no answer)".to_owned(),
            });
        }
        panic!("a third /v1 request was served: {body}; held requests: {answers:?}");
    }
    assert_eq!(body["code"], "overloaded");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let started = Instant::now();
    assert_eq!(venues_answer(&app).await.0, 503);
    assert!(started.elapsed() < REFUSAL_MAX, "refused at once");
    for path in ["/healthz", "/metrics", "/readyz"] {
        let (status, _) = app.send(Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path} is never refused");
    }
    // The held requests go away: /v1 is served again.
    drop(held);
    let (status, _, body) = until_venues_answer(&app, 200).await;
    assert_eq!(status, 200, "{body}");
}

on_both_stores!(the_in_flight_gate_refuses_v1_beyond_its_limit_but_never_health);
