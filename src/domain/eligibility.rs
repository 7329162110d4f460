//! Who may book which dose, and from when: one table of rules (`TODAYS_RULES`),
//! applied on every booking and explained by `GET /v1/me`. Change the table,
//! not the code, when the programme changes.
//!
//! "Dose N-1 date" is the date in the history or, if dose N-1 is only booked,
//! that reservation's date. Months are calendar months, clamped to the
//! month's last day. Ages are full years on the slot date.

use chrono::{Datelike, Days, Months, NaiveDate};

use super::{Dose, IneligibleReason, Resident, Vaccine};

/// A minimum age per vaccine, in full years (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinimumAge {
    pub pfizer: u32,
    pub moderna: u32,
}

impl MinimumAge {
    pub const NONE: MinimumAge = MinimumAge {
        pfizer: 0,
        moderna: 0,
    };

    pub const fn all(years: u32) -> Self {
        Self {
            pfizer: years,
            moderna: years,
        }
    }

    fn of(self, vaccine: Vaccine) -> u32 {
        match vaccine {
            Vaccine::Pfizer => self.pfizer,
            Vaccine::Moderna => self.moderna,
        }
    }
}

/// Who the dose is for, beyond the minimum age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetGroup {
    Everyone,
    /// At least this age on the slot date, or `high_risk`.
    AgedAtLeastOrHighRisk(u32),
}

/// The wait after the previous dose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    None,
    /// Days after the previous dose, by the previous dose's vaccine.
    Days {
        pfizer: u64,
        moderna: u64,
    },
    /// Calendar months after the previous dose.
    Months(u32),
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoseRule {
    pub dose: u8,
    pub minimum_age: MinimumAge,
    pub target: TargetGroup,
    /// The vaccine must be the one of dose 1.
    pub same_vaccine_as_first: bool,
    pub interval: Interval,
}

/// Today's table (API.md "Eligibility rules"). Doses without a row are
/// `completed`: nothing more can be booked.
pub const TODAYS_RULES: &[DoseRule] = &[
    DoseRule {
        dose: 1,
        minimum_age: MinimumAge {
            pfizer: 12,
            moderna: 18,
        },
        target: TargetGroup::Everyone,
        same_vaccine_as_first: false,
        interval: Interval::None,
    },
    DoseRule {
        dose: 2,
        minimum_age: MinimumAge::NONE,
        target: TargetGroup::Everyone,
        same_vaccine_as_first: true,
        interval: Interval::Days {
            pfizer: 21,
            moderna: 28,
        },
    },
    DoseRule {
        dose: 3,
        minimum_age: MinimumAge::all(18),
        target: TargetGroup::Everyone,
        same_vaccine_as_first: false,
        interval: Interval::Months(5),
    },
    DoseRule {
        dose: 4,
        minimum_age: MinimumAge::NONE,
        target: TargetGroup::AgedAtLeastOrHighRisk(60),
        same_vaccine_as_first: false,
        interval: Interval::Months(5),
    },
];

/// A dose the resident has received or holds a committed booking for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorDose {
    pub dose: Dose,
    pub date: NaiveDate,
    pub vaccine: Vaccine,
}

/// What one booking asks for.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub dose: Dose,
    pub vaccine: Vaccine,
    pub slot_date: NaiveDate,
}

/// Full years from `birth` to `on`; the birthday itself counts.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> u32 {
    let mut years = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    u32::try_from(years).unwrap_or(0)
}

/// The day someone born on `birth` turns `years` (Feb 29 → Feb 28 in
/// common years, the last day of that month).
pub fn birthday(birth: NaiveDate, years: u32) -> NaiveDate {
    birth
        .checked_add_months(Months::new(12 * years))
        .unwrap_or(NaiveDate::MAX)
}

fn rule_for(rules: &[DoseRule], dose: Dose) -> Option<&DoseRule> {
    rules.iter().find(|r| r.dose == dose.number())
}

/// The earliest date the interval after `previous` allows.
fn interval_end(interval: Interval, previous: &PriorDose) -> NaiveDate {
    match interval {
        Interval::None => NaiveDate::MIN,
        Interval::Days { pfizer, moderna } => {
            let days = match previous.vaccine {
                Vaccine::Pfizer => pfizer,
                Vaccine::Moderna => moderna,
            };
            previous
                .date
                .checked_add_days(Days::new(days))
                .unwrap_or(NaiveDate::MAX)
        }
        Interval::Months(months) => previous
            .date
            .checked_add_months(Months::new(months))
            .unwrap_or(NaiveDate::MAX),
    }
}

/// Checks one booking against the table. `priors` are the doses received or
/// booked (committed), any order.
pub fn check(
    rules: &[DoseRule],
    resident: &Resident,
    priors: &[PriorDose],
    wanted: Wanted,
    today: NaiveDate,
) -> Result<(), IneligibleReason> {
    if wanted.slot_date < today {
        return Err(IneligibleReason::PastDate);
    }
    let rule = rule_for(rules, wanted.dose).ok_or(IneligibleReason::Completed)?;
    let previous = match wanted.dose.number() {
        1 => None,
        n => Some(
            priors
                .iter()
                .find(|p| p.dose.number() == n - 1)
                .ok_or(IneligibleReason::NoPriorDose)?,
        ),
    };
    if rule.same_vaccine_as_first {
        let first = priors.iter().find(|p| p.dose == Dose::FIRST);
        if first.is_some_and(|f| f.vaccine != wanted.vaccine) {
            return Err(IneligibleReason::WrongVaccine);
        }
    }
    let age = age_on(resident.birth_date, wanted.slot_date);
    if age < rule.minimum_age.of(wanted.vaccine) {
        return Err(IneligibleReason::TooYoung);
    }
    if let TargetGroup::AgedAtLeastOrHighRisk(years) = rule.target
        && age < years
        && !resident.high_risk
    {
        return Err(IneligibleReason::NotInTargetGroup);
    }
    if let Some(previous) = previous
        && wanted.slot_date < interval_end(rule.interval, previous)
    {
        return Err(IneligibleReason::TooEarly);
    }
    Ok(())
}

/// What `GET /v1/me` tells a resident about `dose`: the vaccines they may
/// get soonest and from when. `None` when the dose has no rule (completed).
pub fn outlook(
    rules: &[DoseRule],
    resident: &Resident,
    priors: &[PriorDose],
    dose: Dose,
    today: NaiveDate,
) -> Option<(Vec<Vaccine>, NaiveDate)> {
    let rule = rule_for(rules, dose)?;
    let previous = match dose.number() {
        1 => None,
        n => Some(priors.iter().find(|p| p.dose.number() == n - 1)?),
    };
    let first_vaccine = priors
        .iter()
        .find(|p| p.dose == Dose::FIRST)
        .map(|p| p.vaccine);
    let mut candidates: Vec<(Vaccine, NaiveDate)> = Vaccine::ALL
        .iter()
        .filter(|v| !rule.same_vaccine_as_first || first_vaccine.is_none_or(|f| f == **v))
        .map(|&vaccine| {
            let mut earliest = today;
            earliest = earliest.max(birthday(resident.birth_date, rule.minimum_age.of(vaccine)));
            if let TargetGroup::AgedAtLeastOrHighRisk(years) = rule.target
                && !resident.high_risk
            {
                earliest = earliest.max(birthday(resident.birth_date, years));
            }
            if let Some(previous) = previous {
                earliest = earliest.max(interval_end(rule.interval, previous));
            }
            (vaccine, earliest)
        })
        .collect();
    let soonest = candidates.iter().map(|(_, d)| *d).min()?;
    candidates.retain(|(_, d)| *d == soonest);
    Some((candidates.into_iter().map(|(v, _)| v).collect(), soonest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TicketNumber, parse_date};
    use IneligibleReason::*;

    fn date(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    fn resident(birth: &str, high_risk: bool) -> Resident {
        let mut r = crate::domain::test_resident(TicketNumber::parse("1311480001").unwrap());
        r.birth_date = date(birth);
        r.high_risk = high_risk;
        r
    }

    fn prior(dose: u8, when: &str, vaccine: Vaccine) -> PriorDose {
        PriorDose {
            dose: Dose::new(dose).unwrap(),
            date: date(when),
            vaccine,
        }
    }

    fn wanted(dose: u8, vaccine: Vaccine, slot: &str) -> Wanted {
        Wanted {
            dose: Dose::new(dose).unwrap(),
            vaccine,
            slot_date: date(slot),
        }
    }

    const TODAY: &str = "2022-01-01";
    use Vaccine::{Moderna, Pfizer};

    /// (case, birth date, high risk, priors, wanted dose, vaccine, slot, expected)
    type Row = (
        &'static str,
        &'static str,
        bool,
        Vec<PriorDose>,
        u8,
        Vaccine,
        &'static str,
        Result<(), IneligibleReason>,
    );

    #[test]
    fn todays_table_row_by_row_with_its_edges() {
        let d1p = || vec![prior(1, "2022-01-10", Pfizer)];
        let d1m = || vec![prior(1, "2022-01-10", Moderna)];
        let d12 = || {
            vec![
                prior(1, "2021-10-10", Pfizer),
                prior(2, "2021-10-31", Pfizer),
            ]
        };
        let d123 = || {
            vec![
                prior(1, "2021-06-01", Pfizer),
                prior(2, "2021-06-22", Pfizer),
                prior(3, "2021-12-31", Moderna),
            ]
        };
        let rows: Vec<Row> = vec![
            // Dose 1: age 12 for pfizer, 18 for moderna, on the slot date.
            (
                "pfizer at exactly 12",
                "2010-02-01",
                false,
                vec![],
                1,
                Pfizer,
                "2022-02-01",
                Ok(()),
            ),
            (
                "pfizer the day before 12",
                "2010-02-01",
                false,
                vec![],
                1,
                Pfizer,
                "2022-01-31",
                Err(TooYoung),
            ),
            (
                "moderna at 17",
                "2004-06-01",
                false,
                vec![],
                1,
                Moderna,
                "2022-02-01",
                Err(TooYoung),
            ),
            (
                "moderna at exactly 18",
                "2004-02-01",
                false,
                vec![],
                1,
                Moderna,
                "2022-02-01",
                Ok(()),
            ),
            (
                "a slot in the past",
                "1950-04-01",
                false,
                vec![],
                1,
                Pfizer,
                "2021-12-31",
                Err(PastDate),
            ),
            // Dose 2: same vaccine as dose 1; +21 days pfizer, +28 moderna.
            (
                "pfizer dose 2 at exactly +21",
                "1950-04-01",
                false,
                d1p(),
                2,
                Pfizer,
                "2022-01-31",
                Ok(()),
            ),
            (
                "pfizer dose 2 at +20",
                "1950-04-01",
                false,
                d1p(),
                2,
                Pfizer,
                "2022-01-30",
                Err(TooEarly),
            ),
            (
                "moderna dose 2 at exactly +28",
                "1950-04-01",
                false,
                d1m(),
                2,
                Moderna,
                "2022-02-07",
                Ok(()),
            ),
            (
                "moderna dose 2 at +27",
                "1950-04-01",
                false,
                d1m(),
                2,
                Moderna,
                "2022-02-06",
                Err(TooEarly),
            ),
            (
                "dose 2 with the other vaccine",
                "1950-04-01",
                false,
                d1p(),
                2,
                Moderna,
                "2022-03-01",
                Err(WrongVaccine),
            ),
            (
                "dose 2 without dose 1",
                "1950-04-01",
                false,
                vec![],
                2,
                Pfizer,
                "2022-03-01",
                Err(NoPriorDose),
            ),
            // Dose 3: 18+, 5 calendar months after dose 2, clamped at month end.
            (
                "dose 3 at exactly +5 months",
                "1950-04-01",
                false,
                d12(),
                3,
                Moderna,
                "2022-03-31",
                Ok(()),
            ),
            (
                "dose 3 a day early",
                "1950-04-01",
                false,
                d12(),
                3,
                Moderna,
                "2022-03-30",
                Err(TooEarly),
            ),
            (
                "dose 3 at 17",
                "2004-06-01",
                false,
                d12(),
                3,
                Pfizer,
                "2022-04-01",
                Err(TooYoung),
            ),
            // Dose 4: 60+ on the slot date, or high risk; 5 months after dose 3.
            // Dose 3 on Dec 31: +5 months is May 31; from Sep 30 it would clamp to Feb 28.
            (
                "dose 4 at exactly +5 months",
                "1950-04-01",
                false,
                d123(),
                4,
                Moderna,
                "2022-05-31",
                Ok(()),
            ),
            (
                "dose 4 a day early",
                "1950-04-01",
                false,
                d123(),
                4,
                Moderna,
                "2022-05-30",
                Err(TooEarly),
            ),
            (
                "dose 4 on the 60th birthday",
                "1962-06-01",
                false,
                d123(),
                4,
                Moderna,
                "2022-06-01",
                Ok(()),
            ),
            (
                "dose 4 the day before turning 60",
                "1962-06-02",
                false,
                d123(),
                4,
                Moderna,
                "2022-06-01",
                Err(NotInTargetGroup),
            ),
            (
                "dose 4 under 60 but high risk",
                "1990-01-01",
                true,
                d123(),
                4,
                Moderna,
                "2022-06-01",
                Ok(()),
            ),
            (
                "dose 4 without dose 3",
                "1950-04-01",
                false,
                d12(),
                4,
                Moderna,
                "2022-06-01",
                Err(NoPriorDose),
            ),
            // Dose 5 and on: none yet.
            (
                "dose 5",
                "1950-04-01",
                true,
                d123(),
                5,
                Moderna,
                "2023-06-01",
                Err(Completed),
            ),
        ];
        for (case, birth, high_risk, priors, dose, vaccine, slot, expected) in rows {
            let got = check(
                TODAYS_RULES,
                &resident(birth, high_risk),
                &priors,
                wanted(dose, vaccine, slot),
                date(TODAY),
            );
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn five_months_clamps_to_the_last_day_of_the_month() {
        let priors = vec![
            prior(1, "2021-06-01", Pfizer),
            prior(2, "2021-09-30", Pfizer),
            prior(3, "2021-09-30", Pfizer),
        ];
        let r = resident("1950-04-01", false);
        // 2021-09-30 + 5 months = 2022-02-28 (February has no 30th).
        assert_eq!(
            check(
                TODAYS_RULES,
                &r,
                &priors,
                wanted(4, Pfizer, "2022-02-28"),
                date(TODAY)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                TODAYS_RULES,
                &r,
                &priors,
                wanted(4, Pfizer, "2022-02-27"),
                date(TODAY)
            ),
            Err(TooEarly)
        );
    }

    #[test]
    fn ages_count_the_birthday_itself() {
        assert_eq!(age_on(date("1962-06-01"), date("2022-06-01")), 60);
        assert_eq!(age_on(date("1962-06-01"), date("2022-05-31")), 59);
        assert_eq!(age_on(date("2000-02-29"), date("2022-02-28")), 21);
        assert_eq!(birthday(date("2000-02-29"), 1), date("2001-02-28"));
    }

    #[test]
    fn the_outlook_names_the_soonest_vaccines_and_date() {
        let today = date(TODAY);
        // 15-year-old: pfizer now; moderna only at 18.
        let teen = resident("2006-06-01", false);
        assert_eq!(
            outlook(TODAYS_RULES, &teen, &[], Dose::FIRST, today),
            Some((vec![Pfizer], today))
        );
        // Dose 2 after moderna on Jan 10: moderna from Feb 7.
        let adult = resident("1950-04-01", false);
        let priors = vec![prior(1, "2022-01-10", Moderna)];
        assert_eq!(
            outlook(TODAYS_RULES, &adult, &priors, Dose::new(2).unwrap(), today),
            Some((vec![Moderna], date("2022-02-07")))
        );
        // Dose 4 at 55, not high risk: from the 60th birthday.
        let younger = resident("1967-03-15", false);
        let d3 = vec![
            prior(1, "2021-06-01", Pfizer),
            prior(2, "2021-06-22", Pfizer),
            prior(3, "2021-12-01", Pfizer),
        ];
        assert_eq!(
            outlook(TODAYS_RULES, &younger, &d3, Dose::new(4).unwrap(), today),
            Some((vec![Pfizer, Moderna], date("2027-03-15")))
        );
        assert_eq!(
            outlook(TODAYS_RULES, &adult, &d3, Dose::new(5).unwrap(), today),
            None
        );
    }
}
