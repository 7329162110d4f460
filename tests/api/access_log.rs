//! The access log: route templates, statuses, codes and durations; never a
//! path with an id, a query string, a token or personal data; off by default.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, future_date, ticket};

async fn access_lines(app: &TestApp) -> Vec<String> {
    // The log file is written by the server as it goes: polled briefly.
    for _ in 0..50 {
        let lines: Vec<String> = app
            .logs()
            .lines()
            .filter(|l| l.contains("route="))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 4 {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.logs()
        .lines()
        .filter(|l| l.contains("route="))
        .map(str::to_owned)
        .collect()
}

async fn the_access_log_names_routes_statuses_and_codes_and_nobody(backend: Backend) {
    let app = TestApp::spawn_with_env(backend, &[("VAXSLOT_ACCESS_LOG", "all")]).await;
    let date = future_date(10);
    app.venue_day("log-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(5_300_000_000, 1).await;
    let token = app.login(5_300_000_000).await;
    let (status, booked) = app.book(&token, "log-clinic", &date, "10:00").await;
    assert_eq!(status, 201);
    let id = booked["reservation_id"].as_str().unwrap();
    app.reservation(&token, id).await;
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": ticket(5_300_000_000), "birth_date": "1999-09-09"})),
        )
        .await;
    assert_eq!(status, 401);
    app.send(
        Method::GET,
        &format!("/v1/availability?date={date}&venue_id=log-clinic"),
        None,
        None,
    )
    .await;

    let lines = access_lines(&app).await;
    let all = lines.join("\n");
    assert!(all.contains("route=/v1/reservations/{id}"), "{all}");
    assert!(
        all.contains("status=201") && all.contains("route=/v1/reservations "),
        "{all}"
    );
    assert!(
        all.contains("code=\"invalid_credentials\"") || all.contains("code=invalid_credentials"),
        "{all}"
    );
    assert!(all.contains("duration_us="), "{all}");
    for secret in [
        id,
        &ticket(5_300_000_000),
        &token,
        "venue_id=log-clinic",
        "1999-09-09",
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the access log:\n{all}"
        );
    }
}

async fn the_access_log_is_off_unless_asked_for(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.send(Method::GET, "/v1/venues", None, None).await;
    app.send(Method::GET, "/healthz", None, None).await;
    assert!(
        !app.logs().lines().any(|l| l.contains("route=")),
        "{}",
        app.logs()
    );
}

on_both_stores!(
    the_access_log_names_routes_statuses_and_codes_and_nobody,
    the_access_log_is_off_unless_asked_for,
);
