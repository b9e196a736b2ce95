//! One configuration loader: SDK settings from the standard AWS environment, names from ours.

use aws_config::{BehaviorVersion, SdkConfig};

/// A required setting is missing.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} is not set: {hint}")]
pub struct ConfigError {
    pub name: &'static str,
    pub hint: &'static str,
}

/// Loads region, credentials and endpoint (`AWS_ENDPOINT_URL`) the way every AWS tool does.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Reads a required environment variable, naming it and what it should hold when it is absent.
pub fn required_env(name: &'static str, hint: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError { name, hint }),
    }
}
