//! Admission control: at most `max_in_flight` `/v1` requests are served at
//! once; the next is answered `503 overloaded` with `Retry-After` at once,
//! before any work, so accepted requests keep a bounded latency and memory
//! stays bounded. `/healthz`, `/readyz` and `/metrics` are never refused.
//! A request's body is read before it takes its place, within
//! `--body-timeout-s` (else `408 request_timeout`): a client that sends its
//! body slowly, or never, holds a socket and the bytes it sent, never a
//! place a resident needs (issue 23: 110 such sockets had locked everyone
//! out). Resident imports (16 MiB bodies) have their own, smaller bound and
//! read their body after their key is checked. It also routes `HEAD` as
//! `GET` (`head.rs`) before anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};

use super::AppState;
use super::body::BODY_BYTES_MAX;
use super::problem::ApiError;

/// The one route whose body is larger than `BODY_BYTES_MAX` (a resident
/// import, up to 16 MiB): read by its handler, after the key is checked.
const IMPORT_PATH: &str = "/v1/admin/residents";

/// Most request bodies on their way at once, read before admission: with
/// `BODY_BYTES_MAX` each, at most 256 MiB, for at most `--body-timeout-s`.
/// A crowd of slow clients that large is refused (`503 overloaded`) before
/// it takes memory; residents' requests, which arrive at once, never wait here.
pub const BODIES_ARRIVING_MAX: usize = 16_384;
/// Most resident imports read at once (each may hold a 16 MiB body).
pub const IMPORTS_IN_FLIGHT_MAX: usize = 2;

/// A counting gate: `enter` gives a permit or nothing.
pub struct Gate {
    in_flight: AtomicUsize,
    max: usize,
}

pub struct Permit {
    gate: Arc<Gate>,
}

impl Gate {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max,
        })
    }

    pub fn enter(self: &Arc<Self>) -> Option<Permit> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit {
            gate: Arc::clone(self),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The middleware: every `/v1` request passes the in-flight gate.
pub async fn admit(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    super::head::route_head_as_get(&mut request);
    // The path as the router reads it (`%76` is `v`), not as sent.
    if !request.match_info().as_str().starts_with("/v1/") {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let read =
        body_before_admission(&mut request, &state.bodies_arriving, state.body_timeout).await;
    if let Err(refusal) = read {
        let mut refusal = refusal.error_response();
        // What is left of the body will not be read: the connection ends.
        refusal
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(request.into_response(refusal).map_into_right_body());
    }
    let Some(permit) = state.admission.enter() else {
        let refusal = ApiError::overloaded().error_response();
        return Ok(request.into_response(refusal).map_into_right_body());
    };
    let response = next.call(request).await;
    drop(permit);
    response.map(ServiceResponse::map_into_left_body)
}

/// Reads the request's body (at most `BODY_BYTES_MAX`) within `timeout`
/// and puts it back, read, for the handler. A request without a body, and
/// a resident import, are left as they are.
async fn body_before_admission(
    request: &mut ServiceRequest,
    arriving: &Arc<Gate>,
    timeout: std::time::Duration,
) -> Result<(), ApiError> {
    let headers = request.headers();
    let declared = super::body::declared_length(headers);
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let bodiless = declared.unwrap_or(0) == 0 && !chunked;
    let import = request.method() == Method::POST && request.match_info().as_str() == IMPORT_PATH;
    if bodiless || import {
        return Ok(());
    }
    if declared.is_some_and(|n| n > BODY_BYTES_MAX) {
        return Err(ApiError::payload_too_large(BODY_BYTES_MAX));
    }
    // Bounded too: past `BODIES_ARRIVING_MAX` bodies on their way (each
    // holding what it sent, up to 16 KiB, for up to the deadline), the next
    // is refused at once, before a byte of it is read.
    let _arriving = arriving.enter().ok_or_else(ApiError::overloaded)?;
    let mut payload = request.take_payload();
    // Grown as bytes arrive, never from the declared length: a socket
    // that promises a body and sends nothing holds no buffer.
    let body = super::body::read_within(&mut payload, BODY_BYTES_MAX, 0, timeout).await?;
    request.set_payload(actix_web::dev::Payload::from(body));
    Ok(())
}
