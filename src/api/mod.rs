//! HTTP and JSON: the whole route table is here. Only `api/` knows HTTP and
//! JSON shapes; handlers stay thin and call `actors/`, `catalog`,
//! `resident_index` and `store`.

mod access_log;
mod accounts;
mod admission;
mod audit;
mod auth;
mod availability;
mod body;
mod caching;
mod codes;
mod head;
mod health;
mod info;
mod internal;
mod kill_switch;
mod operator;
mod pages;
mod problem;
mod public_reads;
mod reservations;
mod residents;
mod sessions;
mod staff;
mod status;
mod venues;
mod views;

pub use access_log::{AccessLog, log_access};
pub use admission::{BODIES_ARRIVING_MAX, Gate, IMPORTS_IN_FLIGHT_MAX, admit};
pub use auth::StaffKeys;
pub use body::{BODY_BYTES_MAX, IMPORT_BODY_BYTES_MAX};
pub use caching::cache_control;
pub use codes::ErrorCode;
pub use info::Ward;
pub use problem::ApiError;
pub use public_reads::PublicReads;
pub use residents::IMPORT_RECORDS_MAX;

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::actors::{KillSwitchHandle, Registry};
use crate::catalog::Catalog;
use crate::residents::Residents;
use crate::store::Store;
use crate::tokens::TokenKey;

/// Everything the handlers share.
pub struct AppState {
    /// The one way a reservation is made or cancelled, for every channel.
    pub booking: crate::booking::BookingService,
    pub keys: StaffKeys,
    /// How much of the traffic the access log shows (`--access-log`).
    pub access_log: AccessLog,
    /// When this process started serving.
    pub started_at: chrono::DateTime<chrono::FixedOffset>,
    /// The 6 digits a 16-digit check-in code must start with.
    pub municipality_code: Option<String>,
    /// What the pages show before anyone logs in (`GET /v1/info`).
    pub ward: Ward,
    /// Named accounts' keys (`/v1/admin/accounts`).
    pub accounts: Arc<crate::accounts::AccountDirectory>,
    pub tokens: TokenKey,
    pub residents: Residents,
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    pub kill_switch: KillSwitchHandle,
    pub store: Arc<dyn Store>,
    /// `None` when another recorder was installed first (several apps in one process).
    pub metrics: Option<PrometheusHandle>,
    pub login_guard: crate::login_guard::LoginGuard,
    /// `/v1` requests in flight (`--max-in-flight`).
    pub admission: std::sync::Arc<Gate>,
    /// How long a request body may take to arrive (`--body-timeout-s`).
    pub body_timeout: std::time::Duration,
    /// Request bodies on their way, read before admission (`BODIES_ARRIVING_MAX`).
    pub bodies_arriving: std::sync::Arc<Gate>,
    /// Resident imports in flight (`IMPORTS_IN_FLIGHT_MAX`).
    pub imports: std::sync::Arc<Gate>,
    /// The public reads' prepared bytes (`public_reads.rs`).
    pub public_reads: PublicReads,
    /// The mail outbox's figures as last read; `None` while mail is off.
    pub mail_outbox: Option<std::sync::Arc<crate::mail::OutboxGauge>>,
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    ))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

fn page_resource(path: &str) -> actix_web::Resource {
    resource(path).route(web::get().to(pages::page))
}

/// `/operator` and the like: `308` to the page's path with a slash.
fn page_redirect(path: &str) -> actix_web::Resource {
    resource(path).route(web::get().to(pages::to_page_with_slash))
}

/// The route table. actix tries routes in this order, and a route with
/// `{segments}` is tried by running its regex, so the launch-day hot paths
/// (static) come first and the dynamic admin and staff routes last.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(
            resource("/v1/reservations")
                .route(web::get().to(reservations::list))
                .route(web::post().to(reservations::create)),
        )
        .service(resource("/v1/sessions").route(web::post().to(sessions::login)))
        .service(resource("/v1/availability").route(web::get().to(availability::get)))
        .service(resource("/v1/me").route(web::get().to(sessions::me)))
        .service(resource("/v1/venues").route(web::get().to(venues::list_venues)))
        .service(resource("/v1/info").route(web::get().to(info::get)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(
            resource("/v1/admin/kill-switch")
                .route(web::get().to(kill_switch::get))
                .route(web::put().to(kill_switch::put)),
        )
        .service(resource("/v1/admin/residents").route(web::post().to(residents::import)))
        .service(resource("/v1/admin/accounts").route(web::get().to(accounts::list)))
        .service(resource("/v1/admin/audit").route(web::get().to(audit::list)))
        .service(resource("/v1/admin/status").route(web::get().to(status::get)))
        .service(resource("/v1/staff/checkins").route(web::post().to(staff::check_in)))
        .service(resource("/v1/staff/venues").route(web::get().to(venues::staff_venues)))
        .service(resource("/v1/operator/reservations").route(web::post().to(operator::create)))
        .service(
            resource("/v1/operator/reservations/{id}").route(web::delete().to(operator::cancel)),
        )
        .service(
            resource("/v1/operator/residents/{ticket_number}")
                .route(web::get().to(operator::lookup)),
        )
        .service(
            resource("/v1/reservations/{id}")
                .route(web::get().to(reservations::get))
                .route(web::delete().to(reservations::cancel)),
        )
        .service(resource("/v1/admin/venues/{venue_id}").route(web::put().to(venues::put_venue)))
        .service(
            resource("/v1/admin/venues/{venue_id}/days/{date}")
                .route(web::put().to(venues::put_day)),
        )
        .service(
            resource("/v1/admin/accounts/{account_id}")
                .route(web::put().to(accounts::put))
                .route(web::delete().to(accounts::delete)),
        )
        .service(
            resource("/v1/admin/accounts/{account_id}/rotate")
                .route(web::post().to(accounts::rotate)),
        )
        .service(
            resource("/v1/staff/venues/{venue_id}/days/{date}/roster")
                .route(web::get().to(staff::roster)),
        )
        // The web pages and their files (`web/`, embedded).
        .service(
            resource("/internal/v1/venue-days/{venue_id}/{date}/bookings")
                .route(web::post().to(internal::book)),
        )
        .service(
            resource("/internal/v1/venue-days/{venue_id}/{date}/cancellations")
                .route(web::post().to(internal::cancel)),
        )
        .service(
            resource("/internal/v1/venue-days/{venue_id}/{date}/check-ins")
                .route(web::post().to(internal::check_in)),
        )
        .service(
            resource("/internal/v1/venue-days/{venue_id}/{date}/reservations")
                .route(web::get().to(internal::reservations)),
        )
        .service(
            resource("/internal/v1/venue-days/{venue_id}/{date}/plan")
                .route(web::put().to(internal::replace_plan)),
        )
        .service(page_resource("/"))
        .service(page_resource("/operator/"))
        .service(page_resource("/staff/"))
        .service(page_resource("/sre/"))
        .service(page_redirect("/operator"))
        .service(page_redirect("/staff"))
        .service(page_redirect("/sre"))
        .service(resource("/assets/{name}").route(web::get().to(pages::asset)))
        .default_service(web::to(not_found));
}
