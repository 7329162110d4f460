//! Several vaxslot processes on one Redis Cluster (issue 15), and the
//! cluster harness itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vaxslot::store::prelude::*;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, SRE_KEY, TestApp, future_date};
use crate::redis_cluster::{RedisCluster, count};

/// The harness itself: six nodes form three masters with one replica each,
/// every slot is served, a master's death promotes its replica, and the dead
/// node started again comes back as a replica.
#[tokio::test]
async fn a_six_node_cluster_forms_and_a_replica_takes_over_a_dead_master() {
    let cluster = RedisCluster::start().await;
    let first = cluster.ports()[0];
    let info = cluster.cli(first, "CLUSTER INFO").await;
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_size:3"), "{info}");
    let nodes = cluster.cli(first, "CLUSTER NODES").await;
    assert_eq!(count(&nodes, "master"), 3, "{nodes}");
    assert_eq!(count(&nodes, "slave"), 3, "{nodes}");

    // Kill a master: the cluster is whole again once its replica is promoted.
    let master_port = cluster.masters(first).await[0];
    let replica = cluster.replica_of(master_port).await;
    cluster.kill(master_port).await;
    let survivor = cluster
        .ports()
        .into_iter()
        .find(|p| *p != master_port)
        .expect("another node");
    cluster.until_promoted(survivor, replica).await;
    cluster
        .until(survivor, "CLUSTER INFO", "cluster_state:ok")
        .await;
    // Started again (as systemd would), it rejoins as the new master's
    // replica: three masters, three replicas.
    cluster.restart(master_port).await;
    cluster
        .until_nodes(survivor, |nodes| count(nodes, "slave") == 3)
        .await;
    let masters = cluster.masters(survivor).await;
    assert!(
        !masters.contains(&master_port),
        "{master_port} among {masters:?}: {}",
        cluster.cli(survivor, "CLUSTER NODES").await
    );
}

/// One booking of a herd spread over processes.
struct Answer {
    /// Which process answered (index into the test's apps).
    process: usize,
    /// The resident's ticket number.
    ticket: u64,
    sent_at: Instant,
    status: u16,
    code: Option<String>,
    reservation_id: Option<String>,
}

/// Engaged through process A while B and C take bookings (each on days of
/// its own): nothing commits anywhere after the `PUT` returned, the other
/// gateways show the stop within a second, and a release through B reopens
/// booking on C.
#[tokio::test]
async fn a_stop_through_one_process_stops_commits_on_every_process() {
    const DAYS_EACH: usize = 2;
    const RESIDENTS: u64 = 1_200;
    const CONNECTIONS: usize = 64;
    let venue_of = |i: usize| format!("venue-{}-{}", ["b", "c"][i % 2], (i / 2) % DAYS_EACH);
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    for process in ["b", "c"] {
        for d in 0..DAYS_EACH {
            a.venue_day(&format!("venue-{process}-{d}"), &date, &[("10:00", 1_000)])
                .await;
        }
    }
    a.import_residents(5_000_000_000, RESIDENTS).await;
    // B and C start after the import: each loads the residents at start.
    let b = a.spawn_second().await;
    let c = a.spawn_second().await;
    let bookers = Arc::new([b, c]);
    // Resident i books through process i % 2, where it logged in.
    let mut tokens = Vec::with_capacity(RESIDENTS as usize);
    for i in 0..RESIDENTS {
        tokens.push(bookers[(i % 2) as usize].login(5_000_000_000 + i).await);
    }

    let done = Arc::new(AtomicUsize::new(0));
    let herd = {
        let (bookers, done, date) = (Arc::clone(&bookers), Arc::clone(&done), date.clone());
        tokio::spawn(async move {
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (bookers, done) = (Arc::clone(&bookers), Arc::clone(&done));
                    let process = i % 2;
                    let body = json!({
                        "venue_id": venue_of(i),
                        "date": date, "time": "10:00"});
                    async move {
                        let app = &bookers[process];
                        let sent_at = Instant::now();
                        let response = app
                            .client
                            .post(app.url("/v1/reservations"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await
                            .expect("server answers");
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.expect("json");
                        done.fetch_add(1, Ordering::SeqCst);
                        Answer {
                            process,
                            ticket: 5_000_000_000 + i as u64,
                            sent_at,
                            status,
                            code: body["code"].as_str().map(str::to_owned),
                            reservation_id: body["reservation_id"].as_str().map(str::to_owned),
                        }
                    }
                })
                .buffer_unordered(CONNECTIONS)
                .collect::<Vec<Answer>>()
                .await
        })
    };

    while done.load(Ordering::SeqCst) < (RESIDENTS / 3) as usize {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (status, body) = a
        .send(
            Method::PUT,
            "/v1/admin/kill-switch",
            Some(SRE_KEY),
            Some(&json!({"engaged": true, "reason": "wrong roster at launch"})),
        )
        .await;
    let put_returned = Instant::now();
    assert_eq!(
        (status, body["engaged"].as_bool()),
        (200, Some(true)),
        "{body}"
    );

    // The other gateways follow within a second.
    for app in bookers.iter() {
        let (status, body) = app
            .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
            .await;
        assert_eq!(status, 200, "{body}");
        if body["kill_switch"]["engaged"] != true {
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(put_returned.elapsed())).await;
            let (_, body) = app
                .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
                .await;
            assert_eq!(
                body["kill_switch"]["engaged"], true,
                "within a second: {body}"
            );
            assert!(put_returned.elapsed() < Duration::from_millis(1_500));
        }
    }

    let answers = herd.await.expect("herd finishes");
    let after: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent_at > put_returned)
        .collect();
    for process in 0..2 {
        assert!(
            after.iter().any(|a| a.process == process),
            "process {process} was sent bookings after the switch"
        );
        assert!(
            answers
                .iter()
                .any(|a| a.process == process && a.status == 201),
            "process {process} committed bookings before the switch"
        );
    }
    for answer in &after {
        assert_eq!(
            (answer.status, answer.code.as_deref()),
            (503, Some("booking_closed")),
            "sent to process {} after the PUT returned",
            answer.process
        );
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
    assert_eq!(
        a.stored_ids().await,
        created,
        "the store holds exactly the 201s"
    );

    // Released through B: C takes bookings again within a second.
    let (status, body) = bookers[0]
        .send(
            Method::PUT,
            "/v1/admin/kill-switch",
            Some(SRE_KEY),
            Some(&json!({"engaged": false})),
        )
        .await;
    assert_eq!(
        (status, body["engaged"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = answers
        .iter()
        .find(|a| a.process == 1 && a.status == 503)
        .expect("C refused some bookings");
    let token = bookers[1].login(refused.ticket).await;
    let venue = venue_of((refused.ticket - 5_000_000_000) as usize);
    let (status, body) = bookers[1].book(&token, &venue, &date, "10:00").await;
    assert_eq!(status, 201, "booking reopened on C: {body}");
}

/// A Redis master SIGKILLed mid-herd, with its replica promoted: every `201`
/// was on a replica before it was answered (`WAIT`, on by default on a
/// cluster), so none is lost, and nothing else is stored. Booking on the
/// promoted master's days resumes by itself once the dead node is back as its
/// replica (as systemd would restart it), with no vaxslot restart.
#[tokio::test]
async fn a_dead_redis_master_loses_no_201_and_booking_resumes_once_it_is_back() {
    const DAYS: usize = 12;
    const RESIDENTS: u64 = 2_400;
    const CONNECTIONS: usize = 64;
    const RECOVERY: Duration = Duration::from_secs(45);
    // Shorter than the node timeout: the replica is not failed by then.
    const REPLICA_BEHIND: Duration = Duration::from_millis(800);
    const PACE: Duration = Duration::from_millis(2);
    let app = Arc::new(TestApp::spawn(Backend::RedisCluster).await);
    let cluster = Arc::clone(app.cluster.as_ref().expect("a cluster"));
    let date = future_date(30);
    for d in 0..DAYS {
        app.venue_day(&format!("venue-{d}"), &date, &[("10:00", 1_000)])
            .await;
    }
    // The last DAYS residents are kept for checking the recovery.
    app.import_residents(5_000_000_000, RESIDENTS + DAYS as u64)
        .await;
    let tokens = app.login_many(5_000_000_000, RESIDENTS).await;

    let done = Arc::new(AtomicUsize::new(0));
    let herd = {
        let (app, done, date) = (Arc::clone(&app), Arc::clone(&done), date.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (app, done, date) = (Arc::clone(&app), Arc::clone(&done), date.clone());
                    async move {
                        // Paced, so that the herd outlasts the failover.
                        tokio::time::sleep_until(start + PACE * i as u32).await;
                        let (status, body) = app
                            .book(&token, &format!("venue-{}", i % DAYS), &date, "10:00")
                            .await;
                        done.fetch_add(1, Ordering::SeqCst);
                        (status, body)
                    }
                })
                .buffer_unordered(CONNECTIONS)
                .collect::<Vec<(u16, Value)>>()
                .await
        })
    };
    while done.load(Ordering::SeqCst) < (RESIDENTS / 6) as usize {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The master's replica falls behind for a moment (paused, its link cut), then the
    // master dies and the replica, continued, takes over what it has. A
    // batch answered 201 without waiting for the replica would be lost.
    let first = cluster.ports()[0];
    let dead = cluster.masters(first).await[0];
    let replica = cluster.replica_of(dead).await;
    cluster.signal(replica, "STOP").await;
    // Its link is cut, so nothing written from now on reaches it (what was
    // sent before is in its socket, and it reads that when continued).
    cluster.cli(dead, "CLIENT KILL TYPE replica").await;
    tokio::time::sleep(REPLICA_BEHIND).await;
    cluster.kill(dead).await;
    cluster.signal(replica, "CONT").await;
    let answers = herd.await.expect("herd finishes");
    let survivor = cluster
        .ports()
        .into_iter()
        .find(|p| *p != dead)
        .expect("another node");
    cluster.until_promoted(survivor, replica).await;
    cluster.restart(dead).await;
    cluster
        .until_nodes(survivor, |nodes| count(nodes, "slave") == 3)
        .await;

    // Every day books again within RECOVERY, through the same process (a
    // resident retrying after a 503 may first be told their earlier try is
    // still settling: change_in_progress, until its claim's lease ends).
    let deadline = Instant::now() + RECOVERY;
    let probes: Vec<_> = (0..DAYS)
        .map(|d| {
            let (app, date) = (Arc::clone(&app), date.clone());
            tokio::spawn(async move {
                let token = app.login(5_000_000_000 + RESIDENTS + d as u64).await;
                loop {
                    let (status, body) = app
                        .book(&token, &format!("venue-{d}"), &date, "10:00")
                        .await;
                    if status == 201 {
                        return body["reservation_id"].as_str().unwrap().to_owned();
                    }
                    assert_eq!(status, 503, "only 201 or 503 while recovering: {body}");
                    assert!(Instant::now() < deadline, "venue-{d} books again: {body}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    let mut recovered = HashSet::new();
    for probe in probes {
        recovered.insert(probe.await.expect("probe"));
    }

    let mut created: HashSet<String> = HashSet::new();
    let mut refused = 0;
    for (status, body) in &answers {
        match status {
            201 => {
                created.insert(body["reservation_id"].as_str().unwrap().to_owned());
            }
            503 => refused += 1,
            _ => panic!("only 201 or 503: {status} {body}"),
        }
    }
    assert!(
        refused > 0,
        "the dead master's days were refused for a while"
    );
    // At least what was sent before the kill (a sixth); while the shard is
    // down, its residents' claims and its venue-days are refused.
    assert!(
        created.len() > RESIDENTS as usize / 6,
        "the herd booked around the failover: {} of {RESIDENTS}",
        created.len()
    );
    created.extend(recovered);
    let stored = app.stored_ids().await;
    let lost: Vec<&String> = created.difference(&stored).collect();
    let extra: Vec<&String> = stored.difference(&created).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "the store holds every 201 and nothing else: {} of {} lost, {} stored unanswered",
        lost.len(),
        created.len(),
        extra.len()
    );
}

/// A cluster setting that cannot work stops the start with one line saying
/// which: a seed without a port, both a single Redis and a cluster, and a
/// cluster nobody answers (exit 1 within the connect timeout, no hang).
#[tokio::test]
async fn bad_cluster_settings_stop_the_start_and_say_which() {
    let run = |args: Vec<String>| async move {
        let dir = tempfile::tempdir().unwrap();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaxslot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(vec!["--redis-cluster-nodes".into(), "10.0.0.1".into()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--redis-cluster-nodes") && stderr.contains("host:port"),
        "{stderr}"
    );

    let (code, stderr) = run(vec![
        "--redis-cluster-nodes".into(),
        "127.0.0.1:7000".into(),
        "--redis-url".into(),
        "redis://127.0.0.1:6379".into(),
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    let nobody = crate::redis_server::free_port();
    let started = Instant::now();
    let (code, stderr) = run(vec![
        "--redis-cluster-nodes".into(),
        format!("127.0.0.1:{nobody}"),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Redis Cluster (--redis-cluster-nodes)"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A process on a shared Redis either coordinates with the others or does
/// not start: without the shared token secret, or listening on every
/// address without saying where the others reach it, it stops with one
/// line naming what is missing (it used to warn, then commit beside the
/// others with no owner, no shared claims and no following).
#[tokio::test]
async fn a_process_on_redis_without_what_coordination_needs_refuses_to_start() {
    let redis = crate::helpers::RedisServer::start().await;
    let run = |listen: &'static str, env: Vec<(&'static str, &'static str)>| {
        let url = redis.url();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vaxslot"))
                .args([
                    "serve",
                    "--listen",
                    listen,
                    "--redis-url",
                    &url,
                    "--data-dir",
                ])
                .arg(dir.path())
                .env_remove("VAXSLOT_TOKEN_SECRET")
                .env_remove("VAXSLOT_ADVERTISE_URL")
                .envs(env)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(20), output)
                .await
                .expect("it stops instead of serving")
                .unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let (code, stderr) = run("127.0.0.1:0", vec![]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("VAXSLOT_TOKEN_SECRET"), "{stderr}");
    let (code, stderr) = run("0.0.0.0:0", vec![("VAXSLOT_TOKEN_SECRET", "shared")]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("VAXSLOT_ADVERTISE_URL"), "{stderr}");
}

/// Three processes, a herd spread over them (each resident through its own
/// process), more residents than places: every day is served by one actor
/// in one process (the others forward to it), capacity is exact across the
/// processes, and the store holds exactly the `201`s.
#[tokio::test]
async fn a_herd_over_three_processes_books_each_day_through_its_one_owner() {
    const DAYS: usize = 9;
    const CAPACITY: u32 = 60;
    const RESIDENTS: u64 = 720;
    const CONNECTIONS: usize = 48;
    let first = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    for d in 0..DAYS {
        first
            .venue_day(&format!("venue-{d}"), &date, &[("10:00", CAPACITY)])
            .await;
    }
    first.import_residents(5_000_000_000, RESIDENTS).await;
    let second = first.spawn_second().await;
    let third = first.spawn_second().await;
    let apps = Arc::new([first, second, third]);
    for app in apps.iter() {
        until_processes(app, 3).await;
    }
    let mut tokens = Vec::with_capacity(RESIDENTS as usize);
    for i in 0..RESIDENTS {
        tokens.push(apps[(i % 3) as usize].login(5_000_000_000 + i).await);
    }
    let answers: Vec<(u16, Value)> = futures::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, token)| {
            let (apps, date) = (Arc::clone(&apps), date.clone());
            async move {
                // Through process i % 3, to day (i / 3) % DAYS: every day gets
                // bookings through every process.
                apps[i % 3]
                    .book(&token, &format!("venue-{}", (i / 3) % DAYS), &date, "10:00")
                    .await
            }
        })
        .buffer_unordered(CONNECTIONS)
        .collect()
        .await;
    let created: HashSet<String> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body["reservation_id"].as_str().unwrap().to_owned())
        .collect();
    for (status, body) in &answers {
        assert!(
            *status == 201 || body["code"] == "slot_full",
            "only 201 or slot_full: {status} {body}"
        );
    }
    assert_eq!(
        created.len(),
        DAYS * CAPACITY as usize,
        "every place, no more"
    );
    let stored = apps[0].stored_reservations().await;
    assert_eq!(
        stored
            .iter()
            .map(|r| r.id.to_string())
            .collect::<HashSet<_>>(),
        created,
        "the store holds exactly the 201s"
    );
    // One actor per day across the processes, and more than one process
    // hosts some.
    let mut actors = Vec::new();
    for app in apps.iter() {
        let (_, status) = app
            .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
            .await;
        actors.push(status["venue_day_actors"].as_u64().unwrap());
    }
    assert_eq!(actors.iter().sum::<u64>(), DAYS as u64, "{actors:?}");
    assert!(actors.iter().filter(|n| **n > 0).count() >= 2, "{actors:?}");
}

/// Waits until `app` sees `n` live processes (its status document).
/// A second process on `a`'s store, once both see two processes.
async fn second_process(a: &TestApp) -> TestApp {
    let b = a.spawn_second().await;
    until_processes(a, 2).await;
    until_processes(&b, 2).await;
    b
}

pub async fn until_processes(app: &TestApp, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = app
            .send(Method::GET, "/v1/admin/status", Some(SRE_KEY), None)
            .await;
        if status["processes"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "{n} processes seen: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One of three processes SIGKILLed mid-herd (the load balancer then sends
/// only to the other two): within 5 s every venue-day books again (the dead
/// process's lease ends, the next process by weight loads its days and so
/// fences it), tokens from any process work on the others, every `201` is
/// stored, and whatever is stored beyond the `201`s was decided before the
/// kill (a batch of the dead process whose answer was lost with it).
#[tokio::test]
async fn a_sigkilled_process_s_days_are_served_by_the_others_within_5_s() {
    const DAYS: usize = 9;
    const RESIDENTS: u64 = 1_800;
    const SPARES_PER_DAY: u64 = 60;
    const CONNECTIONS: usize = 48;
    const PACE: Duration = Duration::from_millis(2);
    const TAKEOVER_MAX: Duration = Duration::from_secs(5);
    let first = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    for d in 0..DAYS {
        first
            .venue_day(&format!("venue-{d}"), &date, &[("10:00", 1_000)])
            .await;
    }
    first
        .import_residents(5_000_000_000, RESIDENTS + SPARES_PER_DAY * DAYS as u64)
        .await;
    let second = first.spawn_second().await;
    let third = first.spawn_second().await;
    let apps = Arc::new([first, second, third]);
    for app in apps.iter() {
        until_processes(app, 3).await;
    }
    let mut tokens = Vec::with_capacity(RESIDENTS as usize);
    for i in 0..RESIDENTS {
        tokens.push(apps[(i % 3) as usize].login(5_000_000_000 + i).await);
    }
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let herd = {
        let (apps, date, killed, done) = (
            Arc::clone(&apps),
            date.clone(),
            Arc::clone(&killed),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            futures::stream::iter(tokens.into_iter().enumerate())
                .map(|(i, token)| {
                    let (apps, date, killed, done) = (
                        Arc::clone(&apps),
                        date.clone(),
                        Arc::clone(&killed),
                        Arc::clone(&done),
                    );
                    async move {
                        tokio::time::sleep_until(start + PACE * i as u32).await;
                        // After the kill, only the live two are sent to.
                        let process = if killed.load(Ordering::SeqCst) {
                            i % 2
                        } else {
                            i % 3
                        };
                        let app = &apps[process];
                        let sent = app
                            .client
                            .post(app.url("/v1/reservations"))
                            .bearer_auth(&token)
                            .json(&json!({"venue_id": format!("venue-{}", i % DAYS),
                                "date": date, "time": "10:00"}))
                            .send()
                            .await;
                        done.fetch_add(1, Ordering::SeqCst);
                        match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                (
                                    status,
                                    response.json::<Value>().await.unwrap_or(Value::Null),
                                )
                            }
                            // The killed process's connections.
                            Err(_) => (0, Value::Null),
                        }
                    }
                })
                .buffer_unordered(CONNECTIONS)
                .collect::<Vec<(u16, Value)>>()
                .await
        })
    };
    while done.load(Ordering::SeqCst) < (RESIDENTS / 3) as usize {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    apps[2].signal("KILL").await;
    killed.store(true, Ordering::SeqCst);
    let killed_at = chrono::Utc::now();
    let kill = Instant::now();

    // Every day books again within TAKEOVER_MAX, through either survivor.
    let mut probes = Vec::new();
    for d in 0..DAYS {
        let (apps, date) = (Arc::clone(&apps), date.clone());
        probes.push(tokio::spawn(async move {
            for spare in 0..SPARES_PER_DAY {
                let app = &apps[(spare % 2) as usize];
                let ticket = 5_000_000_000 + RESIDENTS + d as u64 * SPARES_PER_DAY + spare;
                let token = app.login(ticket).await;
                let (status, body) = app
                    .book(&token, &format!("venue-{d}"), &date, "10:00")
                    .await;
                if status == 201 {
                    return (d, kill.elapsed(), Some(body));
                }
                assert_eq!(status, 503, "only 201 or 503 while taking over: {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (d, kill.elapsed(), None)
        }));
    }
    let mut created: HashSet<String> = HashSet::new();
    for probe in probes {
        let (d, took, booked) = probe.await.expect("probe");
        let booked = booked.unwrap_or_else(|| panic!("venue-{d} never booked again"));
        assert!(took < TAKEOVER_MAX, "venue-{d} booked again after {took:?}");
        created.insert(booked["reservation_id"].as_str().unwrap().to_owned());
    }

    let answers = herd.await.expect("herd finishes");
    for (status, body) in &answers {
        match status {
            201 => {
                created.insert(body["reservation_id"].as_str().unwrap().to_owned());
            }
            0 | 503 => {}
            _ => panic!("only 201, 503 or no answer: {status} {body}"),
        }
    }
    let stored = apps[0].stored_reservations().await;
    let stored_ids: HashSet<String> = stored.iter().map(|r| r.id.to_string()).collect();
    let lost: Vec<&String> = created.difference(&stored_ids).collect();
    assert!(lost.is_empty(), "{} 201s not stored", lost.len());
    for reservation in &stored {
        if !created.contains(&reservation.id.to_string()) {
            assert!(
                reservation.created_at.with_timezone(&chrono::Utc) <= killed_at,
                "stored without a 201, decided after the kill"
            );
        }
    }
}

/// The processes' internal calls need the key derived from the shared token
/// secret (without it, or with another, `401` and nothing done); a process
/// alone on its embedded store has none (`404`).
#[tokio::test]
async fn internal_calls_need_the_deployments_key() {
    let app = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    app.venue_day("venue-0", &date, &[("10:00", 5)]).await;
    let path = format!("/internal/v1/venue-days/venue-0/{date}/reservations");
    for credential in [
        None,
        Some(crate::helpers::TOKEN_SECRET),
        Some("not-the-key"),
    ] {
        let (status, body) = app.send(Method::GET, &path, credential, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
    }
    let booking = json!({"ticket_number": "5000000000", "time": "10:00", "dose": 1,
        "access_code": null, "channel": "web", "now": "2030-01-01T09:00:00+09:00",
        "idempotency": null, "audit": null, "mail": false});
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/internal/v1/venue-days/venue-0/{date}/bookings"),
            Some("not-the-key"),
            Some(&booking),
        )
        .await;
    assert_eq!(status, 401);
    assert!(app.stored_ids().await.is_empty(), "nothing booked");

    let alone = TestApp::spawn(Backend::Embedded).await;
    let (status, body) = alone.send(Method::GET, &path, Some("anything"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

/// A process sent a day's message by a process whose view says it owns the
/// day (views differ for a moment when members come and go) starts an
/// actor for it. That actor serves what it was sent and stops; meanwhile
/// the day's seats there follow what the owner commits (they stayed frozen
/// at that actor's view until its 600 s idle stop).
#[tokio::test]
async fn a_process_that_does_not_own_a_day_shows_the_owners_seats() {
    const FIRST: u64 = 4_600_000_000;
    let a = TestApp::spawn(Backend::Redis).await;
    let date = future_date(30);
    a.venue_day("moved", &date, &[("10:00", 5)]).await;
    a.import_residents(FIRST, 4).await;
    let b = second_process(&a).await;
    // Both are asked as its owner: the one that is not runs a stray actor.
    let key = vaxslot::cluster::internal_key(crate::helpers::TOKEN_SECRET);
    let path = format!("/internal/v1/venue-days/moved/{date}/reservations");
    for app in [&a, &b] {
        let (status, body) = app.send(Method::GET, &path, Some(&key), None).await;
        assert_eq!(status, 200, "{body}");
    }
    // The stray actor's load fenced the owner's actor if it came second:
    // its first commit is then refused, answered 503 (nothing written; the
    // resident's dose claim waits out its lease), and the next reloads the day.
    let mut booked = 0;
    for i in 0..4 {
        let token = a.login(FIRST + i).await;
        let (status, body) = a.book(&token, "moved", &date, "10:00").await;
        match status {
            201 => booked += 1,
            503 if i == 0 => {}
            _ => panic!("{status} {body}"),
        }
        if booked == 3 {
            break;
        }
    }
    assert_eq!(booked, 3);
    for app in [&a, &b] {
        within_3_s("the owner's seats", Duration::from_millis(100), || async {
            let slots = app.slots("moved", &date).await;
            match slots.first() {
                Some((_, _, 2)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
}

/// A booking forwarded to an owner that froze (SIGSTOP) is answered `503`
/// when the forwarding process stops waiting; when the owner wakes and
/// reads the request, it is past its deadline and never commits (it did, 13
/// seconds late, turning a 503 into a booking behind the caller's back).
/// The retry with the key books it, once.
#[tokio::test]
async fn a_forwarded_booking_answered_503_never_commits_afterwards() {
    const FIRST: u64 = 4_700_000_000;
    let a = TestApp::spawn_with_env(Backend::Redis, &[("VAXSLOT_ACCESS_LOG", "all")]).await;
    let b = second_process(&a).await;
    let date = future_date(30);
    let venue = a.venue_owned_by(&a, "frozen", &date).await;
    a.venue_day(&venue, &date, &[("10:00", 1)]).await;
    a.import_residents(FIRST, 1).await;
    let token = a.login(FIRST).await;
    let body = json!({"venue_id": venue, "date": date, "time": "10:00"});
    // B has followed the import (a token is good on any process).
    within_3_s(
        "B knows the resident",
        Duration::from_millis(100),
        || async {
            match b.send(Method::GET, "/v1/me", Some(&token), None).await {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    )
    .await;

    a.signal("STOP").await;
    let (status, answer) = b.send_keyed(&token, &body, "frozen-owner").await;
    assert_eq!(status, 503, "{answer}");
    a.signal("CONT").await;
    // A reads the forwarded request and answers it (to nobody).
    within_3_s(
        "the owner answers the late request",
        Duration::from_millis(100),
        || async {
            let answered = a.logs().lines().any(|line| {
                line.contains("route=/internal/v1/venue-days/{venue_id}/{date}/bookings")
            });
            if answered {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    assert!(
        a.stored_reservations().await.is_empty(),
        "a booking answered 503 was committed afterwards"
    );
    // The retry waits out the first try's dose claim (`change_in_progress`
    // for at most its 10 s lease: README), then books.
    within_3_s("the retry books", Duration::from_millis(200), || async {
        match b.send_keyed(&token, &body, "frozen-owner").await {
            (201, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(a.stored_reservations().await.len(), 1);
}

/// A process paused past its lease (SIGSTOP) loses its days to the others,
/// which commit on them; when it wakes it owns them again, and its actors
/// from before the pause held a stale day: it showed the seats as they were
/// before the pause until those actors' idle stop (seen by the nemesis).
/// A renewal after a lapsed lease retires every actor, and the day's seats
/// are shown as the store has them.
#[tokio::test]
async fn a_process_paused_past_its_lease_shows_what_others_committed_meanwhile() {
    const FIRST: u64 = 4_800_000_000;
    let a = TestApp::spawn(Backend::Redis).await;
    let b = second_process(&a).await;
    let date = future_date(30);
    let venue = a.venue_owned_by(&a, "lapsed", &date).await;
    a.venue_day(&venue, &date, &[("10:00", 5)]).await;
    a.import_residents(FIRST, 2).await;
    let first = a.login(FIRST).await;
    let (status, body) = a.book(&first, &venue, &date, "10:00").await;
    assert_eq!(status, 201, "{body}");

    a.signal("STOP").await;
    until_processes(&b, 1).await;
    let second = b.login(FIRST + 1).await;
    let (status, body) = b.book(&second, &venue, &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    a.signal("CONT").await;
    until_processes(&a, 2).await;
    within_3_s(
        "the woken process's seats",
        Duration::from_millis(100),
        || async {
            match a.slots(&venue, &date).await.first() {
                Some((_, _, 3)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// An owner whose day another process took over and committed on, without
/// its lease lapsing: two processes whose views of the members differ for a
/// moment (one woke from a pause and loaded the day; the other, still taking
/// it for dead, was fenced, loaded the day again and committed) both think
/// they own it, and the one that loaded first showed the day as it loaded
/// it until its actor's idle stop, 10 minutes (seen by the nemesis in CI: a
/// process showing a place free that the store had booked). A commit under a
/// later owner epoch, followed from the change streams, retires the actor:
/// the day's seats are shown as the store has them, and the next booking
/// loads the day again.
#[tokio::test]
async fn an_owner_whose_day_another_took_over_shows_what_that_one_committed() {
    use vaxslot::domain::{Dose, VenueDayKey, VenueId, parse_date};
    use vaxslot::store::{BatchKind, Decision, RedisStore, ReservationBatch};
    const FIRST: u64 = 4_900_000_000;
    let a = TestApp::spawn(Backend::Redis).await;
    let _b = second_process(&a).await; // running: one of the members
    let date = future_date(30);
    let venue = a.venue_owned_by(&a, "taken-over", &date).await;
    a.venue_day(&venue, &date, &[("10:00", 3)]).await;
    a.import_residents(FIRST, 4).await;
    let first = a.login(FIRST).await;
    let (status, body) = a.book(&first, &venue, &date, "10:00").await;
    assert_eq!(status, 201, "{body}");

    // The other process (as `b` would with a stale view of the members):
    // loads the day, under a later owner epoch, and commits.
    let other = RedisStore::connect(&a.redis.as_ref().expect("own Redis").url())
        .await
        .unwrap();
    let key = VenueDayKey {
        venue_id: VenueId::parse(&venue).unwrap(),
        date: parse_date(&date).unwrap(),
    };
    let owner_epoch = other.load_venue_day(key.clone()).await.unwrap().owner_epoch;
    let reservation = crate::helpers::booked_reservation(&key, FIRST + 1, "10:00", Dose::FIRST);
    other
        .commit_reservations(ReservationBatch {
            kind: BatchKind::Reservations,
            venue_day: key,
            owner_epoch,
            sequence: 1,
            decisions: vec![Decision::Created(reservation)],
            audit: vec![],
            mail: vec![],
            withdraw: vec![],
            reminded: false,
            commit_by: None,
        })
        .await
        .unwrap();

    within_3_s(
        "the other owner's commit shows",
        Duration::from_millis(100),
        || async {
            match a.slots(&venue, &date).await.first() {
                Some((_, _, 1)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // The last place books through the first process, and then none is left.
    let third = a.login(FIRST + 2).await;
    let (status, body) = a.book(&third, &venue, &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    let fourth = a.login(FIRST + 3).await;
    let (status, body) = a.book(&fourth, &venue, &date, "10:00").await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("slot_full")),
        "{body}"
    );
    assert_eq!(a.slots(&venue, &date).await.first().map(|s| s.2), Some(0));
    assert_eq!(a.stored_reservations().await.len(), 3);
}

/// A retry refused by a process whose view is behind the store, while the
/// key's first try stands there: the first try of a dose-2 booking went
/// through another process, its outcome unknown (answered 503, its shared
/// claim left to its lease), and its batch was kept; the retry came through
/// a process that had not yet followed dose 1, which answered a final
/// `422 not_eligible` and kept it for the key (seen by the nemesis, seed
/// 5019: a refusal left booked). A final refusal is not kept while the
/// resident's shared record has a booking of the dose in flight ("in
/// progress"), nor where it names the key's own booking (its answer, once
/// the day's owner holds it: a booking the store holds and the owner does
/// not, a batch it is undoing, is "in progress", never `201`).
#[tokio::test]
async fn a_retry_refused_by_a_view_behind_the_store_gets_its_first_trys_booking() {
    use vaxslot::booking::Booking;
    use vaxslot::domain::{
        Dose, FingerprintScheme, IdempotencyTag, Reservation, SlotTime, TicketNumber, VenueDayKey,
        VenueId, parse_date,
    };
    use vaxslot::store::{RedisStore, SharedDoseClaim};
    const TICKET: u64 = 4_950_000_000;
    const KEY: &str = "dose-2-first-try";
    let a = TestApp::spawn(Backend::Redis).await;
    let b = second_process(&a).await;
    let date = future_date(60);
    let venue = a.venue_owned_by(&b, "behind", &date).await;
    a.import_residents(TICKET, 2).await;
    let token = a.login(TICKET).await;
    let body = json!({"venue_id": venue, "date": date, "time": "10:00", "dose": 2});
    let day = VenueDayKey {
        venue_id: VenueId::parse(&venue).unwrap(),
        date: parse_date(&date).unwrap(),
    };
    let ticket = TicketNumber::parse(&crate::helpers::ticket(TICKET)).unwrap();
    let dose_2 = Dose::new(2).unwrap();

    // The first try's batch, kept in the store (its owner loaded it when it
    // took the day over), and not followed by `a` (written behind the
    // change streams: `a` is behind).
    let other = RedisStore::connect(&a.redis.as_ref().expect("own Redis").url())
        .await
        .unwrap();
    let booking = Booking {
        venue_id: day.venue_id.clone(),
        date: day.date,
        time: SlotTime::parse("10:00").unwrap(),
        dose: Some(dose_2),
        access_code: None,
    };
    let kept = Reservation {
        idempotency: Some(IdempotencyTag {
            key: KEY.to_owned(),
            fingerprint: booking.fingerprint(FingerprintScheme::Canonical),
            scheme: FingerprintScheme::Canonical,
        }),
        ..crate::helpers::booked_reservation(&day, TICKET, "10:00", dose_2)
    };
    other.load_venue_day(day.clone()).await.unwrap();
    let mut raw = ::redis::Client::open(a.redis.as_ref().unwrap().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let owner: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("vaxslot:*:day:{venue}/{date}:owner"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let reservations = owner[0].replace(":owner", ":reservations");
    let _: i64 = ::redis::cmd("HSET")
        .arg(&reservations)
        .arg(kept.id.to_string())
        .arg(String::from_utf8(vaxslot::store::records::encode(&kept)).unwrap())
        .query_async(&mut raw)
        .await
        .unwrap();
    // The day is planned: its owner `b` loads it, with the kept batch.
    a.venue_day(&venue, &date, &[("10:00", 5)]).await;

    // While the first try's shared claim on dose 2 runs (its outcome was
    // unknown), the retry through `a`, which knows no dose 1: in progress.
    let claim = SharedDoseClaim {
        ticket,
        dose: dose_2,
        id: 7,
        day: day.clone(),
        idempotency_key: Some(KEY.to_owned()),
        prior: None,
    };
    other.claim_dose(&claim, None).await.unwrap();
    let (status, answer) = a.send_keyed(&token, &body, KEY).await;
    assert_eq!(
        (status, &answer["code"]),
        (409, &json!("change_in_progress")),
        "{answer}"
    );

    // Once the record names the kept booking: that booking is the answer.
    other.end_dose_claim(&claim, Some(kept.id)).await.unwrap();
    let (status, answer) = a.send_keyed(&token, &body, KEY).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["reservation_id"], json!(kept.id.to_string()));

    // A booking under a key that the store holds and the day's owner does
    // not (a batch its owner is undoing): never `201` from the store, but
    // "in progress" until the owner settles it.
    let second = a.login(TICKET + 1).await;
    let dose_1 = json!({"venue_id": venue, "date": date, "time": "10:00", "dose": 1});
    let undoing = Reservation {
        idempotency: Some(IdempotencyTag {
            key: KEY.to_owned(),
            fingerprint: Booking {
                dose: Some(Dose::FIRST),
                ..booking
            }
            .fingerprint(FingerprintScheme::Canonical),
            scheme: FingerprintScheme::Canonical,
        }),
        ..crate::helpers::booked_reservation(&day, TICKET + 1, "10:00", Dose::FIRST)
    };
    let _: i64 = ::redis::cmd("HSET")
        .arg(&reservations)
        .arg(undoing.id.to_string())
        .arg(String::from_utf8(vaxslot::store::records::encode(&undoing)).unwrap())
        .query_async(&mut raw)
        .await
        .unwrap();
    let claim = SharedDoseClaim {
        ticket: undoing.ticket_number,
        dose: Dose::FIRST,
        ..claim
    };
    other.claim_dose(&claim, None).await.unwrap();
    other
        .end_dose_claim(&claim, Some(undoing.id))
        .await
        .unwrap();
    let (status, answer) = a.send_keyed(&second, &dose_1, KEY).await;
    assert_eq!(
        (status, &answer["code"]),
        (409, &json!("change_in_progress")),
        "{answer}"
    );
}

/// `deploy/cluster/redis-node.conf` is a configuration redis-server accepts,
/// with the settings the README promises (cluster mode, AOF fsynced before
/// every reply, no eviction, partial coverage).
#[tokio::test]
async fn the_cluster_node_example_starts_with_its_durability() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::redis_server::free_port();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/cluster/redis-node.conf"
    );
    let mut node = tokio::process::Command::new("redis-server")
        .arg(example)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .args(["--daemonize", "no", "--logfile", "redis.log"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    let config = |name: &'static str| async move {
        let output = tokio::process::Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "-a",
                "CHANGE-ME",
                "--no-auth-warning",
            ])
            .args(["CONFIG", "GET", name])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_owned()
    };
    while config("port").await != port.to_string() {
        assert!(
            Instant::now() < deadline,
            "the example starts: {:?}",
            node.try_wait()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, expected) in [
        ("cluster-enabled", "yes"),
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("maxmemory-policy", "noeviction"),
        ("cluster-require-full-coverage", "no"),
        ("masterauth", "CHANGE-ME"),
    ] {
        assert_eq!(config(name).await, expected, "{name}");
    }
    node.start_kill().unwrap();
}

/// Dose 2 is never given on a dose 1 another process booked and this one
/// cannot see: residents book both doses through process A; at a tablet
/// served by process B, each dose 2 is refused while dose 1 is only booked,
/// whichever process owns the days (B's own resident state knows none of
/// these bookings unless it owns a day; it asks the day's owner).
#[tokio::test]
async fn a_check_in_on_another_process_never_gives_dose_2_first() {
    const RESIDENTS: u64 = 8;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let (first_day, second_day) = (future_date(3), future_date(3 + 28));
    for i in 0..RESIDENTS {
        for day in [&first_day, &second_day] {
            a.venue_day(&format!("clinic-{i}"), day, &[("10:00", 5)])
                .await;
        }
    }
    a.import_residents(4_800_000_000, RESIDENTS).await;
    let b = second_process(&a).await;
    for i in 0..RESIDENTS {
        let token = a.login(4_800_000_000 + i).await;
        for (day, dose) in [(&first_day, 1), (&second_day, 2)] {
            let (status, body) = a.book(&token, &format!("clinic-{i}"), day, "10:00").await;
            assert_eq!((status, body["dose"].as_u64()), (201, Some(dose)), "{body}");
        }
    }
    for i in 0..RESIDENTS {
        let (status, body) = b
            .send(
                Method::POST,
                "/v1/staff/checkins",
                Some(crate::helpers::STAFF_KEY),
                Some(
                    &json!({"venue_id": format!("clinic-{i}"), "date": second_day,
                    "code": crate::helpers::ticket(4_800_000_000 + i)}),
                ),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("prior_dose_missing")),
            "resident {i}: {body}"
        );
    }
}

/// A herd over three processes in which each resident's bookings of one
/// dose go at once to all three, for venue-days with different owners:
/// exactly one `201` per resident, the store holds one reservation each,
/// and a cancellation through one process frees the dose for a booking
/// through another.
#[tokio::test]
async fn one_residents_dose_booked_at_once_through_three_processes_books_once() {
    const RESIDENTS: u64 = 40;
    const DAYS: usize = 8;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    for d in 0..DAYS {
        a.venue_day(&format!("venue-{d}"), &date, &[("10:00", 100)])
            .await;
    }
    a.import_residents(4_900_000_000, RESIDENTS).await;
    let b = a.spawn_second().await;
    let c = a.spawn_second().await;
    for app in [&a, &b, &c] {
        until_processes(app, 3).await;
    }
    let apps = Arc::new([a, b, c]);
    let mut tokens = Vec::new();
    for i in 0..RESIDENTS {
        let mut mine = Vec::new();
        for app in apps.iter() {
            mine.push(app.login(4_900_000_000 + i).await);
        }
        tokens.push(mine);
    }
    let answers: Vec<Vec<(u16, Value)>> =
        futures::future::join_all(tokens.iter().enumerate().map(|(i, mine)| {
            let (apps, date) = (Arc::clone(&apps), date.clone());
            async move {
                // Three different venue-days, so three actors (often in
                // three processes) decide at once: only the resident's claim
                // can tell them apart.
                let days: Vec<String> = (0..3)
                    .map(|k| format!("venue-{}", (i + k) % DAYS))
                    .collect();
                let (one, two, three) = tokio::join!(
                    apps[0].book(&mine[0], &days[0], &date, "10:00"),
                    apps[1].book(&mine[1], &days[1], &date, "10:00"),
                    apps[2].book(&mine[2], &days[2], &date, "10:00"),
                );
                vec![one, two, three]
            }
        }))
        .await;
    let mut created = HashSet::new();
    for (i, tried) in answers.iter().enumerate() {
        let booked: Vec<&Value> = tried
            .iter()
            .filter(|(s, _)| *s == 201)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(booked.len(), 1, "resident {i}: {tried:?}");
        created.insert(booked[0]["reservation_id"].as_str().unwrap().to_owned());
        for (status, body) in tried {
            assert!(
                *status == 201
                    || ["already_reserved", "change_in_progress"]
                        .contains(&body["code"].as_str().unwrap_or("")),
                "resident {i}: {status} {body}"
            );
        }
    }
    assert_eq!(
        apps[0].stored_ids().await,
        created,
        "one reservation per resident"
    );

    // Cancelled through the process that booked it, the dose books again
    // through another: the shared record no longer holds it.
    let (booked_through, id) = answers[0]
        .iter()
        .enumerate()
        .find(|(_, (s, _))| *s == 201)
        .map(|(p, (_, b))| (p, b["reservation_id"].as_str().unwrap().to_owned()))
        .unwrap();
    let (status, body) = apps[booked_through]
        .send(
            Method::DELETE,
            &format!("/v1/reservations/{id}"),
            Some(&tokens[0][booked_through]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let other = (booked_through + 1) % 3;
    let (status, body) = apps[other]
        .send(
            Method::POST,
            "/v1/reservations",
            Some(&tokens[0][other]),
            Some(&json!({"venue_id": "venue-3", "date": date, "time": "10:00", "dose": 1})),
        )
        .await;
    assert_eq!(status, 201, "the dose is free again: {body}");
}

/// Cancels the reservation `booked` (a booking's answer) as its resident.
async fn cancel(app: &TestApp, token: &str, booked: &Value) -> (u16, Value) {
    let id = booked["reservation_id"]
        .as_str()
        .expect("a booking's answer");
    app.send(
        Method::DELETE,
        &format!("/v1/reservations/{id}"),
        Some(token),
        None,
    )
    .await
}

/// A check-in of resident `ticket` by the venue's staff.
async fn check_in(app: &TestApp, venue: &str, day: &str, ticket: u64) -> (u16, Value) {
    let body = json!({"venue_id": venue, "date": day, "code": crate::helpers::ticket(ticket)});
    app.send(
        Method::POST,
        "/v1/staff/checkins",
        Some(crate::helpers::STAFF_KEY),
        Some(&body),
    )
    .await
}

/// Polls `attempt` every `pause` for up to 3 s until it gives `Ok`.
async fn within_3_s<T, F, Fut>(what: &str, pause: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(last) if Instant::now() > deadline => panic!("{what}: still {last}"),
            Err(_) => tokio::time::sleep(pause).await,
        }
    }
}

/// Everything made through A after B started reaches B from the change
/// streams, without a restart, and the per-resident rules hold across the
/// two: B logs in residents A imported, books days A put, shows bookings A
/// took, checks in dose 2 after dose 1 was given through A, picks the next
/// dose from bookings made through A, replays A's `Idempotency-Key`; and a
/// cancellation through A cascades to a dose booked through B.
#[tokio::test]
async fn what_one_process_changes_the_others_know_within_a_second() {
    const FIRST: u64 = 4_700_000_000;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let b = second_process(&a).await;
    let (first_day, second_day) = (future_date(3), future_date(3 + 28));
    // Four venues with both days, four more with the first only.
    for v in 0..8 {
        a.put_venue(&format!("late-{v}"), "central", &["moderna"])
            .await;
        let days = if v < 4 { 2 } else { 1 };
        for day in [&first_day, &second_day].into_iter().take(days) {
            let (status, body) = a.put_day(&format!("late-{v}"), day, &[("10:00", 10)]).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    // A venue put through A and its day at once through B (an admin's
    // script behind a load balancer): B reads the venue from the store.
    a.put_venue("fresh", "central", &["moderna"]).await;
    let (status, body) = b.put_day("fresh", &first_day, &[("10:00", 10)]).await;
    assert_eq!(status, 201, "{body}");
    a.import_residents(FIRST, 12).await;

    // An import through A: B logs the residents in.
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(
            // Spaced out: five failures in a row would lock the ticket.
            within_3_s("login through B", Duration::from_millis(400), || async {
                let (status, body) = b
                    .send(
                        Method::POST,
                        "/v1/sessions",
                        None,
                        Some(&json!({"ticket_number": crate::helpers::ticket(FIRST + i),
                            "birth_date": "1960-01-01"})),
                    )
                    .await;
                match status {
                    201 => Ok(body["token"].as_str().unwrap().to_owned()),
                    _ => Err(format!("{status} {body}")),
                }
            })
            .await,
        );
    }
    // Days put through A: B books them, and both show the place taken.
    let booked = within_3_s("a booking through B", Duration::from_millis(50), || async {
        match b.book(&tokens[0], "late-0", &first_day, "10:00").await {
            (201, body) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(booked["dose"], 1);
    for app in [&a, &b] {
        within_3_s(
            "availability showing the booking",
            Duration::from_millis(50),
            || async {
                let (_, body) = app
                    .send(
                        Method::GET,
                        &format!("/v1/availability?date={first_day}&venue_id=late-0"),
                        None,
                        None,
                    )
                    .await;
                match body["days"][0]["slots"][0]["remaining"].as_u64() {
                    Some(9) => Ok(()),
                    _ => Err(body.to_string()),
                }
            },
        )
        .await;
    }

    // Dose 1 given through A; dose 2 booked and given through B.
    let (status, body) = check_in(&a, "late-0", &first_day, FIRST).await;
    assert_eq!(status, 200, "dose 1 given through A: {body}");
    let (status, body) = b.book(&tokens[0], "late-1", &second_day, "10:00").await;
    assert_eq!((status, body["dose"].as_u64()), (201, Some(2)), "{body}");
    within_3_s(
        "dose 2 given through B",
        Duration::from_millis(50),
        || async {
            match check_in(&b, "late-1", &second_day, FIRST).await {
                (200, _) => Ok(()),
                (409, body) if body["code"] == "prior_dose_missing" => Err(body.to_string()),
                (status, body) => panic!("{status} {body}"),
            }
        },
    )
    .await;

    // Keyed bookings through A, each retried through B at once, before B may
    // have read the change: the first answer again. Over eight days, some
    // owned by A (then the shared dose record leads B to the stored booking,
    // which carries the key) and some by B (whose actor committed it).
    let mut first_doses = Vec::new();
    for (i, token) in tokens.iter().enumerate().skip(4) {
        let keyed =
            json!({"venue_id": format!("late-{}", i % 8), "date": first_day, "time": "10:00"});
        let (status, first_answer) = a.send_keyed(token, &keyed, "after-a-dropped-line").await;
        assert_eq!(status, 201, "{first_answer}");
        let (status, replayed) = b.send_keyed(token, &keyed, "after-a-dropped-line").await;
        assert_eq!(status, 201, "the retry through B: {replayed}");
        assert_eq!(
            replayed["reservation_id"], first_answer["reservation_id"],
            "the same reservation, not a second one"
        );
        first_doses.push((i, first_answer));
    }

    // Each of those residents books dose 2 through B (B picks dose 2
    // itself, from A's booking), on days some of which B owns; cancelling
    // dose 1 through A right after, before A may have read B's booking,
    // cancels both: the shared dose record names dose 2.
    let mut both = Vec::new();
    for (i, dose_1) in first_doses {
        let dose_2 = within_3_s("dose 2 through B", Duration::from_millis(50), || async {
            match b
                .book(&tokens[i], &format!("late-{}", i % 4), &second_day, "10:00")
                .await
            {
                (201, body) if body["dose"] == 2 => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await;
        let (status, body) = cancel(&a, &tokens[i], &dose_1).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["also_cancelled"][0]["reservation_id"], dose_2["reservation_id"],
            "resident {i}: {body}"
        );
        both.extend([dose_1, dose_2]);
    }
    let stored = a.stored_reservations().await;
    let cancelled = stored
        .iter()
        .filter(|r| both.iter().any(|d| d["reservation_id"] == r.id.to_string()))
        .filter(|r| r.status == vaxslot::domain::ReservationStatus::Cancelled)
        .count();
    assert_eq!(cancelled, both.len(), "every dose cancelled in the store");
}

/// The ticket lockout counts failures made through every process: three
/// wrong birth dates through A and two through B lock the ticket on both,
/// for the right birth date too (each process alone saw fewer than five).
#[tokio::test]
async fn five_failed_logins_spread_over_two_processes_lock_the_ticket() {
    const TICKET: u64 = 4_600_000_000;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    a.import_residents(TICKET, 1).await;
    let b = a.spawn_second().await;
    until_processes(&a, 2).await;
    let attempt = |app: &TestApp, birth_date: &str| {
        let body =
            json!({"ticket_number": crate::helpers::ticket(TICKET), "birth_date": birth_date});
        let request = app.client.post(app.url("/v1/sessions")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for app in [&a, &a, &a, &b, &b] {
        assert_eq!(attempt(app, "1960-01-02").await, 401, "a wrong birth date");
    }
    for app in [&a, &b] {
        assert_eq!(
            attempt(app, "1960-01-01").await,
            429,
            "locked on every process, even for the right birth date"
        );
    }
}

/// A keyed booking refused through A is refused again when retried through
/// B, even after a place came free: the first answer stands on every
/// process, and the same key for another request is a reused key.
#[tokio::test]
async fn a_keyed_refusal_through_one_process_is_the_answer_on_the_others() {
    const FIRST: u64 = 4_500_000_000;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let date = future_date(30);
    for v in ["tiny", "roomy"] {
        a.venue_day(v, &date, &[("10:00", 1)]).await;
    }
    a.import_residents(FIRST, 2).await;
    let b = second_process(&a).await;
    let (holder, late) = (a.login(FIRST).await, a.login(FIRST + 1).await);
    let (status, held) = a.book(&holder, "tiny", &date, "10:00").await;
    assert_eq!(status, 201, "{held}");
    let wanted = json!({"venue_id": "tiny", "date": date, "time": "10:00"});
    let (status, refused) = a.send_keyed(&late, &wanted, "one-try").await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("slot_full")));
    // The place comes free; the retry goes through the other process.
    let (status, body) = cancel(&a, &holder, &held).await;
    assert_eq!(status, 200, "{body}");
    for app in [&b, &a] {
        let (status, body) = app.send_keyed(&late, &wanted, "one-try").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("slot_full")),
            "the first answer again: {body}"
        );
    }
    let other = json!({"venue_id": "roomy", "date": date, "time": "10:00"});
    let (status, body) = b.send_keyed(&late, &other, "one-try").await;
    assert_eq!(body["code"], "idempotency_key_reused", "{status} {body}");
    assert_eq!(
        a.stored_reservations()
            .await
            .iter()
            .filter(|r| r.status.is_active())
            .count(),
        0,
        "no booking made by a retry"
    );
}

/// A process that could not read the change streams for longer than they
/// keep their entries (2 s here; the process is paused) reloads everything
/// from the store when it runs again: what was changed meanwhile through
/// the other process is there, whether or not the streams still hold it.
#[tokio::test]
async fn a_process_that_missed_the_change_streams_reloads_everything() {
    const FIRST: u64 = 4_400_000_000;
    let keep = [("VAXSLOT_CHANGE_STREAMS_KEEP_S", "2")];
    let a = TestApp::spawn_with_env(Backend::RedisCluster, &keep).await;
    let b = a.spawn_second_with_env(&keep).await;
    until_processes(&a, 2).await;
    until_processes(&b, 2).await;
    b.signal("STOP").await;
    // B's lease ends: A owns every day meanwhile.
    until_processes(&a, 1).await;
    let date = future_date(30);
    a.venue_day("while-away", &date, &[("10:00", 5)]).await;
    for i in 0..2 {
        a.import_residents(FIRST + i, 1).await;
        let token = a.login(FIRST + i).await;
        let (status, body) = a.book(&token, "while-away", &date, "10:00").await;
        assert_eq!(status, 201, "{body}");
        // Past what the streams keep, then writes that trim them.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    b.signal("CONT").await;
    within_3_s("B's reload", Duration::from_millis(100), || async {
        let log = std::fs::read_to_string(&b.log_path).unwrap_or_default();
        match log.contains("reloaded from the store") {
            true => Ok(()),
            false => Err(b.log_tail()),
        }
    })
    .await;
    let (status, body) = b
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}&venue_id=while-away"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["days"][0]["slots"][0]["remaining"], 3, "{body}");
    b.login(FIRST).await;
}

/// Right after dose 1 is cancelled through A, B (which still knows it as
/// booked for a moment) refuses dose 2, and books dose 1 again: the shared
/// dose record, not B's view, decides.
#[tokio::test]
async fn right_after_a_cancellation_through_one_process_another_follows_the_store() {
    const FIRST: u64 = 4_300_000_000;
    const RESIDENTS: u64 = 6;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let (first_day, second_day) = (future_date(3), future_date(3 + 28));
    for v in 0..RESIDENTS {
        for day in [&first_day, &second_day] {
            a.venue_day(&format!("again-{v}"), day, &[("10:00", 5)])
                .await;
        }
    }
    a.import_residents(FIRST, RESIDENTS).await;
    let b = second_process(&a).await;
    for i in 0..RESIDENTS {
        let (token_a, token_b) = (a.login(FIRST + i).await, b.login(FIRST + i).await);
        let venue = format!("again-{i}");
        let (status, dose_1) = a.book(&token_a, &venue, &first_day, "10:00").await;
        assert_eq!(status, 201, "{dose_1}");
        within_3_s("B knowing dose 1", Duration::from_millis(50), || async {
            let (_, body) = b
                .send(Method::GET, "/v1/reservations", Some(&token_b), None)
                .await;
            match body["reservations"].as_array().map(Vec::len) {
                Some(1) => Ok(()),
                _ => Err(body.to_string()),
            }
        })
        .await;
        let (status, body) = cancel(&a, &token_a, &dose_1).await;
        assert_eq!(status, 200, "{body}");
        let dose_2 = json!({"venue_id": venue, "date": second_day, "time": "10:00", "dose": 2});
        let (status, body) = b
            .send(
                Method::POST,
                "/v1/reservations",
                Some(&token_b),
                Some(&dose_2),
            )
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (422, Some("no_prior_dose")),
            "resident {i}: dose 2 without dose 1: {body}"
        );
        let again = json!({"venue_id": venue, "date": first_day, "time": "10:00", "dose": 1});
        let (status, body) = b
            .send(
                Method::POST,
                "/v1/reservations",
                Some(&token_b),
                Some(&again),
            )
            .await;
        assert_eq!(status, 201, "resident {i}: dose 1 again: {body}");
    }
}

/// Each resident's dose 1 cancelled through A while dose 2 is booked
/// through B, at once: whichever goes first, no dose 2 is left booked on a
/// cancelled dose 1 (the cascade marks the shared record; a booking meanwhile
/// is `409 change_in_progress`, and so is a cascade during a booking).
#[tokio::test]
async fn a_cascade_and_a_booking_of_the_next_dose_at_once_through_two_processes() {
    const FIRST: u64 = 4_200_000_000;
    const RESIDENTS: u64 = 24;
    let a = TestApp::spawn(Backend::RedisCluster).await;
    let (first_day, second_day) = (future_date(3), future_date(3 + 28));
    for v in 0..4 {
        for day in [&first_day, &second_day] {
            a.venue_day(&format!("race-{v}"), day, &[("10:00", 50)])
                .await;
        }
    }
    a.import_residents(FIRST, RESIDENTS).await;
    let b = second_process(&a).await;
    let mut residents = Vec::new();
    for i in 0..RESIDENTS {
        let (token_a, token_b) = (a.login(FIRST + i).await, b.login(FIRST + i).await);
        let venue = format!("race-{}", i % 4);
        let (status, dose_1) = a.book(&token_a, &venue, &first_day, "10:00").await;
        assert_eq!(status, 201, "{dose_1}");
        residents.push((token_a, token_b, venue, dose_1));
    }
    // B knows every dose 1 before the race.
    within_3_s(
        "B knowing the doses 1",
        Duration::from_millis(50),
        || async {
            let (_, body) = b
                .send(
                    Method::GET,
                    "/v1/reservations",
                    Some(&residents[RESIDENTS as usize - 1].1),
                    None,
                )
                .await;
            match body["reservations"].as_array().map(Vec::len) {
                Some(1) => Ok(()),
                _ => Err(body.to_string()),
            }
        },
    )
    .await;
    let answers =
        futures::future::join_all(residents.iter().map(|(token_a, token_b, venue, dose_1)| {
            let body = json!({"venue_id": venue, "date": second_day, "time": "10:00", "dose": 2});
            let (a, b) = (&a, &b);
            async move {
                tokio::join!(
                    cancel(a, token_a, dose_1),
                    b.send(Method::POST, "/v1/reservations", Some(token_b), Some(&body)),
                )
            }
        }))
        .await;
    for (i, ((cancelled, _), (booked, body))) in answers.iter().enumerate() {
        // 409 change_in_progress for whichever found the other in flight.
        assert!(
            [200, 409].contains(cancelled) && [201, 409, 422].contains(booked),
            "resident {i}: cancel {cancelled}, book {booked} {body}"
        );
    }
    let stored = a.stored_reservations().await;
    for i in 0..RESIDENTS {
        let ticket =
            vaxslot::domain::TicketNumber::parse(&crate::helpers::ticket(FIRST + i)).unwrap();
        let active = |dose: u8| {
            stored.iter().any(|r| {
                r.ticket_number == ticket && r.dose.number() == dose && r.status.is_active()
            })
        };
        assert!(
            !active(2) || active(1),
            "resident {i}: dose 2 booked on a cancelled dose 1 ({:?})",
            answers[i as usize]
        );
    }
}
