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
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

on_both_stores!(healthz_readyz_and_metrics_answer,);
