//! Every page as served: a strict Content-Security-Policy and no inline
//! script, cacheable (ETag, `304`), its files all served; in the browser at
//! 360×740: no console errors, no serious accessibility finding, no
//! sideways scrolling. Screenshots of each for the README.

use reqwest::header;

use crate::browser::Browser;
use crate::helpers::{Backend, TestApp};

const PAGES: [(&str, &str); 4] = [
    ("/", "page-resident"),
    ("/operator/", "page-operator"),
    ("/staff/", "page-staff"),
    ("/sre/", "page-sre"),
];

#[tokio::test]
async fn every_page_is_served_with_a_strict_policy_and_can_be_cached() {
    let app = TestApp::spawn(Backend::Embedded).await;
    for (path, _) in PAGES {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"'), "a strong ETag: {etag}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<html lang=\"ja\">"), "{path}");

        let again = app
            .client
            .get(app.url(path))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}: unchanged page");
        assert!(again.bytes().await.unwrap().is_empty());

        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");

        // Every file the page names is served, cacheable for long by its hash.
        for reference in html.split("\"/assets/").skip(1) {
            let asset = format!("/assets/{}", reference.split('"').next().unwrap());
            let response = app.client.get(app.url(&asset)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{asset}");
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable",
                "{asset}"
            );
            assert!(response.headers().contains_key(header::ETAG), "{asset}");
        }
    }
    let missing = app
        .client
        .get(app.url("/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/staff"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()[header::LOCATION], "/staff/");
}

#[tokio::test]
async fn every_page_on_a_phone_has_no_console_error_and_no_serious_accessibility_finding() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let _permit = crate::BROWSERS_AT_ONCE.acquire().await.unwrap();
    let browser = Browser::start().await;
    for (path, name) in PAGES {
        browser.goto(&app.url(path)).await;
        browser.appears("main").await;
        browser.check_page(name).await;
    }
    browser.close().await;
}
