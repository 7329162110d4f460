//! Wiring: open the store, load the indexes, start the actors, bind, serve.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::{ACCOUNTS_REFRESH_INTERVAL, AccountDirectory};
use crate::actors::{KillSwitchHandle, Placement, Registry, Shared};
use crate::api::{self, AppState, Gate, IMPORTS_IN_FLIGHT_MAX};
use crate::booking::BookingService;
use crate::catalog::Catalog;
use crate::domain::VenueDay;
use crate::login_guard::LoginGuard;
use crate::residents::{InMemoryResidents, Residents};
use crate::settings::{CONNECTIONS_PER_WORKER_MAX, Settings};
use crate::store::{ChangeCursor, Coordination, EmbeddedStore, RedisStore, RedisTarget, Store};
use crate::tasks::{Place, TASK_STOP_MAX, Tasks};
use crate::tokens::TokenKey;
use crate::{demo, telemetry};

/// Longest the HTTP server waits, once told to stop, for the requests under
/// way to be answered (a booking's own deadline is far shorter); then the
/// connections are closed.
pub const HTTP_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest start-up waits for the follower's first read of the change
/// streams (its connections opened and one round tried).
const FOLLOWER_READY_MAX: std::time::Duration = std::time::Duration::from_secs(10);
const _: () = assert!(
    HTTP_DRAIN_MAX.as_millis() > crate::cluster::FORWARD_TIMEOUT.as_millis(),
    "a booking forwarded to another process is answered before the drain ends"
);

pub struct Application {
    server: Server,
    address: SocketAddr,
    /// Every background task, stopped once the server has drained.
    tasks: Arc<Tasks>,
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
        let tasks = Arc::new(Tasks::new());
        // Checked first: a bad mail setting or template stops the start.
        let mailer = mailer(&settings)?;
        let (store, coordination) = open_store(&settings).await?;
        if settings.demo {
            fill_demo(store.as_ref(), &mut settings, &mut banner).await?;
        }
        let tokens = token_key(&settings);
        let mut loaded = Loaded::load(&store, coordination.as_deref(), &tokens).await?;
        let kill_switch = start_kill_switch(&store, coordination.is_some(), &tasks).await?;
        // Bound before the registry, so that other processes can be told
        // where this one is (a port 0 is known only once bound).
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let placement = placement(&settings, coordination, address)?;
        let registry = start_registry(&settings, &store, placement, &loaded, &tasks);
        start_follower(&mut loaded, &settings, &store, &registry, &tasks).await;
        metrics::gauge!(telemetry::STORE_UP).set(1.0);
        telemetry::register_store(store.label());
        let mail_outbox = mailer.map(|mailer| {
            banner.push("mail on: confirmations, cancellations and reminders are sent".into());
            start_mail(mailer, &store, &loaded, &registry, &tasks)
        });
        let state = web::Data::new(AppState {
            booking: BookingService::new(
                kill_switch.clone(),
                Arc::clone(&loaded.catalog),
                loaded.residents.clone(),
                Arc::clone(&registry),
                settings
                    .mail
                    .as_ref()
                    .map(crate::mail::MailSettings::policy),
                registry.placement().map(|p| Arc::clone(&p.coordination)),
            ),
            accounts: loaded.keep_accounts_fresh(&store, &registry, &tasks),
            municipality_code: settings.municipality_code.clone(),
            ward: api::Ward {
                name: settings.municipality_name.clone(),
                call_centre_phone: settings.call_centre_phone.clone(),
            },
            started_at: crate::clock::now(),
            access_log: settings.access_log,
            keys: settings.keys.clone(),
            tokens,
            residents: loaded.residents.clone(),
            catalog: Arc::clone(&loaded.catalog),
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
        let server = serve(state, &settings, listener)?;
        Ok(Self {
            server,
            address,
            tasks,
            banner,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until SIGTERM (the server drains: every request under way is
    /// answered, within `HTTP_DRAIN_MAX`) or SIGINT (it stops at once);
    /// then the background tasks stop (`TASK_STOP_MAX`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        tracing::info!("the HTTP server has stopped; stopping the background tasks");
        let late = self.tasks.stop(TASK_STOP_MAX).await;
        if late.is_empty() {
            tracing::info!("every background task stopped");
        }
        served
    }
}

/// The store, and what processes on it coordinate through when it is
/// shared (Redis: `Some`; the embedded store has one process: `None`).
async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<dyn Coordination>>)> {
    let Some(target) = &settings.redis else {
        let store = EmbeddedStore::open(&settings.data_dir)
            .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
        return Ok((Arc::new(store), None));
    };
    let redis = Arc::new(
        RedisStore::open(target, settings.redis_wait)
            .await
            .context(match target {
                RedisTarget::Single(_) => "connecting to Redis (--redis-url)",
                RedisTarget::Cluster(_) => {
                    "connecting to the Redis Cluster (--redis-cluster-nodes)"
                }
            })?
            .with_changes_kept(settings.change_streams_keep),
    );
    Ok((
        Arc::clone(&redis) as Arc<dyn Store>,
        Some(redis as Arc<dyn Coordination>),
    ))
}

/// With several processes: the follower of what the others commit, on
/// connections of its own; answers once it has read the streams once (or
/// after `FOLLOWER_READY_MAX`: then it catches up while the process serves).
async fn start_follower(
    loaded: &mut Loaded,
    settings: &Settings,
    store: &Arc<dyn Store>,
    registry: &Arc<Registry>,
    tasks: &Tasks,
) {
    let Some(follower) = loaded.follower(store, registry) else {
        return;
    };
    let follower = match &settings.redis {
        Some(target) => follower.with_own_connections(follower_connections(
            target.clone(),
            settings.change_streams_keep,
        )),
        None => follower,
    };
    let first_round = follower.start(tasks);
    if tokio::time::timeout(FOLLOWER_READY_MAX, first_round)
        .await
        .is_err()
    {
        tracing::warn!("the follower has not read the change streams yet; serving meanwhile");
    }
}

/// The follower's own connections to Redis (`cluster::OpenConnections`):
/// it only reads, so it waits for no replica.
fn follower_connections(
    target: RedisTarget,
    changes_kept: std::time::Duration,
) -> crate::cluster::OpenConnections {
    Arc::new(move || {
        let target = target.clone();
        Box::pin(async move {
            let redis = Arc::new(
                RedisStore::open(&target, crate::store::ReplicaWait::NONE)
                    .await?
                    .with_changes_kept(changes_kept),
            );
            Ok((
                Arc::clone(&redis) as Arc<dyn Store>,
                redis as Arc<dyn Coordination>,
            ))
        })
    })
}

fn token_key(settings: &Settings) -> TokenKey {
    match &settings.token_secret {
        Some(secret) => TokenKey::from_secret(secret),
        None => {
            tracing::warn!(
                "VAXSLOT_TOKEN_SECRET is not set: a random key signs tokens, and they will not survive a restart"
            );
            TokenKey::random()
        }
    }
    .with_lifetime(settings.token_lifetime)
}

/// What start-up loads from the store into memory.
struct Loaded {
    residents: Residents,
    catalog: Arc<Catalog>,
    /// Every venue-day as stored: the follower's mirrors (several processes).
    days: std::collections::HashMap<crate::domain::VenueDayKey, VenueDay>,
    /// Where the change streams ended before anything was loaded: what
    /// others change from then on is followed from there.
    change_cursor: Option<(ChangeCursor, std::time::Instant)>,
    accounts: Arc<AccountDirectory>,
}

impl Loaded {
    async fn load(
        store: &Arc<dyn Store>,
        coordination: Option<&dyn Coordination>,
        tokens: &TokenKey,
    ) -> anyhow::Result<Self> {
        let change_cursor = match coordination {
            Some(coordination) => Some((
                coordination
                    .change_cursor()
                    .await
                    .context("reading where the change streams end")?,
                std::time::Instant::now(),
            )),
            None => None,
        };
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
        tracing::info!(
            store = store.label(),
            venues = catalog.venue_count(),
            venue_days = catalog.day_count(),
            residents = residents.len(),
            reservations = reservations.len(),
            "state loaded"
        );
        let residents = Residents::new(InMemoryResidents::load(
            tokens.clone(),
            residents,
            reservations,
            crate::clock::now(),
        ));
        let accounts = Arc::new(AccountDirectory::load(
            store.load_accounts().await.context("loading accounts")?,
        ));
        Ok(Self {
            residents,
            catalog,
            days,
            change_cursor,
            accounts,
        })
    }

    /// With several processes: the follower of what the others commit, the
    /// days loaded here staying as its mirrors.
    fn follower(
        &mut self,
        store: &Arc<dyn Store>,
        registry: &Arc<Registry>,
    ) -> Option<crate::cluster::Follower> {
        let placement = registry.placement()?;
        let cursor = self
            .change_cursor
            .clone()
            .expect("taken whenever the process has a placement");
        Some(crate::cluster::Follower::new(
            Arc::clone(store),
            Arc::clone(&placement.coordination),
            self.residents.clone(),
            Arc::clone(&self.catalog),
            Arc::clone(registry) as Arc<dyn crate::cluster::LocalDays>,
            cursor,
            std::mem::take(&mut self.days),
        ))
    }

    /// The accounts, reloaded in the background when other processes may
    /// change them in the shared store.
    fn keep_accounts_fresh(
        &self,
        store: &Arc<dyn Store>,
        registry: &Registry,
        tasks: &Tasks,
    ) -> Arc<AccountDirectory> {
        let accounts = Arc::clone(&self.accounts);
        if registry.placement().is_some() {
            let (store, accounts) = (Arc::clone(store), Arc::clone(&accounts));
            tasks.spawn("reload accounts", Place::System, move || async move {
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
        accounts
    }
}

/// The kill switch as stored, its copies made to agree, followed from the
/// shared store when there are other processes.
async fn start_kill_switch(
    store: &Arc<dyn Store>,
    shared: bool,
    tasks: &Tasks,
) -> anyhow::Result<KillSwitchHandle> {
    let state = store
        .load_kill_switch()
        .await
        .context("loading the kill switch")?;
    if state.engaged {
        tracing::warn!("the kill switch is engaged: booking stays closed until it is released");
    }
    // A process stopped half-way through a change leaves some copies
    // behind the stored state: every start makes them agree.
    store
        .reconcile_kill_switch_flags()
        .await
        .context("writing the kill switch's state to every partition")?;
    let kill_switch = KillSwitchHandle::start(state, Arc::clone(store));
    if shared {
        kill_switch.follow(Arc::clone(store), tasks);
    }
    Ok(kill_switch)
}

/// The venue-day actors' registry; with several processes, this one's
/// lease among them kept alive.
fn start_registry(
    settings: &Settings,
    store: &Arc<dyn Store>,
    placement: Option<Placement>,
    loaded: &Loaded,
    tasks: &Tasks,
) -> Arc<Registry> {
    if let Some(placement) = &placement {
        placement
            .membership
            .keep_alive(Arc::clone(&placement.coordination), tasks);
    }
    let shared = Arc::new(Shared {
        store: Arc::clone(store),
        residents: loaded.residents.clone(),
        catalog: Arc::clone(&loaded.catalog),
    });
    let registry = Arc::new(Registry::new(
        shared,
        placement,
        settings.workers,
        settings.venue_day_queue_max,
        settings.venue_day_idle_max,
    ));
    registry.start_retiring_moved_days(tasks);
    registry
}

fn serve(
    state: web::Data<AppState>,
    settings: &Settings,
    listener: TcpListener,
) -> anyhow::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(api::admit))
            .wrap(actix_web::middleware::from_fn(api::cache_control))
            .wrap(actix_web::middleware::from_fn(api::log_access))
            .configure(api::configure)
    })
    .workers(settings.workers)
    .max_connections(CONNECTIONS_PER_WORKER_MAX)
    .shutdown_timeout(HTTP_DRAIN_MAX.as_secs())
    .listen(listener)
    .context("starting the HTTP server")?
    .run())
}

/// How this process shares venue-days with others on a shared store: it
/// joins the member list and forwards a day's work to the day's owner.
/// Without a shared token secret the processes could not authenticate each
/// other's calls (nor each other's tokens); without an address the others
/// could not reach this one.
fn placement(
    settings: &Settings,
    coordination: Option<Arc<dyn Coordination>>,
    address: SocketAddr,
) -> anyhow::Result<Option<Placement>> {
    let Some(coordination) = coordination else {
        return Ok(None);
    };
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
    Ok(Some(Placement {
        membership: Arc::new(crate::cluster::Membership::new(url)),
        forwarder: Arc::new(crate::cluster::Forwarder::new(secret)),
        coordination,
    }))
}

fn mailer(settings: &Settings) -> anyhow::Result<Option<crate::mail::Mailer>> {
    settings
        .mail
        .clone()
        .map(crate::mail::Mailer::build)
        .transpose()
        .map_err(anyhow::Error::msg)
}

/// The demo ward in an empty store, and the demo keys where none is set.
async fn fill_demo(
    store: &dyn Store,
    settings: &mut Settings,
    banner: &mut Vec<String>,
) -> anyhow::Result<()> {
    if demo::fill_if_empty(store, crate::clock::today())
        .await
        .context("filling the demo data")?
    {
        banner.push("demo data loaded into an empty store".into());
    }
    demo_keys(settings, banner);
    Ok(())
}

/// The mail worker, the reminder scheduler and the outbox's figures.
fn start_mail(
    mailer: crate::mail::Mailer,
    store: &Arc<dyn Store>,
    loaded: &Loaded,
    registry: &Arc<Registry>,
    tasks: &Tasks,
) -> Arc<crate::mail::OutboxGauge> {
    let gauge = Arc::new(crate::mail::OutboxGauge::default());
    crate::mail::start(
        mailer,
        Arc::clone(store),
        loaded.residents.clone(),
        Arc::clone(&loaded.catalog),
        Arc::clone(registry),
        Arc::clone(&gauge),
        tasks,
    );
    gauge
}

fn demo_keys(settings: &mut Settings, banner: &mut Vec<String>) {
    settings
        .municipality_name
        .get_or_insert_with(|| demo::DEMO_MUNICIPALITY_NAME.to_owned());
    settings
        .call_centre_phone
        .get_or_insert_with(|| crate::settings::DEMO_CALL_CENTRE_PHONE.to_owned());
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
