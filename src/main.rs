//! The `padel-bff` binary: parse the command line, load settings, start logging, run the command.

use clap::Parser;
use padel_bff::{cli::Cli, config::Settings, telemetry};

/// mimalloc instead of the system allocator: a GraphQL response allocates ~9 times per field (its
/// future, its value, object maps), and malloc/free were ~30 % of an in-cache request's
/// instructions under glibc (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // Checks (doctor, healthcheck) export nothing: no exporter starts, so none can fail loudly
    // (an exporter's error would print its endpoint, credentials included).
    if !cli.exports_telemetry() {
        telemetry::init_logging(&settings.log);
        let result = cli.run(settings).await;
        return match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
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
