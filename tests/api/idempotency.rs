//! `Idempotency-Key`: a retry returns the first answer and never makes a
//! second reservation, also across a restart.

use serde_json::{Value, json};

use crate::helpers::{Backend, Booker, TestApp, Via, future_date, ticket};

async fn keyed_book(app: &TestApp, booker: &Booker, key: &str, body: &Value) -> (u16, String) {
    app.book_via(booker, body, Some(key)).await
}

const BIRTH_DATE: &str = "1960-01-01";

async fn the_same_key_twice_gives_one_reservation_and_the_same_answer(backend: Backend, via: Via) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(1_800_000_000, 1).await;
    let token = app.booker(via, &ticket(1_800_000_000), BIRTH_DATE).await;
    let body = json!({"venue_id": "clinic-001", "date": date, "time": "14:00"});

    let first = keyed_book(&app, &token, "launch-retry-1", &body).await;
    let second = keyed_book(&app, &token, "launch-retry-1", &body).await;
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(first, second, "the same answer, byte for byte");
    assert_eq!(app.reservations_via(&token).await.len(), 1);
    assert_eq!(app.slots("clinic-001", &date).await[0].2, 4);

    // The same key with another request is refused, not replayed.
    let other = json!({"venue_id": "clinic-001", "date": date, "time": "14:00", "dose": 2});
    let (status, answer) = keyed_book(&app, &token, "launch-retry-1", &other).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("idempotency_key_reused"));

    // Across a restart (SIGKILL), the retry still gets the first answer.
    let app = app.crash_and_restart().await;
    let after = keyed_book(&app, &token, "launch-retry-1", &body).await;
    assert_eq!(after, first);
    assert_eq!(app.reservations_via(&token).await.len(), 1);

    // A bad key is refused.
    let (status, answer) = keyed_book(&app, &token, &"k".repeat(65), &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("invalid_idempotency_key"));
}

async fn a_refusal_is_replayed_too_even_after_the_slot_frees(backend: Backend, via: Via) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 1)]).await;
    app.import_residents(1_810_000_000, 2).await;
    let alice = app.login(1_810_000_000).await;
    let bob = app.booker(via, &ticket(1_810_000_001), BIRTH_DATE).await;
    let (status, _) = app.book(&alice, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201);
    let body = json!({"venue_id": "clinic-001", "date": date, "time": "14:00"});
    let first = keyed_book(&app, &bob, "bob-1", &body).await;
    assert_eq!(first.0, 409, "{}", first.1);
    let (status, _) = app.put_day("clinic-001", &date, &[("14:00", 2)]).await;
    assert_eq!(status, 200);
    assert_eq!(keyed_book(&app, &bob, "bob-1", &body).await, first);
    // A new key books the freed place.
    assert_eq!(keyed_book(&app, &bob, "bob-2", &body).await.0, 201);
}

async fn keys_are_per_resident(backend: Backend, via: Via) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5)]).await;
    app.import_residents(1_820_000_000, 2).await;
    let alice = app.booker(via, &ticket(1_820_000_000), BIRTH_DATE).await;
    let bob = app.booker(via, &ticket(1_820_000_001), BIRTH_DATE).await;
    let body = json!({"venue_id": "clinic-001", "date": date, "time": "14:00"});
    let (_, alices) = keyed_book(&app, &alice, "same-key", &body).await;
    let (status, bobs) = keyed_book(&app, &bob, "same-key", &body).await;
    assert_eq!(status, 201);
    assert_ne!(alices, bobs, "Bob never gets Alice's answer");
    assert_eq!(app.slots("clinic-001", &date).await[0].2, 3);
}

/// A key whose record this process no longer holds (pushed out by the
/// resident's later keys; on several processes, also a record not taken
/// in while a try of the key was in flight, seen by the nemesis) still
/// gets its booking's answer, never "already reserved" by its own booking.
async fn a_key_forgotten_here_still_gets_its_own_booking(backend: Backend, via: Via) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 5), ("15:00", 5)])
        .await;
    app.import_residents(1_830_000_000, 1).await;
    let token = app.booker(via, &ticket(1_830_000_000), BIRTH_DATE).await;
    let body = json!({"venue_id": "clinic-001", "date": date, "time": "14:00", "dose": 1});
    let first = keyed_book(&app, &token, "first-try", &body).await;
    assert_eq!(first.0, 201, "{}", first.1);
    for n in 0..vaxslot::residents::IDEMPOTENCY_KEYS_PER_RESIDENT_MAX {
        let (status, answer) = keyed_book(&app, &token, &format!("later-{n}"), &body).await;
        assert_eq!(status, 409, "{answer}");
    }
    // Another request under the key is refused, and that refusal is not
    // what the key's own request gets next.
    let other = json!({"venue_id": "clinic-001", "date": date, "time": "15:00", "dose": 1});
    let reused = keyed_book(&app, &token, "first-try", &other).await;
    assert_eq!(reused.0, 422, "{}", reused.1);
    assert!(reused.1.contains("idempotency_key_reused"), "{}", reused.1);
    let again = keyed_book(&app, &token, "first-try", &body).await;
    assert_eq!(again.0, 201, "{}", again.1);
    let id =
        |answer: &str| serde_json::from_str::<Value>(answer).unwrap()["reservation_id"].clone();
    assert_eq!(id(&again.1), id(&first.1));
    assert_eq!(app.reservations_via(&token).await.len(), 1);
}

on_both_stores_and_channels!(
    the_same_key_twice_gives_one_reservation_and_the_same_answer,
    a_refusal_is_replayed_too_even_after_the_slot_frees,
    keys_are_per_resident,
    a_key_forgotten_here_still_gets_its_own_booking,
);
