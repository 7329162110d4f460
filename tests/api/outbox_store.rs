//! The mail outbox's contract, on each store directly: mail is queued only by
//! a committed batch, claimed once while held, never again once settled or
//! withdrawn; the figures count what is due; on Redis, abandoning an applied
//! batch takes its mail back and puts the reminders it withdrew back.

use chrono::{DateTime, Duration, FixedOffset, NaiveTime};
use vaxslot::domain::{
    Channel, DayPlan, Delivery, Dose, MailId, MailKind, MailPolicy, OutboxMail, Reservation,
    ReservationId, ReservationStatus, SlotPlan, SlotTime, TicketNumber, Vaccine, VenueDayKey,
    VenueId, parse_date,
};
use vaxslot::store::prelude::*;
use vaxslot::store::{
    AbandonedBatch, BatchKind, Decision, EmbeddedStore, MailClaimToken, RedisStore,
    ReservationBatch, Store,
};

use crate::helpers::RedisServer;

/// The one worker of most of these tests.
const WORKER: MailClaimToken = MailClaimToken(1);

fn key() -> VenueDayKey {
    VenueDayKey {
        venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
        date: parse_date("2030-07-07").unwrap(),
    }
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

/// Booked on 2030-07-01 09:00 for 2030-07-07: confirmed at once, reminded
/// on 2030-07-06 10:00.
const BOOKED_AT: &str = "2030-07-01T09:00:00+09:00";
const REMINDED_AT: &str = "2030-07-06T10:00:00+09:00";

fn reservation(ticket: u64) -> Reservation {
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
        created_at: at(BOOKED_AT),
        updated_at: at(BOOKED_AT),
        idempotency: None,
    }
}

fn policy() -> MailPolicy {
    MailPolicy {
        reminder_at: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
    }
}

fn batch(epoch: u64, sequence: u64, decisions: Vec<Decision>) -> ReservationBatch {
    let mut mail = Vec::new();
    let mut withdraw = Vec::new();
    for decision in &decisions {
        match decision {
            Decision::Created(r) => mail.extend(policy().on_booking(r, at(BOOKED_AT), false)),
            Decision::Updated { reservation, .. } => {
                mail.push(policy().on_cancel(reservation, &[], at(BOOKED_AT)));
                withdraw.push(MailId::reminder_of(reservation.id));
            }
        }
    }
    ReservationBatch {
        kind: BatchKind::Reservations,
        venue_day: key(),
        owner_epoch: epoch,
        sequence,
        decisions,
        audit: vec![],
        mail,
        withdraw,
        reminded: false,
        commit_by: None,
    }
}

/// The batch that queues the day's reminders of `booked`, due at `due`.
fn reminders(epoch: u64, sequence: u64, booked: &[&Reservation], due: &str) -> ReservationBatch {
    ReservationBatch {
        kind: BatchKind::Reminders,
        venue_day: key(),
        owner_epoch: epoch,
        sequence,
        decisions: vec![],
        audit: vec![],
        mail: booked
            .iter()
            .map(|r| policy().reminder(r, at(due)))
            .collect(),
        withdraw: vec![],
        reminded: true,
        commit_by: None,
    }
}

async fn owned_day(store: &dyn Store) -> u64 {
    let plan = DayPlan::new(
        Vaccine::Moderna,
        vec![SlotPlan {
            operator_hold: 0,
            time: SlotTime::parse("10:30").unwrap(),
            capacity: 10,
        }],
        None,
    )
    .unwrap();
    store.put_day_plan(key(), plan).await.unwrap();
    store.load_venue_day(key()).await.unwrap().owner_epoch
}

fn kinds(mails: &[OutboxMail]) -> Vec<(ReservationId, MailKind)> {
    let mut kinds: Vec<_> = mails
        .iter()
        .map(|m| (m.id.reservation_id, m.id.kind))
        .collect();
    kinds.sort_by_key(|(id, kind)| (*id, kind.as_str()));
    kinds
}

async fn the_outbox_claims_each_due_mail_once_until_settled(store: &dyn Store) {
    let epoch = owned_day(store).await;
    let (kept, cancelled) = (reservation(1), reservation(2));
    store
        .commit_reservations(batch(
            epoch,
            1,
            vec![
                Decision::Created(kept.clone()),
                Decision::Created(cancelled.clone()),
            ],
        ))
        .await
        .unwrap();
    // At the reminder moment the day's reminders are queued together, and
    // the day is marked (read without taking the day over).
    assert!(!store.day_reminded(key()).await.unwrap());
    store
        .commit_reservations(reminders(epoch, 2, &[&kept, &cancelled], REMINDED_AT))
        .await
        .unwrap();
    assert!(store.day_reminded(key()).await.unwrap());
    let mut cancel = cancelled.clone();
    cancel.status = ReservationStatus::Cancelled;
    store
        .commit_reservations(batch(
            epoch,
            3,
            vec![Decision::Updated {
                reservation: cancel,
                previous: cancelled.clone(),
            }],
        ))
        .await
        .unwrap();

    // On the day of booking: two confirmations and the cancellation are due;
    // the reminders wait for theirs.
    let now = at("2030-07-01T09:00:01+09:00");
    let figures = store.mail_outbox_figures(now).await.unwrap();
    assert_eq!(figures.pending, 3);
    assert_eq!(figures.oldest_due, Some(at(BOOKED_AT)));
    let claimed = store.claim_due_mail(now, 10, WORKER).await.unwrap();
    assert_eq!(kinds(&claimed), {
        let mut want = vec![
            (kept.id, MailKind::Confirmation),
            (cancelled.id, MailKind::Confirmation),
            (cancelled.id, MailKind::Cancellation),
        ];
        want.sort_by_key(|(id, kind)| (*id, kind.as_str()));
        want
    });
    // Held: nobody claims them again meanwhile.
    assert!(
        store
            .claim_due_mail(now, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    for mut mail in claimed {
        mail.delivery = Delivery::Delivered { at: now };
        assert!(store.settle_mail(mail, WORKER).await.unwrap());
    }
    assert_eq!(store.mail_outbox_figures(now).await.unwrap().pending, 0);

    // On the day before: the kept reservation's reminder only (the
    // cancelled one's was withdrawn with the cancellation).
    let day_before = at("2030-07-06T10:00:01+09:00");
    let claimed = store.claim_due_mail(day_before, 10, WORKER).await.unwrap();
    assert_eq!(kinds(&claimed), vec![(kept.id, MailKind::Reminder)]);
    assert_eq!(claimed[0].due_at, at(REMINDED_AT));
    assert!(store.load_venue_day(key()).await.unwrap().reminded);
    // A failed try: pending again, for later.
    let mut retry = claimed[0].clone();
    retry.delivery = Delivery::Pending {
        attempts: 1,
        next_at: day_before + Duration::seconds(60),
    };
    assert!(store.settle_mail(retry, WORKER).await.unwrap());
    let figures = store.mail_outbox_figures(day_before).await.unwrap();
    assert_eq!(
        (figures.pending, figures.oldest_due),
        (1, Some(at(REMINDED_AT)))
    );
    assert!(
        store
            .claim_due_mail(day_before, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    let later = day_before + Duration::seconds(61);
    let claimed = store.claim_due_mail(later, 10, WORKER).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(matches!(
        claimed[0].delivery,
        Delivery::Pending { attempts: 1, .. }
    ));
    // Failed for good: never claimed again.
    let mut failed = claimed[0].clone();
    failed.delivery = Delivery::Failed {
        at: later,
        reason: "smtp_550".into(),
    };
    assert!(store.settle_mail(failed.clone(), WORKER).await.unwrap());
    // A late settle by a worker whose lease ran out changes nothing.
    let mut stale = failed;
    stale.delivery = Delivery::Pending {
        attempts: 2,
        next_at: later,
    };
    assert!(!store.settle_mail(stale, WORKER).await.unwrap());
    let far = later + Duration::days(30);
    assert!(
        store
            .claim_due_mail(far, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.mail_outbox_figures(far).await.unwrap().pending, 0);
}

/// Booked after the reminder moment: its confirmation and its reminder are
/// both due at the same instant, and both are claimed.
async fn a_confirmation_and_a_reminder_due_together_are_both_claimed(store: &dyn Store) {
    let epoch = owned_day(store).await;
    let late = at("2030-07-06T12:00:00+09:00");
    let booked = reservation(3);
    let mut decided = batch(epoch, 1, vec![Decision::Created(booked.clone())]);
    // The day was reminded already: the booking is reminded at once.
    decided.mail = policy().on_booking(&booked, late, true);
    store.commit_reservations(decided).await.unwrap();
    assert_eq!(store.mail_outbox_figures(late).await.unwrap().pending, 2);
    let claimed = store.claim_due_mail(late, 10, WORKER).await.unwrap();
    let mut want = vec![
        (booked.id, MailKind::Confirmation),
        (booked.id, MailKind::Reminder),
    ];
    want.sort_by_key(|(id, kind)| (*id, kind.as_str()));
    assert_eq!(kinds(&claimed), want);
    assert!(claimed.iter().all(|m| m.due_at == late));
}

/// Opens the embedded store in `dir` once the last one there has let go of
/// the file (its writer thread ends after the store is dropped).
async fn reopen(dir: &std::path::Path) -> EmbeddedStore {
    for _ in 0..100 {
        if let Ok(store) = EmbeddedStore::open(dir) {
            return store;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the embedded store did not reopen");
}

#[tokio::test]
async fn the_outbox_contract_holds_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    the_outbox_claims_each_due_mail_once_until_settled(&store).await;
    // Reopened (the pending index is rebuilt from the log and the
    // settlements): what was settled stays settled.
    drop(store);
    let store = reopen(dir.path()).await;
    let far = at("2030-08-30T00:00:00+09:00");
    assert!(
        store
            .claim_due_mail(far, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.mail_outbox_figures(far).await.unwrap().pending, 0);

    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    a_confirmation_and_a_reminder_due_together_are_both_claimed(&store).await;
    // Claimed but not settled when the process ended: due again after a
    // restart, with a failed try's count kept.
    let claimed = store.claim_due_mail(far, 10, WORKER).await.unwrap();
    assert!(claimed.is_empty(), "still held by this process");
    let late = at("2030-07-06T12:00:00+09:00");
    drop(store);
    let store = reopen(dir.path()).await;
    let mut claimed = store.claim_due_mail(late, 10, WORKER).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut retry = claimed.pop().unwrap();
    retry.delivery = Delivery::Pending {
        attempts: 3,
        next_at: late + Duration::seconds(30),
    };
    assert!(store.settle_mail(retry.clone(), WORKER).await.unwrap());
    drop(store);
    let store = reopen(dir.path()).await;
    let again = store
        .claim_due_mail(late + Duration::seconds(31), 10, WORKER)
        .await
        .unwrap();
    let tried = again.iter().find(|m| m.id == retry.id).unwrap();
    assert!(matches!(
        tried.delivery,
        Delivery::Pending { attempts: 3, .. }
    ));
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn the_outbox_contract_holds_on_redis() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    the_outbox_claims_each_due_mail_once_until_settled(&store).await;
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    a_confirmation_and_a_reminder_due_together_are_both_claimed(&store).await;
}

#[tokio::test]
async fn on_redis_an_abandoned_batch_takes_its_mail_and_gives_back_its_withdrawn_reminders() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let epoch = owned_day(&store).await;
    let booked = reservation(1);
    let booking = batch(epoch, 1, vec![Decision::Created(booked.clone())]);
    let abandoned_booking = booking.to_abandon();
    store.commit_reservations(booking).await.unwrap();
    // The booking's outcome was unknown and it is abandoned: no mail stays.
    store.abandon_batch(abandoned_booking).await.unwrap();
    let far = at("2030-08-01T00:00:00+09:00");
    assert_eq!(store.mail_outbox_figures(far).await.unwrap().pending, 0);
    assert!(
        store
            .claim_due_mail(far, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );

    // Booked again (committed); the day's reminders are queued, but that
    // batch's outcome is unknown and it is abandoned: no reminder, and the
    // day is not marked reminded.
    store
        .commit_reservations(batch(epoch, 2, vec![Decision::Created(booked.clone())]))
        .await
        .unwrap();
    let sweep = reminders(epoch, 3, &[&booked], REMINDED_AT);
    let abandoned_sweep = sweep.to_abandon();
    store.commit_reservations(sweep).await.unwrap();
    store.abandon_batch(abandoned_sweep).await.unwrap();
    let reloaded = store.load_venue_day(key()).await.unwrap();
    assert!(!reloaded.reminded);
    let epoch = reloaded.owner_epoch;
    store
        .commit_reservations(reminders(epoch, 1, &[&booked], REMINDED_AT))
        .await
        .unwrap();
    // Then a cancel whose outcome is unknown is abandoned: the cancellation
    // mail goes, the reminder it withdrew comes back.
    let mut cancel = booked.clone();
    cancel.status = ReservationStatus::Cancelled;
    let cancelling = batch(
        epoch,
        2,
        vec![Decision::Updated {
            reservation: cancel,
            previous: booked.clone(),
        }],
    );
    let abandoned_cancel: AbandonedBatch = cancelling.to_abandon();
    store.commit_reservations(cancelling).await.unwrap();
    store.abandon_batch(abandoned_cancel).await.unwrap();
    let claimed = store.claim_due_mail(far, 10, WORKER).await.unwrap();
    let mut want = vec![
        (booked.id, MailKind::Confirmation),
        (booked.id, MailKind::Reminder),
    ];
    want.sort_by_key(|(id, kind)| (*id, kind.as_str()));
    assert_eq!(kinds(&claimed), want);
    let reminder = claimed
        .iter()
        .find(|m| m.id.kind == MailKind::Reminder)
        .unwrap();
    assert_eq!(reminder.due_at, at(REMINDED_AT));
    assert!(store.load_venue_day(key()).await.unwrap().reminded);
}

/// A worker paused past its lease (`first`) finds its claim taken by
/// another (`second`): it may not renew it before sending, nor record a
/// retry or a failure; the one that holds it does. But a delivery it made
/// before (its store did not answer past the lease, seen by the nemesis
/// with seed 8090) is recorded over the other claim, and the holder then
/// may not send it again. On Redis the lease runs by the claimers' clocks
/// (`now`), so it runs out here by claiming 31 s later; a store one process
/// owns has one worker, so there the token that is not the holder's stands
/// for a claim whose lease ran out.
async fn a_claim_lost_to_another_worker_sends_nothing_and_its_delivery_wins(
    store: &dyn Store,
    lease_runs_out: bool,
) {
    let (first, second) = (MailClaimToken(7), MailClaimToken(8));
    let epoch = owned_day(store).await;
    let booked = reservation(4);
    store
        .commit_reservations(batch(epoch, 1, vec![Decision::Created(booked.clone())]))
        .await
        .unwrap();
    let now = at("2030-07-01T09:00:01+09:00");
    let claimed = store.claim_due_mail(now, 10, first).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let mail = claimed[0].clone();
    assert!(store.hold_mail(&mail, first, now).await.unwrap());
    assert!(!store.hold_mail(&mail, second, now).await.unwrap());
    let holder = if lease_runs_out {
        // The first worker is paused past its renewed lease: the second claims it.
        let later = now + Duration::seconds(31);
        assert!(
            store
                .claim_due_mail(later - Duration::seconds(2), 10, second)
                .await
                .unwrap()
                .is_empty(),
            "held while the renewed lease runs"
        );
        let taken = store.claim_due_mail(later, 10, second).await.unwrap();
        assert_eq!(kinds(&taken), kinds(&claimed));
        assert!(
            !store.hold_mail(&mail, first, later).await.unwrap(),
            "the first worker must not send it now"
        );
        second
    } else {
        first
    };
    let stranger = if holder == first { second } else { first };
    let mut retry = mail.clone();
    retry.delivery = Delivery::Pending {
        attempts: 1,
        next_at: now + Duration::seconds(60),
    };
    assert!(
        !store.settle_mail(retry, stranger).await.unwrap(),
        "a claim that is not the holder's records no retry"
    );
    assert_eq!(store.mail_outbox_figures(now).await.unwrap().pending, 1);
    let mut delivered = mail.clone();
    delivered.delivery = Delivery::Delivered { at: now };
    assert!(
        store
            .settle_mail(delivered.clone(), stranger)
            .await
            .unwrap(),
        "a delivery is recorded whoever holds the mail now"
    );
    assert_eq!(store.mail_outbox_figures(now).await.unwrap().pending, 0);
    assert!(
        !store.hold_mail(&mail, holder, now).await.unwrap(),
        "the holder must not send a delivered mail again"
    );
    let far = now + Duration::days(30);
    let confirmation: Vec<_> = store
        .claim_due_mail(far, 10, stranger)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.id.kind == MailKind::Confirmation)
        .collect();
    assert!(
        confirmation.is_empty(),
        "delivered once, never claimed again"
    );
}

#[tokio::test]
async fn a_mail_claim_lost_to_another_worker_sends_nothing_and_its_delivery_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    a_claim_lost_to_another_worker_sends_nothing_and_its_delivery_wins(&store, false).await;
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    a_claim_lost_to_another_worker_sends_nothing_and_its_delivery_wins(&store, true).await;
}

/// What a failover could lose counts only once a replica holds it: a mail
/// claim (lost, another worker would claim and send the same mail while the
/// first sends it; seen by the nemesis) and its renewal. With a replica
/// asked for and none there, nothing is claimed or held, so nothing is sent
/// (the claim on the master alone runs out with its lease).
/// A Redis store with one booking's confirmation due, and a store on the
/// same server that asks for a replica (it has none).
async fn one_mail_due_on_redis(redis: &RedisServer) -> (RedisStore, RedisStore) {
    let plain = RedisStore::connect(&redis.url()).await.unwrap();
    let epoch = owned_day(&plain).await;
    plain
        .commit_reservations(batch(epoch, 1, vec![Decision::Created(reservation(5))]))
        .await
        .unwrap();
    (plain, redis.store_waiting_for_a_replica().await)
}

#[tokio::test]
async fn on_redis_a_mail_claim_counts_only_once_replicated() {
    let redis = RedisServer::start().await;
    let (plain, waiting) = one_mail_due_on_redis(&redis).await;
    let now = at("2030-07-01T09:00:01+09:00");
    assert!(
        waiting
            .claim_due_mail(now, 10, WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    // Once the master-only claim ran out, claimed where it counts; then a
    // renewal that no replica holds is refused.
    let later = now + Duration::seconds(31);
    let claimed = plain.claim_due_mail(later, 10, WORKER).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(!waiting.hold_mail(&claimed[0], WORKER, later).await.unwrap());
    assert!(plain.hold_mail(&claimed[0], WORKER, later).await.unwrap());
}

/// A settlement no replica acknowledged is not counted: a failover could
/// bring the claim back and the mail would be sent again after its lease.
/// The worker's try again (the master kept the write) finds it settled by
/// this claim, and a claim another worker holds is still refused.
#[tokio::test]
async fn on_redis_a_mail_settlement_counts_only_once_replicated() {
    let redis = RedisServer::start().await;
    let (plain, waiting) = one_mail_due_on_redis(&redis).await;
    let now = at("2030-07-01T09:00:01+09:00");
    let mut mail = plain
        .claim_due_mail(now, 10, WORKER)
        .await
        .unwrap()
        .remove(0);
    assert!(plain.hold_mail(&mail, WORKER, now).await.unwrap());
    mail.delivery = Delivery::Delivered { at: now };
    assert!(
        waiting.settle_mail(mail.clone(), WORKER).await.is_err(),
        "written on the master only: not yet known to count"
    );
    assert!(
        plain.settle_mail(mail.clone(), WORKER).await.unwrap(),
        "tried again: found settled by this claim"
    );
    assert!(
        plain
            .claim_due_mail(now + Duration::seconds(31), 10, WORKER)
            .await
            .unwrap()
            .is_empty(),
        "never due again"
    );
    let mut other = mail.clone();
    other.delivery = Delivery::Delivered {
        at: now + Duration::seconds(1),
    };
    assert!(
        !plain.settle_mail(other, MailClaimToken(2)).await.unwrap(),
        "another claim's settlement is refused"
    );
}
