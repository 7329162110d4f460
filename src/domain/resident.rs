//! Residents and their dose history.

use chrono::NaiveDate;

use super::{DomainError, Dose, TextRule, TicketNumber, Vaccine};

/// Longest name, e-mail or phone text, in characters.
pub const RESIDENT_TEXT_CHARS_MAX: usize = 200;

/// A dose the resident has received.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DoseRecord {
    pub dose: Dose,
    pub date: NaiveDate,
    pub vaccine: Vaccine,
}

/// A resident as imported by the municipality. Personal data throughout: no
/// `Debug` on purpose, so it cannot be logged by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Resident {
    pub ticket_number: TicketNumber,
    pub birth_date: NaiveDate,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub high_risk: bool,
    /// Received doses, in dose order.
    pub history: Vec<DoseRecord>,
}

impl Resident {
    /// Checks a freshly imported record against `today`.
    pub fn validated(mut self, today: NaiveDate) -> Result<Self, DomainError> {
        if self.birth_date > today {
            return Err(DomainError::InvalidBirthDate);
        }
        TextRule::required("name", RESIDENT_TEXT_CHARS_MAX).check(&self.name)?;
        for (field, text) in [("email", &self.email), ("phone", &self.phone)] {
            if let Some(text) = text {
                TextRule::optional(field, RESIDENT_TEXT_CHARS_MAX).check(text)?;
            }
        }
        self.history.sort_by_key(|r| r.dose);
        let consecutive = self
            .history
            .iter()
            .enumerate()
            .all(|(i, r)| usize::from(r.dose.number()) == i + 1);
        let dated_in_order = self.history.windows(2).all(|w| w[0].date <= w[1].date)
            && self
                .history
                .iter()
                .all(|r| r.date >= self.birth_date && r.date <= today);
        if !consecutive || !dated_in_order {
            return Err(DomainError::InvalidHistory);
        }
        Ok(self)
    }

    pub fn has_received(&self, dose: Dose) -> bool {
        self.history.iter().any(|r| r.dose == dose)
    }
}

/// The next dose that is neither received nor reserved, given the doses that
/// are reserved (or being reserved) right now. `None` when every dose is taken.
pub fn next_open_dose(
    resident: &Resident,
    reserved: impl IntoIterator<Item = Dose>,
) -> Option<Dose> {
    let highest = resident
        .history
        .iter()
        .map(|r| r.dose)
        .chain(reserved)
        .max();
    match highest {
        None => Some(Dose::FIRST),
        Some(dose) => dose.next(),
    }
}

/// A resident for unit tests: born 1950-04-01, no history.
#[cfg(test)]
pub fn test_resident(ticket_number: TicketNumber) -> Resident {
    Resident {
        ticket_number,
        birth_date: NaiveDate::from_ymd_opt(1950, 4, 1).expect("valid date"),
        name: "中野 太郎".into(),
        email: None,
        phone: None,
        high_risk: false,
        history: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        super::super::parse_date(text).unwrap()
    }

    fn resident(history: &[(u8, &str)]) -> Resident {
        Resident {
            ticket_number: TicketNumber::parse("1311480001").unwrap(),
            birth_date: date("1950-04-01"),
            name: "中野 太郎".into(),
            email: None,
            phone: None,
            high_risk: false,
            history: history
                .iter()
                .map(|&(d, when)| DoseRecord {
                    dose: Dose::new(d).unwrap(),
                    date: date(when),
                    vaccine: Vaccine::Pfizer,
                })
                .collect(),
        }
    }

    #[test]
    fn next_open_dose_skips_received_and_reserved() {
        let d = |n| Dose::new(n).unwrap();
        assert_eq!(next_open_dose(&resident(&[]), []), Some(d(1)));
        assert_eq!(
            next_open_dose(&resident(&[(1, "2021-06-01")]), []),
            Some(d(2))
        );
        assert_eq!(
            next_open_dose(&resident(&[(1, "2021-06-01")]), [d(2)]),
            Some(d(3))
        );
        assert_eq!(next_open_dose(&resident(&[]), [d(9)]), None);
    }

    #[test]
    fn history_must_be_consecutive_and_in_date_order() {
        let today = date("2022-07-01");
        assert!(
            resident(&[(1, "2021-06-01"), (2, "2021-06-22")])
                .validated(today)
                .is_ok()
        );
        assert!(resident(&[(2, "2021-06-01")]).validated(today).is_err());
        assert!(
            resident(&[(1, "2021-06-22"), (2, "2021-06-01")])
                .validated(today)
                .is_err()
        );
        assert!(resident(&[(1, "2023-01-01")]).validated(today).is_err());
    }
}
