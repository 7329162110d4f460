//! Mail (API.md "Notifications"), against a real SMTP server
//! (`smtp_sink.rs`): a confirmation per booking, one cancellation per cancel
//! call listing its cascade, a reminder on the day before (at once when that
//! moment has passed), none for a refused booking or a cancelled
//! reservation; every mail exactly once (by `Message-ID`) across an SMTP
//! outage and a SIGKILL; Japanese that decodes; nothing personal in the log.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, SRE_KEY, TestApp, Via, future_date, ticket};
use crate::smtp_sink::SmtpSink;

const FROM: &str = "vaccine@city.example.jp";
const SITE: &str = "https://vaccine.city.example.jp/";
const CALL_CENTRE: &str = "0120-567-000";
const NAME: &str = "中野 太郎";
const BIRTH: &str = "1950-04-01";
/// Longest a due mail may take to arrive (the worker polls every 0.5 s).
const ARRIVAL: Duration = Duration::from_secs(20);

fn mail_env(sink: &SmtpSink, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("VAXSLOT_SMTP_URL", sink.url()),
        ("VAXSLOT_MAIL_FROM", FROM.to_owned()),
        ("VAXSLOT_PUBLIC_URL", SITE.to_owned()),
        ("VAXSLOT_CALL_CENTRE_PHONE", CALL_CENTRE.to_owned()),
        // Retries within a test's patience.
        ("VAXSLOT_MAIL_RETRY_MAX_S", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn mail_app(backend: Backend, sink: &SmtpSink, extra: &[(&str, &str)]) -> TestApp {
    let env = mail_env(sink, extra);
    TestApp::spawn_with_env(backend, &as_refs(&env)).await
}

/// Imports one resident named `NAME`, with `email` if given.
async fn resident(app: &TestApp, number: u64, email: Option<&str>) {
    app.import(
        json!([{"ticket_number": ticket(number), "birth_date": BIRTH, "name": NAME,
        "email": email, "phone": "0312345678", "high_risk": false, "history": []}]),
    )
    .await;
}

fn address(number: u64) -> String {
    format!("resident{number}@example.jp")
}

/// The messages whose `Message-ID` names a mail of `kind`.
fn of_kind<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    let tag = format!(".{kind}@");
    messages
        .iter()
        .filter(|m| m["message_id"].as_str().unwrap().contains(&tag))
        .collect()
}

fn message_id(reservation_id: &str, kind: &str) -> String {
    format!("<{reservation_id}.{kind}@city.example.jp>")
}

/// Mail arrived for each `Message-ID`, counted.
fn count_by_message_id(messages: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in messages {
        *counts
            .entry(message["message_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn mail_outbox(app: &TestApp) -> Value {
    let (status, body) = app
        .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["mail_outbox"].clone()
}

/// Waits until the status says no mail is pending.
async fn until_outbox_empty(app: &TestApp) {
    for _ in 0..100 {
        if mail_outbox(app).await["pending"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the outbox did not empty: {}", mail_outbox(app).await);
}

fn assert_says(message: &Value, expected: &[&str]) {
    let body = message["body"].as_str().unwrap();
    for text in expected {
        assert!(body.contains(text), "{text:?} missing from:\n{body}");
    }
}

async fn each_change_is_mailed_once_in_japanese(backend: Backend, via: Via) {
    let sink = SmtpSink::start().await;
    // The reminder moment (00:00 on the day before) has passed for tomorrow:
    // a booking for tomorrow is reminded at once.
    let app = mail_app(backend, &sink, &[("VAXSLOT_REMINDER_AT", "00:00")]).await;
    let tomorrow = future_date(1);
    let later = future_date(1 + 28);
    app.venue_day("clinic-001", &tomorrow, &[("14:00", 2)])
        .await;
    app.venue_day("clinic-002", &later, &[("15:30", 5)]).await;
    let (a, no_email, refused) = (1_800_000_001, 1_800_000_002, 1_800_000_003);
    resident(&app, a, Some(&address(a))).await;
    resident(&app, no_email, None).await;
    resident(&app, refused, Some(&address(refused))).await;

    let booker = app.booker(via, &ticket(a), BIRTH).await;
    let (status, dose1) = app
        .book_slot_via(&booker, "clinic-001", &tomorrow, "14:00")
        .await;
    assert_eq!(status, 201, "{dose1}");
    // Someone without an address books: no mail, and the day is now full.
    let other = app.booker(via, &ticket(no_email), BIRTH).await;
    let (status, body) = app
        .book_slot_via(&other, "clinic-001", &tomorrow, "14:00")
        .await;
    assert_eq!(status, 201, "{body}");
    // A refused booking leaves no mail.
    let late = app.booker(via, &ticket(refused), BIRTH).await;
    let (status, body) = app
        .book_slot_via(&late, "clinic-001", &tomorrow, "14:00")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("slot_full")),
        "{body}"
    );
    let (status, dose2) = app
        .book_slot_via(&booker, "clinic-002", &later, "15:30")
        .await;
    assert_eq!(status, 201, "{dose2}");
    let (id1, id2) = (
        dose1["reservation_id"].as_str().unwrap(),
        dose2["reservation_id"].as_str().unwrap(),
    );

    // Dose 1's confirmation and its reminder (due at once), dose 2's
    // confirmation (its reminder waits for its day before).
    let messages = sink.wait_for(3, ARRIVAL).await;
    let ids = count_by_message_id(&messages);
    for expected in [
        message_id(id1, "confirmation"),
        message_id(id1, "reminder"),
        message_id(id2, "confirmation"),
    ] {
        assert_eq!(ids.get(&expected), Some(&1), "{expected} in {ids:?}");
    }
    for message in &messages {
        assert_eq!(message["to"], format!("{NAME} <{}>", address(a)));
        assert_eq!(message["envelope_to"], json!([address(a)]));
        assert_eq!(message["from"], FROM);
        assert_eq!(message["content_type"], "text/plain");
        assert_eq!(message["charset"], "utf-8");
    }
    let confirmation = of_kind(&messages, "confirmation")
        .into_iter()
        .find(|m| m["message_id"] == message_id(id1, "confirmation"))
        .unwrap();
    let (month, day) = month_day(&tomorrow);
    assert_eq!(
        confirmation["subject"],
        format!("ワクチン接種のご予約を受け付けました（{month}月{day}日 14:00）")
    );
    assert_says(
        confirmation,
        &[
            &format!("{NAME} 様"),
            &format!("{month}月{day}日"),
            &tomorrow,
            "14:00",
            "1回目",
            id1,
            SITE,
            CALL_CENTRE,
        ],
    );
    let reminder = of_kind(&messages, "reminder")[0];
    assert!(
        reminder["subject"]
            .as_str()
            .unwrap()
            .starts_with("【明日】")
    );
    assert_says(reminder, &[&format!("{NAME} 様"), id1, "14:00"]);

    // Cancelling dose 1 cancels dose 2 too: one mail listing both.
    let (status, body) = app.cancel_via(&booker, id1).await;
    assert_eq!(status, 200, "{body}");
    let messages = sink.wait_for(4, ARRIVAL).await;
    let cancellations = of_kind(&messages, "cancellation");
    assert_eq!(cancellations.len(), 1, "{messages:#?}");
    assert_eq!(
        cancellations[0]["message_id"],
        message_id(id1, "cancellation")
    );
    assert_eq!(
        cancellations[0]["subject"],
        "ワクチン接種のご予約を取り消しました"
    );
    assert_says(
        cancellations[0],
        &[id1, id2, "1回目", "2回目", "14:00", "15:30"],
    );

    // Nothing else comes: no mail for the resident without an address or
    // for the refused booking, nothing twice.
    until_outbox_empty(&app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(count_by_message_id(&messages).values().all(|n| *n == 1));
    assert_eq!(mail_outbox(&app).await["enabled"], true);
    // No address or name in the log.
    let logs = app.logs();
    for personal in [address(a).as_str(), NAME, "中野"] {
        assert!(!logs.contains(personal), "{personal:?} in the log");
    }
}

fn month_day(date: &str) -> (u32, u32) {
    let date = vaxslot::domain::parse_date(date).unwrap();
    use chrono::Datelike;
    (date.month(), date.day())
}

async fn a_days_reminders_are_queued_at_its_moment_once_across_restarts_and_not_for_a_cancelled_booking(
    backend: Backend,
) {
    let sink = SmtpSink::start().await;
    // The server's clock starts a few seconds before 10:00 today (Tokyo),
    // the reminder moment for tomorrow's slots.
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let start = format!("{today}T09:59:52+09:00");
    let extra = [
        ("VAXSLOT_CLOCK_START", start.as_str()),
        ("VAXSLOT_REMINDER_AT", "10:00"),
    ];
    let env = mail_env(&sink, &extra);
    let app = TestApp::spawn_with_env(backend, &as_refs(&env)).await;
    let tomorrow = future_date(1);
    app.venue_day("clinic-001", &tomorrow, &[("11:00", 5)])
        .await;
    let (kept, cancelled) = (1_800_000_011, 1_800_000_012);
    resident(&app, kept, Some(&address(kept))).await;
    resident(&app, cancelled, Some(&address(cancelled))).await;
    let keeper = app.booker(Via::Web, &ticket(kept), BIRTH).await;
    let (status, booked) = app
        .book_slot_via(&keeper, "clinic-001", &tomorrow, "11:00")
        .await;
    assert_eq!(status, 201, "{booked}");
    let canceller = app.booker(Via::Web, &ticket(cancelled), BIRTH).await;
    let (status, withdrawn) = app
        .book_slot_via(&canceller, "clinic-001", &tomorrow, "11:00")
        .await;
    assert_eq!(status, 201, "{withdrawn}");
    let withdrawn_id = withdrawn["reservation_id"].as_str().unwrap();
    let (status, body) = app.cancel_via(&canceller, withdrawn_id).await;
    assert_eq!(status, 200, "{body}");

    // Two confirmations and a cancellation at once; no reminder before 10:00.
    let messages = sink.wait_for(3, ARRIVAL).await;
    assert_eq!(of_kind(&messages, "reminder").len(), 0, "{messages:#?}");
    // The reminder is in the store, not in memory: a SIGKILL and a restart
    // (its clock again a few seconds before 10:00) keep it.
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    let messages = sink.wait_for(4, ARRIVAL).await;
    let reminders = of_kind(&messages, "reminder");
    assert_eq!(reminders.len(), 1, "{messages:#?}");
    let kept_id = booked["reservation_id"].as_str().unwrap();
    assert_eq!(reminders[0]["message_id"], message_id(kept_id, "reminder"));
    assert_eq!(reminders[0]["envelope_to"], json!([address(kept)]));
    // The cancelled reservation's reminder never comes, and nothing repeats
    // after another restart.
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(count_by_message_id(&messages).values().all(|n| *n == 1));
    drop(app);
}

/// Residents `first..first + count`, each with an address, and their tokens.
async fn residents_with_mail(app: &TestApp, first: u64, count: u64) -> Vec<String> {
    let records: Vec<Value> = (first..first + count)
        .map(|n| {
            json!({"ticket_number": ticket(n), "birth_date": "1960-01-01", "name": NAME,
                "email": address(n), "high_risk": false, "history": []})
        })
        .collect();
    app.import(Value::Array(records)).await;
    app.login_many(first, count).await
}

async fn smtp_down_during_a_herd_and_a_sigkill_then_every_mail_arrives_exactly_once(
    backend: Backend,
) {
    const HERD: u64 = 300;
    let mut sink = SmtpSink::down();
    let env = mail_env(&sink, &[]);
    let app = TestApp::spawn_with_env(backend, &as_refs(&env)).await;
    let date = future_date(20);
    app.venue_day("clinic-001", &date, &[("10:00", 200), ("10:30", 200)])
        .await;
    let tokens = residents_with_mail(&app, 1_800_001_000, HERD).await;
    use futures::StreamExt;
    let answers: Vec<(u16, Value)> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let time = if i % 2 == 0 { "10:00" } else { "10:30" };
            app.book(token, "clinic-001", &date, time)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // SMTP down never fails a booking.
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    let booked: Vec<String> = answers
        .iter()
        .map(|(_, b)| b["reservation_id"].as_str().unwrap().to_owned())
        .collect();
    // The SRE sees the mail waiting (the figures are read every second).
    let mut outbox = Value::Null;
    for _ in 0..30 {
        outbox = mail_outbox(&app).await;
        if outbox["pending"].as_u64().unwrap() == HERD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(outbox["pending"], HERD, "{outbox}");
    assert!(sink.messages().is_empty());
    // SIGKILL with the mail queued; SMTP comes back; the service restarts.
    let mut app = app;
    app.kill().await;
    sink.come_up().await;
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    // MAIL_LEASE (30 s) bounds how long a mail claimed at the SIGKILL waits.
    let messages = sink.wait_for(HERD as usize, Duration::from_secs(60)).await;
    until_outbox_empty(&app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = if messages.len() > HERD as usize {
        messages
    } else {
        sink.messages()
    };
    let counts = count_by_message_id(&messages);
    assert_eq!(messages.len(), HERD as usize, "one mail each: {counts:?}");
    for id in &booked {
        assert_eq!(
            counts.get(&message_id(id, "confirmation")),
            Some(&1),
            "{id}"
        );
    }
}

async fn a_permanent_refusal_is_recorded_and_a_temporary_one_retried(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = mail_app(backend, &sink, &[]).await;
    let date = future_date(20);
    app.venue_day("clinic-001", &date, &[("10:00", 5)]).await;
    resident(&app, 1_800_002_001, Some("reject@example.jp")).await;
    resident(&app, 1_800_002_002, Some("later@example.jp")).await;
    for number in [1_800_002_001, 1_800_002_002] {
        let token = app.login_as(&ticket(number), BIRTH).await;
        let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
        assert_eq!(status, 201, "{body}");
    }
    // The 550 is final: counted once as failed; the 451 is tried again and
    // again (retry wait capped at 1 s here) and stays pending.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = metrics_text(&app).await;
        if failures(&metrics, "failed") == 1.0 && failures(&metrics, "retry") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(failures(&metrics, "failed"), 1.0, "{metrics}");
    assert!(failures(&metrics, "retry") >= 3.0, "{metrics}");
    let outbox = mail_outbox(&app).await;
    assert_eq!(outbox["pending"], 1, "only the one tried again: {outbox}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        failures(&metrics_text(&app).await, "failed"),
        1.0,
        "a permanent failure is not tried again"
    );
    assert!(mail_outbox(&app).await["oldest_s"].as_u64().unwrap() >= 2);
    assert!(sink.messages().is_empty());
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

/// With the login in `VAXSLOT_SMTP_URL` the server takes the mail; with a
/// wrong password it does not; the password is in no log line.
#[tokio::test]
async fn mail_logs_in_to_a_server_that_asks_for_it() {
    let sink = SmtpSink::start_with_login("ward", "s3cret-pass").await;
    for (password, delivered) in [("s3cret-pass", true), ("wrong-pass", false)] {
        let url = format!("smtp://ward:{password}@127.0.0.1:{}", sink.port);
        let before = sink.messages().len();
        let app = mail_app(
            Backend::Embedded,
            &sink,
            &[("VAXSLOT_SMTP_URL", url.as_str())],
        )
        .await;
        let date = future_date(20);
        app.venue_day("clinic-001", &date, &[("10:00", 5)]).await;
        resident(&app, 1_800_005_001, Some(&address(1_800_005_001))).await;
        let token = app.login_as(&ticket(1_800_005_001), BIRTH).await;
        let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
        assert_eq!(status, 201, "{body}");
        if delivered {
            let messages = sink.wait_for(before + 1, ARRIVAL).await;
            assert_eq!(
                messages[before]["envelope_to"],
                json!([address(1_800_005_001)])
            );
        } else {
            // (aiosmtpd answers a wrong password slowly: a timeout, tried again.)
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(sink.messages().len(), before);
        }
        assert!(!app.logs().contains(password), "the password is logged");
    }
}

/// `vaxslot_mail_failures_total{kind="confirmation",outcome=…}`.
fn failures(metrics: &str, outcome: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("vaxslot_mail_failures_total{")
                && l.contains("kind=\"confirmation\"")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn without_an_smtp_url_nothing_is_queued(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.venue_day("clinic-001", &date, &[("10:00", 5)]).await;
    resident(&app, 1_800_003_001, Some(&address(1_800_003_001))).await;
    let token = app.login_as(&ticket(1_800_003_001), BIRTH).await;
    let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        mail_outbox(&app).await,
        json!({"enabled": false, "pending": 0, "oldest_s": 0})
    );
    // Turning mail on later sends nothing for what was booked before.
    let sink = SmtpSink::start().await;
    let env = mail_env(&sink, &[]);
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    assert_eq!(mail_outbox(&app).await["enabled"], true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sink.messages().is_empty());
}

/// Two processes on one Redis deliver the same outbox: each mail once.
#[tokio::test]
async fn on_redis_two_processes_never_send_the_same_mail() {
    const EACH: u64 = 150;
    let mut sink = SmtpSink::down();
    let env = mail_env(&sink, &[]);
    let first = TestApp::spawn_with_env(Backend::Redis, &as_refs(&env)).await;
    let date = future_date(20);
    // One venue-day per process (one owner each; forwarding is for later).
    first
        .venue_day("clinic-001", &date, &[("10:00", 500)])
        .await;
    first
        .venue_day("clinic-002", &date, &[("10:00", 500)])
        .await;
    let tokens = residents_with_mail(&first, 1_800_004_000, 2 * EACH).await;
    // Started after the import: a process loads the residents when it starts.
    let second = first.spawn_second_with_env(&as_refs(&env)).await;
    use futures::StreamExt;
    let answers: Vec<(u16, Value)> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let (app, venue) = if i % 2 == 0 {
                (&first, "clinic-001")
            } else {
                (&second, "clinic-002")
            };
            app.book(token, venue, &date, "10:00")
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let booked = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(booked, 2 * EACH as usize, "refused: {refused:?}");
    // Both workers find the whole outbox due at once when SMTP comes up.
    sink.come_up().await;
    sink.wait_for(2 * EACH as usize, ARRIVAL).await;
    until_outbox_empty(&first).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = sink.messages();
    let counts = count_by_message_id(&messages);
    assert_eq!(counts.len(), 2 * EACH as usize);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    drop(second);
}

/// A day whose owner died at its reminder moment, before queuing its
/// reminders, is reminded by the process that takes it over: a scheduler
/// that found the day owned elsewhere asks again (it took the other's
/// answer for its own and never asked again: the reminders never went).
/// The owner here runs without mail, so it never queues them itself.
#[tokio::test]
async fn a_day_whose_owner_dies_before_its_reminders_is_reminded_by_the_next_owner() {
    let sink = SmtpSink::start().await;
    let owner = TestApp::spawn(Backend::Redis).await;
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let start = format!("{today}T10:00:05+09:00");
    let env = mail_env(
        &sink,
        &[
            ("VAXSLOT_CLOCK_START", &start),
            ("VAXSLOT_REMINDER_AT", "10:00"),
        ],
    );
    let next = owner.spawn_second_with_env(&as_refs(&env)).await;
    for app in [&owner, &next] {
        crate::cluster::until_processes(app, 2).await;
    }
    let tomorrow = future_date(1);
    let venue = owner.venue_owned_by(&owner, "reminded", &tomorrow).await;
    owner.venue_day(&venue, &tomorrow, &[("11:00", 5)]).await;
    let number = 1_800_000_021;
    resident(&owner, number, Some(&address(number))).await;
    let booker = owner.booker(Via::Web, &ticket(number), BIRTH).await;
    let (status, booked) = owner
        .book_slot_via(&booker, &venue, &tomorrow, "11:00")
        .await;
    assert_eq!(status, 201, "{booked}");
    // The next owner's scheduler has found the day due, and owned by the other.
    let left = "reminders left to the venue-day's owner";
    for _ in 0..100 {
        if next.logs().contains(left) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(next.logs().contains(left), "the scheduler never looked");
    owner.signal("KILL").await;
    let messages = sink.wait_for(1, ARRIVAL).await;
    let reminders = of_kind(&messages, "reminder");
    assert_eq!(reminders.len(), 1, "{messages:#?}");
    let id = booked["reservation_id"].as_str().unwrap();
    assert_eq!(reminders[0]["message_id"], message_id(id, "reminder"));
}

on_both_stores_and_channels!(each_change_is_mailed_once_in_japanese);
on_both_stores!(
    a_days_reminders_are_queued_at_its_moment_once_across_restarts_and_not_for_a_cancelled_booking,
    smtp_down_during_a_herd_and_a_sigkill_then_every_mail_arrives_exactly_once,
    a_permanent_refusal_is_recorded_and_a_temporary_one_retried,
    without_an_smtp_url_nothing_is_queued,
);

/// Issue 23: a name with a line break (stored before the rule refused it)
/// made the mail worker panic, and with it every later mail, for good. Now
/// it is mailed on one line, to its one address, and the mail after it
/// still goes out.
#[tokio::test]
async fn a_name_stored_with_a_line_break_is_mailed_safely_and_the_next_mail_goes_out() {
    let sink = SmtpSink::start().await;
    let app = mail_app(Backend::Redis, &sink, &[]).await;
    let date = future_date(20);
    app.venue_day("clinic-001", &date, &[("10:00", 5)]).await;
    resident(&app, 8_500_000_000, Some(&address(8_500_000_000))).await;
    resident(&app, 8_500_000_001, Some(&address(8_500_000_001))).await;
    // As stored before the rule: the same record with a hostile name.
    let mut raw = app.raw_redis().await;
    let stored: String = ::redis::cmd("HGET")
        .arg("vaxslot:residents")
        .arg(ticket(8_500_000_000))
        .query_async(&mut raw)
        .await
        .unwrap();
    let hostile = stored.replace(NAME, "住民\\r\\nBcc: victim@evil.example");
    assert_ne!(hostile, stored);
    let _: i64 = ::redis::cmd("HSET")
        .arg("vaxslot:residents")
        .arg(ticket(8_500_000_000))
        .arg(&hostile)
        .query_async(&mut raw)
        .await
        .unwrap();
    let env = mail_env(&sink, &[]);
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    for number in [8_500_000_000, 8_500_000_001] {
        let token = app.login_as(&ticket(number), BIRTH).await;
        let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
        assert_eq!(status, 201, "{body}");
    }
    let messages = sink.wait_for(2, ARRIVAL).await;
    let hostile = messages
        .iter()
        .find(|m| m["envelope_to"] == json!([address(8_500_000_000)]))
        .expect("the hostile name's mail");
    assert!(!hostile["to"].as_str().unwrap().contains('\n'), "{hostile}");
    assert!(
        hostile["body"]
            .as_str()
            .unwrap()
            .contains("住民  Bcc: victim@evil.example 様"),
        "{hostile}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m["envelope_to"].as_array().unwrap().len() == 1),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["envelope_to"] == json!([address(8_500_000_001)]))
    );
    until_outbox_empty(&app).await;
}

/// A mail record in the outbox that cannot be read (a hand edit, a newer
/// release's format) is skipped and counted; the mail behind it goes out.
#[tokio::test]
async fn an_unreadable_mail_in_the_outbox_stops_no_other_mail() {
    let sink = SmtpSink::start().await;
    let app = mail_app(Backend::Redis, &sink, &[]).await;
    let mut raw = app.raw_redis().await;
    for partition in 0..vaxslot::store::KILL_SWITCH_PARTITIONS {
        let outbox = format!("vaxslot:{{vx{partition}}}:mail");
        let id = "00000000-0000-4000-8000-000000000000.confirmation";
        let _: i64 = ::redis::cmd("HSET")
            .arg(&outbox)
            .arg(id)
            .arg("{\"broken\":")
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: i64 = ::redis::cmd("ZADD")
            .arg(format!("{outbox}_due"))
            .arg(0)
            .arg(id)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let date = future_date(20);
    app.venue_day("clinic-001", &date, &[("10:00", 5)]).await;
    resident(&app, 8_800_000_000, Some(&address(8_800_000_000))).await;
    let token = app.login_as(&ticket(8_800_000_000), BIRTH).await;
    let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    let messages = sink.wait_for(1, ARRIVAL).await;
    assert_eq!(messages[0]["envelope_to"], json!([address(8_800_000_000)]));
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("vaxslot_records_skipped_total{what=\"mail\"}"),
        "{metrics}"
    );
}

/// A venue-day whose reservation record cannot be read is left out at the
/// start (no reminders, no bookings, never oversold), and counts; another
/// day's reminders still go out.
#[tokio::test]
async fn a_day_with_an_unreadable_record_stops_no_other_days_reminders() {
    let sink = SmtpSink::start().await;
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let start = format!("{today}T10:00:05+09:00");
    let extra = [
        ("VAXSLOT_CLOCK_START", start.as_str()),
        ("VAXSLOT_REMINDER_AT", "23:59"),
    ];
    let env = mail_env(&sink, &extra);
    let app = TestApp::spawn_with_env(Backend::Redis, &as_refs(&env)).await;
    let tomorrow = future_date(1);
    for venue in ["clinic-001", "clinic-002"] {
        app.venue_day(venue, &tomorrow, &[("11:00", 5)]).await;
    }
    let (good, bad) = (8_600_000_001, 8_600_000_002);
    for (number, venue) in [(good, "clinic-001"), (bad, "clinic-002")] {
        resident(&app, number, Some(&address(number))).await;
        let token = app.login_as(&ticket(number), BIRTH).await;
        let (status, body) = app.book(&token, venue, &tomorrow, "11:00").await;
        assert_eq!(status, 201, "{body}");
    }
    sink.wait_for(2, ARRIVAL).await;
    let mut raw = app.raw_redis().await;
    let hashes: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("vaxslot:*:day:clinic-002/{tomorrow}:reservations"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: i64 = ::redis::cmd("HSET")
        .arg(&hashes[0])
        .arg("00000000-0000-4000-8000-000000000000")
        .arg("{\"broken\":")
        .query_async(&mut raw)
        .await
        .unwrap();
    // Restarted with its clock past the reminder moment: the days load again.
    let late = format!("{today}T23:59:30+09:00");
    let extra = [
        ("VAXSLOT_CLOCK_START", late.as_str()),
        ("VAXSLOT_REMINDER_AT", "23:59"),
    ];
    let env = mail_env(&sink, &extra);
    let app = app.crash_and_restart_with_env(&as_refs(&env)).await;
    let messages = sink.wait_for(3, ARRIVAL).await;
    let reminders = of_kind(&messages, "reminder");
    assert_eq!(reminders.len(), 1, "{messages:#?}");
    assert_eq!(reminders[0]["envelope_to"], json!([address(good)]));
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("vaxslot_records_skipped_total{what=\"day reservations\"}"),
        "{metrics}"
    );
}

/// A mail setting that cannot work stops the start with a message saying
/// which, and exit code 2 (or 1 for a template), before anything is served.
#[tokio::test]
async fn bad_mail_settings_stop_the_start_and_say_which() {
    let run = |env: Vec<(&'static str, String)>| async move {
        let dir = tempfile::tempdir().unwrap();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaxslot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .envs(env)
            .output()
            .await
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let base = || {
        vec![
            ("VAXSLOT_SMTP_URL", "smtp://127.0.0.1:2525".to_owned()),
            ("VAXSLOT_PUBLIC_URL", SITE.to_owned()),
            ("VAXSLOT_CALL_CENTRE_PHONE", CALL_CENTRE.to_owned()),
        ]
    };
    let mut no_site = base();
    no_site.retain(|(k, _)| *k != "VAXSLOT_PUBLIC_URL");
    let (code, stderr) = run(no_site).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("VAXSLOT_PUBLIC_URL"), "{stderr}");

    let mut bad_time = base();
    bad_time.push(("VAXSLOT_REMINDER_AT", "25:00".to_owned()));
    let (code, stderr) = run(bad_time).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("10:00"), "{stderr}");

    // A ward's copy of the templates with one typo.
    let templates = tempfile::tempdir().unwrap();
    let built_in = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/mail");
    for file in std::fs::read_dir(built_in).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, templates.path().join(file.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        templates.path().join("confirmation.txt"),
        "Subject: x\n\n{{nmae}}\n",
    )
    .unwrap();
    let mut bad_template = base();
    bad_template.push((
        "VAXSLOT_MAIL_TEMPLATES",
        templates.path().display().to_string(),
    ));
    let (code, stderr) = run(bad_template).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("confirmation.txt") && stderr.contains("{{nmae}}"),
        "{stderr}"
    );

    let mut password_in_clear = base();
    password_in_clear[0].1 = "smtp://ward:secret@mail.example.jp:25".to_owned();
    let (code, stderr) = run(password_in_clear).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("plain SMTP") && !stderr.contains("secret"),
        "{stderr}"
    );
}
