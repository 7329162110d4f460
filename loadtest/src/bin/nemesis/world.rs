//! What the nemesis runs and breaks: a six-node Redis Cluster (three
//! masters, a replica each, `cluster-node-timeout 2000`, AOF `always`), N
//! vaxslot processes on it, and a slow SMTP server; all on loopback, on
//! free ports, in a scratch folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN_KEY: &str = "nemesis-admin";
pub const SRE_KEY: &str = "nemesis-sre";
const TOKEN_SECRET: &str = "nemesis-secret";
/// The cluster's failure detection, as the runs had it.
const NODE_TIMEOUT_MS: u64 = 2_000;
/// Longest wait for a node, a process or the cluster to come up or heal.
const UP_WITHIN: Duration = Duration::from_secs(60);

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to `pid`.
pub async fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// Longest wait for one `redis-cli` call: a paused node never answers.
const CLI_TIMEOUT: Duration = Duration::from_secs(2);

/// `redis-cli -p PORT ARGS…`'s output; empty when the node does not answer
/// within `CLI_TIMEOUT` (it is paused, or down).
pub async fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    cli_within(port, args, CLI_TIMEOUT).await
}

/// `cli` with its own patience (`--cluster create` waits for the join).
async fn cli_within(port: u16, args: &[&str], within: Duration) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(within, output).await {
        Ok(output) => {
            let output = output.context("redis-cli (apt-get install redis-server)")?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(_) => Ok(String::new()),
    }
}

struct Node {
    port: u16,
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--maxmemory-policy", "noeviction", "--daemonize", "no"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &self.bus.to_string(),
            ])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--repl-diskless-sync-delay", "0", "--logfile", "redis.log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server (apt-get install redis-server)")?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts a new node on free ports and waits until it answers. A port
    /// picked free can be taken before the node binds it (by another
    /// program, or as an outgoing connection's): a node that exits is
    /// started again on other ports, `NODE_STARTS_MAX` times at most.
    async fn start_fresh(dir: PathBuf) -> anyhow::Result<Node> {
        for _ in 0..NODE_STARTS_MAX {
            let mut node = Node {
                port: free_port()?,
                bus: free_port()?,
                dir: dir.clone(),
                child: None,
            };
            node.start()?;
            let started = tokio::time::Instant::now();
            loop {
                if cli(node.port, &["PING"]).await?.trim() == "PONG" {
                    return Ok(node);
                }
                let exited = node
                    .child
                    .as_mut()
                    .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
                if exited {
                    break;
                }
                if started.elapsed() > UP_WITHIN {
                    bail!("redis node {} does not answer", node.port);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        bail!("no redis node started in {NODE_STARTS_MAX} tries (see redis.log in the work folder)")
    }
}

/// Most starts of one new node on fresh ports (see `Node::start_fresh`).
const NODE_STARTS_MAX: usize = 5;

pub struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    pub async fn start(work: &Path) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for n in 0..6 {
            let dir = work.join(format!("node{n}"));
            std::fs::create_dir_all(&dir)?;
            nodes.push(Node::start_fresh(dir).await?);
        }
        let cluster = Cluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        cli_within(cluster.nodes[0].port, &create, UP_WITHIN).await?;
        cluster.until_healthy().await?;
        Ok(cluster)
    }

    /// `host:port,…` for `--redis-cluster-nodes`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    async fn until_answers(&self, port: u16) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        while cli(port, &["PING"]).await?.trim() != "PONG" {
            if started.elapsed() > UP_WITHIN {
                bail!("redis node {port} does not answer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The masters' node indexes, by port, as the running nodes see them.
    pub async fn masters(&self) -> anyhow::Result<Vec<usize>> {
        let mut masters = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            let role = cli(node.port, &["ROLE"]).await?;
            if role.lines().next() == Some("master") {
                masters.push(i);
            }
        }
        masters.sort_by_key(|i| self.nodes[*i].port);
        Ok(masters)
    }

    /// The node of the `rank`-th master (modulo how many there are now).
    pub async fn master(&self, rank: usize) -> anyhow::Result<Option<usize>> {
        let masters = self.masters().await?;
        Ok((!masters.is_empty()).then(|| masters[rank % masters.len()]))
    }

    pub async fn kill(&mut self, node: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[node].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    pub async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        if self.nodes[node].child.is_none() {
            self.nodes[node].start()?;
            self.until_answers(self.nodes[node].port).await?;
        }
        Ok(())
    }

    pub async fn signal(&self, node: usize, name: &str) -> anyhow::Result<()> {
        match self.nodes[node].pid() {
            Some(pid) => signal(pid, name).await,
            None => Ok(()),
        }
    }

    pub async fn client_pause(&self, node: usize, for_ms: u64) -> anyhow::Result<()> {
        cli(
            self.nodes[node].port,
            &["CLIENT", "PAUSE", &for_ms.to_string(), "ALL"],
        )
        .await?;
        Ok(())
    }

    /// Every node running and continued, the cluster whole: every slot
    /// served, three masters, each replica's link up.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        for node in 0..self.nodes.len() {
            self.signal(node, "CONT").await?;
            self.restart(node).await?;
        }
        self.until_healthy().await
    }

    async fn until_healthy(&self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            let mut healthy = true;
            for node in &self.nodes {
                let info = cli(node.port, &["CLUSTER", "INFO"]).await?;
                let replication = cli(node.port, &["INFO", "replication"]).await?;
                let linked = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                healthy &= info.contains("cluster_state:ok") && linked;
            }
            if healthy && self.masters().await?.len() == 3 {
                return Ok(());
            }
            if started.elapsed() > UP_WITHIN {
                bail!("the cluster did not heal within {UP_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A slow SMTP server: `tests/support/smtp_sink.py`, answering each message
/// `delay_ms` after its data; what it accepted is one JSON line each. Each
/// process sends to its own, so that a message's sender is known.
pub struct Smtp {
    pub port: u16,
    pub out: PathBuf,
    _child: Child,
}

impl Smtp {
    /// One server for each of `processes`.
    pub async fn start_each(
        work: &Path,
        delay_ms: u64,
        processes: usize,
    ) -> anyhow::Result<Vec<Self>> {
        let mut servers = Vec::new();
        for n in 0..processes {
            servers.push(Self::start(work, delay_ms, n).await?);
        }
        Ok(servers)
    }

    async fn start(work: &Path, delay_ms: u64, process: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let out = work.join(format!("mail-{process}.jsonl"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/smtp_sink.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .env("SMTP_SINK_DELAY_MS", delay_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("python3 with aiosmtpd (apt-get install python3-aiosmtpd)")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(UP_WITHIN, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            _ => bail!("the SMTP sink did not start (is python3-aiosmtpd installed?)"),
        }
        Ok(Self {
            port,
            out,
            _child: child,
        })
    }

    /// Every message the servers of `each` accepted so far, in the order
    /// their data arrived.
    pub fn messages(each: &[Smtp]) -> Vec<Accepted> {
        let mut all: Vec<Accepted> = each
            .iter()
            .enumerate()
            .flat_map(|(sender, server)| {
                std::fs::read_to_string(&server.out)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                    .filter_map(|mail| {
                        Some(Accepted {
                            message_id: mail["message_id"].as_str()?.to_owned(),
                            sender,
                            received_ms: mail["received_ms"].as_i64()?,
                            accepted_ms: mail["accepted_ms"].as_i64()?,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|mail| mail.received_ms);
        all
    }
}

/// One message an SMTP server accepted from process `sender`: its data
/// arrived at `received_ms`, and was accepted at `accepted_ms` (unix ms).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub message_id: String,
    pub sender: usize,
    pub received_ms: i64,
    pub accepted_ms: i64,
}

struct Process {
    url: String,
    child: Option<Child>,
    starts: u32,
}

/// The vaxslot processes, each on its own port (a restart gets a new one).
pub struct Processes {
    binary: PathBuf,
    work: PathBuf,
    seeds: String,
    /// Each process's own SMTP server.
    smtp_ports: Vec<u16>,
    list: Vec<Process>,
}

impl Processes {
    pub async fn start(
        binary: &Path,
        work: &Path,
        seeds: String,
        smtp_ports: Vec<u16>,
    ) -> anyhow::Result<Self> {
        let count = smtp_ports.len();
        let mut processes = Self {
            binary: binary.to_owned(),
            work: work.to_owned(),
            seeds,
            smtp_ports,
            list: Vec::new(),
        };
        for _ in 0..count {
            processes.list.push(Process {
                url: String::new(),
                child: None,
                starts: 0,
            });
        }
        for n in 0..count {
            processes.restart(n).await?;
        }
        Ok(processes)
    }

    pub fn urls(&self) -> Vec<String> {
        self.list.iter().map(|p| p.url.clone()).collect()
    }

    /// Starts process `n` (again) unless it runs, as systemd's
    /// `Restart=always` with `RestartSec=1` would (deploy/): a process that
    /// exits at start (its store unreachable) is started again.
    pub async fn restart(&mut self, n: usize) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            match self.start_once(n).await {
                Ok(()) => return Ok(()),
                Err(error) if started.elapsed() > UP_WITHIN => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn start_once(&mut self, n: usize) -> anyhow::Result<()> {
        if self.list[n].child.is_some() {
            return Ok(());
        }
        let process = &mut self.list[n];
        process.starts += 1;
        let log = std::fs::File::create(
            self.work
                .join(format!("vaxslot-{n}-{}.log", process.starts)),
        )?;
        let mut child = Command::new(&self.binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.work.join(format!("vaxslot-{n}")))
            .args(["--redis-cluster-nodes", &self.seeds])
            .env("VAXSLOT_ADMIN_KEY", ADMIN_KEY)
            .env("VAXSLOT_SRE_KEY", SRE_KEY)
            .env("VAXSLOT_TOKEN_SECRET", TOKEN_SECRET)
            // Commit times are read back from the change streams: keep them.
            .env("VAXSLOT_CHANGE_STREAMS_KEEP_S", "3600")
            .env(
                "VAXSLOT_SMTP_URL",
                format!("smtp://127.0.0.1:{}", self.smtp_ports[n]),
            )
            .env("VAXSLOT_MAIL_FROM", "vaccine@city.example.jp")
            .env("VAXSLOT_PUBLIC_URL", "https://vaccine.city.example.jp/")
            .env("VAXSLOT_CALL_CENTRE_PHONE", "0120-567-000")
            .env("VAXSLOT_MAIL_RETRY_MAX_S", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(UP_WITHIN, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("vaxslot listening on ") {
                    return Some(address.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .with_context(|| {
            format!("vaxslot process {n} did not start (see its log in the work folder)")
        })?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        process.url = url;
        process.child = Some(child);
        Ok(())
    }

    pub async fn kill(&mut self, n: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.list[n].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    pub async fn signal(&self, n: usize, name: &str) -> anyhow::Result<()> {
        match self.list[n].child.as_ref().and_then(Child::id) {
            Some(pid) => signal(pid, name).await,
            None => Ok(()),
        }
    }

    /// Every process running and continued.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        for n in 0..self.list.len() {
            self.signal(n, "CONT").await?;
            self.restart(n).await?;
        }
        Ok(())
    }
}
