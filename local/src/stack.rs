//! The local stack: a Kafka-protocol broker, an AWS-API endpoint and a DynamoDB endpoint (the
//! same one, or an emulator of its own), started here or given.

use crate::services::{
    Service, ensure_port_free, free_port, start_dynalite, start_moto, start_tansu,
};
use crate::tools::{ensure_dynalite, ensure_moto, ensure_tansu};
use anyhow::{Context, Result, bail};
use aws_config::{Region, SdkConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::path::{Path, PathBuf};

/// Which emulator serves DynamoDB when the stack starts its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DynamoEmulator {
    /// dynalite (npm, LevelDB in memory): queries from an index, the fastest here.
    #[default]
    Dynalite,
    /// moto's server, which also serves Kinesis, S3 and SQS (it walks whole tables on queries).
    Moto,
}

impl DynamoEmulator {
    /// `WTC_DYNAMODB_EMULATOR` (`dynalite` or `moto`), else the default.
    pub fn from_env() -> Result<Self> {
        match std::env::var("WTC_DYNAMODB_EMULATOR") {
            Err(_) => Ok(Self::default()),
            Ok(v) if v.is_empty() => Ok(Self::default()),
            Ok(v) => <Self as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
                anyhow::anyhow!("WTC_DYNAMODB_EMULATOR is {v:?}: use `dynalite` or `moto`")
            }),
        }
    }
}

/// Where the broker and the AWS endpoint come from.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Use this broker instead of starting tansu (`KAFKA_BROKERS`).
    pub kafka_brokers: Option<String>,
    /// Use this endpoint instead of starting moto (`AWS_ENDPOINT_URL`).
    pub aws_endpoint: Option<String>,
    /// Use this DynamoDB endpoint (`AWS_ENDPOINT_URL_DYNAMODB`); without it, DynamoDB is served
    /// by `aws_endpoint` when that is given, else by the emulator `dynamodb` names.
    pub dynamodb_endpoint: Option<String>,
    pub dynamodb: DynamoEmulator,
    /// Ports for what we start; 0 picks a free one.
    pub kafka_port: u16,
    pub aws_port: u16,
    pub dynamodb_port: u16,
    /// The port tansu tells clients to use, when it is not its own: a proxy in front of it.
    pub kafka_advertised_port: Option<u16>,
    /// Start Redpanda, its console and moto's server image from `local/docker-compose.yml`.
    pub docker: bool,
    /// Logs of started processes go here.
    pub run_dir: PathBuf,
}

impl StackOptions {
    /// Everything started here on free loopback ports, as tests want it; DynamoDB on the
    /// emulator `WTC_DYNAMODB_EMULATOR` names (the default when unset or unusable).
    pub fn isolated(run_dir: PathBuf) -> Self {
        Self {
            kafka_brokers: None,
            aws_endpoint: None,
            dynamodb_endpoint: None,
            dynamodb: DynamoEmulator::from_env().unwrap_or_default(),
            kafka_port: 0,
            aws_port: 0,
            dynamodb_port: 0,
            kafka_advertised_port: None,
            docker: false,
            run_dir,
        }
    }
}

pub struct LocalStack {
    pub kafka_brokers: String,
    pub aws_endpoint: String,
    /// Where DynamoDB is served: `aws_endpoint`, or an emulator of its own.
    pub dynamodb_endpoint: String,
    pub run_dir: PathBuf,
    services: Vec<Service>,
    compose_file: Option<PathBuf>,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.run_dir)?;
        let mut stack = Self {
            kafka_brokers: String::new(),
            aws_endpoint: String::new(),
            dynamodb_endpoint: String::new(),
            run_dir: options.run_dir.clone(),
            services: Vec::new(),
            compose_file: None,
        };
        // Containers only for what is not given: both given, nothing to start.
        if options.docker && (options.kafka_brokers.is_none() || options.aws_endpoint.is_none()) {
            let compose = compose_file()?;
            if let Err(e) = docker_compose(&compose, &["up", "-d", "--wait"]) {
                // Take down whatever did start.
                let _ = docker_compose(&compose, &["down"]);
                return Err(e);
            }
            stack.compose_file = Some(compose);
        }
        stack.kafka_brokers = match (&options.kafka_brokers, options.docker) {
            (Some(brokers), _) => brokers.clone(),
            (None, true) => "127.0.0.1:19092".to_owned(),
            (None, false) => {
                let bin = ensure_tansu()?;
                let port = pick_port(
                    options.kafka_port,
                    "the Kafka broker",
                    "stop what uses it, or set KAFKA_BROKERS to use that broker",
                )?;
                let advertised = options.kafka_advertised_port.unwrap_or(port);
                let service = start_tansu(&bin, port, advertised, &options.run_dir).await?;
                stack.services.push(service);
                format!("127.0.0.1:{port}")
            }
        };
        stack.aws_endpoint = match (&options.aws_endpoint, options.docker) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, true) => "http://127.0.0.1:4566".to_owned(),
            (None, false) => {
                let bin = ensure_moto()?;
                let port = pick_port(
                    options.aws_port,
                    "the AWS emulator",
                    "stop what uses it, or set AWS_ENDPOINT_URL to use that endpoint",
                )?;
                let service = start_moto(&bin, port, &options.run_dir).await?;
                stack.services.push(service);
                format!("http://127.0.0.1:{port}")
            }
        };
        let own_emulator = options.dynamodb_endpoint.is_none()
            && options.aws_endpoint.is_none()
            && !options.docker
            && options.dynamodb == DynamoEmulator::Dynalite;
        stack.dynamodb_endpoint = match &options.dynamodb_endpoint {
            Some(endpoint) => endpoint.clone(),
            None if own_emulator => {
                let bin = ensure_dynalite()?;
                let port = pick_port(
                    options.dynamodb_port,
                    "the DynamoDB emulator",
                    "stop what uses it, or set AWS_ENDPOINT_URL_DYNAMODB to use that endpoint",
                )?;
                let service = start_dynalite(&bin, port, &options.run_dir).await?;
                stack.services.push(service);
                format!("http://127.0.0.1:{port}")
            }
            None => stack.aws_endpoint.clone(),
        };
        Ok(stack)
    }

    /// SDK settings for the local endpoints: region and credentials from the environment when
    /// set, else `us-east-1` and the documented local placeholders (`test` / `test`).
    pub async fn sdk_config(&self) -> SdkConfig {
        local_sdk_config(&self.aws_endpoint, &self.dynamodb_endpoint).await
    }

    /// Names and logs of what this stack started.
    pub fn started(&self) -> Vec<(&'static str, &Path)> {
        self.services
            .iter()
            .map(|s| (s.name, s.log.as_path()))
            .collect()
    }

    /// Stops everything this stack started.
    pub async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
        if let Some(compose) = self.compose_file
            && let Err(e) = docker_compose(&compose, &["down"])
        {
            eprintln!("warning: {e:#}");
        }
    }
}

/// SDK settings for emulator endpoints: every service at `endpoint`, DynamoDB at `dynamodb` (see
/// `LocalStack::sdk_config`).
pub async fn local_sdk_config(endpoint: &str, dynamodb: &str) -> SdkConfig {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut loader = wtc_aws::config::sdk_loader().region(Region::new(region));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "wtc-local",
        ));
    }
    // Set on the settings, not the loader: an endpoint given to the loader would override the
    // service's own, which is how a client built from these settings finds DynamoDB's.
    loader
        .load()
        .await
        .into_builder()
        .endpoint_url(endpoint)
        .service_config(DynamoDbEndpoint(dynamodb.to_owned()))
        .build()
}

/// Answers the SDK's question "which endpoint for DynamoDB?" (`AWS_ENDPOINT_URL_DYNAMODB`).
#[derive(Debug)]
struct DynamoDbEndpoint(String);

impl LoadServiceConfig for DynamoDbEndpoint {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        (key.service_id() == "DynamoDB" && key.env() == "AWS_ENDPOINT_URL").then(|| self.0.clone())
    }
}

fn pick_port(port: u16, what: &str, hint: &str) -> Result<u16> {
    if port == 0 {
        return free_port();
    }
    ensure_port_free(port, what, hint)?;
    Ok(port)
}

fn compose_file() -> Result<PathBuf> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml");
    if !file.exists() {
        bail!("{} is missing", file.display());
    }
    Ok(file)
}

fn docker_compose(file: &Path, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("docker")
        .arg("compose")
        .arg("-f")
        .arg(file)
        .args(args)
        .status()
        .context("running `docker compose` (is Docker installed and its engine running?)")?;
    if !status.success() {
        bail!("`docker compose {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
