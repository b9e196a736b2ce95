use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use process_ticks::{ProcessTicks, init_tracing};
use wtc_core::SourceEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let function = ProcessTicks::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SourceEvent>| {
        let function = &function;
        async move {
            let result = function.handle(&event.payload).await;
            // errorType names the kind of failure (TransientFailure, DeploymentError).
            result.finish().map_err(|e| Diagnostic {
                error_type: e.error_type().into(),
                error_message: e.to_string(),
            })
        }
    }))
    .await
}
