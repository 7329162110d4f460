//! A throwaway Redis Cluster for one test: six `redis-server --cluster-enabled
//! yes` on free loopback ports (each with its own cluster-bus port and
//! directory, AOF with `appendfsync always`), joined by `redis-cli --cluster
//! create … --cluster-replicas 1` into three masters with a replica each,
//! stopped when dropped. Groundwork for issue 15 (several vaxslot processes on
//! a cluster).

use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::redis_server::{free_port, spawn_redis_server};

/// Nodes in the test cluster: three masters and their replicas.
pub const CLUSTER_NODES: usize = 6;
/// Longest the cluster may take to form and report `cluster_state:ok`.
const CLUSTER_FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may be unreachable before its replica takes over (ms).
pub const CLUSTER_NODE_TIMEOUT_MS: u32 = 2000;

struct Node {
    port: u16,
    _dir: TempDir,
    child: Option<Child>,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::with_capacity(CLUSTER_NODES);
        for _ in 0..CLUSTER_NODES {
            nodes.push(start_node().await);
        }
        let cluster = RedisCluster { nodes };
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
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        for node in &cluster.nodes {
            cluster
                .until(node.port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
        // The replicas' roles reach every node a little after the slots do.
        for node in &cluster.nodes {
            cluster
                .until_nodes(node.port, |nodes| count(nodes, "slave") == 3)
                .await;
        }
        cluster
    }

    /// Waits until `CLUSTER NODES` on `port` satisfies `done`.
    async fn until_nodes(&self, port: u16, done: impl Fn(&str) -> bool) {
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

    async fn until(&self, port: u16, command: &str, expected: &str) {
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
    pub async fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
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
        let (bus, timeout) = (bus.to_string(), CLUSTER_NODE_TIMEOUT_MS.to_string());
        let mut child = spawn_redis_server(
            port,
            dir.path(),
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
            ],
        );
        let deadline = tokio::time::Instant::now() + NODE_START_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            // Ours answering (not another test's server on a taken port).
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            if crate::redis_server::ping(port).await && matches!(child.try_wait(), Ok(None)) {
                return Node {
                    port,
                    _dir: dir,
                    child: Some(child),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not up (its port was taken): dropped, so SIGKILLed; try new ports.
        drop(child);
    }
    panic!("a cluster node did not start in {NODE_START_ATTEMPTS} attempts");
}

/// Lines of `CLUSTER NODES` with `flag` among their flags and not failed.
fn count(nodes: &str, flag: &str) -> usize {
    nodes
        .lines()
        .filter(|l| {
            let flags = l.split_whitespace().nth(2).unwrap_or("");
            flags.split(',').any(|f| f == flag) && !flags.contains("fail")
        })
        .count()
}

/// The harness itself: six nodes form three masters with one replica each,
/// every slot is served, and a master's death promotes its replica.
#[tokio::test]
async fn a_six_node_cluster_forms_and_a_replica_takes_over_a_dead_master() {
    let mut cluster = RedisCluster::start().await;
    let first = cluster.ports()[0];
    let info = cluster.cli(first, "CLUSTER INFO").await;
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_size:3"), "{info}");
    let nodes = cluster.cli(first, "CLUSTER NODES").await;
    let masters: Vec<&str> = nodes.lines().filter(|l| l.contains("master")).collect();
    assert_eq!(masters.len(), 3, "{nodes}");
    assert_eq!(
        nodes.lines().filter(|l| l.contains("slave")).count(),
        3,
        "{nodes}"
    );

    // Kill a master: the cluster is whole again once its replica is promoted.
    let master_port: u16 = masters[0]
        .split_whitespace()
        .nth(1)
        .and_then(|address| address.split('@').next())
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .expect("a master's port");
    cluster.kill(master_port).await;
    let survivor = cluster
        .ports()
        .into_iter()
        .find(|p| *p != master_port)
        .expect("another node");
    cluster
        .until(survivor, "CLUSTER INFO", "cluster_state:ok")
        .await;
    cluster
        .until_nodes(survivor, |nodes| count(nodes, "master") == 3)
        .await;
    assert!(!cluster.seeds().is_empty());
}
