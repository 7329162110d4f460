//! A throwaway Redis Cluster for one test: six `redis-server --cluster-enabled
//! yes` on free loopback ports (each with its own cluster-bus port and
//! directory, AOF with `appendfsync always`), joined by `redis-cli --cluster
//! create … --cluster-replicas 1` into three masters with a replica each,
//! stopped when dropped. Servers run on it with `Backend::RedisCluster`.

use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::redis_server::{free_port, spawn_redis_server};

/// Nodes in the test cluster: three masters and their replicas.
pub const CLUSTER_NODES: usize = 6;
/// Longest the cluster may take to form and report `cluster_state:ok`.
/// (Generous: under `cargo test`, several clusters form at once on two cores.)
const CLUSTER_FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one cluster may take to form before it is started anew (shorter
/// than `CLUSTER_FORM_TIMEOUT`, so that a stalled wait is cut off, not failed).
const CLUSTER_FORM_ATTEMPT: Duration = Duration::from_secs(40);
/// Clusters started before a test gives up.
const CLUSTER_START_ATTEMPTS: usize = 3;
/// How long a node may be unreachable before its replica takes over (ms).
pub const CLUSTER_NODE_TIMEOUT_MS: u32 = 2000;

struct Node {
    port: u16,
    /// Its cluster bus port (kept for a restart).
    bus: u16,
    dir: TempDir,
    /// `None` once killed. A lock, so that a cluster shared by a test's
    /// servers can lose a node; never held across an await.
    child: std::sync::Mutex<Option<Child>>,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Six nodes joined into a cluster. A cluster that has not formed within
    /// `CLUSTER_FORM_ATTEMPT` (a node died, or lost a port to another test)
    /// is dropped, its nodes killed, and six new ones started.
    pub async fn start() -> RedisCluster {
        for _ in 0..CLUSTER_START_ATTEMPTS {
            let nodes = futures::future::join_all((0..CLUSTER_NODES).map(|_| start_node())).await;
            let cluster = RedisCluster { nodes };
            if tokio::time::timeout(CLUSTER_FORM_ATTEMPT, cluster.form())
                .await
                .unwrap_or(false)
            {
                return cluster;
            }
        }
        panic!("a Redis Cluster did not form in {CLUSTER_START_ATTEMPTS} attempts");
    }

    /// Joins the nodes and waits until every one agrees on three masters
    /// with a replica each, every replica in sync; `false` if they cannot.
    async fn form(&self) -> bool {
        let cluster = self;
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli runs");
        if !output.status.success() {
            return false;
        }
        for node in &cluster.nodes {
            cluster
                .until(node.port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
        // The replicas' roles reach every node a little after the slots do,
        // and each replica's copy is in sync a little after that.
        for node in &cluster.nodes {
            cluster
                .until_nodes(node.port, |nodes| count(nodes, "slave") == 3)
                .await;
        }
        for node in &cluster.nodes {
            let info = cluster.cli(node.port, "INFO replication").await;
            let ready = if info.contains("role:slave") {
                "master_link_status:up"
            } else {
                "state=online"
            };
            cluster.until(node.port, "INFO replication", ready).await;
        }
        true
    }

    /// Waits until `CLUSTER NODES` on `port` satisfies `done`.
    pub async fn until_nodes(&self, port: u16, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + CLUSTER_FORM_TIMEOUT;
        loop {
            let nodes = self.cli(port, "CLUSTER NODES").await;
            if done(&nodes) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {port}: {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The seed nodes, as `--redis-cluster-nodes` takes them.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cluster as a store, the way a server opens it.
    pub async fn store(&self) -> vaxslot::store::RedisStore {
        let seeds = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        vaxslot::store::RedisStore::open(
            &vaxslot::store::RedisTarget::Cluster(seeds),
            vaxslot::store::ReplicaWait::NONE,
        )
        .await
        .expect("the cluster opens as a store")
    }

    /// One command's reply on one node, as `redis-cli` prints it.
    pub async fn cli(&self, port: u16, command: &str) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(command.split_whitespace())
            .output()
            .await
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    pub async fn until(&self, port: u16, command: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + CLUSTER_FORM_TIMEOUT;
        loop {
            if self.cli(port, command).await.contains(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {port}: {command} never said {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the node on `port` (a master's replica is then promoted).
    pub async fn kill(&self, port: u16) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        let child = node.child.lock().expect("node lock").take();
        if let Some(mut child) = child {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
    }
}

impl RedisCluster {
    /// Starts a killed node again on its port, directory and identity (as
    /// systemd would): it rejoins as a replica of whoever took its slots.
    pub async fn restart(&self, port: u16) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        let child = spawn_node(node.port, node.bus, node.dir.path());
        *node.child.lock().expect("node lock") = Some(child);
        let deadline = tokio::time::Instant::now() + NODE_START_TIMEOUT;
        while !crate::redis_server::ping(port).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {port} restarts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the node on `port`: a
    /// paused replica falls behind its master without being noticed as
    /// failed, if the pause is shorter than the node timeout.
    pub async fn signal(&self, port: u16, signal: &str) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        let pid = node
            .child
            .lock()
            .expect("node lock")
            .as_ref()
            .and_then(Child::id)
            .expect("a running node");
        crate::helpers::send_signal(pid, signal).await;
    }

    /// Waits until the node on `replica` has been promoted to master, as the
    /// node on `observer` sees it.
    pub async fn until_promoted(&self, observer: u16, replica: u16) {
        let address = format!("127.0.0.1:{replica}@");
        self.until_nodes(observer, |nodes| {
            nodes.lines().any(|l| {
                let mut fields = l.split_whitespace();
                let (_, node, flags) = (fields.next(), fields.next(), fields.next());
                node.is_some_and(|n| n.starts_with(&address))
                    && flags.is_some_and(|f| f.split(',').any(|f| f == "master"))
            })
        })
        .await;
    }

    /// The port of the replica of the master on `master`.
    pub async fn replica_of(&self, master: u16) -> u16 {
        let nodes = self.cli(master, "CLUSTER NODES").await;
        let master_id = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split_whitespace().next())
            .expect("the node's own line")
            .to_owned();
        nodes
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some(master_id.as_str()))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|address| address.split('@').next())
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .expect("a replica of this master")
    }

    /// The ports of the nodes that are masters now (and not failed), as
    /// `port` sees them.
    pub async fn masters(&self, port: u16) -> Vec<u16> {
        self.cli(port, "CLUSTER NODES")
            .await
            .lines()
            .filter(|l| {
                let flags = l.split_whitespace().nth(2).unwrap_or("");
                flags.split(',').any(|f| f == "master") && !flags.contains("fail")
            })
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|address| address.split('@').next())
                    .and_then(|address| address.rsplit(':').next())
                    .and_then(|port| port.parse().ok())
            })
            .collect()
    }
}

/// Attempts at starting one node: a free port can be taken by another test
/// between choosing it and binding it, and then the node is started again on
/// new ports.
const NODE_START_ATTEMPTS: usize = 5;
/// Longest one node may take to answer `PING`.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(5);

async fn start_node() -> Node {
    for _ in 0..NODE_START_ATTEMPTS {
        let (port, bus) = (free_port(), free_port());
        if port == bus {
            continue;
        }
        let dir = tempfile::tempdir().expect("node dir");
        let mut child = spawn_node(port, bus, dir.path());
        let deadline = tokio::time::Instant::now() + NODE_START_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            // Ours answering, by its process id: another test's server may
            // have taken the port, and ours is then about to fail to bind.
            if crate::redis_server::ping(port).await
                && crate::redis_server::answers_as(port, child.id()).await
            {
                return Node {
                    port,
                    bus,
                    dir,
                    child: std::sync::Mutex::new(Some(child)),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not up (its port was taken): dropped, so SIGKILLed; try new ports.
        drop(child);
    }
    panic!("a cluster node did not start in {NODE_START_ATTEMPTS} attempts");
}

fn spawn_node(port: u16, bus: u16, dir: &std::path::Path) -> Child {
    let (bus, timeout) = (bus.to_string(), CLUSTER_NODE_TIMEOUT_MS.to_string());
    spawn_redis_server(
        port,
        dir,
        true,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus,
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            // A replica's first sync starts at once, not after 5 s.
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
}

/// Lines of `CLUSTER NODES` with `flag` among their flags and not failed.
pub fn count(nodes: &str, flag: &str) -> usize {
    nodes
        .lines()
        .filter(|l| {
            let flags = l.split_whitespace().nth(2).unwrap_or("");
            flags.split(',').any(|f| f == flag) && !flags.contains("fail")
        })
        .count()
}
