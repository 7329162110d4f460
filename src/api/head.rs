//! `HEAD` for every `GET` route, in one place: a `HEAD` request is routed as
//! the `GET` it stands for, and actix sends the answer's status and headers
//! (with the body's `Content-Length`) without the body, since the
//! connection knows the request was a `HEAD`. Called first by the
//! admission middleware (`admission.rs`), so it costs no middleware layer
//! of its own.

use actix_web::dev::ServiceRequest;
use actix_web::http::Method;

pub fn route_head_as_get(request: &mut ServiceRequest) {
    if request.method() == Method::HEAD {
        request.head_mut().method = Method::GET;
    }
}
