//! Login safety: per-ticket lockout, a per-address limit on failed logins
//! only, identical answers for unknown tickets and wrong birth dates.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, ticket};

async fn login_attempt(
    app: &TestApp,
    ticket_number: &str,
    birth_date: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let response = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"ticket_number": ticket_number, "birth_date": birth_date}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

async fn five_failures_lock_the_ticket_even_for_the_right_birth_date(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.import_residents(1_900_000_000, 2).await;
    let known = ticket(1_900_000_000);
    let unknown = ticket(1_900_000_009);
    for attempt in 1..=5 {
        let wrong = login_attempt(&app, &known, "1999-09-09").await;
        let missing = login_attempt(&app, &unknown, "1999-09-09").await;
        assert_eq!(
            (wrong.0, &wrong.2["code"]),
            (401, &json!("invalid_credentials")),
            "attempt {attempt}"
        );
        assert_eq!(
            wrong.2, missing.2,
            "unknown ticket and wrong birth date look the same"
        );
    }
    let (status, retry_after, body) = login_attempt(&app, &known, "1960-01-01").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((14 * 60..=15 * 60).contains(&seconds), "{seconds}");
    // An unknown ticket locks the same way: the lock tells nothing.
    let (status, _, body) = login_attempt(&app, &unknown, "1960-01-01").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts"))
    );
    // Another resident is not affected.
    let (status, _, _) = login_attempt(&app, &ticket(1_900_000_001), "1960-01-01").await;
    assert_eq!(status, 201);
}

async fn failed_logins_are_limited_per_address_successful_ones_never(backend: Backend) {
    let app =
        TestApp::spawn_with_env(backend, &[("VAXSLOT_LOGIN_FAILURES_PER_ADDR_MAX", "10")]).await;
    app.import_residents(1_910_000_000, 80).await;
    // Carrier NAT at 9:00: many residents, one address, all succeeding.
    for t in 0..70 {
        let (status, _, body) = login_attempt(&app, &ticket(1_910_000_000 + t), "1960-01-01").await;
        assert_eq!(status, 201, "success {t}: {body}");
    }
    // Ten failures (different tickets, so no ticket lock) are allowed…
    for t in 0..10 {
        let (status, _, _) = login_attempt(&app, &ticket(1_910_000_000 + t), "1999-09-09").await;
        assert_eq!(status, 401);
    }
    // …the eleventh is past the limit, and then the address waits a minute.
    let (status, _, _) = login_attempt(&app, &ticket(1_910_000_010), "1999-09-09").await;
    assert_eq!(status, 401);
    let (status, retry_after, body) =
        login_attempt(&app, &ticket(1_910_000_070), "1960-01-01").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&seconds));
}

async fn tokens_expire_and_name_no_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.import_residents(1_920_000_000, 1).await;
    let (status, _, body) = login_attempt(&app, &ticket(1_920_000_000), "1960-01-01").await;
    assert_eq!(status, 201);
    let token = body["token"].as_str().unwrap();
    assert!(!token.contains(&ticket(1_920_000_000)));
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.signed_duration_since(chrono::Utc::now());
    assert!(lifetime <= chrono::Duration::minutes(30) && lifetime > chrono::Duration::minutes(29));
    // A token with one character changed is refused.
    let mut forged = token.to_owned().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (status, _) = app
        .send(
            Method::GET,
            "/v1/me",
            Some(std::str::from_utf8(&forged).unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 401);
}

async fn a_token_expires_and_is_then_refused(backend: Backend) {
    let app = TestApp::spawn_with_env(backend, &[("VAXSLOT_TOKEN_LIFETIME_S", "1")]).await;
    app.import_residents(1_930_000_000, 1).await;
    let (status, _, body) = login_attempt(&app, &ticket(1_930_000_000), "1960-01-01").await;
    assert_eq!(status, 201);
    let token = body["token"].as_str().unwrap().to_owned();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires_at.signed_duration_since(chrono::Utc::now()) <= chrono::Duration::seconds(1));
    let (status, _) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200, "valid until it expires");
    // Watch it expire: polled, at most a few seconds past `expires_at`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert!(
        chrono::Utc::now() >= expires_at,
        "refused only once expired"
    );
    // Booking with it is refused too, and nothing is booked.
    let (status, _) = app
        .book(&token, "no-such-venue", "2030-01-01", "10:00")
        .await;
    assert_eq!(status, 401);
}

on_both_stores!(
    a_token_expires_and_is_then_refused,
    five_failures_lock_the_ticket_even_for_the_right_birth_date,
    failed_logins_are_limited_per_address_successful_ones_never,
    tokens_expire_and_name_no_one,
);
