//! The kill switch: once its `PUT` has returned, nothing commits.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, OPERATOR_KEY, SRE_KEY, TestApp, future_date, ticket};

struct Answer {
    /// "web" or "operator": half the herd books as residents, half through
    /// the call centre, on connections of their own.
    channel: &'static str,
    sent_at: Instant,
    status: u16,
    code: Option<String>,
    retry_after: bool,
    reservation_id: Option<String>,
}

async fn after_the_put_returns_every_booking_is_refused_and_the_store_holds_exactly_the_201s(
    backend: Backend,
) {
    const DAYS: usize = 4;
    const RESIDENTS: u64 = 1_600;
    const CONNECTIONS: usize = 64;
    let app = Arc::new(TestApp::spawn(backend).await);
    let date = future_date(30);
    for d in 0..DAYS {
        app.venue_day(&format!("venue-{d}"), &date, &[("10:00", 1_000)])
            .await;
    }
    app.import_residents(5_000_000_000, RESIDENTS).await;
    let tokens = app.login_many(5_000_000_000, RESIDENTS).await;

    let done = Arc::new(AtomicUsize::new(0));
    let herd = {
        let (app, done, date) = (Arc::clone(&app), Arc::clone(&done), date.clone());
        tokio::spawn(async move {
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (app, done, date) = (Arc::clone(&app), Arc::clone(&done), date.clone());
                    async move {
                        let mut body = json!({"venue_id": format!("venue-{}", i % DAYS),
                            "date": date, "time": "10:00"});
                        let (channel, path, credential) = if i % 2 == 0 {
                            ("web", "/v1/reservations", token)
                        } else {
                            body["ticket_number"] = json!(ticket(5_000_000_000 + i as u64));
                            body["birth_date"] = json!("1960-01-01");
                            (
                                "operator",
                                "/v1/operator/reservations",
                                OPERATOR_KEY.to_owned(),
                            )
                        };
                        let sent_at = Instant::now();
                        let response = app
                            .client
                            .post(app.url(path))
                            .bearer_auth(&credential)
                            .json(&body)
                            .send()
                            .await
                            .expect("server answers");
                        let status = response.status().as_u16();
                        let retry_after = response.headers().contains_key("retry-after");
                        let body: serde_json::Value = response.json().await.expect("json");
                        done.fetch_add(1, Ordering::SeqCst);
                        Answer {
                            channel,
                            sent_at,
                            status,
                            code: body["code"].as_str().map(str::to_owned),
                            retry_after,
                            reservation_id: body["reservation_id"].as_str().map(str::to_owned),
                        }
                    }
                })
                .buffer_unordered(CONNECTIONS)
                .collect::<Vec<Answer>>()
                .await
        })
    };

    // Engage mid-herd.
    while done.load(Ordering::SeqCst) < (RESIDENTS / 3) as usize {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let (status, body) = app
        .send(
            Method::PUT,
            "/v1/admin/kill-switch",
            Some(SRE_KEY),
            Some(&json!({"engaged": true, "reason": "login failures at launch"})),
        )
        .await;
    let put_returned = Instant::now();
    assert_eq!(
        (status, body["engaged"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(body["changed_by"], "sre");

    let answers = herd.await.expect("herd finishes");
    let after: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent_at > put_returned)
        .collect();
    assert!(
        !after.is_empty(),
        "some requests were sent after the switch"
    );
    for answer in &after {
        assert_eq!(answer.status, 503, "sent after the PUT returned");
        assert_eq!(answer.code.as_deref(), Some("booking_closed"));
        assert!(answer.retry_after, "503 booking_closed carries Retry-After");
    }
    for answer in &answers {
        assert!(
            answer.status == 201 || answer.code.as_deref() == Some("booking_closed"),
            "only 201 or booking_closed: {} {:?}",
            answer.status,
            answer.code
        );
    }
    let created: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.reservation_id.clone().expect("201 has an id"))
        .collect();
    assert!(
        !created.is_empty(),
        "some bookings committed before the switch"
    );

    // Used capacity equals the 201 count.
    let mut used = 0;
    for d in 0..DAYS {
        for (_, capacity, remaining) in app.slots(&format!("venue-{d}"), &date).await {
            used += capacity - remaining;
        }
    }
    assert_eq!(used, created.len() as u64);

    // The store holds exactly the 201s, per channel: none missing, none extra.
    let mut app = Arc::try_unwrap(app).ok().expect("herd released the app");
    app.kill().await;
    let stored = app.stored_reservations().await;
    for channel in ["web", "operator"] {
        let created: HashSet<String> = answers
            .iter()
            .filter(|a| a.status == 201 && a.channel == channel)
            .map(|a| a.reservation_id.clone().expect("201 has an id"))
            .collect();
        let stored: HashSet<String> = stored
            .iter()
            .filter(|r| r.channel.as_str() == channel)
            .map(|r| r.id.to_string())
            .collect();
        assert!(!created.is_empty(), "{channel} booked before the switch");
        assert_eq!(stored, created, "{channel}");
        assert!(
            after.iter().any(|a| a.channel == channel),
            "{channel} was refused after the switch"
        );
    }
}

async fn reads_keep_working_and_release_reopens_booking(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(5_500_000_000, 2).await;
    let token = app.login(5_500_000_000).await;
    let (_, booked) = app.book(&token, "clinic-001", &date, "14:00").await;

    let state = app.set_kill_switch(true).await;
    assert_eq!(state["engaged"], true);
    let (status, got) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(
        (status, &got["engaged"], &got["reason"]),
        (200, &json!(true), &json!("test"))
    );

    // Cancelling is refused too, before any other work (even before auth).
    let path = format!(
        "/v1/reservations/{}",
        booked["reservation_id"].as_str().unwrap()
    );
    let (status, body) = app.send(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("booking_closed"))
    );
    let (status, body) = app.book("not-a-token", "clinic-001", &date, "14:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("booking_closed"))
    );

    // Reads still answer.
    assert_eq!(app.slots("clinic-001", &date).await[0].2, 4);
    let (status, _) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200);

    app.set_kill_switch(false).await;
    let other = app.login(5_500_000_001).await;
    let (status, _) = app.book(&other, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201);
}

async fn only_sre_and_admin_may_touch_the_switch(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.import_residents(5_600_000_000, 1).await;
    let resident = app.login(5_600_000_000).await;
    let body = json!({"engaged": true, "reason": "x"});
    for (key, expected) in [
        (crate::helpers::STAFF_KEY, 403),
        (crate::helpers::OPERATOR_KEY, 403),
        (resident.as_str(), 403),
        ("wrong-key", 401),
    ] {
        let (status, answer) = app
            .send(Method::PUT, "/v1/admin/kill-switch", Some(key), Some(&body))
            .await;
        assert_eq!(status, expected, "{answer}");
    }
    let (status, answer) = app
        .send(
            Method::PUT,
            "/v1/admin/kill-switch",
            Some(crate::helpers::ADMIN_KEY),
            Some(&body),
        )
        .await;
    assert_eq!((status, &answer["changed_by"]), (200, &json!("admin")));
}

on_both_stores!(
    after_the_put_returns_every_booking_is_refused_and_the_store_holds_exactly_the_201s,
    reads_keep_working_and_release_reopens_booking,
    only_sre_and_admin_may_touch_the_switch,
);
