use aggregate_usage::AggregateUsage;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use wtc_core::SourceEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wtc_aws::config::init_tracing();
    let function = AggregateUsage::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SourceEvent>| {
        let function = &function;
        async move {
            let result = function.handle(&event.payload).await;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            println!("{}", result.metrics_line(now_ms));
            Ok::<_, Error>(result.response()?)
        }
    }))
    .await
}
