use api::{ApiSettings, ApiState, Credentials, LOCAL_PORT, router};
use std::sync::Arc;
use wtc_aws::{CandleStore, ConfigError, TickStore, UsageStore, required_env};

/// Credentials from Secrets Manager (`API_CREDENTIALS_SECRET_ARN`, a secret holding
/// `{"username": ..., "password": ...}`) in AWS, else from `API_USERNAME` / `API_PASSWORD`.
async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, ConfigError> {
    if let Ok(arn) = std::env::var("API_CREDENTIALS_SECRET_ARN") {
        let (username, password) =
            wtc_aws::config::username_password(sdk, &arn, "API_CREDENTIALS_SECRET_ARN").await?;
        return Ok(Credentials { username, password });
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
    let candles = required_env(
        "CANDLES_TABLE",
        "the DynamoDB table of candles and latest prices",
    )?;
    let settings = ApiSettings::from_env()?;
    let sdk = wtc_aws::load_sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let state = Arc::new(ApiState::new(
        UsageStore::new(dynamo.clone(), usage),
        TickStore::new(dynamo.clone(), String::new(), rates),
        // Read only: the state table is never touched by the API.
        CandleStore::new(dynamo, candles, String::new()),
        credentials(&sdk).await?,
        settings,
    ));
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
