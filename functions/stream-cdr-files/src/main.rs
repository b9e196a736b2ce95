use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use stream_cdr_files::{FileEvent, StreamCdrFiles};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wtc_aws::config::init_tracing();
    let function = StreamCdrFiles::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<FileEvent>| {
        let function = &function;
        async move {
            let (response, reports) = match &event.payload {
                FileEvent::Sqs(sqs) => {
                    let (response, reports) = function.handle_sqs(sqs).await;
                    (serde_json::to_value(&response), reports)
                }
                FileEvent::S3(s3) => {
                    let reports = function.handle(s3).await.map_err(|e| Diagnostic {
                        error_type: e.kind().error_type().into(),
                        error_message: e.to_string(),
                    })?;
                    (serde_json::to_value(&reports), reports)
                }
            };
            for r in &reports {
                tracing::info!(file = %r.file, rows = r.rows, published = r.published, rejected = r.rejected, "file streamed");
            }
            response.map_err(|e| Diagnostic {
                error_type: "ResponseNotSerializable".into(),
                error_message: e.to_string(),
            })
        }
    }))
    .await
}
