//! The jobs of the four pages, done in the browser and checked through the
//! API afterwards: a resident books, sees and cancels (with the cascade
//! stated first); an operator books for a caller; a nurse checks in by
//! typing a code and Enter; an SRE engages the kill switch and the resident
//! page then says booking is paused; `overloaded` shows a countdown and
//! the booking goes through by itself once the server has room.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{ADMIN_KEY, Backend, OPERATOR_KEY, SRE_KEY, STAFF_KEY, TestApp, future_date};

const TICKET: &str = "1311480101";
const BIRTH_DATE: &str = "1950-04-01";
const NAME: &str = "中野 花子";
const VENUE: &str = "sunplaza";

/// A central venue offering both vaccines.
async fn venue(app: &TestApp) {
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/{VENUE}"),
            Some(ADMIN_KEY),
            Some(
                &json!({"name": "中野サンプラザ", "kind": "mass", "booking": "central",
                "address": "中野区中野4-1-1", "phone": "03-0000-0000",
                "vaccines": ["moderna", "pfizer"]}),
            ),
        )
        .await;
    assert!(status == 201 || status == 200, "venue: {body}");
}

/// A day of the venue (put first, if it is not there yet).
async fn day(app: &TestApp, date: &str, slots: Value) {
    venue(app).await;
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/v1/admin/venues/{VENUE}/days/{date}"),
            Some(ADMIN_KEY),
            Some(&json!({"vaccine": "moderna", "slots": slots, "access_code": null})),
        )
        .await;
    assert!(status == 201 || status == 200, "day: {body}");
}

async fn resident(app: &TestApp, history: Value) {
    app.import(
        json!([{"ticket_number": TICKET, "birth_date": BIRTH_DATE, "name": NAME,
        "email": "hanako@example.jp", "phone": "0312345678", "high_risk": false,
        "history": history}]),
    )
    .await;
}

/// The resident's reservations, through the API.
async fn reservations(app: &TestApp) -> Vec<Value> {
    let token = app.login_as(TICKET, BIRTH_DATE).await;
    let (status, body) = app
        .send(Method::GET, "/v1/reservations", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["reservations"].as_array().expect("list").clone()
}

/// Books the 10:30 slot of `date` for a resident, through the API.
async fn book_through_api(app: &TestApp, token: &str, date: &str, dose: Option<u8>) {
    let mut body = json!({"venue_id": VENUE, "date": date, "time": "10:30"});
    if let Some(dose) = dose {
        body["dose"] = json!(dose);
    }
    let (status, answer) = app
        .send(Method::POST, "/v1/reservations", Some(token), Some(&body))
        .await;
    assert_eq!(status, 201, "{answer}");
}

async fn start() -> (tokio::sync::SemaphorePermit<'static>, Browser) {
    let permit = crate::BROWSERS_AT_ONCE.acquire().await.expect("semaphore");
    (permit, Browser::start().await)
}

/// Logs in on the resident page and finds the 10:30 slot of `date`.
async fn log_in_and_find_slot(browser: &Browser, app: &TestApp, date: &str) {
    browser.goto(&app.url("/")).await;
    browser.fill("ticket_number", TICKET).await;
    browser.fill("birth_date", BIRTH_DATE).await;
    browser.press("ログインする").await;
    browser.shows("#resident-name", NAME).await;
    browser.choose("date", date).await;
    browser.choose("vaccine", "moderna").await;
    browser.press("空きを探す").await;
    browser
        .appears(&format!(
            "#results [data-venue-id='{VENUE}'] button[data-time='10:30']"
        ))
        .await
        .click()
        .await
        .expect("slot chosen");
    browser.shows("#confirm-facts", "10時30分").await;
}

#[tokio::test]
async fn a_resident_logs_in_books_sees_the_booking_and_cancels_it_with_its_cascade() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (first, second) = (future_date(3), future_date(31));
    day(&app, &first, json!([{"time": "10:30", "capacity": 5}])).await;
    day(&app, &second, json!([{"time": "10:30", "capacity": 5}])).await;
    resident(&app, json!([])).await;
    let (_permit, browser) = start().await;

    browser.goto(&app.url("/")).await;
    browser.check_page("resident-1-login").await;
    log_in_and_find_slot(&browser, &app, &first).await;
    browser.shows("#eligibility", "1回目").await;
    browser.check_page("resident-2-confirm").await;
    browser.press("予約する").await;
    browser.shows("#message", "予約が完了しました").await;
    browser.check_page("resident-3-booked").await;

    let booked = reservations(&app).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(booked[0]["status"], "booked");
    assert_eq!(booked[0]["date"], first.as_str());
    assert_eq!(booked[0]["channel"], "web");
    let first_id = booked[0]["reservation_id"].as_str().unwrap().to_owned();
    // The page shows it.
    browser
        .appears(&format!(
            "#reservations li[data-reservation-id='{first_id}']"
        ))
        .await;

    // Dose 2, booked elsewhere (the call centre, say): the page shows it
    // after a reload, and cancelling dose 1 says that dose 2 goes too.
    let token = app.login_as(TICKET, BIRTH_DATE).await;
    book_through_api(&app, &token, &second, Some(2)).await;
    browser.goto(&app.url("/")).await;
    browser
        .appears(&format!(
            "#reservations li[data-reservation-id='{first_id}'] button"
        ))
        .await
        .click()
        .await
        .expect("cancel asked");
    let summary = browser.shows("#cancel-summary", "2回目").await;
    assert!(summary.contains("あわせて"), "{summary}");
    browser.check_page("resident-4-cancel-confirm").await;
    browser.press("取り消す").await;
    let said = browser.shows("#message", "予約を取り消しました").await;
    assert!(
        said.contains("1回目") && said.contains("2回目"),
        "both doses named: {said}"
    );

    let after = reservations(&app).await;
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|r| r["status"] == "cancelled"),
        "both doses cancelled: {after:?}"
    );
    browser.close().await;
}

#[tokio::test]
async fn an_operator_books_for_a_caller_with_held_seats_in_view() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(3);
    day(
        &app,
        &date,
        json!([{"time": "10:30", "capacity": 4, "operator_hold": 2}]),
    )
    .await;
    resident(&app, json!([])).await;
    let (_permit, browser) = start().await;

    browser.goto(&app.url("/operator/")).await;
    browser.check_page("operator-1-key").await;
    browser.fill("key", OPERATOR_KEY).await;
    browser.press("使い始める").await;
    browser.fill("ticket_number", TICKET).await;
    browser.fill("birth_date", BIRTH_DATE).await;
    browser.press("確認する").await;
    browser.shows("#profile-facts", NAME).await;
    browser.choose("date", &date).await;
    browser.press("空きを探す").await;
    let slot = browser
        .appears(&format!(
            "#results [data-venue-id='{VENUE}'] button[data-time='10:30']"
        ))
        .await;
    let label = slot.text().await.unwrap();
    assert!(label.contains("電話枠2"), "held seats shown: {label}");
    browser.check_page("operator-2-slots").await;
    slot.click().await.unwrap();
    browser.shows("#confirm-facts", NAME).await;
    browser.press("この内容で予約する").await;
    let said = browser.shows("#message", "予約できました").await;
    assert!(said.contains("10時30分"), "{said}");
    browser.check_page("operator-3-booked").await;

    let booked = reservations(&app).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(booked[0]["channel"], "operator");
    assert_eq!(booked[0]["status"], "booked");
    // The page lists it for the caller; the caller changes their mind.
    browser
        .appears(&format!(
            "#reservations li[data-reservation-id='{}'][data-status='booked'] button",
            booked[0]["reservation_id"].as_str().unwrap()
        ))
        .await
        .click()
        .await
        .unwrap();
    browser.shows("#cancel-summary", "10時30分").await;
    browser.press("取り消しを確定する").await;
    browser.shows("#message", "取り消しました").await;
    browser.check_page("operator-4-cancelled").await;
    let after = reservations(&app).await;
    assert_eq!(after[0]["status"], "cancelled", "{after:?}");
    browser.close().await;
}

#[tokio::test]
async fn a_nurse_checks_in_by_typing_a_code_and_enter() {
    let today = future_date(0);
    // The server's day starts at 08:00, so that today's 10:30 has not started.
    let app = TestApp::spawn_with_env(
        Backend::Embedded,
        &[("VAXSLOT_CLOCK_START", &morning(&today))],
    )
    .await;
    day(&app, &today, json!([{"time": "10:30", "capacity": 5}])).await;
    resident(
        &app,
        json!([{"dose": 1, "date": "2021-06-01", "vaccine": "moderna"}]),
    )
    .await;
    let token = app.login_as(TICKET, BIRTH_DATE).await;
    book_through_api(&app, &token, &today, None).await;
    let (_permit, browser) = start().await;

    browser.goto(&app.url("/staff/")).await;
    browser.check_page("staff-1-setup").await;
    browser.fill("key", STAFF_KEY).await;
    browser.choose("venue_id", VENUE).await;
    browser.press("受付を始める").await;
    browser.shows("#counts", "予約済み 1").await;
    // A barcode scanner types the digits, then Enter.
    browser
        .fill("code", &format!("{TICKET}{}", fantoccini::key::Key::Enter))
        .await;
    let answer = browser.shows("#result.ok", "受付完了 — 2回目").await;
    assert!(answer.contains(NAME), "{answer}");
    browser.shows("#counts", "接種済み 1").await;
    browser.check_page("staff-2-checked-in").await;

    let (status, roster) = roster(&app, &today).await;
    assert_eq!(status, 200);
    assert_eq!(roster["rows"][0]["status"], "attended", "{roster}");

    // The same code again: red, already attended.
    browser
        .fill("code", &format!("{TICKET}{}", fantoccini::key::Key::Enter))
        .await;
    browser.shows("#result.bad", "すでに受付済み").await;
    browser.check_page("staff-3-already").await;

    // The roster as CSV, downloaded by the browser.
    browser
        .client
        .find(Locator::Id("download"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let downloaded = downloaded_csv(&browser).await;
    // The same bytes as the API's answer: a BOM, so that a spreadsheet in
    // Japan reads the names right.
    let answered = app.roster_csv(VENUE, &today).await;
    assert_eq!(downloaded, answered);
    let csv = std::str::from_utf8(&downloaded)
        .unwrap()
        .strip_prefix('\u{feff}')
        .expect("the download starts with a BOM");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,reservation_id,ticket_number,name,birth_date,dose,vaccine,status,channel")
    );
    let row = lines.next().expect("one row");
    assert!(row.contains(TICKET) && row.contains("attended"), "{row}");
    browser.close().await;
}

/// A tablet whose key is limited to one venue offers that venue only, and
/// starts its desk there whatever was chosen before the key was known.
#[tokio::test]
async fn a_tablet_limited_to_its_venue_offers_only_that_venue() {
    let today = future_date(0);
    let app = TestApp::spawn_with_env(
        Backend::Embedded,
        &[("VAXSLOT_CLOCK_START", &morning(&today))],
    )
    .await;
    day(&app, &today, json!([{"time": "10:30", "capacity": 5}])).await;
    app.venue_day("clinic-002", &today, &[("10:30", 5)]).await;
    let (status, account) = app
        .send(
            Method::PUT,
            "/v1/admin/accounts/tablet-sunplaza-1",
            Some(ADMIN_KEY),
            Some(&json!({"role": "staff", "display_name": "サンプラザ 受付1", "venues": [VENUE]})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let (_permit, browser) = start().await;
    browser.goto(&app.url("/staff/")).await;
    // Before the key is known, every central venue is offered.
    browser.choose("venue_id", "clinic-002").await;
    browser.fill("key", account["key"].as_str().unwrap()).await;
    browser.press("受付を始める").await;
    browser.shows("#desk-venue", "中野サンプラザ").await;
    browser.shows("#counts", "予約済み 0").await;
    let mut offered = Vec::new();
    for option in browser
        .client
        .find_all(Locator::Css("#venue_id option"))
        .await
        .unwrap()
    {
        offered.push(option.attr("value").await.unwrap().unwrap_or_default());
    }
    assert_eq!(offered, [VENUE]);
    browser.close().await;
}

async fn roster(app: &TestApp, date: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(&format!("/v1/staff/venues/{VENUE}/days/{date}/roster")))
        .bearer_auth(STAFF_KEY)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn downloaded_csv(browser: &Browser) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = std::fs::read_dir(browser.downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        if let Some(path) = done {
            return std::fs::read(path).unwrap();
        }
        assert!(Instant::now() < deadline, "no CSV downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_sre_engages_the_kill_switch_and_the_resident_page_says_booking_is_paused() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(3);
    day(&app, &date, json!([{"time": "10:30", "capacity": 5}])).await;
    resident(&app, json!([])).await;
    let (_permit, browser) = start().await;

    browser.goto(&app.url("/sre/")).await;
    browser.fill("key", SRE_KEY).await;
    browser.press("表示する").await;
    browser.appears("#switch-state[data-engaged='false']").await;
    browser.shows("#figures", "予約成立/秒").await;
    // This server sends no mail: the console says so rather than "0".
    browser.shows("#figures", "メール送信なし").await;
    browser.check_page("sre-1-console").await;
    // No reason, no stop.
    browser.press("予約を停止する…").await;
    browser.shows("#message", "理由を入力してください").await;
    assert_eq!(
        app.send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
            .await
            .1["engaged"],
        false
    );
    browser.fill("reason", "ログイン障害のため停止").await;
    browser.press("予約を停止する…").await;
    browser
        .shows("#switch-confirm-text", "ログイン障害のため停止")
        .await;
    browser.check_page("sre-2-confirm").await;
    browser.press("停止を確定する").await;
    browser.appears("#switch-state[data-engaged='true']").await;
    browser.shows("#switch-state", "停止中").await;
    browser.check_page("sre-3-engaged").await;

    let (status, switch) = app
        .send(Method::GET, "/v1/admin/kill-switch", Some(SRE_KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(switch["engaged"], true, "{switch}");
    assert_eq!(switch["reason"], "ログイン障害のため停止");

    // A resident tries to book meanwhile.
    log_in_and_find_slot(&browser, &app, &date).await;
    browser.press("予約する").await;
    let said = browser.shows("#message", "一時停止").await;
    assert!(said.contains("ごろ"), "says when to retry: {said}");
    browser.check_page("resident-5-paused").await;
    assert!(reservations(&app).await.is_empty(), "nothing was booked");
    browser.close().await;
}

#[tokio::test]
async fn overloaded_shows_a_countdown_and_the_booking_goes_through_by_itself() {
    let app = TestApp::spawn_with_env(Backend::Embedded, &[("VAXSLOT_MAX_IN_FLIGHT", "2")]).await;
    let date = future_date(3);
    day(&app, &date, json!([{"time": "10:30", "capacity": 5}])).await;
    resident(&app, json!([])).await;
    let (_permit, browser) = start().await;
    log_in_and_find_slot(&browser, &app, &date).await;

    // The server is full: two requests held in flight.
    let held = app.hold_in_flight(2).await;
    browser.press("予約する").await;
    let waiting = browser
        .shows("#wait", "秒で、自動的にもう一度試します")
        .await;
    assert!(waiting.contains("混み合って"), "{waiting}");
    browser.appears("#wait[data-countdown]").await;
    browser.screenshot("resident-6-overloaded").await;

    drop(held);
    browser.shows("#message", "予約が完了しました").await;
    let booked = reservations(&app).await;
    assert_eq!(booked.len(), 1, "exactly one booking: {booked:?}");
    assert!(browser.console_errors().await.is_empty());
    browser.close().await;
}

#[tokio::test]
async fn a_slot_taken_meanwhile_says_so_and_shows_the_slots_again() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(3);
    day(&app, &date, json!([{"time": "10:30", "capacity": 1}])).await;
    resident(&app, json!([])).await;
    app.import(
        json!([{"ticket_number": "1311480102", "birth_date": BIRTH_DATE,
        "name": "別の 住民", "high_risk": false, "history": []}]),
    )
    .await;
    let (_permit, browser) = start().await;
    log_in_and_find_slot(&browser, &app, &date).await;

    // Someone else takes the last seat while the resident reads the summary.
    let other = app.login_as("1311480102", BIRTH_DATE).await;
    book_through_api(&app, &other, &date, None).await;

    browser.press("予約する").await;
    browser.shows("#message", "満員になりました").await;
    let refreshed = browser
        .appears(&format!(
            "#results [data-venue-id='{VENUE}'] button[data-time='10:30']"
        ))
        .await;
    assert!(refreshed.text().await.unwrap().contains("満員"));
    assert!(
        !refreshed.is_enabled().await.unwrap(),
        "a full slot cannot be picked"
    );
    browser.check_page("resident-7-slot-full").await;
    assert!(reservations(&app).await.is_empty());
    browser.close().await;
}

#[tokio::test]
async fn an_expired_session_returns_to_the_login() {
    let lifetime_s = 3;
    let app = TestApp::spawn_with_env(
        Backend::Embedded,
        &[("VAXSLOT_TOKEN_LIFETIME_S", &lifetime_s.to_string())],
    )
    .await;
    let date = future_date(3);
    day(&app, &date, json!([{"time": "10:30", "capacity": 5}])).await;
    resident(&app, json!([])).await;
    let (_permit, browser) = start().await;
    log_in_and_find_slot(&browser, &app, &date).await;
    tokio::time::sleep(Duration::from_secs(lifetime_s + 1)).await;
    browser.press("予約する").await;
    browser
        .shows("#message", "ログインの有効期限が切れました")
        .await;
    browser
        .appears("form:not([hidden]) [name='ticket_number']")
        .await;
    assert!(reservations(&app).await.is_empty());
    browser.close().await;
}

/// 08:00 (Tokyo) on `date`: a clock start before any of the day's slots.
fn morning(date: &str) -> String {
    format!("{date}T08:00:00+09:00")
}
