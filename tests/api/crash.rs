//! SIGKILL: no `201` is lost, counters equal capacity minus stored
//! reservations, and an engaged switch stays engaged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, SRE_KEY, TestApp, future_date};

async fn a_sigkill_mid_herd_loses_no_201_and_counters_match_the_store(backend: Backend) {
    const DAYS: usize = 4;
    const CAPACITY: u32 = 150;
    const RESIDENTS: u64 = 1_200;
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    for d in 0..DAYS {
        app.venue_day(
            &format!("venue-{d}"),
            &date,
            &[("10:00", CAPACITY), ("10:15", CAPACITY)],
        )
        .await;
    }
    app.import_residents(6_000_000_000, RESIDENTS).await;
    let tokens = app.login_many(6_000_000_000, RESIDENTS).await;

    let app = Arc::new(tokio::sync::Mutex::new(app));
    let (base, client) = {
        let app = app.lock().await;
        (app.base.clone(), app.client.clone())
    };
    let done = Arc::new(AtomicUsize::new(0));
    let herd = {
        let (done, date) = (Arc::clone(&done), date.clone());
        tokio::spawn(async move {
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (client, base, done, date) = (
                        client.clone(),
                        base.clone(),
                        Arc::clone(&done),
                        date.clone(),
                    );
                    async move {
                        let time = if i % 2 == 0 { "10:00" } else { "10:15" };
                        let sent = client
                            .post(format!("{base}/v1/reservations"))
                            .bearer_auth(&token)
                            .json(&json!({"venue_id": format!("venue-{}", i % DAYS),
                                "date": date, "time": time}))
                            .send()
                            .await;
                        done.fetch_add(1, Ordering::SeqCst);
                        let response = match sent {
                            Ok(response) => response,
                            Err(_) => return (token, None),
                        };
                        let status = response.status().as_u16();
                        let body: serde_json::Value = match response.json().await {
                            Ok(body) => body,
                            Err(_) => return (token, None),
                        };
                        (token, Some((status, body)))
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        })
    };
    while done.load(Ordering::SeqCst) < (RESIDENTS / 3) as usize {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    app.lock().await.kill().await;
    let answers = herd.await.expect("herd finishes");

    let created: HashMap<String, String> = answers
        .iter()
        .filter_map(|(token, answer)| match answer {
            Some((201, body)) => Some((
                body["reservation_id"].as_str().unwrap().to_owned(),
                token.clone(),
            )),
            _ => None,
        })
        .collect();
    let unknown = answers.iter().filter(|(_, a)| a.is_none()).count();
    // Capacity is ample: every request that got an answer got a 201, so
    // whatever the store holds beyond the 201s can only be requests whose
    // answer the kill cut off.
    for (_, answer) in &answers {
        if let Some((status, body)) = answer {
            assert_eq!(*status, 201, "{body}");
        }
    }
    assert!(
        !created.is_empty(),
        "some bookings were answered before the kill"
    );
    assert!(unknown > 0, "the kill happened mid-herd");

    let app = Arc::try_unwrap(app)
        .ok()
        .expect("herd released the app")
        .into_inner();
    let app = app.crash_and_restart().await;
    // Every 201 is there, seen by its owner (tokens survive: same secret).
    for (id, token) in &created {
        let (status, body) = app
            .send(
                Method::GET,
                &format!("/v1/reservations/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("booked")),
            "{id}"
        );
    }
    // Counters as the restarted server shows them…
    let mut used_per_slot = HashMap::new();
    for d in 0..DAYS {
        for (time, capacity, remaining) in app.slots(&format!("venue-{d}"), &date).await {
            used_per_slot.insert((format!("venue-{d}"), time), capacity - remaining);
        }
    }
    // …equal capacity minus what the store holds.
    let mut app = app;
    app.kill().await;
    let stored = app.stored_reservations().await;
    let stored_ids: HashSet<String> = stored.iter().map(|r| r.id.to_string()).collect();
    assert!(
        created.keys().all(|id| stored_ids.contains(id)),
        "no 201 lost"
    );
    assert!(
        stored.len() <= created.len() + unknown,
        "nothing stored that was refused"
    );
    let mut stored_per_slot: HashMap<(String, String), u64> = HashMap::new();
    for reservation in &stored {
        *stored_per_slot
            .entry((
                reservation.venue_id.to_string(),
                reservation.time.to_string(),
            ))
            .or_default() += 1;
    }
    for (slot, used) in used_per_slot {
        assert_eq!(
            used,
            stored_per_slot.get(&slot).copied().unwrap_or(0),
            "{slot:?}"
        );
    }
}

async fn an_engaged_switch_survives_a_sigkill(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(6_500_000_000, 1).await;
    app.set_kill_switch(true).await;

    let app = app.crash_and_restart().await;
    let (status, state) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(
        (status, &state["engaged"], &state["reason"]),
        (200, &json!(true), &json!("test"))
    );
    let token = app.login(6_500_000_000).await;
    let (status, body) = app.book(&token, "clinic-001", &date, "14:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("booking_closed"))
    );
    let (_, metrics) = app.send(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("vaxslot_kill_switch_engaged 1")
    );
}

/// After a restart the venue-day's actor starts from what the store holds:
/// the places booked before the crash stay taken, and a reservation made
/// before it can be cancelled after it.
async fn capacity_stays_exact_across_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("09:00", 3)]).await;
    app.import_residents(6_700_000_000, 5).await;
    let tokens = app.login_many(6_700_000_000, 5).await;
    let mut before = Vec::new();
    for token in &tokens[..2] {
        let (status, body) = app.book(token, "clinic-001", &date, "09:00").await;
        assert_eq!(status, 201, "{body}");
        before.push(body["reservation_id"].as_str().unwrap().to_owned());
    }

    let app = app.crash_and_restart().await;
    // One place is left: of two more residents, exactly one gets it.
    let mut statuses = Vec::new();
    for token in &tokens[2..4] {
        let (status, body) = app.book(token, "clinic-001", &date, "09:00").await;
        statuses.push((status, body["code"].as_str().map(str::to_owned)));
    }
    assert_eq!(
        statuses,
        vec![(201, None), (409, Some("slot_full".to_owned()))]
    );
    // A pre-crash reservation is known to the restarted actor: cancelling it
    // frees its place for the fifth resident.
    let (status, body) = app
        .send(
            Method::DELETE,
            &format!("/v1/reservations/{}", before[0]),
            Some(&tokens[0]),
            None,
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    let (status, body) = app.book(&tokens[4], "clinic-001", &date, "09:00").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        app.slots("clinic-001", &date).await,
        vec![("09:00".to_owned(), 3, 0)]
    );
}

on_both_stores!(
    capacity_stays_exact_across_a_restart,
    a_sigkill_mid_herd_loses_no_201_and_counters_match_the_store,
    an_engaged_switch_survives_a_sigkill,
);
