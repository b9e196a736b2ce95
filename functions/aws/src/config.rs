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

/// Loads region, credentials and endpoint (`AWS_ENDPOINT_URL`) the way every AWS tool does.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
