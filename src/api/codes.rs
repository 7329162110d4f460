//! The API's side of the code table (`crate::codes`): a code's status as
//! actix's `StatusCode`. The table itself lives below every layer that
//! names a refusal, so that the wire, metrics and status read it too.

use actix_web::http::StatusCode;

pub use crate::codes::ErrorCode;

/// The HTTP status `code` is answered with.
pub fn http_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).expect("the code table holds HTTP statuses only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_in_the_table_is_an_http_error_status() {
        for code in ErrorCode::ALL {
            let status = http_status(*code);
            assert!(status.is_client_error() || status.is_server_error());
        }
        assert_eq!(
            http_status(ErrorCode::StoreUnavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
