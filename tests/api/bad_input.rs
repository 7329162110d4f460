//! Bad input gets a clear problem+json answer with a stable code, nothing is
//! half-written, and the server keeps serving.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{ADMIN_KEY, Backend, STAFF_KEY, TestApp, future_date};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, serde_json::Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, media, body)
}

/// (name, method, path, bearer, content type, body, expected status, expected code)
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    Option<&'a str>,
    &'a str,
    Vec<u8>,
    u16,
    &'a str,
);

async fn every_kind_of_bad_input_gets_its_status_and_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(7_000_000_000, 1).await;
    let token = app.login(7_000_000_000).await;
    let json = "application/json";
    let booking = |body: serde_json::Value| serde_json::to_vec(&body).unwrap();

    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            b"{\"venue_id\": ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": 7, "date": date, "time": "14:00"})),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue": "clinic-001", "date": date, "time": "14:00"})),
            400,
            "invalid_json",
        ),
        (
            "not JSON at all",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            "text/plain",
            b"hello".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over 16 KiB",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            vec![b' '; 16 * 1024 + 1],
            413,
            "payload_too_large",
        ),
        (
            "unknown venue",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "nowhere", "date": date, "time": "14:00"})),
            404,
            "not_found",
        ),
        (
            "unknown day",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "clinic-001", "date": future_date(31), "time": "14:00"})),
            404,
            "not_found",
        ),
        (
            "unknown slot",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "clinic-001", "date": date, "time": "15:00"})),
            404,
            "not_found",
        ),
        (
            "bad time",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "clinic-001", "date": date, "time": "25:00"})),
            400,
            "invalid_time",
        ),
        (
            "bad date",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "clinic-001", "date": "2030-02-30", "time": "14:00"})),
            400,
            "invalid_date",
        ),
        (
            "bad dose",
            Method::POST,
            "/v1/reservations",
            Some(&token),
            json,
            booking(json!({"venue_id": "clinic-001", "date": date, "time": "14:00", "dose": 10})),
            400,
            "invalid_dose",
        ),
        (
            "missing token",
            Method::POST,
            "/v1/reservations",
            None,
            json,
            booking(json!({"venue_id": "clinic-001", "date": date, "time": "14:00"})),
            401,
            "unauthorized",
        ),
        (
            "forged token",
            Method::GET,
            "/v1/me",
            Some("abc.def"),
            json,
            vec![],
            401,
            "unauthorized",
        ),
        (
            "resident on an admin route",
            Method::PUT,
            "/v1/admin/venues/x",
            Some(&token),
            json,
            booking(json!({"name": "x", "kind": "clinic", "booking": "central", "vaccines": []})),
            403,
            "forbidden",
        ),
        (
            "resident on the import",
            Method::POST,
            "/v1/admin/residents",
            Some(&token),
            json,
            b"[]".to_vec(),
            403,
            "forbidden",
        ),
        (
            "staff key on a resident route",
            Method::GET,
            "/v1/me",
            Some(STAFF_KEY),
            json,
            vec![],
            403,
            "forbidden",
        ),
        (
            "bad venue id",
            Method::PUT,
            "/v1/admin/venues/Bad_Id",
            Some(ADMIN_KEY),
            json,
            booking(json!({"name": "x", "kind": "clinic", "booking": "central", "vaccines": []})),
            400,
            "invalid_venue_id",
        ),
        (
            "unknown kind",
            Method::PUT,
            "/v1/admin/venues/x",
            Some(ADMIN_KEY),
            json,
            booking(json!({"name": "x", "kind": "spa", "booking": "central", "vaccines": []})),
            400,
            "invalid_json",
        ),
        (
            "unknown reservation",
            Method::GET,
            "/v1/reservations/not-a-uuid",
            Some(&token),
            json,
            vec![],
            404,
            "not_found",
        ),
        (
            "unknown endpoint",
            Method::GET,
            "/v1/nothing-here",
            None,
            json,
            vec![],
            404,
            "not_found",
        ),
        (
            "wrong method",
            Method::PATCH,
            "/v1/reservations",
            Some(&token),
            json,
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "availability without date",
            Method::GET,
            "/v1/availability",
            None,
            json,
            vec![],
            400,
            "invalid_query",
        ),
        (
            "login with a short ticket",
            Method::POST,
            "/v1/sessions",
            None,
            json,
            booking(json!({"ticket_number": "123", "birth_date": "1960-01-01"})),
            400,
            "invalid_ticket_number",
        ),
        (
            "login with a wrong birth date",
            Method::POST,
            "/v1/sessions",
            None,
            json,
            booking(json!({"ticket_number": "7000000000", "birth_date": "1960-01-02"})),
            401,
            "invalid_credentials",
        ),
        (
            "login with an unknown ticket",
            Method::POST,
            "/v1/sessions",
            None,
            json,
            booking(json!({"ticket_number": "7000000009", "birth_date": "1960-01-01"})),
            401,
            "invalid_credentials",
        ),
    ];
    for (name, method, path, bearer, content_type, body, status, code) in cases {
        let (got_status, media, got) = raw(&app, method, path, bearer, content_type, body).await;
        assert_eq!(got_status, status, "{name}: {got}");
        assert_eq!(got["code"].as_str(), Some(code), "{name}: {got}");
        assert_eq!(media, "application/problem+json", "{name}");
        assert_eq!(got["status"].as_u64(), Some(u64::from(status)), "{name}");
        assert!(
            got["title"].is_string() && got["type"] == "about:blank",
            "{name}: {got}"
        );
    }

    // Nothing was half-written: the slot is untouched, the server serves.
    assert_eq!(app.slots("clinic-001", &date).await[0].2, 5);
    let (status, _) = app.book(&token, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201);
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    let logs = app.logs();
    assert!(logs.contains("residents imported"), "the log is captured");
    for personal in ["7000000000", "7000000009", "1960-01-01", "テスト"] {
        assert!(!logs.contains(personal), "{personal} leaked into the log");
    }
}

async fn unknown_ticket_and_wrong_birth_date_are_answered_identically(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.import_residents(7_100_000_000, 1).await;
    let wrong = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": "7100000000", "birth_date": "1999-09-09"})),
        )
        .await;
    let unknown = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": "7100000001", "birth_date": "1999-09-09"})),
        )
        .await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 401);
}

async fn an_import_over_16_mib_is_refused_whole(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let big = vec![b' '; 16 * 1024 * 1024 + 1];
    let (status, _, body) = raw(
        &app,
        Method::POST,
        "/v1/admin/residents",
        Some(ADMIN_KEY),
        "application/json",
        big,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
}

on_both_stores!(
    every_kind_of_bad_input_gets_its_status_and_code,
    unknown_ticket_and_wrong_birth_date_are_answered_identically,
    an_import_over_16_mib_is_refused_whole,
);
