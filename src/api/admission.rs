//! Admission control: at most `max_in_flight` `/v1` requests are served at
//! once; the next is answered `503 overloaded` with `Retry-After` at once,
//! before any work, so accepted requests keep a bounded latency and memory
//! stays bounded. `/healthz`, `/readyz` and `/metrics` are never refused.
//! Resident imports (16 MiB bodies) have their own, smaller bound. It also
//! routes `HEAD` as `GET` (`head.rs`) before anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use super::AppState;
use super::problem::ApiError;

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
    if !request.path().starts_with("/v1/") {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let gate = request
        .app_data::<web::Data<AppState>>()
        .map(|state| Arc::clone(&state.admission));
    let permit = match gate {
        Some(gate) => match gate.enter() {
            Some(permit) => permit,
            None => {
                let refusal = ApiError::overloaded().error_response();
                return Ok(request.into_response(refusal).map_into_right_body());
            }
        },
        None => {
            return next
                .call(request)
                .await
                .map(ServiceResponse::map_into_left_body);
        }
    };
    let response = next.call(request).await;
    drop(permit);
    response.map(ServiceResponse::map_into_left_body)
}
