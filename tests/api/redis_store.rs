//! The Redis store's commit script, directly: a retried batch is a no-op, a
//! stale owner is fenced, the kill switch refuses, an abandoned batch is
//! reverted if it was applied and can never apply later if it was not.

use vaxslot::domain::{
    Dose, Reservation, ReservationId, SlotTime, TicketNumber, Vaccine, VenueDayKey, VenueId,
    parse_date,
};
use vaxslot::store::prelude::*;
use vaxslot::store::{
    AbandonError, AbandonedBatch, AuditEntry, CommitError, Coordination, Decision, KillSwitchState,
    RedisStore, ReservationBatch,
};

use crate::helpers::RedisServer;

fn key() -> VenueDayKey {
    VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    }
}

fn reservation(ticket: u64) -> Reservation {
    crate::helpers::booked_reservation(&key(), ticket, "10:30", Dose::FIRST)
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
        commit_by: None,
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

/// A batch of the test day to abandon: what it created, nothing else.
fn abandoned(owner_epoch: u64, sequence: u64, created: Vec<ReservationId>) -> AbandonedBatch {
    AbandonedBatch {
        venue_day: key(),
        owner_epoch,
        sequence,
        created,
        previous: vec![],
        audit: vec![],
        mail: vec![],
        withdrawn: vec![],
        reminded: false,
    }
}

/// A plain connection to `redis`, to read or change keys behind the store.
async fn raw_connection(redis: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The test day's keys in the store whose names end with `suffix`.
async fn day_keys(raw: &mut ::redis::aio::MultiplexedConnection, suffix: &str) -> Vec<String> {
    ::redis::cmd("KEYS")
        .arg(format!("vaxslot:*:day:nakano-sunplaza/2030-07-07:{suffix}"))
        .query_async(raw)
        .await
        .unwrap()
}

/// Puts the test's day (one slot of 10) and takes it over: the owner epoch.
async fn planned_day(store: &RedisStore) -> u64 {
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
    store.load_venue_day(key()).await.unwrap().owner_epoch
}

#[tokio::test]
async fn the_commit_script_is_idempotent_fenced_and_switch_checked() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let epoch = planned_day(&store).await;

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
    let fenced = store.abandon_batch(abandoned(epoch, 2, vec![])).await;
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
        .abandon_batch(abandoned(newer, 1, vec![applied.id]))
        .await
        .unwrap();
    assert_eq!(stored_ids(&store).await, vec![first.id]);
    // …and one that was not can never apply later.
    let late = reservation(5);
    store
        .abandon_batch(abandoned(newer, 2, vec![late.id]))
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

/// A batch whose deadline has passed by Redis's clock (a booking's dose
/// claim ended, or whoever forwarded it stopped waiting, while its owner was
/// paused) is refused and writes nothing; one within it commits; a retry of
/// a batch already applied is still a no-op, late or not.
#[tokio::test]
async fn the_commit_script_refuses_a_batch_past_its_deadline() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let epoch = planned_day(&store).await;
    let now = chrono::Utc::now();

    let mut late = batch(epoch, 1, vec![reservation(1)]);
    late.commit_by = Some(now - chrono::Duration::seconds(1));
    let refused = store.commit_reservations(late).await;
    assert!(
        matches!(refused, Err(CommitError::PastDeadline)),
        "{refused:?}"
    );
    assert!(stored_ids(&store).await.is_empty());

    let on_time_reservation = reservation(2);
    let mut on_time = batch(epoch, 1, vec![on_time_reservation.clone()]);
    on_time.commit_by = Some(now + chrono::Duration::seconds(30));
    store.commit_reservations(on_time).await.unwrap();
    assert_eq!(stored_ids(&store).await, vec![on_time_reservation.id]);

    let mut retried = batch(epoch, 1, vec![on_time_reservation.clone()]);
    retried.commit_by = Some(now - chrono::Duration::seconds(1));
    store.commit_reservations(retried).await.unwrap();
    assert_eq!(stored_ids(&store).await, vec![on_time_reservation.id]);
}

/// Taking a venue-day over counts only once the replicas hold the new owner
/// epoch: a failover that lost it would give the next loader the same epoch
/// as this owner, and both would commit. With a replica asked for and none
/// there, the load fails (and is retried) instead of serving on it.
#[tokio::test]
async fn a_takeover_counts_only_once_replicated() {
    let redis = RedisServer::start().await;
    let plain = RedisStore::connect(&redis.url()).await.unwrap();
    let epoch = planned_day(&plain).await;
    let waiting = redis.store_waiting_for_a_replica().await;
    let refused = waiting.load_venue_day(key()).await;
    assert!(
        matches!(refused, Err(vaxslot::store::StoreError::Unavailable(_))),
        "{:?}",
        refused.map(|day| day.owner_epoch)
    );
    // The epoch written on the master alone is behind whatever loads next.
    assert!(plain.load_venue_day(key()).await.unwrap().owner_epoch > epoch);
}

/// One change entry or record that cannot be read (a bug, a hand edit, a
/// record written by a newer release) is skipped by whoever follows the
/// change streams: what comes after it is still followed, instead of the
/// read failing, and failing again, for every process.
#[tokio::test]
async fn a_change_that_cannot_be_read_is_skipped_and_the_rest_followed() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let mut raw = raw_connection(&redis).await;
    let cursor = store.change_cursor().await.unwrap();
    let _: String = ::redis::cmd("XADD")
        .arg("vaxslot:{vaxslot:venues}:changes")
        .arg("*")
        .arg("put")
        .arg("{not a venue")
        .query_async(&mut raw)
        .await
        .unwrap();
    let venue = vaxslot::demo::venues().remove(0);
    store.put_venue(venue.clone()).await.unwrap();
    let epoch = planned_day(&store).await;
    let (good, bad) = (reservation(1), reservation(2));
    store
        .commit_reservations(batch(epoch, 1, vec![good.clone(), bad.clone()]))
        .await
        .unwrap();
    let hashes = day_keys(&mut raw, "reservations").await;
    let _: i64 = ::redis::cmd("HSET")
        .arg(&hashes[0])
        .arg(bad.id.to_string())
        .arg("{\"broken\":")
        .query_async(&mut raw)
        .await
        .unwrap();

    let read = store
        .read_changes(&cursor)
        .await
        .expect("an unreadable change does not fail the read");
    let venues: Vec<String> = read
        .changes
        .iter()
        .filter_map(|change| match change {
            vaxslot::store::Change::Venue(v) => Some(v.id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        venues,
        vec![venue.id.to_string()],
        "the good venue after the bad one"
    );
    let followed: Vec<ReservationId> = read
        .changes
        .iter()
        .flat_map(|change| match change {
            vaxslot::store::Change::Reservations { stored, .. } => {
                stored.iter().map(|r| r.id).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        followed,
        vec![good.id],
        "the readable reservation of the batch"
    );
    // Read past: the next read starts after the bad entry.
    let again = store.read_changes(&read.cursor).await.unwrap();
    assert!(again.changes.is_empty());
}

/// A batch that a follower read from a master which then died before its
/// replica copied it: the promoted replica never applied it, so its owner,
/// unsure of the outcome, abandons a batch the store does not hold. The
/// followers must still forget what they read of it (seen by the nemesis: a
/// process showing a day full where the store held places free).
#[tokio::test]
async fn an_abandoned_batch_the_store_lost_is_still_forgotten_by_followers() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let mut raw = raw_connection(&redis).await;
    let epoch = planned_day(&store).await;
    let cursor = store.change_cursor().await.unwrap();
    let lost = reservation(1);
    store
        .commit_reservations(batch(epoch, 1, vec![lost.clone()]))
        .await
        .unwrap();
    let followed = store.read_changes(&cursor).await.unwrap();
    assert!(
        followed.changes.iter().any(|change| matches!(
            change,
            vaxslot::store::Change::Reservations { stored, owner_epoch, .. }
                if stored.iter().any(|r| r.id == lost.id) && *owner_epoch == Some(epoch)
        )),
        "the follower read the batch, and the owner epoch it was committed under"
    );
    // The failover: the new master holds neither the batch nor its sequence.
    for suffix in ["reservations", "applied"] {
        for key in day_keys(&mut raw, suffix).await {
            let _: i64 = ::redis::cmd("DEL")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    }

    store
        .abandon_batch(abandoned(epoch, 1, vec![lost.id]))
        .await
        .unwrap();
    let after = store.read_changes(&followed.cursor).await.unwrap();
    let forgotten: Vec<(ReservationId, Option<u64>)> = after
        .changes
        .iter()
        .flat_map(|change| match change {
            vaxslot::store::Change::Reverted {
                forgotten,
                owner_epoch,
                ..
            } => forgotten.iter().map(|id| (*id, *owner_epoch)).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        forgotten,
        vec![(lost.id, Some(epoch))],
        "followers are told to forget it, under the owner's epoch"
    );

    // The same while another process took the day over meanwhile (the
    // owner's lease lapsed in the outage): its abandonment is fenced, and
    // followers still learn what the store holds.
    let lost_again = reservation(2);
    store
        .commit_reservations(batch(epoch, 2, vec![lost_again.clone()]))
        .await
        .unwrap();
    let followed = store.read_changes(&after.cursor).await.unwrap();
    let hash = day_keys(&mut raw, "reservations").await;
    let _: i64 = ::redis::cmd("HDEL")
        .arg(&hash[0])
        .arg(lost_again.id.to_string())
        .query_async(&mut raw)
        .await
        .unwrap();
    store.load_venue_day(key()).await.unwrap();
    let fenced = store
        .abandon_batch(abandoned(epoch, 2, vec![lost_again.id]))
        .await;
    assert!(matches!(fenced, Err(AbandonError::Fenced)));
    let after = store.read_changes(&followed.cursor).await.unwrap();
    assert!(
        after.changes.iter().any(|change| matches!(
            change,
            vaxslot::store::Change::Reverted { forgotten, owner_epoch: None, .. }
                if forgotten == &vec![lost_again.id]
        )),
        "followers are told to forget it though the day has another owner \
         (under no epoch: the fenced abandonment changed nothing)"
    );
}

/// A keyed refusal is kept for every process only where the resident's
/// shared dose record names nothing the key's own booking could be: a claim
/// whose lease runs answers "in flight", a recorded dose its day (for the
/// caller to check), and once the caller checked, the refusal is kept and
/// is the answer from then on.
#[tokio::test]
async fn a_keyed_refusal_is_kept_only_where_the_dose_record_names_nothing() {
    use vaxslot::store::{RefusalKept, RefusalToKeep, SharedDoseClaim};
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let ticket = TicketNumber::parse("0000000042").unwrap();
    let refusal = |dose: Option<Dose>, unless_dose_recorded: bool| RefusalToKeep {
        ticket: &ticket,
        idempotency_key: "retry-me",
        value: "first refusal",
        window: std::time::Duration::from_secs(60),
        dose,
        unless_dose_recorded,
    };
    let claim = SharedDoseClaim {
        ticket,
        dose: Dose::FIRST,
        id: 1,
        day: key(),
        idempotency_key: None,
        prior: None,
    };
    store.claim_dose(&claim, None).await.unwrap();
    for dose in [Some(Dose::FIRST), None] {
        assert_eq!(
            store.remember_refusal(refusal(dose, true)).await.unwrap(),
            RefusalKept::DoseInFlight
        );
    }
    // Booked: the dose and its day, for the caller to check.
    store
        .end_dose_claim(&claim, Some(ReservationId::random()))
        .await
        .unwrap();
    for dose in [Some(Dose::FIRST), None] {
        assert_eq!(
            store.remember_refusal(refusal(dose, true)).await.unwrap(),
            RefusalKept::DoseRecorded(vec![(Dose::FIRST, key())])
        );
    }
    // A claim that started after the caller's check: still nothing kept.
    let second = Some(Dose::new(2).unwrap());
    let claim_2 = SharedDoseClaim {
        ticket,
        dose: Dose::new(2).unwrap(),
        id: 2,
        day: key(),
        idempotency_key: None,
        prior: None,
    };
    store.claim_dose(&claim_2, None).await.unwrap();
    for dose in [second, None] {
        assert_eq!(
            store.remember_refusal(refusal(dose, false)).await.unwrap(),
            RefusalKept::DoseInFlight
        );
    }
    store.end_dose_claim(&claim_2, None).await.unwrap();
    // Another dose's record is not this booking's concern: kept, and then
    // the answer whatever is asked.
    assert_eq!(
        store.remember_refusal(refusal(second, true)).await.unwrap(),
        RefusalKept::Now
    );
    assert_eq!(
        store
            .remember_refusal(refusal(Some(Dose::FIRST), false))
            .await
            .unwrap(),
        RefusalKept::Before("first refusal".into())
    );
}
