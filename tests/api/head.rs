//! `HEAD` on every `GET` route answers like the `GET`, without a body: a
//! table over the whole route table, so that a new `GET` route cannot
//! forget it.

use reqwest::{Method, header};

use crate::helpers::{ADMIN_KEY, Backend, SRE_KEY, STAFF_KEY, TestApp, future_date};

#[tokio::test]
async fn head_answers_like_get_without_a_body_on_every_get_route() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(10);
    app.venue_day("head-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(5_600_000_000, 1).await;
    let token = app.login(5_600_000_000).await;
    let (_, booked) = app.book(&token, "head-clinic", &date, "10:00").await;
    let id = booked["reservation_id"].as_str().unwrap().to_owned();
    let availability = format!("/v1/availability?date={date}");
    let reservation = format!("/v1/reservations/{id}");
    let roster = format!("/v1/staff/venues/head-clinic/days/{date}/roster");
    let operator_lookup = "/v1/operator/residents/5600000000?birth_date=1960-01-01".to_owned();
    let routes: Vec<(String, Option<&str>)> = vec![
        ("/healthz".into(), None),
        ("/readyz".into(), None),
        ("/metrics".into(), None),
        ("/v1/reservations".into(), Some(&token)),
        (availability, None),
        ("/v1/me".into(), Some(&token)),
        ("/v1/venues".into(), None),
        ("/v1/info".into(), None),
        ("/v1/admin/kill-switch".into(), Some(SRE_KEY)),
        ("/v1/admin/accounts".into(), Some(ADMIN_KEY)),
        ("/v1/admin/audit".into(), Some(ADMIN_KEY)),
        ("/v1/admin/status".into(), Some(SRE_KEY)),
        (operator_lookup, Some(crate::helpers::OPERATOR_KEY)),
        (reservation, Some(&token)),
        (roster, Some(STAFF_KEY)),
        ("/v1/staff/venues".into(), Some(STAFF_KEY)),
        ("/".into(), None),
        ("/operator/".into(), None),
        ("/staff/".into(), None),
        ("/sre/".into(), None),
        ("/operator".into(), None),
        ("/staff".into(), None),
        ("/sre".into(), None),
        ("/assets/common.js".into(), None),
        // Refused here (a process alone has no internal calls), alike for HEAD.
        (
            format!("/internal/v1/venue-days/head-clinic/{date}/reservations"),
            None,
        ),
    ];
    // Every GET route of api/mod.rs is in the table.
    let route_table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"),
    )
    .unwrap();
    let configure = route_table.split("pub fn configure").nth(1).unwrap();
    for service in configure.split(".service(").skip(1) {
        let Some(pattern) = service.split('"').nth(1) else {
            continue;
        };
        let serves_get = service.contains("web::get()")
            || service.starts_with("page_resource")
            || service.starts_with("page_redirect");
        if serves_get {
            let covered = routes
                .iter()
                .any(|(path, _)| crate::helpers::fits_route(pattern, path));
            assert!(covered, "GET {pattern} is not in this test's table");
        }
    }
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, credential) in &routes {
        let send = |method: Method| {
            let mut request = no_redirects.request(method, app.url(path));
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            request.send()
        };
        let get = send(Method::GET).await.unwrap();
        let head = send(Method::HEAD).await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        for name in [
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            header::ETAG,
            header::LOCATION,
        ] {
            assert_eq!(
                head.headers().get(&name),
                get.headers().get(&name),
                "HEAD {path}: {name}"
            );
        }
        let get_length = get.bytes().await.unwrap().len();
        let head_length = head
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().to_owned());
        if path != "/metrics" && path != "/v1/admin/status" && path != "/v1/admin/audit" {
            // (Those change between the two requests.)
            assert_eq!(
                head_length,
                Some(get_length.to_string()),
                "HEAD {path}: Content-Length"
            );
        }
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
}
