//! `wtc-local`: runs the whole system on this machine. See the README for the modes.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fetch_quotes::yahoo::{self, YahooProvider};
use fetch_quotes::{FetchQuotes, Provider, Publisher};
use wtc_core::quotes::SimulatedMarket;
use wtc_core::simulate::{FULL_RUN_TICKS, ForexSimulator};
use wtc_local::cdr::{
    BUCKET, LOCAL_API_USER, drop_files, provision_cdr, s3_client, serve_api, stream_uploads,
    wait_ready,
};
use wtc_local::generator::{produce_ticks, tick_producer};
use wtc_local::market::{candle_table, fetch_live, replay_session};
use wtc_local::poller::{Invoker, KafkaPoller, PollerOptions};
use wtc_local::progress::{Progress, report_every, thousands};
use wtc_local::provision::{Names, process_ticks, provision_ticks};
use wtc_local::stack::{DynamoEmulator, LocalStack, StackOptions};

#[derive(Parser)]
#[command(
    name = "wtc-local",
    version,
    about = "Runs the streaming platform on this machine: broker, AWS emulator, generator, poller and functions",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Install the local tools (tansu, moto, dynalite) and exit.
    Install {
        /// Also install what the tests use: kafka-python, paramiko and the SAM CLI.
        #[arg(long)]
        test_tools: bool,
    },
    /// Write CDR files as the curriculum's generator does (same names, columns and value ranges,
    /// 50,000 MSISDNs, seeded), ready to upload to the SFTP drop.
    GenerateCdr {
        /// Pairs of files to write: a data and a voice file of 1,000 rows for each 200 s of
        /// simulated time from 2024-01-01 00:00:00.
        #[arg(long, default_value_t = 1)]
        files: u64,
        /// Seed (the same seed gives the same files).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder to write into (created if missing).
        #[arg(long, default_value = "cdr-files")]
        out: std::path::PathBuf,
    },
    /// Send the dead-letter queue's letters back through the functions that rejected them, once
    /// their cause is fixed (exactly-once makes this safe; see the README's reliability section).
    /// Works against a running `./local/up`.
    Replay {
        /// The running stack's broker (stream-cdr-files publishes the rows of replayed files).
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:19092")]
        kafka_brokers: String,
        /// The running stack's AWS endpoint.
        #[arg(
            long,
            env = "AWS_ENDPOINT_URL",
            default_value = "http://127.0.0.1:4566"
        )]
        aws_endpoint: String,
        /// The running stack's DynamoDB endpoint (`./local/up --docker`: the AWS endpoint).
        #[arg(
            long,
            env = "AWS_ENDPOINT_URL_DYNAMODB",
            default_value = "http://127.0.0.1:4567"
        )]
        dynamodb_endpoint: String,
        /// Replay at most this many letters.
        #[arg(long, default_value_t = 10_000)]
        max: u64,
    },
}

#[derive(Args, Clone)]
struct UpArgs {
    /// Use Redpanda, Redpanda Console (:18084) and moto's server image from
    /// local/docker-compose.yml.
    #[arg(long)]
    docker: bool,
    /// Ticks the built-in generator produces.
    #[arg(long, default_value_t = 20_000)]
    ticks: u64,
    /// Produce the reference run: 691,200 ticks, 48 simulated hours.
    #[arg(long, conflicts_with = "ticks")]
    full: bool,
    /// Seed of the generator (the same seed gives the same ticks).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not run the generator: an external producer feeds the topic.
    #[arg(long)]
    external_producer: bool,
    /// Exit once every generated tick is processed (with --external-producer: once records have
    /// arrived and then none for --idle-secs) instead of running until Ctrl-C.
    #[arg(long)]
    exit_when_done: bool,
    /// With --exit-when-done and --external-producer: seconds without new records before exiting.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Invoke the function over HTTP (e.g. `cargo lambda watch` at http://127.0.0.1:9000) instead
    /// of in this process.
    #[arg(long, env = "WTC_INVOKE_URL")]
    invoke_url: Option<String>,
    /// Use this Kafka broker instead of starting one.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Use this AWS endpoint instead of starting an emulator.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    aws_endpoint: Option<String>,
    /// Port of the broker this runner starts (the curriculum's external Redpanda port).
    #[arg(long, default_value_t = 19092)]
    kafka_port: u16,
    /// Port of the AWS emulator this runner starts (LocalStack's port).
    #[arg(long, default_value_t = 4566)]
    aws_port: u16,
    /// The DynamoDB emulator this runner starts: dynalite (the fastest here) or moto's server
    /// (the AWS emulator's own DynamoDB).
    #[arg(long, value_enum, env = "WTC_DYNAMODB_EMULATOR", default_value_t = DynamoEmulator::Dynalite)]
    dynamodb_emulator: DynamoEmulator,
    /// Use this DynamoDB endpoint instead of starting an emulator (default: the AWS endpoint,
    /// when one is given).
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    dynamodb_endpoint: Option<String>,
    /// Port of the DynamoDB emulator this runner starts (dynalite's own default).
    #[arg(long, default_value_t = 4567)]
    dynamodb_port: u16,
    /// Records per batch handed to the function (the event-source mapping's BatchSize).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Longest wait to fill a batch, in milliseconds (MaximumBatchingWindowInSeconds).
    #[arg(long, default_value_t = 500)]
    batching_window_ms: u64,
    /// Where fetch-quotes gets quotes: a seeded simulated market, or the Yahoo Finance chart API
    /// (needs internet; fetched live every minute).
    #[arg(long, value_enum, default_value_t = QuoteSource::Simulated)]
    provider: QuoteSource,
    /// Symbols fetch-quotes follows (Yahoo's names).
    #[arg(long, value_delimiter = ',', default_value = fetch_quotes::DEFAULT_SYMBOLS)]
    symbols: Vec<String>,
    /// Simulated trading minutes replayed from the NSE open (09:15 IST, 2024-01-01); 0 runs no
    /// quote fetcher.
    #[arg(long, default_value_t = 60)]
    market_minutes: u32,
    /// Fetch even when a symbol's market is closed.
    #[arg(long)]
    ignore_market_hours: bool,
    /// Pairs of CDR files (data and voice, 1,000 rows each) generated, uploaded to the local
    /// bucket and streamed; 0 for none.
    #[arg(long, default_value_t = 1)]
    cdr_files: u64,
    /// Port of the usage API (the curriculum's).
    #[arg(long, default_value_t = api::LOCAL_PORT)]
    api_port: u16,
    /// Port of the SFTP drop (the curriculum's); its user and password come from `SFTP_USERNAME`
    /// and `SFTP_PASSWORD` (local defaults: cdr_data / password).
    #[arg(long, default_value_t = wtc_local::sftp::DEFAULT_PORT)]
    sftp_port: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QuoteSource {
    Simulated,
    Yahoo,
}

#[tokio::main]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Install { test_tools }) => {
            let tansu = wtc_local::tools::ensure_tansu()?;
            let moto = wtc_local::tools::ensure_moto()?;
            let dynalite = wtc_local::tools::ensure_dynalite()?;
            if test_tools {
                wtc_local::tools::ensure_test_tools()?;
            }
            println!(
                "tools ready:\n  {}\n  {}\n  {}",
                tansu.display(),
                moto.display(),
                dynalite.display()
            );
            Ok(())
        }
        Some(Command::GenerateCdr { files, seed, out }) => {
            let written = wtc_local::cdr::write_files(&out, files, seed)?;
            println!(
                "wrote {} files to {}; upload them with e.g. sftp -P {} {}@127.0.0.1 <<< 'put {}/*.csv {}/'",
                thousands(written),
                out.display(),
                wtc_local::sftp::DEFAULT_PORT,
                wtc_local::sftp::DEFAULT_USER.0,
                out.display(),
                wtc_local::sftp::UPLOAD_DIR,
            );
            Ok(())
        }
        Some(Command::Replay {
            kafka_brokers,
            aws_endpoint,
            dynamodb_endpoint,
            max,
        }) => replay(kafka_brokers, aws_endpoint, dynamodb_endpoint, max).await,
        None => up(cli.up).await,
    }
}

async fn replay(
    kafka_brokers: String,
    aws_endpoint: String,
    dynamodb_endpoint: String,
    max: u64,
) -> Result<()> {
    let run_dir = std::env::temp_dir().join(format!("wtc-replay-{}", std::process::id()));
    let stack = LocalStack::start(StackOptions {
        kafka_brokers: Some(kafka_brokers),
        aws_endpoint: Some(aws_endpoint),
        dynamodb_endpoint: Some(dynamodb_endpoint),
        run_dir,
        ..StackOptions::isolated(std::path::PathBuf::new())
    })
    .await?;
    let names = Names::default();
    let sdk = stack.sdk_config().await;
    let provisioned = provision_ticks(&stack.kafka_brokers, &sdk, &names).await?;
    let functions = wtc_local::replay::functions(&stack.kafka_brokers, &sdk, &names, &provisioned)?;
    let queue = wtc_local::provision::dead_letter_queue(&sdk, &names, &provisioned);
    println!("replaying dead letters from {}", queue.url());
    let report = wtc_local::replay::replay(&queue, &functions, max).await?;
    println!("{}", wtc_local::replay::summary(&report));
    Ok(())
}

async fn up(args: UpArgs) -> Result<()> {
    let run_dir = std::env::temp_dir().join(format!("wtc-local-{}", std::process::id()));
    let stack = LocalStack::start(StackOptions {
        kafka_brokers: args.kafka_brokers.clone(),
        aws_endpoint: args.aws_endpoint.clone(),
        dynamodb_endpoint: args.dynamodb_endpoint.clone(),
        dynamodb: args.dynamodb_emulator,
        kafka_port: args.kafka_port,
        aws_port: args.aws_port,
        dynamodb_port: args.dynamodb_port,
        kafka_advertised_port: None,
        docker: args.docker,
        run_dir: run_dir.clone(),
    })
    .await?;
    let result = run(&args, &stack).await;
    println!("stopping...");
    let started: Vec<&'static str> = stack.started().iter().map(|(n, _)| *n).collect();
    stack.stop().await;
    if !started.is_empty() {
        println!("stopped {}", started.join(", "));
    }
    result
}

async fn run(args: &UpArgs, stack: &LocalStack) -> Result<()> {
    println!("Kafka brokers: {}", stack.kafka_brokers);
    println!("AWS endpoint:  {}", stack.aws_endpoint);
    if stack.dynamodb_endpoint != stack.aws_endpoint {
        println!("DynamoDB:      {}", stack.dynamodb_endpoint);
    }
    for (name, log) in stack.started() {
        println!("started {name} (log: {})", log.display());
    }
    let names = Names::default();
    let sdk = stack.sdk_config().await;
    let provisioned = provision_ticks(&stack.kafka_brokers, &sdk, &names).await?;
    println!(
        "topic {} (12 partitions), stream {}, tables {}, {}, {} and {}, dead-letter queue {}",
        names.tick_topic,
        names.tick_stream,
        names.ticks_table,
        names.rates_table,
        names.candles_table,
        names.indicator_state_table,
        provisioned.dead_letter_queue_url
    );

    let function = process_ticks(&sdk, &names, &provisioned);
    let dead_letters = function.dead_letters.clone();
    let dead_letters_for_usage = function.dead_letters.clone();
    let store = function.store.clone();
    let candles = function.candles.clone();
    let invoker = match &args.invoke_url {
        Some(url) => {
            println!("invoking process-ticks over HTTP at {url}");
            Invoker::http(url, process_ticks::FUNCTION)
        }
        None => Invoker::InProcess(Arc::new(function.clone())),
    };
    let poller = KafkaPoller::new(
        PollerOptions {
            brokers: stack.kafka_brokers.clone(),
            topic: names.tick_topic.clone(),
            group_id: process_ticks::FUNCTION.to_owned(),
            batch_size: args.batch_size,
            batching_window: Duration::from_millis(args.batching_window_ms),
            maximum_retry_attempts: 3,
        },
        invoker,
        dead_letters,
    )?;

    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let generator = if args.external_producer {
        println!(
            "waiting for an external producer on topic {} at {}",
            names.tick_topic, stack.kafka_brokers
        );
        None
    } else {
        let count = if args.full {
            FULL_RUN_TICKS
        } else {
            args.ticks
        };
        println!("generating {} ticks (seed {})", thousands(count), args.seed);
        let producer = tick_producer(&stack.kafka_brokers, &names.tick_topic)?;
        let progress = progress.clone();
        let seed = args.seed;
        Some(tokio::spawn(async move {
            let result = produce_ticks(
                &producer,
                ForexSimulator::new(seed).take(count as usize),
                &progress,
            )
            .await;
            progress.generator_done.store(true, Ordering::Relaxed);
            result
        }))
    };
    let market = start_market(args, &stack.kafka_brokers, &names, &progress, &stop)?;
    let usage = start_usage(
        args,
        stack,
        &sdk,
        &names,
        &dead_letters_for_usage,
        &progress,
        &stop,
    )
    .await?;
    let producers = tokio::spawn(async move {
        if let Some(market) = market {
            market.await.context("the quote fetcher panicked")??;
        }
        usage.drop.await.context("the CDR uploader panicked")??;
        Ok::<(), anyhow::Error>(())
    });
    if !args.exit_when_done {
        println!("press Ctrl-C to stop");
    }

    let poll_task = {
        let (progress, stop) = (progress.clone(), stop.clone());
        tokio::spawn(async move { poller.run(&progress, &stop).await })
    };
    let report_task = {
        let (progress, stop) = (progress.clone(), stop.clone());
        tokio::spawn(async move { report_every(&progress, Duration::from_secs(1), &stop).await })
    };

    let outcome = wait(args, &progress, generator, Some(producers), &poll_task).await;
    stop.store(true, Ordering::Relaxed);
    let poll_result = poll_task.await.context("the poller panicked")?;
    for poller in usage.pollers {
        poller.await.context("a CDR poller panicked")??;
    }
    let _ = report_task.await;

    let s = progress.snapshot();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "summary: produced {} | processed {} | stored {} | duplicates {} | rejected {} | failed {} | bars {} \
         | candles closed {} | {} batches in {:.1}s ({}/s)",
        thousands(s.produced),
        thousands(s.processed),
        thousands(s.stored),
        thousands(s.duplicates),
        thousands(s.rejected),
        thousands(s.failed),
        thousands(s.bars),
        thousands(s.candles_closed),
        thousands(s.batches),
        secs,
        thousands((s.processed as f64 / secs.max(1e-3)) as u64),
    );
    if args.invoke_url.is_none() && s.processed > 0 {
        println!("{}", store.request_counts().per_thousand(s.processed));
        println!("{}", candles.request_counts().per_thousand(s.processed));
    }
    if s.processed > 0 {
        let mut symbols: Vec<String> = wtc_core::simulate::PAIRS
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        if args.market_minutes > 0 || args.provider == QuoteSource::Yahoo {
            symbols.extend(args.symbols.iter().cloned());
        }
        match candle_table(&candles, &symbols).await {
            Ok(table) => print!("{table}"),
            Err(e) => println!("reading the candles back failed: {e:#}"),
        }
    }
    println!(
        "usage: {} CDR files streamed ({} rows, {} records, {} rejected) | {} rows added to usage \
         totals with {} HVS writes ({} per 1,000 rows) | the API serves on http://127.0.0.1:{} \
         (dashboard: /dashboard, docs: /docs)",
        thousands(s.cdr_files),
        thousands(s.cdr_rows),
        thousands(s.cdr_records),
        thousands(s.cdr_rejected),
        thousands(s.usage_rows),
        thousands(s.usage_writes),
        thousands(
            (s.usage_writes * 1000)
                .checked_div(s.usage_rows)
                .unwrap_or(0)
        ),
        args.api_port
    );
    if let Some(example) = usage.example.lock().ok().and_then(|e| e.clone()) {
        println!("try: {example}");
    }
    usage.api.abort();
    usage.sftp.stop();
    // Its producer goes before the broker does (else it reports the broker gone).
    usage.streamer.abort();
    let _ = usage.streamer.await;
    outcome?;
    poll_result
}

/// Starts fetch-quotes in this process: a simulated session replayed at once, or live fetches
/// from Yahoo every minute. `None` when there is nothing to fetch.
fn start_market(
    args: &UpArgs,
    brokers: &str,
    names: &Names,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<tokio::task::JoinHandle<Result<()>>>> {
    let provider = match args.provider {
        QuoteSource::Simulated if args.market_minutes == 0 => return Ok(None),
        QuoteSource::Simulated => Provider::Simulated(SimulatedMarket::new(args.seed)),
        QuoteSource::Yahoo => Provider::Yahoo(
            YahooProvider::new(yahoo::DEFAULT_BASE_URL, Duration::from_secs(5))
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let fetch = FetchQuotes {
        provider,
        publisher: Publisher::Kafka(tick_producer(brokers, &names.tick_topic)?),
        symbols: args.symbols.clone(),
        lookback: Duration::from_secs(if args.provider == QuoteSource::Yahoo {
            300
        } else {
            60
        }),
        ignore_market_hours: args.ignore_market_hours,
    };
    let (progress, stop) = (progress.clone(), stop.clone());
    let (simulated, minutes, once) = (
        args.provider == QuoteSource::Simulated,
        args.market_minutes,
        args.exit_when_done,
    );
    if simulated {
        println!(
            "fetch-quotes: {} on a simulated market, {minutes} trading minutes from 2024-01-01 09:15 IST",
            args.symbols.join(", ")
        );
    } else {
        println!(
            "fetch-quotes: {} from Yahoo Finance, every minute",
            args.symbols.join(", ")
        );
    }
    Ok(Some(tokio::spawn(async move {
        if simulated {
            replay_session(&fetch, minutes, &progress).await.map(|_| ())
        } else {
            fetch_live(&fetch, &progress, &stop, once).await
        }
    })))
}

/// The CDR side of a run, started.
struct UsageSide {
    /// Uploads and streams the files; done when all are published.
    drop: tokio::task::JoinHandle<Result<()>>,
    /// One aggregate-usage poller per CDR topic.
    pollers: Vec<tokio::task::JoinHandle<Result<()>>>,
    api: tokio::task::JoinHandle<()>,
    sftp: wtc_local::sftp::SftpDrop,
    /// Streams what the SFTP drop stores; holds a producer until it is stopped.
    streamer: tokio::task::JoinHandle<()>,
    /// A `curl` request for usage that the run produces.
    example: Arc<std::sync::Mutex<Option<String>>>,
}

/// Provisions the CDR topics and bucket, serves the API, starts a poller per CDR topic feeding
/// aggregate-usage, and uploads the generated files (streaming each as S3 would trigger it).
async fn start_usage(
    args: &UpArgs,
    stack: &LocalStack,
    sdk: &aws_config::SdkConfig,
    names: &Names,
    dead_letters: &wtc_aws::DeadLetterQueue,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> Result<UsageSide> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let s3 = s3_client(sdk);
    provision_cdr(&stack.kafka_brokers, &s3).await?;
    let (user, password) = (
        std::env::var("API_USERNAME").unwrap_or_else(|_| LOCAL_API_USER.0.to_owned()),
        std::env::var("API_PASSWORD").unwrap_or_else(|_| LOCAL_API_USER.1.to_owned()),
    );
    let usage_store = wtc_aws::UsageStore::new(dynamo.clone(), names.usage_table.clone());
    let api = serve_api(
        Arc::new(wtc_local::provision::api_state(
            sdk,
            names,
            api::Credentials {
                username: user.clone(),
                password: password.clone(),
            },
            api::ApiSettings::from_env()?,
        )),
        args.api_port,
    )
    .await?;
    let base = format!("http://127.0.0.1:{}", args.api_port);
    println!(
        "API on {base} (usage needs user {user}; API_USERNAME / API_PASSWORD set others): \
         dashboard {base}/dashboard, docs {base}/docs, e.g. curl '{base}/latest_price?symbol=MRVZAR'"
    );
    {
        let (progress, port) = (progress.clone(), args.api_port);
        tokio::spawn(async move {
            match wait_ready(port, Duration::from_secs(30)).await {
                Ok(()) => progress.api_ready.store(true, Ordering::Relaxed),
                Err(e) => wtc_local::progress::say(&format!("the API is not answering: {e:#}")),
            }
        });
    }
    let aggregate = Arc::new(aggregate_usage::AggregateUsage::new(
        usage_store,
        dead_letters.clone(),
    ));
    let mut pollers = Vec::new();
    for kind in ["data", "voice"] {
        let poller = KafkaPoller::new(
            PollerOptions {
                brokers: stack.kafka_brokers.clone(),
                topic: format!("cdr-{kind}"),
                group_id: format!("aggregate-usage-{kind}"),
                batch_size: args.batch_size,
                batching_window: Duration::from_millis(args.batching_window_ms),
                maximum_retry_attempts: 3,
            },
            Invoker::Usage(aggregate.clone()),
            dead_letters.clone(),
        )?;
        let (progress, stop) = (progress.clone(), stop.clone());
        pollers.push(tokio::spawn(
            async move { poller.run(&progress, &stop).await },
        ));
    }
    let function = stream_cdr_files::StreamCdrFiles::new(
        s3.clone(),
        wtc_aws::publish::Publisher::Kafka(tick_producer(&stack.kafka_brokers, "cdr-data")?),
        dead_letters.clone(),
    );
    let (sftp, streamer) = start_sftp(args, stack, s3, &function, progress).await?;
    let example = Arc::new(std::sync::Mutex::new(None));
    let (pairs, seed, port) = (args.cdr_files, args.seed, args.api_port);
    if pairs > 0 {
        println!(
            "CDR files: {} pairs of 1,000-row files into s3://{BUCKET}/upload/, streamed by stream-cdr-files",
            thousands(pairs)
        );
    }
    let (progress, shown) = (progress.clone(), example.clone());
    let drop = tokio::spawn(async move {
        if let Some((msisdn, at)) = drop_files(&function, pairs, seed, &progress).await? {
            let day: String = at.chars().filter(char::is_ascii_digit).take(8).collect();
            let line = format!(
                "curl -u {user}:{password} 'http://127.0.0.1:{port}/data_usage?msisdn={msisdn}&start_time={day}000000&end_time={day}235959'"
            );
            println!("usage API example: {line}");
            if let Ok(mut slot) = shown.lock() {
                *slot = Some(line);
            }
        }
        Ok(())
    });
    Ok(UsageSide {
        drop,
        pollers,
        api,
        sftp,
        streamer,
        example,
    })
}

/// Serves the SFTP drop: uploads land in the local bucket under `upload/` and are streamed by
/// stream-cdr-files as the bucket's notification would have them.
async fn start_sftp(
    args: &UpArgs,
    stack: &LocalStack,
    s3: aws_sdk_s3::Client,
    function: &stream_cdr_files::StreamCdrFiles,
    progress: &Arc<Progress>,
) -> Result<(wtc_local::sftp::SftpDrop, tokio::task::JoinHandle<()>)> {
    use wtc_local::sftp::{DEFAULT_USER, DropTarget, SftpDrop, SftpOptions, UPLOAD_DIR};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let username = std::env::var("SFTP_USERNAME").unwrap_or_else(|_| DEFAULT_USER.0.to_owned());
    let password = std::env::var("SFTP_PASSWORD").unwrap_or_else(|_| DEFAULT_USER.1.to_owned());
    let sftp = SftpDrop::start(
        SftpOptions {
            port: args.sftp_port,
            username: username.clone(),
            password,
            host_key_path: wtc_local::tools::tools_dir().join("sftp/host_ed25519_key"),
        },
        DropTarget {
            s3,
            bucket: BUCKET.to_owned(),
            spool_dir: stack.run_dir.join("sftp-spool"),
            uploaded: tx,
        },
    )
    .await?;
    let streamer = tokio::spawn(stream_uploads(
        Arc::new(function.clone()),
        rx,
        progress.clone(),
    ));
    println!(
        "SFTP drop on sftp://{username}@127.0.0.1:{}/{UPLOAD_DIR} (host key {}; SFTP_USERNAME / \
         SFTP_PASSWORD set others); uploads are streamed as they close, e.g. \
         sftp -P {} {username}@127.0.0.1 <<< 'put cdr_data_20240101_000320.csv {UPLOAD_DIR}/'",
        sftp.address.port(),
        sftp.fingerprint,
        sftp.address.port(),
    );
    Ok((sftp, streamer))
}

/// Waits for Ctrl-C (or SIGTERM), a failed generator or poller, or, with --exit-when-done, the end
/// of the work.
async fn wait(
    args: &UpArgs,
    progress: &Progress,
    mut generator: Option<tokio::task::JoinHandle<Result<u64>>>,
    mut market: Option<tokio::task::JoinHandle<Result<()>>>,
    poller: &tokio::task::JoinHandle<Result<()>>,
) -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_processed = 0;
    let mut idle_since = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        if poller.is_finished() {
            // It only stops by itself on an error, which the caller reports.
            return Ok(());
        }
        if let Some(handle) = &mut generator
            && handle.is_finished()
        {
            let result = handle.await.context("the generator panicked")?;
            generator = None;
            let sent = result.context("the generator failed")?;
            println!(
                "generator done: {} ticks acknowledged by the broker",
                thousands(sent)
            );
        }
        if let Some(handle) = &mut market
            && handle.is_finished()
        {
            let result = handle.await.context("the quote fetcher panicked")?;
            market = None;
            result.context("the quote fetcher failed")?;
            progress.market_done.store(true, Ordering::Relaxed);
        }
        if !args.exit_when_done {
            continue;
        }
        let s = progress.snapshot();
        if s.processed != last_processed {
            last_processed = s.processed;
            idle_since = Instant::now();
        }
        let done = if args.external_producer {
            s.processed > 0 && idle_since.elapsed() >= Duration::from_secs(args.idle_secs)
        } else {
            generator.is_none()
                && market.is_none()
                && progress.generator_done.load(Ordering::Relaxed)
                && s.processed >= s.produced
        };
        if done {
            return Ok(());
        }
    }
}
