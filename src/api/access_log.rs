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

use super::AppState;
use super::problem::ApiError;

/// How much of the traffic is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    /// One request in `n` (1: every request).
    Sampled {
        n: u64,
    },
}

impl AccessLog {
    /// `off`, `all`, or `1/N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(AccessLog::Off),
            "all" => Ok(AccessLog::Sampled { n: 1 }),
            _ => text
                .strip_prefix("1/")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n >= 1)
                .map(|n| AccessLog::Sampled { n })
                .ok_or_else(|| "expected off, all, or 1/N (one request in N)".to_owned()),
        }
    }
}

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
        .map_or("ok", ApiError::code);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_off_all_and_one_in_n() {
        assert_eq!(AccessLog::parse("off"), Ok(AccessLog::Off));
        assert_eq!(AccessLog::parse("all"), Ok(AccessLog::Sampled { n: 1 }));
        assert_eq!(AccessLog::parse("1/100"), Ok(AccessLog::Sampled { n: 100 }));
        for bad in ["", "1/0", "half", "2/3"] {
            assert!(AccessLog::parse(bad).is_err(), "{bad}");
        }
    }
}
