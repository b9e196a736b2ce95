//! The local stack: a Kafka-protocol broker and an AWS-API endpoint, started here or given.

use crate::services::{Service, ensure_port_free, free_port, start_moto, start_tansu};
use crate::tools::{ensure_moto, ensure_tansu};
use anyhow::{Context, Result, bail};
use aws_config::{Region, SdkConfig};
use std::path::{Path, PathBuf};

/// Where the broker and the AWS endpoint come from.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Use this broker instead of starting tansu (`KAFKA_BROKERS`).
    pub kafka_brokers: Option<String>,
    /// Use this endpoint instead of starting moto (`AWS_ENDPOINT_URL`).
    pub aws_endpoint: Option<String>,
    /// Ports for what we start; 0 picks a free one.
    pub kafka_port: u16,
    pub aws_port: u16,
    /// The port tansu tells clients to use, when it is not its own: a proxy in front of it.
    pub kafka_advertised_port: Option<u16>,
    /// Start Redpanda, its console and moto's server image from `local/docker-compose.yml`.
    pub docker: bool,
    /// Logs of started processes go here.
    pub run_dir: PathBuf,
}

impl StackOptions {
    /// Everything started here on free loopback ports, as tests want it.
    pub fn isolated(run_dir: PathBuf) -> Self {
        Self {
            kafka_brokers: None,
            aws_endpoint: None,
            kafka_port: 0,
            aws_port: 0,
            kafka_advertised_port: None,
            docker: false,
            run_dir,
        }
    }
}

pub struct LocalStack {
    pub kafka_brokers: String,
    pub aws_endpoint: String,
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
        Ok(stack)
    }

    /// SDK settings for the local endpoint: region and credentials from the environment when set,
    /// else `us-east-1` and the documented local placeholders (`test` / `test`).
    pub async fn sdk_config(&self) -> SdkConfig {
        local_sdk_config(&self.aws_endpoint).await
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

/// SDK settings for an emulator endpoint (see `LocalStack::sdk_config`).
pub async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let mut loader = wtc_aws::config::sdk_loader()
        .region(Region::new(region))
        .endpoint_url(endpoint);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "wtc-local",
        ));
    }
    loader.load().await
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
