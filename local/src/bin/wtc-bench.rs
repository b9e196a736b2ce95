//! `wtc-bench`: end-to-end benchmarks on the local stack (see the README's performance section).

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::time::Duration;
use wtc_local::bench::api::{ApiLoad, run, table};
use wtc_local::bench::cold_start;
use wtc_local::bench::pipeline::{self, PipelineLoad, Prices, template_memory_mb};

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
    /// process-ticks and aggregate-usage over the reference data against DynamoDB-like latency,
    /// beside the straightforward design: wall per batch, round trips, requests, capacity units,
    /// GB-seconds and dollars per record.
    Pipelines {
        /// Reference forex ticks (seed 42).
        #[arg(long, default_value_t = 60_000)]
        ticks: usize,
        /// Pairs of generated CDR files (1,000 data rows and 1,000 voice rows each).
        #[arg(long, default_value_t = 10)]
        cdr_pairs: u64,
        /// Records per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Milliseconds added to every request (DynamoDB answers in single-digit milliseconds).
        #[arg(long, default_value_t = 5)]
        service_ms: u64,
        /// Requests the straightforward design keeps in flight (as many as the stores allow ours).
        #[arg(long, default_value_t = wtc_aws::retry::MAX_IN_FLIGHT)]
        naive_concurrency: usize,
        /// API requests sent after the pipelines (market endpoints and /data_usage in turn).
        #[arg(long, default_value_t = 1_000)]
        api_requests: usize,
        /// API requests per second.
        #[arg(long, default_value_t = 100)]
        api_rate: u32,
    },
    /// Every function's release binary started as Lambda starts it, beside a local Lambda
    /// Runtime API: time to its first request for work and to its first answer. Builds the
    /// binaries first (`cargo build --release`).
    ColdStart {
        /// Starts per function (the median is printed).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Use the binaries already built.
        #[arg(long)]
        no_build: bool,
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
        Command::Pipelines {
            ticks,
            cdr_pairs,
            batch_size,
            service_ms,
            naive_concurrency,
            api_requests,
            api_rate,
        } => {
            let load = PipelineLoad {
                ticks,
                cdr_pairs,
                batch_size,
                service_time: Duration::from_millis(service_ms),
                naive_concurrency,
                api_requests,
                api_rate,
            };
            let (prices, memory) = (Prices::listed()?, template_memory_mb()?);
            let figures = pipeline::run(&load).await?;
            print!("{}", pipeline::table(&load, &figures, &prices, memory));
        }
        Command::ColdStart { runs, no_build } => {
            if !no_build {
                build_functions()?;
            }
            let starts = cold_start::run(runs).await?;
            print!("{}", cold_start::table(&starts, runs));
        }
    }
    Ok(())
}

/// `cargo build --release` of every function's binary, into the target folder the bench reads.
fn build_functions() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "--bins"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    for f in cold_start::FUNCTIONS {
        cmd.args(["-p", f]);
    }
    eprintln!("building the functions (release)");
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "building the functions failed ({status})");
    Ok(())
}
