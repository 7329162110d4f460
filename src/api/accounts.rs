//! Named accounts (admin): `PUT`, `GET`, `POST …/rotate`, `DELETE`. A key is
//! shown once, in the answer that made it; the store and the directory keep
//! only its hash. The store is written first (with the audit entry, in one
//! write), then the directory, then the answer: a rotated or deleted key is
//! refused from the moment the answer is sent.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::audit::outcome_ok;
use super::auth::{self, Staff};
use super::codes::ErrorCode;
use super::problem::ApiError;
use super::{AppState, body};
use crate::accounts::{ACCOUNTS_MAX, key_hash, new_key};
use crate::domain::{Account, AccountId, Role, VenueId};
use crate::store::{AuditEntry, AuditTarget};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    role: String,
    display_name: String,
    /// A staff account's venues; absent or null: every venue.
    #[serde(default)]
    venues: Option<Vec<String>>,
}

impl AccountBody {
    /// The venues, each a valid id of a venue this process knows.
    fn venues(&self, state: &AppState) -> Result<Option<Vec<VenueId>>, ApiError> {
        let Some(ids) = &self.venues else {
            return Ok(None);
        };
        let venues = ids
            .iter()
            .map(|id| VenueId::parse(id))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(unknown) = venues.iter().find(|id| state.catalog.venue(id).is_none()) {
            return Err(ApiError::new(
                ErrorCode::InvalidVenues,
                format!("venues: no venue {unknown} (make the venue first)"),
            ));
        }
        Ok(Some(venues))
    }
}

#[derive(Serialize)]
struct AccountView {
    account_id: String,
    role: &'static str,
    display_name: String,
    created_at: String,
    /// A staff account's venues; absent: every venue.
    #[serde(skip_serializing_if = "Option::is_none")]
    venues: Option<Vec<String>>,
    /// Only in the answer that made the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl AccountView {
    fn of(account: &Account, key: Option<String>) -> Self {
        Self {
            account_id: account.id.to_string(),
            role: account.role.as_str(),
            display_name: account.display_name.clone(),
            created_at: account.created_at.to_rfc3339(),
            venues: account
                .venues
                .as_ref()
                .map(|v| v.iter().map(|id| id.to_string()).collect()),
            key,
        }
    }
}

#[derive(Serialize)]
struct AccountList {
    accounts: Vec<AccountView>,
}

/// Only admins (an admin account or the admin key) manage accounts.
fn admin(request: &HttpRequest, state: &AppState) -> Result<Staff, ApiError> {
    let staff = auth::staff(request, state, &[])?;
    if staff.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    Ok(staff)
}

fn target(id: &AccountId) -> AuditTarget {
    AuditTarget {
        account_id: Some(id.clone()),
        ..AuditTarget::default()
    }
}

/// The audit entry of an account call answered with `status`.
fn entry(staff: &Staff, action: &str, id: &AccountId, status: StatusCode) -> AuditEntry {
    AuditEntry::new(
        staff.actor.clone(),
        staff.role,
        action,
        target(id),
        outcome_ok(status),
    )
}

/// Stores `account` with the audit entry of this call, then updates the
/// directory.
async fn store_account(
    state: &AppState,
    staff: &Staff,
    action: &str,
    account: Account,
    answer: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let entry = entry(staff, action, &account.id, answer.status());
    state.store.put_account(account.clone(), entry).await?;
    state.accounts.put(account);
    Ok(answer)
}

pub async fn put(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = admin(&request, &state)?;
    let id = AccountId::parse(&path)?;
    let result = async {
        let body: AccountBody = body::json(&request, payload).await?;
        let role = Role::parse(&body.role)?;
        let venues = body.venues(&state)?;
        match state.accounts.get(&id) {
            Some(existing) => {
                let account = Account {
                    role,
                    display_name: body.display_name,
                    venues,
                    ..existing
                }
                .validated()?;
                let answer = HttpResponse::Ok().json(AccountView::of(&account, None));
                store_account(&state, &staff, "admin.account_put", account, answer).await
            }
            None => {
                if !state.accounts.has_room() {
                    return Err(ApiError::new(
                        ErrorCode::TooManyAccounts,
                        format!("at most {ACCOUNTS_MAX} accounts"),
                    ));
                }
                let key = new_key();
                let account = Account {
                    id: id.clone(),
                    role,
                    display_name: body.display_name,
                    created_at: crate::clock::now(),
                    key_hash: key_hash(&key),
                    venues,
                }
                .validated()?;
                let answer = HttpResponse::Created().json(AccountView::of(&account, Some(key)));
                store_account(&state, &staff, "admin.account_put", account, answer).await
            }
        }
    }
    .await;
    audit_refusal(&state, &staff, "admin.account_put", &id, result).await
}

pub async fn rotate(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = admin(&request, &state)?;
    let id = AccountId::parse(&path)?;
    let result = async {
        let existing = state.accounts.get(&id).ok_or_else(ApiError::not_found)?;
        let key = new_key();
        let account = Account {
            key_hash: key_hash(&key),
            ..existing
        };
        let answer = HttpResponse::Ok().json(AccountView::of(&account, Some(key)));
        store_account(&state, &staff, "admin.account_rotate", account, answer).await
    }
    .await;
    audit_refusal(&state, &staff, "admin.account_rotate", &id, result).await
}

pub async fn delete(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let staff = admin(&request, &state)?;
    let id = AccountId::parse(&path)?;
    let result = async {
        let existing = state.accounts.get(&id).ok_or_else(ApiError::not_found)?;
        let entry = entry(&staff, "admin.account_delete", &id, StatusCode::OK);
        state.store.delete_account(id.clone(), entry).await?;
        state.accounts.remove(&id);
        Ok(HttpResponse::Ok().json(AccountView::of(&existing, None)))
    }
    .await;
    audit_refusal(&state, &staff, "admin.account_delete", &id, result).await
}

/// A refused account call is audited on its own (a successful one was
/// audited with its store write).
async fn audit_refusal(
    state: &AppState,
    staff: &Staff,
    action: &str,
    id: &AccountId,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    match result {
        Ok(answer) => Ok(answer),
        Err(error) => super::audit::recorded(state, staff, action, target(id), Err(error)).await,
    }
}

pub async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state)?;
    let accounts = state
        .accounts
        .list()
        .iter()
        .map(|a| AccountView::of(a, None))
        .collect();
    Ok(HttpResponse::Ok().json(AccountList { accounts }))
}
