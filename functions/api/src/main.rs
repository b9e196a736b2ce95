use api::{ApiState, Credentials, LOCAL_PORT, router};
use std::sync::Arc;
use wtc_aws::{ConfigError, TickStore, UsageStore, required_env};

/// Credentials from Secrets Manager (`API_CREDENTIALS_SECRET_ARN`, a secret holding
/// `{"username": ..., "password": ...}`) in AWS, else from `API_USERNAME` / `API_PASSWORD`.
async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, ConfigError> {
    if let Ok(arn) = std::env::var("API_CREDENTIALS_SECRET_ARN") {
        let invalid = |reason: String| ConfigError::Invalid {
            name: "API_CREDENTIALS_SECRET_ARN",
            reason,
        };
        let secret = aws_sdk_secretsmanager::Client::new(sdk)
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| {
                invalid(format!(
                    "reading the secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        let value: serde_json::Value =
            serde_json::from_str(secret.secret_string().unwrap_or_default())
                .map_err(|e| invalid(format!("the secret is not JSON: {e}")))?;
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        return match (field("username"), field("password")) {
            (Some(username), Some(password)) => Ok(Credentials { username, password }),
            _ => Err(invalid(
                "the secret must hold {\"username\": ..., \"password\": ...}".into(),
            )),
        };
    }
    Ok(Credentials {
        username: required_env(
            "API_USERNAME",
            "the API's user (or set API_CREDENTIALS_SECRET_ARN)",
        )?,
        password: required_env(
            "API_PASSWORD",
            "the API's password (or set API_CREDENTIALS_SECRET_ARN)",
        )?,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wtc_aws::config::init_tracing();
    let usage = required_env("USAGE_TABLE", "the DynamoDB table of hourly usage")?;
    let rates = required_env("RATES_TABLE", "the DynamoDB table of forex rates")?;
    let sdk = wtc_aws::load_sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let state = Arc::new(ApiState {
        usage: UsageStore::new(dynamo.clone(), usage),
        rates: TickStore::new(dynamo, String::new(), rates),
        credentials: credentials(&sdk).await?,
    });
    let app = router(state);
    if std::env::var("AWS_LAMBDA_RUNTIME_API").is_ok() {
        return lambda_http::run(app).await;
    }
    let port = std::env::var("API_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(LOCAL_PORT);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("serving the API on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
