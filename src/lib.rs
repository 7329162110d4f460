//! vaxslot: vaccination slot reservations for municipalities.
//!
//! Reading order: `domain` (pure rules) → `store` (durability) → `actors`
//! (one writer per venue-day) → `api` (HTTP and JSON) → `startup` (wiring).

pub mod accounts;
pub mod actors;
pub mod api;
pub mod booking;
#[cfg(test)]
mod boundaries;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod codes;
pub mod csv_text;
pub mod demo;
pub mod domain;
pub mod login_guard;
pub mod mail;
pub mod recent;
pub mod residents;
pub mod settings;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tokens;
