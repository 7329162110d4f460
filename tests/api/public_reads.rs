//! The public reads as a CDN or a reverse proxy sees them: a strong `ETag`,
//! `304` on `If-None-Match`, `Cache-Control: public, max-age=1, …`,
//! `Vary: Accept-Encoding`, gzip and brotli that decode to exactly the
//! uncompressed body; and never a `304` or a body that hides a change older
//! than a second.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::header;

use crate::helpers::{Backend, OPERATOR_KEY, TestApp, future_date};

/// How long after a booking the public reads must show it (API.md: lag up
/// to one second), plus a margin for a busy test machine.
const LAG_MAX: Duration = Duration::from_millis(1500);

async fn get(
    app: &TestApp,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    request.send().await.expect("answers")
}

async fn a_booking_changes_the_etag_within_a_second_and_304_never_hides_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = future_date(5);
    app.venue_day("etag-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(5_500_000_000, 1).await;
    let token = app.login(5_500_000_000).await;
    let path = format!("/v1/availability?date={date}");

    let first = get(&app, &path, &[]).await;
    assert_eq!(first.status(), 200);
    let headers = first.headers().clone();
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong tag: {etag}"
    );
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=1, stale-while-revalidate=2"
    );
    assert_eq!(headers[header::VARY], "Accept-Encoding");
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["days"][0]["slots"][0]["remaining"], 5);

    let unchanged = get(&app, &path, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()[header::ETAG].to_str().unwrap(), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    let (status, _) = app.book(&token, "etag-clinic", &date, "10:00").await;
    assert_eq!(status, 201);
    let booked_at = Instant::now();
    // Within a second the tag changes, and the body shows the booking.
    loop {
        let answer = get(&app, &path, &[(header::IF_NONE_MATCH, &etag)]).await;
        if answer.status() == 200 {
            assert_ne!(answer.headers()[header::ETAG].to_str().unwrap(), etag);
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["days"][0]["slots"][0]["remaining"], 4);
            break;
        }
        assert_eq!(answer.status(), 304);
        assert!(
            booked_at.elapsed() < LAG_MAX,
            "the old tag still matched after {:?}",
            booked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the second is over, the old tag never matches again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = get(&app, &path, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(
        later.status(),
        200,
        "a 304 hid a change older than a second"
    );
}

on_both_stores!(a_booking_changes_the_etag_within_a_second_and_304_never_hides_it);

#[tokio::test]
async fn compressed_public_reads_decode_to_exactly_the_uncompressed_body() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(5);
    for i in 0..40 {
        app.venue_day(
            &format!("zip-clinic-{i:02}"),
            &date,
            &[("10:00", 5), ("10:30", 5), ("11:00", 5)],
        )
        .await;
    }
    for path in [
        format!("/v1/availability?date={date}"),
        "/v1/venues".to_owned(),
    ] {
        let plain = get(&app, &path, &[]).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain_tag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
        let plain = plain.bytes().await.unwrap();

        let gzip = get(&app, &path, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip", "{path}");
        let gzip_tag = gzip.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_ne!(gzip_tag, plain_tag, "each encoding has its own strong tag");
        let gzip = gzip.bytes().await.unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain, "{path}: gzip");

        let brotli = get(
            &app,
            &path,
            &[(header::ACCEPT_ENCODING, "gzip, deflate, br")],
        )
        .await;
        assert_eq!(brotli.headers()[header::CONTENT_ENCODING], "br", "{path}");
        let brotli = brotli.bytes().await.unwrap();
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&brotli[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain, "{path}: brotli");
        assert!(
            brotli.len() * 10 < plain.len(),
            "{path}: {} → {} bytes",
            plain.len(),
            brotli.len()
        );

        // A tag of any encoding revalidates any other: they are one JSON.
        let revalidated = get(&app, &path, &[(header::IF_NONE_MATCH, &gzip_tag)]).await;
        assert_eq!(revalidated.status(), 304, "{path}");
    }
    // With an operator's key, availability is personal (held places): not prepared, not public.
    let response = app
        .client
        .get(app.url(&format!("/v1/availability?date={date}")))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "no-store, private"
    );
    assert!(response.headers().get(header::ETAG).is_none());
}
