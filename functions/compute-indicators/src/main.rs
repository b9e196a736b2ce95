use compute_indicators::ComputeIndicators;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    wtc_aws::config::init_tracing();
    let function = ComputeIndicators::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let function = &function;
        async move {
            let outcomes = function
                .handle(&event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_type().into(),
                    error_message: e.to_string(),
                })?;
            serde_json::to_value(&outcomes).map_err(|e| Diagnostic {
                error_type: "ResponseNotSerializable".into(),
                error_message: e.to_string(),
            })
        }
    }))
    .await
}
