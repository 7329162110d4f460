//! The eligibility table through HTTP, row by row, with the edges; and what
//! `GET /v1/me` tells a resident about the next dose.

use chrono::{Days, Months, NaiveDate};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, Via};

struct Row {
    case: &'static str,
    birth: NaiveDate,
    high_risk: bool,
    history: Vec<(u8, NaiveDate, &'static str)>,
    vaccine: &'static str,
    dose: Option<u8>,
    past_day: bool,
    /// `None`: 201; `Some(reason)`: 422 not_eligible with that reason.
    refused: Option<&'static str>,
}

fn years_before(date: NaiveDate, years: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(12 * years)).unwrap()
}

fn months_before(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(months)).unwrap()
}

fn days_before(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_sub_days(Days::new(days)).unwrap()
}

fn next_day(date: NaiveDate) -> NaiveDate {
    date.checked_add_days(Days::new(1)).unwrap()
}

fn rows(slot: NaiveDate) -> Vec<Row> {
    let adult = years_before(slot, 70);
    let row = |case, birth, history: Vec<(u8, NaiveDate, &'static str)>, vaccine, refused| Row {
        case,
        birth,
        high_risk: false,
        history,
        vaccine,
        dose: None,
        past_day: false,
        refused,
    };
    let two_doses = |d2: NaiveDate| vec![(1, years_before(slot, 1), "pfizer"), (2, d2, "pfizer")];
    let three_doses = |d3: NaiveDate| {
        vec![
            (1, years_before(slot, 2), "pfizer"),
            (
                2,
                years_before(slot, 2)
                    .checked_add_days(Days::new(30))
                    .unwrap(),
                "pfizer",
            ),
            (3, d3, "moderna"),
        ]
    };
    vec![
        row(
            "pfizer dose 1 at exactly 12",
            years_before(slot, 12),
            vec![],
            "pfizer",
            None,
        ),
        row(
            "pfizer dose 1 the day before turning 12",
            next_day(years_before(slot, 12)),
            vec![],
            "pfizer",
            Some("too_young"),
        ),
        row(
            "moderna dose 1 at 17",
            next_day(years_before(slot, 18)),
            vec![],
            "moderna",
            Some("too_young"),
        ),
        row(
            "moderna dose 1 at exactly 18",
            years_before(slot, 18),
            vec![],
            "moderna",
            None,
        ),
        row(
            "pfizer dose 2 at exactly +21 days",
            adult,
            vec![(1, days_before(slot, 21), "pfizer")],
            "pfizer",
            None,
        ),
        row(
            "pfizer dose 2 at +20 days",
            adult,
            vec![(1, days_before(slot, 20), "pfizer")],
            "pfizer",
            Some("too_early"),
        ),
        row(
            "moderna dose 2 at exactly +28 days",
            adult,
            vec![(1, days_before(slot, 28), "moderna")],
            "moderna",
            None,
        ),
        row(
            "moderna dose 2 at +27 days",
            adult,
            vec![(1, days_before(slot, 27), "moderna")],
            "moderna",
            Some("too_early"),
        ),
        row(
            "dose 2 with the other vaccine",
            adult,
            vec![(1, days_before(slot, 60), "pfizer")],
            "moderna",
            Some("wrong_vaccine"),
        ),
        Row {
            dose: Some(2),
            ..row(
                "dose 2 without dose 1",
                adult,
                vec![],
                "pfizer",
                Some("no_prior_dose"),
            )
        },
        row(
            "dose 3 at +5 months",
            adult,
            two_doses(months_before(slot, 5)),
            "moderna",
            None,
        ),
        row(
            "dose 3 a day before +5 months",
            adult,
            two_doses(next_day(months_before(slot, 5))),
            "moderna",
            Some("too_early"),
        ),
        row(
            "dose 3 at 17",
            next_day(years_before(slot, 18)),
            two_doses(months_before(slot, 6)),
            "moderna",
            Some("too_young"),
        ),
        row(
            "dose 4 on the 60th birthday",
            years_before(slot, 60),
            three_doses(months_before(slot, 5)),
            "moderna",
            None,
        ),
        row(
            "dose 4 the day before turning 60",
            next_day(years_before(slot, 60)),
            three_doses(months_before(slot, 5)),
            "moderna",
            Some("not_in_target_group"),
        ),
        Row {
            high_risk: true,
            ..row(
                "dose 4 at 40, high risk",
                years_before(slot, 40),
                three_doses(months_before(slot, 5)),
                "moderna",
                None,
            )
        },
        row(
            "dose 4 a day before +5 months",
            adult,
            three_doses(next_day(months_before(slot, 5))),
            "moderna",
            Some("too_early"),
        ),
        row(
            "dose 5: none yet",
            adult,
            {
                let mut h = three_doses(months_before(slot, 12));
                h.push((4, months_before(slot, 6), "moderna"));
                h
            },
            "moderna",
            Some("completed"),
        ),
        Row {
            past_day: true,
            ..row(
                "a slot date in the past",
                adult,
                vec![],
                "pfizer",
                Some("past_date"),
            )
        },
    ]
}

fn ticket(i: usize) -> String {
    format!("{}", 1_500_000_000 + i)
}

fn record(i: usize, row: &Row) -> Value {
    let history: Vec<Value> = row
        .history
        .iter()
        .map(|(dose, date, vaccine)| json!({"dose": dose, "date": date.to_string(), "vaccine": vaccine}))
        .collect();
    json!({"ticket_number": ticket(i), "birth_date": row.birth.to_string(), "name": "規則 確認",
        "high_risk": row.high_risk, "history": history})
}

async fn the_rule_table_row_by_row(backend: Backend, via: Via) {
    let app = TestApp::spawn(backend).await;
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let slot = today.checked_add_days(Days::new(2)).unwrap();
    let yesterday = days_before(today, 1);
    for vaccine in ["pfizer", "moderna"] {
        app.vaccine_day(&format!("{vaccine}-venue"), &slot.to_string(), vaccine, 100)
            .await;
        app.vaccine_day(
            &format!("{vaccine}-venue"),
            &yesterday.to_string(),
            vaccine,
            100,
        )
        .await;
    }
    let rows = rows(slot);
    app.import(Value::Array(
        rows.iter().enumerate().map(|(i, r)| record(i, r)).collect(),
    ))
    .await;

    for (i, row) in rows.iter().enumerate() {
        let booker = app.booker(via, &ticket(i), &row.birth.to_string()).await;
        let date = if row.past_day { yesterday } else { slot };
        let mut body = json!({"venue_id": format!("{}-venue", row.vaccine), "date": date.to_string(),
            "time": "10:00"});
        if let Some(dose) = row.dose {
            body["dose"] = json!(dose);
        }
        let (status, answer) = app.book_via(&booker, &body, None).await;
        let answer: Value = serde_json::from_str(&answer).unwrap();
        match row.refused {
            None => assert_eq!(status, 201, "{}: {answer}", row.case),
            Some(reason) => {
                assert_eq!(status, 422, "{}: {answer}", row.case);
                assert_eq!(answer["code"], "not_eligible", "{}", row.case);
                assert_eq!(answer["reason"], reason, "{}", row.case);
            }
        }
    }
}

async fn me_explains_what_comes_next_and_from_when(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let today = vaxslot::domain::local_date(chrono::Utc::now());
    let dose1 = days_before(today, 10);
    app.import(json!([
        {"ticket_number": "1600000001", "birth_date": "1950-04-01", "name": "二回目 待ち",
         "history": [{"dose": 1, "date": dose1.to_string(), "vaccine": "moderna"}]},
        {"ticket_number": "1600000002", "birth_date": "1950-04-01", "name": "全部 済み",
         "history": [
            {"dose": 1, "date": "2021-06-01", "vaccine": "pfizer"},
            {"dose": 2, "date": "2021-06-22", "vaccine": "pfizer"},
            {"dose": 3, "date": "2022-01-10", "vaccine": "moderna"},
            {"dose": 4, "date": "2022-07-10", "vaccine": "moderna"}]},
    ]))
    .await;
    let token = app.login_as("1600000001", "1950-04-01").await;
    let (_, me) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        me["eligibility"],
        json!({"next_dose": 2, "vaccines": ["moderna"],
            "earliest_date": dose1.checked_add_days(Days::new(28)).unwrap().to_string()})
    );
    let token = app.login_as("1600000002", "1950-04-01").await;
    let (_, me) = app.send(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(me["eligibility"], Value::Null, "nothing more can be booked");
}

on_both_stores!(me_explains_what_comes_next_and_from_when);
on_both_stores_and_channels!(the_rule_table_row_by_row);
