//! Integration tests: the real `vaxslot` binary, driven through HTTP on a
//! random loopback port, one fresh store per test. Behavioural tests are
//! written once and run on both stores.

/// For each named `async fn(Backend)`, a module with one test per store.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn embedded() {
                    super::$scenario(crate::helpers::Backend::Embedded).await
                }

                #[tokio::test]
                async fn redis() {
                    super::$scenario(crate::helpers::Backend::Redis).await
                }

                #[tokio::test]
                async fn redis_cluster() {
                    super::$scenario(crate::helpers::Backend::RedisCluster).await
                }
            }
        )*
    };
}

/// For each named `async fn(Backend, Via)`, a module with one test per store
/// and booking channel: the resident's own (web) and the call centre's.
macro_rules! on_both_stores_and_channels {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use crate::helpers::{Backend, Via};

                #[tokio::test]
                async fn embedded_web() {
                    super::$scenario(Backend::Embedded, Via::Web).await
                }

                #[tokio::test]
                async fn embedded_operator() {
                    super::$scenario(Backend::Embedded, Via::Operator).await
                }

                #[tokio::test]
                async fn redis_web() {
                    super::$scenario(Backend::Redis, Via::Web).await
                }

                #[tokio::test]
                async fn redis_operator() {
                    super::$scenario(Backend::Redis, Via::Operator).await
                }

                #[tokio::test]
                async fn redis_cluster_web() {
                    super::$scenario(Backend::RedisCluster, Via::Web).await
                }

                #[tokio::test]
                async fn redis_cluster_operator() {
                    super::$scenario(Backend::RedisCluster, Via::Operator).await
                }
            }
        )*
    };
}

mod helpers;
mod redis_server;
mod smtp_sink;

mod access_log;
mod accounts;
mod admin;
mod audit;
mod bad_input;
mod booking;
mod caching;
mod checkin;
mod cli;
mod cluster;
mod crash;
mod dose_chains;
mod eligibility;
mod fuzz;
mod head;
mod health;
mod holds;
mod hostile;
mod idempotency;
mod idle;
mod info;
mod kill_switch;
mod login;
mod mail;
mod nginx;
mod operator;
mod outbox_store;
mod overload;
mod privacy;
mod prometheus;
mod public_reads;
mod redis_cluster;
mod redis_outage;
mod redis_store;
mod shutdown;
mod slot_started;
mod staff;
mod status;
mod upgrade;
