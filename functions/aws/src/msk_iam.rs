//! Amazon MSK's IAM access control for producers: SASL/OAUTHBEARER tokens signed with the
//! function's AWS credentials (SigV4 for the service `kafka-cluster`, by the
//! `aws-msk-iam-sasl-signer` crate), handed to librdkafka whenever it asks for one: when the
//! producer starts, and again at 80% of each token's 15-minute life.
//!
//! librdkafka asks on the producer's polling thread, which waits for the answer; the signing
//! itself (credentials may come over HTTP) runs on the function's runtime, on a thread of its
//! own, so that the callback never blocks a runtime worker or starts a runtime inside one.

use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use rdkafka::client::{ClientContext, OAuthToken};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a token's signing may take before librdkafka is told it failed (it asks again 10 s
/// later).
const SIGNING_WITHIN: Duration = Duration::from_secs(10);

/// Why no token could be signed; librdkafka retries, so every one of them may pass.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing an MSK IAM token: {0}")]
    Signer(String),
    #[error("signing an MSK IAM token took longer than {0:?}")]
    Timeout(Duration),
    #[error("the thread signing an MSK IAM token panicked")]
    Panicked,
}

/// Signs MSK IAM tokens with one credentials provider (so its cache is reused) in one region.
#[derive(Clone)]
pub struct MskIamSigner {
    region: Region,
    credentials: SharedCredentialsProvider,
    runtime: tokio::runtime::Handle,
}

impl MskIamSigner {
    pub fn new(
        region: Region,
        credentials: SharedCredentialsProvider,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            region,
            credentials,
            runtime,
        }
    }

    /// The signer of the function's own credentials and region, on the runtime it is called on.
    pub fn from_sdk(sdk: &SdkConfig) -> Result<Self, crate::ConfigError> {
        let invalid = |reason: &str| crate::ConfigError::Invalid {
            name: "KAFKA_AUTH",
            reason: format!("msk-iam {reason}"),
        };
        let region = sdk
            .region()
            .cloned()
            .ok_or_else(|| invalid("needs a region (AWS_REGION)"))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| invalid("needs AWS credentials"))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| invalid("must be set up on the function's runtime"))?;
        Ok(Self::new(region, credentials, runtime))
    }

    /// A token and the time it expires (milliseconds since the epoch).
    pub async fn token(&self) -> Result<(String, i64), SignError> {
        aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
            self.region.clone(),
            self.credentials.clone(),
        )
        .await
        .map_err(|e| SignError::Signer(e.to_string()))
    }

    /// `token`, waited for on a thread outside the runtime.
    pub fn token_blocking(&self) -> Result<(String, i64), SignError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // The timeout is made inside the runtime: it needs the runtime's timer.
                    self.runtime.block_on(async {
                        tokio::time::timeout(SIGNING_WITHIN, self.token()).await
                    })
                })
                .join()
        })
        .map_err(|_| SignError::Panicked)?
        .map_err(|_| SignError::Timeout(SIGNING_WITHIN))?
    }
}

/// The context of every producer: with a signer, it answers librdkafka's requests for an
/// OAUTHBEARER token (`sasl.mechanism=OAUTHBEARER`); other mechanisms never ask.
#[derive(Clone, Default)]
pub struct ProducerContext {
    signer: Option<MskIamSigner>,
    tokens: Arc<AtomicU64>,
}

impl ProducerContext {
    pub fn with_signer(signer: MskIamSigner) -> Self {
        Self {
            signer: Some(signer),
            tokens: Arc::default(),
        }
    }

    /// Tokens handed to librdkafka so far.
    pub fn tokens_signed(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
}

impl ClientContext for ProducerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(signer) = &self.signer else {
            return Err(
                "sasl.mechanism OAUTHBEARER needs KAFKA_AUTH=msk-iam (no token signer)".into(),
            );
        };
        let (token, lifetime_ms) = signer.token_blocking().inspect_err(|e| {
            tracing::warn!("{e}; librdkafka asks again in 10 s");
        })?;
        self.tokens.fetch_add(1, Ordering::Relaxed);
        Ok(OAuthToken {
            token,
            // MSK takes the principal from the signature; librdkafka only passes this on.
            principal_name: String::new(),
            lifetime_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use rdkafka::producer::FutureProducer;
    use std::collections::BTreeMap;

    fn signer() -> MskIamSigner {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token-example".into()),
            None,
            "test",
        );
        MskIamSigner::new(
            Region::new("eu-west-1"),
            SharedCredentialsProvider::new(credentials),
            tokio::runtime::Handle::current(),
        )
    }

    /// The query of a decoded token's URL, its values still percent-encoded.
    fn query(url: &str) -> BTreeMap<String, String> {
        url.split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_is_a_presigned_kafka_cluster_connect_url_valid_for_15_minutes() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis() as i64;
        let (token, expiry_ms) = signer().token().await.expect("a token");
        assert!(
            !token.contains(['=', '+', '/']),
            "base64url without padding: {token}"
        );
        let url = String::from_utf8(
            base64_simd::URL_SAFE_NO_PAD
                .decode_to_vec(token.as_bytes())
                .expect("base64url"),
        )
        .expect("a UTF-8 URL");
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        let q = query(&url);
        assert_eq!(q["Action"], "kafka-cluster%3AConnect");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-SignedHeaders"], "host");
        assert_eq!(q["X-Amz-Security-Token"], "session-token-example");
        let date = &q["X-Amz-Date"];
        assert_eq!(
            q["X-Amz-Credential"],
            format!(
                "AKIDEXAMPLE%2F{}%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
                &date[..8]
            )
        );
        let signature = &q["X-Amz-Signature"];
        assert_eq!(signature.len(), 64);
        assert!(
            signature.bytes().all(|b| b.is_ascii_hexdigit()),
            "{signature}"
        );
        // The expiry is the signing time plus 900 s.
        let signed = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date)
            .expect("an X-Amz-Date")
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .expect("a UTC time")
            .timestamp()
            .as_millisecond();
        assert_eq!(expiry_ms, signed + 900_000);
        assert!(expiry_ms >= before + 899_000, "{expiry_ms} {before}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn librdkafka_asks_the_producer_context_for_a_token_when_oauthbearer_is_set() {
        let context = ProducerContext::with_signer(signer());
        // No broker is needed: librdkafka asks for its first token as the client starts.
        let _producer: FutureProducer<ProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "OAUTHBEARER")
            .create_with_context(context.clone())
            .expect("a producer");
        let started = std::time::Instant::now();
        while context.tokens_signed() == 0 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(context.tokens_signed(), 1);

        // Without a signer, the request fails with a message that says what to set.
        let unsigned = ProducerContext::default();
        let error = unsigned
            .generate_oauth_token(None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("KAFKA_AUTH=msk-iam"), "{error}");
    }
}
