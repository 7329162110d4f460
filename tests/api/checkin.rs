//! Check-in at the venue door: both code forms, another municipality's code
//! refused, two tablets scanning one code at once (exactly one `200`),
//! never dose 2 without dose 1, the dose durable in the history, and it
//! keeps working while the kill switch is engaged.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, STAFF_KEY, TestApp, future_date, ticket};
use crate::operator::all_audit;

const MUNICIPALITY: &str = "131148";

async fn check_in(app: &TestApp, venue_id: &str, date: &str, code: &str) -> (u16, Value) {
    app.send(
        Method::POST,
        "/v1/staff/checkins",
        Some(STAFF_KEY),
        Some(&json!({"venue_id": venue_id, "date": date, "code": code})),
    )
    .await
}

async fn roster_statuses(app: &TestApp, venue_id: &str, date: &str) -> Vec<String> {
    let response = app
        .client
        .get(app.url(&format!("/v1/staff/venues/{venue_id}/days/{date}/roster")))
        .bearer_auth(STAFF_KEY)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let roster: Value = response.json().await.unwrap();
    roster["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_nurse_checks_residents_in_by_either_code_once_and_never_dose_2_first(backend: Backend) {
    let app =
        TestApp::spawn_with_env(backend, &[("VAXSLOT_MUNICIPALITY_CODE", MUNICIPALITY)]).await;
    let (first_day, second_day) = (future_date(3), future_date(3 + 28));
    app.venue_day("door-clinic", &first_day, &[("10:00", 10)])
        .await;
    app.venue_day("door-clinic", &second_day, &[("10:00", 10)])
        .await;
    app.import_residents(4_400_000_000, 3).await;
    let (one, two, three) = (
        ticket(4_400_000_000),
        ticket(4_400_000_001),
        ticket(4_400_000_002),
    );
    let mut tokens = Vec::new();
    for t in [&one, &two, &three] {
        let token = app.login_as(t, "1960-01-01").await;
        assert_eq!(
            app.book(&token, "door-clinic", &first_day, "10:00").await.0,
            201
        );
        tokens.push(token);
    }
    // Resident two also books dose 2, on top of the booked dose 1.
    let (status, dose2) = app
        .book(&tokens[1], "door-clinic", &second_day, "10:00")
        .await;
    assert_eq!((status, dose2["dose"].as_u64()), (201, Some(2)), "{dose2}");

    // The 10-digit ticket number, and the 16-digit code with our municipality.
    let (status, attended) = check_in(&app, "door-clinic", &first_day, &one).await;
    assert_eq!(
        (status, attended["status"].as_str()),
        (200, Some("attended")),
        "{attended}"
    );
    let (status, _) = check_in(
        &app,
        "door-clinic",
        &first_day,
        &format!("{MUNICIPALITY}{three}"),
    )
    .await;
    assert_eq!(status, 200);
    // Another municipality's code.
    let (status, body) = check_in(&app, "door-clinic", &first_day, &format!("131149{two}")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
    // Dose 2 while dose 1 is only booked: never vaccinate it.
    let (status, body) = check_in(&app, "door-clinic", &second_day, &two).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("prior_dose_missing")),
        "{body}"
    );
    // No reservation there that day.
    let (status, body) = check_in(&app, "door-clinic", &second_day, &one).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_reservation"))
    );

    // Two tablets scan resident two's code at once: exactly one 200.
    let (a, b) = tokio::join!(
        check_in(&app, "door-clinic", &first_day, &two),
        check_in(&app, "door-clinic", &first_day, &two)
    );
    let mut statuses = vec![a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, vec![200, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["code"], "already_attended");
    // Now dose 2 may be given.
    let (status, _) = check_in(&app, "door-clinic", &second_day, &two).await;
    assert_eq!(status, 200);

    // The roster shows attended; the dose is in the history, and the place
    // is still counted.
    assert_eq!(
        roster_statuses(&app, "door-clinic", &first_day).await,
        vec!["attended"; 3]
    );
    assert_eq!(app.slots("door-clinic", &first_day).await[0].2, 7);
    let (_, me) = app
        .send(Method::GET, "/v1/me", Some(&tokens[0]), None)
        .await;
    assert_eq!(me["history"][0]["dose"], 1, "{me}");
    assert_eq!(me["history"][0]["date"], first_day.as_str());
    assert_eq!(me["eligibility"]["next_dose"], 2);

    // Durable: after SIGKILL the history and the roster say the same.
    let app = app
        .crash_and_restart_with_env(&[("VAXSLOT_MUNICIPALITY_CODE", MUNICIPALITY)])
        .await;
    let (_, me) = app
        .send(Method::GET, "/v1/me", Some(&tokens[1]), None)
        .await;
    let doses: Vec<u64> = me["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["dose"].as_u64().unwrap())
        .collect();
    assert_eq!(doses, vec![1, 2], "{me}");
    assert_eq!(
        roster_statuses(&app, "door-clinic", &first_day).await,
        vec!["attended"; 3]
    );
    // An attended reservation cannot be cancelled.
    let list = app
        .send(Method::GET, "/v1/reservations", Some(&tokens[0]), None)
        .await
        .1;
    let id = list["reservations"][0]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .send(
            Method::DELETE,
            &format!("/v1/reservations/{id}"),
            Some(&tokens[0]),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_cancellable"))
    );

    // Every check-in call is audited, with its outcome.
    let entries = all_audit(&app, "&action=staff.checkin", 100).await;
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "200 ok",
            "200 ok",
            "400 invalid_code",
            "409 prior_dose_missing",
            "404 no_reservation",
            // the double scan, in whichever order it committed
            outcomes[5],
            outcomes[6],
            "200 ok"
        ]
    );
    assert!(entries.iter().all(|e| e["actor"] == "env:staff"));
}

async fn check_in_keeps_working_while_booking_is_stopped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(3);
    app.venue_day("door-clinic", &date, &[("10:00", 10)]).await;
    app.import_residents(4_500_000_000, 2).await;
    let first = app.login(4_500_000_000).await;
    let second = app.login(4_500_000_001).await;
    assert_eq!(app.book(&first, "door-clinic", &date, "10:00").await.0, 201);
    app.set_kill_switch(true).await;
    let (status, body) = app.book(&second, "door-clinic", &date, "10:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("booking_closed"))
    );
    let (status, body) = check_in(&app, "door-clinic", &date, &ticket(4_500_000_000)).await;
    assert_eq!(status, 200, "{body}");
    let app = app.crash_and_restart().await;
    assert_eq!(
        roster_statuses(&app, "door-clinic", &date).await,
        vec!["attended"]
    );
    // Only staff and admins check in.
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/staff/checkins",
            Some(&first),
            Some(&json!({"venue_id": "door-clinic", "date": date, "code": ticket(4_500_000_000)})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/staff/checkins",
            Some(ADMIN_KEY),
            Some(&json!({"venue_id": "door-clinic", "date": date, "code": ticket(4_500_000_000)})),
        )
        .await;
    assert_eq!(status, 409, "admin may; it is already attended");
}

async fn after_the_day_booked_rows_read_no_show(backend: Backend) {
    let day = "2026-12-10";
    let before = "2026-12-09T12:00:00+09:00";
    let after = "2026-12-11T12:00:00+09:00";
    let app = TestApp::spawn_with_env(backend, &[("VAXSLOT_CLOCK_START", before)]).await;
    app.venue_day("door-clinic", day, &[("10:00", 10)]).await;
    app.import_residents(4_600_000_000, 2).await;
    for t in 0..2 {
        let token = app.login(4_600_000_000 + t).await;
        assert_eq!(app.book(&token, "door-clinic", day, "10:00").await.0, 201);
    }
    assert_eq!(
        check_in(&app, "door-clinic", day, &ticket(4_600_000_000))
            .await
            .0,
        200
    );
    let app = app
        .crash_and_restart_with_env(&[("VAXSLOT_CLOCK_START", after)])
        .await;
    let mut statuses = roster_statuses(&app, "door-clinic", day).await;
    statuses.sort();
    assert_eq!(statuses, vec!["attended", "no_show"]);
}

on_both_stores!(
    a_nurse_checks_residents_in_by_either_code_once_and_never_dose_2_first,
    check_in_keeps_working_while_booking_is_stopped,
    after_the_day_booked_rows_read_no_show,
);
