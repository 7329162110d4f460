//! `GET /v1/admin/status` (sre, admin): the one document an SRE console
//! polls every second on launch day. Figures only, from counters the
//! process keeps anyway (`recent.rs`, the gate, the registry, the catalog);
//! never personal data.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::AppState;
use super::auth::{self, Role};
use super::kill_switch::KillSwitchView;
use super::problem::ApiError;

#[derive(Serialize)]
struct StoreView {
    kind: &'static str,
    up: bool,
}

#[derive(Serialize)]
struct Bookings {
    committed_per_s: f64,
    refused_per_s: BTreeMap<&'static str, f64>,
    p99_ms: Option<f64>,
}

#[derive(Serialize)]
struct Logins {
    ok_per_s: f64,
    failed_per_s: f64,
    locked_per_s: f64,
}

#[derive(Serialize)]
struct Slots {
    capacity: u64,
    remaining: u64,
}

/// Mail due and not sent yet, and for how long the oldest has waited.
#[derive(Serialize)]
struct MailOutbox {
    /// `false` while mail is off (`VAXSLOT_SMTP_URL` unset): nothing is queued.
    enabled: bool,
    pending: u64,
    oldest_s: u64,
}

#[derive(Serialize)]
struct Status {
    kill_switch: KillSwitchView,
    store: StoreView,
    started_at: String,
    version: &'static str,
    in_flight: usize,
    venue_day_actors: usize,
    /// The last `RECENT_WINDOW_S` (10) seconds.
    bookings: Bookings,
    logins: Logins,
    slots: Slots,
    mail_outbox: MailOutbox,
    /// vaxslot processes live on this store, as this one sees them (1 when
    /// it is alone, or does not share venue-days).
    processes: usize,
}

pub async fn get(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::staff(&request, &state, &[Role::Sre])?;
    let recent = crate::recent::figures();
    let status = Status {
        kill_switch: KillSwitchView::from(state.kill_switch.state()),
        store: StoreView {
            kind: state.store.label(),
            up: super::health::store_is_up(&state).await,
        },
        started_at: state.started_at.to_rfc3339(),
        version: env!("CARGO_PKG_VERSION"),
        // This request is one of them.
        in_flight: state.admission.in_flight(),
        venue_day_actors: state.registry.actor_count(),
        processes: state
            .registry
            .placement()
            .map_or(1, |placement| placement.membership.live().len()),
        bookings: Bookings {
            committed_per_s: recent.committed_per_s,
            refused_per_s: recent.refused_per_s.into_iter().collect(),
            p99_ms: recent.p99_ms,
        },
        logins: Logins {
            ok_per_s: recent.logins_ok_per_s,
            failed_per_s: recent.logins_failed_per_s,
            locked_per_s: recent.logins_locked_per_s,
        },
        slots: Slots {
            capacity: state.catalog.capacity_total(),
            remaining: state.catalog.remaining_total(),
        },
        mail_outbox: match &state.mail_outbox {
            Some(gauge) => MailOutbox {
                enabled: true,
                pending: gauge.pending.load(Ordering::Relaxed),
                oldest_s: gauge.oldest_s.load(Ordering::Relaxed),
            },
            None => MailOutbox {
                enabled: false,
                pending: 0,
                oldest_s: 0,
            },
        },
    };
    Ok(HttpResponse::Ok().json(status))
}
