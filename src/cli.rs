//! Command line: `serve` (default), `migrate`, `seed`, `schema`, `openapi`, `token`, `doctor`,
//! `healthcheck`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{
    auth::TokenAuthority,
    config::Settings,
    startup::{shutdown_signal, Application},
    store::{
        seed::{Scale, SeedOptions, DEMO_USERS},
        Store,
    },
};

/// padel-bff: the GraphQL gateway of the padel-club booking platform.
#[derive(Debug, Parser)]
#[command(name = "padel-bff", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Fill the database with deterministic demo or load-test data.
    Seed {
        /// How much data.
        #[arg(long, value_enum, default_value = "demo")]
        scale: Scale,
        /// Random seed: the same seed (and day) gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Delete existing data first (required when the database is not empty).
        #[arg(long)]
        reset: bool,
        /// The day reservations are placed around, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        today: Option<chrono::NaiveDate>,
        /// Do nothing (and succeed) when the database already holds data: a seed step that can
        /// run on every deploy (compose.yaml).
        #[arg(long, conflicts_with = "reset")]
        if_empty: bool,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the OpenAPI document of the platform's BFF URLs (`openapi.json`).
    Openapi,
    /// Check the deployment with this configuration: database, migrations, indexes, Redis, the
    /// invalidation channel, the OTLP endpoint, JWT, rate-limit and CORS settings, clock skew.
    /// Prints a table; exits 1 when a check fails.
    Doctor {
        /// Warnings fail too.
        #[arg(long)]
        strict: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the gateway answers GET /healthz with 200 (the container's HEALTHCHECK; no
    /// curl needed in the image).
    Healthcheck {
        /// The URL to ask (default: /healthz on the configured listen port, on 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print a signed bearer token for a user.
    Token {
        /// The user's email.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

impl Cli {
    /// Whether the command starts the OpenTelemetry exporters (not the checks).
    pub fn exports_telemetry(&self) -> bool {
        !matches!(
            self.command,
            Some(Command::Doctor { .. } | Command::Healthcheck { .. })
        )
    }

    /// Runs the chosen command.
    pub async fn run(self, settings: Settings) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => {
                let store = Store::connect(&settings).await?;
                store.migrate().await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Seed {
                scale,
                seed,
                reset,
                today,
                if_empty,
            } => {
                let store = Store::connect(&settings).await?;
                store.migrate().await?;
                if if_empty && !store.is_empty().await? {
                    println!("the database already holds data: nothing seeded (--if-empty)");
                    return Ok(());
                }
                if !store.is_empty().await? {
                    anyhow::ensure!(
                        reset,
                        "the database already holds data; pass --reset to replace it"
                    );
                    store.reset_data().await?;
                }
                let started = std::time::Instant::now();
                let today = today.unwrap_or_else(|| chrono::Utc::now().date_naive());
                let summary = store.seed(SeedOptions { scale, seed, today }).await?;
                println!(
                    "seeded {} organizations, {} clubs, {} courts, {} users, {} reservations in {:.1?}",
                    summary.organizations, summary.clubs, summary.courts, summary.users, summary.reservations,
                    started.elapsed()
                );
                Ok(())
            }
            Command::Schema => {
                print!("{}", crate::graphql::sdl());
                Ok(())
            }
            Command::Openapi => {
                print!("{}", crate::rest::openapi::json());
                Ok(())
            }
            Command::Doctor { strict, json } => {
                let checks = crate::doctor::run(&settings).await;
                if json {
                    println!("{}", serde_json::to_string_pretty(&checks)?);
                } else {
                    print!("{}", crate::doctor::table(&checks));
                }
                std::process::exit(crate::doctor::exit_code(&checks, strict));
            }
            Command::Healthcheck { url } => {
                let port = settings.server.listen.port();
                let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}/healthz"));
                match crate::doctor::http_get_status(&url, std::time::Duration::from_secs(3)).await
                {
                    Ok(200) => Ok(()),
                    Ok(status) => anyhow::bail!("{url} answered {status}"),
                    Err(error) => anyhow::bail!("{url}: {error}"),
                }
            }
            Command::Token { user, ttl } => {
                let store = Store::connect(&settings).await?;
                let row = store
                    .user_by_email(&user)
                    .await?
                    .with_context(|| format!("no user with email {user}"))?;
                let token = TokenAuthority::new(&settings.auth)
                    .sign(row.id, ttl)
                    .context("auth.jwt_secret is empty: HS256 tokens are turned off")?;
                println!("{token}");
                Ok(())
            }
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let url = format!("http://{}", app.local_addr());
    println!("padel-bff listening on {url}");
    let state = app.state();
    if state.settings.server.graphiql {
        println!("GraphiQL: {url}/graphql");
    }
    if state.demo_owner_id.is_some() {
        let ttl = state.settings.auth.demo_token_ttl;
        println!(
            "Demo bearer tokens (valid {}), paste as `Authorization: Bearer <token>`:",
            humantime::format_duration(ttl)
        );
        for (email, _) in DEMO_USERS {
            if let Some(user) = state.store.user_by_email(email).await? {
                if let Some(token) = state.tokens.sign(user.id, ttl) {
                    println!("  {email:<22} {token}");
                }
            }
        }
    }
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
