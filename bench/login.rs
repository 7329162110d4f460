//! A login's work: the constant-time birth-date check and handle, then
//! issuing a token; and verifying a token on each later request.

use criterion::{Criterion, criterion_group, criterion_main};
use vaxslot::domain::{Resident, TicketNumber, parse_date};
use vaxslot::residents::{InMemoryResidents, Residents};
use vaxslot::tokens::TokenKey;

fn logins(c: &mut Criterion) {
    let key = TokenKey::from_secret("bench");
    let index = Residents::new(InMemoryResidents::new(key.clone()));
    let residents: Vec<Resident> = (0..100_000u64)
        .map(|n| Resident {
            ticket_number: TicketNumber::parse(&format!("{:010}", 1_311_480_000 + n)).unwrap(),
            birth_date: parse_date("1960-01-01").unwrap(),
            name: "負荷 試験".into(),
            email: None,
            phone: None,
            high_risk: false,
            history: vec![],
        })
        .collect();
    index.upsert_residents(residents);
    let ticket = TicketNumber::parse("1311480042").unwrap();
    let birth = parse_date("1960-01-01").unwrap();
    let now = chrono::Utc::now();
    let mut group = c.benchmark_group("login");
    group.bench_function("check_and_issue_token", |b| {
        b.iter(|| {
            let handle = index.login(&ticket, birth).expect("known resident");
            key.issue(&handle, now)
        })
    });
    let (token, _) = key.issue(&key.resident_handle(&ticket), now);
    group.bench_function("verify_token", |b| {
        b.iter(|| key.verify(&token, now).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, logins);
criterion_main!(benches);
