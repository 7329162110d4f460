//! `TestApp`: the real `vaxslot` binary on a free loopback port with its own
//! data dir, plus the calls the tests make through HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use crate::redis_cluster::RedisCluster;
pub use crate::redis_server::RedisServer;

pub const ADMIN_KEY: &str = "test-admin-key";
pub const SRE_KEY: &str = "test-sre-key";
pub const STAFF_KEY: &str = "test-staff-key";
pub const OPERATOR_KEY: &str = "test-operator-key";
pub const TOKEN_SECRET: &str = "test-token-secret";

/// Logins in flight at once while setting up a herd.
const LOGIN_PARALLELISM: usize = 32;

/// Longest a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Through which channel a test books: as the resident (web, with a token)
/// or as a call-centre operator for them (ticket number + birth date).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Web,
    Operator,
}

/// Someone who books for one resident, through one channel.
pub struct Booker {
    pub via: Via,
    /// The resident's token (web) or the operator's key.
    pub credential: String,
    pub ticket_number: String,
    pub birth_date: String,
}

/// Which store a test's server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    /// A six-node Redis Cluster of the test's own (three masters, three
    /// replicas), with `--redis-cluster-nodes`.
    RedisCluster,
}

impl Backend {
    /// What `/v1/admin/status` calls the store.
    pub fn kind(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Redis | Backend::RedisCluster => "redis",
        }
    }
}

/// Where a test server's store is, as its command line names it.
#[derive(Clone)]
enum StoreLink {
    Embedded,
    Redis(String),
    Cluster(Arc<RedisCluster>),
}

impl StoreLink {
    fn args(&self) -> Vec<String> {
        match self {
            StoreLink::Embedded => Vec::new(),
            StoreLink::Redis(url) => vec!["--redis-url".into(), url.clone()],
            StoreLink::Cluster(cluster) => vec!["--redis-cluster-nodes".into(), cluster.seeds()],
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    /// The test's own redis-server, with `Backend::Redis`.
    pub redis: Option<RedisServer>,
    /// The test's own cluster, with `Backend::RedisCluster`.
    pub cluster: Option<Arc<RedisCluster>>,
    store: StoreLink,
    data_dir: Arc<TempDir>,
    child: Child,
    /// How many servers ran on this data dir before this one.
    generation: u32,
    pub log_path: PathBuf,
}

impl TestApp {
    /// A fresh server on an empty store of the given kind.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with_env(backend, &[]).await
    }

    /// A fresh server with extra environment (limits, for instance).
    pub async fn spawn_with_env(backend: Backend, env: &[(&str, &str)]) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let (redis, link) = match backend {
            Backend::Embedded => (None, StoreLink::Embedded),
            Backend::Redis => {
                let redis = RedisServer::start().await;
                let url = redis.url();
                (Some(redis), StoreLink::Redis(url))
            }
            Backend::RedisCluster => (
                None,
                StoreLink::Cluster(Arc::new(RedisCluster::start().await)),
            ),
        };
        Self::start(dir, 0, backend, redis, link, owned(env)).await
    }

    /// A server with the environment `env` on a copy of a fixture's store:
    /// `embedded` holds a data directory's files, `redis_dump` an RDB dump.
    pub async fn spawn_on_fixture(
        backend: Backend,
        embedded: &std::path::Path,
        redis_dump: &std::path::Path,
        env: &[(&str, &str)],
    ) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let redis = match backend {
            Backend::Embedded => {
                let store = dir.path().join("store");
                std::fs::create_dir_all(&store).expect("store dir");
                for file in std::fs::read_dir(embedded).expect("fixture dir") {
                    let file = file.expect("fixture file").path();
                    std::fs::copy(&file, store.join(file.file_name().unwrap())).expect("copied");
                }
                None
            }
            Backend::Redis => Some(RedisServer::start_from_dump(redis_dump).await),
            Backend::RedisCluster => panic!("the fixtures are a single Redis's dump"),
        };
        let link = match &redis {
            Some(redis) => StoreLink::Redis(redis.url()),
            None => StoreLink::Embedded,
        };
        Self::start(dir, 0, backend, redis, link, owned(env)).await
    }

    /// Another server process on the same store (Redis only: the embedded
    /// store is one process's file).
    pub async fn spawn_second(&self) -> TestApp {
        self.spawn_second_with_env(&[]).await
    }

    /// Another server process on the same Redis (or cluster), with the
    /// environment `env`.
    pub async fn spawn_second_with_env(&self, env: &[(&str, &str)]) -> TestApp {
        assert!(
            !matches!(self.store, StoreLink::Embedded),
            "a Redis-backed app"
        );
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start(dir, 0, self.backend, None, self.store.clone(), owned(env)).await
    }

    async fn start(
        data_dir: Arc<TempDir>,
        generation: u32,
        backend: Backend,
        redis: Option<RedisServer>,
        store: StoreLink,
        env: Vec<(String, String)>,
    ) -> TestApp {
        let log_path = data_dir.path().join(format!("server-{generation}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_vaxslot"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path().join("store"));
        command.args(store.args());
        command
            .env("VAXSLOT_ADMIN_KEY", ADMIN_KEY)
            .env("VAXSLOT_SRE_KEY", SRE_KEY)
            .env("VAXSLOT_STAFF_KEY", STAFF_KEY)
            .env("VAXSLOT_OPERATOR_KEY", OPERATOR_KEY)
            .env("VAXSLOT_TOKEN_SECRET", TOKEN_SECRET)
            .env("RUST_LOG", "info")
            // The test's own environment comes last, so it wins.
            .envs(env);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("vaxslot starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(address) = line.strip_prefix("vaxslot listening on ") {
                    return address.to_owned();
                }
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "vaxslot exited before listening; its log ends:\n{}",
                tail.join("\n")
            );
        })
        .await
        .expect("vaxslot listens in time");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        TestApp {
            base,
            client,
            backend,
            redis,
            cluster: match &store {
                StoreLink::Cluster(cluster) => Some(Arc::clone(cluster)),
                _ => None,
            },
            store,
            data_dir,
            child,
            generation,
            log_path,
        }
    }

    fn store_dir(&self) -> PathBuf {
        self.data_dir.path().join("store")
    }

    /// The ids of every reservation the store holds (see `stored_reservations`).
    pub async fn stored_ids(&self) -> std::collections::HashSet<String> {
        self.stored_reservations()
            .await
            .iter()
            .map(|r| r.id.to_string())
            .collect()
    }

    /// The store itself, as a client of it. The embedded store is one
    /// process's file: kill the server first.
    pub async fn open_store(&self) -> Box<dyn vaxslot::store::Store> {
        match &self.store {
            StoreLink::Redis(url) => Box::new(
                vaxslot::store::RedisStore::connect(url)
                    .await
                    .expect("redis store connects"),
            ),
            StoreLink::Cluster(cluster) => Box::new(cluster.store().await),
            StoreLink::Embedded => Box::new(
                vaxslot::store::EmbeddedStore::open(&self.store_dir())
                    .expect("store opens (is the server still running?)"),
            ),
        }
    }

    /// Every reservation the store holds (embedded: kill the server first).
    pub async fn stored_reservations(&self) -> Vec<vaxslot::domain::Reservation> {
        let store = self.open_store().await;
        store.load_reservations().await.expect("reservations load")
    }

    /// SIGKILL: no shutdown, no flush.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }

    /// SIGKILL, then a new server on the same store.
    pub async fn crash_and_restart(self) -> TestApp {
        self.crash_and_restart_with_env(&[]).await
    }

    /// Waits for the server to exit (after a signal) and answers how.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        self.child.wait().await.expect("reaped")
    }

    /// A new server on the same store, once this one has exited.
    pub async fn restart(self) -> TestApp {
        self.restart_with_env(&[]).await
    }

    /// A new server with the environment `env` on the same store, once this
    /// one has exited.
    pub async fn restart_with_env(mut self, env: &[(&str, &str)]) -> TestApp {
        let redis = self.redis.take();
        Self::start(
            Arc::clone(&self.data_dir),
            self.generation + 1,
            self.backend,
            redis,
            self.store.clone(),
            owned(env),
        )
        .await
    }

    /// SIGKILL, then a new server on the same store with the environment `env`.
    pub async fn crash_and_restart_with_env(mut self, env: &[(&str, &str)]) -> TestApp {
        self.kill().await;
        self.restart_with_env(env).await
    }

    /// A plain connection to this app's own Redis, to read or write keys
    /// behind the server's back (a record stored before a rule, a bad one).
    pub async fn raw_redis(&self) -> ::redis::aio::MultiplexedConnection {
        let url = self.redis.as_ref().expect("an app on its own Redis").url();
        ::redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The roster of a venue-day as the staff key downloads it: CSV bytes.
    pub async fn roster_csv(&self, venue_id: &str, date: &str) -> Vec<u8> {
        self.client
            .get(self.url(&format!("/v1/staff/venues/{venue_id}/days/{date}/roster")))
            .bearer_auth(STAFF_KEY)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    /// A venue name (`<prefix>-<n>`) whose day on `date` the process
    /// `owner` owns, by the live members as this app's Redis lists them
    /// (the same rendezvous choice every process makes).
    pub async fn venue_owned_by(&self, owner: &TestApp, prefix: &str, date: &str) -> String {
        let mut raw = self.raw_redis().await;
        let records: Vec<String> = ::redis::cmd("ZRANGE")
            .arg("vaxslot:members")
            .arg(0)
            .arg(-1)
            .query_async(&mut raw)
            .await
            .unwrap();
        let members: Vec<vaxslot::cluster::Member> = records
            .iter()
            .map(|record| {
                let (id, url) = record.split_once(' ').expect("<id> <url>");
                vaxslot::cluster::Member {
                    id: id.to_owned(),
                    url: url.to_owned(),
                }
            })
            .collect();
        let date = vaxslot::domain::parse_date(date).unwrap();
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|venue| {
                let key = vaxslot::domain::VenueDayKey {
                    venue_id: vaxslot::domain::VenueId::parse(venue).unwrap(),
                    date,
                };
                let chosen = vaxslot::cluster::owner_among(&members, &key).expect("members");
                chosen.url.trim_end_matches('/') == owner.url("")
            })
            .expect("some venue")
    }

    /// Sends this server `signal`: `STOP` and `CONT` (a machine that
    /// freezes), `KILL` while another holds it (see `kill` otherwise).
    pub async fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal).await;
    }

    /// The server's process id (to signal it while others hold this app).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server running")
    }

    /// The server's resident memory, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("server running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Imports residents given as JSON records; asserts none is rejected.
    pub async fn import(&self, records: Value) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/admin/residents",
                Some(ADMIN_KEY),
                Some(&records),
            )
            .await;
        assert_eq!(status, 200, "import: {body}");
        assert_eq!(body["rejected"], json!([]), "import: {body}");
    }

    /// Imports residents as CSV; returns the import report.
    pub async fn import_csv(&self, csv: &str) -> Value {
        let response = self
            .client
            .post(self.url("/v1/admin/residents"))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .expect("import sent");
        assert_eq!(response.status(), 200, "CSV import");
        response.json().await.expect("import report")
    }

    /// Logs in with an explicit birth date.
    pub async fn login_as(&self, ticket_number: &str, birth_date: &str) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(&json!({"ticket_number": ticket_number, "birth_date": birth_date})),
            )
            .await;
        assert_eq!(status, 201, "login: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Puts a day of a central venue offering both vaccines.
    pub async fn vaccine_day(&self, venue_id: &str, date: &str, vaccine: &str, capacity: u32) {
        self.put_venue(venue_id, "central", &["moderna", "pfizer"])
            .await;
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/v1/admin/venues/{venue_id}/days/{date}"),
                Some(ADMIN_KEY),
                Some(&json!({"vaccine": vaccine, "slots": [{"time": "10:00", "capacity": capacity}]})),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "put day: {status} {body}\nserver log:\n{}",
            self.log_tail()
        );
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Opens a resident import whose body does not finish: its handler
    /// reads the body after the admin key is checked, holding one admission
    /// permit until the connection closes or `--body-timeout-s` passes.
    /// (Other routes' bodies are read before admission: a slow one holds
    /// no place.) At most `IMPORTS_IN_FLIGHT_MAX` can be held so.
    pub async fn hold_open(&self) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connects");
        let head = format!(
            "POST /v1/admin/residents HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n[{{\"ticket_number\":"
        );
        stream.write_all(head.as_bytes()).await.expect("sent");
        stream
    }

    /// Holds `n` `/v1` requests in flight (`hold_open`), and returns once
    /// the server counts them all (`/metrics`, which is never refused), so
    /// that no request of the test's own can take one of their places.
    pub async fn hold_in_flight(&self, n: usize) -> Vec<tokio::net::TcpStream> {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(self.hold_open().await);
        }
        let wanted = format!("vaxslot_requests_in_flight {n}\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, metrics) = self
                .send(reqwest::Method::GET, "/metrics", None, None)
                .await;
            if metrics.as_str().is_some_and(|m| m.contains(&wanted)) {
                return held;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never counted {n} held requests in flight"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of this server's log, for a failed test's message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn put_venue(&self, venue_id: &str, booking: &str, vaccines: &[&str]) {
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/v1/admin/venues/{venue_id}"),
                Some(ADMIN_KEY),
                Some(
                    &json!({"name": format!("Venue {venue_id}"), "kind": "clinic",
                    "booking": booking, "address": "中野区", "phone": "03", "vaccines": vaccines}),
                ),
            )
            .await;
        assert!(status == 201 || status == 200, "put venue: {status} {body}");
    }

    /// A central venue with one day whose slots are `(time, capacity)`.
    pub async fn put_day(&self, venue_id: &str, date: &str, slots: &[(&str, u32)]) -> (u16, Value) {
        let slots: Vec<Value> = slots
            .iter()
            .map(|(time, capacity)| json!({"time": time, "capacity": capacity}))
            .collect();
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/admin/venues/{venue_id}/days/{date}"),
            Some(ADMIN_KEY),
            Some(&json!({"vaccine": "moderna", "slots": slots, "access_code": null})),
        )
        .await
    }

    pub async fn venue_day(&self, venue_id: &str, date: &str, slots: &[(&str, u32)]) {
        self.put_venue(venue_id, "central", &["moderna", "pfizer"])
            .await;
        let (status, body) = self.put_day(venue_id, date, slots).await;
        assert!(
            status == 201 || status == 200,
            "put day: {status} {body}\nserver log:\n{}",
            self.log_tail()
        );
    }

    /// Imports `count` adult residents with tickets `first`, `first + 1`, ….
    pub async fn import_residents(&self, first: u64, count: u64) {
        for chunk_start in (first..first + count).step_by(10_000) {
            let chunk_end = (chunk_start + 10_000).min(first + count);
            let records: Vec<Value> = (chunk_start..chunk_end)
                .map(|t| {
                    json!({"ticket_number": ticket(t), "birth_date": "1960-01-01",
                    "name": "テスト 住民", "high_risk": false, "history": []})
                })
                .collect();
            let (status, body) = self
                .send(
                    reqwest::Method::POST,
                    "/v1/admin/residents",
                    Some(ADMIN_KEY),
                    Some(&Value::Array(records)),
                )
                .await;
            assert_eq!(status, 200, "import: {body}");
            assert_eq!(body["rejected"], json!([]));
        }
    }

    pub async fn login(&self, ticket_number: u64) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(&json!({"ticket_number": ticket(ticket_number), "birth_date": "1960-01-01"})),
            )
            .await;
        assert_eq!(status, 201, "login: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Logs in `count` residents from `first`, `LOGIN_PARALLELISM` at a time,
    /// tokens in ticket order.
    pub async fn login_many(&self, first: u64, count: u64) -> Vec<String> {
        use futures::StreamExt;
        futures::stream::iter(first..first + count)
            .map(|t| self.login(t))
            .buffered(LOGIN_PARALLELISM)
            .collect()
            .await
    }

    pub async fn book(&self, token: &str, venue_id: &str, date: &str, time: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            "/v1/reservations",
            Some(token),
            Some(&json!({"venue_id": venue_id, "date": date, "time": time})),
        )
        .await
    }

    /// Books `body` as the resident of `token` with an `Idempotency-Key`.
    pub async fn send_keyed(&self, token: &str, body: &Value, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/reservations"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A booker for the resident `ticket_number` through `via`: the web logs
    /// the resident in; the operator uses the operator key.
    pub async fn booker(&self, via: Via, ticket_number: &str, birth_date: &str) -> Booker {
        let credential = match via {
            Via::Web => self.login_as(ticket_number, birth_date).await,
            Via::Operator => OPERATOR_KEY.to_owned(),
        };
        Booker {
            via,
            credential,
            ticket_number: ticket_number.to_owned(),
            birth_date: birth_date.to_owned(),
        }
    }

    /// Books `body` (the resident's booking body) through the booker's
    /// channel, with an `Idempotency-Key` if given; the status and raw body.
    pub async fn book_via(
        &self,
        booker: &Booker,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, String) {
        let (path, body) = match booker.via {
            Via::Web => ("/v1/reservations", body.clone()),
            Via::Operator => {
                let mut body = body.clone();
                body["ticket_number"] = json!(booker.ticket_number);
                body["birth_date"] = json!(booker.birth_date);
                ("/v1/operator/reservations", body)
            }
        };
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(&booker.credential)
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("request sent");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    /// Books `(venue, date, time)` through the booker's channel.
    pub async fn book_slot_via(
        &self,
        booker: &Booker,
        venue_id: &str,
        date: &str,
        time: &str,
    ) -> (u16, Value) {
        let body = json!({"venue_id": venue_id, "date": date, "time": time});
        let (status, text) = self.book_via(booker, &body, None).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The resident's profile as the booker sees it (`/v1/me`, or the
    /// operator's lookup).
    pub async fn profile_via(&self, booker: &Booker) -> Value {
        let path = match booker.via {
            Via::Web => "/v1/me".to_owned(),
            Via::Operator => format!(
                "/v1/operator/residents/{}?birth_date={}",
                booker.ticket_number, booker.birth_date
            ),
        };
        let (status, body) = self
            .send(reqwest::Method::GET, &path, Some(&booker.credential), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Cancels through the booker's channel.
    pub async fn cancel_via(&self, booker: &Booker, id: &str) -> (u16, Value) {
        let path = match booker.via {
            Via::Web => format!("/v1/reservations/{id}"),
            Via::Operator => format!(
                "/v1/operator/reservations/{id}?ticket_number={}&birth_date={}",
                booker.ticket_number, booker.birth_date
            ),
        };
        self.send(
            reqwest::Method::DELETE,
            &path,
            Some(&booker.credential),
            None,
        )
        .await
    }

    /// The resident's reservations as the booker sees them (`/v1/reservations`,
    /// or the operator's lookup).
    pub async fn reservations_via(&self, booker: &Booker) -> Vec<Value> {
        self.profile_via(booker).await["reservations"]
            .as_array()
            .expect("reservations")
            .clone()
    }

    /// `GET /v1/reservations/{id}` as the resident with `token`.
    pub async fn reservation(&self, token: &str, id: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/reservations/{id}"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn set_kill_switch(&self, engaged: bool) -> Value {
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                "/v1/admin/kill-switch",
                Some(SRE_KEY),
                Some(&json!({"engaged": engaged, "reason": "test"})),
            )
            .await;
        assert_eq!(status, 200, "kill switch: {body}");
        body
    }

    /// `(capacity, remaining)` per slot time of one venue-day, from
    /// availability as it is now: asked with the admin key, since the public
    /// read may lag commits by up to a second (API.md; `public_reads.rs`),
    /// and a read with a credential is built for its request.
    pub async fn slots(&self, venue_id: &str, date: &str) -> Vec<(String, u64, u64)> {
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/availability?date={date}&venue_id={venue_id}"),
                Some(ADMIN_KEY),
                None,
            )
            .await;
        assert_eq!(status, 200, "availability: {body}");
        body["days"][0]["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| {
                (
                    s["time"].as_str().unwrap().to_owned(),
                    s["capacity"].as_u64().unwrap(),
                    s["remaining"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Whether `path` (query string dropped) fits a route template like
/// `/v1/reservations/{id}`: for the tests that cover the whole route table.
pub fn fits_route(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap();
    let (want, got): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| w == g || (w.starts_with('{') && w.ends_with('}')))
}

/// A booked web reservation of resident `ticket` on `day` at `time`, as a
/// store holds it (for tests that write behind a process's back).
pub fn booked_reservation(
    day: &vaxslot::domain::VenueDayKey,
    ticket: u64,
    time: &str,
    dose: vaxslot::domain::Dose,
) -> vaxslot::domain::Reservation {
    use vaxslot::domain::{Channel, ReservationId, ReservationStatus, SlotTime, Vaccine};
    let now = chrono::Utc::now().fixed_offset();
    vaxslot::domain::Reservation {
        id: ReservationId::random(),
        ticket_number: vaxslot::domain::TicketNumber::parse(&self::ticket(ticket)).unwrap(),
        venue_id: day.venue_id.clone(),
        date: day.date,
        time: SlotTime::parse(time).unwrap(),
        dose,
        vaccine: Vaccine::Moderna,
        status: ReservationStatus::Booked,
        channel: Channel::Web,
        created_at: now,
        updated_at: now,
        idempotency: None,
    }
}

pub fn ticket(number: u64) -> String {
    format!("{number:010}")
}

/// A date `days` ahead of today in Tokyo, as `YYYY-MM-DD`.
pub fn future_date(days: i64) -> String {
    (vaxslot::domain::local_date(chrono::Utc::now()) + chrono::Duration::days(days)).to_string()
}

/// Sends `signal` (`STOP`, `CONT`, …) to the process `pid`, with kill(1).
pub async fn send_signal(pid: u32, signal: &str) {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}
