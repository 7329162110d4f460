//! The delivery worker: claims due mail from the outbox, sends it, and
//! records in the store what became of each. Runs beside the HTTP server,
//! never on the booking path: a slow or absent SMTP server delays mail only.
//!
//! Exactly once, as far as SMTP allows: a mail is marked delivered in the
//! store right after the server accepted it, so a restart does not repeat
//! it; a crash between the server's `250` and that mark repeats that one
//! mail, with the same `Message-ID` (made from the mail's id), so the
//! resident's mail program can tell. A worker that dies holding claimed mail
//! lets go of it after `MAIL_LEASE`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use futures::StreamExt;
use lettre::AsyncTransport;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};

use super::{MailContext, Mailer, ReservationView, SMTP_TIMEOUT};
use crate::actors::Registry;
use crate::catalog::Catalog;
use crate::domain::{Delivery, MailKind, OutboxMail, Venue, VenueDayKey, one_line};
use crate::residents::Residents;
use crate::store::{MAIL_LEASE, MailClaimToken, Store};
use crate::tasks::{Place, Shutdown, Tasks};
use crate::telemetry;

/// How often the worker looks for due mail when the last look found little.
pub const MAIL_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Most mails being sent at once (and SMTP connections kept open).
pub const MAIL_SENDS_IN_FLIGHT_MAX: usize = 8;
/// Most mails claimed at once: what `MAIL_SENDS_IN_FLIGHT_MAX` sends get
/// through within one `MAIL_LEASE` even when each takes the whole
/// `SMTP_TIMEOUT` (16). A larger batch waits past its lease behind a slow
/// server, and another worker claims its tail (each mail's claim is
/// renewed right before its send, so that tail is not sent twice, only
/// claimed back and forth).
pub const MAIL_CLAIM_BATCH_MAX: usize =
    MAIL_SENDS_IN_FLIGHT_MAX * (MAIL_LEASE.as_secs() / SMTP_TIMEOUT.as_secs()) as usize;
const _: () = assert!(
    SMTP_TIMEOUT.as_secs() < MAIL_LEASE.as_secs(),
    "a mail's lease must outlast one send, renewed right before it"
);
const _: () = assert!(MAIL_CLAIM_BATCH_MAX >= MAIL_SENDS_IN_FLIGHT_MAX);
const _: () = assert!(
    crate::tasks::TASK_STOP_MAX.as_secs() > SMTP_TIMEOUT.as_secs(),
    "a stopping process waits for a send under way, so that it is recorded"
);
/// The first wait before recording what became of a mail again when the
/// store did not answer (a failover); it doubles to `SETTLE_RETRY_MAX`.
const SETTLE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries to record a mail: how late at most
/// the sender records a delivery once the store answers again.
const SETTLE_RETRY_MAX: Duration = Duration::from_millis(250);
/// How long a delivered mail's sender keeps trying to record the delivery
/// while the store does not answer, past the claim's lease: unrecorded,
/// another worker would claim it and send it again. Meanwhile this worker
/// claims nothing; past this, it lets go (a store away this long is an
/// outage the SRE is already handling) and the mail may go out twice.
pub const MAIL_DELIVERY_RECORD_MAX: Duration = Duration::from_secs(300);
/// How long a worker that met the store not answering (or that starts)
/// waits, once the store answers, before claiming, beyond the store's
/// `call_time_max`: the time a sender that delivered during the outage has
/// to record its deliveries (its call under way fails within
/// `call_time_max`, and it tries again within `SETTLE_RETRY_MAX`), so that
/// their leases, run out meanwhile, do not make the mail due again here.
/// Seen by the nemesis (seed 8090): five confirmations sent twice after a
/// master stayed away past the lease. A sender cut off alone (the others
/// saw no outage) can still be overtaken: its mail then goes out twice,
/// with the same `Message-ID`.
pub const MAIL_CLAIM_GRACE_AFTER_OUTAGE: Duration = Duration::from_secs(1);
const _: () = assert!(
    SETTLE_RETRY_MAX.as_millis() * 4 <= MAIL_CLAIM_GRACE_AFTER_OUTAGE.as_millis(),
    "a sender records its delivery well within the others' grace"
);
const _: () = assert!(MAIL_DELIVERY_RECORD_MAX.as_secs() > MAIL_LEASE.as_secs());
/// The wait after a mail's first failed try; it doubles up to `--mail-retry-max-s`.
pub const MAIL_RETRY_FIRST: Duration = Duration::from_secs(1);
/// A mail that still fails this long after it was due is given up (`gave_up`).
pub const MAIL_GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Longest wait between two probes of an unreachable server: how late at
/// most the outbox notices that it is back.
pub const MAIL_PROBE_PAUSE_MAX: Duration = Duration::from_secs(30);
/// How often the scheduler looks for tomorrow's venue-days whose reminder
/// moment has passed: how late at most a day's reminders are queued.
pub const REMINDER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the outbox's figures are read for the metrics and the status.
const FIGURES_INTERVAL: Duration = Duration::from_secs(1);

/// The outbox's figures as last read, for `/v1/admin/status`.
#[derive(Default)]
pub struct OutboxGauge {
    pub pending: AtomicU64,
    pub oldest_s: AtomicU64,
}

/// Starts the worker, the reminder scheduler and the figures' upkeep on
/// the System thread. Once the process stops, the worker finishes the
/// sends under way and records them, and sends nothing more: mail it
/// claimed but did not send is sent by the next claim after its lease.
pub fn start(
    mailer: Mailer,
    store: Arc<dyn Store>,
    residents: Residents,
    catalog: Arc<Catalog>,
    registry: Arc<Registry>,
    gauge: Arc<OutboxGauge>,
    tasks: &Tasks,
) {
    let worker = Arc::new(Worker::new(mailer, store, residents, catalog));
    let (figures, reminders) = (Arc::clone(&worker), Arc::clone(&worker));
    tasks.spawn_until_asked("send mail", Place::System, move |shutdown| async move {
        worker.run(shutdown).await;
    });
    tasks.spawn(
        "read the outbox's figures",
        Place::System,
        move || async move {
            figures.keep_figures(&gauge).await;
        },
    );
    tasks.spawn("queue reminders", Place::System, move || async move {
        reminders.keep_reminding(&registry).await;
    });
}

/// How often a send under way counts the time the SMTP server has been
/// silent: a gap between two counts longer than two of these was a stop of
/// the process (SIGSTOP, a paused VM), and counts as two.
const SILENCE_TICK: Duration = Duration::from_millis(100);

/// `send`'s outcome, or `None` once the SMTP server has said nothing for
/// `SMTP_TIMEOUT` while this process ran. Time the process spent stopped
/// does not count: the server may have answered meanwhile, and a mail it
/// took but this worker took for unanswered would be sent again (seen by
/// the nemesis: a sender stopped during a send woke past its deadline, or
/// just after it, and put the mails back).
async fn while_the_server_answers<T>(send: impl std::future::Future<Output = T>) -> Option<T> {
    let mut send = std::pin::pin!(send);
    let mut ticks = tokio::time::interval(SILENCE_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent = Duration::ZERO;
    let mut counted = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            out = &mut send => return Some(out),
            now = ticks.tick() => {
                silent += now.duration_since(counted).min(SILENCE_TICK * 2);
                counted = now;
                if silent >= SMTP_TIMEOUT {
                    return None;
                }
            }
        }
    }
}

struct Worker {
    mailer: Mailer,
    store: Arc<dyn Store>,
    residents: Residents,
    catalog: Arc<Catalog>,
    /// The store did not answer the worker since its last claim: before the
    /// next, it waits for the store, then `MAIL_CLAIM_GRACE_AFTER_OUTAGE`.
    store_away: AtomicBool,
}

/// Why a try did not deliver: a code for the record and the metrics, never
/// text from the mail or the server's free text.
enum Failure {
    /// Worth another try (the server said `4xx`, or could not be reached).
    Temporary(String),
    /// Never worth another (`5xx`, no address).
    Permanent(String),
    /// The server could not be reached at all (connection, timeout): worth
    /// another try, and a sign to stop trying the rest for a while.
    Unreachable(String),
}

/// Whether a try got an answer from the server.
enum Reach {
    Reached,
    Unreachable,
}

/// The wait before try `attempts + 1`: `MAIL_RETRY_FIRST` doubled per failure
/// up to `max`, then a random point in its upper half (jitter, so that
/// mail that failed together does not retry together).
pub fn retry_delay(attempts: u32, max: Duration, jitter: f64) -> Duration {
    let doubled = MAIL_RETRY_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(20));
    let capped = doubled.min(max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A message, or that message's permanent failure if building it panics:
/// one record that cannot be made into a mail (whatever a library does with
/// it) stops that mail alone, never the worker and every mail behind it.
fn unless_it_panics(build: impl FnOnce() -> Result<Message, Failure>) -> Result<Message, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .unwrap_or_else(|_| Err(Failure::Permanent("unbuildable".to_owned())))
}

/// Claimed mail grouped by resident, each group in the order a resident
/// expects it: by due time, then confirmation, cancellation, reminder.
fn by_resident(mut claimed: Vec<OutboxMail>) -> Vec<Vec<OutboxMail>> {
    let rank = |kind: MailKind| MailKind::ALL.iter().position(|k| *k == kind);
    claimed.sort_by(|a, b| {
        (a.ticket_number, a.due_at, rank(a.id.kind)).cmp(&(
            b.ticket_number,
            b.due_at,
            rank(b.id.kind),
        ))
    });
    let mut groups: Vec<Vec<OutboxMail>> = Vec::new();
    for mail in claimed {
        match groups.last_mut() {
            Some(group) if group[0].ticket_number == mail.ticket_number => group.push(mail),
            _ => groups.push(vec![mail]),
        }
    }
    groups
}

impl Worker {
    fn new(
        mailer: Mailer,
        store: Arc<dyn Store>,
        residents: Residents,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            mailer,
            store,
            residents,
            catalog,
            // A worker started during an outage (a restart) waits its grace
            // too before its first claim.
            store_away: AtomicBool::new(true),
        }
    }

    /// Looks at the outbox until the process stops.
    async fn run(&self, mut shutdown: Shutdown) {
        let mut unreachable_pause = Duration::ZERO;
        while !shutdown.is_requested() {
            let wait = self.round(&mut unreachable_pause, &shutdown).await;
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.requested() => {}
                }
            }
        }
    }

    /// One look at the outbox: claims the due mail and sends it. Answers
    /// how long to wait before the next look.
    ///
    /// While the SMTP server cannot be reached, one mail at a time probes it
    /// (`unreachable_pause`, longer each time) instead of the whole outbox
    /// failing once per retry: a long outage costs no CPU and writes
    /// nothing. After the store did not answer, the look only waits for it
    /// to answer, and the next claims after `MAIL_CLAIM_GRACE_AFTER_OUTAGE`.
    async fn round(&self, unreachable_pause: &mut Duration, shutdown: &Shutdown) -> Duration {
        let now = crate::clock::now();
        if self.store_away.load(Ordering::Relaxed) {
            return match self.store.mail_outbox_figures(now).await {
                Ok(_) => {
                    self.store_away.store(false, Ordering::Relaxed);
                    self.claim_grace()
                }
                Err(_) => MAIL_POLL_INTERVAL,
            };
        }
        let limit = if unreachable_pause.is_zero() {
            MAIL_CLAIM_BATCH_MAX
        } else {
            1
        };
        let token = MailClaimToken::random();
        let claimed = match self.store.claim_due_mail(now, limit, token).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "mail outbox not read; trying again");
                self.store_away.store(true, Ordering::Relaxed);
                return MAIL_POLL_INTERVAL;
            }
        };
        let full = claimed.len() == MAIL_CLAIM_BATCH_MAX;
        let (reached, unreachable) = self.send_claimed(claimed, token, shutdown).await;
        if unreachable && !reached {
            let most = self.mailer.settings.retry_max.min(MAIL_PROBE_PAUSE_MAX);
            *unreachable_pause = (*unreachable_pause * 2).clamp(MAIL_POLL_INTERVAL, most);
            return *unreachable_pause;
        }
        *unreachable_pause = Duration::ZERO;
        if full {
            Duration::ZERO
        } else {
            MAIL_POLL_INTERVAL
        }
    }

    /// Sends mail claimed under `token`: one resident's in order (a
    /// confirmation before the reminder queued with it), different
    /// residents' at once. Each mail's claim is renewed right before its
    /// send; a mail whose claim was lost (this worker was paused past the
    /// lease, and another claimed it) is left to that one; once the process
    /// is stopping, the mails not begun are left to their lease. Answers
    /// whether the server was reached, and whether it was unreachable.
    async fn send_claimed(
        &self,
        claimed: Vec<OutboxMail>,
        token: MailClaimToken,
        shutdown: &Shutdown,
    ) -> (bool, bool) {
        let reached = AtomicBool::new(false);
        let unreachable = AtomicBool::new(false);
        futures::stream::iter(by_resident(claimed))
            .for_each_concurrent(MAIL_SENDS_IN_FLIGHT_MAX, |mails| {
                let (reached, unreachable) = (&reached, &unreachable);
                async move {
                    for mail in mails {
                        if shutdown.is_requested() {
                            break;
                        }
                        let held_at = std::time::Instant::now();
                        match self.store.hold_mail(&mail, token, crate::clock::now()).await {
                            Ok(true) => {}
                            Ok(false) => {
                                metrics::counter!(telemetry::MAIL_CLAIMS_LOST_TOTAL, "when" => "before_send")
                                    .increment(1);
                                tracing::info!("a claimed mail was taken by another worker; not sent here");
                                continue;
                            }
                            Err(error) => {
                                // Not known to be ours: its lease decides.
                                self.store_away.store(true, Ordering::Relaxed);
                                tracing::warn!(error = %error, "a claimed mail's lease not renewed; not sent now");
                                continue;
                            }
                        }
                        let (settled, reach) = self.deliver(mail).await;
                        match reach {
                            Reach::Reached => reached.store(true, Ordering::Relaxed),
                            Reach::Unreachable => unreachable.store(true, Ordering::Relaxed),
                        }
                        match self.settle(settled, token, held_at).await {
                            Ok(true) => {}
                            Ok(false) => {
                                // Paused past the lease during the send
                                // itself: the other worker's try counts.
                                metrics::counter!(telemetry::MAIL_CLAIMS_LOST_TOTAL, "when" => "after_send")
                                    .increment(1);
                                tracing::warn!("a mail's claim was lost during its send; its delivery is recorded by the worker that holds it");
                            }
                            Err(error) => {
                                // Still claimed when its lease ended (for a
                                // delivery, `MAIL_DELIVERY_RECORD_MAX`
                                // after it): sent again (with the same
                                // Message-ID).
                                tracing::warn!(error = %error, "a mail's delivery was not recorded");
                            }
                        }
                    }
                }
            })
            .await;
        (reached.into_inner(), unreachable.into_inner())
    }

    /// Records what became of a mail under `token`, trying again while the
    /// store does not answer (a failover takes seconds): for a mail not
    /// delivered, while the claim's lease, renewed at `held_at`, runs (then
    /// the next claim tries it); for a delivered one, past it, up to
    /// `MAIL_DELIVERY_RECORD_MAX` (the store records a delivery even when
    /// another worker claimed the mail since, and that one does not send it).
    async fn settle(
        &self,
        settled: OutboxMail,
        token: MailClaimToken,
        held_at: std::time::Instant,
    ) -> Result<bool, crate::store::StoreError> {
        let tries_for = match settled.delivery {
            Delivery::Delivered { .. } => MAIL_DELIVERY_RECORD_MAX,
            Delivery::Pending { .. } | Delivery::Failed { .. } | Delivery::Withdrawn => MAIL_LEASE,
        };
        let mut pause = SETTLE_RETRY_FIRST;
        loop {
            match self.store.settle_mail(settled.clone(), token).await {
                Err(error) if held_at.elapsed() + pause < tries_for => {
                    self.store_away.store(true, Ordering::Relaxed);
                    tracing::info!(error = %error, "what became of a mail not recorded yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(SETTLE_RETRY_MAX);
                }
                answer => {
                    if answer.is_err() {
                        self.store_away.store(true, Ordering::Relaxed);
                    }
                    return answer;
                }
            }
        }
    }

    /// The wait before claiming once the store answers again (see
    /// `MAIL_CLAIM_GRACE_AFTER_OUTAGE`).
    fn claim_grace(&self) -> Duration {
        self.store.call_time_max() + MAIL_CLAIM_GRACE_AFTER_OUTAGE
    }

    /// One try of `mail`; returns it with what became of it.
    async fn deliver(&self, mut mail: OutboxMail) -> (OutboxMail, Reach) {
        let Delivery::Pending { attempts, .. } = mail.delivery else {
            return (mail, Reach::Reached);
        };
        let kind = mail.id.kind.as_str();
        let outcome = self.send(&mail).await;
        let reach = match &outcome {
            Err(Failure::Unreachable(_)) => Reach::Unreachable,
            _ => Reach::Reached,
        };
        let now = crate::clock::now();
        mail.delivery = match outcome {
            Ok(()) => {
                metrics::counter!(telemetry::MAIL_SENT_TOTAL, "kind" => kind).increment(1);
                Delivery::Delivered { at: now }
            }
            Err(Failure::Temporary(reason) | Failure::Unreachable(reason))
                if now - mail.due_at < MAIL_GIVE_UP_AFTER =>
            {
                metrics::counter!(telemetry::MAIL_FAILURES_TOTAL, "kind" => kind, "outcome" => "retry")
                    .increment(1);
                let attempts = attempts + 1;
                let wait = retry_delay(attempts, self.mailer.settings.retry_max, rand::random());
                tracing::info!(kind, reason = %reason, attempts, wait_s = wait.as_secs_f64(), "mail not sent; trying again later");
                Delivery::Pending {
                    attempts,
                    next_at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                }
            }
            Err(Failure::Temporary(_) | Failure::Unreachable(_)) => {
                self.failed(kind, "gave_up", now)
            }
            Err(Failure::Permanent(reason)) => self.failed(kind, &reason, now),
        };
        (mail, reach)
    }

    fn failed(&self, kind: &'static str, reason: &str, now: DateTime<FixedOffset>) -> Delivery {
        metrics::counter!(telemetry::MAIL_FAILURES_TOTAL, "kind" => kind, "outcome" => "failed")
            .increment(1);
        tracing::warn!(kind, reason, "mail not sent, and it will not be");
        Delivery::Failed {
            at: now,
            reason: reason.to_owned(),
        }
    }

    async fn send(&self, mail: &OutboxMail) -> Result<(), Failure> {
        let message = unless_it_panics(|| self.message(mail))?;
        match while_the_server_answers(self.mailer.transport.send(message)).await {
            None => Err(Failure::Unreachable("timeout".into())),
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => {
                let code = error.status().map(|c| c.to_string());
                Err(match code {
                    Some(code) if error.is_permanent() => {
                        Failure::Permanent(format!("smtp_{code}"))
                    }
                    Some(code) => Failure::Temporary(format!("smtp_{code}")),
                    None if error.is_timeout() => Failure::Unreachable("timeout".into()),
                    None => Failure::Unreachable("connection".into()),
                })
            }
        }
    }

    /// The message, from the resident and venues as they are now.
    fn message(&self, mail: &OutboxMail) -> Result<Message, Failure> {
        let permanent = |reason: &str| Failure::Permanent(reason.to_owned());
        // Not known here yet: with several processes, a booking can reach
        // the outbox before this process has followed the import or the
        // venue it names. Tried again later (and given up after a day).
        let not_known_yet = |reason: &str| Failure::Temporary(reason.to_owned());
        let resident = self
            .residents
            .resident(&mail.ticket_number)
            .ok_or_else(|| not_known_yet("no_resident"))?;
        let address = resident
            .email
            .as_deref()
            .ok_or_else(|| permanent("no_address"))?;
        // On one line, whenever it was stored (a line break in a name made
        // the message builder panic, and with it every later mail).
        let to = Mailbox::new(
            Some(one_line(&resident.name).into_owned()),
            address.parse().map_err(|_| permanent("invalid_address"))?,
        );
        let venues: Vec<Arc<Venue>> = mail
            .reservations
            .iter()
            .map(|r| {
                self.catalog
                    .venue(&r.venue_id)
                    .ok_or_else(|| not_known_yet("unknown_venue"))
            })
            .collect::<Result<_, _>>()?;
        let views: Vec<ReservationView<'_>> = mail
            .reservations
            .iter()
            .zip(&venues)
            .map(|(reservation, venue)| ReservationView { reservation, venue })
            .collect();
        let named = views
            .iter()
            .find(|v| v.reservation.id == mail.id.reservation_id)
            .or(views.first())
            .ok_or_else(|| permanent("no_reservation"))?;
        let settings = &self.mailer.settings;
        let context = MailContext {
            name: &resident.name,
            site_url: &settings.site_url,
            call_centre_phone: &settings.call_centre_phone,
        };
        let (subject, body) = self
            .mailer
            .templates
            .render(mail.id.kind, &context, named, &views);
        Message::builder()
            .from(self.mailer.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{}>",
                mail.id, self.mailer.message_id_domain
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|_| permanent("unbuildable"))
    }

    /// Asks each of tomorrow's venue-days, once its reminder moment has
    /// passed, to queue its reminders (its actor does, in one commit, and
    /// marks the day, so a day is reminded once whatever restarts; this
    /// process asks each day until its own actor has answered once, or the
    /// store says it is reminded: a day owned by another process is asked
    /// again, so it is reminded here if its owner dies first).
    async fn keep_reminding(&self, registry: &Registry) {
        let policy = self.mailer.settings.policy();
        let mut asked: HashSet<VenueDayKey> = HashSet::new();
        let mut left_to_owner: HashSet<VenueDayKey> = HashSet::new();
        let mut asked_for = crate::clock::today();
        loop {
            let now = crate::clock::now();
            let tomorrow = now.date_naive() + chrono::Duration::days(1);
            if asked_for != tomorrow {
                asked.clear();
                left_to_owner.clear();
                asked_for = tomorrow;
            }
            if policy.reminders_due(tomorrow, now) {
                for key in self.catalog.days_on(tomorrow) {
                    if asked.contains(&key) {
                        continue;
                    }
                    // Reminded already (by this or another process): done,
                    // without starting (or taking over) the day's actor.
                    if self.store.day_reminded(key.clone()).await.unwrap_or(false) {
                        asked.insert(key);
                        continue;
                    }
                    match registry.queue_reminders(&key, policy, now).await {
                        Ok(None) => {
                            if left_to_owner.insert(key.clone()) {
                                tracing::info!(venue_day = %key, "reminders left to the venue-day's owner");
                            }
                        }
                        Ok(Some(queued)) => {
                            if queued > 0 {
                                tracing::info!(venue_day = %key, queued, "reminders queued");
                            }
                            asked.insert(key);
                        }
                        Err(error) => {
                            tracing::warn!(venue_day = %key, error = %error, "reminders not queued yet; trying again");
                        }
                    }
                }
            }
            tokio::time::sleep(REMINDER_CHECK_INTERVAL).await;
        }
    }

    /// Reads the outbox's figures every second into the gauges.
    async fn keep_figures(&self, gauge: &OutboxGauge) {
        loop {
            let now = crate::clock::now();
            match self.store.mail_outbox_figures(now).await {
                Ok(figures) => {
                    let oldest_s = figures
                        .oldest_due
                        .map_or(0, |due| (now - due).num_seconds().max(0).unsigned_abs());
                    gauge.pending.store(figures.pending, Ordering::Relaxed);
                    gauge.oldest_s.store(oldest_s, Ordering::Relaxed);
                    #[allow(clippy::cast_precision_loss)]
                    {
                        metrics::gauge!(telemetry::MAIL_OUTBOX_PENDING).set(figures.pending as f64);
                        metrics::gauge!(telemetry::MAIL_OUTBOX_OLDEST_SECONDS).set(oldest_s as f64);
                    }
                }
                Err(error) => tracing::warn!(error = %error, "mail outbox figures not read"),
            }
            tokio::time::sleep(FIGURES_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Channel, DayPlan, Dose, MailId, MailPolicy, Reservation, ReservationId, ReservationStatus,
        Resident, SlotPlan, SlotTime, TicketNumber, Vaccine, parse_date,
    };
    use crate::residents::InMemoryResidents;
    use crate::store::{BatchKind, Decision, EmbeddedStore, ReservationBatch};

    /// A worker on an embedded store holding one booking's confirmation,
    /// mailing to an "SMTP server" that is only a listener: whoever
    /// connects to it is seen, and never answered.
    struct Fixture {
        worker: Worker,
        /// The worker's store, to inject faults.
        flaky: Arc<crate::store::flaky::FlakyStore<EmbeddedStore>>,
        listener: std::net::TcpListener,
        now: DateTime<FixedOffset>,
        _dir: tempfile::TempDir,
    }

    /// `name`: the resident's, as stored; `None`: a resident not known here.
    async fn fixture(name: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(crate::store::flaky::FlakyStore::new(
            EmbeddedStore::open(dir.path()).unwrap(),
        ));
        let store: Arc<dyn Store> = Arc::clone(&flaky) as Arc<dyn Store>;
        let venue = crate::demo::venues().remove(0);
        let key = VenueDayKey {
            venue_id: venue.id.clone(),
            date: parse_date("2030-07-07").unwrap(),
        };
        let time = SlotTime::parse("10:30").unwrap();
        let plan = DayPlan::new(
            Vaccine::Moderna,
            vec![SlotPlan {
                time,
                capacity: 5,
                operator_hold: 0,
            }],
            None,
        )
        .unwrap();
        store.put_day_plan(key.clone(), plan).await.unwrap();
        let epoch = store.load_venue_day(key.clone()).await.unwrap().owner_epoch;
        let now = DateTime::parse_from_rfc3339("2030-07-01T09:00:00+09:00").unwrap();
        let ticket = TicketNumber::parse("1311480001").unwrap();
        let booked = Reservation {
            id: ReservationId::random(),
            ticket_number: ticket,
            venue_id: key.venue_id.clone(),
            date: key.date,
            time,
            dose: Dose::FIRST,
            vaccine: Vaccine::Moderna,
            status: ReservationStatus::Booked,
            channel: Channel::Web,
            created_at: now,
            updated_at: now,
            idempotency: None,
        };
        let policy = MailPolicy {
            reminder_at: chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        };
        let mail = policy.on_booking(&booked, now, false);
        store
            .commit_reservations(ReservationBatch {
                kind: BatchKind::Reservations,
                venue_day: key,
                owner_epoch: epoch,
                sequence: 1,
                decisions: vec![Decision::Created(booked)],
                audit: vec![],
                mail,
                withdraw: vec![],
                reminded: false,
                commit_by: None,
            })
            .await
            .unwrap();
        let residents = Residents::new(InMemoryResidents::new(crate::tokens::TokenKey::random()));
        if let Some(name) = name {
            residents.upsert_residents(vec![Resident {
                ticket_number: ticket,
                birth_date: parse_date("1950-04-01").unwrap(),
                name: name.into(),
                email: Some("taro@example.jp".into()),
                phone: None,
                high_risk: false,
                history: vec![],
            }]);
        }
        let catalog = Arc::new(Catalog::default());
        catalog.put_venue(venue);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mailer = Mailer::build(super::super::MailSettings {
            smtp_url: format!("smtp://{}", listener.local_addr().unwrap()),
            from: "vaccine@city.example.jp".into(),
            reminder_at: policy.reminder_at,
            templates: None,
            retry_max: Duration::from_secs(300),
            site_url: "https://vaccine.example.jp/".into(),
            call_centre_phone: "0120-000-000".into(),
        })
        .unwrap();
        Fixture {
            worker: Worker::new(mailer, store, residents, catalog),
            flaky,
            listener,
            now,
            _dir: dir,
        }
    }

    impl Fixture {
        /// The due mail, claimed under `token` at the fixture's moment.
        async fn claim(&self, token: MailClaimToken) -> Vec<OutboxMail> {
            self.worker
                .store
                .claim_due_mail(self.now, MAIL_CLAIM_BATCH_MAX, token)
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_worker_whose_claim_was_taken_sends_nothing_and_records_nothing() {
        let fixture = fixture(Some("中野 太郎")).await;
        let store = &fixture.worker.store;
        let claimed = fixture.claim(MailClaimToken(1)).await;
        assert_eq!(claimed.len(), 1);
        // This worker's claim (token 2) is not the one that holds the mail:
        // as after a pause past its lease, when another worker claimed it.
        let (reached, unreachable) = fixture
            .worker
            .send_claimed(claimed, MailClaimToken(2), &Shutdown::fixed(false))
            .await;
        assert!(!reached && !unreachable);
        assert!(
            fixture.listener.accept().is_err(),
            "the SMTP server was contacted for a mail another worker holds"
        );
        assert_eq!(
            store
                .mail_outbox_figures(fixture.now)
                .await
                .unwrap()
                .pending,
            1
        );
    }

    /// A server that takes the connection and then says nothing (here: a
    /// listener nobody accepts from, the kernel completing the handshake)
    /// holds a send no longer than `SMTP_TIMEOUT`; lettre bounds only the
    /// connect, and the worker waited for ever.
    #[tokio::test]
    async fn a_send_the_server_never_answers_gives_up_after_the_smtp_timeout() {
        let fixture = fixture(Some("中野 太郎")).await;
        let claimed = fixture.claim(MailClaimToken(1)).await;
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        let sent = tokio::time::timeout(SMTP_TIMEOUT * 2, fixture.worker.send(&claimed[0]))
            .await
            .expect("the send ended by itself");
        assert!(
            matches!(&sent, Err(Failure::Unreachable(reason)) if reason == "timeout"),
            "a silent server is unreachable"
        );
        assert!(started.elapsed() >= SMTP_TIMEOUT, "not before the timeout");
    }

    /// Time the process spent stopped does not count toward a send's
    /// timeout, whether the stop ended long after the deadline or just after
    /// it (here: the clock jumps, as after a SIGSTOP, to a moment past and
    /// then to a moment just short of the deadline's end); the answer that
    /// came meanwhile counts. A server silent while the process runs ends
    /// the send.
    #[tokio::test]
    async fn a_send_outlives_a_stop_of_the_process_but_not_a_silent_server() {
        tokio::time::pause();
        for stopped in [
            SMTP_TIMEOUT + Duration::from_secs(5),
            SMTP_TIMEOUT - Duration::from_millis(50),
        ] {
            let (answer, answered) = tokio::sync::oneshot::channel::<()>();
            let send = tokio::spawn(while_the_server_answers(answered));
            tokio::task::yield_now().await;
            // Stopped: the clock jumps; then a second of running.
            tokio::time::advance(stopped).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            answer.send(()).unwrap();
            assert!(send.await.unwrap().is_some(), "stopped for {stopped:?}");
        }
        // A server that says nothing while the process runs.
        let started = tokio::time::Instant::now();
        let silent = while_the_server_answers(std::future::pending::<()>());
        assert!(silent.await.is_none());
        assert!(started.elapsed() >= SMTP_TIMEOUT);
    }

    /// Once the process is stopping, claimed mail not begun is left to its
    /// lease: the next claim sends it, once.
    #[tokio::test]
    async fn a_stopping_worker_sends_no_mail_it_has_not_begun() {
        let fixture = fixture(Some("中野 太郎")).await;
        let claimed = fixture.claim(MailClaimToken(1)).await;
        assert_eq!(claimed.len(), 1);
        let (reached, _) = fixture
            .worker
            .send_claimed(claimed, MailClaimToken(1), &Shutdown::fixed(true))
            .await;
        assert!(!reached);
        assert!(
            fixture.listener.accept().is_err(),
            "the SMTP server was contacted by a worker that was stopping"
        );
        let figures = fixture.worker.store.mail_outbox_figures(fixture.now).await;
        assert_eq!(figures.unwrap().pending, 1, "still to send");
    }

    /// A delivery the store did not record at first (a failover) is
    /// recorded on a later try within the claim's lease: unrecorded, the
    /// mail would be sent again once the lease ended (seen by the nemesis:
    /// every mail in flight at a master's failure, twice).
    #[tokio::test]
    async fn a_delivery_the_store_did_not_record_at_first_is_recorded_on_a_later_try() {
        let fixture = fixture(Some("中野 太郎")).await;
        let store = &fixture.worker.store;
        let token = MailClaimToken(1);
        let claimed = fixture.claim(token).await;
        let mut delivered = claimed[0].clone();
        delivered.delivery = Delivery::Delivered { at: fixture.now };
        fixture
            .flaky
            .failing_settles
            .store(3, std::sync::atomic::Ordering::SeqCst);
        let recorded = fixture
            .worker
            .settle(delivered, token, std::time::Instant::now())
            .await;
        assert!(matches!(recorded, Ok(true)), "{recorded:?}");
        let later = fixture.now + chrono::Duration::hours(1);
        assert!(
            store
                .claim_due_mail(later, 10, MailClaimToken(2))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The store answers again only after the claim's lease ran out (seen
    /// by the nemesis with seed 8090: a master away past it, and five
    /// confirmations sent twice): a delivery is still recorded, so no
    /// worker sends it again; a retry is left to the next claim.
    #[tokio::test]
    async fn a_delivery_is_recorded_even_when_the_store_answers_only_after_the_lease() {
        let fixture = fixture(Some("中野 太郎")).await;
        let token = MailClaimToken(1);
        let claimed = fixture.claim(token).await;
        fixture.worker.store_away.store(false, Ordering::Relaxed);
        let held_long_ago = std::time::Instant::now()
            .checked_sub(MAIL_LEASE)
            .expect("the machine is up longer than a lease");
        let mut retry = claimed[0].clone();
        retry.delivery = Delivery::Pending {
            attempts: 1,
            next_at: fixture.now,
        };
        fixture
            .flaky
            .failing_settles
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let left = fixture.worker.settle(retry, token, held_long_ago).await;
        assert!(left.is_err(), "a retry is left to its lease: {left:?}");
        let mut delivered = claimed[0].clone();
        delivered.delivery = Delivery::Delivered { at: fixture.now };
        fixture
            .flaky
            .failing_settles
            .store(3, std::sync::atomic::Ordering::SeqCst);
        let recorded = fixture.worker.settle(delivered, token, held_long_ago).await;
        assert!(matches!(recorded, Ok(true)), "{recorded:?}");
        assert!(fixture.worker.store_away.load(Ordering::Relaxed));
        let later = fixture.now + chrono::Duration::hours(1);
        assert!(
            fixture
                .worker
                .store
                .claim_due_mail(later, 10, MailClaimToken(2))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// After the store did not answer, the worker claims nothing until it
    /// answers again and a grace has passed: the time for a sender that
    /// delivered meanwhile to record it (above), before its lease, run out
    /// during the outage, makes the mail due here.
    #[tokio::test]
    async fn after_the_store_was_away_the_worker_waits_a_grace_before_claiming() {
        let fixture = fixture(Some("中野 太郎")).await;
        fixture
            .flaky
            .failing_claims
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let mut unreachable_pause = Duration::ZERO;
        assert_eq!(
            fixture
                .worker
                .round(&mut unreachable_pause, &Shutdown::fixed(false))
                .await,
            MAIL_CLAIM_GRACE_AFTER_OUTAGE,
            "a worker that starts waits the grace first (it may start in an outage)"
        );
        assert_eq!(
            fixture
                .worker
                .round(&mut unreachable_pause, &Shutdown::fixed(false))
                .await,
            MAIL_POLL_INTERVAL,
            "the store did not answer"
        );
        assert_eq!(
            fixture
                .worker
                .round(&mut unreachable_pause, &Shutdown::fixed(false))
                .await,
            MAIL_CLAIM_GRACE_AFTER_OUTAGE,
            "the store answers again: a grace first"
        );
        assert_eq!(
            fixture.claim(MailClaimToken(9)).await.len(),
            1,
            "nothing claimed by the worker during the grace"
        );
        assert!(fixture.listener.accept().is_err());
        assert!(!fixture.worker.store_away.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn mail_for_a_resident_not_known_here_yet_is_tried_again_later() {
        let fixture = fixture(None).await;
        let claimed = fixture.claim(MailClaimToken(1)).await;
        let (tried, _) = fixture.worker.deliver(claimed[0].clone()).await;
        assert!(
            matches!(tried.delivery, Delivery::Pending { attempts: 1, .. }),
            "with several processes, the import may not have been followed here yet"
        );
        assert!(fixture.listener.accept().is_err());
    }

    /// A name stored before the rule against line breaks (issue 23): the
    /// message builder panicked on it, which stopped every later mail.
    #[tokio::test]
    async fn a_name_stored_with_a_line_break_is_mailed_on_one_line() {
        let fixture = fixture(Some("住民\r\nBcc: victim@evil.example")).await;
        let claimed = fixture.claim(MailClaimToken(1)).await;
        let Ok(message) = fixture.worker.message(&claimed[0]) else {
            panic!("the message was not built");
        };
        let headers = message.headers().to_string();
        assert_eq!(
            headers.matches("\r\nTo: ").count() + usize::from(headers.starts_with("To: ")),
            1,
            "{headers}"
        );
        assert!(
            !headers.to_ascii_lowercase().contains("\nbcc:"),
            "{headers}"
        );
        assert_eq!(message.envelope().to().len(), 1);
    }

    #[test]
    fn a_message_whose_making_panics_is_that_mails_permanent_failure() {
        let built = unless_it_panics(|| panic!("a Display implementation returned an error"));
        assert!(matches!(built, Err(Failure::Permanent(reason)) if reason == "unbuildable"));
    }

    fn mail(ticket: &str, kind: MailKind, reservation_id: ReservationId) -> OutboxMail {
        let due_at = DateTime::parse_from_rfc3339("2030-07-01T09:00:00+09:00").unwrap();
        OutboxMail {
            id: MailId {
                reservation_id,
                kind,
            },
            ticket_number: TicketNumber::parse(ticket).unwrap(),
            reservations: Vec::new(),
            due_at,
            delivery: Delivery::Pending {
                attempts: 0,
                next_at: due_at,
            },
        }
    }

    #[test]
    fn one_residents_mail_goes_out_in_order_and_residents_apart() {
        let (a, b) = (ReservationId::random(), ReservationId::random());
        let groups = by_resident(vec![
            mail("1311480002", MailKind::Reminder, a),
            mail("1311480001", MailKind::Confirmation, b),
            mail("1311480002", MailKind::Confirmation, a),
        ]);
        let kinds: Vec<Vec<MailKind>> = groups
            .iter()
            .map(|g| g.iter().map(|m| m.id.kind).collect())
            .collect();
        assert_eq!(
            kinds,
            [
                vec![MailKind::Confirmation],
                vec![MailKind::Confirmation, MailKind::Reminder]
            ]
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_limit_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(300);
        assert_eq!(retry_delay(1, max, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(2, max, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(5, max, 1.0), Duration::from_secs(16));
        assert_eq!(retry_delay(30, max, 1.0), max);
        assert_eq!(retry_delay(30, max, 0.0), max / 2);
        assert_eq!(retry_delay(3, max, 0.5), Duration::from_secs(3));
    }
}
