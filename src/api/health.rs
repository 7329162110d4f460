//! `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::problem::ApiError;
use crate::telemetry;

/// Longest wait for the store in `/readyz` and `/metrics`.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn store_is_up(state: &AppState) -> bool {
    let up = matches!(
        tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    metrics::gauge!(telemetry::STORE_UP).set(if up { 1.0 } else { 0.0 });
    up
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if store_is_up(&state).await {
        Ok(HttpResponse::Ok().json(json!({"status": "ready", "store": state.store.label()})))
    } else {
        Err(ApiError::store_unavailable())
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    store_is_up(&state).await;
    metrics::gauge!(telemetry::VENUE_DAY_ACTORS).set(state.registry.actor_count() as f64);
    metrics::gauge!(telemetry::REQUESTS_IN_FLIGHT).set(state.admission.in_flight() as f64);
    metrics::gauge!(telemetry::REQUEST_BODIES_ARRIVING)
        .set(state.bodies_arriving.in_flight() as f64);
    telemetry::sample_process();
    metrics::gauge!(telemetry::SLOTS_HELD_OPEN)
        .set(state.catalog.held_open_total(crate::clock::now()) as f64);
    metrics::gauge!(telemetry::SLOTS_REMAINING).set(state.catalog.remaining_total() as f64);
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("valid media type"),
        ))
        .body(text)
}
