//! The SRE's and the ward's commands against a running server (an HTTP
//! client of `api/`), and the roster check that needs no server. Exit codes:
//! 0 done, 1 findings or a refusal, 2 usage (bad arguments, unreadable
//! file, unreachable server).

mod roster;

pub use roster::{Encoding, Finding, Problem, Report, check as check_roster, decode};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Records sent per import call (the API's limit is 10,000).
pub const IMPORT_CHUNK_RECORDS: usize = 5_000;

/// Exit code: done, nothing wrong.
pub const EXIT_OK: u8 = 0;
/// Exit code: findings in the file, or the server refused.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: bad usage, an unreadable file, or no server.
pub const EXIT_USAGE: u8 = 2;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The running server.
    #[arg(long, env = "VAXSLOT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

#[derive(Args, Debug)]
pub struct KillSwitchArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub action: KillSwitchAction,
}

#[derive(Subcommand, Debug)]
pub enum KillSwitchAction {
    /// Show whether booking is stopped, since when and why.
    Status,
    /// Stop all booking, from every channel, at once (a reason is required).
    Engage {
        #[arg(long)]
        reason: String,
    },
    /// Open booking again.
    Release,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The roster CSV (UTF-8, UTF-8 with BOM, or Shift_JIS/CP932).
    pub file: PathBuf,
    /// Check the file and show what would be imported; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CheckRosterArgs {
    /// The roster CSV (UTF-8, UTF-8 with BOM, or Shift_JIS/CP932).
    pub file: PathBuf,
}

fn key(variable: &str) -> Result<String, ExitCode> {
    std::env::var(variable)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            eprintln!("error: set {variable} to the key of that role");
            ExitCode::from(EXIT_USAGE)
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `vaxslot kill-switch status|engage|release`.
pub fn kill_switch(args: KillSwitchArgs) -> ExitCode {
    let key = match key("VAXSLOT_SRE_KEY") {
        Ok(key) => key,
        Err(code) => return code,
    };
    let url = format!(
        "{}/v1/admin/kill-switch",
        args.server.url.trim_end_matches('/')
    );
    runtime().block_on(async move {
        let client = reqwest::Client::new();
        let request = match &args.action {
            KillSwitchAction::Status => client.get(&url),
            KillSwitchAction::Engage { reason } => {
                if reason.trim().is_empty() {
                    eprintln!("error: --reason must say why booking is stopped");
                    return ExitCode::from(EXIT_USAGE);
                }
                client
                    .put(&url)
                    .json(&json!({"engaged": true, "reason": reason}))
            }
            KillSwitchAction::Release => client
                .put(&url)
                .json(&json!({"engaged": false, "reason": null})),
        };
        let response = match request.bearer_auth(&key).send().await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("error: cannot reach {url}: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            eprintln!(
                "refused: {status} {}: {}",
                body["code"].as_str().unwrap_or(""),
                body["detail"].as_str().unwrap_or("")
            );
            return ExitCode::from(EXIT_FINDINGS);
        }
        let engaged = body["engaged"].as_bool().unwrap_or(false);
        println!(
            "booking is {} (since {}, by {}{})",
            if engaged { "STOPPED" } else { "open" },
            body["changed_at"].as_str().unwrap_or("start"),
            body["changed_by"].as_str().unwrap_or("-"),
            body["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        ExitCode::from(EXIT_OK)
    })
}

fn read_roster(file: &std::path::Path) -> Result<(String, Encoding), ExitCode> {
    let bytes = std::fs::read(file).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", file.display());
        ExitCode::from(EXIT_USAGE)
    })?;
    decode(&bytes).map_err(|e| {
        eprintln!("error: {}: {e}", file.display());
        ExitCode::from(EXIT_USAGE)
    })
}

fn print_report(file: &std::path::Path, report: &Report) {
    for problem in &report.problems {
        match problem.first_line {
            Some(first) => println!(
                "{}:{}: {} (first on line {first})",
                file.display(),
                problem.line,
                problem.finding.describe()
            ),
            None => println!(
                "{}:{}: {}",
                file.display(),
                problem.line,
                problem.finding.describe()
            ),
        }
    }
    for (finding, count) in report.summary() {
        println!("{count} × {}", finding.describe());
    }
}

/// `vaxslot check-roster FILE`.
pub fn check_roster_file(args: CheckRosterArgs) -> ExitCode {
    let (text, encoding) = match read_roster(&args.file) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let report = match roster::check(&text, crate::clock::today()) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {}: {error}", args.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    print_report(&args.file, &report);
    println!(
        "{}: {} residents, {} problems ({})",
        args.file.display(),
        report.records,
        report.problems.len(),
        encoding.name()
    );
    ExitCode::from(if report.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

/// `vaxslot import FILE [--dry-run]`: uploads the roster as UTF-8 CSV in
/// chunks, with a progress bar, and reports every line the server rejected
/// (with the file's line number).
pub fn import(args: ImportArgs) -> ExitCode {
    let (text, encoding) = match read_roster(&args.file) {
        Ok(read) => read,
        Err(code) => return code,
    };
    if args.dry_run {
        eprintln!("dry run: nothing is sent ({})", encoding.name());
        return check_roster_file(CheckRosterArgs { file: args.file });
    }
    let key = match key("VAXSLOT_ADMIN_KEY") {
        Ok(key) => key,
        Err(code) => return code,
    };
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        eprintln!("error: {} is empty", args.file.display());
        return ExitCode::from(EXIT_USAGE);
    };
    let rows: Vec<&str> = lines.collect();
    let url = format!(
        "{}/v1/admin/residents",
        args.server.url.trim_end_matches('/')
    );
    runtime().block_on(async move {
        let client = reqwest::Client::new();
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} residents {eta}")
                .expect("a valid template"),
        );
        let (mut imported, mut updated, mut rejected) = (0, 0, Vec::new());
        for (chunk_index, chunk) in rows.chunks(IMPORT_CHUNK_RECORDS).enumerate() {
            let body = std::iter::once(header)
                .chain(chunk.iter().copied())
                .collect::<Vec<_>>()
                .join("\n");
            let answer = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "text/csv; charset=utf-8")
                .body(body)
                .send()
                .await;
            let response = match answer {
                Ok(response) => response,
                Err(error) => {
                    bar.abandon();
                    eprintln!("error: cannot reach {url}: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let status = response.status();
            let report: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bar.abandon();
                eprintln!(
                    "refused: {status} {}: {}",
                    report["code"].as_str().unwrap_or(""),
                    report["detail"].as_str().unwrap_or("")
                );
                return ExitCode::from(EXIT_FINDINGS);
            }
            imported += report["imported"].as_u64().unwrap_or(0);
            updated += report["updated"].as_u64().unwrap_or(0);
            for reject in report["rejected"].as_array().into_iter().flatten() {
                // The server numbers lines within this chunk (its header is line 1).
                let line = reject["line"].as_u64().unwrap_or(0) as usize - 1
                    + chunk_index * IMPORT_CHUNK_RECORDS
                    + 1;
                rejected.push((line, reject["code"].as_str().unwrap_or("").to_owned()));
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        for (line, code) in &rejected {
            println!("{}:{line}: rejected: {code}", args.file.display());
        }
        println!(
            "{}: {imported} imported, {updated} updated, {} rejected ({})",
            args.file.display(),
            rejected.len(),
            encoding.name()
        );
        ExitCode::from(if rejected.is_empty() {
            EXIT_OK
        } else {
            EXIT_FINDINGS
        })
    })
}
