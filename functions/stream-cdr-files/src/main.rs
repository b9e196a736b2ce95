use lambda_runtime::{Error, LambdaEvent, service_fn};
use stream_cdr_files::{S3Event, StreamCdrFiles};

#[tokio::main]
async fn main() -> Result<(), Error> {
    wtc_aws::config::init_tracing();
    let function = StreamCdrFiles::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        let function = &function;
        async move {
            let reports = function.handle(&event.payload).await?;
            for r in &reports {
                tracing::info!(file = %r.file, rows = r.rows, published = r.published, rejected = r.rejected, "file streamed");
            }
            Ok::<_, Error>(serde_json::to_value(&reports)?)
        }
    }))
    .await
}
