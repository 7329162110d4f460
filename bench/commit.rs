//! One batch commit per store, by batch size: what group commit buys (one
//! fsync for the whole batch).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vaxslot::domain::{
    Channel, Dose, Reservation, ReservationId, ReservationStatus, SlotTime, TicketNumber, Vaccine,
    VenueDayKey, VenueId, parse_date,
};
use vaxslot::store::{Decision, EmbeddedStore, RedisStore, ReservationBatch, Store};

fn reservation(key: &VenueDayKey, n: u64) -> Reservation {
    let now = chrono::Utc::now().fixed_offset();
    Reservation {
        id: ReservationId::random(),
        ticket_number: TicketNumber::parse(&format!("{:010}", n % 10_000_000_000)).unwrap(),
        venue_id: key.venue_id.clone(),
        date: key.date,
        time: SlotTime::parse("10:30").unwrap(),
        dose: Dose::FIRST,
        vaccine: Vaccine::Moderna,
        status: ReservationStatus::Booked,
        channel: Channel::Web,
        created_at: now,
        updated_at: now,
        idempotency: None,
    }
}

/// Commits batches of 1, 16 and 128 reservations of one venue-day.
fn bench_store(
    c: &mut Criterion,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) {
    let key = VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    };
    // Take ownership (the fencing epoch) as an actor would.
    let owner_epoch = runtime
        .block_on(store.load_venue_day(key.clone()))
        .unwrap()
        .owner_epoch;
    let sequence = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for size in [1u64, 16, 128] {
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(runtime).iter(|| {
                let store = Arc::clone(&store);
                let batch = ReservationBatch {
                    kind: vaxslot::store::BatchKind::Reservations,
                    venue_day: key.clone(),
                    owner_epoch,
                    sequence: sequence.fetch_add(1, Ordering::Relaxed) + 1,
                    decisions: (0..size)
                        .map(|n| Decision::Created(reservation(&key, n)))
                        .collect(),
                    audit: vec![],
                    mail: vec![],
                    withdraw: vec![],
                    reminded: false,
                    commit_by: None,
                };
                async move { store.commit_reservations(batch).await.unwrap() }
            })
        });
    }
    group.finish();
}

fn commits(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> =
        Arc::new(runtime.block_on(async { EmbeddedStore::open(dir.path()).unwrap() }));
    bench_store(c, "embedded_commit", &runtime, embedded);

    // Redis with AOF and fsync before every reply, when redis-server is installed.
    let Some(mut redis) = start_redis(dir.path()) else {
        eprintln!("redis-server not found: skipping redis_commit");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let store: Arc<dyn Store> = Arc::new(runtime.block_on(RedisStore::connect(&url)).unwrap());
    bench_store(c, "redis_commit", &runtime, store);
    let _ = redis.0.kill();
}

/// A throwaway redis-server on a free port (AOF, `appendfsync always`).
fn start_redis(dir: &std::path::Path) -> Option<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", "always", "--save", ""])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

criterion_group!(benches, commits);
criterion_main!(benches);
