//! The call centre's channel: the caller identified by ticket number and
//! birth date (a mismatch is `404` and feeds the ticket's lockout), bookings
//! visible to the resident, another resident's reservation invisible, and
//! every call in the audit log with the operator's account.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, TestApp, future_date, ticket};

const BIRTH: &str = "1960-01-01";

async fn operator_account(app: &TestApp, id: &str) -> String {
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/accounts/{id}"),
            Some(ADMIN_KEY),
            Some(&json!({"role": "operator", "display_name": "コールセンター"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

async fn operator_book(
    app: &TestApp,
    key: &str,
    ticket_number: &str,
    birth: &str,
    date: &str,
) -> (u16, Value) {
    app.send(
        Method::POST,
        "/v1/operator/reservations",
        Some(key),
        Some(&json!({"ticket_number": ticket_number, "birth_date": birth,
            "venue_id": "call-clinic", "date": date, "time": "10:00"})),
    )
    .await
}

/// Every audit entry, paging through with `limit`.
pub async fn all_audit(app: &TestApp, filter: &str, limit: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/audit?limit={limit}{filter}");
        if let Some(cursor) = &after {
            path.push_str(&format!("&after={cursor}"));
        }
        let (status, page) = app.send(Method::GET, &path, Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{page}");
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return entries,
        }
    }
}

async fn an_operator_books_and_cancels_for_a_caller_identified_like_a_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.venue_day("call-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(4_100_000_000, 2).await;
    let key = operator_account(&app, "op-7").await;
    let (caller, other) = (ticket(4_100_000_000), ticket(4_100_000_001));

    // Wrong birth date: 404, like an unknown resident; and it counts.
    let (status, body) = operator_book(&app, &key, &caller, "1960-01-02", &date).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = app
        .send(
            Method::GET,
            &format!("/v1/operator/residents/{caller}?birth_date=1961-01-01"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // The right identity books, as the operator channel.
    let (status, booked) = operator_book(&app, &key, &caller, BIRTH, &date).await;
    assert_eq!(status, 201, "{booked}");
    assert_eq!(booked["channel"], "operator");
    let id = booked["reservation_id"].as_str().unwrap().to_owned();
    // The resident sees it.
    let token = app.login_as(&caller, BIRTH).await;
    let (_, mine) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(mine["reservations"][0]["reservation_id"], id.as_str());
    // The lookup shows profile, eligibility and reservations.
    let (status, profile) = app
        .send(
            Method::GET,
            &format!("/v1/operator/residents/{caller}?birth_date={BIRTH}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["ticket_number"], caller.as_str());
    assert_eq!(profile["reservations"][0]["reservation_id"], id.as_str());

    // Another resident's identity cannot cancel it: 404, and nothing changes.
    let (status, body) = app
        .send(
            Method::DELETE,
            &format!("/v1/operator/reservations/{id}?ticket_number={other}&birth_date={BIRTH}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert_eq!(app.slots("call-clinic", &date).await[0].2, 4);
    let (status, cancelled) = app
        .send(
            Method::DELETE,
            &format!("/v1/operator/reservations/{id}?ticket_number={caller}&birth_date={BIRTH}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    assert_eq!(app.slots("call-clinic", &date).await[0].2, 5);

    // Residents and other roles may not use the operator endpoints.
    let (status, _) = operator_book(&app, &token, &caller, BIRTH, &date).await;
    assert_eq!(status, 403);

    // Every call is in the audit log, with the operator's account.
    let entries = all_audit(&app, "&actor=account:op-7", 2).await;
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("operator.book", "404 not_found"),
            ("operator.lookup", "404 not_found"),
            ("operator.book", "201 ok"),
            ("operator.lookup", "200 ok"),
            ("operator.cancel", "404 not_found"),
            ("operator.cancel", "200 ok"),
        ]
    );
    assert!(entries.iter().all(|e| e["role"] == "operator"));
    assert_eq!(entries[2]["target"]["reservation_id"], id.as_str());
    assert_eq!(entries[2]["target"]["ticket_number"], caller.as_str());
    assert_eq!(entries[5]["target"]["reservation_id"], id.as_str());
    // The ticket number is in the audit log, never in the server's log.
    assert!(!app.logs().contains(&caller));
}

async fn six_wrong_birth_dates_lock_the_ticket_for_the_operator_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.venue_day("call-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(4_200_000_000, 1).await;
    let caller = ticket(4_200_000_000);
    for guess in 1..=5 {
        let (status, _) = operator_book(
            &app,
            OPERATOR_KEY,
            &caller,
            &format!("1960-02-{guess:02}"),
            &date,
        )
        .await;
        assert_eq!(status, 404, "guess {guess}");
    }
    let (status, body) = operator_book(&app, OPERATOR_KEY, &caller, "1960-03-01", &date).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    // Locked even with the right birth date, and for the resident's own login.
    let (status, _) = operator_book(&app, OPERATOR_KEY, &caller, BIRTH, &date).await;
    assert_eq!(status, 429);
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": caller, "birth_date": BIRTH})),
        )
        .await;
    assert_eq!(status, 429);
    // The environment's operator key is audited as env:operator.
    let entries = all_audit(&app, "&actor=env:operator&action=operator.book", 100).await;
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[6]["outcome"], "429 too_many_attempts");
}

on_both_stores!(
    an_operator_books_and_cancels_for_a_caller_identified_like_a_login,
    six_wrong_birth_dates_lock_the_ticket_for_the_operator_too,
);
