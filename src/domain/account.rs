//! Named accounts of the call centre, venues, SREs and admins, and who an
//! audited action is attributed to.

use std::fmt;

use chrono::{DateTime, FixedOffset};

use super::{DomainError, TextRule, VenueId};

/// Longest account id, in bytes (API.md: 1–64 of `[a-z0-9-]`).
pub const ACCOUNT_ID_LENGTH_MAX: usize = 64;
/// Longest display name, in characters.
pub const ACCOUNT_NAME_CHARS_MAX: usize = 200;
/// Most venues a staff account may be limited to.
pub const ACCOUNT_VENUES_MAX: usize = 100;
/// Bytes of an account key's hash.
pub const KEY_HASH_BYTES: usize = 32;

/// The staff roles (API.md "Roles and keys").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    Operator,
    Staff,
    Sre,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Staff, Role::Sre, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Staff => "staff",
            Role::Sre => "sre",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or(DomainError::InvalidRole)
    }
}

/// An account's id: 1–64 of `[a-z0-9-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        if super::ids::is_id(text, ACCOUNT_ID_LENGTH_MAX) {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::InvalidAccountId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A named account. Its key is never kept: only `key_hash`.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub role: Role,
    pub display_name: String,
    pub created_at: DateTime<FixedOffset>,
    pub key_hash: [u8; KEY_HASH_BYTES],
    /// A staff account limited to these venues (sorted, unique); `None`:
    /// every venue. A tablet key that leaks exposes its venues' rosters only.
    pub venues: Option<Vec<VenueId>>,
}

impl Account {
    /// Checks the display name and the venues: only a staff account is
    /// limited to venues, and to at least one.
    pub fn validated(mut self) -> Result<Self, DomainError> {
        TextRule::required("display_name", ACCOUNT_NAME_CHARS_MAX).check(&self.display_name)?;
        if let Some(venues) = &mut self.venues {
            venues.sort();
            venues.dedup();
            if self.role != Role::Staff || venues.is_empty() || venues.len() > ACCOUNT_VENUES_MAX {
                return Err(DomainError::InvalidVenues);
            }
        }
        Ok(self)
    }
}

/// Whether a caller limited to `venues` (`None`: every venue) may work at `venue`.
pub fn may_use(venues: Option<&[VenueId]>, venue: &VenueId) -> bool {
    venues.is_none_or(|venues| venues.binary_search(venue).is_ok())
}

/// Who did something: a named account, or a role's break-glass key from the
/// environment. Written `account:<id>` or `env:<role>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Actor {
    Account(AccountId),
    Env(Role),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Account(id) => write!(f, "account:{id}"),
            Actor::Env(role) => write!(f, "env:{}", role.as_str()),
        }
    }
}

impl Actor {
    /// Reads `account:<id>` or `env:<role>`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(id) = text.strip_prefix("account:") {
            return AccountId::parse(id).ok().map(Actor::Account);
        }
        text.strip_prefix("env:")
            .and_then(|role| Role::parse(role).ok())
            .map(Actor::Env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_text() {
        for actor in [
            Actor::Account(AccountId::parse("operator-12").unwrap()),
            Actor::Env(Role::Sre),
        ] {
            assert_eq!(Actor::parse(&actor.to_string()), Some(actor));
        }
        assert_eq!(Actor::parse("account:Bad"), None);
        assert_eq!(Actor::parse("env:nobody"), None);
        assert_eq!(Actor::parse("operator-12"), None);
    }

    #[test]
    fn roles_and_ids_accept_only_the_contracts_values() {
        assert_eq!(Role::parse("staff"), Ok(Role::Staff));
        assert!(Role::parse("resident").is_err());
        assert!(AccountId::parse("tablet-3").is_ok());
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse(&"a".repeat(65)).is_err());
        assert!(AccountId::parse("タブレット").is_err());
    }
}
