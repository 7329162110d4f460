//! SIGTERM, as a service manager stops the server: the HTTP server drains,
//! every background task stops by name, the process exits 0 within seconds,
//! and what was answered `201` is there after the restart.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, future_date};
use crate::smtp_sink::SmtpSink;

/// Well above a clean stop here (under a second), well below the drain's
/// and the tasks' limits (10 s and 20 s): a stop that waited out either
/// fails.
const STOP_MAX: Duration = Duration::from_secs(5);

/// How long the test watches a stopping server that has a request under
/// way: one that does not drain says it stopped well within it.
const DRAIN_WATCH: Duration = Duration::from_secs(1);
/// What the server logs once its HTTP server has stopped (`startup.rs`).
const SERVER_STOPPED: &str = "the HTTP server has stopped";

/// The tasks a process among several runs, and those of the mail
/// (`src/tasks.rs` names them).
const TASKS_AMONG_SEVERAL: &[&str] = &[
    "follow the kill switch",
    "member heartbeat",
    "retire moved venue-days",
    "follow other processes",
    "reload accounts",
];
const TASKS_WITH_MAIL: &[&str] = &["send mail", "read the outbox's figures", "queue reminders"];

async fn sigterm_stops_every_task_exits_0_and_keeps_every_201(backend: Backend, mail: bool) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let mail_env = [
        ("VAXSLOT_SMTP_URL", url.as_str()),
        ("VAXSLOT_MAIL_FROM", "vaxslot@city.example.jp"),
        ("VAXSLOT_PUBLIC_URL", "https://vaxslot.city.example.jp"),
        ("VAXSLOT_CALL_CENTRE_PHONE", "03-0000-0000"),
    ];
    let env = if mail { &mail_env[..] } else { &[] };
    let app = TestApp::spawn_with_env(backend, env).await;
    let date = future_date(20);
    app.venue_day("venue-1", &date, &[("10:00", 5)]).await;
    app.import_residents(7_000_000_000, 2).await;
    let token = app.login(7_000_000_000).await;
    let (status, booked) = app.book(&token, "venue-1", &date, "10:00").await;
    assert_eq!(status, 201, "{booked}");
    // A second booking under way when the signal comes: its body is half
    // sent. The server stops taking connections, then answers it.
    let second = app.login(7_000_000_001).await;
    let mut under_way = half_sent_booking(&app, &second, &date).await;
    let mut app = app;
    let asked = std::time::Instant::now();
    crate::helpers::send_signal(app.pid(), "TERM").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        tokio::task::yield_now().await;
    }
    // Draining, the server waits for the request: it does not stop first
    // (without the drain it stops within milliseconds, and says so).
    let watching = std::time::Instant::now();
    while watching.elapsed() < DRAIN_WATCH {
        assert!(
            !app.logs().contains(SERVER_STOPPED),
            "the server stopped with a request under way"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = finish(&mut under_way).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let exit = app.exited().await;
    let took = asked.elapsed();
    assert!(exit.success(), "exit status {exit}");
    assert!(took < STOP_MAX, "took {took:?} to stop");
    let log = app.logs();
    let mut expected: Vec<&str> = Vec::new();
    if backend != Backend::Embedded {
        expected.extend(TASKS_AMONG_SEVERAL);
    }
    if mail {
        expected.extend(TASKS_WITH_MAIL);
    }
    for task in expected {
        assert!(
            log.lines()
                .any(|l| l.contains("background task stopped") && l.contains(task)),
            "{task} not stopped; log:\n{log}"
        );
    }
    assert!(log.contains("every background task stopped"), "{log}");
    let app = app.restart().await;
    assert_eq!(
        reservation_ids(&app, 7_000_000_000).await,
        [booked["reservation_id"].as_str().unwrap()]
    );
    assert_eq!(reservation_ids(&app, 7_000_000_001).await.len(), 1);
}

/// The ids of a resident's reservations, as the resident lists them.
async fn reservation_ids(app: &TestApp, ticket: u64) -> Vec<String> {
    let token = app.login(ticket).await;
    let (status, listed) = app
        .send(reqwest::Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{listed}");
    listed["reservations"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["reservation_id"].as_str().map(str::to_owned))
        .collect()
}

/// The request's head and the first half of its body, on a connection of
/// its own; the other half is `finish`'s.
async fn half_sent_booking(app: &TestApp, token: &str, date: &str) -> (TcpStream, Vec<u8>) {
    let body = format!(r#"{{"venue_id":"venue-1","date":"{date}","time":"10:00"}}"#).into_bytes();
    let address = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let head = format!(
        "POST /v1/reservations HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    (stream, rest.to_vec())
}

/// Sends the rest of the body and reads the answer to its end.
async fn finish((stream, rest): &mut (TcpStream, Vec<u8>)) -> String {
    stream.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn on_the_embedded_store_sigterm_stops_cleanly_and_keeps_every_201() {
    sigterm_stops_every_task_exits_0_and_keeps_every_201(Backend::Embedded, true).await;
}

#[tokio::test]
async fn on_redis_sigterm_stops_every_background_task_by_name_and_keeps_every_201() {
    sigterm_stops_every_task_exits_0_and_keeps_every_201(Backend::Redis, true).await;
}
