//! `wtc-bench`: end-to-end benchmarks on the local stack (see the README's performance section).

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::time::Duration;
use wtc_local::bench::api::{ApiLoad, run, table};

#[derive(Parser)]
#[command(
    name = "wtc-bench",
    about = "End-to-end benchmarks of the functions on the local stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The API under a fixed request rate from oha (a second process): errors, end-to-end and
    /// in-handler latency of /latest_price and /candles.
    Api {
        /// Requests per second to each of the two endpoints.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Forex ticks ingested before the load.
        #[arg(long, default_value_t = 12_000)]
        ticks: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Api {
            rate,
            seconds,
            ticks,
        } => {
            let load = ApiLoad {
                rate_per_endpoint: rate,
                duration: Duration::from_secs(seconds),
                ticks,
            };
            let figures = run(&load).await?;
            print!("{}", table(&load, &figures));
        }
    }
    Ok(())
}
