//! Decisions per second of one venue-day, in memory: book then undo, so the
//! day never fills and every iteration does the same work.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vaxslot::domain::{
    BookingRequest, Channel, DayPlan, Dose, SlotPlan, SlotTime, TicketNumber, Vaccine, VenueDay,
    VenueDayKey, VenueId, parse_date,
};

fn decisions(c: &mut Criterion) {
    let key = VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    };
    // The mass venue's day: 20 slots of 25.
    let slots = (0..20u16)
        .map(|i| SlotPlan {
            operator_hold: 0,
            time: SlotTime::parse(&format!("{:02}:{:02}", 10 + i / 4, (i % 4) * 15)).unwrap(),
            capacity: 25,
        })
        .collect();
    let plan = DayPlan::new(Vaccine::Moderna, slots, None).unwrap();
    let mut day = VenueDay::restore(key, Some(plan), vec![]);
    let today = parse_date("2030-07-01").unwrap();
    let request = BookingRequest {
        ticket_number: TicketNumber::parse("1311480001").unwrap(),
        time: SlotTime::parse("10:30").unwrap(),
        dose: Dose::FIRST,
        access_code: None,
        channel: Channel::Web,
        now: chrono::Utc::now().fixed_offset(),
        idempotency: None,
        commit_by: None,
    };
    let mut group = c.benchmark_group("venue_day");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide_booking_then_undo", |b| {
        b.iter(|| {
            let reservation = day.decide_booking(&request, today).unwrap();
            day.undo_booking(reservation.id);
        })
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
