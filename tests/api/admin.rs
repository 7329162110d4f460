//! Venues, days and resident import (admin).

use reqwest::Method;
use serde_json::json;

use crate::helpers::{ADMIN_KEY, Backend, TestApp, future_date};

async fn venues_are_created_then_replaced_and_listed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"name": "中野サンプラザ", "kind": "mass", "booking": "central",
        "address": "中野4-1-1", "phone": "03-0000-0000", "vaccines": ["moderna"]});
    let path = "/v1/admin/venues/nakano-sunplaza";
    let (status, _) = app
        .send(Method::PUT, path, Some(ADMIN_KEY), Some(&body))
        .await;
    assert_eq!(status, 201);
    let (status, venue) = app
        .send(Method::PUT, path, Some(ADMIN_KEY), Some(&body))
        .await;
    assert_eq!(
        (status, venue["venue_id"].as_str()),
        (200, Some("nakano-sunplaza"))
    );
    let (status, list) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["venues"][0]["name"], "中野サンプラザ");
    assert_eq!(list["venues"][0]["vaccines"], json!(["moderna"]));
}

async fn days_may_grow_but_never_drop_booked_places(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 2), ("14:30", 2)])
        .await;
    app.import_residents(8_000_000_000, 2).await;
    for t in 0..2 {
        let token = app.login(8_000_000_000 + t).await;
        assert_eq!(app.book(&token, "clinic-001", &date, "14:00").await.0, 201);
    }
    for (slots, why) in [
        (vec![("14:00", 1), ("14:30", 2)], "lowering below booked"),
        (vec![("14:30", 2)], "dropping a booked slot"),
    ] {
        let (status, body) = app.put_day("clinic-001", &date, &slots).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("capacity_below_booked")),
            "{why}"
        );
    }
    // Raising 14:00 and dropping the empty 14:30 is fine.
    let (status, day) = app.put_day("clinic-001", &date, &[("14:00", 4)]).await;
    assert_eq!(status, 200, "{day}");
    assert_eq!(
        day["slots"],
        json!([{"time": "14:00", "capacity": 4, "remaining": 2}])
    );
    assert_eq!(
        app.slots("clinic-001", &date).await,
        vec![("14:00".to_owned(), 4, 2)]
    );
}

async fn a_booked_days_vaccine_cannot_change_an_empty_days_can(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (booked_day, empty_day) = (future_date(30), future_date(31));
    app.vaccine_day("clinic-002", &booked_day, "moderna", 5)
        .await;
    app.vaccine_day("clinic-002", &empty_day, "moderna", 5)
        .await;
    app.import_residents(8_100_000_000, 1).await;
    let token = app.login(8_100_000_000).await;
    let (status, booked) = app.book(&token, "clinic-002", &booked_day, "10:00").await;
    assert_eq!(status, 201, "{booked}");
    let to_pfizer = json!({"vaccine": "pfizer", "slots": [{"time": "10:00", "capacity": 5}]});
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/clinic-002/days/{booked_day}"),
            Some(ADMIN_KEY),
            Some(&to_pfizer),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("vaccine_change_with_bookings")),
        "{body}"
    );
    // Nothing changed: the day and the reservation still say moderna.
    let (_, availability) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={booked_day}&venue_id=clinic-002"),
            None,
            None,
        )
        .await;
    assert_eq!(
        availability["days"][0]["vaccine"], "moderna",
        "{availability}"
    );
    let id = booked["reservation_id"].as_str().unwrap();
    let (_, reservation) = app.reservation(&token, id).await;
    assert_eq!(reservation["vaccine"], "moderna");
    // A day without bookings may change its vaccine.
    let (status, day) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/clinic-002/days/{empty_day}"),
            Some(ADMIN_KEY),
            Some(&to_pfizer),
        )
        .await;
    assert_eq!(
        (status, day["vaccine"].as_str()),
        (200, Some("pfizer")),
        "{day}"
    );
}

async fn a_day_needs_a_known_venue_offering_its_vaccine(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    let (status, body) = app.put_day("nowhere", &date, &[("14:00", 2)]).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    app.put_venue("pfizer-only", "central", &["pfizer"]).await;
    let (status, body) = app.put_day("pfizer-only", &date, &[("14:00", 2)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("vaccine_not_offered"))
    );
    app.put_venue("clinic-001", "central", &["moderna"]).await;
    let (status, body) = app
        .put_day("clinic-001", &date, &[("14:00", 2), ("14:00", 3)])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_slots"))
    );
}

async fn restricted_days_are_hidden_and_need_their_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.put_venue("nakano-sunplaza", "central", &["moderna"])
        .await;
    let (status, _) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/nakano-sunplaza/days/{date}"),
            Some(ADMIN_KEY),
            Some(
                &json!({"vaccine": "moderna", "slots": [{"time": "10:00", "capacity": 3}],
                "access_code": "dose2-secret"}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    let (_, hidden) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}"),
            None,
            None,
        )
        .await;
    assert_eq!(hidden["days"], json!([]));
    let (_, shown) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}&access_code=dose2-secret"),
            None,
            None,
        )
        .await;
    assert_eq!(shown["days"][0]["venue_id"], "nakano-sunplaza");

    app.import_residents(8_100_000_000, 1).await;
    let token = app.login(8_100_000_000).await;
    let (status, body) = app.book(&token, "nakano-sunplaza", &date, "10:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("access_code_invalid"))
    );
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/reservations",
            Some(&token),
            Some(
                &json!({"venue_id": "nakano-sunplaza", "date": date, "time": "10:00",
                "access_code": "dose2-secret"}),
            ),
        )
        .await;
    assert_eq!(status, 201);
}

async fn direct_booking_venues_are_listed_but_not_bookable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.put_venue("clinic-direct", "direct", &["moderna"]).await;
    let (status, _) = app.put_day("clinic-direct", &date, &[("14:00", 2)]).await;
    assert_eq!(status, 201);
    app.import_residents(8_200_000_000, 1).await;
    let token = app.login(8_200_000_000).await;
    let (status, body) = app.book(&token, "clinic-direct", &date, "14:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("direct_booking_venue"))
    );
    let (_, listed) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(listed["venues"][0]["booking"], "direct");
}

async fn import_reports_bad_records_and_stores_the_good_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let records = json!([
        {"ticket_number": "1311480001", "birth_date": "1950-04-01", "name": "中野 太郎",
         "email": "taro@example.jp", "phone": "0312345678", "high_risk": false,
         "history": [{"dose": 1, "date": "2021-06-01", "vaccine": "pfizer"}]},
        {"ticket_number": "13114800", "birth_date": "1950-04-01", "name": "短い 番号"},
        {"ticket_number": "1311480003", "birth_date": "1950-13-01", "name": "変な 日付"},
        {"ticket_number": "1311480004", "birth_date": "1950-04-01", "name": "二回目 だけ",
         "history": [{"dose": 2, "date": "2021-06-01", "vaccine": "pfizer"}]},
        {"ticket_number": 1311480005, "birth_date": "1950-04-01", "name": "数値"},
    ]);
    let (status, report) = app
        .send(
            Method::POST,
            "/v1/admin/residents",
            Some(ADMIN_KEY),
            Some(&records),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], 1);
    assert_eq!(report["updated"], 0);
    assert_eq!(
        report["rejected"],
        json!([{"line": 2, "code": "invalid_ticket_number"}, {"line": 3, "code": "invalid_birth_date"},
               {"line": 4, "code": "invalid_history"}, {"line": 5, "code": "invalid_record"}])
    );

    // CSV with history columns; re-importing a ticket updates that resident.
    let csv = "ticket_number,birth_date,name,email,phone,high_risk,dose1_date,dose1_vaccine,dose2_date,dose2_vaccine\n\
               1311480001,1950-04-01,中野 太郎,,,true,2021-06-01,pfizer,2021-06-22,pfizer\n\
               1311480002,1980-02-29,中野 花子,hanako@example.jp,,false,,,,\n\
               1311480009,1980-02-30,悪い 日付,,,false,,,,\n";
    let report = app.import_csv(csv).await;
    assert_eq!(
        (report["imported"].as_u64(), report["updated"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        report["rejected"],
        json!([{"line": 4, "code": "invalid_birth_date"}])
    );

    let (status, session) = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": "1311480001", "birth_date": "1950-04-01"})),
        )
        .await;
    assert_eq!(status, 201);
    let token = session["token"].as_str().unwrap();
    let (_, me) = app.send(Method::GET, "/v1/me", Some(token), None).await;
    assert_eq!(me["ticket_number"], "1311480001");
    assert_eq!(me["high_risk"], true);
    assert_eq!(me["history"].as_array().unwrap().len(), 2);
    assert_eq!(me["eligibility"]["next_dose"], 3);
}

async fn imported_data_survives_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 3)]).await;
    app.import_residents(8_300_000_000, 1).await;
    let token = app.login(8_300_000_000).await;
    let (_, booked) = app.book(&token, "clinic-001", &date, "14:00").await;
    let app = app.crash_and_restart().await;
    let (_, venues) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(venues["venues"][0]["venue_id"], "clinic-001");
    assert_eq!(
        app.slots("clinic-001", &date).await,
        vec![("14:00".to_owned(), 3, 2)]
    );
    let (status, list) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["reservations"][0]["reservation_id"],
        booked["reservation_id"]
    );
}

on_both_stores!(
    venues_are_created_then_replaced_and_listed,
    days_may_grow_but_never_drop_booked_places,
    a_booked_days_vaccine_cannot_change_an_empty_days_can,
    a_day_needs_a_known_venue_offering_its_vaccine,
    restricted_days_are_hidden_and_need_their_code,
    direct_booking_venues_are_listed_but_not_bookable,
    import_reports_bad_records_and_stores_the_good_ones,
    imported_data_survives_a_restart,
);
