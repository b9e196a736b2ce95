//! The AWS side of the functions: where records are stored and where rejected ones go.
//!
//! Every client honours `AWS_ENDPOINT_URL`, so one binary talks to AWS, LocalStack or moto.

pub mod candles;
pub mod config;
pub mod dead_letters;
pub mod error;
pub mod latest;
#[cfg(feature = "kafka")]
pub mod msk_iam;
pub mod publish;
pub mod retry;
pub mod schema;
pub mod ticks;
pub mod usage;

pub use candles::{CandleOutcome, CandleStore};
pub use config::{ConfigError, load_sdk_config, required_env, s3_client};
pub use dead_letters::DeadLetterQueue;
pub use error::{AwsError, FailureKind, Resource};
pub use publish::{KinesisPublisher, OutRecord, PublishError};
pub use retry::RetryPolicy;
pub use ticks::{TickStore, TickWriteOutcome};
pub use usage::UsageStore;
