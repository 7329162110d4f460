//! Thin: parse the command line, start logging and metrics, build, serve.

use std::process::ExitCode;

use clap::Parser;
use vaxslot::settings::{Cli, Command, Settings};
use vaxslot::startup::Application;
use vaxslot::telemetry;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    match cli.command {
        Command::KillSwitch(args) => Ok(vaxslot::cli::kill_switch(args)),
        Command::Import(args) => Ok(vaxslot::cli::import(args)),
        Command::CheckRoster(args) => Ok(vaxslot::cli::check_roster_file(args)),
        Command::Serve(args) => {
            let metrics = telemetry::init_metrics()?;
            let settings = match Settings::from_args(args) {
                Ok(settings) => settings,
                Err(message) => {
                    eprintln!("vaxslot: {message}");
                    return Ok(ExitCode::from(2));
                }
            };
            if let Some(start) = settings.clock_start {
                vaxslot::clock::start_at(start);
                tracing::warn!(%start, "the clock was moved (--clock-start): not for production");
            }
            actix_web::rt::System::new().block_on(async move {
                let app = match Application::build(settings, Some(metrics)).await {
                    Ok(app) => app,
                    Err(error) => {
                        // One line saying why, with its causes; no backtrace.
                        eprintln!("vaxslot: {error:#}");
                        return Ok(ExitCode::FAILURE);
                    }
                };
                for line in &app.banner {
                    println!("{line}");
                }
                // Tests and scripts read the bound address from this line.
                println!("vaxslot listening on http://{}", app.address());
                let base = format!("http://{}", app.address());
                println!(
                    "pages: {base}/ (residents), {base}/operator/ (call centre), {base}/staff/ (venue tablet), {base}/sre/ (launch day)"
                );
                app.run_until_stopped().await?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
