//! Browser tests: the web pages (`web/`) in Debian's headless Chromium,
//! against the real `vaxslot` binary on a free loopback port. Each flow is
//! checked through the API afterwards, not only on screen. Screenshots land
//! in `target/browser-screenshots/`.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/redis_cluster.rs"]
#[allow(dead_code)]
mod redis_cluster;
#[path = "../api/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

mod browser;
mod flows;
mod pages;

/// Chromium sessions at once: two cores, and each test also runs a server.
pub static BROWSERS_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
