//! Command line and environment. Secrets and keys come only from the
//! environment (API.md "Roles and keys"), never from flags, so they do not
//! show in `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::actors::VENUE_DAY_IDLE_MAX_DEFAULT;
use crate::tokens::{TOKEN_LIFETIME, TOKEN_LIFETIME_MAX};

use crate::accounts::StaffKeys;
use crate::login_guard::ADDRESS_FAILURES_MAX_DEFAULT;

/// Default of `--max-in-flight`: enough for a ward's launch on 2 cores,
/// small enough that the bodies being worked on stay under ~64 MiB (bodies
/// still on their way are bounded apart: `api::BODIES_ARRIVING_MAX`).
pub const MAX_IN_FLIGHT_DEFAULT: usize = 4096;
/// Default of `--body-timeout-s` (API.md "Conventions": 10).
pub const BODY_TIMEOUT_S_DEFAULT: u64 = 10;
/// Default of `--venue-day-queue-max`.
pub const VENUE_DAY_QUEUE_MAX_DEFAULT: usize = 1024;

/// Shortest `--venue-day-idle-s` (tests use it; a launch wants minutes).
pub const VENUE_DAY_IDLE_MIN: Duration = Duration::from_millis(200);

/// Most HTTP worker threads.
pub const HTTP_WORKERS_MAX: usize = 64;
/// Most open client connections per HTTP worker.
pub const CONNECTIONS_PER_WORKER_MAX: usize = 25_000;

#[derive(Parser, Debug)]
#[command(
    name = "vaxslot",
    version,
    about = "Vaccination slot reservations for municipalities",
    long_about = "vaxslot books vaccination slots for a municipality's residents, call center and \
venues. One process with an embedded store serves a small ward or a demo; a kill switch stops \
all booking at once.\n\n\
Keys and secrets come from the environment:\n  \
VAXSLOT_ADMIN_KEY     admin: venues, days, resident import, everything but resident-only calls\n  \
VAXSLOT_SRE_KEY       sre: the kill switch\n  \
VAXSLOT_STAFF_KEY     venue staff: check-in, rosters\n  \
VAXSLOT_OPERATOR_KEY  call-center operators\n  \
VAXSLOT_TOKEN_SECRET  signs resident tokens (random if unset: tokens then end with the process)\n  \
An unset key disables its role. RUST_LOG sets the log filter (default info); logs go to stderr."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Show, engage or release the kill switch of a running server (key: VAXSLOT_SRE_KEY).
    KillSwitch(crate::cli::KillSwitchArgs),
    /// Import residents from a CSV file into a running server (key: VAXSLOT_ADMIN_KEY).
    Import(crate::cli::ImportArgs),
    /// Check a resident roster CSV before launch, importing nothing.
    CheckRoster(crate::cli::CheckRosterArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the embedded store (created if missing; unused with --redis-url).
    #[arg(long, default_value = "./vaxslot-data")]
    pub data_dir: PathBuf,
    /// Use Redis instead of the embedded store, e.g. redis://127.0.0.1:6379/0
    /// (with a password: redis://:PASSWORD@HOST:PORT/DB). Prefer the variable,
    /// so that a password does not show in the process list.
    #[arg(
        long,
        env = "VAXSLOT_REDIS_URL",
        hide_env_values = true,
        conflicts_with = "redis_cluster_nodes"
    )]
    pub redis_url: Option<String>,
    /// Use a Redis Cluster instead: some of its nodes, as host:port,host:port
    /// (the rest are found from them). Several vaxslot processes may share it.
    /// With a password, give URLs: redis://:PASSWORD@HOST:PORT,…
    #[arg(long, env = "VAXSLOT_REDIS_CLUSTER_NODES", hide_env_values = true)]
    pub redis_cluster_nodes: Option<String>,
    /// Where the other vaxslot processes on the same Redis reach this one
    /// (e.g. http://10.0.0.5:8080): a venue-day's work goes to the process
    /// that owns it. Default: http://<listen address>, unless that is
    /// 0.0.0.0 or [::].
    #[arg(long, env = "VAXSLOT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Replicas that must hold a batch before its bookings are answered
    /// (Redis WAIT), so a 201 survives its master's loss. Default: 1 on a
    /// cluster, 0 on a single Redis. With none attached in time: 503.
    #[arg(long, env = "VAXSLOT_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    /// Longest wait, in milliseconds, for those replicas.
    #[arg(long, env = "VAXSLOT_REDIS_WAIT_TIMEOUT_MS", default_value_t = REDIS_WAIT_TIMEOUT_MS_DEFAULT)]
    pub redis_wait_timeout_ms: u64,
    /// How long the Redis change streams keep what other processes follow,
    /// in seconds: a process that cannot read them for about that long
    /// reloads everything. Memory: the commits of that long.
    #[arg(long, env = "VAXSLOT_CHANGE_STREAMS_KEEP_S", default_value_t = CHANGE_STREAMS_KEEP_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub change_streams_keep_s: u64,
    /// Fill an empty store with a ward-shaped demo data set, and use demo keys
    /// for any role whose key is not set in the environment.
    #[arg(long)]
    pub demo: bool,
    /// HTTP worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Most /v1 requests being served at once; beyond it, 503 overloaded at once.
    #[arg(long, env = "VAXSLOT_MAX_IN_FLIGHT", default_value_t = MAX_IN_FLIGHT_DEFAULT)]
    pub max_in_flight: usize,
    /// Seconds a request body may take to arrive (from the end of its
    /// headers); a slower one is answered 408 request_timeout. Bodies on
    /// their way hold no place among --max-in-flight.
    #[arg(long, env = "VAXSLOT_BODY_TIMEOUT_S", default_value_t = BODY_TIMEOUT_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub body_timeout_s: u64,
    /// Most requests queued for one venue-day; beyond it, 503 overloaded at once.
    #[arg(long, env = "VAXSLOT_VENUE_DAY_QUEUE_MAX", default_value_t = VENUE_DAY_QUEUE_MAX_DEFAULT)]
    pub venue_day_queue_max: usize,
    /// Failed logins per client address per minute before that address waits
    /// a minute (0 disables; successful logins never count).
    #[arg(long, env = "VAXSLOT_LOGIN_FAILURES_PER_ADDR_MAX", default_value_t = ADDRESS_FAILURES_MAX_DEFAULT)]
    pub login_failures_per_addr_max: u32,
    /// Seconds a venue-day's actor stays in memory after its last request
    /// (a past day's at most 10); it reloads from the store on the next one.
    #[arg(long, env = "VAXSLOT_VENUE_DAY_IDLE_S", default_value_t = VENUE_DAY_IDLE_MAX_DEFAULT.as_secs_f64())]
    pub venue_day_idle_s: f64,
    /// Seconds a resident's login token is valid (1 to 86400).
    #[arg(long, env = "VAXSLOT_TOKEN_LIFETIME_S", default_value_t = TOKEN_LIFETIME.num_seconds())]
    pub token_lifetime_s: i64,
    /// Run the clock from this instant (RFC 3339, e.g. 2027-03-01T08:55:00+09:00)
    /// instead of the real time, advancing at the real rate: for rehearsing a
    /// launch ahead of its day. Never set it in production.
    #[arg(long, env = "VAXSLOT_CLOCK_START", value_parser = parse_instant)]
    pub clock_start: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The municipality's 6-digit code (全国地方公共団体コード): venue tablets
    /// accept a 16-digit scanned code only when it starts with it.
    #[arg(long, env = "VAXSLOT_MUNICIPALITY_CODE", value_parser = parse_municipality_code)]
    pub municipality_code: Option<String>,
    /// The municipality's name (e.g. 中野区), shown on every page before
    /// anyone logs in (`GET /v1/info`).
    #[arg(long, env = "VAXSLOT_MUNICIPALITY_NAME", value_parser = parse_one_line)]
    pub municipality_name: Option<String>,
    /// The access log (target `access`, at info): `off`, `all`, or `1/N` for
    /// one request in N. Method, route template, status, code, duration;
    /// never a path with an id, a query string or personal data.
    #[arg(long, env = "VAXSLOT_ACCESS_LOG", default_value = "off", value_parser = crate::telemetry::AccessLog::parse)]
    pub access_log: crate::telemetry::AccessLog,
    /// Mail residents through this SMTP server: smtp://user:pass@host:587
    /// (STARTTLS), smtps://user:pass@host (TLS), smtp://127.0.0.1:25 (plain,
    /// a local relay). Unset: no mail, nothing queued. Prefer the variable (it
    /// may hold a password).
    #[arg(long, env = "VAXSLOT_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of the mail (and the domain of its Message-IDs).
    #[arg(long, env = "VAXSLOT_MAIL_FROM", default_value = "vaxslot@localhost")]
    pub mail_from: String,
    /// Local time (HH:MM) on the day before a slot when its reminder is sent.
    #[arg(long, env = "VAXSLOT_REMINDER_AT", default_value = "10:00", value_parser = parse_time_of_day)]
    pub reminder_at: chrono::NaiveTime,
    /// A folder with the ward's own mail templates (a copy of templates/mail/).
    #[arg(long, env = "VAXSLOT_MAIL_TEMPLATES")]
    pub mail_templates: Option<PathBuf>,
    /// Longest wait, in seconds, between two tries of a mail that failed.
    #[arg(long, env = "VAXSLOT_MAIL_RETRY_MAX_S", default_value_t = 300.0)]
    pub mail_retry_max_s: f64,
    /// Where residents book and cancel on the web, written in every mail
    /// (required with VAXSLOT_SMTP_URL).
    #[arg(long, env = "VAXSLOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The call centre's telephone number, written in every mail (required
    /// with VAXSLOT_SMTP_URL).
    #[arg(long, env = "VAXSLOT_CALL_CENTRE_PHONE", value_parser = parse_one_line)]
    pub call_centre_phone: Option<String>,
}

/// A setting shown to residents: one line of visible text.
fn parse_one_line(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || text.chars().any(char::is_control) {
        return Err("one line of text, not empty".to_owned());
    }
    Ok(text.trim().to_owned())
}

fn parse_time_of_day(text: &str) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| "expected a time of day such as 10:00".to_owned())
}

fn parse_municipality_code(text: &str) -> Result<String, String> {
    if text.len() == MUNICIPALITY_CODE_DIGITS && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected {MUNICIPALITY_CODE_DIGITS} digits, e.g. 131148"
        ))
    }
}

/// How long a batch waits for its replicas by default (`--redis-wait-timeout-ms`).
pub const REDIS_WAIT_TIMEOUT_MS_DEFAULT: u64 = 1_000;

/// How long the change streams keep their entries by default
/// (`--change-streams-keep-s`): the store's own default.
pub const CHANGE_STREAMS_KEEP_S_DEFAULT: u64 = crate::store::CHANGES_KEPT_FOR.as_secs();

/// The call centre number the demo's mail gives when none is set.
pub const DEMO_CALL_CENTRE_PHONE: &str = "0120-000-000（デモ）";

/// Digits of a municipality code.
pub const MUNICIPALITY_CODE_DIGITS: usize = 6;

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("expected an RFC 3339 instant such as 2027-03-01T08:55:00+09:00: {e}"))
}

/// Everything `startup` needs, resolved from flags and environment.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `Some` selects the Redis store (one server or a cluster); `None` the
    /// embedded one in `data_dir`.
    pub redis: Option<crate::store::RedisTarget>,
    /// What a Redis batch waits for before it counts.
    pub redis_wait: crate::store::ReplicaWait,
    /// How long the Redis change streams keep their entries.
    pub change_streams_keep: Duration,
    /// Where other processes reach this one (`--advertise-url`).
    pub advertise_url: Option<String>,
    pub demo: bool,
    pub workers: usize,
    pub keys: StaffKeys,
    pub token_secret: Option<String>,
    pub max_in_flight: usize,
    /// How long a request body may take to arrive (`--body-timeout-s`).
    pub body_timeout: Duration,
    pub venue_day_queue_max: usize,
    pub login_failures_per_addr_max: u32,
    pub venue_day_idle_max: Duration,
    pub token_lifetime: chrono::Duration,
    pub clock_start: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub municipality_code: Option<String>,
    /// What `GET /v1/info` says before anyone logs in: the municipality's
    /// name and the call centre's number (also written in every mail).
    pub municipality_name: Option<String>,
    pub call_centre_phone: Option<String>,
    pub access_log: crate::telemetry::AccessLog,
    /// `Some` when mail is on (`VAXSLOT_SMTP_URL`).
    pub mail: Option<crate::mail::MailSettings>,
}

fn env_key(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// `Err` says which setting is missing or wrong.
    pub fn from_args(args: Box<ServeArgs>) -> Result<Self, String> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let redis = match (args.redis_url, args.redis_cluster_nodes) {
            (Some(url), _) => Some(crate::store::RedisTarget::Single(url)),
            (None, Some(nodes)) => Some(crate::store::RedisTarget::cluster_from_list(&nodes)?),
            (None, None) => None,
        };
        let redis_wait = crate::store::ReplicaWait {
            replicas: args.redis_wait_replicas.unwrap_or(match redis {
                Some(crate::store::RedisTarget::Cluster(_)) => 1,
                _ => 0,
            }),
            timeout: Duration::from_millis(args.redis_wait_timeout_ms),
        };
        let call_centre_phone = args.call_centre_phone.clone();
        let mail = match args.smtp_url.filter(|url| !url.is_empty()) {
            None => None,
            Some(smtp_url) => Some(crate::mail::MailSettings {
                smtp_url,
                from: args.mail_from,
                reminder_at: args.reminder_at,
                templates: args.mail_templates,
                retry_max: Duration::try_from_secs_f64(args.mail_retry_max_s)
                    .map_err(|_| "--mail-retry-max-s must be a number of seconds".to_owned())?
                    .max(crate::mail::MAIL_RETRY_FIRST),
                // The demo fills in its own; a real ward must say them.
                site_url: match (args.public_url, args.demo) {
                    (Some(url), _) => url,
                    (None, true) => format!("http://{}/", args.listen),
                    (None, false) => return Err(
                        "VAXSLOT_SMTP_URL is set: VAXSLOT_PUBLIC_URL (--public-url) must say where residents book and cancel".to_owned(),
                    ),
                },
                call_centre_phone: match (args.call_centre_phone, args.demo) {
                    (Some(phone), _) => phone,
                    (None, true) => DEMO_CALL_CENTRE_PHONE.to_owned(),
                    (None, false) => return Err(
                        "VAXSLOT_SMTP_URL is set: VAXSLOT_CALL_CENTRE_PHONE (--call-centre-phone) must give the call centre's number".to_owned(),
                    ),
                },
            }),
        };
        Ok(Self {
            listen: args.listen,
            data_dir: args.data_dir,
            redis,
            redis_wait,
            change_streams_keep: Duration::from_secs(args.change_streams_keep_s),
            advertise_url: args.advertise_url,
            demo: args.demo,
            workers: args.workers.unwrap_or(cpus).clamp(1, HTTP_WORKERS_MAX),
            keys: StaffKeys {
                operator: env_key("VAXSLOT_OPERATOR_KEY"),
                staff: env_key("VAXSLOT_STAFF_KEY"),
                sre: env_key("VAXSLOT_SRE_KEY"),
                admin: env_key("VAXSLOT_ADMIN_KEY"),
            },
            token_secret: env_key("VAXSLOT_TOKEN_SECRET"),
            max_in_flight: args.max_in_flight.max(1),
            body_timeout: Duration::from_secs(args.body_timeout_s),
            venue_day_queue_max: args.venue_day_queue_max.max(1),
            login_failures_per_addr_max: args.login_failures_per_addr_max,
            venue_day_idle_max: Duration::try_from_secs_f64(args.venue_day_idle_s)
                .unwrap_or(VENUE_DAY_IDLE_MAX_DEFAULT)
                .max(VENUE_DAY_IDLE_MIN),
            token_lifetime: chrono::Duration::seconds(args.token_lifetime_s)
                .clamp(chrono::Duration::seconds(1), TOKEN_LIFETIME_MAX),
            clock_start: args.clock_start,
            municipality_code: args.municipality_code,
            municipality_name: args.municipality_name,
            call_centre_phone,
            access_log: args.access_log,
            mail,
        })
    }
}
