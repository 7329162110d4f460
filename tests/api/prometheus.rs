//! A real Prometheus (Debian's `prometheus`; `.ci/run` installs it) scraping
//! a real vaxslot under a small herd: every dashboard query and every alert
//! expression parses and the panels have data; the kill-switch alert fires
//! after a flip.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, TestApp, future_date};

/// Longest wait for Prometheus to start, scrape, or fire.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);

struct Prometheus {
    _dir: tempfile::TempDir,
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus on a free port scraping `target` every second, with
    /// the alert rules of `deploy/` evaluated every second.
    async fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        std::fs::copy(deploy.join("alerts.yml"), dir.path().join("alerts.yml")).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
                 scrape_configs:\n  - job_name: vaxslot\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus on the PATH (apt-get install prometheus)");
        let prometheus = Prometheus {
            _dir: dir,
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        prometheus
            .until("Prometheus is ready", || async {
                let ready = prometheus
                    .client
                    .get(format!("{}/-/ready", prometheus.base))
                    .send()
                    .await;
                ready.is_ok_and(|r| r.status() == 200)
            })
            .await;
        prometheus
    }

    async fn until<F, Fut>(&self, what: &str, condition: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An instant query: its status and result vector.
    async fn query(&self, expr: &str) -> (String, Vec<Value>) {
        let answer: Value = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = answer["status"].as_str().unwrap_or("").to_owned();
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (status, result)
    }

    async fn api(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn book_some(app: &TestApp, first: u64, count: u64, date: &str) {
    let tokens = app.login_many(first, count).await;
    for token in &tokens {
        assert_eq!(app.book(token, "prom-hall", date, "10:00").await.0, 201);
    }
}

#[tokio::test]
async fn a_real_prometheus_evaluates_every_dashboard_query_and_fires_the_kill_switch_alert() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(10);
    app.venue_day("prom-hall", &date, &[("10:00", 100)]).await;
    app.import_residents(5_200_000_000, 40).await;
    let prometheus = Prometheus::start(app.base.trim_start_matches("http://")).await;
    prometheus
        .until("vaxslot is scraped", || async {
            let (_, up) = prometheus.query("up{job=\"vaxslot\"} == 1").await;
            !up.is_empty()
        })
        .await;
    // A small herd in two halves, scrapes apart, so that rates are not zero.
    book_some(&app, 5_200_000_000, 20, &date).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    book_some(&app, 5_200_000_020, 20, &date).await;
    prometheus
        .until("the herd's second half is scraped", || async {
            let (_, committed) = prometheus
                .query("sum(vaxslot_booking_requests_total{outcome=\"committed\"}) == 40")
                .await;
            !committed.is_empty()
        })
        .await;

    // Every panel's query parses and has data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/launch-day.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 12);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let (status, result) = prometheus.query(expr).await;
            assert_eq!(status, "success", "{}: {expr}", panel["title"]);
            assert!(!result.is_empty(), "no data for {}: {expr}", panel["title"]);
        }
    }
    // Annotations parse.
    for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
        let (status, _) = prometheus.query(annotation["expr"].as_str().unwrap()).await;
        assert_eq!(status, "success");
    }
    // Every alert rule is loaded and healthy, and none fires on a healthy herd.
    let rules = prometheus.api("/api/v1/rules").await;
    let loaded: Vec<&Value> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let written = include_str!("../../deploy/alerts.yml")
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(written >= 7, "the alerts file has every alert");
    assert_eq!(loaded.len(), written, "{rules}");
    for rule in &loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["state"], "inactive", "{rule}");
    }

    // Flip the kill switch: its alert fires.
    app.set_kill_switch(true).await;
    prometheus
        .until("VaxslotKillSwitchEngaged fires", || async {
            let alerts = prometheus.api("/api/v1/alerts").await;
            alerts["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["alertname"] == "VaxslotKillSwitchEngaged" && a["state"] == "firing"
                })
            })
        })
        .await;
    let (_, flipped) = prometheus
        .query(
            dashboard["annotations"]["list"][0]["expr"]
                .as_str()
                .unwrap(),
        )
        .await;
    assert!(!flipped.is_empty(), "the flip shows as an annotation");
}
