//! One connection to Redis, a single server or a Redis Cluster, behind one
//! type: every call in `redis.rs` is written once for both.
//!
//! A single server is one `ConnectionManager` (multiplexed, reconnecting). A
//! cluster is redis-rs's `ClusterConnection`: it learns the slot map from the
//! seed nodes, sends each command to the master of its key's slot, follows
//! `MOVED`/`ASK`, and refreshes the map after a failover. Every call the store
//! makes names keys of one hash slot only (a venue-day's keys share its
//! partition's tag), so nothing depends on cross-slot commands; a pipeline is
//! used only for keys of one slot.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Where the store's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`--redis-url`).
    Single(String),
    /// A Redis Cluster, found through these seed nodes (`--redis-cluster-nodes`),
    /// each a `redis://` URL.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The seed list as an SRE writes it: `host:port,host:port` (or URLs, when
    /// the nodes need a password: `redis://:PASSWORD@host:port`).
    pub fn cluster_from_list(list: &str) -> Result<Self, String> {
        let seeds: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .map(|seed| {
                if seed.contains("://") {
                    seed.to_owned()
                } else {
                    format!("redis://{seed}")
                }
            })
            .collect();
        if seeds.is_empty() {
            return Err(
                "--redis-cluster-nodes needs at least one seed node, as host:port[,host:port…]"
                    .to_owned(),
            );
        }
        for seed in &seeds {
            let parsed = url::Url::parse(seed)
                .map_err(|e| format!("--redis-cluster-nodes: a seed is not host:port ({e})"))?;
            if parsed.host_str().is_none() || parsed.port().is_none() {
                return Err(
                    "--redis-cluster-nodes: every seed needs a host and a port, as host:port"
                        .to_owned(),
                );
            }
        }
        Ok(Self::Cluster(seeds))
    }
}

#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub async fn open(
        target: &RedisTarget,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(call_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Self::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            RedisTarget::Cluster(seeds) => {
                // Retries cover a failover: the dead master's slots move to
                // its replica and the client follows the new map. Every
                // script the store sends is idempotent, so a retry after an
                // unanswered call cannot apply a batch twice.
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(call_timeout)
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_list_is_host_port_pairs_or_urls() {
        assert_eq!(
            RedisTarget::cluster_from_list("10.0.0.1:7000, 10.0.0.2:7000,").unwrap(),
            RedisTarget::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ])
        );
        assert_eq!(
            RedisTarget::cluster_from_list("redis://:secret@10.0.0.1:7000").unwrap(),
            RedisTarget::Cluster(vec!["redis://:secret@10.0.0.1:7000".into()])
        );
        assert!(RedisTarget::cluster_from_list(" , ").is_err());
        assert!(RedisTarget::cluster_from_list("10.0.0.1").is_err());
        assert!(RedisTarget::cluster_from_list("10.0.0.1:notaport").is_err());
    }
}
