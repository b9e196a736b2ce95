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
            Ok::<_, Error>(result.finish()?)
        }
    }))
    .await
}
