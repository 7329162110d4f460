//! A throwaway `redis-server` for one test: a free loopback port, its own
//! directory, AOF with `appendfsync always`, stopped when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Longest a redis-server may take to answer PING after starting.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// AOF with `appendfsync always` (off only for a server loaded from an
    /// RDB dump: Redis ignores the dump when AOF is on and no AOF exists).
    append_only: bool,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("redis dir"),
            child: None,
            append_only: true,
        };
        server.launch(true).await;
        server
    }

    /// A server holding what an RDB dump held (a fixture), without AOF.
    pub async fn start_from_dump(dump: &std::path::Path) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("redis dir"),
            child: None,
            append_only: false,
        };
        std::fs::copy(dump, server.dir().join("dump.rdb")).expect("dump copied");
        server.launch(true).await;
        server
    }

    /// The server as a store that counts a write only once one replica
    /// holds it (this server has none: nothing such ever counts).
    pub async fn store_waiting_for_a_replica(&self) -> vaxslot::store::RedisStore {
        vaxslot::store::RedisStore::open(
            &vaxslot::store::RedisTarget::Single(self.url()),
            vaxslot::store::ReplicaWait {
                replicas: 1,
                timeout: std::time::Duration::from_millis(100),
            },
        )
        .await
        .expect("the server opens as a store")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts the server on its port and waits until it, not another test's
    /// server, answers there. On a first start, a port another test took
    /// between choosing and binding it is given up for a new one.
    async fn launch(&mut self, first_start: bool) {
        for _ in 0..REDIS_START_ATTEMPTS {
            let mut child = spawn_redis_server(self.port, &self.dir(), self.append_only, &[]);
            let started = tokio::time::timeout(REDIS_START_TIMEOUT, async {
                loop {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        return false;
                    }
                    if ping(self.port).await && answers_as(self.port, child.id()).await {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or(false);
            if started {
                self.child = Some(child);
                return;
            }
            assert!(first_start, "redis-server restarts on port {}", self.port);
            drop(child);
            self.port = free_port();
        }
        panic!("redis-server did not start in {REDIS_START_ATTEMPTS} attempts");
    }

    /// SIGKILL: whatever AOF has fsynced survives.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
    }

    /// Starts again on the same port, loading the AOF.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch(false).await;
    }
}

pub async fn ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).await.is_ok() && &answer == b"+PONG\r\n"
}

/// `redis-server` on loopback `port`, its files in `dir` (AOF with
/// `appendfsync always` if `append_only`), with `extra` arguments; SIGKILLed
/// when its handle is dropped.
pub fn spawn_redis_server(
    port: u16,
    dir: &std::path::Path,
    append_only: bool,
    extra: &[&str],
) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--appendonly",
            if append_only { "yes" } else { "no" },
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .args(["--daemonize", "no", "--logfile", "redis.log"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts (apt-get install redis-server)")
}

/// Attempts at a first start (see `RedisServer::launch`).
const REDIS_START_ATTEMPTS: usize = 5;

/// Whether the server on `port` is the process `pid`.
pub async fn answers_as(port: u16, pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return false };
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "server"])
        .output()
        .await
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|l| l.trim() == format!("process_id:{pid}"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}
