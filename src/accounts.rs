//! Named accounts in memory: who a presented key belongs to. Loaded from the
//! store at start and changed only together with it (`api/accounts.rs`
//! writes the store first, then here), so a rotated or deleted key is
//! refused from the moment its answer is sent. A key is kept only as its
//! SHA-256: a key has 256 random bits, so a fast hash is as good as a slow
//! one, and a lookup costs one hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{Account, AccountId, KEY_HASH_BYTES, Role};

/// How often a process on a shared store (Redis) reloads the accounts, so
/// that an account made, rotated or deleted by another process takes effect
/// here within this time.
pub const ACCOUNTS_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most named accounts (a call centre of 80 lines, tablets, staff: room to spare).
pub const ACCOUNTS_MAX: usize = 10_000;
/// Random bytes in a key (256 bits; the contract asks for at least 128).
pub const ACCOUNT_KEY_BYTES: usize = 32;
/// Prefix of every account key, so that a key found somewhere says what it is.
pub const ACCOUNT_KEY_PREFIX: &str = "vxk_";

/// Staff keys; an unset key disables its role.
#[derive(Clone, Default)]
pub struct StaffKeys {
    pub operator: Option<String>,
    pub staff: Option<String>,
    pub sre: Option<String>,
    pub admin: Option<String>,
}

impl StaffKeys {
    /// The role whose key this is. Every configured key is compared, in
    /// constant time, so the answer's timing does not tell which one matched.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let mut found = None;
        for (role, key) in [
            (Role::Operator, &self.operator),
            (Role::Staff, &self.staff),
            (Role::Sre, &self.sre),
            (Role::Admin, &self.admin),
        ] {
            if let Some(key) = key
                && bool::from(key.as_bytes().ct_eq(presented.as_bytes()))
            {
                found = Some(role);
            }
        }
        found
    }
}

/// A new random key, as shown once to the admin.
pub fn new_key() -> String {
    let bytes: [u8; ACCOUNT_KEY_BYTES] = rand::random();
    format!("{ACCOUNT_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a key.
pub fn key_hash(key: &str) -> [u8; KEY_HASH_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"vaxslot-account-key:");
    hasher.update(key.as_bytes());
    hasher.finalize().into()
}

#[derive(Default)]
pub struct AccountDirectory {
    accounts: DashMap<AccountId, Account>,
    by_key: DashMap<[u8; KEY_HASH_BYTES], AccountId>,
    /// Counts this process's own changes; a reload read before one of them
    /// is stale and is not applied (it could bring back a deleted key).
    changes: std::sync::Mutex<u64>,
}

impl AccountDirectory {
    pub fn load(accounts: Vec<Account>) -> Self {
        let directory = Self::default();
        directory.replace_all(accounts);
        directory
    }

    /// The account a presented key belongs to.
    pub fn authenticate(&self, presented: &str) -> Option<Account> {
        if !presented.starts_with(ACCOUNT_KEY_PREFIX) {
            return None;
        }
        let id = self.by_key.get(&key_hash(presented))?.clone();
        self.get(&id)
    }

    pub fn get(&self, id: &AccountId) -> Option<Account> {
        self.accounts.get(id).map(|a| a.clone())
    }

    pub fn has_room(&self) -> bool {
        self.accounts.len() < ACCOUNTS_MAX
    }

    /// Every account, by id.
    pub fn list(&self) -> Vec<Account> {
        let mut all: Vec<Account> = self.accounts.iter().map(|a| a.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Inserts or replaces an account; its previous key stops working.
    pub fn put(&self, account: Account) {
        *self.changes.lock().expect("accounts lock poisoned") += 1;
        self.insert(account);
    }

    fn insert(&self, account: Account) {
        if let Some(previous) = self.accounts.get(&account.id)
            && previous.key_hash != account.key_hash
        {
            self.by_key.remove(&previous.key_hash);
        }
        self.by_key.insert(account.key_hash, account.id.clone());
        self.accounts.insert(account.id.clone(), account);
    }

    /// This process's change count, to pass to `replace_all` with a reload
    /// read after it.
    pub fn change_count(&self) -> u64 {
        *self.changes.lock().expect("accounts lock poisoned")
    }

    /// Makes the directory hold exactly `accounts` (a reload from the store
    /// read after `change_count` gave `seen`), unless this process changed
    /// an account since: then the reload may be stale and is dropped.
    pub fn replace_all_if_unchanged(&self, seen: u64, accounts: Vec<Account>) {
        let changes = self.changes.lock().expect("accounts lock poisoned");
        if *changes == seen {
            self.replace_all(accounts);
        }
        drop(changes);
    }

    fn replace_all(&self, accounts: Vec<Account>) {
        let keep: std::collections::HashSet<AccountId> =
            accounts.iter().map(|a| a.id.clone()).collect();
        let gone: Vec<AccountId> = self
            .accounts
            .iter()
            .map(|a| a.id.clone())
            .filter(|id| !keep.contains(id))
            .collect();
        for id in gone {
            self.delete(&id);
        }
        for account in accounts {
            self.insert(account);
        }
    }

    pub fn remove(&self, id: &AccountId) {
        *self.changes.lock().expect("accounts lock poisoned") += 1;
        self.delete(id);
    }

    fn delete(&self, id: &AccountId) {
        if let Some((_, account)) = self.accounts.remove(id) {
            self.by_key.remove(&account.key_hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, key: &str) -> Account {
        Account {
            id: AccountId::parse(id).unwrap(),
            role: Role::Operator,
            display_name: "コールセンター 12番".into(),
            created_at: chrono::Utc::now().fixed_offset(),
            key_hash: key_hash(key),
            venues: None,
        }
    }

    #[test]
    fn a_rotated_or_removed_key_stops_working_and_others_do_not() {
        let directory = AccountDirectory::default();
        let (first, other) = (new_key(), new_key());
        directory.put(account("op-1", &first));
        directory.put(account("op-2", &other));
        assert_eq!(directory.authenticate(&first).unwrap().id.as_str(), "op-1");
        let rotated = new_key();
        directory.put(account("op-1", &rotated));
        assert!(directory.authenticate(&first).is_none());
        assert!(directory.authenticate(&rotated).is_some());
        directory.remove(&AccountId::parse("op-1").unwrap());
        assert!(directory.authenticate(&rotated).is_none());
        assert!(directory.authenticate(&other).is_some());
    }

    #[test]
    fn a_reload_read_before_a_local_change_is_dropped() {
        let directory = AccountDirectory::default();
        let key = new_key();
        directory.put(account("op-1", &key));
        let seen = directory.change_count();
        let stale = directory.list();
        directory.remove(&AccountId::parse("op-1").unwrap());
        directory.replace_all_if_unchanged(seen, stale);
        assert!(
            directory.authenticate(&key).is_none(),
            "the deleted key stays refused"
        );
        let seen = directory.change_count();
        directory.replace_all_if_unchanged(seen, vec![account("op-2", &key)]);
        assert_eq!(directory.authenticate(&key).unwrap().id.as_str(), "op-2");
    }

    #[test]
    fn keys_are_long_random_and_prefixed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(a.starts_with(ACCOUNT_KEY_PREFIX));
        assert!(a.len() >= ACCOUNT_KEY_PREFIX.len() + 43);
    }

    #[test]
    fn unset_keys_match_nothing_and_set_keys_match_exactly() {
        let keys = StaffKeys {
            sre: Some("sre-key".into()),
            ..StaffKeys::default()
        };
        assert_eq!(keys.role_of("sre-key"), Some(Role::Sre));
        assert_eq!(keys.role_of("sre-ke"), None);
        assert_eq!(keys.role_of(""), None);
    }
}
