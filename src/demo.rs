//! A demo data set shaped like a ward's real plan (DESIGN.md, Nakano's 4th
//! dose): ~130 clinics (100 booked centrally, 30 direct-only), one mass venue
//! with 3 lanes taking 25 people per 15 minutes, Thursday to Saturday, and a
//! few thousand residents of varied ages and dose histories. Deterministic, so
//! the login it prints always works. Dates are relative to the day it runs.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use crate::domain::{
    Account, AccountId, Actor, BookingMode, BookingWindow, DayPlan, Dose, DoseRecord, Resident,
    Role, SlotPlan, SlotTime, TicketNumber, Vaccine, Venue, VenueDayKey, VenueId, VenueKind,
};
use crate::store::{AuditEntry, AuditTarget, Store, StoreError};

pub const DEMO_CENTRAL_CLINICS: usize = 100;
pub const DEMO_DIRECT_CLINICS: usize = 30;
pub const DEMO_RESIDENTS: usize = 3_000;
/// Days ahead that get bookable days.
pub const DEMO_DAYS_AHEAD: i64 = 21;
pub const DEMO_MASS_VENUE_ID: &str = "nakano-sunplaza";
/// The demo resident whose login the start-up banner prints.
pub const DEMO_TICKET_NUMBER: &str = "1311480001";

/// Keys used for roles whose key the environment does not set, in demo mode.
pub const DEMO_KEYS: [(&str, &str); 4] = [
    ("VAXSLOT_ADMIN_KEY", "demo-admin-key"),
    ("VAXSLOT_SRE_KEY", "demo-sre-key"),
    ("VAXSLOT_STAFF_KEY", "demo-staff-key"),
    ("VAXSLOT_OPERATOR_KEY", "demo-operator-key"),
];

/// Named demo accounts: id, role, display name, key. Their keys are printed
/// at start in demo mode; real accounts get random keys (`/v1/admin/accounts`).
pub const DEMO_ACCOUNTS: [(&str, Role, &str, &str); 4] = [
    (
        "op-01",
        Role::Operator,
        "コールセンター 1番",
        "vxk_demo-operator-01",
    ),
    (
        "op-02",
        Role::Operator,
        "コールセンター 2番",
        "vxk_demo-operator-02",
    ),
    (
        "tablet-sunplaza-1",
        Role::Staff,
        "中野サンプラザ 受付1",
        "vxk_demo-tablet-1",
    ),
    ("sre-on-call", Role::Sre, "SRE 当番", "vxk_demo-sre-on-call"),
];

/// Nakano ward's municipality code, printed on its tickets before the number.
pub const DEMO_MUNICIPALITY_CODE: &str = "131148";
/// The demo ward's name on the pages (`GET /v1/info`).
pub const DEMO_MUNICIPALITY_NAME: &str = "中野区（デモ）";

/// Places per slot the mass venue's first demo day holds for the call centre.
pub const DEMO_OPERATOR_HOLD: u32 = 5;

/// A small deterministic generator (xorshift64*), so the demo is the same
/// everywhere.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FAMILY_NAMES: [&str; 10] = [
    "中野", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "小林", "加藤",
];
const GIVEN_NAMES: [&str; 10] = [
    "太郎",
    "花子",
    "一郎",
    "美咲",
    "健太",
    "陽子",
    "翔",
    "さくら",
    "大輔",
    "由美",
];

fn slot(hh: u16, mm: u16, capacity: u32) -> SlotPlan {
    SlotPlan {
        time: SlotTime::parse(&format!("{hh:02}:{mm:02}")).expect("demo times are valid"),
        capacity,
        operator_hold: 0,
    }
}

/// The mass venue's day: 25 people per 15-minute slot (3 lanes), 20 slots, 500 a day.
fn mass_venue_day() -> DayPlan {
    let mut slots = Vec::new();
    for hour in [10u16, 11, 12, 14, 15] {
        for quarter in 0..4u16 {
            slots.push(slot(hour, quarter * 15, 25));
        }
    }
    DayPlan::new(Vaccine::Moderna, slots, None).expect("demo plan is valid")
}

/// The mass venue's first demo day: booking opens at 09:00 on `today`, and
/// each slot holds `DEMO_OPERATOR_HOLD` places for the call centre.
fn with_launch_window(plan: DayPlan, today: NaiveDate) -> DayPlan {
    let slots = plan
        .slots
        .iter()
        .map(|s| SlotPlan {
            operator_hold: DEMO_OPERATOR_HOLD,
            ..*s
        })
        .collect();
    let nine = today
        .and_hms_opt(9, 0, 0)
        .expect("09:00 is a valid time")
        .and_local_timezone(crate::domain::municipality_offset())
        .single()
        .expect("a fixed offset has one local time");
    let window = BookingWindow {
        opens_at: Some(nine),
        ..BookingWindow::default()
    };
    DayPlan::with_window(plan.vaccine, slots, plan.access_code, window).expect("demo plan is valid")
}

fn clinic_day(vaccine: Vaccine, capacity: u32) -> DayPlan {
    let slots = (0..6u16)
        .map(|i| slot(14 + i / 2, (i % 2) * 30, capacity))
        .collect();
    DayPlan::new(vaccine, slots, None).expect("demo plan is valid")
}

pub fn venues() -> Vec<Venue> {
    let mut venues = vec![Venue {
        id: VenueId::parse(DEMO_MASS_VENUE_ID).expect("valid id"),
        name: "中野サンプラザ 集団接種会場".into(),
        kind: VenueKind::Mass,
        booking: BookingMode::Central,
        address: "東京都中野区中野4-1-1".into(),
        phone: "03-0000-0000".into(),
        vaccines: vec![Vaccine::Moderna],
    }];
    for i in 1..=(DEMO_CENTRAL_CLINICS + DEMO_DIRECT_CLINICS) {
        let central = i <= DEMO_CENTRAL_CLINICS;
        let vaccines = match i % 3 {
            0 => vec![Vaccine::Moderna],
            1 => vec![Vaccine::Pfizer],
            _ => vec![Vaccine::Pfizer, Vaccine::Moderna],
        };
        venues.push(Venue {
            id: VenueId::parse(&format!("clinic-{i:03}")).expect("valid id"),
            name: format!("中野第{i}クリニック"),
            kind: VenueKind::Clinic,
            booking: if central {
                BookingMode::Central
            } else {
                BookingMode::Direct
            },
            address: format!("東京都中野区{}丁目{}", i % 6 + 1, i),
            phone: format!("03-5000-{i:04}"),
            vaccines,
        });
    }
    venues
}

/// Bookable days from `today` on: the mass venue Thursday to Saturday,
/// central clinics on weekdays.
pub fn days(today: NaiveDate, venues: &[Venue]) -> Vec<(VenueDayKey, DayPlan)> {
    let mut days = Vec::new();
    for offset in 0..DEMO_DAYS_AHEAD {
        let date = today + Duration::days(offset);
        let weekday = date.weekday();
        for venue in venues.iter().filter(|v| v.booking == BookingMode::Central) {
            let plan = match venue.kind {
                VenueKind::Mass
                    if matches!(weekday, Weekday::Thu | Weekday::Fri | Weekday::Sat) =>
                {
                    let first = !days
                        .iter()
                        .any(|(k, _): &(VenueDayKey, DayPlan)| k.venue_id == venue.id);
                    if first {
                        with_launch_window(mass_venue_day(), today)
                    } else {
                        mass_venue_day()
                    }
                }
                VenueKind::Clinic if !matches!(weekday, Weekday::Sat | Weekday::Sun) => {
                    let vaccine = venue.vaccines[offset as usize % venue.vaccines.len()];
                    clinic_day(vaccine, 2 + (venue.name.len() as u32 % 3))
                }
                _ => continue,
            };
            days.push((
                VenueDayKey {
                    venue_id: venue.id.clone(),
                    date,
                },
                plan,
            ));
        }
    }
    days
}

pub fn demo_birth_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1950, 4, 1).expect("valid date")
}

/// Residents 1311480001…: ages 12 to 95, 0 to 3 doses received, some high-risk.
pub fn residents(today: NaiveDate) -> Vec<Resident> {
    let mut dice = Dice(0x5eed_1311_4800_0001);
    let mut residents = Vec::with_capacity(DEMO_RESIDENTS);
    for i in 0..DEMO_RESIDENTS {
        let ticket = format!("{}", 1_311_480_001 + i as u64);
        let birth_date = if i == 0 {
            demo_birth_date()
        } else {
            let age_days = 365 * (12 + dice.below(84) as i64) + dice.below(365) as i64;
            today - Duration::days(age_days)
        };
        let doses = dice.below(4) as u8;
        let vaccine = if dice.below(2) == 0 {
            Vaccine::Pfizer
        } else {
            Vaccine::Moderna
        };
        let first = NaiveDate::from_ymd_opt(2021, 5, 1).expect("valid date")
            + Duration::days(dice.below(120) as i64);
        let history = (1..=doses)
            .map(|d| DoseRecord {
                dose: Dose::new(d).expect("1–3"),
                date: first + Duration::days(i64::from(d - 1) * 200),
                vaccine,
            })
            .filter(|r| r.date > birth_date && r.date <= today)
            .collect();
        residents.push(Resident {
            ticket_number: TicketNumber::parse(&ticket).expect("10 digits"),
            birth_date,
            name: format!(
                "{} {}",
                FAMILY_NAMES[dice.below(10) as usize],
                GIVEN_NAMES[dice.below(10) as usize]
            ),
            email: Some(format!("resident{i}@example.jp")),
            phone: Some(format!("03{:08}", dice.below(100_000_000))),
            high_risk: dice.below(5) == 0,
            history,
        });
    }
    residents
}

/// Fills the store if it holds no venue yet. Returns whether it did.
pub async fn fill_if_empty(store: &dyn Store, today: NaiveDate) -> Result<bool, StoreError> {
    if !store.load_venues().await?.is_empty() {
        return Ok(false);
    }
    let venues = venues();
    for (key, plan) in days(today, &venues) {
        store.put_day_plan(key, plan).await?;
    }
    for venue in venues {
        store.put_venue(venue).await?;
    }
    store.put_residents(residents(today)).await?;
    for (id, role, name, key) in DEMO_ACCOUNTS {
        let account = Account {
            id: AccountId::parse(id).expect("demo ids are valid"),
            role,
            display_name: name.to_owned(),
            created_at: crate::clock::now(),
            key_hash: crate::accounts::key_hash(key),
            // The sun plaza's tablet sees the sun plaza only.
            venues: (role == Role::Staff)
                .then(|| vec![VenueId::parse(DEMO_MASS_VENUE_ID).expect("a valid id")]),
        };
        let audit = AuditEntry::new(
            Actor::Env(Role::Admin),
            Role::Admin,
            "admin.account_put",
            AuditTarget {
                account_id: Some(account.id.clone()),
                ..AuditTarget::default()
            },
            "201 ok".to_owned(),
        );
        store.put_account(account, audit).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_shaped_like_the_ward_plan() {
        let today = NaiveDate::from_ymd_opt(2030, 7, 1).unwrap();
        let venues = venues();
        assert_eq!(venues.len(), 1 + DEMO_CENTRAL_CLINICS + DEMO_DIRECT_CLINICS);
        assert_eq!(mass_venue_day().capacity_total(), 500);
        let days = days(today, &venues);
        let mass_days = days
            .iter()
            .filter(|(k, _)| k.venue_id.as_str() == DEMO_MASS_VENUE_ID);
        assert!(
            mass_days.clone().all(|(k, _)| matches!(
                k.date.weekday(),
                Weekday::Thu | Weekday::Fri | Weekday::Sat
            ))
        );
        assert_eq!(mass_days.clone().count(), 9);
        let first = mass_days.clone().next().unwrap();
        assert!(
            first
                .1
                .slots
                .iter()
                .all(|s| s.operator_hold == DEMO_OPERATOR_HOLD)
        );
        assert!(first.1.window.opens_at.is_some());
        assert!(
            mass_days
                .skip(1)
                .all(|(_, plan)| plan.window.opens_at.is_none())
        );
        let residents = residents(today);
        assert_eq!(residents.len(), DEMO_RESIDENTS);
        assert!(residents.iter().all(|r| r.clone().validated(today).is_ok()));
        assert_eq!(residents[0].ticket_number.expose(), DEMO_TICKET_NUMBER);
    }
}
