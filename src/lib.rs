//! vaxslot: vaccination slot reservations for municipalities.
//!
//! Reading order: `domain` (pure rules) → `store` (durability) → `actors`
//! (one writer per venue-day) → `api` (HTTP and JSON) → `startup` (wiring).

pub mod domain;
