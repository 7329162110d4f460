//! `GET`/`PUT /v1/admin/kill-switch` (sre, admin).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth::{self, Role};
use super::problem::ApiError;
use super::{AppState, body};
use crate::domain::TextRule;
use crate::store::{AuditEntry, AuditTarget, KillSwitchState};

/// Longest reason text, in characters.
pub const KILL_SWITCH_REASON_CHARS_MAX: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    engaged: bool,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
pub struct KillSwitchView {
    engaged: bool,
    reason: Option<String>,
    changed_at: Option<String>,
    changed_by: Option<String>,
}

impl From<KillSwitchState> for KillSwitchView {
    fn from(state: KillSwitchState) -> Self {
        Self {
            engaged: state.engaged,
            reason: state.reason,
            changed_at: state.changed_at.map(|t| t.to_rfc3339()),
            changed_by: state.changed_by,
        }
    }
}

pub async fn get(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::staff(&request, &state, &[Role::Sre])?;
    Ok(HttpResponse::Ok().json(KillSwitchView::from(state.kill_switch.state())))
}

/// Returns only after the new state is stored (where every commit checks it)
/// and applied to the gateway's flag.
pub async fn put(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = auth::staff(&request, &state, &[Role::Sre])?;
    let change: ChangeRequest = body::json(&request, payload).await?;
    let reason = change.reason.filter(|r| !r.trim().is_empty());
    if let Some(reason) = &reason {
        TextRule::optional("reason", KILL_SWITCH_REASON_CHARS_MAX).check(reason)?;
    }
    let new_state = KillSwitchState {
        engaged: change.engaged,
        reason,
        changed_at: Some(crate::clock::now()),
        changed_by: Some(staff.role.as_str().to_owned()),
    };
    let mut audit = AuditEntry::new(
        staff.actor,
        staff.role,
        "kill_switch.set",
        AuditTarget::default(),
        "200 ok".to_owned(),
    );
    audit.detail = Some(match &new_state.reason {
        Some(reason) if new_state.engaged => format!("engaged: {reason}"),
        _ if new_state.engaged => "engaged".to_owned(),
        _ => "released".to_owned(),
    });
    let applied = state.kill_switch.set(new_state, audit).await?;
    Ok(HttpResponse::Ok().json(KillSwitchView::from(applied)))
}
