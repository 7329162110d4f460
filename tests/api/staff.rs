//! The roster of a venue-day (staff, admin): CSV by default, JSON on request.

use reqwest::Method;

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, STAFF_KEY, TestApp, future_date};

async fn the_roster_lists_every_reservation_of_the_day_for_staff_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5), ("14:30", 5)])
        .await;
    app.import_residents(2_400_000_000, 2).await;
    let alice = app.login(2_400_000_000).await;
    let bob = app.login(2_400_000_001).await;
    let (_, a) = app.book(&alice, "clinic-001", &date, "14:30").await;
    let (_, b) = app.book(&bob, "clinic-001", &date, "14:00").await;
    let path = format!("/v1/staff/venues/clinic-001/days/{date}/roster");
    let b_id = b["reservation_id"].as_str().unwrap();
    app.send(
        Method::DELETE,
        &format!("/v1/reservations/{b_id}"),
        Some(&bob),
        None,
    )
    .await;

    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(STAFF_KEY)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let roster: serde_json::Value = response.json().await.unwrap();
    let rows = roster["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["time"].as_str(), rows[0]["status"].as_str()),
        (Some("14:00"), Some("cancelled"))
    );
    assert_eq!(rows[1]["reservation_id"], a["reservation_id"]);
    assert_eq!(rows[1]["ticket_number"], "2400000000");
    assert_eq!(rows[1]["birth_date"], "1960-01-01");
    assert_eq!(rows[1]["status"], "booked");
    assert_eq!(rows[1]["channel"], "web");

    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let csv = csv.strip_prefix('\u{feff}').expect("a BOM first");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,reservation_id,ticket_number,name,birth_date,dose,vaccine,status,channel"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[2].starts_with(&format!(
        "14:30,{},2400000000,",
        a["reservation_id"].as_str().unwrap()
    )));

    for (key, status) in [(alice.as_str(), 403), (OPERATOR_KEY, 403), ("nobody", 401)] {
        let (got, _) = app.send(Method::GET, &path, Some(key), None).await;
        assert_eq!(got, status);
    }
    let (status, body) = app
        .send(
            Method::GET,
            &format!(
                "/v1/staff/venues/clinic-001/days/{}/roster",
                future_date(31)
            ),
            Some(STAFF_KEY),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

on_both_stores!(the_roster_lists_every_reservation_of_the_day_for_staff_only);
