//! Validated identifiers and values. Each is built only by `parse`, so a value of
//! one of these types is always valid; personal ones redact themselves in `Debug`.

use std::fmt;

use chrono::NaiveDate;
use uuid::Uuid;

use super::DomainError;

/// Longest venue id, in bytes (API.md: 1–64 of `[a-z0-9-]`).
pub const VENUE_ID_LENGTH_MAX: usize = 64;

/// A venue's id: 1–64 of `[a-z0-9-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VenueId(String);

/// 1 to `length_max` bytes of `[a-z0-9-]`: the contract's id shape.
pub(super) fn is_id(text: &str, length_max: usize) -> bool {
    !text.is_empty()
        && text.len() <= length_max
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl VenueId {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        if is_id(text, VENUE_ID_LENGTH_MAX) {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::InvalidVenueId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VenueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Digits in a ticket number (接種券番号).
pub const TICKET_NUMBER_DIGITS: usize = 10;

/// A resident's ticket number: exactly 10 ASCII digits. Personal data: its
/// `Debug` is redacted and it has no `Display`, so it cannot slip into a log line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketNumber([u8; TICKET_NUMBER_DIGITS]);

impl TicketNumber {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let bytes = text.as_bytes();
        if bytes.len() != TICKET_NUMBER_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(DomainError::InvalidTicketNumber);
        }
        let mut digits = [0u8; TICKET_NUMBER_DIGITS];
        digits.copy_from_slice(bytes);
        Ok(Self(digits))
    }

    /// The digits, for the owner's own responses and the store only.
    pub fn expose(&self) -> &str {
        // Only ASCII digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).expect("ticket numbers are ASCII digits")
    }
}

impl fmt::Debug for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketNumber(<redacted>)")
    }
}

/// The vaccines this programme gives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Vaccine {
    Pfizer,
    Moderna,
}

impl Vaccine {
    pub const ALL: [Vaccine; 2] = [Vaccine::Pfizer, Vaccine::Moderna];

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text {
            "pfizer" => Ok(Self::Pfizer),
            "moderna" => Ok(Self::Moderna),
            _ => Err(DomainError::InvalidVaccine),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pfizer => "pfizer",
            Self::Moderna => "moderna",
        }
    }
}

/// Highest dose number the API accepts.
pub const DOSE_MAX: u8 = 9;

/// A dose number, 1–9.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Dose(u8);

impl Dose {
    pub const FIRST: Dose = Dose(1);

    pub fn new(number: u8) -> Result<Self, DomainError> {
        if (1..=DOSE_MAX).contains(&number) {
            Ok(Self(number))
        } else {
            Err(DomainError::InvalidDose)
        }
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The dose after this one, or `None` past the highest dose.
    pub fn next(self) -> Option<Dose> {
        Dose::new(self.0 + 1).ok()
    }
}

/// A slot's start time of day, `HH:MM`, stored as minutes after midnight.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotTime(u16);

impl SlotTime {
    /// Parses exactly `HH:MM`, 24 h, two digits each.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let b = text.as_bytes();
        let well_formed =
            b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
        if !well_formed {
            return Err(DomainError::InvalidTime);
        }
        let hours = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
        let minutes = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
        if hours > 23 || minutes > 59 {
            return Err(DomainError::InvalidTime);
        }
        Ok(Self(hours * 60 + minutes))
    }

    pub fn minutes_after_midnight(self) -> u16 {
        self.0
    }

    /// Whether this slot of `date` has started at `now` (the municipality's
    /// time): from its first minute on, it is no longer offered or booked.
    pub fn has_started(self, date: NaiveDate, now: chrono::DateTime<chrono::FixedOffset>) -> bool {
        use chrono::Timelike;
        let local = now.with_timezone(&super::municipality_offset());
        let minutes_now = local.hour() * 60 + local.minute();
        date < local.date_naive()
            || (date == local.date_naive() && u32::from(self.0) <= minutes_now)
    }
}

impl fmt::Display for SlotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl fmt::Debug for SlotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses a calendar date written exactly `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, DomainError> {
    let b = text.as_bytes();
    let well_formed = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !well_formed {
        return Err(DomainError::InvalidDate);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| DomainError::InvalidDate)
}

/// A reservation's id: a random UUID v4 (122 random bits), never sequential.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ReservationId(Uuid);

impl ReservationId {
    /// From the thread's CSPRNG (`rand::rng()`, ChaCha seeded from the OS):
    /// `Uuid::new_v4` asks the kernel (`getrandom`) for every id, one system
    /// call per booking on the hot path.
    pub fn random() -> Self {
        Self(uuid::Builder::from_random_bytes(rand::random()).into_uuid())
    }

    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }

    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }

    pub fn from_u128(value: u128) -> Self {
        Self(Uuid::from_u128(value))
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// How far a venue-day may lie from today, before or after (API.md
/// "Conventions"): a typo such as year 0001 or 2202 is refused, never
/// counted in the launch's capacity.
pub const DAY_DATE_RANGE_DAYS: i64 = 400;

/// A venue-day's date: well formed, and within `DAY_DATE_RANGE_DAYS` of `today`.
pub fn parse_day_date(text: &str, today: NaiveDate) -> Result<NaiveDate, DomainError> {
    let date = parse_date(text)?;
    if (date - today).num_days().abs() > DAY_DATE_RANGE_DAYS {
        return Err(DomainError::InvalidDate);
    }
    Ok(date)
}

/// One venue's one day: the unit that one actor owns.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VenueDayKey {
    pub venue_id: VenueId,
    pub date: NaiveDate,
}

impl fmt::Display for VenueDayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.venue_id, self.date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_lies_within_four_hundred_days_of_today() {
        let today = parse_date("2026-12-08").unwrap();
        assert!(parse_day_date("2026-12-08", today).is_ok());
        assert!(parse_day_date("2028-01-12", today).is_ok());
        assert!(parse_day_date("2025-11-03", today).is_ok());
        for far in ["2028-01-13", "2025-11-02", "0001-01-01", "9999-12-31"] {
            assert_eq!(
                parse_day_date(far, today),
                Err(DomainError::InvalidDate),
                "{far}"
            );
        }
    }

    #[test]
    fn reservation_ids_are_random_version_4_uuids() {
        let ids: std::collections::HashSet<_> =
            (0..1000).map(|_| ReservationId::random()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            let uuid = Uuid::from_u128(id.as_u128());
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn venue_ids_accept_only_lowercase_digits_and_dashes() {
        for good in ["a", "nakano-sunplaza", "clinic-001", &"a".repeat(64)] {
            assert!(VenueId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Nakano", "a_b", "a b", "é", &"a".repeat(65)] {
            assert!(VenueId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ticket_numbers_are_exactly_ten_ascii_digits() {
        assert!(TicketNumber::parse("1311480001").is_ok());
        for bad in [
            "131148000",
            "13114800011",
            "131148000a",
            "１３１１４８０００１",
            "",
        ] {
            assert!(TicketNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ticket_number_debug_is_redacted() {
        let ticket = TicketNumber::parse("1311480001").unwrap();
        assert!(!format!("{ticket:?}").contains("1311480001"));
    }

    #[test]
    fn slot_times_round_trip_and_reject_malformed() {
        for good in ["00:00", "09:05", "23:59"] {
            assert_eq!(SlotTime::parse(good).unwrap().to_string(), good);
        }
        for bad in ["24:00", "9:05", "09:60", "0905", "09:5", "+9:05", ""] {
            assert!(SlotTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_must_be_zero_padded_and_real() {
        assert!(parse_date("2022-07-07").is_ok());
        for bad in ["2022-7-7", "2022-02-30", "20220707", "2022-07-07T00", ""] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn doses_are_one_to_nine() {
        assert!(Dose::new(0).is_err());
        assert!(Dose::new(10).is_err());
        assert_eq!(Dose::new(9).unwrap().next(), None);
        assert_eq!(Dose::FIRST.next(), Some(Dose::new(2).unwrap()));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn no_parser_panics_on_any_text(text in "\\PC{0,80}") {
            let _ = VenueId::parse(&text);
            let _ = TicketNumber::parse(&text);
            let _ = SlotTime::parse(&text);
            let _ = parse_date(&text);
            let _ = Vaccine::parse(&text);
            let _ = ReservationId::parse(&text);
        }

        #[test]
        fn ticket_numbers_are_accepted_exactly_when_ten_ascii_digits(text in "[0-9a-z]{0,12}") {
            let expected = text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit());
            let parsed = TicketNumber::parse(&text);
            prop_assert_eq!(parsed.is_ok(), expected);
            if let Ok(ticket) = parsed {
                prop_assert_eq!(ticket.expose(), text.as_str());
            }
        }

        #[test]
        fn venue_ids_are_accepted_exactly_when_the_contract_says(text in "[a-z0-9A-Z_ -]{0,70}") {
            let expected = (1..=VENUE_ID_LENGTH_MAX).contains(&text.len())
                && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            prop_assert_eq!(VenueId::parse(&text).is_ok(), expected);
        }

        #[test]
        fn every_valid_time_round_trips(hours in 0u16..24, minutes in 0u16..60) {
            let text = format!("{hours:02}:{minutes:02}");
            let time = SlotTime::parse(&text).unwrap();
            prop_assert_eq!(time.to_string(), text);
            prop_assert_eq!(time.minutes_after_midnight(), hours * 60 + minutes);
        }

        #[test]
        fn every_real_date_round_trips(days in 0i64..80_000) {
            let date = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Duration::days(days);
            prop_assert_eq!(parse_date(&date.to_string()), Ok(date));
        }
    }
}
