//! The audit log: one entry per audited call, naming its account; durable
//! (it survives SIGKILL); paged with a cursor, every entry exactly once;
//! the CSV has the same rows; admin only.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_KEY, Backend, OPERATOR_KEY, SRE_KEY, STAFF_KEY, TestApp, future_date, ticket,
};
use crate::operator::all_audit;

async fn csv_rows(app: &TestApp, query: &str) -> Vec<Vec<String>> {
    let response = app
        .client
        .get(app.url(&format!("/v1/admin/audit?{query}")))
        .bearer_auth(ADMIN_KEY)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = response.bytes().await.unwrap();
    // UTF-8 with a BOM, for the spreadsheets of Japan.
    let text = std::str::from_utf8(&bytes)
        .unwrap()
        .strip_prefix('\u{feff}')
        .expect("a BOM first");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        vec![
            "id",
            "at",
            "actor",
            "role",
            "action",
            "venue_id",
            "date",
            "reservation_id",
            "ticket_number",
            "account_id",
            "outcome"
        ]
    );
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

async fn every_audited_call_is_logged_once_durably_and_pages_and_csv_agree(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(20);
    app.venue_day("audit-clinic", &date, &[("10:00", 50)]).await;
    app.import_residents(4_300_000_000, 20).await;
    // Twenty operator bookings (committed: their entries commit with them),
    // a roster read, the switch engaged and released by an SRE account.
    for i in 0..20 {
        let (status, body) = app
            .send(
                Method::POST,
                "/v1/operator/reservations",
                Some(OPERATOR_KEY),
                Some(
                    &json!({"ticket_number": ticket(4_300_000_000 + i), "birth_date": "1960-01-01",
                    "venue_id": "audit-clinic", "date": date, "time": "10:00"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = app
        .send(
            Method::GET,
            &format!("/v1/staff/venues/audit-clinic/days/{date}/roster"),
            Some(STAFF_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, sre) = app
        .send(
            Method::PUT,
            "/v1/admin/accounts/sre-1",
            Some(ADMIN_KEY),
            Some(&json!({"role": "sre", "display_name": "SRE"})),
        )
        .await;
    let sre_key = sre["key"].as_str().unwrap().to_owned();
    for engaged in [true, false] {
        let (status, _) = app
            .send(
                Method::PUT,
                "/v1/admin/kill-switch",
                Some(&sre_key),
                Some(&json!({"engaged": engaged, "reason": "rehearsal"})),
            )
            .await;
        assert_eq!(status, 200);
    }

    // SIGKILL: every entry is still there.
    let app = app.crash_and_restart().await;
    let everything = all_audit(&app, "", 1000).await;
    let count = |action: &str| everything.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("operator.book"), 20);
    assert_eq!(count("staff.roster"), 1);
    assert_eq!(count("kill_switch.set"), 2);
    assert_eq!(count("admin.account_put"), 1);
    assert!(count("admin.venue_put") >= 1 && count("admin.day_put") >= 1);
    assert_eq!(count("admin.residents_import"), 1);
    let switch: Vec<&Value> = everything
        .iter()
        .filter(|e| e["action"] == "kill_switch.set")
        .collect();
    assert_eq!(switch[0]["actor"], "account:sre-1");
    assert_eq!(switch[0]["role"], "sre");
    let roster = everything
        .iter()
        .find(|e| e["action"] == "staff.roster")
        .unwrap();
    assert_eq!(roster["actor"], "env:staff");
    assert_eq!(roster["target"]["venue_id"], "audit-clinic");

    // Oldest first; pages of 3 return every entry exactly once, in order.
    let times: Vec<String> = everything
        .iter()
        .map(|e| e["at"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by_key(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap());
    assert_eq!(times, sorted);
    let paged = all_audit(&app, "", 3).await;
    assert_eq!(paged, everything);
    let ids: HashSet<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), everything.len());

    // Filters: by action, by actor, by time.
    let books = all_audit(&app, "&action=operator.book", 7).await;
    assert_eq!(books.len(), 20);
    assert!(
        books
            .iter()
            .all(|e| e["actor"] == "env:operator" && e["outcome"] == "201 ok")
    );
    let since = books[10]["at"].as_str().unwrap();
    let later = all_audit(
        &app,
        &format!("&action=operator.book&since={}", urlencode(since)),
        100,
    )
    .await;
    assert_eq!(later.len(), 10);

    // The CSV has the same rows.
    let rows = csv_rows(&app, "limit=1000").await;
    assert_eq!(rows.len(), everything.len());
    for (row, entry) in rows.iter().zip(&everything) {
        assert_eq!(row[0], entry["id"].as_str().unwrap());
        assert_eq!(row[4], entry["action"].as_str().unwrap());
        assert_eq!(
            row[8],
            entry["target"]["ticket_number"].as_str().unwrap_or("")
        );
        assert_eq!(row[10], entry["outcome"].as_str().unwrap());
    }
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn only_admins_read_the_audit_log_and_bad_queries_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for key in [OPERATOR_KEY, SRE_KEY, STAFF_KEY] {
        let (status, _) = app
            .send(Method::GET, "/v1/admin/audit", Some(key), None)
            .await;
        assert_eq!(status, 403);
    }
    for query in [
        "limit=0",
        "limit=1001",
        "since=yesterday",
        "after=nonsense",
        "actor=bob",
        "colour=red",
    ] {
        let (status, body) = app
            .send(
                Method::GET,
                &format!("/v1/admin/audit?{query}"),
                Some(ADMIN_KEY),
                None,
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_query")),
            "{query}"
        );
    }
    let (status, page) = app
        .send(Method::GET, "/v1/admin/audit", Some(ADMIN_KEY), None)
        .await;
    assert_eq!((status, &page["next"]), (200, &Value::Null));
}

on_both_stores!(
    every_audited_call_is_logged_once_durably_and_pages_and_csv_agree,
    only_admins_read_the_audit_log_and_bad_queries_are_refused,
);
