//! Wiring: open the store, load the indexes, start the actors, bind, serve.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::{ACCOUNTS_REFRESH_INTERVAL, AccountDirectory};
use crate::actors::{KillSwitchHandle, Registry, Shared};
use crate::api::{self, AppState, Gate, IMPORTS_IN_FLIGHT_MAX};
use crate::booking::BookingService;
use crate::catalog::Catalog;
use crate::domain::VenueDay;
use crate::login_guard::LoginGuard;
use crate::residents::{InMemoryResidents, Residents};
use crate::settings::{CONNECTIONS_PER_WORKER_MAX, Settings};
use crate::store::{EmbeddedStore, RedisStore, RedisTarget, Store};
use crate::tokens::TokenKey;
use crate::{demo, telemetry};

pub struct Application {
    server: Server,
    address: SocketAddr,
    /// Lines for the operator: demo logins and keys, warnings.
    pub banner: Vec<String>,
}

impl Application {
    /// Builds everything and binds the listener. Must run inside an actix system.
    pub async fn build(
        mut settings: Settings,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<Self> {
        let mut banner = Vec::new();
        // Checked first: a bad mail setting or template stops the start.
        let mailer = settings
            .mail
            .clone()
            .map(crate::mail::Mailer::build)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let store: Arc<dyn Store> = match &settings.redis {
            Some(target) => Arc::new(
                RedisStore::open(target, settings.redis_wait)
                    .await
                    .context(match target {
                        RedisTarget::Single(_) => "connecting to Redis (--redis-url)",
                        RedisTarget::Cluster(_) => {
                            "connecting to the Redis Cluster (--redis-cluster-nodes)"
                        }
                    })?
                    .with_changes_kept(settings.change_streams_keep),
            ),
            None => Arc::new(EmbeddedStore::open(&settings.data_dir).with_context(|| {
                format!("opening the store in {}", settings.data_dir.display())
            })?),
        };
        if settings.demo {
            let today = crate::clock::today();
            if demo::fill_if_empty(store.as_ref(), today)
                .await
                .context("filling the demo data")?
            {
                banner.push("demo data loaded into an empty store".into());
            }
            demo_keys(&mut settings, &mut banner);
        }
        let tokens = match &settings.token_secret {
            Some(secret) => TokenKey::from_secret(secret),
            None => {
                tracing::warn!(
                    "VAXSLOT_TOKEN_SECRET is not set: a random key signs tokens, and they will not survive a restart"
                );
                TokenKey::random()
            }
        }
        .with_lifetime(settings.token_lifetime);

        // Where the change streams end before anything is loaded: with
        // several processes, what others change from now on is followed
        // from here (`cluster::Follower`).
        let change_cursor = (
            store
                .change_cursor()
                .await
                .context("reading where the change streams end")?,
            std::time::Instant::now(),
        );
        let residents = store.load_residents().await.context("loading residents")?;
        let crate::store::ReadableDays {
            plans,
            reservations,
        } = store
            .load_readable_days()
            .await
            .context("loading day plans and reservations")?;
        let catalog = Arc::new(Catalog::default());
        for venue in store.load_venues().await.context("loading venues")? {
            catalog.put_venue(venue);
        }
        // Publish every day's snapshot from one pass over the reservations,
        // so availability is complete before any actor starts.
        let days = VenueDay::restore_all(plans, &reservations);
        for snapshot in days.values().filter_map(VenueDay::snapshot) {
            catalog.publish(snapshot);
        }
        let resident_count = residents.len();
        let reservation_count = reservations.len();
        let residents = Residents::new(InMemoryResidents::load(
            tokens.clone(),
            residents,
            reservations,
            crate::clock::now(),
        ));

        let accounts = Arc::new(AccountDirectory::load(
            store.load_accounts().await.context("loading accounts")?,
        ));
        if store.kind() == "redis" {
            // Other processes may change accounts in the shared store.
            let (store, accounts) = (Arc::clone(&store), Arc::clone(&accounts));
            actix_rt::spawn(async move {
                let mut every = tokio::time::interval(ACCOUNTS_REFRESH_INTERVAL);
                loop {
                    every.tick().await;
                    let seen = accounts.change_count();
                    match store.load_accounts().await {
                        Ok(loaded) => accounts.replace_all_if_unchanged(seen, loaded),
                        Err(error) => tracing::warn!(error = %error, "accounts not reloaded"),
                    }
                }
            });
        }
        let kill_switch_state = store
            .load_kill_switch()
            .await
            .context("loading the kill switch")?;
        if kill_switch_state.engaged {
            tracing::warn!("the kill switch is engaged: booking stays closed until it is released");
        }
        // A process stopped half-way through a change leaves some copies
        // behind the stored state: every start makes them agree.
        store
            .reconcile_kill_switch_flags()
            .await
            .context("writing the kill switch's state to every partition")?;
        let kill_switch = KillSwitchHandle::start(kill_switch_state, Arc::clone(&store));
        if store.kind() == "redis" {
            kill_switch.follow(Arc::clone(&store));
        }
        // Bound before the registry, so that other processes can be told
        // where this one is (a port 0 is known only once bound).
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let placement = placement(&settings, store.as_ref(), address)?;
        if let Some(placement) = &placement {
            placement.membership.keep_alive(Arc::clone(&store));
        }
        let shared = Arc::new(Shared {
            store: Arc::clone(&store),
            residents: residents.clone(),
            catalog: Arc::clone(&catalog),
        });
        let registry = Arc::new(Registry::new(
            shared,
            placement,
            settings.workers,
            settings.venue_day_queue_max,
            settings.venue_day_idle_max,
        ));
        if registry.shares_state() {
            // The days loaded above stay as the mirrors of what others commit.
            crate::cluster::Follower::new(
                Arc::clone(&store),
                residents.clone(),
                Arc::clone(&catalog),
                Arc::clone(&registry) as Arc<dyn crate::cluster::LocalDays>,
                change_cursor,
                days,
            )
            .start();
        } else {
            drop(days);
        }
        tracing::info!(
            store = store.kind(),
            venues = catalog.venue_count(),
            venue_days = catalog.day_count(),
            residents = resident_count,
            reservations = reservation_count,
            "state loaded"
        );
        metrics::gauge!(telemetry::STORE_UP).set(1.0);
        telemetry::register_store(store.kind());

        let booking = BookingService::new(
            kill_switch.clone(),
            Arc::clone(&catalog),
            residents.clone(),
            Arc::clone(&registry),
            settings
                .mail
                .as_ref()
                .map(crate::mail::MailSettings::policy),
            registry.placement().map(|_| Arc::clone(&store)),
        );
        let mail_outbox = mailer.map(|mailer| {
            let gauge = Arc::new(crate::mail::OutboxGauge::default());
            crate::mail::start(
                mailer,
                Arc::clone(&store),
                residents.clone(),
                Arc::clone(&catalog),
                Arc::clone(&registry),
                Arc::clone(&gauge),
            );
            banner.push("mail on: confirmations, cancellations and reminders are sent".into());
            gauge
        });
        let state = web::Data::new(AppState {
            booking,
            accounts,
            municipality_code: settings.municipality_code.clone(),
            started_at: crate::clock::now(),
            access_log: settings.access_log,
            keys: settings.keys.clone(),
            tokens,
            residents,
            catalog,
            registry,
            kill_switch,
            store,
            metrics,
            login_guard: LoginGuard::new(settings.login_failures_per_addr_max),
            admission: Gate::new(settings.max_in_flight),
            body_timeout: settings.body_timeout,
            bodies_arriving: Gate::new(api::BODIES_ARRIVING_MAX),
            imports: Gate::new(IMPORTS_IN_FLIGHT_MAX),
            public_reads: api::PublicReads::default(),
            mail_outbox,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(api::admit))
                .wrap(actix_web::middleware::from_fn(api::cache_control))
                .wrap(actix_web::middleware::from_fn(api::log_access))
                .configure(api::configure)
        })
        .workers(settings.workers)
        .max_connections(CONNECTIONS_PER_WORKER_MAX)
        .listen(listener)
        .context("starting the HTTP server")?
        .run();
        Ok(Self {
            server,
            address,
            banner,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// How this process shares venue-days with others on the same Redis: it
/// joins the member list and forwards a day's work to the day's owner. The
/// embedded store has one process; without a shared token secret the
/// processes could not authenticate each other's calls (nor each other's
/// tokens); without an address the others could not reach this one.
fn placement(
    settings: &Settings,
    store: &dyn Store,
    address: SocketAddr,
) -> anyhow::Result<Option<crate::actors::Placement>> {
    if store.kind() != "redis" {
        return Ok(None);
    }
    // A process that did not coordinate would commit beside the others with
    // no owner for its days, no shared dose claims and no following: it
    // refuses to start instead (DESIGN: coordinate or refuse).
    let Some(secret) = &settings.token_secret else {
        anyhow::bail!(
            "VAXSLOT_TOKEN_SECRET is not set: on Redis it is required (every process on one Redis shares it, to sign tokens and to call each other)"
        );
    };
    let url = match &settings.advertise_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if address.ip().is_unspecified() => anyhow::bail!(
            "listening on {address} on Redis needs VAXSLOT_ADVERTISE_URL (--advertise-url): the address other processes reach this one at"
        ),
        None => format!("http://{address}"),
    };
    Ok(Some(crate::actors::Placement {
        membership: Arc::new(crate::cluster::Membership::new(url)),
        forwarder: Arc::new(crate::cluster::Forwarder::new(secret)),
    }))
}

fn demo_keys(settings: &mut Settings, banner: &mut Vec<String>) {
    if settings.municipality_code.is_none() {
        settings.municipality_code = Some(demo::DEMO_MUNICIPALITY_CODE.to_owned());
        banner.push(format!(
            "demo municipality code in force: VAXSLOT_MUNICIPALITY_CODE={}",
            demo::DEMO_MUNICIPALITY_CODE
        ));
    }
    let keys = &mut settings.keys;
    for (variable, demo_key) in demo::DEMO_KEYS {
        let slot = match variable {
            "VAXSLOT_ADMIN_KEY" => &mut keys.admin,
            "VAXSLOT_SRE_KEY" => &mut keys.sre,
            "VAXSLOT_STAFF_KEY" => &mut keys.staff,
            _ => &mut keys.operator,
        };
        if slot.is_none() {
            *slot = Some(demo_key.to_owned());
            banner.push(format!("demo key in force: {variable}={demo_key}"));
        }
    }
    for (id, role, _, key) in demo::DEMO_ACCOUNTS {
        banner.push(format!(
            "demo account {id} ({}): Authorization: Bearer {key}",
            role.as_str()
        ));
    }
    banner.push(format!(
        "demo resident login: POST /v1/sessions {{\"ticket_number\":\"{}\",\"birth_date\":\"{}\"}}",
        demo::DEMO_TICKET_NUMBER,
        demo::demo_birth_date()
    ));
}
