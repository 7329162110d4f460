//! `GET /v1/info`: what every page shows before anyone logs in: the
//! municipality, the number to call, and whether booking is open (a paused
//! banner). Public; never cached (the kill switch's state must be fresh).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;

/// The ward as its settings name it (`VAXSLOT_MUNICIPALITY_NAME`,
/// `VAXSLOT_CALL_CENTRE_PHONE`); `None` when not set.
#[derive(Clone, Default)]
pub struct Ward {
    pub name: Option<String>,
    pub call_centre_phone: Option<String>,
}

#[derive(Serialize)]
struct Info<'a> {
    municipality: Option<&'a str>,
    call_centre_phone: Option<&'a str>,
    booking_open: bool,
    /// The waiting room at opening, when one is set (not yet: `null`).
    waiting_room: Option<()>,
}

pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Info {
        municipality: state.ward.name.as_deref(),
        call_centre_phone: state.ward.call_centre_phone.as_deref(),
        booking_open: !state.kill_switch.is_engaged(),
        waiting_room: None,
    })
}
