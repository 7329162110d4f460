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

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
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
    Cluster(Arc<HealingCluster>),
}

/// How long a cluster connection may go without any answer, while calls
/// are made on it, before it is taken for wedged and built again. Longer
/// than a failover (node timeout and election, a few seconds), during which
/// calls fail or wait; a process that was paused past a failover was seen
/// to time out every call for minutes after it woke up, because redis-rs
/// refreshes its slot map on errors and `MOVED`, never on timeouts.
pub const CLUSTER_WEDGED_AFTER: Duration = Duration::from_secs(10);

/// redis-rs's cluster connection, built again from its client when it has
/// answered nothing for `CLUSTER_WEDGED_AFTER` although asked.
pub struct HealingCluster {
    client: ClusterClient,
    current: RwLock<ClusterConnection>,
    health: Mutex<Health>,
    connect_timeout: Duration,
    /// The runtime the connection was opened on (the System thread's): a
    /// new connection is built there, whichever thread's call found the old
    /// one wedged, so that its driver does not run on a task's own thread.
    home: tokio::runtime::Handle,
}

struct Health {
    /// When the first call made since the last answer started.
    unanswered_since: Option<Instant>,
    rebuilding: bool,
}

impl HealingCluster {
    fn connection(&self) -> ClusterConnection {
        self.current
            .read()
            .expect("cluster connection lock")
            .clone()
    }

    /// Notes a call starting; builds the connection again (in the
    /// background) when calls have gone unanswered for too long.
    fn starting(self: &Arc<Self>) {
        let wedged = {
            let mut health = self.health.lock().expect("cluster health lock");
            let since = *health.unanswered_since.get_or_insert_with(Instant::now);
            let wedged = since.elapsed() >= CLUSTER_WEDGED_AFTER && !health.rebuilding;
            if wedged {
                health.rebuilding = true;
            }
            wedged
        };
        if wedged {
            let cluster = Arc::clone(self);
            self.home.spawn(async move { cluster.rebuild().await });
        }
    }

    fn answered(&self) {
        self.health
            .lock()
            .expect("cluster health lock")
            .unanswered_since = None;
    }

    async fn rebuild(&self) {
        metrics::counter!(crate::telemetry::REDIS_CLUSTER_RECONNECTS_TOTAL).increment(1);
        tracing::warn!(
            "the Redis Cluster connection answered nothing for {CLUSTER_WEDGED_AFTER:?}; connecting again"
        );
        let built =
            tokio::time::timeout(2 * self.connect_timeout, self.client.get_async_connection())
                .await;
        let mut health = self.health.lock().expect("cluster health lock");
        health.rebuilding = false;
        match built {
            Ok(Ok(connection)) => {
                *self.current.write().expect("cluster connection lock") = connection;
                // A fresh start for the new connection's patience.
                health.unanswered_since = None;
            }
            _ => tracing::warn!("connecting to the Redis Cluster again failed; trying again later"),
        }
    }

    async fn call<T>(
        self: &Arc<Self>,
        send: impl AsyncFnOnce(&mut ClusterConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.starting();
        let mut connection = self.connection();
        let result = send(&mut connection).await;
        // An error the server sent (a script's, `CLUSTERDOWN`) is an answer.
        let unanswered = result
            .as_ref()
            .is_err_and(|e| e.is_timeout() || e.is_io_error() || e.is_connection_dropped());
        if !unanswered {
            self.answered();
        }
        result
    }
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
                let connection = client.get_async_connection().await?;
                Ok(Self::Cluster(Arc::new(HealingCluster {
                    client,
                    current: RwLock::new(connection),
                    health: Mutex::new(Health {
                        unanswered_since: None,
                        rebuilding: false,
                    }),
                    connect_timeout,
                    home: tokio::runtime::Handle::current(),
                })))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(cluster) => {
                let cluster = Arc::clone(cluster);
                Box::pin(async move {
                    cluster
                        .call(async |connection| connection.req_packed_command(cmd).await)
                        .await
                })
            }
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
            Self::Cluster(cluster) => {
                let cluster = Arc::clone(cluster);
                Box::pin(async move {
                    cluster
                        .call(async |connection| {
                            connection
                                .req_packed_commands(pipeline, offset, count)
                                .await
                        })
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(cluster) => cluster.connection().get_db(),
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
