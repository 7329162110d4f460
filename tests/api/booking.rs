//! The booking path: capacity under concurrency, one reservation per dose,
//! default dose, cancel, list and get.

use std::collections::HashSet;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, future_date};

async fn a_slot_hammered_by_many_residents_gives_exactly_its_capacity(backend: Backend) {
    const CAPACITY: u32 = 25;
    const RESIDENTS: u64 = 300;
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("nakano-sunplaza", &date, &[("10:30", CAPACITY)])
        .await;
    app.import_residents(1_000_000_000, RESIDENTS).await;
    let tokens = app.login_many(1_000_000_000, RESIDENTS).await;

    // All at once: every request in flight together.
    let answers: Vec<(u16, serde_json::Value)> = futures::future::join_all(
        tokens
            .iter()
            .map(|token| app.book(token, "nakano-sunplaza", &date, "10:30")),
    )
    .await;

    let created: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let full = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "slot_full")
        .count();
    assert_eq!(created.len(), CAPACITY as usize, "exactly capacity 201s");
    assert_eq!(
        full,
        (RESIDENTS - u64::from(CAPACITY)) as usize,
        "the rest slot_full"
    );
    let ids: HashSet<&str> = created
        .iter()
        .map(|b| b["reservation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), CAPACITY as usize, "distinct ids");
    assert_eq!(
        app.slots("nakano-sunplaza", &date).await[0].2,
        0,
        "0 remaining"
    );

    // What the store holds is exactly what was answered 201.
    let mut app = app;
    app.kill().await;
    let stored = app.stored_ids().await;
    assert_eq!(stored, ids.iter().map(|s| s.to_string()).collect());
}

async fn one_active_reservation_per_dose_and_the_default_dose_is_the_next_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    // Moderna's dose 2 comes 28 days after dose 1.
    let later = future_date(30 + 28);
    app.venue_day("clinic-001", &date, &[("14:00", 5), ("14:30", 5)])
        .await;
    app.venue_day("clinic-001", &later, &[("14:00", 5)]).await;
    app.import_residents(2_000_000_000, 1).await;
    let token = app.login(2_000_000_000).await;

    let (status, first) = app.book(&token, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["dose"], 1, "no history: dose 1");
    assert_eq!(first["status"], "booked");
    assert_eq!(first["channel"], "web");
    assert_eq!(first["vaccine"], "moderna");

    let (status, again) = app
        .send(
            Method::POST,
            "/v1/reservations",
            Some(&token),
            Some(&json!({"venue_id": "clinic-001", "date": date, "time": "14:30", "dose": 1})),
        )
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_reserved"))
    );

    // Leaving the dose out books the next one neither received nor reserved,
    // on top of the booked dose 1, the interval after its date.
    let (status, second) = app.book(&token, "clinic-001", &later, "14:00").await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["dose"], 2);

    let (status, list) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let doses: Vec<u64> = list["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dose"].as_u64().unwrap())
        .collect();
    assert_eq!(doses, vec![2, 1], "newest first");

    let id = first["reservation_id"].as_str().unwrap();
    let (status, one) = app.reservation(&token, id).await;
    assert_eq!(
        (status, &one["reservation_id"]),
        (200, &first["reservation_id"])
    );
}

async fn cancelling_frees_the_place_and_only_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-002", &date, &[("14:00", 1)]).await;
    app.import_residents(3_000_000_000, 2).await;
    let alice = app.login(3_000_000_000).await;
    let bob = app.login(3_000_000_001).await;

    let (_, booked) = app.book(&alice, "clinic-002", &date, "14:00").await;
    let (status, refused) = app.book(&bob, "clinic-002", &date, "14:00").await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("slot_full")));

    let path = format!(
        "/v1/reservations/{}",
        booked["reservation_id"].as_str().unwrap()
    );
    // Bob cannot see or cancel Alice's reservation: it does not exist for him.
    let (status, body) = app.send(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.send(Method::GET, &path, Some(&bob), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    let (status, cancelled) = app.send(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, body) = app.send(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_cancellable"))
    );

    let (status, rebooked) = app.book(&bob, "clinic-002", &date, "14:00").await;
    assert_eq!(status, 201, "{rebooked}");
    // Alice may book her dose 1 again elsewhere once it is cancelled.
    app.venue_day("clinic-003", &date, &[("15:00", 1)]).await;
    let (status, again) = app.book(&alice, "clinic-003", &date, "15:00").await;
    assert_eq!((status, again["dose"].as_u64()), (201, Some(1)));
}

async fn many_venue_days_book_in_parallel_without_oversell(backend: Backend) {
    const DAYS: usize = 8;
    const CAPACITY: u32 = 10;
    const RESIDENTS: u64 = 200;
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    for d in 0..DAYS {
        app.venue_day(&format!("clinic-{d:03}"), &date, &[("14:00", CAPACITY)])
            .await;
    }
    app.import_residents(4_000_000_000, RESIDENTS).await;
    let tokens = app.login_many(4_000_000_000, RESIDENTS).await;
    let answers: Vec<u16> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let venue = format!("clinic-{:03}", i % DAYS);
            let app = &app;
            let date = &date;
            async move { app.book(token, &venue, date, "14:00").await.0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let created = answers.iter().filter(|s| **s == 201).count();
    assert_eq!(created, DAYS * CAPACITY as usize);
    assert!(answers.iter().all(|s| *s == 201 || *s == 409));
    for d in 0..DAYS {
        assert_eq!(app.slots(&format!("clinic-{d:03}"), &date).await[0].2, 0);
    }
}

on_both_stores!(
    a_slot_hammered_by_many_residents_gives_exactly_its_capacity,
    one_active_reservation_per_dose_and_the_default_dose_is_the_next_one,
    cancelling_frees_the_place_and_only_once,
    many_venue_days_book_in_parallel_without_oversell,
);
