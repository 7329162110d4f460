//! The internal calls to a venue-day's owner: one HTTP request per message,
//! answered after the owner's commit. A call that gets no answer (the owner
//! died, or the network) is `503 store_unavailable` for the caller, like a
//! commit whose outcome is unknown.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use super::Member;
use super::wire::{
    Answer, BookWire, BookingRefusalWire, CancelWire, CheckInWire, PlanReplacedWire, PlanWire,
    SlotWire, reservation_from_wire,
};
use crate::codes::{CodedRefusal, ErrorCode};
use crate::domain::{
    BookingError, CheckInError, DayPlanError, Reservation, ReservationStatus, SlotAvailability,
    VenueDayKey,
};
use crate::store::records::ReservationV1;

/// Longest wait for an owner's answer: its queue, its commit and the
/// replicas' acknowledgement fit well inside.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(8);
/// How long after sending a booking its owner may still commit it: the
/// forwarding process waits `FORWARD_TIMEOUT`, longer by twice the clocks'
/// disagreement, so once it answers `503` for a booking that got no answer
/// the owner can no longer commit it (`BookingRequest::commit_by`).
pub const FORWARDED_COMMIT_WINDOW: Duration = Duration::from_secs(
    FORWARD_TIMEOUT.as_secs() - 2 * crate::domain::CLOCKS_AGREE_WITHIN.as_secs(),
);
const _: () = assert!(
    FORWARD_TIMEOUT.as_secs() > 2 * crate::domain::CLOCKS_AGREE_WITHIN.as_secs(),
    "a forwarded booking must leave its owner some time to commit"
);
const _: () = assert!(
    crate::store::SHARED_CLAIM_LEASE.as_secs() > FORWARD_TIMEOUT.as_secs(),
    "a dose claim must outlast the wait for a forwarded booking, or another booking could take the dose while it commits"
);
const _: () = assert!(
    FORWARD_CONNECT_TIMEOUT.as_secs() < FORWARD_TIMEOUT.as_secs(),
    "connecting is part of the wait"
);
/// Longest wait to connect to an owner (a dead one refuses at once).
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept to each other process.
pub const FORWARD_IDLE_CONNECTIONS_MAX: usize = 64;

/// Why an internal call has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The owner refused the connection: nothing was sent, and nothing
    /// listens there (the process is gone).
    Unreachable,
    /// Sent, maybe received: the outcome is unknown.
    NoAnswer,
}

/// The bearer key of the processes' internal calls: derived from the token
/// secret that every process of one deployment shares.
pub fn internal_key(token_secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"vaxslot internal calls v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Forwarder {
    client: reqwest::Client,
    /// The bearer key of internal calls, derived from the token secret that
    /// every process of one deployment shares.
    key: String,
}

impl Forwarder {
    pub fn new(token_secret: &str) -> Self {
        let key = internal_key(token_secret);
        let client = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(FORWARD_CONNECT_TIMEOUT)
            .pool_max_idle_per_host(FORWARD_IDLE_CONNECTIONS_MAX)
            .build()
            .expect("an HTTP client");
        Self { client, key }
    }

    /// Whether `presented` is the internal key (constant time).
    pub fn accepts(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        presented.as_bytes().ct_eq(self.key.as_bytes()).into()
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        owner: &Member,
        key: &VenueDayKey,
        what: &str,
        body: Option<&B>,
    ) -> Result<T, Unanswered> {
        let url = format!(
            "{}/internal/v1/venue-days/{}/{}/{what}",
            owner.url.trim_end_matches('/'),
            key.venue_id,
            key.date
        );
        let mut request = self.client.request(method, url).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                Unanswered::Unreachable
            } else {
                tracing::warn!(
                    owner = %owner.id,
                    timeout = error.is_timeout(),
                    "the venue-day's owner did not answer"
                );
                Unanswered::NoAnswer
            }
        })?;
        if !response.status().is_success() {
            tracing::error!(owner = %owner.id, status = response.status().as_u16(), "the venue-day's owner refused an internal call");
            return Err(Unanswered::NoAnswer);
        }
        response.json().await.map_err(|_| Unanswered::NoAnswer)
    }

    pub async fn book(
        &self,
        owner: &Member,
        key: &VenueDayKey,
        wire: &BookWire,
    ) -> Result<Result<Reservation, BookingError>, Unanswered> {
        assert!(
            wire.commit_by.is_some(),
            "a forwarded booking carries its deadline"
        );
        let answer: Answer<ReservationV1, BookingRefusalWire> = self
            .call(reqwest::Method::POST, owner, key, "bookings", Some(wire))
            .await?;
        Ok(booking_answer(answer, key, |booked| {
            booked.ticket_number.expose() == wire.ticket_number
                && booked.dose.number() == wire.dose
                && booked.time.to_string() == wire.time
                && booked.venue_id == key.venue_id
                && booked.date == key.date
                && booked.status == ReservationStatus::Booked
        }))
    }

    pub async fn cancel(
        &self,
        owner: &Member,
        key: &VenueDayKey,
        wire: &CancelWire,
    ) -> Result<Result<Reservation, BookingError>, Unanswered> {
        let answer: Answer<ReservationV1, BookingRefusalWire> = self
            .call(
                reqwest::Method::POST,
                owner,
                key,
                "cancellations",
                Some(wire),
            )
            .await?;
        Ok(booking_answer(answer, key, |cancelled| {
            cancelled.id.to_string() == wire.reservation_id
                && cancelled.status == ReservationStatus::Cancelled
        }))
    }

    pub async fn check_in(
        &self,
        owner: &Member,
        key: &VenueDayKey,
        wire: &CheckInWire,
    ) -> Result<Result<Reservation, CheckInError>, Unanswered> {
        let answer: Answer<ReservationV1, ErrorCode> = self
            .call(reqwest::Method::POST, owner, key, "check-ins", Some(wire))
            .await?;
        Ok(match answer {
            Answer::Ok(record) => {
                reservation_from_wire(record).map_err(|_| CheckInError::StoreUnavailable)
            }
            Answer::Refused(code) => Err(refused(code, CheckInError::StoreUnavailable)),
        })
    }

    pub async fn reservations(
        &self,
        owner: &Member,
        key: &VenueDayKey,
    ) -> Result<Result<Vec<Reservation>, BookingError>, Unanswered> {
        let answer: Answer<Vec<ReservationV1>, BookingRefusalWire> = self
            .call::<(), _>(reqwest::Method::GET, owner, key, "reservations", None)
            .await?;
        Ok(match answer {
            Answer::Ok(records) => records
                .into_iter()
                .map(reservation_from_wire)
                .collect::<Result<_, _>>()
                .map_err(|_| BookingError::StoreUnavailable),
            Answer::Refused(refusal) => Err(booking_refusal(&refusal)),
        })
    }

    pub async fn replace_plan(
        &self,
        owner: &Member,
        key: &VenueDayKey,
        plan: &PlanWire,
    ) -> Result<Result<(bool, Vec<SlotAvailability>), DayPlanError>, Unanswered> {
        let answer: Answer<PlanReplacedWire, ErrorCode> = self
            .call(reqwest::Method::PUT, owner, key, "plan", Some(plan))
            .await?;
        Ok(match answer {
            Answer::Ok(replaced) => replaced
                .slots
                .into_iter()
                .map(SlotWire::into_slot)
                .collect::<Result<_, _>>()
                .map(|slots| (replaced.created, slots))
                .map_err(|_| DayPlanError::StoreUnavailable),
            Answer::Refused(code) => Err(refused(code, DayPlanError::StoreUnavailable)),
        })
    }
}

/// A booking's or cancellation's answer from the day's owner. The
/// reservation it names is checked against what was asked (`as_asked`),
/// so that what the booking service asserts of it holds: a mismatch (a
/// bug there, or another release) is this request's failure, not this
/// process's.
fn booking_answer(
    answer: Answer<ReservationV1, BookingRefusalWire>,
    key: &VenueDayKey,
    as_asked: impl FnOnce(&Reservation) -> bool,
) -> Result<Reservation, BookingError> {
    match answer {
        Answer::Ok(record) => {
            let reservation =
                reservation_from_wire(record).map_err(|_| BookingError::StoreUnavailable)?;
            if as_asked(&reservation) {
                Ok(reservation)
            } else {
                tracing::error!(venue_day = %key, "the owner answered with another reservation than the one asked for");
                Err(BookingError::StoreUnavailable)
            }
        }
        Answer::Refused(refusal) => Err(booking_refusal(&refusal)),
    }
}

/// The owner's refusal. One this release cannot read (a bug, or another
/// release) still means nothing was saved: `unreadable`, whose answer is
/// "retry".
fn refused<E: CodedRefusal>(code: ErrorCode, unreadable: E) -> E {
    E::from_code(code).unwrap_or(unreadable)
}

fn booking_refusal(refusal: &BookingRefusalWire) -> BookingError {
    refusal.error().unwrap_or(BookingError::StoreUnavailable)
}
