//! The nemesis: several vaxslot processes on a six-node loopback Redis
//! Cluster, a seeded schedule of faults (processes paused past their
//! leases, killed and restarted; masters killed, paused or `CLIENT PAUSE`d;
//! a slow SMTP server) while clients book, retry by key, cancel, and the
//! SRE stops booking at the end; then everything healed and the history
//! and the final state checked for every anomaly kind (`check.rs`).
//!
//!   vaxslot-nemesis --seed 7 --schedules 200 [--summary runs.jsonl]
//!
//! A failing schedule prints its seed and faults, and how to replay it;
//! exit 1. `loadtest/nemesis.sh` builds and runs it.

mod check;
mod faults;
mod workload;
mod world;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use check::{Anomalies, KINDS};
use faults::{Fault, Planned};
use workload::{Client, Day, Event, Resident, Shared};
use world::{ADMIN_KEY, Cluster, Processes, SRE_KEY, Smtp};

#[derive(Parser, Clone)]
#[command(
    about = "Seeded faults against several vaxslot processes on a Redis Cluster, and a history checker"
)]
struct Args {
    /// The first schedule's seed (each next one is one more); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// How many schedules to run, one after another, each on a fresh cluster.
    #[arg(long, default_value_t = 1)]
    schedules: u64,
    #[arg(long, default_value_t = 3)]
    processes: usize,
    #[arg(long, default_value_t = 3000)]
    residents: usize,
    /// One in this many residents has an e-mail address.
    #[arg(long, default_value_t = 10)]
    email_every: usize,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long clients book before the kill switch is engaged.
    #[arg(long, default_value_t = 40)]
    load_s: u64,
    /// Faults per schedule.
    #[arg(long, default_value_t = 7)]
    faults: usize,
    /// Venue-days for dose 1 (as many again for dose 2), one slot each.
    #[arg(long, default_value_t = 5)]
    days: usize,
    #[arg(long, default_value_t = 100)]
    capacity: u64,
    /// How long the SMTP server takes to accept each message.
    #[arg(long, default_value_t = 5000)]
    smtp_delay_ms: u64,
    /// Longest wait for the outbox to empty after the run.
    #[arg(long, default_value_t = 240)]
    mail_wait_s: u64,
    #[arg(long, default_value = "target/release/vaxslot")]
    binary: PathBuf,
    /// Appends one JSON line per schedule (seed, requests, faults, anomalies).
    #[arg(long)]
    summary: Option<PathBuf>,
}

/// Clients keep booking this long after the stop's `PUT` is sent: what they
/// send then must all be refused.
const AFTER_STOP: Duration = Duration::from_secs(3);
/// Longest wait for one process's answer while checking (a stuck process
/// is an anomaly, not a reason to wait).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long processes may take to show what the store holds after healing
/// (they follow the store within about a second).
const AGREE_WITHIN: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let first = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as u64);
    let mut failed = Vec::new();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for seed in first..first + args.schedules {
        let report = run(&args, seed)
            .await
            .with_context(|| format!("schedule with seed {seed}"))?;
        println!("{}", report.line());
        if let Some(path) = &args.summary {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{}", report.json())?;
        }
        *totals.entry("schedules".into()).or_default() += 1;
        *totals.entry("requests".into()).or_default() += report.requests as u64;
        *totals.entry("mail_resent_after_crash".into()).or_default() +=
            report.resent_after_crash as u64;
        for fault in &report.schedule {
            *totals
                .entry(format!("fault:{}", fault.fault.name()))
                .or_default() += 1;
        }
        for kind in KINDS {
            *totals.entry(format!("anomaly:{kind}")).or_default() +=
                report.anomalies.count(kind) as u64;
        }
        if report.anomalies.total() > 0 {
            for (kind, lines) in &report.anomalies.0 {
                for line in lines.iter().take(5) {
                    println!("  {kind}: {line}");
                }
            }
            println!(
                "  faults: {}\n  work folder kept: {}\n  replay: vaxslot-nemesis --seed {seed} --schedules 1 (same options)",
                serde_json::to_string(&report.schedule)?,
                report.work.display()
            );
            print_log_warnings(&report.work);
            failed.push(seed);
        } else {
            let _ = std::fs::remove_dir_all(&report.work);
        }
    }
    println!("totals: {}", serde_json::to_string(&totals)?);
    if !failed.is_empty() {
        bail!("anomalies in the schedules with seeds {failed:?}");
    }
    Ok(())
}

/// Most warnings and errors printed from each process's log after a
/// schedule with an anomaly (CI keeps no work folder: this is what is left
/// to read there). The logs hold no personal data.
const LOG_WARNINGS_PRINTED: usize = 40;

/// The Redis client's own warnings while a node is down: many a second,
/// they would hide vaxslot's.
const REDIS_CLIENT_CHATTER: [&str; 3] = [
    "Failed to connect to node",
    "beginning slot refresh",
    "repairing in background",
];

/// Prints the last warnings and errors of each vaxslot log in `work`
/// (without the Redis client's chatter).
fn print_log_warnings(work: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vaxslot-") && name.ends_with(".log"))
        })
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .filter(|line| {
                !REDIS_CLIENT_CHATTER
                    .iter()
                    .any(|chatter| line.contains(chatter))
            })
            .collect();
        let shown = &warnings[warnings.len().saturating_sub(LOG_WARNINGS_PRINTED)..];
        println!(
            "  {} ({} warnings and errors, the last {}):",
            log.file_name().unwrap_or_default().to_string_lossy(),
            warnings.len(),
            shown.len()
        );
        for line in shown {
            println!("    {line}");
        }
    }
}

struct Report {
    seed: u64,
    /// Mail sent again because its sender was killed between the server's
    /// acceptance and the mark (the same `Message-ID`): not an anomaly.
    resent_after_crash: usize,
    requests: usize,
    schedule: Vec<Planned>,
    anomalies: Anomalies,
    took: Duration,
    work: PathBuf,
}

impl Report {
    fn faults_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut kinds = BTreeMap::new();
        for planned in &self.schedule {
            *kinds.entry(planned.fault.name()).or_default() += 1;
        }
        kinds
    }

    fn line(&self) -> String {
        let anomalies: BTreeMap<&str, usize> = KINDS
            .iter()
            .map(|k| (*k, self.anomalies.count(k)))
            .collect();
        format!(
            "seed {}: {} requests, faults {}, anomalies {}, mail resent after a crash {} ({:.0} s)",
            self.seed,
            self.requests,
            serde_json::to_string(&self.faults_by_kind()).unwrap_or_default(),
            serde_json::to_string(&anomalies).unwrap_or_default(),
            self.resent_after_crash,
            self.took.as_secs_f64()
        )
    }

    fn json(&self) -> Value {
        let anomalies: BTreeMap<&str, usize> = KINDS
            .iter()
            .map(|k| (*k, self.anomalies.count(k)))
            .collect();
        json!({
            "seed": self.seed,
            "requests": self.requests,
            "faults": self.faults_by_kind(),
            "schedule": self.schedule,
            "anomalies": anomalies,
            "mail_resent_after_crash": self.resent_after_crash,
            "took_s": self.took.as_secs_f64(),
        })
    }
}

/// Today in Tokyo, plus `days`.
fn date_in(days: i64) -> String {
    let tokyo = chrono::Utc::now() + chrono::Duration::hours(9);
    (tokyo.date_naive() + chrono::Duration::days(days)).to_string()
}

async fn run(args: &Args, seed: u64) -> anyhow::Result<Report> {
    let started = Instant::now();
    let work = std::env::temp_dir().join(format!("vaxslot-nemesis-{seed}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let smtp = Smtp::start_each(&work, args.smtp_delay_ms, args.processes).await?;
    let cluster = Cluster::start(&work).await?;
    let processes = Processes::start(
        &args.binary,
        &work,
        cluster.seeds(),
        smtp.iter().map(|server| server.port).collect(),
    )
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    let urls = Arc::new(RwLock::new(processes.urls()));

    // The ward: small days, so seats run out; residents, a tenth with mail.
    let mut days = Vec::new();
    for dose in [1u8, 2] {
        for d in 0..args.days {
            days.push(Day {
                venue: format!("nemesis-{dose}-{d}"),
                date: date_in(if dose == 1 { 20 } else { 60 } + d as i64),
                time: "10:00",
                capacity: args.capacity,
                dose,
            });
        }
    }
    let admin = processes.urls()[0].clone();
    for day in &days {
        let venue = json!({"name": format!("会場 {}", day.venue), "kind": "clinic",
            "booking": "central", "address": "中野区", "phone": "03", "vaccines": ["moderna"]});
        expect_ok(
            http.put(format!("{admin}/v1/admin/venues/{}", day.venue))
                .bearer_auth(ADMIN_KEY)
                .json(&venue),
        )
        .await?;
        let plan = json!({"vaccine": "moderna", "access_code": null,
            "slots": [{"time": day.time, "capacity": day.capacity}]});
        expect_ok(
            http.put(format!(
                "{admin}/v1/admin/venues/{}/days/{}",
                day.venue, day.date
            ))
            .bearer_auth(ADMIN_KEY)
            .json(&plan),
        )
        .await?;
    }
    let tickets: Vec<String> = (0..args.residents)
        .map(|i| format!("{:010}", 6_100_000_000u64 + i as u64))
        .collect();
    let with_email: HashSet<String> = tickets
        .iter()
        .step_by(args.email_every.max(1))
        .cloned()
        .collect();
    for chunk in tickets.chunks(1000) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|t| {
                let email = with_email.contains(t).then(|| format!("r{t}@example.jp"));
                json!({"ticket_number": t, "birth_date": "1960-01-01", "name": "テスト 住民",
                    "email": email, "high_risk": false, "history": []})
            })
            .collect();
        expect_ok(
            http.post(format!("{admin}/v1/admin/residents"))
                .bearer_auth(ADMIN_KEY)
                .json(&records),
        )
        .await?;
    }
    let n = args.processes;
    until(
        Duration::from_secs(30),
        "every process sees the others",
        || {
            let (http, urls) = (http.clone(), processes.urls());
            async move {
                for url in urls {
                    if status(&http, &url).await?["processes"].as_u64() != Some(n as u64) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        },
    )
    .await?;
    let residents = login_all(&http, &processes.urls(), &tickets).await?;

    let schedule = faults::schedule(seed, args.load_s * 1000, args.faults, n);
    eprintln!("seed {seed}: faults {}", serde_json::to_string(&schedule)?);
    let shared = Arc::new(Shared {
        urls: Arc::clone(&urls),
        days: days.clone(),
        http: http.clone(),
    });
    let load_started = Instant::now();
    let clients_until = load_started + Duration::from_secs(args.load_s) + AFTER_STOP;
    let per_client = residents.len().div_ceil(args.clients);
    let clients: Vec<_> = residents
        .chunks(per_client)
        .enumerate()
        .map(|(id, mine)| {
            let client = Client::new(id, seed, Arc::clone(&shared), mine.to_vec());
            tokio::spawn(client.run(clients_until))
        })
        .collect();

    // Apart, so that a process that is slow to restart (its store paused)
    // never holds up the continuing of a paused master.
    let world = World {
        cluster: Arc::new(Mutex::new(cluster)),
        processes: Arc::new(Mutex::new(processes)),
        urls: Arc::clone(&urls),
        kills: Arc::default(),
        store_faults: Arc::default(),
        pauses: Arc::default(),
    };
    let mut healing = Vec::new();
    for planned in &schedule {
        let at = load_started + Duration::from_millis(planned.at_ms);
        tokio::time::sleep_until(at.into()).await;
        eprintln!(
            "seed {seed}: {} at {} ms",
            planned.fault.name(),
            planned.at_ms
        );
        healing.push(tokio::spawn(inflict(world.clone(), planned.fault)));
    }
    tokio::time::sleep_until((load_started + Duration::from_secs(args.load_s)).into()).await;
    let stopped_at_ms = engage_kill_switch(&http, &urls).await?;

    let mut history: Vec<Event> = Vec::new();
    for client in clients {
        history.extend(client.await?);
    }
    for heal in healing {
        heal.await??;
    }
    world.cluster.lock().await.heal().await?;
    {
        let mut processes = world.processes.lock().await;
        processes.heal().await?;
        *urls.write().expect("urls lock") = processes.urls();
    }
    let urls_now = urls.read().expect("urls lock").clone();
    let mut anomalies = Anomalies::default();
    let healed = until(
        Duration::from_secs(60),
        "every process sees the others after healing",
        || {
            let (http, urls) = (http.clone(), urls_now.clone());
            async move {
                for url in urls {
                    match status(&http, &url).await {
                        Ok(s) if s["processes"].as_u64() == Some(n as u64) => {}
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
        },
    )
    .await;
    if let Err(error) = healed {
        anomalies.add(
            "process_stuck",
            format!("{error} (see the processes' logs)"),
        );
    }

    let ports = world.cluster.lock().await.ports();
    let store = check::read_store(&ports).await?;
    check::check_history(&history, &store, &days, stopped_at_ms, &mut anomalies);
    check_processes(&http, &urls_now, &store, &days, &residents, &mut anomalies).await?;
    wait_for_outbox(&http, &urls_now, Duration::from_secs(args.mail_wait_s)).await;
    // What the last send left: a message accepted but not yet recorded.
    tokio::time::sleep(Duration::from_millis(args.smtp_delay_ms + 1000)).await;
    let kills = world.kills.lock().await.clone();
    let pauses = world.pauses.lock().await.clone();
    let store_faults = world.store_faults.lock().await.clone();
    let resent_after_crash = check::check_mail(
        &Smtp::messages(&smtp),
        &kills,
        &pauses,
        &store_faults,
        &store,
        &with_email,
        &mut anomalies,
    );
    drop(world);
    Ok(Report {
        seed,
        resent_after_crash,
        requests: history.len(),
        schedule,
        anomalies,
        took: started.elapsed(),
        work,
    })
}

/// What the faults act on.
#[derive(Clone)]
struct World {
    cluster: Arc<Mutex<Cluster>>,
    processes: Arc<Mutex<Processes>>,
    urls: Arc<RwLock<Vec<String>>>,
    /// Which process was SIGKILLed, and when (unix ms).
    kills: Arc<Mutex<Vec<(usize, i64)>>>,
    /// Which process was SIGSTOPped, from when until its SIGCONT (unix ms).
    pauses: Arc<Mutex<Vec<(usize, i64, i64)>>>,
    /// When a master was killed, paused or held by `CLIENT PAUSE`, and when
    /// that ended (unix ms).
    store_faults: Arc<Mutex<Vec<(i64, i64)>>>,
}

/// Starts one fault and heals it when it ends.
async fn inflict(world: World, fault: Fault) -> anyhow::Result<()> {
    let lasts = Duration::from_millis(fault.lasts_ms());
    let began_ms = workload::now_ms();
    match fault {
        Fault::PauseProcess { process, .. } => {
            world.processes.lock().await.signal(process, "STOP").await?;
            tokio::time::sleep(lasts).await;
            world.processes.lock().await.signal(process, "CONT").await?;
            let ended_ms = workload::now_ms();
            world
                .pauses
                .lock()
                .await
                .push((process, began_ms, ended_ms));
        }
        Fault::KillProcess { process, .. } => {
            world.kills.lock().await.push((process, workload::now_ms()));
            world.processes.lock().await.kill(process).await?;
            tokio::time::sleep(lasts).await;
            let mut processes = world.processes.lock().await;
            processes.restart(process).await?;
            *world.urls.write().expect("urls lock") = processes.urls();
        }
        Fault::KillMaster { master, .. } => {
            let node = {
                let mut cluster = world.cluster.lock().await;
                let node = cluster.master(master).await?;
                if let Some(node) = node {
                    cluster.kill(node).await?;
                }
                node
            };
            tokio::time::sleep(lasts).await;
            if let Some(node) = node {
                world.cluster.lock().await.restart(node).await?;
            }
        }
        Fault::PauseMaster { master, .. } => {
            let node = {
                let cluster = world.cluster.lock().await;
                let node = cluster.master(master).await?;
                if let Some(node) = node {
                    cluster.signal(node, "STOP").await?;
                }
                node
            };
            tokio::time::sleep(lasts).await;
            if let Some(node) = node {
                world.cluster.lock().await.signal(node, "CONT").await?;
            }
        }
        Fault::ClientPause { master, for_ms } => {
            let cluster = world.cluster.lock().await;
            if let Some(node) = cluster.master(master).await? {
                cluster.client_pause(node, for_ms).await?;
            }
        }
    }
    if matches!(
        fault,
        Fault::KillMaster { .. } | Fault::PauseMaster { .. } | Fault::ClientPause { .. }
    ) {
        let ended_ms = workload::now_ms().max(began_ms + fault.lasts_ms() as i64);
        world.store_faults.lock().await.push((began_ms, ended_ms));
    }
    Ok(())
}

async fn expect_ok(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("setup call answered {status}: {body}");
    }
    Ok(body)
}

async fn status(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    expect_ok(
        http.get(format!("{url}/v1/admin/status"))
            .bearer_auth(SRE_KEY),
    )
    .await
}

/// Polls `check` until it is true, for at most `within`.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await.unwrap_or(false) {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Logs every resident in, through the processes in turn.
async fn login_all(
    http: &reqwest::Client,
    urls: &[String],
    tickets: &[String],
) -> anyhow::Result<Vec<Resident>> {
    use futures::StreamExt;
    let logins = futures::stream::iter(tickets.iter().enumerate())
        .map(|(i, ticket)| {
            let url = urls[i % urls.len()].clone();
            async move {
                let body = json!({"ticket_number": ticket, "birth_date": "1960-01-01"});
                for _ in 0..50 {
                    let answer =
                        expect_ok(http.post(format!("{url}/v1/sessions")).json(&body)).await;
                    if let Ok(answer) = answer
                        && let Some(token) = answer["token"].as_str()
                    {
                        return Ok(Resident {
                            ticket: ticket.clone(),
                            token: token.to_owned(),
                        });
                    }
                    // Not followed the import yet.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                bail!("a resident could not log in")
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    logins.into_iter().collect()
}

/// Engages the kill switch through the processes in turn until one `PUT`
/// answers `200`; answers when it did (unix ms).
async fn engage_kill_switch(
    http: &reqwest::Client,
    urls: &Arc<RwLock<Vec<String>>>,
) -> anyhow::Result<i64> {
    let body = json!({"engaged": true, "reason": "nemesis: the end of the run"});
    let started = Instant::now();
    for attempt in 0.. {
        let list = urls.read().expect("urls lock").clone();
        let url = &list[attempt % list.len()];
        let answer = http
            .put(format!("{url}/v1/admin/kill-switch"))
            .bearer_auth(SRE_KEY)
            .json(&body)
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(workload::now_ms());
        }
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the kill switch could not be engaged within 120 s")
}

/// Every process shows each day's seats and a sample of residents'
/// reservations as the store holds them (within `AGREE_WITHIN`).
async fn check_processes(
    http: &reqwest::Client,
    urls: &[String],
    store: &check::StoreState,
    days: &[Day],
    residents: &[Resident],
    anomalies: &mut Anomalies,
) -> anyhow::Result<()> {
    let by_store = check::remaining_by_store(store, days);
    let started = Instant::now();
    loop {
        let mut stale = Vec::new();
        for (p, url) in urls.iter().enumerate() {
            for day in days {
                let shown = expect_ok(
                    http.get(format!(
                        "{url}/v1/availability?date={}&venue_id={}",
                        day.date, day.venue
                    ))
                    .bearer_auth(ADMIN_KEY)
                    .timeout(CHECK_TIMEOUT),
                )
                .await
                .unwrap_or(Value::Null);
                let remaining = shown["days"][0]["slots"][0]["remaining"].as_u64();
                let truth = by_store[&(day.venue.clone(), day.date.clone())];
                if remaining != Some(truth) {
                    stale.push(format!(
                        "process {p}: {}/{} shows {remaining:?}, the store {truth}",
                        day.venue, day.date
                    ));
                }
            }
        }
        if stale.is_empty() {
            break;
        }
        if started.elapsed() > AGREE_WITHIN {
            for line in stale {
                anomalies.add("stale_seats", line);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sample: Vec<&Resident> = residents
        .iter()
        .step_by((residents.len() / 100).max(1))
        .collect();
    'processes: for (p, url) in urls.iter().enumerate() {
        for resident in &sample {
            let truth: HashSet<&str> = store
                .reservations
                .values()
                .filter(|r| r.ticket == resident.ticket && r.active)
                .map(|r| r.id.as_str())
                .collect();
            let started = Instant::now();
            loop {
                let me = expect_ok(
                    http.get(format!("{url}/v1/me"))
                        .bearer_auth(&resident.token)
                        .timeout(CHECK_TIMEOUT),
                )
                .await
                .unwrap_or(Value::Null);
                if me.is_null() && started.elapsed() > AGREE_WITHIN {
                    anomalies.add(
                        "process_disagrees_with_store",
                        format!("process {p}: does not answer /v1/me"),
                    );
                    continue 'processes;
                }
                let shown: HashSet<String> = me["reservations"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter(|r| matches!(r["status"].as_str(), Some("booked" | "attended")))
                            .filter_map(|r| r["reservation_id"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let shown: HashSet<&str> = shown.iter().map(String::as_str).collect();
                if shown == truth {
                    break;
                }
                if started.elapsed() > AGREE_WITHIN {
                    anomalies.add(
                        "process_disagrees_with_store",
                        format!(
                            "process {p}: {} shows {shown:?}, the store {truth:?}",
                            resident.ticket
                        ),
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

/// Waits until no process's outbox holds pending mail (or `within` passed).
async fn wait_for_outbox(http: &reqwest::Client, urls: &[String], within: Duration) {
    let _ = until(within, "the outbox is empty", || {
        let (http, urls) = (http.clone(), urls.to_vec());
        async move {
            for url in urls {
                if status(&http, &url).await?["mail_outbox"]["pending"].as_u64() != Some(0) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    })
    .await;
}
