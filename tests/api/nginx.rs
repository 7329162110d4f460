//! The nginx microcache of `deploy/nginx/vaxslot.conf` (Debian's nginx;
//! `.ci/run` installs it) in front of a real vaxslot: the public reads are
//! served from its cache (`X-Cache: HIT`) and show a booking within a couple
//! of seconds; anything with a credential, and every personal answer, goes
//! to vaxslot every time.

use std::time::{Duration, Instant};

use reqwest::header;

use crate::helpers::{Backend, OPERATOR_KEY, TestApp, future_date};

/// The example's expiry (1 s) plus its stale-while-revalidate (2 s) plus a
/// margin for a busy machine.
const CACHED_LAG_MAX: Duration = Duration::from_secs(5);

struct Nginx {
    dir: tempfile::TempDir,
    child: tokio::process::Child,
    base: String,
}

impl Nginx {
    /// nginx on a free port with deploy/nginx/vaxslot.conf, its upstream
    /// pointed at `upstream` (host:port) and its folders in a temp dir; one
    /// process (`master_process off`), so that killing it leaves no worker.
    async fn start(upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/vaxslot.conf"),
        )
        .unwrap();
        let cache = dir.path().join("cache");
        let site = example
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace("/var/cache/nginx/vaxslot", &cache.display().to_string())
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        assert_ne!(site, example, "the example has the lines this test adapts");
        std::fs::write(dir.path().join("vaxslot.conf"), site).unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/nginx/vaxslot-cache.conf"),
            dir.path().join("vaxslot-cache.conf"),
        )
        .unwrap();
        let temp = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "master_process off;\nerror_log {temp}/error.log;\npid {temp}/nginx.pid;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n\
                 fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n\
                 include {temp}/vaxslot.conf;\n}}\n"
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx on the PATH (apt-get install nginx-light)");
        let nginx = Nginx {
            dir,
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{}/healthz", nginx.base))
            .await
            .is_err()
        {
            let log =
                std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not start: {log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn get(base: &str, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let client = reqwest::Client::new();
    let mut request = client
        .get(format!("{base}{path}"))
        .header(header::ACCEPT_ENCODING, "identity");
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, response.text().await.unwrap())
}

fn remaining(body: &str) -> u64 {
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    body["days"][0]["slots"][0]["remaining"].as_u64().unwrap()
}

#[tokio::test]
async fn the_nginx_example_microcaches_public_reads_and_never_personal_ones() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let date = future_date(5);
    app.venue_day("nginx-clinic", &date, &[("10:00", 5)]).await;
    app.import_residents(5_700_000_000, 1).await;
    let token = app.login(5_700_000_000).await;
    let nginx = Nginx::start(app.base.trim_start_matches("http://")).await;
    let path = format!("/v1/availability?date={date}");

    let (status, first, body) = get(&nginx.base, &path, None).await;
    assert_eq!((status, first.as_str()), (200, "MISS"));
    assert_eq!(remaining(&body), 5);
    let (_, second, _) = get(&nginx.base, &path, None).await;
    assert_eq!(
        second, "HIT",
        "a public read within its second comes from the cache"
    );

    // The processes' internal calls are not reachable through it.
    let (status, _, body) = get(
        &nginx.base,
        &format!("/internal/v1/venue-days/nginx-clinic/{date}/reservations"),
        None,
    )
    .await;
    assert_eq!(status, 404, "/internal/ is refused");
    assert!(
        body.contains("nginx"),
        "by nginx, not passed to vaxslot: {body}"
    );

    // With a credential: always vaxslot's own answer.
    let (_, with_key, _) = get(&nginx.base, &path, Some(OPERATOR_KEY)).await;
    assert_eq!(with_key, "BYPASS");
    // A personal answer is never stored, so never a hit.
    for _ in 0..2 {
        let (status, cached, _) = get(&nginx.base, "/v1/me", Some(&token)).await;
        assert_eq!(status, 200);
        assert_ne!(cached, "HIT", "/v1/me");
    }

    // A booking shows through the cache within its expiry and the stale window.
    let (status, _) = app.book(&token, "nginx-clinic", &date, "10:00").await;
    assert_eq!(status, 201);
    let booked_at = Instant::now();
    loop {
        let (_, _, body) = get(&nginx.base, &path, None).await;
        if remaining(&body) == 4 {
            break;
        }
        assert!(
            booked_at.elapsed() < CACHED_LAG_MAX,
            "the cache still said 5 after {:?}",
            booked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
