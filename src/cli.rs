//! Command line: `serve` (default), `migrate`, `seed`, `schema`, `openapi`, `token`.

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
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the OpenAPI document of the platform's BFF URLs (`openapi.json`).
    Openapi,
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
            } => {
                let store = Store::connect(&settings).await?;
                store.migrate().await?;
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
