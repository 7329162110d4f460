//! Nobody sees anyone else's data: every resident route answered with a
//! second resident's ids is `404`, exactly like a missing one, and the owner's
//! data is untouched; after a scenario that exercises every route, the log
//! holds no ticket number, birth date, name, phone or e-mail.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, SRE_KEY, TestApp, future_date};

async fn another_residents_ids_are_not_found_on_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(2_100_000_000, 2).await;
    let alice = app.login(2_100_000_000).await;
    let bob = app.login(2_100_000_001).await;
    let (_, booked) = app.book(&alice, "clinic-001", &date, "14:00").await;
    let id = booked["reservation_id"].as_str().unwrap();
    let missing = "00000000-0000-4000-8000-000000000000";

    for (method, path) in [
        (Method::GET, format!("/v1/reservations/{id}")),
        (Method::DELETE, format!("/v1/reservations/{id}")),
    ] {
        let (status, body) = app.send(method.clone(), &path, Some(&bob), None).await;
        let absent_path = path.replace(id, missing);
        let absent = app
            .send(method.clone(), &absent_path, Some(&bob), None)
            .await;
        assert_eq!(
            (status, &body),
            (404, &absent.1),
            "{method} {path}: same as absent"
        );
        assert!(!body.to_string().contains(id));
    }
    let (_, list) = app
        .send(Method::GET, "/v1/reservations", Some(&bob), None)
        .await;
    assert_eq!(list["reservations"], json!([]));
    let (_, me) = app.send(Method::GET, "/v1/me", Some(&bob), None).await;
    assert_eq!(me["ticket_number"], "2100000001");
    assert_eq!(me["reservations"], json!([]));

    // Alice's reservation is untouched.
    let (status, mine) = app
        .send(
            Method::GET,
            &format!("/v1/reservations/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((status, mine["status"].as_str()), (200, Some("booked")));
    assert_eq!(app.slots("clinic-001", &date).await[0].2, 4);
}

/// Values that must never reach a log line.
const PERSONAL: &[&str] = &[
    "2214583967",
    "2298716453",
    "1311480077",
    "1944-02-29",
    "1987-11-03",
    "秘密 花子",
    "内緒 次郎",
    "hanako.secret@example.jp",
    "09012345678",
    "0312349876",
];

async fn the_log_holds_no_personal_data_after_every_route(backend: Backend) {
    let app = TestApp::spawn_with_env(backend, &[("RUST_LOG", "debug")]).await;
    let date = future_date(30);
    let later = future_date(30 + 28);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.venue_day("clinic-002", &later, &[("14:00", 5)]).await;
    app.import(json!([
        {"ticket_number": "2214583967", "birth_date": "1944-02-29", "name": "秘密 花子",
         "email": "hanako.secret@example.jp", "phone": "09012345678", "high_risk": true},
        {"ticket_number": "2298716453", "birth_date": "1987-11-03", "name": "内緒 次郎",
         "phone": "0312349876"},
    ]))
    .await;
    let csv = "ticket_number,birth_date,name\n1311480077,1987-11-03,内緒 次郎\n";
    app.import_csv(csv).await;

    // Every route, happy and unhappy.
    for path in ["/healthz", "/readyz", "/metrics", "/v1/venues"] {
        app.send(Method::GET, path, None, None).await;
    }
    app.send(
        Method::GET,
        &format!("/v1/availability?date={date}"),
        None,
        None,
    )
    .await;
    app.send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    for _ in 0..6 {
        app.send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": "2298716453", "birth_date": "1999-01-01"})),
        )
        .await;
    }
    app.send(
        Method::POST,
        "/v1/sessions",
        None,
        Some(&json!({"ticket_number": "2298716453", "birth_date": "1987-11-03"})),
    )
    .await;
    app.send(
        Method::POST,
        "/v1/sessions",
        None,
        Some(&json!({"ticket_number": 2298716453u64, "birth_date": "1987-11-03"})),
    )
    .await;
    let token = app.login_as("2214583967", "1944-02-29").await;
    app.send(Method::GET, "/v1/me", Some(&token), None).await;
    let (_, first) = app.book(&token, "clinic-001", &date, "14:00").await;
    app.book(&token, "clinic-002", &later, "14:00").await;
    app.book(&token, "nowhere", &date, "14:00").await;
    app.send(
        Method::POST,
        "/v1/reservations",
        Some(&token),
        Some(&json!({"venue_id": "clinic-001", "date": date, "time": "14:00", "dose": 7})),
    )
    .await;
    app.client
        .post(app.url("/v1/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"venue_id": "clinic-001", "date": date, "time": "14:00"}))
        .send()
        .await
        .unwrap();
    app.send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    let id = first["reservation_id"].as_str().unwrap();
    app.send(
        Method::GET,
        &format!("/v1/reservations/{id}"),
        Some(&token),
        None,
    )
    .await;
    app.set_kill_switch(true).await;
    app.book(&token, "clinic-001", &date, "14:00").await;
    app.set_kill_switch(false).await;
    app.send(
        Method::DELETE,
        &format!("/v1/reservations/{id}"),
        Some(&token),
        None,
    )
    .await;
    app.send(
        Method::PUT,
        "/v1/admin/venues/clinic-001",
        Some(&token),
        Some(&Value::Null),
    )
    .await;
    app.client
        .post(app.url("/v1/sessions"))
        .header("content-type", "application/json")
        .body("{\"ticket_number\": \"2214583967\", \"birth_date\": ")
        .send()
        .await
        .unwrap();

    let logs = app.logs();
    assert!(logs.contains("residents imported"), "the log is captured");
    assert!(logs.contains("kill switch changed"));
    for value in PERSONAL {
        assert!(!logs.contains(value), "{value} leaked into the log");
    }
    let (_, metrics) = app.send(Method::GET, "/metrics", None, None).await;
    for value in PERSONAL {
        assert!(
            !metrics.as_str().unwrap().contains(value),
            "{value} leaked into metrics"
        );
    }
}

on_both_stores!(
    another_residents_ids_are_not_found_on_every_route,
    the_log_holds_no_personal_data_after_every_route,
);
