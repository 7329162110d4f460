//! Every answer that carries personal data or depends on the caller says
//! `Cache-Control: no-store, private`, whatever its status: a table over the
//! whole route table, so that a new route cannot forget it. And every answer
//! says `X-Content-Type-Options: nosniff` (health, metrics and pages too).

use reqwest::Method;

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, SRE_KEY, STAFF_KEY, TestApp, future_date};

fn says_nosniff(response: &reqwest::Response, what: &str) {
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(b"nosniff".as_slice()),
        "{what}"
    );
}

async fn every_personal_or_caller_dependent_answer_is_no_store(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(10);
    app.venue_day("cache-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(5_400_000_000, 1).await;
    let token = app.login(5_400_000_000).await;
    let (_, booked) = app.book(&token, "cache-clinic", &date, "10:00").await;
    let id = booked["reservation_id"].as_str().unwrap().to_owned();
    let day = format!("/v1/admin/venues/cache-clinic/days/{date}");
    let roster = format!("/v1/staff/venues/cache-clinic/days/{date}/roster");
    let reservation = format!("/v1/reservations/{id}");
    let operator_cancel =
        format!("/v1/operator/reservations/{id}?ticket_number=5400000000&birth_date=1960-01-02");
    let availability = format!("/v1/availability?date={date}");
    // (method, path, credential): every route of api/mod.rs, answered or refused.
    let routes: Vec<(Method, &str, Option<&str>)> = vec![
        (Method::GET, "/v1/reservations", Some(&token)),
        (Method::POST, "/v1/reservations", Some(&token)),
        (Method::POST, "/v1/sessions", None),
        (Method::GET, &availability, Some(OPERATOR_KEY)),
        (Method::GET, "/v1/me", Some(&token)),
        (Method::GET, "/v1/me", None),
        (Method::GET, "/v1/venues", Some(ADMIN_KEY)),
        (Method::GET, "/v1/info", None),
        (Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY)),
        (Method::PUT, "/v1/admin/kill-switch", Some(SRE_KEY)),
        (Method::POST, "/v1/admin/residents", Some(ADMIN_KEY)),
        (Method::GET, "/v1/admin/accounts", Some(ADMIN_KEY)),
        (Method::GET, "/v1/admin/audit", Some(ADMIN_KEY)),
        (Method::GET, "/v1/admin/status", Some(SRE_KEY)),
        (
            Method::POST,
            "/v1/operator/reservations",
            Some(OPERATOR_KEY),
        ),
        (Method::DELETE, &operator_cancel, Some(OPERATOR_KEY)),
        (
            Method::GET,
            "/v1/operator/residents/5400000000?birth_date=1960-01-01",
            Some(OPERATOR_KEY),
        ),
        (Method::POST, "/v1/staff/checkins", Some(STAFF_KEY)),
        (Method::GET, "/v1/staff/venues", Some(STAFF_KEY)),
        (Method::GET, &reservation, Some(&token)),
        (Method::DELETE, &reservation, None),
        (
            Method::PUT,
            "/v1/admin/venues/cache-clinic",
            Some(ADMIN_KEY),
        ),
        (Method::PUT, &day, Some(ADMIN_KEY)),
        (Method::PUT, "/v1/admin/accounts/cache-op", Some(ADMIN_KEY)),
        (
            Method::POST,
            "/v1/admin/accounts/cache-op/rotate",
            Some(ADMIN_KEY),
        ),
        (
            Method::DELETE,
            "/v1/admin/accounts/cache-op",
            Some(ADMIN_KEY),
        ),
        (Method::GET, &roster, Some(STAFF_KEY)),
        (Method::GET, "/v1/no-such-route", None),
    ];
    // The table covers the whole route table: a new /v1 route must join it.
    let route_table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"),
    )
    .unwrap();
    for pattern in route_table
        .split("resource(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| p.starts_with("/v1/"))
    {
        let covered = routes
            .iter()
            .any(|(_, path, _)| crate::helpers::fits_route(pattern, path));
        assert!(covered, "{pattern} is not in this test's table");
    }
    for (method, path, credential) in routes {
        let mut request = app.client.request(method.clone(), app.url(path));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            cache.contains("no-store") && cache.contains("private"),
            "{method} {path} ({status}) says Cache-Control: {cache:?}"
        );
        says_nosniff(&response, &format!("{method} {path} ({status})"));
    }
    // The public reads without a credential are public.
    for path in [availability.as_str(), "/v1/venues"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        let cache = cache.unwrap_or_default();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(
            cache.starts_with("public,") && !cache.contains("private"),
            "{path}: {cache}"
        );
    }
}

/// A path written with percent-escapes the router decodes (`%76` is `v`)
/// is the same route, and as private: no cache keeps a resident's answer.
#[tokio::test]
async fn a_percent_escaped_path_is_as_private_as_the_plain_one() {
    let app = TestApp::spawn(Backend::Embedded).await;
    app.import_residents(5_500_000_000, 1).await;
    let token = app.login(5_500_000_000).await;
    let response = app
        .client
        .get(app.url("/%761/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the router decodes %76");
    let cache = response.headers()["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("no-store") && cache.contains("private"),
        "{cache}"
    );
}

#[tokio::test]
async fn health_metrics_and_pages_say_nosniff_too() {
    let app = TestApp::spawn(Backend::Embedded).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/staff/",
        "/assets/common.js",
        "/no-such-page",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        says_nosniff(&response, &format!("{path} ({})", response.status()));
    }
}

on_both_stores!(every_personal_or_caller_dependent_answer_is_no_store);
