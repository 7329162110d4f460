//! Who is calling. `Authorization: Bearer <x>` where x is a staff key from the
//! environment (compared in constant time; the break-glass credentials), a
//! named account's key, or a resident token. Missing or invalid:
//! `401 unauthorized`; valid but the wrong role: `403 forbidden`.

use actix_web::HttpRequest;
use actix_web::http::header;

pub use crate::accounts::StaffKeys;

use super::AppState;
use super::problem::ApiError;
pub use crate::domain::Role;
use crate::domain::{Actor, TicketNumber, VenueId, may_use_venue};

/// A staff caller: who (for the audit log) and in which role.
#[derive(Clone, Debug)]
pub struct Staff {
    pub actor: Actor,
    pub role: Role,
    /// A staff account limited to venues (sorted); `None`: every venue.
    pub venues: Option<Vec<VenueId>>,
}

impl Staff {
    /// Whether the caller may work at `venue` (check in, read its roster).
    pub fn may_use(&self, venue: &VenueId) -> bool {
        may_use_venue(self.venues.as_deref(), venue)
    }

    /// `403 forbidden` unless the caller may work at `venue` (a staff
    /// account limited to other venues).
    pub fn at_venue(&self, venue: &VenueId) -> Result<(), ApiError> {
        if self.may_use(venue) {
            Ok(())
        } else {
            Err(ApiError::new(
                super::codes::ErrorCode::Forbidden,
                "this key may not be used at this venue",
            ))
        }
    }
}

pub enum Caller {
    Resident(TicketNumber),
    Staff(Staff),
}

pub(super) fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

pub fn caller(request: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    let credential = bearer(request).ok_or_else(ApiError::unauthorized)?;
    if let Some(role) = state.keys.role_of(credential) {
        return Ok(Caller::Staff(Staff {
            actor: Actor::Env(role),
            role,
            venues: None,
        }));
    }
    if let Some(account) = state.accounts.authenticate(credential) {
        return Ok(Caller::Staff(Staff {
            actor: Actor::Account(account.id),
            role: account.role,
            venues: account.venues,
        }));
    }
    let handle = state
        .tokens
        .verify(credential, crate::clock::now_utc())
        .ok_or_else(ApiError::unauthorized)?;
    let ticket = state
        .residents
        .ticket_for_handle(&handle)
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Caller::Resident(ticket))
}

/// The calling resident; staff keys are `403` on resident-only routes.
pub fn resident(request: &HttpRequest, state: &AppState) -> Result<TicketNumber, ApiError> {
    match caller(request, state)? {
        Caller::Resident(ticket) => Ok(ticket),
        Caller::Staff(_) => Err(ApiError::forbidden()),
    }
}

/// A staff caller with one of `allowed` (admin is always allowed).
pub fn staff(request: &HttpRequest, state: &AppState, allowed: &[Role]) -> Result<Staff, ApiError> {
    match caller(request, state)? {
        Caller::Staff(staff) if staff.role == Role::Admin || allowed.contains(&staff.role) => {
            Ok(staff)
        }
        _ => Err(ApiError::forbidden()),
    }
}
