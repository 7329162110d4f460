//! The access log an SRE reads on launch day: method, route template (never
//! the path: it may hold an id), status, error code, duration. No query
//! string, token, or personal data. Off by default; every request or one in
//! N by `--access-log` (`VAXSLOT_ACCESS_LOG`). Off costs one load of a flag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};

pub use crate::telemetry::AccessLog;

use super::AppState;
use super::problem::ApiError;

static SEEN: AtomicU64 = AtomicU64::new(0);

/// The middleware: logs a sampled request once it is answered.
pub async fn log_access(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let setting = request
        .app_data::<web::Data<AppState>>()
        .map_or(AccessLog::Off, |state| state.access_log);
    let sampled = match setting {
        AccessLog::Off => false,
        AccessLog::Sampled { n } => SEEN.fetch_add(1, Ordering::Relaxed).is_multiple_of(n),
    };
    if !sampled {
        return next.call(request).await;
    }
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let response = next.call(request).await?;
    let code = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map_or("ok", |error| error.code().as_str());
    tracing::info!(
        target: "access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        code,
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response)
}
