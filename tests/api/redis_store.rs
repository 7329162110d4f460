//! The Redis store's commit script, directly: a retried batch is a no-op, a
//! stale owner is fenced, the kill switch refuses, an abandoned batch is
//! reverted if it was applied and can never apply later if it was not.

use vaxslot::domain::{
    Channel, Dose, Reservation, ReservationId, ReservationStatus, SlotTime, TicketNumber, Vaccine,
    VenueDayKey, VenueId, parse_date,
};
use vaxslot::store::{
    AbandonError, AbandonedBatch, AuditEntry, CommitError, Decision, KillSwitchState, RedisStore,
    ReservationBatch, Store,
};

use crate::helpers::RedisServer;

fn key() -> VenueDayKey {
    VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    }
}

fn reservation(ticket: u64) -> Reservation {
    let now = chrono::Utc::now().fixed_offset();
    Reservation {
        id: ReservationId::random(),
        ticket_number: TicketNumber::parse(&format!("{ticket:010}")).unwrap(),
        venue_id: key().venue_id,
        date: key().date,
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

fn batch(owner_epoch: u64, sequence: u64, reservations: Vec<Reservation>) -> ReservationBatch {
    ReservationBatch {
        kind: vaxslot::store::BatchKind::Reservations,
        venue_day: key(),
        owner_epoch,
        sequence,
        decisions: reservations.into_iter().map(Decision::Created).collect(),
        audit: vec![],
        mail: vec![],
        withdraw: vec![],
        reminded: false,
    }
}

async fn stored_ids(store: &RedisStore) -> Vec<ReservationId> {
    let mut ids: Vec<ReservationId> = store
        .load_reservations()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_commit_script_is_idempotent_fenced_and_switch_checked() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    store
        .put_day_plan(
            key(),
            vaxslot::domain::DayPlan::new(
                Vaccine::Moderna,
                vec![vaxslot::domain::SlotPlan {
                    operator_hold: 0,
                    time: SlotTime::parse("10:30").unwrap(),
                    capacity: 10,
                }],
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let epoch = store.load_venue_day(key()).await.unwrap().owner_epoch;

    // A retry of the same batch (same epoch and sequence) changes nothing.
    let first = reservation(1);
    store
        .commit_reservations(batch(epoch, 1, vec![first.clone()]))
        .await
        .unwrap();
    store
        .commit_reservations(batch(epoch, 1, vec![first.clone(), reservation(2)]))
        .await
        .unwrap();
    assert_eq!(stored_ids(&store).await, vec![first.id]);

    // Another owner loads the day: the first owner's epoch is stale.
    let newer = store.load_venue_day(key()).await.unwrap().owner_epoch;
    assert!(newer > epoch);
    let stale = store
        .commit_reservations(batch(epoch, 2, vec![reservation(3)]))
        .await;
    assert!(
        matches!(stale, Err(CommitError::Fenced)),
        "stale epoch fenced"
    );
    assert_eq!(stored_ids(&store).await, vec![first.id]);
    // So is abandoning one of its batches: the old owner must stop.
    let fenced = store
        .abandon_batch(AbandonedBatch {
            venue_day: key(),
            owner_epoch: epoch,
            sequence: 2,
            created: vec![],
            previous: vec![],
            audit: vec![],
            mail: vec![],
            withdrawn: vec![],
            reminded: false,
        })
        .await;
    assert!(
        matches!(fenced, Err(AbandonError::Fenced)),
        "a stale owner's abandonment is fenced, not 'unavailable'"
    );

    // An uncertain batch that was applied is reverted by abandoning it…
    let applied = reservation(4);
    store
        .commit_reservations(batch(newer, 1, vec![applied.clone()]))
        .await
        .unwrap();
    store
        .abandon_batch(AbandonedBatch {
            venue_day: key(),
            owner_epoch: newer,
            sequence: 1,
            created: vec![applied.id],
            previous: vec![],
            audit: vec![],
            mail: vec![],
            withdrawn: vec![],
            reminded: false,
        })
        .await
        .unwrap();
    assert_eq!(stored_ids(&store).await, vec![first.id]);
    // …and one that was not can never apply later.
    let late = reservation(5);
    store
        .abandon_batch(AbandonedBatch {
            venue_day: key(),
            owner_epoch: newer,
            sequence: 2,
            created: vec![late.id],
            previous: vec![],
            audit: vec![],
            mail: vec![],
            withdrawn: vec![],
            reminded: false,
        })
        .await
        .unwrap();
    store
        .commit_reservations(batch(newer, 2, vec![late]))
        .await
        .unwrap();
    assert_eq!(
        stored_ids(&store).await,
        vec![first.id],
        "a late delivery is a no-op"
    );

    // With the kill switch engaged, nothing commits.
    let audit = AuditEntry::new(
        vaxslot::domain::Actor::Env(vaxslot::domain::Role::Sre),
        vaxslot::domain::Role::Sre,
        "kill_switch.set",
        vaxslot::store::AuditTarget::default(),
        "200 ok".into(),
    );
    let engaged = KillSwitchState {
        engaged: true,
        ..KillSwitchState::default()
    };
    store.set_kill_switch(engaged, audit).await.unwrap();
    let refused = store
        .commit_reservations(batch(newer, 3, vec![reservation(6)]))
        .await;
    assert!(matches!(refused, Err(CommitError::KillSwitchEngaged)));
    assert_eq!(stored_ids(&store).await, vec![first.id]);
    assert!(store.load_kill_switch().await.unwrap().engaged);
}
