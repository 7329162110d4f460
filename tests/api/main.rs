//! Integration tests: the real `vaxslot` binary, driven through HTTP on a
//! random loopback port, one fresh data dir per test.

mod helpers;

mod admin;
mod bad_input;
mod booking;
mod crash;
mod health;
mod kill_switch;
