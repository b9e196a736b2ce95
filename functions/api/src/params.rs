//! Query parameters parsed into typed values, each failure naming its parameter (parse, don't
//! validate: the handlers never check a value again).

use crate::ApiError;
use std::collections::HashMap;
use wtc_core::candles::Interval;
use wtc_core::tick::MAX_SYMBOL_LEN;
use wtc_core::time::Timestamp;

/// Candles or indicators per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 500;
/// The most candles or indicators one page holds.
pub const MAX_LIMIT: u32 = 1000;
/// The most symbols one page of `/symbols` holds.
pub const MAX_SYMBOLS: u32 = 1000;

/// A request's query string, by name (a repeated name keeps its last value).
pub type Params = HashMap<String, String>;

/// A symbol as the feeds name it: 1 to 32 printable characters without spaces (`TCS.NS`,
/// `EURUSD=X`, `MRVZAR`), the rule ticks and bars are accepted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol(String);

impl Symbol {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let printable = !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if text.is_empty() || text.len() > MAX_SYMBOL_LEN || !printable {
            return Err(ApiError::bad_request(
                "symbol",
                format!(
                    "`symbol` must be 1 to {MAX_SYMBOL_LEN} printable characters without spaces"
                ),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(name, format!("`{name}` is required")))
}

pub fn symbol(params: &Params) -> Result<Symbol, ApiError> {
    Symbol::parse(required(params, "symbol")?)
}

pub fn interval(params: &Params) -> Result<Interval, ApiError> {
    match required(params, "interval")? {
        "M1" => Ok(Interval::M1),
        "M30" => Ok(Interval::M30),
        "H1" => Ok(Interval::H1),
        _ => Err(ApiError::bad_request(
            "interval",
            "`interval` must be `M1`, `M30` or `H1`".into(),
        )),
    }
}

/// A time: RFC 3339 (`2024-01-01T00:00:00Z`, any offset), `YYYY-MM-DD HH:MM:SS[.ffffff]` or
/// `YYYY-MM-DD`, the last two in UTC.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    if let Ok(t) = Timestamp::parse(text) {
        return Some(t);
    }
    if text.len() == 10
        && let Ok(t) = Timestamp::parse(&format!("{text} 00:00:00"))
    {
        return Some(t);
    }
    let t: jiff::Timestamp = text.parse().ok()?;
    Some(Timestamp::from_micros(t.as_microsecond()))
}

pub fn optional_time(params: &Params, name: &'static str) -> Result<Option<Timestamp>, ApiError> {
    params
        .get(name)
        .map(|text| {
            parse_time(text).ok_or_else(|| {
                ApiError::bad_request(
                    name,
                    format!(
                        "`{name}` must be a time as RFC 3339 (2024-01-01T00:00:00Z), \
                         `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC)"
                    ),
                )
            })
        })
        .transpose()
}

/// `start` and `end`, each optional, in order.
pub fn range(params: &Params) -> Result<(Option<Timestamp>, Option<Timestamp>), ApiError> {
    let (start, end) = (
        optional_time(params, "start")?,
        optional_time(params, "end")?,
    );
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::bad_request(
            "start",
            "`start` must not be after `end`".into(),
        ));
    }
    Ok((start, end))
}

pub fn limit(params: &Params, default: u32, max: u32) -> Result<u32, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "limit",
                    format!("`limit` must be an integer from 1 to {max}"),
                )
            }),
    }
}

/// `sort=asc` (oldest first, the default) or `desc`; true for newest first.
pub fn newest_first(params: &Params) -> Result<bool, ApiError> {
    match params.get("sort").map(String::as_str) {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "sort",
            "`sort` must be `asc` or `desc`".into(),
        )),
    }
}

/// Where a page continues: opaque to clients, bound to the query it came from (the series or
/// listing, and the order), so a token used with another query is refused rather than misread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// What was listed: a series key (`TCS.NS#M1`) or `symbols`.
    pub scope: String,
    pub newest_first: bool,
    /// The sort key of the last item of the page.
    pub after: String,
}

const TOKEN_VERSION: &str = "1";

impl PageToken {
    pub fn encode(&self) -> String {
        let order = if self.newest_first { "desc" } else { "asc" };
        let text = [TOKEN_VERSION, &self.scope, order, &self.after].join("\n");
        base64_simd::URL_SAFE_NO_PAD.encode_to_string(text.as_bytes())
    }

    fn decode(token: &str) -> Option<Self> {
        let bytes = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(token.as_bytes())
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split('\n');
        let (version, scope, order, after) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != TOKEN_VERSION || parts.next().is_some() || after.is_empty() {
            return None;
        }
        let newest_first = match order {
            "asc" => false,
            "desc" => true,
            _ => return None,
        };
        Some(Self {
            scope: scope.to_owned(),
            newest_first,
            after: after.to_owned(),
        })
    }

    /// The `page_token` of a request, if any, checked against the query it continues.
    pub fn from_params(
        params: &Params,
        scope: &str,
        newest_first: bool,
    ) -> Result<Option<Self>, ApiError> {
        let Some(text) = params.get("page_token") else {
            return Ok(None);
        };
        let invalid = |message: &str| ApiError::bad_request("page_token", message.to_owned());
        let token = Self::decode(text).ok_or_else(|| {
            invalid("`page_token` is not a token this API gave (take `next_page_token` as it is)")
        })?;
        if token.scope != scope || token.newest_first != newest_first {
            return Err(invalid(
                "`page_token` continues another query: send it with the same symbol, interval \
                 and sort as the request that gave it",
            ));
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn times_are_read_in_every_documented_form() {
        let want = Timestamp::from_micros(1_704_080_700_000_000);
        for text in [
            "2024-01-01T03:45:00Z",
            "2024-01-01T09:15:00+05:30",
            "2024-01-01 03:45:00",
            "2024-01-01T03:45:00.000Z",
        ] {
            assert_eq!(parse_time(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_time("2024-01-01"),
            Some(Timestamp::from_micros(1_704_067_200_000_000))
        );
        for bad in ["2024-13-01", "yesterday", "2024-01-01T03:45:00", ""] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_bad_value_names_its_parameter() {
        let p = params(&[
            ("symbol", "TCS NS"),
            ("interval", "M5"),
            ("start", "2024-01-02"),
            ("end", "2024-01-01"),
            ("limit", "0"),
            ("sort", "up"),
        ]);
        assert_eq!(symbol(&p).unwrap_err().parameter, Some("symbol"));
        assert_eq!(interval(&p).unwrap_err().parameter, Some("interval"));
        assert_eq!(range(&p).unwrap_err().parameter, Some("start"));
        assert_eq!(limit(&p, 500, 1000).unwrap_err().parameter, Some("limit"));
        assert_eq!(newest_first(&p).unwrap_err().parameter, Some("sort"));
        assert_eq!(symbol(&params(&[])).unwrap_err().parameter, Some("symbol"));
        assert_eq!(
            limit(&params(&[("limit", "1001")]), 500, 1000)
                .unwrap_err()
                .parameter,
            Some("limit")
        );
        assert_eq!(limit(&params(&[]), 500, 1000).unwrap(), 500);
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_another_query() {
        let token = PageToken {
            scope: "TCS.NS#M1".into(),
            newest_first: true,
            after: "2024-01-01 03:45:00".into(),
        };
        let p = params(&[("page_token", &token.encode())]);
        assert_eq!(
            PageToken::from_params(&p, "TCS.NS#M1", true).unwrap(),
            Some(token)
        );
        for (scope, desc) in [("TCS.NS#M30", true), ("TCS.NS#M1", false)] {
            assert_eq!(
                PageToken::from_params(&p, scope, desc)
                    .unwrap_err()
                    .parameter,
                Some("page_token")
            );
        }
        let garbage = params(&[("page_token", "%%%")]);
        assert!(PageToken::from_params(&garbage, "x", false).is_err());
        assert_eq!(
            PageToken::from_params(&params(&[]), "x", false).unwrap(),
            None
        );
    }
}

/// Every parser against arbitrary and near-valid text: no panic, and a refusal names its
/// parameter and says why in a bounded message. Cases: `PROPTEST_CASES` (256 by default).
#[cfg(test)]
pub(crate) mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Near-valid values of every parameter, hostile ones, and anything at all.
    pub(crate) fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9]{0,22}",
            "-?[0-9]{1,12}(\\.[0-9]{0,3})?",
            "(M1|M30|H1|asc|desc|day|hour|split|cost|,){0,3}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?)?",
            "[A-Za-z0-9_=.-]{0,40}",
            Just("99999999999999999999999".to_owned()),
            Just("1e999".to_owned()),
            Just("a".repeat(5_000)),
        ]
    }

    pub(crate) fn check_refusal(
        e: &ApiError,
        names: &[&str],
        longest_value: usize,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        prop_assert!(e.parameter.is_some_and(|p| names.contains(&p)), "{e:?}");
        prop_assert!(!e.message.trim().is_empty());
        prop_assert!(
            e.message.len() <= 256 + 6 * longest_value,
            "{}",
            e.message.len()
        );
        Ok(())
    }

    fn query() -> impl Strategy<Value = Params> {
        proptest::collection::hash_map(
            prop::sample::select(vec![
                "symbol",
                "interval",
                "start",
                "end",
                "limit",
                "sort",
                "page_token",
                "other",
            ])
            .prop_map(str::to_owned),
            value(),
            0..8,
        )
    }

    proptest! {
        #[test]
        fn times_parse_without_panic(text in value()) {
            let t = parse_time(&text);
            // The text format reads as itself; other forms are jiff's to refuse.
            if let Ok(wtc) = Timestamp::parse(&text) {
                prop_assert_eq!(t, Some(wtc));
            }
        }

        #[test]
        fn every_parameter_is_parsed_or_refused_by_name(p in query(), max in 1u32..2_000) {
            let longest = p.values().map(String::len).max().unwrap_or(0);
            match symbol(&p) {
                Ok(s) => prop_assert!(!s.as_str().is_empty() && s.as_str().len() <= MAX_SYMBOL_LEN),
                Err(e) => check_refusal(&e, &["symbol"], longest)?,
            }
            if let Err(e) = interval(&p) {
                check_refusal(&e, &["interval"], longest)?;
            }
            match range(&p) {
                Ok((Some(s), Some(e))) => prop_assert!(s <= e),
                Ok(_) => {}
                Err(e) => check_refusal(&e, &["start", "end"], longest)?,
            }
            match limit(&p, 1, max) {
                Ok(n) => prop_assert!((1..=max).contains(&n)),
                Err(e) => check_refusal(&e, &["limit"], longest)?,
            }
            if let Err(e) = newest_first(&p) {
                check_refusal(&e, &["sort"], longest)?;
            }
            if let Err(e) = PageToken::from_params(&p, "TCS.NS#M1", false) {
                check_refusal(&e, &["page_token"], longest)?;
            }
        }

        #[test]
        fn page_tokens_round_trip(scope in "[^\n]{0,40}", newest_first: bool, after in "[^\n]{1,40}", cut in 0usize..64) {
            let token = PageToken { scope: scope.clone(), newest_first, after };
            let text = token.encode();
            let p: Params = [("page_token".to_owned(), text.clone())].into();
            prop_assert_eq!(PageToken::from_params(&p, &scope, newest_first), Ok(Some(token)));
            // A token cut short or with a byte changed is refused, not misread or a panic.
            let mut bent = text.into_bytes();
            bent.truncate(cut.min(bent.len()));
            let p: Params = [("page_token".to_owned(), String::from_utf8_lossy(&bent).into_owned())].into();
            if let Err(e) = PageToken::from_params(&p, &scope, newest_first) {
                check_refusal(&e, &["page_token"], bent.len())?;
            }
        }
    }
}
