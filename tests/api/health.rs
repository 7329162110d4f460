use reqwest::Method;

use crate::helpers::{Backend, TestApp};

async fn healthz_readyz_and_metrics_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text exposition");
    for name in [
        "vaxslot_kill_switch_engaged 0",
        "vaxslot_store_up 1",
        "vaxslot_venue_day_actors 0",
        "vaxslot_slots_remaining 0",
        "vaxslot_requests_in_flight 0",
        "vaxslot_booking_requests_total{outcome=\"committed\"} 0",
        "vaxslot_login_attempts_total{outcome=\"too_many_attempts\"} 0",
        // DESIGN.md's histograms exist (empty) before the first booking.
        "# TYPE vaxslot_booking_duration_seconds histogram",
        "# TYPE vaxslot_commit_batch_size histogram",
        "# TYPE vaxslot_commit_duration_seconds histogram",
        "# TYPE vaxslot_mailbox_depth histogram",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    // Every metric has its HELP text, as promtool checks it.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    promtool_accepts(text);
}

/// `promtool check metrics` (Debian's `prometheus` package; `.ci/run`
/// installs it) accepts the exposition.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on the PATH (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

on_both_stores!(healthz_readyz_and_metrics_answer,);

/// The booking metrics of DESIGN.md count what happened: one observation per
/// booking request, outcomes by code, batches by size.
async fn metrics_count_bookings_by_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let date = crate::helpers::future_date(30);
    app.venue_day("nakano-sunplaza", &date, &[("10:30", 2)])
        .await;
    app.import_residents(1_000_000_000, 3).await;
    let tokens = app.login_many(1_000_000_000, 3).await;
    for token in &tokens {
        app.book(token, "nakano-sunplaza", &date, "10:30").await;
    }
    let (_, body) = app.send(Method::GET, "/metrics", None, None).await;
    let text = body.as_str().expect("text exposition");
    for line in [
        "vaxslot_booking_requests_total{outcome=\"committed\"} 2",
        "vaxslot_booking_requests_total{outcome=\"slot_full\"} 1",
        "vaxslot_booking_duration_seconds_count 3",
        "vaxslot_commit_batch_size_count 2",
        "vaxslot_login_attempts_total{outcome=\"ok\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    promtool_accepts(text);
}

on_both_stores!(metrics_count_bookings_by_outcome,);

/// `deploy/alerts.yml` is valid and its unit tests (`deploy/alerts.test.yml`:
/// each alert fires when it should and stays quiet when it should not) pass.
#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let output = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&deploy)
            .output()
            .expect("promtool on the PATH (apt-get install prometheus)");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
