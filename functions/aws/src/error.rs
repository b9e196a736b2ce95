//! Errors of the AWS edges, typed by whether a retry can help (`FailureKind`).
//!
//! One classification for every service: throttling, server faults, timeouts and lost connections
//! are transient (retried with backoff, then the batch is delivered again); a missing resource,
//! denied access or refused credentials is the deployment's (the batch fails at once, with the
//! resource and the setting to check); anything else the service refuses (`ValidationException`,
//! an item or message too large) is the record's, and it is dead-lettered.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
pub use wtc_core::event::FailureKind;

/// A table, queue, stream or bucket, and the setting that names it (for deployment errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    /// The environment variable that gave the name; empty when it did not come from one.
    pub setting: &'static str,
}

impl Resource {
    pub fn new(name: impl Into<String>, setting: &'static str) -> Self {
        Self {
            name: name.into(),
            setting,
        }
    }

    /// Read from a required environment variable.
    pub fn from_env(setting: &'static str, hint: &'static str) -> Result<Self, crate::ConfigError> {
        crate::required_env(setting, hint).map(|name| Self { name, setting })
    }
}

impl From<String> for Resource {
    fn from(name: String) -> Self {
        Self { name, setting: "" }
    }
}

impl From<&str> for Resource {
    fn from(name: &str) -> Self {
        name.to_owned().into()
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Why a request to AWS did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct AwsError {
    pub kind: FailureKind,
    /// What was being done, naming the resource: `writing the ledger of MRVZAR 00:05 in wtc-rates`.
    pub what: String,
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    /// One line: the code and the service's message, and for the deployment's errors what to
    /// check.
    pub detail: String,
}

/// Codes that mean "slow down and try again" on DynamoDB, SQS, S3 and Kinesis.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "KMSThrottlingException",
];

/// Codes of server faults and conflicts that pass.
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionInProgressException",
    "TransactionConflictException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// Codes of a deployment that cannot work as it is.
const DEPLOYMENT: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "AuthFailure",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "NoSuchBucket",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NonExistentQueue",
];

/// The kind a service's error code stands for; `None` when the code is not one we know.
pub fn kind_of_code(code: &str) -> Option<FailureKind> {
    if THROTTLING.contains(&code) || TRANSIENT.contains(&code) {
        Some(FailureKind::Transient)
    } else if DEPLOYMENT.contains(&code) {
        Some(FailureKind::Deployment)
    } else {
        None
    }
}

impl AwsError {
    /// Classifies an SDK error of any service. Transport failures (timeouts, refused or reset
    /// connections, unreadable responses) are transient; a service error by its code, and an
    /// unknown code by its status: 5xx and 429 transient, other 4xx the record's.
    pub fn from_sdk<E>(error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, code, detail) = match error {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().map(str::to_owned);
                let status = service.raw().status().as_u16();
                let kind = code.as_deref().and_then(kind_of_code).unwrap_or(
                    if status >= 500 || status == 429 {
                        FailureKind::Transient
                    } else {
                        FailureKind::Rejected
                    },
                );
                let detail = format!(
                    "{}: {}",
                    code.as_deref().unwrap_or("error"),
                    e.message().unwrap_or("no message")
                );
                (kind, code, detail)
            }
            SdkError::ConstructionFailure(_) => (
                FailureKind::Rejected,
                None,
                format!(
                    "the request could not be built: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error)
                ),
            ),
            _ => (
                FailureKind::Transient,
                None,
                aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
            ),
        };
        Self {
            kind,
            what: String::new(),
            code,
            detail: wtc_core::event::one_line(&detail),
        }
    }

    /// A transient failure that is not an SDK error: items a batch call left unprocessed.
    pub fn throttled(detail: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            what: String::new(),
            code: Some("ThrottlingException".into()),
            detail: detail.into(),
        }
    }

    /// A record the service can never take, found before sending it.
    pub fn rejected(detail: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Rejected,
            what: String::new(),
            code: None,
            detail: detail.into(),
        }
    }

    /// Says what was being done, on which resource; a deployment error also says what to check.
    pub fn doing(mut self, what: impl Into<String>, resource: &Resource) -> Self {
        self.what = what.into();
        if self.kind == FailureKind::Deployment {
            let setting = if resource.setting.is_empty() {
                "the setting that names it".to_owned()
            } else {
                format!("{} (now `{}`)", resource.setting, resource.name)
            };
            self.detail = format!(
                "{}; check that `{}` exists, {setting}, and the function's permissions on it",
                self.detail, resource.name
            );
        }
        self
    }

    /// Whether the service asked to slow down.
    pub fn is_throttling(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| THROTTLING.contains(&c))
    }

    /// The batch-level view of this error.
    pub fn batch_error(&self) -> wtc_core::event::BatchError {
        wtc_core::event::BatchError::new(self.kind, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_what_a_retry_can_do() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "SlowDown",
        ] {
            assert_eq!(kind_of_code(code), Some(FailureKind::Transient), "{code}");
        }
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "AWS.SimpleQueueService.NonExistentQueue",
            "NoSuchBucket",
        ] {
            assert_eq!(kind_of_code(code), Some(FailureKind::Deployment), "{code}");
        }
        assert_eq!(kind_of_code("ValidationException"), None);
    }

    #[test]
    fn a_deployment_error_names_the_resource_and_the_setting() {
        let e = AwsError {
            kind: FailureKind::Deployment,
            what: String::new(),
            code: Some("ResourceNotFoundException".into()),
            detail: "ResourceNotFoundException: Requested resource not found".into(),
        }
        .doing(
            "writing raw ticks",
            &Resource::new("wtc-ticks-prod", "TICKS_TABLE"),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("writing raw ticks: ResourceNotFoundException"),
            "{text}"
        );
        assert!(
            text.contains("TICKS_TABLE (now `wtc-ticks-prod`)"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        let rejected = AwsError::rejected("too large").doing("x", &Resource::from("t"));
        assert_eq!(rejected.to_string(), "x: too large");
    }
}
