//! HTTP Basic credentials, compared in constant time.

use axum::http::HeaderValue;

/// The credentials requests must carry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

impl Credentials {
    /// Whether an `Authorization` header carries these credentials. The comparison takes the
    /// same time wherever the first difference is.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(encoded) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(given) = base64_simd::STANDARD.decode_to_vec(encoded.trim().as_bytes()) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password).into_bytes();
        constant_time_eq(&given, &expected)
    }
}

/// Equal, without the time telling where two inputs of the same length differ (`subtle`); a
/// difference in length shows (the expected credentials' length is not the secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_exactly() {
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        let header = |text: &str| HeaderValue::from_str(text).ok();
        let basic = |pair: &str| {
            header(&format!(
                "Basic {}",
                base64_simd::STANDARD.encode_to_string(pair)
            ))
        };
        assert!(c.accepts(basic("user:pass").as_ref()));
        for wrong in ["user:pas", "user:passs", "User:pass", ":", ""] {
            assert!(!c.accepts(basic(wrong).as_ref()), "{wrong}");
        }
        assert!(!c.accepts(None));
        assert!(!c.accepts(header("Bearer abc").as_ref()));
        assert!(!c.accepts(header("Basic !!!").as_ref()));
        assert!(!format!("{c:?}").contains("pass\""));
    }
}
