//! Reading request bodies under a named limit, and parsing them, so every
//! failure is a problem+json answer (never actix's plain-text errors).

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{self, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// Largest request body, except resident import (API.md: 16 KiB).
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// The body deadline where no `AppState` is at hand (never in the server).
const BODY_TIMEOUT_FALLBACK: Duration =
    Duration::from_secs(crate::settings::BODY_TIMEOUT_S_DEFAULT);
/// The slowest link a ward's office may have (1 Mbit/s): a body larger
/// than `BODY_BYTES_MAX` gets a second per this many bytes declared beyond
/// it, on top of `--body-timeout-s` (16 MiB: about 2 minutes more).
const SLOW_LINK_BYTES_PER_S: u64 = 128 * 1024;
/// Largest resident import body (API.md: 16 MiB).
pub const IMPORT_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The request's media type, lower-cased, without parameters.
pub fn media_type(request: &HttpRequest) -> Option<String> {
    let value = request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The body's length as its `Content-Length` declares it, if it does.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// Reads the whole body, refusing it as soon as it passes `limit_bytes`.
pub async fn read(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit_bytes: usize,
) -> Result<Bytes, ApiError> {
    let declared = declared_length(request.headers());
    if declared.is_some_and(|n| n > limit_bytes) {
        return Err(ApiError::payload_too_large(limit_bytes));
    }
    // Bodies of every route but the import were read before admission
    // (`admission.rs`), within the same deadline: here they are in memory.
    let timeout = request
        .app_data::<web::Data<super::AppState>>()
        .map_or(BODY_TIMEOUT_FALLBACK, |state| state.body_timeout);
    let capacity = declared.unwrap_or(0).min(limit_bytes);
    // A large body (a 16 MiB import) gets the time a slow link needs for
    // what it declared beyond the usual size, on top of the deadline.
    let beyond = declared.unwrap_or(0).saturating_sub(BODY_BYTES_MAX) as u64;
    let timeout = timeout + Duration::from_secs(beyond / SLOW_LINK_BYTES_PER_S);
    read_within(&mut payload, limit_bytes, capacity, timeout).await
}

/// Reads `payload` to its end, refusing it as soon as it passes
/// `limit_bytes`; `408 request_timeout` (counted) if it has not all
/// arrived within `timeout`. A body already here (the usual case: it came
/// with its headers, or was read before admission) is read without arming
/// a timer.
pub async fn read_within<S>(
    payload: &mut S,
    limit_bytes: usize,
    capacity: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let reading = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::invalid_json("the request body could not be read"))?;
            if body.len() + chunk.len() > limit_bytes {
                return Err(ApiError::payload_too_large(limit_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let mut reading = std::pin::pin!(reading);
    if let Some(read) = (&mut reading).now_or_never() {
        return read;
    }
    match tokio::time::timeout(timeout, reading).await {
        Ok(read) => read,
        Err(_) => Err(body_too_slow(timeout)),
    }
}

/// `408 request_timeout`, counted.
fn body_too_slow(timeout: Duration) -> ApiError {
    metrics::counter!(crate::telemetry::REQUEST_BODIES_TIMED_OUT_TOTAL).increment(1);
    ApiError::new(
        super::codes::ErrorCode::RequestTimeout,
        format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        ),
    )
}

/// Parses a JSON body. A non-JSON `Content-Type` is `415`; bad JSON `400 invalid_json`.
pub fn parse_json<T: DeserializeOwned>(request: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    if let Some(media) = media_type(request)
        && media != "application/json"
        && !media.ends_with("+json")
    {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(e.to_string()))
}

/// Reads and parses a JSON body of at most `BODY_BYTES_MAX`.
pub async fn json<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let body = read(request, payload, BODY_BYTES_MAX).await?;
    parse_json(request, &body)
}
