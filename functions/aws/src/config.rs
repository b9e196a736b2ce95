//! One configuration loader: SDK settings from the standard AWS environment, names from ours.

use aws_config::{BehaviorVersion, SdkConfig};

/// A setting is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Region, credentials and endpoint (`AWS_ENDPOINT_URL`) from the environment, the way every AWS
/// tool reads them, with the SDK's own retries off (the stores retry, once, in `retry`) and
/// timeouts, so that a hung connection fails an attempt instead of the whole invocation.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(3))
                .operation_attempt_timeout(std::time::Duration::from_secs(10))
                .build(),
        )
}

/// The SDK settings every function's clients are built from (see `sdk_loader`).
pub async fn load_sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// Reads a required environment variable, naming it and what it should hold when it is absent.
pub fn required_env(name: &'static str, hint: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing { name, hint }),
    }
}

/// Logs as JSON in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`), as text elsewhere; `RUST_LOG` filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time();
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The `{"username": ..., "password": ...}` held in a Secrets Manager secret. `setting` names the
/// environment variable that gave the ARN, for the error.
pub async fn username_password(
    sdk: &SdkConfig,
    arn: &str,
    setting: &'static str,
) -> Result<(String, String), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: setting,
        reason,
    };
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "reading the secret: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    #[derive(serde::Deserialize)]
    struct Credentials {
        username: String,
        password: String,
    }
    let c: Credentials =
        serde_json::from_str(secret.secret_string().unwrap_or_default()).map_err(|e| {
            invalid(format!(
                "the secret must hold {{\"username\": ..., \"password\": ...}}: {e}"
            ))
        })?;
    Ok((c.username, c.password))
}

/// An S3 client: path-style addressing, which S3 takes everywhere and emulators need.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}
