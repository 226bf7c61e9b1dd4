//! The `padel-bff` binary: parse the command line, load settings, start logging, run the command.

use clap::Parser;
use padel_bff::{cli::Cli, config::Settings, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Settings come first: a bad key must stop the process before anything else happens.
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(&settings);
    let result = cli.run(settings).await;
    // Flush queued spans before exiting.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
