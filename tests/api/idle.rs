//! Venue-day actors stop when idle (so memory and `VENUE_DAYS_MAX` are not
//! used up by every day ever touched) and their day reloads on demand with
//! exact counters.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::helpers::{Backend, TestApp, future_date};

/// The `vaxslot_venue_day_actors` gauge, as `/metrics` shows it now.
async fn running_actors(app: &TestApp) -> u64 {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = response.text().await.expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("vaxslot_venue_day_actors "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .expect("the actor gauge is exported")
}

/// Polls (bounded) until no venue-day actor runs.
async fn until_no_actor_runs(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_actors(app).await != 0 {
        assert!(Instant::now() < deadline, "idle actors did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn idle_venue_days_stop_and_reload_with_exact_counters(backend: Backend) {
    let app = TestApp::spawn_with_env(backend, &[("VAXSLOT_VENUE_DAY_IDLE_S", "0.3")]).await;
    let date = future_date(20);
    app.venue_day("idle-clinic", &date, &[("10:00", 2)]).await;
    app.import_residents(3_100_000_000, 3).await;
    let tokens = app.login_many(3_100_000_000, 3).await;
    let (status, first) = app.book(&tokens[0], "idle-clinic", &date, "10:00").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(running_actors(&app).await, 1);

    until_no_actor_runs(&app).await;
    // Reloaded from the store: one place left, then none.
    assert_eq!(
        app.book(&tokens[1], "idle-clinic", &date, "10:00").await.0,
        201
    );
    let (status, full) = app.book(&tokens[2], "idle-clinic", &date, "10:00").await;
    assert_eq!((status, full["code"].as_str()), (409, Some("slot_full")));
    assert_eq!(app.slots("idle-clinic", &date).await[0].2, 0);

    // A reservation made before the stop is cancelled through a fresh actor.
    until_no_actor_runs(&app).await;
    let id = first["reservation_id"].as_str().unwrap();
    let (status, cancelled) = app
        .send(
            Method::DELETE,
            &format!("/v1/reservations/{id}"),
            Some(&tokens[0]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(app.slots("idle-clinic", &date).await[0].2, 1);
    assert_eq!(
        app.book(&tokens[2], "idle-clinic", &date, "10:00").await.0,
        201
    );
}

on_both_stores!(idle_venue_days_stop_and_reload_with_exact_counters);
