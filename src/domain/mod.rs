//! Pure types and rules. No IO, no actix, no redis, no clock: functions take
//! `now`/`today` as arguments.

mod account;
mod doses;
mod eligibility;
mod errors;
mod ids;
mod mail;
mod reservation;
mod resident;
mod text;
mod venue;
mod venue_day;

pub use account::{
    ACCOUNT_ID_LENGTH_MAX, ACCOUNT_NAME_CHARS_MAX, ACCOUNT_VENUES_MAX, Account, AccountId, Actor,
    KEY_HASH_BYTES, Role, may_use as may_use_venue,
};
pub use doses::{
    cancel_cascade, dose_is_taken, prior_dose_received, prior_doses, received_history,
    reserved_doses,
};
pub use eligibility::{
    DoseRule, Interval, MinimumAge, PriorDose, TODAYS_RULES, TargetGroup, Wanted, age_on, birthday,
    check as check_eligibility, outlook as eligibility_outlook,
};
pub use errors::{BookingError, CheckInError, DayPlanError, DomainError, IneligibleReason};
pub use ids::{
    DAY_DATE_RANGE_DAYS, DOSE_MAX, Dose, ReservationId, SlotTime, TICKET_NUMBER_DIGITS,
    TicketNumber, VENUE_ID_LENGTH_MAX, Vaccine, VenueDayKey, VenueId, parse_date, parse_day_date,
};
pub use mail::{Delivery, MailId, MailKind, MailPolicy, MailedReservation, OutboxMail};
pub use reservation::{Channel, FingerprintScheme, IdempotencyTag, Reservation, ReservationStatus};
#[cfg(test)]
pub use resident::test_resident;
pub use resident::{DoseRecord, RESIDENT_TEXT_CHARS_MAX, Resident, next_open_dose};
pub use text::{TextRule, is_forbidden as is_forbidden_in_text, one_line};
pub use venue::{
    ACCESS_CODE_LENGTH_MAX, BookingMode, BookingWindow, DayPlan, SLOT_CAPACITY_MAX,
    SLOTS_PER_DAY_MAX, SlotPlan, VENUE_TEXT_CHARS_MAX, Venue, VenueKind,
};
pub use venue_day::{BookingRequest, CLOCKS_AGREE_WITHIN, DaySnapshot, SlotAvailability, VenueDay};

use chrono::{FixedOffset, NaiveDate};

/// The municipality's local time: Asia/Tokyo, UTC+9 all year (no DST).
pub fn municipality_offset() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset")
}

/// Today's date in the municipality, for a given instant.
pub fn local_date(now: chrono::DateTime<chrono::Utc>) -> NaiveDate {
    now.with_timezone(&municipality_offset()).date_naive()
}
