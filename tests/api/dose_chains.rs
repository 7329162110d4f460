//! One active reservation per (resident, dose) across venue-days, and dose
//! chains: dose N+1 on top of a booked dose N; cancelling dose N cancels the
//! booked later doses in the same step.

use chrono::Days;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, Via, future_date, ticket};

async fn one_dose_fired_at_ten_venue_days_at_once_books_exactly_once(backend: Backend) {
    const VENUE_DAYS: usize = 10;
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    for v in 0..VENUE_DAYS {
        app.venue_day(&format!("clinic-{v:03}"), &date, &[("14:00", 10)])
            .await;
    }
    app.import_residents(1_700_000_000, 1).await;
    let token = app.login(1_700_000_000).await;
    let answers = futures::future::join_all((0..VENUE_DAYS).map(|v| {
        let (app, token, date) = (&app, &token, &date);
        async move {
            app.send(
                Method::POST,
                "/v1/reservations",
                Some(token),
                Some(&json!({"venue_id": format!("clinic-{v:03}"), "date": date,
                    "time": "14:00", "dose": 1})),
            )
            .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "already_reserved")
        .count();
    assert_eq!((created, refused), (1, VENUE_DAYS - 1), "{answers:?}");
    let (_, list) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(list["reservations"].as_array().unwrap().len(), 1);
    // Exactly one place is used across the ten days.
    let mut used = 0;
    for v in 0..VENUE_DAYS {
        used += app
            .slots(&format!("clinic-{v:03}"), &date)
            .await
            .iter()
            .map(|(_, c, r)| c - r)
            .sum::<u64>();
    }
    assert_eq!(used, 1);
}

async fn cancelling_dose_1_cancels_the_booked_dose_2_at_another_venue_day(
    backend: Backend,
    via: Via,
) {
    let app = TestApp::spawn(backend).await;
    let first_day = future_date(10);
    let second_day = future_date(10 + 28);
    app.venue_day("clinic-001", &first_day, &[("14:00", 5)])
        .await;
    app.venue_day("clinic-002", &second_day, &[("14:00", 5)])
        .await;
    app.import_residents(1_710_000_000, 1).await;
    let booker = app.booker(via, &ticket(1_710_000_000), "1960-01-01").await;

    let (status, dose1) = app
        .book_slot_via(&booker, "clinic-001", &first_day, "14:00")
        .await;
    assert_eq!((status, dose1["dose"].as_u64()), (201, Some(1)), "{dose1}");
    assert_eq!(dose1["channel"], via_name(via));
    // Dose 2 on top of the booked (not yet received) dose 1, 28 days later.
    let (status, dose2) = app
        .book_slot_via(&booker, "clinic-002", &second_day, "14:00")
        .await;
    assert_eq!((status, dose2["dose"].as_u64()), (201, Some(2)), "{dose2}");
    // Not before the interval after the booked dose 1's date.
    app.venue_day("clinic-003", &future_date(11), &[("14:00", 5)])
        .await;
    let early_body =
        json!({"venue_id": "clinic-003", "date": future_date(11), "time": "14:00", "dose": 3});
    let (status, early) = app.book_via(&booker, &early_body, None).await;
    assert_eq!(status, 422, "{early}");
    assert!(early.contains("not_eligible"), "{early}");

    let id1 = dose1["reservation_id"].as_str().unwrap();
    let (status, cancelled) = app.cancel_via(&booker, id1).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        cancelled["also_cancelled"][0]["reservation_id"],
        dose2["reservation_id"]
    );
    assert_eq!(cancelled["also_cancelled"][0]["status"], "cancelled");
    let all = app.reservations_via(&booker).await;
    assert!(all.iter().all(|r| r["status"] == "cancelled"), "{all:?}");
    // Both places are free again, in both venue-days.
    assert_eq!(app.slots("clinic-001", &first_day).await[0].2, 5);
    assert_eq!(app.slots("clinic-002", &second_day).await[0].2, 5);
    // And the resident starts over at dose 1.
    assert_eq!(
        app.profile_via(&booker).await["eligibility"]["next_dose"],
        1
    );
    // The cascade is stored: it survives a restart.
    let app = app.crash_and_restart().await;
    let all = app.reservations_via(&booker).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r["status"] == "cancelled"));
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Web => "web",
        Via::Operator => "operator",
    }
}

async fn cancelling_dose_2_keeps_dose_1(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let first_day = future_date(5);
    let second_day = (today + Days::new(5 + 28)).to_string();
    app.venue_day("clinic-001", &first_day, &[("14:00", 5)])
        .await;
    app.venue_day("clinic-001", &second_day, &[("14:00", 5)])
        .await;
    app.import_residents(1_720_000_000, 1).await;
    let token = app.login(1_720_000_000).await;
    let (_, dose1) = app.book(&token, "clinic-001", &first_day, "14:00").await;
    let (_, dose2) = app.book(&token, "clinic-001", &second_day, "14:00").await;
    let id2 = dose2["reservation_id"].as_str().unwrap();
    let (status, cancelled) = app
        .send(
            Method::DELETE,
            &format!("/v1/reservations/{id2}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, &cancelled["also_cancelled"]), (200, &json!([])));
    let id1 = dose1["reservation_id"].as_str().unwrap();
    let (_, still) = app
        .send(
            Method::GET,
            &format!("/v1/reservations/{id1}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(still["status"], "booked");
}

on_both_stores!(
    one_dose_fired_at_ten_venue_days_at_once_books_exactly_once,
    cancelling_dose_2_keeps_dose_1,
);
on_both_stores_and_channels!(cancelling_dose_1_cancels_the_booked_dose_2_at_another_venue_day);
