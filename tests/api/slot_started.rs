//! A slot that has started today is not offered, and booking it is
//! `409 slot_started`, on every channel (contract: "Availability").

use reqwest::Method;

use crate::helpers::{Backend, TestApp, Via, future_date, ticket};

async fn a_started_slot_is_not_offered_nor_booked(backend: Backend, via: Via) {
    let today = future_date(0);
    let tomorrow = future_date(1);
    // The server's clock: 14:42 today (Tokyo).
    let app = TestApp::spawn_with_env(
        backend,
        &[("VAXSLOT_CLOCK_START", &format!("{today}T14:42:00+09:00"))],
    )
    .await;
    let slots = [("14:00", 5), ("14:42", 5), ("15:00", 5)];
    app.venue_day("clinic-001", &today, &slots).await;
    app.venue_day("clinic-001", &tomorrow, &slots).await;
    app.import_residents(7_100_000_000, 2).await;

    let (status, available) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={today}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{available}");
    let offered = &available["days"][0]["slots"];
    for (i, (time, started)) in [("14:00", true), ("14:42", true), ("15:00", false)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(offered[i]["time"], time);
        if started {
            assert_eq!(offered[i]["started"], true, "{offered}");
            assert_eq!(offered[i]["remaining"], 0, "{offered}");
        } else {
            assert!(offered[i].get("started").is_none(), "{offered}");
            assert_eq!(offered[i]["remaining"], 5, "{offered}");
        }
    }

    let booker = app.booker(via, &ticket(7_100_000_000), "1960-01-01").await;
    for time in ["14:00", "14:42"] {
        let (status, body) = app.book_slot_via(&booker, "clinic-001", &today, time).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("slot_started")),
            "{time}: {body}"
        );
    }
    // Tomorrow's 14:00 has not started; today's 15:00 neither.
    let (status, body) = app
        .book_slot_via(&booker, "clinic-001", &tomorrow, "14:00")
        .await;
    assert_eq!(status, 201, "{body}");
    let other = app.booker(via, &ticket(7_100_000_001), "1960-01-01").await;
    let (status, body) = app
        .book_slot_via(&other, "clinic-001", &today, "15:00")
        .await;
    assert_eq!(status, 201, "{body}");
}

on_both_stores_and_channels!(a_started_slot_is_not_offered_nor_booked);
