use fetch_quotes::{FetchQuotes, run_time};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    wtc_aws::config::init_tracing();
    let function = FetchQuotes::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let function = &function;
        async move {
            let now = run_time(&event.payload)?;
            let report = function.run(now).await?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            println!("{}", report.metrics_line(now_ms));
            Ok::<_, Error>(serde_json::to_value(&report)?)
        }
    }))
    .await
}
