//! What a channel asks the booking service to do, on domain types, and the
//! request fingerprint that an `Idempotency-Key` is bound to.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::domain::{
    Channel, Dose, FingerprintScheme, ReservationId, SlotTime, TicketNumber, VenueId,
};
use crate::store::AuditDraft;

/// Who a command is for, through which channel it came, and how it is
/// audited.
#[derive(Clone)]
pub struct Caller {
    /// The resident the reservation belongs to (the caller on the web, the
    /// person on the phone for an operator).
    pub ticket: TicketNumber,
    pub channel: Channel,
    /// For an audited channel (the operator's): the entry committed with the
    /// reservation change (for a cascade, with the asked-for reservation's).
    pub audit: Option<AuditDraft>,
}

/// A booking, parsed.
#[derive(Clone)]
pub struct Booking {
    pub venue_id: VenueId,
    pub date: NaiveDate,
    pub time: SlotTime,
    /// `None`: the next dose neither received nor reserved.
    pub dose: Option<Dose>,
    pub access_code: Option<String>,
}

pub enum Command {
    Book {
        booking: Booking,
        /// The `Idempotency-Key` header, already validated.
        idempotency_key: Option<String>,
    },
    /// Cancel one of the caller's reservations (and its later doses).
    Cancel { reservation_id: ReservationId },
}

impl Booking {
    /// The fingerprint of this booking under `scheme`: what a reused
    /// `Idempotency-Key` is compared by.
    pub fn fingerprint(&self, scheme: FingerprintScheme) -> u64 {
        let digest = match scheme {
            FingerprintScheme::Canonical => Sha256::digest(self.canonical_encoding()),
            FingerprintScheme::DebugText => Sha256::digest(self.debug_text().as_bytes()),
        };
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// Version tag, then each field length-prefixed (big-endian u32) in a
    /// fixed order; an absent optional field is a zero-length field after a
    /// zero presence byte. Depends on nothing but the values.
    fn canonical_encoding(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            let length = u32::try_from(bytes.len()).expect("fields are short");
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(bytes);
        }
        fn optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
            out.push(u8::from(bytes.is_some()));
            field(out, bytes.unwrap_or_default());
        }
        let mut out = Vec::with_capacity(96);
        field(&mut out, b"vaxslot-booking-v2");
        field(&mut out, self.venue_id.as_str().as_bytes());
        field(
            &mut out,
            self.date.format("%Y-%m-%d").to_string().as_bytes(),
        );
        field(&mut out, self.time.to_string().as_bytes());
        let dose = self.dose.map(|d| [d.number()]);
        optional(&mut out, dose.as_ref().map(|d| &d[..]));
        optional(&mut out, self.access_code.as_deref().map(str::as_bytes));
        out
    }

    /// The text the first release hashed (Rust's `Debug` of the optional
    /// fields), spelled out here so that keys stored by it still replay.
    /// Only ever compared against records that say `DebugText`.
    fn debug_text(&self) -> String {
        let dose = match self.dose {
            Some(dose) => format!("Some({})", dose.number()),
            None => "None".to_owned(),
        };
        let access_code = match &self.access_code {
            Some(code) => format!("Some(\"{}\")", code.escape_debug()),
            None => "None".to_owned(),
        };
        format!(
            "{}\n{}\n{}\n{dose}\n{access_code}",
            self.venue_id,
            self.date.format("%Y-%m-%d"),
            self.time
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_date;

    fn booking(dose: Option<u8>, access_code: Option<&str>) -> Booking {
        Booking {
            venue_id: VenueId::parse("nakano-sunplaza").unwrap(),
            date: parse_date("2030-07-07").unwrap(),
            time: SlotTime::parse("10:30").unwrap(),
            dose: dose.map(|d| Dose::new(d).unwrap()),
            access_code: access_code.map(str::to_owned),
        }
    }

    /// Pinned: a change here silently breaks replay of stored keys.
    #[test]
    fn canonical_fingerprints_are_pinned() {
        assert_eq!(
            booking(None, None).fingerprint(FingerprintScheme::Canonical),
            0x4c1b_c98c_066c_d94a
        );
        assert_eq!(
            booking(Some(2), Some("x\"y")).fingerprint(FingerprintScheme::Canonical),
            0xa62e_c169_7818_42a7
        );
    }

    /// The first release's fingerprint of the same request, as it stored it.
    #[test]
    fn debug_text_fingerprints_match_the_first_release() {
        let first_release = |canonical: &str| {
            let digest = Sha256::digest(canonical.as_bytes());
            u64::from_be_bytes(digest[..8].try_into().unwrap())
        };
        assert_eq!(
            booking(Some(2), Some("x\"y")).fingerprint(FingerprintScheme::DebugText),
            first_release("nakano-sunplaza\n2030-07-07\n10:30\nSome(2)\nSome(\"x\\\"y\")")
        );
        assert_eq!(
            booking(None, None).fingerprint(FingerprintScheme::DebugText),
            first_release("nakano-sunplaza\n2030-07-07\n10:30\nNone\nNone")
        );
    }

    #[test]
    fn every_field_changes_the_fingerprint() {
        let base = booking(Some(1), None);
        let variants = [
            booking(Some(2), None),
            booking(None, None),
            booking(Some(1), Some("")),
            Booking {
                time: SlotTime::parse("10:31").unwrap(),
                ..base.clone()
            },
            Booking {
                date: parse_date("2030-07-08").unwrap(),
                ..base.clone()
            },
        ];
        let scheme = FingerprintScheme::Canonical;
        for variant in &variants {
            assert_ne!(variant.fingerprint(scheme), base.fingerprint(scheme));
        }
    }
}
