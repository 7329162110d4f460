//! Signed resident tokens. A token names the resident by an opaque *handle*
//! (an HMAC of the ticket number under the server's key), never by the ticket
//! number itself, so it carries no personal data in clear. It expires after
//! `TOKEN_LIFETIME` and survives a restart when `VAXSLOT_TOKEN_SECRET` is set.
//!
//! Format: `base64url(handle ‖ expires_unix_be)` `.` `base64url(hmac)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::TicketNumber;

/// How long a resident token is valid (DESIGN.md: short-lived, 30 min);
/// the default of `--token-lifetime-s`.
pub const TOKEN_LIFETIME: Duration = Duration::minutes(30);
/// Longest `--token-lifetime-s`.
pub const TOKEN_LIFETIME_MAX: Duration = Duration::hours(24);
/// Bytes of a resident handle.
pub const HANDLE_BYTES: usize = 16;
/// Longest token text accepted before any work is done on it.
pub const TOKEN_LENGTH_MAX: usize = 128;

/// Opaque name of a resident inside tokens.
pub type ResidentHandle = [u8; HANDLE_BYTES];

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
    /// How long the tokens it issues are valid (`TOKEN_LIFETIME` unless set).
    lifetime: Duration,
}

impl TokenKey {
    /// Derives the signing key from the configured secret text.
    pub fn from_secret(secret: &str) -> Self {
        Self {
            key: Sha256::digest(secret.as_bytes()).into(),
            lifetime: TOKEN_LIFETIME,
        }
    }

    /// A random key: tokens will not survive a restart.
    pub fn random() -> Self {
        Self {
            key: rand::random(),
            lifetime: TOKEN_LIFETIME,
        }
    }

    /// The same key, issuing tokens valid for `lifetime` (`--token-lifetime-s`).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    fn mac(&self, purpose: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose);
        mac.update(data);
        mac
    }

    pub fn resident_handle(&self, ticket: &TicketNumber) -> ResidentHandle {
        let digest = self
            .mac(b"resident-handle:", ticket.expose().as_bytes())
            .finalize()
            .into_bytes();
        let mut handle = [0u8; HANDLE_BYTES];
        handle.copy_from_slice(&digest[..HANDLE_BYTES]);
        handle
    }

    /// Issues a token for `handle` valid until `now` plus the key's lifetime.
    pub fn issue(&self, handle: &ResidentHandle, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        // Whole seconds: the token stores seconds, so the `expires_at` shown is
        // exactly the instant from which it is refused.
        let expires_at = (now + self.lifetime).trunc_subsecs(0);
        let mut payload = Vec::with_capacity(HANDLE_BYTES + 8);
        payload.extend_from_slice(handle);
        payload.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        let signature = self.mac(b"token:", &payload).finalize().into_bytes();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature)
        );
        (token, expires_at)
    }

    /// The handle of a token that is well signed and not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<ResidentHandle> {
        if token.len() > TOKEN_LENGTH_MAX {
            return None;
        }
        let (payload, signature) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if payload.len() != HANDLE_BYTES + 8 {
            return None;
        }
        // Constant-time comparison of the signature.
        self.mac(b"token:", &payload)
            .verify_slice(&signature)
            .ok()?;
        let expires = i64::from_be_bytes(payload[HANDLE_BYTES..].try_into().ok()?);
        if now.timestamp() >= expires {
            return None;
        }
        let mut handle = [0u8; HANDLE_BYTES];
        handle.copy_from_slice(&payload[..HANDLE_BYTES]);
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> TicketNumber {
        TicketNumber::parse("1311480001").unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let key = TokenKey::from_secret("s3cret");
        let now = Utc::now();
        let handle = key.resident_handle(&ticket());
        let (token, expires_at) = key.issue(&handle, now);
        assert_eq!(key.verify(&token, now), Some(handle));
        assert_eq!(
            key.verify(&token, expires_at - Duration::seconds(1)),
            Some(handle)
        );
        assert_eq!(key.verify(&token, expires_at), None);
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let key = TokenKey::from_secret("s3cret");
        let now = Utc::now();
        let (token, _) = key.issue(&key.resident_handle(&ticket()), now);
        assert_eq!(TokenKey::from_secret("other").verify(&token, now), None);
        let mut bytes = token.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.verify(&String::from_utf8(bytes).unwrap(), now), None);
        assert_eq!(key.verify("", now), None);
        assert_eq!(key.verify("a.b.c", now), None);
    }

    #[test]
    fn tokens_do_not_contain_the_ticket_number() {
        let key = TokenKey::from_secret("s3cret");
        let (token, _) = key.issue(&key.resident_handle(&ticket()), Utc::now());
        let payload = URL_SAFE_NO_PAD
            .decode(token.split_once('.').unwrap().0)
            .unwrap();
        assert!(!payload.windows(10).any(|w| w == b"1311480001"));
        assert!(!token.contains("1311480001"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn verify_never_panics_and_refuses_junk(text in "\\PC{0,200}") {
            let key = TokenKey::from_secret("s3cret");
            prop_assert_eq!(key.verify(&text, Utc::now()), None);
        }

        #[test]
        fn changing_any_byte_of_a_token_invalidates_it(position in 0usize..200, replacement in 0u8..64) {
            let key = TokenKey::from_secret("s3cret");
            let now = Utc::now();
            let ticket = TicketNumber::parse("1311480001").unwrap();
            let (token, _) = key.issue(&key.resident_handle(&ticket), now);
            let mut bytes = token.into_bytes();
            let position = position % bytes.len();
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let new = alphabet[usize::from(replacement)];
            prop_assume!(bytes[position] != new && bytes[position] != b'.');
            bytes[position] = new;
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(key.verify(&tampered, now), None);
        }
    }
}
