//! Thin: parse the command line, start logging and metrics, build, serve.

use clap::Parser;
use vaxslot::settings::{Cli, Command, Settings};
use vaxslot::startup::Application;
use vaxslot::telemetry;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    let metrics = telemetry::init_metrics()?;
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::from_args(args);
            if let Some(start) = settings.clock_start {
                vaxslot::clock::start_at(start);
                tracing::warn!(%start, "the clock was moved (--clock-start): not for production");
            }
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings, Some(metrics)).await?;
                for line in &app.banner {
                    println!("{line}");
                }
                // Tests and scripts read the bound address from this line.
                println!("vaxslot listening on http://{}", app.address());
                app.run_until_stopped().await?;
                Ok(())
            })
        }
    }
}
