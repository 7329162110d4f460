//! A real SMTP server for one test: `tests/support/smtp_sink.py` on Debian's
//! python3-aiosmtpd, on a free loopback port. It can be "down" (the port
//! reserved, nothing listening) and come up later on the same port. Every
//! message it accepts is decoded by Python's email package and kept as one
//! JSON line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Debian's Python, which has python3-aiosmtpd (not a pyenv one on PATH).
const PYTHON: &str = "/usr/bin/python3";
/// Longest the sink may take to listen.
const SINK_START_TIMEOUT: Duration = Duration::from_secs(15);

pub struct SmtpSink {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// `user:password` a client must log in with, if any.
    login: Option<String>,
}

impl SmtpSink {
    /// A sink that is down: its port is chosen, nothing listens yet.
    pub fn down() -> SmtpSink {
        SmtpSink {
            port: crate::redis_server::free_port(),
            dir: tempfile::tempdir().expect("sink dir"),
            child: None,
            login: None,
        }
    }

    /// A sink that is up and takes mail only from a client that logs in
    /// with `user` and `password` (AUTH, on loopback without TLS).
    pub async fn start_with_login(user: &str, password: &str) -> SmtpSink {
        let mut sink = Self::down();
        sink.login = Some(format!("{user}:{password}"));
        sink.come_up().await;
        sink
    }

    /// A sink that is up.
    pub async fn start() -> SmtpSink {
        let mut sink = Self::down();
        sink.come_up().await;
        sink
    }

    /// Starts listening (again) on its port.
    pub async fn come_up(&mut self) {
        assert!(self.child.is_none(), "the sink is already up");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut command = Command::new(PYTHON);
        command
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.messages_path());
        if let Some(login) = &self.login {
            command.arg(login);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        tokio::time::timeout(SINK_START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("sink stdout") {
                if line == "ready" {
                    return;
                }
            }
            panic!("the SMTP sink exited before listening");
        })
        .await
        .expect("the SMTP sink listens in time");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn messages_path(&self) -> PathBuf {
        self.dir.path().join("messages.jsonl")
    }

    /// Every message accepted so far, decoded, in arrival order. A line the
    /// sink is still writing (no newline yet) is left for the next read:
    /// read while it was half written, it failed a test run once.
    pub fn messages(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.messages_path()) {
            Ok(text) => {
                let written = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
                written
                    .lines()
                    .map(|line| serde_json::from_str(line).expect("a JSON line"))
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Waits until at least `count` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} mails arrived in {timeout:?}: {messages:#?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
