//! `Cache-Control` for every `/v1` answer, in one place, so that no route can
//! forget it: an answer that carries personal data or depends on the caller
//! (everything but the public reads, and those when a credential is sent)
//! is `no-store, private`, so that no cache in front of the service keeps
//! one resident's data for the next. And `X-Content-Type-Options: nosniff`
//! on every answer the app makes (API.md "Conventions"), so that no browser
//! reads a JSON or CSV answer as a page or a script.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

/// The reads that are the same for everyone (without a credential).
pub const PUBLIC_READS: [&str; 2] = ["/v1/availability", "/v1/venues"];

/// What a personal or caller-dependent answer says to caches.
pub const PRIVATE_NO_STORE: &str = "no-store, private";

pub async fn cache_control(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // The path as the router reads it (`/%761/me` is `/v1/me`), not as sent.
    let path = request.match_info().as_str();
    let private = path.starts_with("/v1/")
        && (!PUBLIC_READS.contains(&path) || request.headers().contains_key(header::AUTHORIZATION));
    let mut response = next.call(request).await?;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if private {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(PRIVATE_NO_STORE),
        );
    }
    Ok(response)
}
