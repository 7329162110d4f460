//! The mail a resident is sent about their reservations (API.md
//! "Notifications"): which mail a decision leaves in the outbox, and when it
//! is due. Decided by the venue-day's actor with the decision itself, so the
//! store writes the mail in the same commit as the change it announces.

use std::fmt;

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone};

use chrono::NaiveDate;

use super::{
    Dose, Reservation, ReservationId, SlotTime, TicketNumber, Vaccine, VenueDayKey, VenueId,
    municipality_offset,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum MailKind {
    /// A reservation was made (either channel).
    Confirmation,
    /// A cancel call: one mail listing every dose it cancelled.
    Cancellation,
    /// The day before the slot, at `VAXSLOT_REMINDER_AT`.
    Reminder,
}

impl MailKind {
    pub const ALL: [MailKind; 3] = [Self::Confirmation, Self::Cancellation, Self::Reminder];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Cancellation => "cancellation",
            Self::Reminder => "reminder",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One mail's identity: at most one of each kind per reservation (a
/// cancellation is named by the reservation the call asked to cancel). The
/// `Message-ID` is made from it, so a redelivery is the same message.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct MailId {
    pub reservation_id: ReservationId,
    pub kind: MailKind,
}

impl fmt::Display for MailId {
    /// `<reservation id>.<kind>`: the outbox key and the `Message-ID`'s left part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.reservation_id, self.kind.as_str())
    }
}

impl MailId {
    pub fn parse(text: &str) -> Option<Self> {
        let (id, kind) = text.rsplit_once('.')?;
        Some(Self {
            reservation_id: ReservationId::parse(id)?,
            kind: MailKind::parse(kind)?,
        })
    }

    pub fn reminder_of(reservation_id: ReservationId) -> Self {
        Self {
            reservation_id,
            kind: MailKind::Reminder,
        }
    }
}

/// Where a mail is on its way out.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Delivery {
    /// To be sent at `next_at`: its due time, or after `attempts` failures
    /// the next try.
    Pending {
        attempts: u32,
        next_at: DateTime<FixedOffset>,
    },
    Delivered {
        at: DateTime<FixedOffset>,
    },
    /// Not sent and never will be: the server refused it for good (`5xx`),
    /// the resident has no address, or it kept failing for too long.
    /// `reason` is a code (`smtp_550`, `no_address`, `gave_up`), never text
    /// from the mail.
    Failed {
        at: DateTime<FixedOffset>,
        reason: String,
    },
    /// A reminder whose reservation was cancelled before it was sent.
    Withdrawn,
}

/// What a mail says of one reservation: only what the resident reads (the
/// outbox keeps no more of a reservation than that).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MailedReservation {
    pub id: ReservationId,
    pub venue_id: VenueId,
    pub date: NaiveDate,
    pub time: SlotTime,
    pub dose: Dose,
    pub vaccine: Vaccine,
}

impl MailedReservation {
    pub fn of(reservation: &Reservation) -> Self {
        Self {
            id: reservation.id,
            venue_id: reservation.venue_id.clone(),
            date: reservation.date,
            time: reservation.time,
            dose: reservation.dose,
            vaccine: reservation.vaccine,
        }
    }

    pub fn venue_day(&self) -> VenueDayKey {
        VenueDayKey {
            venue_id: self.venue_id.clone(),
            date: self.date,
        }
    }
}

/// A mail in the outbox. Holds a ticket number, so no `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: MailId,
    pub ticket_number: TicketNumber,
    /// What it is about, as decided: one reservation, or for a cancellation
    /// every dose the call cancelled, in dose order.
    pub reservations: Vec<MailedReservation>,
    /// When it was first due (a reminder: the day before, or at once).
    pub due_at: DateTime<FixedOffset>,
    pub delivery: Delivery,
}

/// Which mail decisions leave, when mail is on (`VAXSLOT_SMTP_URL` set).
///
/// Reminders are not written with each booking: a venue-day's reminders are
/// queued together at its reminder moment (the day before, `reminder_at`),
/// by its actor, for every booked reservation, and the day is marked
/// reminded in the same commit. A booking made after that gets its reminder
/// at once. So a launch-day booking writes one mail, not two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailPolicy {
    /// Local time on the day before the slot when the reminder is due.
    pub reminder_at: NaiveTime,
}

impl MailPolicy {
    /// When the reservations of `date` are reminded: the day before, at `reminder_at`.
    pub fn reminder_moment(&self, date: NaiveDate) -> DateTime<FixedOffset> {
        municipality_offset()
            .from_local_datetime(&(date - Duration::days(1)).and_time(self.reminder_at))
            .single()
            .expect("a fixed offset has no gaps")
    }

    /// Are the reminders of `date`'s reservations due at `now`? From the
    /// reminder moment until the day itself begins (a slot today or earlier
    /// gets none: there is no day before left to remind on).
    pub fn reminders_due(&self, date: NaiveDate, now: DateTime<FixedOffset>) -> bool {
        let today = now.with_timezone(&municipality_offset()).date_naive();
        date > today && now >= self.reminder_moment(date)
    }

    /// The confirmation, due now; and the reminder at once if the day's
    /// reminders were already queued (`day_reminded`) and are still due.
    pub fn on_booking(
        &self,
        reservation: &Reservation,
        now: DateTime<FixedOffset>,
        day_reminded: bool,
    ) -> Vec<OutboxMail> {
        let mut mails = vec![due_now(reservation, MailKind::Confirmation, now)];
        if day_reminded && self.reminders_due(reservation.date, now) {
            mails.push(self.reminder(reservation, now));
        }
        mails
    }

    /// The reminder of `reservation`, due now.
    pub fn reminder(&self, reservation: &Reservation, now: DateTime<FixedOffset>) -> OutboxMail {
        due_now(reservation, MailKind::Reminder, now)
    }

    /// The one mail of a cancel call: `cancelled` is the reservation asked
    /// for, `also` the later doses the cascade cancelled with it.
    pub fn on_cancel(
        &self,
        cancelled: &Reservation,
        also: &[Reservation],
        now: DateTime<FixedOffset>,
    ) -> OutboxMail {
        let mut reservations: Vec<MailedReservation> = std::iter::once(cancelled)
            .chain(also)
            .map(MailedReservation::of)
            .collect();
        reservations.sort_by_key(|r| r.dose);
        OutboxMail {
            id: MailId {
                reservation_id: cancelled.id,
                kind: MailKind::Cancellation,
            },
            ticket_number: cancelled.ticket_number,
            reservations,
            due_at: now,
            delivery: Delivery::Pending {
                attempts: 0,
                next_at: now,
            },
        }
    }
}

/// A `kind` mail about `reservation` alone, due now.
fn due_now(reservation: &Reservation, kind: MailKind, now: DateTime<FixedOffset>) -> OutboxMail {
    OutboxMail {
        id: MailId {
            reservation_id: reservation.id,
            kind,
        },
        ticket_number: reservation.ticket_number,
        reservations: vec![MailedReservation::of(reservation)],
        due_at: now,
        delivery: Delivery::Pending {
            attempts: 0,
            next_at: now,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Dose, ReservationStatus, SlotTime, Vaccine, VenueId, parse_date};

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn reservation(date: &str, dose: u8) -> Reservation {
        Reservation {
            id: ReservationId::random(),
            ticket_number: TicketNumber::parse("1311480001").unwrap(),
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: parse_date(date).unwrap(),
            time: SlotTime::parse("10:30").unwrap(),
            dose: Dose::new(dose).unwrap(),
            vaccine: Vaccine::Pfizer,
            status: ReservationStatus::Booked,
            channel: Channel::Web,
            created_at: at("2030-07-01T09:00:00+09:00"),
            updated_at: at("2030-07-01T09:00:00+09:00"),
            idempotency: None,
        }
    }

    fn policy() -> MailPolicy {
        MailPolicy {
            reminder_at: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_booking_is_confirmed_now_and_reminded_with_its_day() {
        let now = at("2030-07-01T09:00:00+09:00");
        let r = reservation("2030-07-07", 1);
        let mails = policy().on_booking(&r, now, false);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].id.kind, MailKind::Confirmation);
        assert_eq!(mails[0].due_at, now);
        // The day's reminders are queued at its moment, by its actor.
        assert_eq!(
            policy().reminder_moment(r.date),
            at("2030-07-06T10:00:00+09:00")
        );
        // Booked after them: reminded at once (but not before the moment).
        let after = at("2030-07-06T10:01:00+09:00");
        let mails = policy().on_booking(&r, after, true);
        let kinds: Vec<MailKind> = mails.iter().map(|m| m.id.kind).collect();
        assert_eq!(kinds, [MailKind::Confirmation, MailKind::Reminder]);
        assert_eq!(mails[1].due_at, after);
        assert_eq!(policy().on_booking(&r, now, true).len(), 1);
    }

    #[test]
    fn reminders_are_due_from_the_moment_until_the_day_begins() {
        let date = parse_date("2030-07-07").unwrap();
        let due = |text| policy().reminders_due(date, at(text));
        assert!(!due("2030-07-06T09:59:59+09:00"));
        assert!(due("2030-07-06T10:00:00+09:00"));
        assert!(due("2030-07-06T23:59:59+09:00"));
        assert!(!due("2030-07-07T00:00:00+09:00"));
        // The moment is local: 01:00 UTC is 10:00 in Tokyo.
        assert!(due("2030-07-06T01:00:00+00:00"));
        assert!(!due("2030-07-06T00:59:00+00:00"));
    }

    #[test]
    fn a_cascade_is_one_mail_listing_every_dose_in_dose_order() {
        let first = reservation("2030-07-07", 1);
        let second = reservation("2030-07-28", 2);
        let mail = policy().on_cancel(
            &first,
            std::slice::from_ref(&second),
            at("2030-07-02T12:00:00+09:00"),
        );
        assert_eq!(mail.id.reservation_id, first.id);
        assert_eq!(mail.id.kind, MailKind::Cancellation);
        let doses: Vec<u8> = mail.reservations.iter().map(|r| r.dose.number()).collect();
        assert_eq!(doses, [1, 2]);
    }

    #[test]
    fn a_mail_id_reads_back_from_its_text() {
        for kind in MailKind::ALL {
            let id = MailId {
                reservation_id: ReservationId::random(),
                kind,
            };
            assert_eq!(MailId::parse(&id.to_string()), Some(id));
        }
        assert_eq!(MailId::parse("not-an-id.reminder"), None);
        assert_eq!(
            MailId::parse(&format!("{}.postcard", ReservationId::random())),
            None
        );
    }
}
