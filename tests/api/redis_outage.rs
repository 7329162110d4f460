//! Redis going away and coming back, and a second process with a stale
//! fencing token: the same guarantees hold, and vaxslot recovers by itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, future_date};

/// How fast an answer must come while Redis is down.
const OUTAGE_ANSWER_MAX: Duration = Duration::from_secs(5);
/// How long vaxslot may take to recover once Redis is back.
const RECOVERY_MAX: Duration = Duration::from_secs(15);

/// Polls until the store holds exactly `expected`, for up to `RECOVERY_MAX`
/// (an uncertain batch is abandoned shortly after Redis returns).
async fn assert_store_settles_to(app: &TestApp, expected: &HashSet<String>) {
    let deadline = Instant::now() + RECOVERY_MAX;
    loop {
        let stored = app.stored_ids().await;
        if &stored == expected {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected.difference(&stored).collect();
            let extra: Vec<_> = stored.difference(expected).collect();
            panic!(
                "store != 201s after {RECOVERY_MAX:?}: missing {missing:?}, extra {extra:?}\nserver log:\n{}",
                app.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_stopped_means_fast_503s_and_not_ready_then_recovery_by_itself() {
    let mut app = TestApp::spawn(Backend::Redis).await;
    let date = future_date(30);
    app.venue_day("clinic-001", &date, &[("14:00", 50)]).await;
    app.import_residents(9_000_000_000, 20).await;
    let tokens = app.login_many(9_000_000_000, 20).await;
    let (status, first) = app.book(&tokens[0], "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201, "{first}");

    app.redis.as_mut().unwrap().kill().await;
    let started = Instant::now();
    let (status, body) = app.book(&tokens[1], "clinic-001", &date, "14:00").await;
    assert!(
        started.elapsed() < OUTAGE_ANSWER_MAX,
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    let started = Instant::now();
    let (status, body) = app.send(Method::GET, "/readyz", None, None).await;
    assert!(started.elapsed() < OUTAGE_ANSWER_MAX);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable"))
    );
    // Reads from memory keep working.
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);

    app.redis.as_mut().unwrap().restart().await;
    let deadline = Instant::now() + RECOVERY_MAX;
    let mut created = HashSet::from([first["reservation_id"].as_str().unwrap().to_owned()]);
    loop {
        let (status, body) = app.book(&tokens[2], "clinic-001", &date, "14:00").await;
        if status == 201 {
            created.insert(body["reservation_id"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(body["code"], "store_unavailable", "{body}");
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    // Nothing half-written: the refused booking is not there.
    assert_store_settles_to(&app, &created).await;
    let used: u64 = app
        .slots("clinic-001", &date)
        .await
        .iter()
        .map(|(_, c, r)| c - r)
        .sum();
    assert_eq!(used, created.len() as u64);
}

#[tokio::test]
async fn a_sigkilled_redis_restarted_from_its_aof_keeps_every_201_and_nothing_else() {
    const DAYS: usize = 4;
    const RESIDENTS: u64 = 1_200;
    const HERD_CONCURRENCY: usize = 32;
    let app = Arc::new(tokio::sync::Mutex::new(
        TestApp::spawn(Backend::Redis).await,
    ));
    let date = future_date(30);
    let (base, client) = {
        let app = app.lock().await;
        for d in 0..DAYS {
            app.venue_day(&format!("venue-{d}"), &date, &[("10:00", 1_000)])
                .await;
        }
        app.import_residents(9_100_000_000, RESIDENTS).await;
        (app.base.clone(), app.client.clone())
    };
    let tokens = app.lock().await.login_many(9_100_000_000, RESIDENTS).await;

    // Synchronised by events, not sleeps: `answered` counts answers, and the
    // requests of quarter q (q ≥ 1) start only once outage q has ended, so
    // each outage is met by the end of the quarter before it.
    let (answered_tx, mut answered) = tokio::sync::watch::channel(0usize);
    let (outages_ended_tx, outages_ended) = tokio::sync::watch::channel(0u64);
    let answered_tx = Arc::new(answered_tx);
    let herd = {
        let date = date.clone();
        tokio::spawn(async move {
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (client, base, answered_tx, date) = (
                        client.clone(),
                        base.clone(),
                        Arc::clone(&answered_tx),
                        date.clone(),
                    );
                    let mut outages_ended = outages_ended.clone();
                    async move {
                        let quarter = i as u64 * 4 / RESIDENTS;
                        outages_ended
                            .wait_for(|ended| *ended >= quarter)
                            .await
                            .expect("the test runs the outages");
                        let response = client
                            .post(format!("{base}/v1/reservations"))
                            .bearer_auth(&token)
                            .json(&json!({"venue_id": format!("venue-{}", i % DAYS),
                                "date": date, "time": "10:00"}))
                            .send()
                            .await
                            .expect("vaxslot itself stays up");
                        let status = response.status().as_u16();
                        let body: serde_json::Value = response.json().await.expect("json");
                        answered_tx.send_modify(|n| *n += 1);
                        (status, body)
                    }
                })
                .buffer_unordered(HERD_CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        })
    };
    // Three outages, each one a SIGKILL while the last requests of a quarter
    // are being committed: the more often Redis dies between applying a
    // script and replying, the more surely an applied-but-refused batch
    // would show. Redis comes back once the whole quarter has been answered
    // (its tail during the outage).
    for outage in 1..=3u64 {
        let quarter_end = (RESIDENTS * outage / 4) as usize;
        let kill_at = quarter_end - HERD_CONCURRENCY / 2;
        answered
            .wait_for(|n| *n >= kill_at)
            .await
            .expect("herd runs");
        app.lock().await.redis.as_mut().unwrap().kill().await;
        answered
            .wait_for(|n| *n >= quarter_end)
            .await
            .expect("herd runs");
        app.lock().await.redis.as_mut().unwrap().restart().await;
        outages_ended_tx.send_replace(outage);
    }
    let answers = herd.await.expect("herd finishes");

    let created: HashSet<String> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body["reservation_id"].as_str().unwrap().to_owned())
        .collect();
    let refused = answers.iter().filter(|(status, _)| *status == 503).count();
    for (status, body) in &answers {
        assert!(
            *status == 201 || body["code"] == "store_unavailable",
            "only 201 or store_unavailable: {status} {body}"
        );
    }
    assert!(refused > 0, "the outage was seen");
    assert!(
        created.len() > RESIDENTS as usize / 3,
        "bookings resumed after Redis returned"
    );

    let app = Arc::try_unwrap(app)
        .ok()
        .expect("herd released the app")
        .into_inner();
    assert_store_settles_to(&app, &created).await;
    // vaxslot reconnected by itself, and its counters match the store.
    let mut used = 0;
    for d in 0..DAYS {
        used += app
            .slots(&format!("venue-{d}"), &date)
            .await
            .iter()
            .map(|(_, c, r)| c - r)
            .sum::<u64>();
    }
    assert_eq!(used, created.len() as u64);
    let app = app.crash_and_restart().await;
    let mut used_after_restart = 0;
    for d in 0..DAYS {
        used_after_restart += app
            .slots(&format!("venue-{d}"), &date)
            .await
            .iter()
            .map(|(_, c, r)| c - r)
            .sum::<u64>();
    }
    assert_eq!(used_after_restart, created.len() as u64);
}

/// Another owner takes the venue-day over (a newer epoch, as a second
/// process whose view of the members differed would): the first process's
/// next batch is fenced, answered 503, and nothing of it is written; the day
/// then reloads and books again.
#[tokio::test]
async fn a_second_process_with_a_stale_fencing_token_cannot_commit() {
    use vaxslot::store::prelude::*;
    let first = TestApp::spawn(Backend::Redis).await;
    let date = future_date(30);
    first.venue_day("clinic-001", &date, &[("14:00", 10)]).await;
    first.import_residents(9_200_000_000, 3).await;

    // The first process's actor takes the venue-day and books.
    let alice = first.login(9_200_000_000).await;
    let (status, a) = first.book(&alice, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201, "{a}");
    // Another owner loads the day: a newer epoch.
    let other = vaxslot::store::RedisStore::connect(&first.redis.as_ref().unwrap().url())
        .await
        .unwrap();
    other
        .load_venue_day(vaxslot::domain::VenueDayKey {
            venue_id: vaxslot::domain::VenueId::parse("clinic-001").unwrap(),
            date: vaxslot::domain::parse_date(&date).unwrap(),
        })
        .await
        .unwrap();
    // The first process's token is stale now: its commit is refused.
    let bob = first.login(9_200_000_001).await;
    let (status, b) = first.book(&bob, "clinic-001", &date, "14:00").await;
    assert_eq!(
        (status, b["code"].as_str()),
        (503, Some("store_unavailable")),
        "{b}"
    );
    let stored = first.stored_ids().await;
    let expected: HashSet<String> = [a["reservation_id"].as_str().unwrap().to_owned()].into();
    assert_eq!(
        stored, expected,
        "nothing of the stale owner's batch was written"
    );
    // The fenced actor stopped; the next request reloads the day and books.
    let carol = first.login(9_200_000_002).await;
    let (status, c) = first.book(&carol, "clinic-001", &date, "14:00").await;
    assert_eq!(status, 201, "{c}");
}
