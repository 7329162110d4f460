//! `vaxslot-loadtest`: the launch-day load generator and auditor.
//!
//! 1. sets up a scenario through the admin API (venue-days, N residents);
//! 2. measures the bare baseline: `GET /healthz` on the same server;
//! 3. logs the residents in as a herd;
//! 4. books, each request for a distinct resident, closed loop on C
//!    connections or open loop at a rate, optionally engaging the kill switch
//!    at time T;
//! 5. optionally runs the same herd against the flash-sale peer;
//! 6. reports requests/s by outcome, committed/s, latency percentiles, login
//!    rate, ratios to the baseline, the server's peak RSS;
//! 7. audits: every 201 is stored, nothing else is, used capacity equals the
//!    201 count, nothing was committed after the kill switch's PUT returned.
//!    Any audit failure exits non-zero.
//!
//! `--scenario launch` (or `--preset yokohama`) replaces steps 3–5 with the
//! launch scenario (`launch.rs`): open-loop arrivals at `--rate` for
//! `--duration-s` in launch-morning proportions, reported per endpoint.

mod client;
mod launch;
mod runners;
mod scenario;

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::client::Connection;
use crate::runners::{Call, Load, Sent};
use crate::scenario::{SLOTS_PER_DAY, Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "vaxslot-loadtest",
    about = "Launch-day load test and audit of a vaxslot server"
)]
struct Args {
    /// The server (http://HOST:PORT).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "VAXSLOT_ADMIN_KEY")]
    admin_key: String,
    /// Needed for --kill-switch-at-s.
    #[arg(long, env = "VAXSLOT_SRE_KEY")]
    sre_key: Option<String>,
    /// Distinct residents: each logs in once and books once.
    #[arg(long, default_value_t = 10_000)]
    residents: u64,
    /// Venue-days the bookings spread over (each with 20 slots).
    #[arg(long, default_value_t = 50)]
    venue_days: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Open loop at this many bookings/s (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Capacity as a share of the residents (below 1: some get slot_full).
    #[arg(long, default_value_t = 1.0)]
    capacity_factor: f64,
    /// Engage the kill switch this many seconds into the booking herd.
    #[arg(long)]
    kill_switch_at_s: Option<f64>,
    /// Seconds of GET /healthz for the bare baseline (0: skip).
    #[arg(long, default_value_t = 5.0)]
    baseline_s: f64,
    /// Seconds of bookings against an engaged kill switch, for the refusal rate (0: skip).
    #[arg(long, default_value_t = 0.0)]
    refusal_s: f64,
    /// The flash-sale peer (http://HOST:PORT) to run the same herd against.
    #[arg(long)]
    peer_url: Option<String>,
    /// The server's pid, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// First ticket number (default: a fresh range per run).
    #[arg(long)]
    first_ticket: Option<u64>,
    /// Skip the audit.
    #[arg(long)]
    no_audit: bool,
    /// After the audit, write what a later audit needs (the run's venue-days,
    /// date and every id answered 201) to this file, for `--audit-from`.
    #[arg(long)]
    audit_record: Option<std::path::PathBuf>,
    /// Only audit: read a file written by `--audit-record` and check the
    /// server at --url against it (every 201 stored, nothing else, used
    /// capacity exact). Run it against a restarted server, so that the audit
    /// reads what the store holds, not what the old process remembered.
    #[arg(long)]
    audit_from: Option<std::path::PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// `herd` (log everyone in, then one booking each) or `launch` (the
    /// launch-morning mix, open loop at --rate for --duration-s).
    #[arg(long, value_enum, default_value_t = ScenarioKind::Herd)]
    scenario: ScenarioKind,
    /// How long the launch scenario runs.
    #[arg(long, default_value_t = 30.0)]
    duration_s: f64,
    /// `Accept-Encoding` of the launch scenario's page, availability and
    /// venue loads (e.g. `br` or `gzip`), to measure compressed traffic.
    #[arg(long)]
    accept_encoding: Option<String>,
    /// A launch shaped like Yokohama's opening minute (33,000 accesses/s,
    /// 75,000 slots), scaled to a 2-core machine: sets `--scenario launch
    /// --duration-s 30 --venue-days 131 --residents 160000
    /// --capacity-factor 0.28` (47,160 places) and `--rate 40000` unless
    /// --rate is given; other flags as given.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ScenarioKind {
    Herd,
    Launch,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Yokohama,
}

impl Args {
    fn with_preset(mut self) -> Self {
        if self.preset == Some(Preset::Yokohama) {
            self.scenario = ScenarioKind::Launch;
            self.rate.get_or_insert(40_000.0);
            self.duration_s = 30.0;
            self.venue_days = 131;
            self.residents = 160_000;
            self.capacity_factor = 0.28;
        }
        self
    }
}

fn address_of(url: &str) -> anyhow::Result<SocketAddr> {
    let host_port = url
        .strip_prefix("http://")
        .context("only http:// URLs")?
        .trim_end_matches('/');
    host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {host_port}"))
}

fn progress(args: &Args, total: u64, what: &'static str) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

/// Peak VmRSS of `pid`, sampled every 200 ms while the run lasts.
fn watch_rss(pid: u32) -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(0));
    let watched = Arc::clone(&peak);
    tokio::spawn(async move {
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                watched.fetch_max(kib, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    peak
}

/// The string value of `"field":"…"` in a JSON answer, found without parsing
/// the whole document (our answers never escape these values).
fn json_str<'a>(body: &'a [u8], field: &str) -> Option<&'a str> {
    let needle = format!("\"{field}\":\"");
    let body = std::str::from_utf8(body).ok()?;
    let start = body.find(&needle)? + needle.len();
    let len = body[start..].find('"')?;
    Some(&body[start..start + len])
}

/// One booking's outcome.
struct Booking {
    sent_at: Instant,
    outcome: String,
    retry_after: bool,
    reservation_id: Option<String>,
    created_at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

struct BookingStats {
    latency_us: Histogram<u64>,
    bookings: Vec<Booking>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Records a latency in microseconds, clamped to the histogram's bounds.
fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    let _ = histogram.record(latency.as_micros().clamp(1, 60_000_000) as u64);
}

/// One request per resident, as asked on the command line.
fn herd(args: &Args, address: SocketAddr) -> Load {
    Load {
        address,
        connections: args.connections,
        total: args.residents,
        rate: args.rate,
    }
}

fn fold_booking(stats: &mut BookingStats, sent: Sent) {
    record_latency(&mut stats.latency_us, sent.latency);
    let booking = match sent.answer {
        Ok(answer) => {
            let body = &answer.body;
            let (outcome, reservation_id, created_at) = match answer.status {
                201 => (
                    "committed".to_owned(),
                    json_str(body, "reservation_id").map(str::to_owned),
                    json_str(body, "created_at")
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
                ),
                status => match json_str(body, "code") {
                    Some(code) => (code.to_owned(), None, None),
                    None => (format!("http_{status}"), None, None),
                },
            };
            Booking {
                sent_at: sent.sent_at,
                outcome,
                retry_after: answer.retry_after,
                reservation_id,
                created_at,
            }
        }
        Err(_) => Booking {
            sent_at: sent.sent_at,
            outcome: "transport_error".to_owned(),
            retry_after: false,
            reservation_id: None,
            created_at: None,
        },
    };
    stats.bookings.push(booking);
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The kill switch's PUT: when it returned, by the monotonic and the wall clock.
struct SwitchEngaged {
    returned_at: Instant,
    returned_wall: chrono::DateTime<chrono::Utc>,
    put_took: Duration,
}

async fn set_kill_switch(
    address: SocketAddr,
    key: &str,
    engaged: bool,
) -> anyhow::Result<SwitchEngaged> {
    let mut connection = Connection::new(address);
    let started = Instant::now();
    let answer = connection
        .send(
            Method::PUT,
            "/v1/admin/kill-switch",
            Some(key),
            Some(serde_json::to_vec(
                &json!({"engaged": engaged, "reason": "vaxslot-loadtest"}),
            )?),
        )
        .await?;
    let returned_at = Instant::now();
    if answer.status != 200 {
        bail!("kill switch PUT: {}", answer.status);
    }
    Ok(SwitchEngaged {
        returned_at,
        returned_wall: chrono::Utc::now(),
        put_took: returned_at - started,
    })
}

async fn store_kind(address: SocketAddr) -> String {
    let mut connection = Connection::new(address);
    match connection.send(Method::GET, "/readyz", None, None).await {
        Ok(answer) => serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["store"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into()),
        Err(_) => "unreachable".into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().with_preset();
    let address = address_of(&args.url)?;
    if let Some(path) = &args.audit_from {
        return audit_from_record(address, &args.admin_key, path).await;
    }
    if args.kill_switch_at_s.is_some() || args.refusal_s > 0.0 {
        args.sre_key
            .as_ref()
            .context("--sre-key is needed to engage the kill switch")?;
    }
    let run_id = format!("{:06x}", rand_u32() & 0xff_ffff);
    let first_ticket = args
        .first_ticket
        .unwrap_or(2_000_000_000 + u64::from(rand_u32() % 7_000) * 1_000_000);
    let capacity_per_slot = ((args.residents as f64 * args.capacity_factor)
        / (args.venue_days * SLOTS_PER_DAY) as f64)
        .ceil()
        .max(1.0) as u64;
    let date = (chrono::Utc::now() + chrono::Duration::days(9))
        .date_naive()
        .to_string();
    let scenario = Arc::new(Scenario {
        run_id: run_id.clone(),
        venue_days: args.venue_days,
        residents: args.residents,
        first_ticket,
        date,
        capacity_per_slot,
    });
    let rss_peak = args.server_pid.map(watch_rss);
    let store = store_kind(address).await;
    println!(
        "vaxslot-loadtest run {run_id}: {} ({store} store)",
        args.url
    );
    println!(
        "  {} residents, {} venue-days × {SLOTS_PER_DAY} slots × {capacity_per_slot} = {} places, {} connections, {}",
        args.residents,
        args.venue_days,
        scenario.capacity_total(),
        args.connections,
        match args.rate {
            Some(rate) => format!("open loop at {rate} bookings/s"),
            None => "closed loop".into(),
        }
    );

    let setup_started = Instant::now();
    scenario::set_up(address, &args.admin_key, &scenario).await?;
    println!("setup: {:.1} s", setup_started.elapsed().as_secs_f64());

    // The bare baseline: the same generator against the same server's /healthz.
    let baseline_rps = if args.baseline_s > 0.0 {
        let (count, elapsed) = runners::timed(
            address,
            args.connections,
            Duration::from_secs_f64(args.baseline_s),
            Arc::new(|| Call {
                method: Method::GET,
                path: "/healthz",
                authorization: None,
                body: None,
            }),
            200,
        )
        .await;
        let rps = per_second(count, elapsed);
        println!("baseline GET /healthz: {rps:.0} req/s");
        Some(rps)
    } else {
        None
    };

    if args.scenario == ScenarioKind::Launch {
        return launch_scenario(&args, address, scenario, baseline_rps).await;
    }

    // The login herd.
    let bar = progress(&args, args.residents, "login");
    let login_started = Instant::now();
    let login_scenario = Arc::clone(&scenario);
    let tokens = runners::run(
        Load {
            address,
            connections: args.connections,
            total: args.residents,
            rate: None,
        },
        &bar,
        Arc::new(move |i| Call {
            method: Method::POST,
            path: "/v1/sessions",
            authorization: None,
            body: Some(
                format!(
                    r#"{{"ticket_number":"{}","birth_date":"1960-01-01"}}"#,
                    login_scenario.ticket(i)
                )
                .into(),
            ),
        }),
        Vec::new,
        |tokens: &mut Vec<(u64, String)>, sent| {
            if let Ok(answer) = sent.answer
                && answer.status == 201
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&answer.body)
                && let Some(token) = v["token"].as_str()
            {
                tokens.push((sent.index, token.to_owned()));
            }
        },
    )
    .await;
    bar.finish_and_clear();
    let login_elapsed = login_started.elapsed();
    let mut by_resident = vec![HeaderValue::from_static(""); args.residents as usize];
    let mut logged_in = 0u64;
    for (index, token) in tokens.into_iter().flatten() {
        by_resident[index as usize] = client::bearer_header(&token);
        logged_in += 1;
    }
    println!(
        "logins: {logged_in} of {} in {:.1} s = {:.0}/s",
        args.residents,
        login_elapsed.as_secs_f64(),
        per_second(logged_in, login_elapsed)
    );
    if logged_in != args.residents {
        bail!("{} residents could not log in", args.residents - logged_in);
    }
    let tokens = Arc::new(by_resident);

    // The booking herd, with the kill switch at T if asked.
    let bar = progress(&args, args.residents, "book");
    let herd_started = Instant::now();
    let switch = args.kill_switch_at_s.map(|at| {
        let key = args.sre_key.clone().expect("checked above");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(at)).await;
            set_kill_switch(address, &key, true).await
        })
    });
    // Every booking's body, built before the timed phase.
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..args.residents)
            .map(|i| scenario.booking_body(i))
            .collect(),
    );
    let book_bodies = Arc::clone(&bodies);
    let book_tokens = Arc::clone(&tokens);
    let stats = runners::run(
        herd(&args, address),
        &bar,
        Arc::new(move |i| Call {
            method: Method::POST,
            path: "/v1/reservations",
            authorization: Some(book_tokens[i as usize].clone()),
            body: Some(book_bodies[i as usize].clone()),
        }),
        || BookingStats {
            latency_us: new_histogram(),
            bookings: Vec::new(),
        },
        fold_booking,
    )
    .await;
    let herd_elapsed = herd_started.elapsed();
    bar.finish_and_clear();
    let switch = match switch {
        Some(task) => Some(task.await?.context("engaging the kill switch")?),
        None => None,
    };

    let mut latency = new_histogram();
    let mut bookings = Vec::with_capacity(args.residents as usize);
    for worker in stats {
        latency.add(&worker.latency_us)?;
        bookings.extend(worker.bookings);
    }
    let mut by_outcome: BTreeMap<&str, u64> = BTreeMap::new();
    for booking in &bookings {
        *by_outcome.entry(&booking.outcome).or_default() += 1;
    }
    let committed = by_outcome.get("committed").copied().unwrap_or(0);
    println!(
        "bookings: {} in {:.2} s = {:.0} req/s; committed {committed} = {:.0}/s",
        bookings.len(),
        herd_elapsed.as_secs_f64(),
        per_second(bookings.len() as u64, herd_elapsed),
        per_second(committed, herd_elapsed)
    );
    for (outcome, count) in &by_outcome {
        println!(
            "  {outcome:<20} {count:>9}  {:>9.0}/s",
            per_second(*count, herd_elapsed)
        );
    }
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.90)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    if let Some(baseline) = baseline_rps {
        println!(
            "  committed/s ÷ healthz/s = {:.2}",
            per_second(committed, herd_elapsed) / baseline
        );
    }
    if let Some(switch) = &switch {
        let after: Vec<&Booking> = bookings
            .iter()
            .filter(|b| b.sent_at > switch.returned_at)
            .collect();
        let last = bookings
            .iter()
            .map(|b| b.sent_at)
            .max()
            .unwrap_or(switch.returned_at);
        let window = last.saturating_duration_since(switch.returned_at);
        println!(
            "kill switch: PUT returned {:.2} s into the herd (took {:.1} ms); {} bookings sent after it, {:.0}/s",
            (switch.returned_at - herd_started).as_secs_f64(),
            switch.put_took.as_secs_f64() * 1000.0,
            after.len(),
            per_second(after.len() as u64, window)
        );
    }

    // Refusals against an engaged switch: what a stop costs.
    let mut refusal_rps = None;
    if args.refusal_s > 0.0 {
        let key = args.sre_key.clone().expect("checked above");
        set_kill_switch(address, &key, true).await?;
        let refusal_tokens = Arc::clone(&tokens);
        let refusal_bodies = Arc::clone(&bodies);
        let (count, elapsed) = runners::timed(
            address,
            args.connections,
            Duration::from_secs_f64(args.refusal_s),
            Arc::new(move || Call {
                method: Method::POST,
                path: "/v1/reservations",
                authorization: Some(refusal_tokens[0].clone()),
                body: Some(refusal_bodies[0].clone()),
            }),
            503,
        )
        .await;
        set_kill_switch(address, &key, false).await?;
        let rps = per_second(count, elapsed);
        print!("kill-switch refusals: {rps:.0} req/s");
        if let Some(baseline) = baseline_rps {
            print!(" = {:.2} × healthz", rps / baseline);
        }
        println!();
        refusal_rps = Some(rps);
    }

    // The peer, same herd.
    if let Some(peer_url) = &args.peer_url {
        let peer = address_of(peer_url)?;
        let slots = args.venue_days * SLOTS_PER_DAY;
        let mut connection = Connection::new(peer);
        let answer = connection
            .send(
                Method::PUT,
                "/setup",
                None,
                Some(serde_json::to_vec(
                    &json!({"slots": slots, "capacity": capacity_per_slot}),
                )?),
            )
            .await?;
        if answer.status != 200 {
            bail!("peer setup: {}", answer.status);
        }
        let bar = progress(&args, args.residents, "peer");
        let started = Instant::now();
        let results = runners::run(
            herd(&args, peer),
            &bar,
            Arc::new(move |i| Call {
                method: Method::POST,
                path: "/book",
                authorization: None,
                body: Some(format!(r#"{{"slot":{},"resident":{i}}}"#, i % slots).into()),
            }),
            || (0u64, new_histogram()),
            |state: &mut (u64, Histogram<u64>), sent| {
                record_latency(&mut state.1, sent.latency);
                if matches!(&sent.answer, Ok(a) if a.status == 201) {
                    state.0 += 1;
                }
            },
        )
        .await;
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        let mut peer_latency = new_histogram();
        let mut peer_committed = 0;
        for (count, histogram) in results {
            peer_committed += count;
            peer_latency.add(&histogram)?;
        }
        let peer_rate = per_second(peer_committed, elapsed);
        println!(
            "peer (flash-sale, one Redis Lua call per booking): committed {peer_committed} = {peer_rate:.0}/s, p99 {:.2} ms",
            ms(peer_latency.value_at_quantile(0.99))
        );
        println!(
            "  vaxslot committed/s ÷ peer committed/s = {:.2}",
            per_second(committed, herd_elapsed) / peer_rate
        );
    }
    if let Some(peak) = &rss_peak {
        println!(
            "server peak RSS: {:.1} MiB",
            peak.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }
    let _ = refusal_rps;

    if args.no_audit {
        return Ok(());
    }
    let mut failures = Vec::new();
    let created: HashSet<String> = bookings
        .iter()
        .filter_map(|b| b.reservation_id.clone())
        .collect();
    if created.len() as u64 != committed {
        failures.push(format!(
            "{committed} answers 201 but {} distinct ids",
            created.len()
        ));
    }
    let transport_errors = by_outcome.get("transport_error").copied().unwrap_or(0);
    if transport_errors > 0 {
        failures.push(format!("{transport_errors} bookings got no answer"));
    }
    if let Some(switch) = &switch {
        for booking in bookings.iter().filter(|b| b.sent_at > switch.returned_at) {
            if booking.outcome != "booking_closed" || !booking.retry_after {
                failures.push(format!(
                    "a booking sent after the kill switch's PUT returned got {} (Retry-After: {})",
                    booking.outcome, booking.retry_after
                ));
                break;
            }
        }
        let late = bookings
            .iter()
            .filter_map(|b| b.created_at)
            .filter(|t| *t > switch.returned_wall)
            .count();
        if late > 0 {
            failures.push(format!(
                "{late} reservations were made after the kill switch's PUT returned"
            ));
        }
        // Open booking again for whoever runs next.
        set_kill_switch(address, args.sre_key.as_deref().expect("checked"), false).await?;
    }
    let also = if switch.is_some() {
        "; nothing committed or accepted after the kill switch's PUT returned"
    } else {
        ""
    };
    let outcome = ("answered 201", also);
    audit_run(
        &args, address, &scenario, &created, committed, failures, outcome,
    )
    .await
}

/// The audit after a run: the store against `created` (the reservations
/// that must stand; `committed` of them were answered so), plus the run's
/// own `failures`; writes the record for a later `--audit-from` when asked,
/// and says how it went (exit 1 on failure).
async fn audit_run(
    args: &Args,
    address: SocketAddr,
    scenario: &Scenario,
    created: &HashSet<String>,
    committed: u64,
    mut failures: Vec<String>,
    (standing, also): (&str, &str),
) -> anyhow::Result<()> {
    let findings = scenario::audit(address, &args.admin_key, scenario, created).await?;
    failures.extend(findings.failures(committed));
    if let Some(path) = &args.audit_record {
        let record = scenario::AuditRecord::of(scenario, created);
        std::fs::write(path, serde_json::to_vec(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = format!(
        "{} stored = {committed} {standing}; used capacity {}{also}",
        findings.stored, findings.used_capacity
    );
    say_audit("audit", &ok, &failures)
}

/// Prints an audit's outcome; exits 1 when anything failed.
fn say_audit(what: &str, ok: &str, failures: &[String]) -> anyhow::Result<()> {
    if failures.is_empty() {
        println!("{what}: OK: {ok}");
        return Ok(());
    }
    for failure in failures {
        eprintln!("{what} FAILED: {failure}");
    }
    std::process::exit(1);
}

/// The launch scenario, its report and its audit.
async fn launch_scenario(
    args: &Args,
    address: SocketAddr,
    scenario: Arc<Scenario>,
    baseline_rps: Option<f64>,
) -> anyhow::Result<()> {
    let rate = args
        .rate
        .context("the launch scenario needs --rate (requests/s) or --preset")?;
    let options = launch::LaunchOptions {
        address,
        rate,
        duration: Duration::from_secs_f64(args.duration_s),
        connections: args.connections,
        accept_encoding: args.accept_encoding.clone(),
    };
    println!(
        "launch scenario: {rate:.0} req/s for {:.0} s, open loop on {} connections; Accept-Encoding: {}",
        args.duration_s,
        args.connections,
        args.accept_encoding.as_deref().unwrap_or("(none)")
    );
    let report = launch::run(&options, Arc::clone(&scenario)).await;
    let elapsed = report.elapsed;
    let total: u64 = report.by_kind.values().map(|k| k.count()).sum();
    let bytes: u64 = report.by_kind.values().map(|k| k.bytes).sum();
    print!(
        "  sent {total} in {:.1} s = {:.0} req/s",
        elapsed.as_secs_f64(),
        per_second(total, elapsed)
    );
    if let Some(baseline) = baseline_rps {
        print!(" ({:.2} × healthz)", per_second(total, elapsed) / baseline);
    }
    println!(
        "; {:.1} MB/s of bodies received",
        bytes as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "  {:<30} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9}  outcomes",
        "request", "count", "req/s", "p50 ms", "p99 ms", "max ms", "B/answer"
    );
    for (kind, stats) in &report.by_kind {
        let count = stats.count();
        let outcomes: Vec<String> = stats
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        println!(
            "  {:<30} {count:>9} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>9.0}  {}",
            kind.label(),
            per_second(count, elapsed),
            ms(stats.latency_us.value_at_quantile(0.50)),
            ms(stats.latency_us.value_at_quantile(0.99)),
            ms(stats.latency_us.max()),
            stats.bytes as f64 / count.max(1) as f64,
            outcomes.join(", ")
        );
    }
    if args.no_audit {
        return Ok(());
    }
    let mut failures = Vec::new();
    let transport_errors: u64 = report
        .by_kind
        .values()
        .filter_map(|k| k.outcomes.get("transport_error"))
        .sum();
    if transport_errors > 0 {
        failures.push(format!("{transport_errors} requests got no answer"));
    }
    if report.unknown_cancels > 0 {
        failures.push(format!(
            "{} cancels got no answer (their reservations' state is unknown)",
            report.unknown_cancels
        ));
    }
    let committed = report.standing.len() as u64;
    let outcome = ("answered 201 and not cancelled", "");
    audit_run(
        args,
        address,
        &scenario,
        &report.standing,
        committed,
        failures,
        outcome,
    )
    .await
}

/// `--audit-from`: the audit of a run recorded by `--audit-record`, against
/// the server at `address` (a restarted one: what the store holds).
async fn audit_from_record(
    address: SocketAddr,
    staff_key: &str,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let record: scenario::AuditRecord = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an audit record", path.display()))?;
    let created: HashSet<String> = record.created.iter().cloned().collect();
    let committed = created.len() as u64;
    let findings = scenario::audit(address, staff_key, &record.scenario(), &created).await?;
    let ok = format!(
        "{} stored = {committed} answered 201; used capacity {}",
        findings.stored, findings.used_capacity
    );
    say_audit("audit after restart", &ok, &findings.failures(committed))
}

/// A little randomness for run ids, without another dependency.
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos.wrapping_mul(2_654_435_761) ^ std::process::id()
}
