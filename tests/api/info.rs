//! `GET /v1/info`: what a page shows before anyone logs in: the
//! municipality, the number to call, and whether booking is open, fresh
//! from the kill switch.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn info_names_the_ward_and_says_when_booking_is_paused(backend: Backend) {
    let app = TestApp::spawn_with_env(
        backend,
        &[
            ("VAXSLOT_MUNICIPALITY_NAME", "中野区"),
            ("VAXSLOT_CALL_CENTRE_PHONE", "03-3228-5611"),
        ],
    )
    .await;
    let (status, info) = app.send(Method::GET, "/v1/info", None, None).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info,
        json!({"municipality": "中野区", "call_centre_phone": "03-3228-5611",
               "booking_open": true, "waiting_room": null})
    );
    app.set_kill_switch(true).await;
    let (_, info) = app.send(Method::GET, "/v1/info", None, None).await;
    assert_eq!(info["booking_open"], false, "{info}");
}

on_both_stores!(info_names_the_ward_and_says_when_booking_is_paused);

/// Without the settings, the page has nothing to show: `null`, not a guess.
#[tokio::test]
async fn info_without_the_settings_says_null() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (status, info) = app.send(Method::GET, "/v1/info", None, None).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["municipality"], json!(null));
    assert_eq!(info["call_centre_phone"], json!(null));
}

/// A name with a line break does not start the server (it would reach every page).
#[tokio::test]
async fn a_municipality_name_with_a_line_break_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vaxslot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("VAXSLOT_MUNICIPALITY_NAME", "中野区\n<script>")
        .output()
        .expect("vaxslot runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("VAXSLOT_MUNICIPALITY_NAME") || stderr.contains("municipality-name"),
        "{stderr}"
    );
}
