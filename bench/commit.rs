//! One batch commit to the embedded store, by batch size: what group commit
//! buys (one fsync for the whole batch).

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vaxslot::domain::{
    Channel, Dose, Reservation, ReservationId, ReservationStatus, SlotTime, TicketNumber, Vaccine,
    VenueDayKey, VenueId, parse_date,
};
use vaxslot::store::{EmbeddedStore, ReservationBatch, Store};

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

fn commits(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(runtime.block_on(async { EmbeddedStore::open(dir.path()).unwrap() }));
    let key = VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    };
    let mut group = c.benchmark_group("embedded_commit");
    group.sample_size(20);
    for size in [1u64, 16, 128] {
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.to_async(&runtime).iter(|| {
                let store = Arc::clone(&store);
                let batch = ReservationBatch {
                    venue_day: key.clone(),
                    owner_epoch: 0,
                    sequence: 0,
                    reservations: (0..size).map(|n| reservation(&key, n)).collect(),
                };
                async move { store.commit_reservations(batch).await.unwrap() }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, commits);
criterion_main!(benches);
