//! Forex ticks and stock quotes: one shape, decoded strictly.
//!
//! `{"timestamp": "2024-01-01 00:00:00.570000", "pair_name": "MRVZAR", "bid_price": 1.7168,
//! "ask_price": 1.7598, "spread": 0.043}`: exactly these fields, each with its JSON type. A record
//! that breaks a rule is rejected with the rule it broke, so the dead-letter destination says why.

use crate::time::{Timestamp, TimestampError};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The longest symbol accepted (Yahoo symbols such as `HDFCBANK.NS` or `EURUSD=X` are far shorter).
pub const MAX_SYMBOL_LEN: usize = 32;

/// The largest price accepted. Mids are summed in 1e-9 units, so this keeps a mid below 2^63.
pub const MAX_PRICE: f64 = 1e9;

/// A validated tick: a bid/ask quote of one symbol at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub pair: String,
    pub timestamp: Timestamp,
    pub bid: f64,
    pub ask: f64,
    pub spread: f64,
}

/// Why a tick was rejected. The `Display` text is what the dead-letter destination records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TickRejection {
    /// serde_json's account of the syntax error, with its line and column.
    #[error("not a JSON object: {0}")]
    Syntax(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("field `{0}` appears more than once")]
    DuplicateField(&'static str),
    #[error("field `timestamp`: {0}")]
    Timestamp(#[from] TimestampError),
    #[error(
        "field `pair_name` must be 1 to {MAX_SYMBOL_LEN} printable characters without spaces, found {0:?}"
    )]
    Symbol(String),
    #[error("field `{field}` must be a finite number, found {text}")]
    NotFinite { field: &'static str, text: String },
    #[error("field `{field}` must be positive, found {value}")]
    NonPositivePrice { field: &'static str, value: f64 },
    #[error("field `{field}` must be at most {MAX_PRICE}, found {value}")]
    PriceTooLarge { field: &'static str, value: f64 },
    #[error("ask_price {ask} is below bid_price {bid}")]
    AskBelowBid { bid: f64, ask: f64 },
    #[error("field `spread` must not be negative, found {0}")]
    NegativeSpread(f64),
}

const FIELDS: [&str; 5] = ["timestamp", "pair_name", "bid_price", "ask_price", "spread"];

impl Tick {
    /// Decodes and validates one record value. serde_json reads the object (its syntax, its
    /// strings' escapes and UTF-8) and hands each member over as its raw text, so that a member
    /// of the wrong type, a duplicate or an unknown name is named in the reason.
    pub fn decode(value: &[u8]) -> Result<Tick, TickRejection> {
        let mut fields = Fields::default();
        let mut de = serde_json::Deserializer::from_slice(value);
        let parsed = Members(&mut fields)
            .deserialize(&mut de)
            .and_then(|()| de.end());
        // A member's own fault comes first: it stands before anything wrong further on.
        if let Some(problem) = fields.problem {
            return Err(problem);
        }
        parsed.map_err(|e| TickRejection::Syntax(e.to_string()))?;
        let timestamp = fields
            .timestamp
            .ok_or(TickRejection::MissingField(FIELDS[0]))?;
        let pair = fields.pair.ok_or(TickRejection::MissingField(FIELDS[1]))?;
        let bid = fields.bid.ok_or(TickRejection::MissingField(FIELDS[2]))?;
        let ask = fields.ask.ok_or(TickRejection::MissingField(FIELDS[3]))?;
        let spread = fields
            .spread
            .ok_or(TickRejection::MissingField(FIELDS[4]))?;

        let timestamp = Timestamp::parse_bytes(timestamp.as_bytes())?;
        let printable = if pair.is_ascii() {
            pair.bytes().all(|b| b.is_ascii_graphic())
        } else {
            !pair.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if pair.is_empty() || pair.len() > MAX_SYMBOL_LEN || !printable {
            return Err(TickRejection::Symbol(pair.into_owned()));
        }
        if bid <= 0.0 {
            return Err(TickRejection::NonPositivePrice {
                field: FIELDS[2],
                value: bid,
            });
        }
        if ask <= 0.0 {
            return Err(TickRejection::NonPositivePrice {
                field: FIELDS[3],
                value: ask,
            });
        }
        for (field, value) in [(FIELDS[2], bid), (FIELDS[3], ask)] {
            if value > MAX_PRICE {
                return Err(TickRejection::PriceTooLarge { field, value });
            }
        }
        if ask < bid {
            return Err(TickRejection::AskBelowBid { bid, ask });
        }
        if spread < 0.0 {
            return Err(TickRejection::NegativeSpread(spread));
        }
        Ok(Tick {
            pair: pair.into_owned(),
            timestamp,
            bid,
            ask,
            spread,
        })
    }

    /// The value in the wire format, fields in the reference generator's order.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"timestamp": "{}", "pair_name": {}, "bid_price": {}, "ask_price": {}, "spread": {}}}"#,
            self.timestamp,
            json_string(&self.pair),
            self.bid,
            self.ask,
            self.spread
        )
    }

    /// The mid price in nano-units (1e-9), exact for prices with up to 8 decimals.
    ///
    /// Hourly sums are kept in these integer units, so a sum does not depend on the order in which
    /// ticks arrive: the hourly average rate is the same for every delivery order and batching.
    pub fn mid_nanos(&self) -> i64 {
        (price_e8(self.bid) + price_e8(self.ask)) * 5
    }

    /// The mid price candles and indicators use: `mid_nanos` as a float, so a candle built from
    /// stored integer mids and one built from ticks agree to the bit.
    pub fn mid(&self) -> f64 {
        nanos_to_price(self.mid_nanos())
    }
}

/// A price in nano-units back as a float (the nearest double to the decimal value).
pub fn nanos_to_price(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

/// A price in units of 1e-8, rounded to the nearest unit.
pub fn price_e8(price: f64) -> i64 {
    (price * 1e8).round() as i64
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A tick's members as found, before their rules are checked, and the first member at fault.
#[derive(Default)]
struct Fields<'a> {
    timestamp: Option<Cow<'a, str>>,
    pair: Option<Cow<'a, str>>,
    bid: Option<f64>,
    ask: Option<f64>,
    spread: Option<f64>,
    problem: Option<TickRejection>,
}

impl<'a> Fields<'a> {
    fn take(&mut self, name: &str, value: &'a RawValue) -> Result<(), TickRejection> {
        match name {
            "timestamp" => set(&mut self.timestamp, 0, string(0, value)?),
            "pair_name" => set(&mut self.pair, 1, string(1, value)?),
            "bid_price" => set(&mut self.bid, 2, number(2, value)?),
            "ask_price" => set(&mut self.ask, 3, number(3, value)?),
            "spread" => set(&mut self.spread, 4, number(4, value)?),
            other => Err(TickRejection::UnknownField(other.to_owned())),
        }
    }
}

/// Reads an object's members into `Fields`, each value as its raw JSON text.
struct Members<'f, 'a>(&'f mut Fields<'a>);

/// A member's name, borrowed from the record unless it has escapes.
#[derive(serde::Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> DeserializeSeed<'de> for Members<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Name(name)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            if self.0.problem.is_none()
                && let Err(problem) = self.0.take(&name, value)
            {
                self.0.problem = Some(problem);
            }
        }
        Ok(())
    }
}

fn set<T>(slot: &mut Option<T>, field: usize, value: T) -> Result<(), TickRejection> {
    if slot.is_some() {
        return Err(TickRejection::DuplicateField(FIELDS[field]));
    }
    *slot = Some(value);
    Ok(())
}

/// The JSON kind of a valid value's text, for reasons.
fn kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn string(field: usize, value: &RawValue) -> Result<Cow<'_, str>, TickRejection> {
    match kind(value.get()) {
        "a string" => serde_json::from_str::<Name<'_>>(value.get())
            .map(|name| name.0)
            .map_err(|e| TickRejection::Syntax(e.to_string())),
        found => Err(TickRejection::WrongType {
            field: FIELDS[field],
            expected: "a string",
            found,
        }),
    }
}

/// A number as the nearest double (infinite past `f64::MAX`, which is refused).
fn number(field: usize, value: &RawValue) -> Result<f64, TickRejection> {
    let text = value.get();
    match kind(text) {
        "a number" => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(TickRejection::NotFinite {
                field: FIELDS[field],
                text: text.to_owned(),
            }),
        },
        found => Err(TickRejection::WrongType {
            field: FIELDS[field],
            expected: "a number",
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"timestamp": "2024-01-01 00:00:00.570000", "pair_name": "MRVZAR", "bid_price": 1.7168, "ask_price": 1.7598, "spread": 0.043}"#;

    fn reject(text: &str) -> String {
        Tick::decode(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn decodes_the_reference_tick() {
        let t = Tick::decode(GOOD.as_bytes()).unwrap();
        assert_eq!(t.pair, "MRVZAR");
        assert_eq!(t.timestamp.to_string(), "2024-01-01 00:00:00.570000");
        assert_eq!((t.bid, t.ask, t.spread), (1.7168, 1.7598, 0.043));
        assert_eq!(t.to_json(), GOOD);
    }

    #[test]
    fn field_order_and_white_space_do_not_matter() {
        let t = Tick::decode(br#"{"spread":0.043,"ask_price":1.7598,"bid_price":1.7168,"pair_name":"MRVZAR","timestamp":"2024-01-01 00:00:00.570000"}"#).unwrap();
        assert_eq!(t, Tick::decode(GOOD.as_bytes()).unwrap());
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert_eq!(
            reject(
                r#"{"timestamp": "2024-01-01 00:00:00.570000", "pair_name": "MRVZAR", "ask_price": 1.7598, "spread": 0.043}"#
            ),
            "missing field `bid_price`"
        );
        assert_eq!(
            reject(&GOOD.replace("1.7168", "\"1.7168\"")),
            "field `bid_price` must be a number, found a string"
        );
        assert_eq!(
            reject(&GOOD.replace("\"MRVZAR\"", "7")),
            "field `pair_name` must be a string, found a number"
        );
        assert_eq!(
            reject(&GOOD.replace("1.7168", "-1.7168")),
            "field `bid_price` must be positive, found -1.7168"
        );
        assert_eq!(
            reject(&GOOD.replace("1.7598", "0")),
            "field `ask_price` must be positive, found 0"
        );
        assert_eq!(
            reject(&GOOD.replace("1.7598", "1e10")),
            "field `ask_price` must be at most 1000000000, found 10000000000"
        );
        assert_eq!(
            reject(&GOOD.replace("1.7598", "1.5")),
            "ask_price 1.5 is below bid_price 1.7168"
        );
        assert_eq!(
            reject(&GOOD.replace("00:00:00.570000", "00:61:00.570000")),
            "field `timestamp`: minute 61 is out of range in \"2024-01-01 00:61:00.570000\""
        );
        assert_eq!(
            reject(&GOOD.replace("2024-01-01 00:00:00.570000", "yesterday")),
            "field `timestamp`: expected `YYYY-MM-DD HH:MM:SS[.ffffff]`, found \"yesterday\""
        );
        assert_eq!(
            reject(&GOOD.replace("}", ", \"volume\": 3}")),
            "unknown field `volume`"
        );
        assert_eq!(
            reject(&GOOD.replace("}", ", \"spread\": 3}")),
            "field `spread` appears more than once"
        );
        assert_eq!(
            reject(&GOOD.replace("0.043", "1e999")),
            "field `spread` must be a finite number, found 1e999"
        );
        assert_eq!(
            reject(&GOOD.replace("0.043", "-0.043")),
            "field `spread` must not be negative, found -0.043"
        );
        assert_eq!(
            reject(&GOOD.replace("MRVZAR", "MRV ZAR")),
            "field `pair_name` must be 1 to 32 printable characters without spaces, found \"MRV ZAR\""
        );
        // Syntax errors are serde_json's, with where they were found.
        assert_eq!(
            reject("not json"),
            "not a JSON object: expected ident at line 1 column 2"
        );
        assert_eq!(
            reject("[1.7168]"),
            "not a JSON object: invalid type: sequence, expected a JSON object at line 1 column 0"
        );
        assert_eq!(
            reject(&GOOD[..40]),
            "not a JSON object: EOF while parsing a string at line 1 column 40"
        );
        assert_eq!(
            reject(&format!("{GOOD} x")),
            "not a JSON object: trailing characters at line 1 column 127"
        );
        let mut not_utf8 = GOOD.as_bytes().to_vec();
        not_utf8[50] = 0xff;
        assert_eq!(
            Tick::decode(&not_utf8).unwrap_err().to_string(),
            "not a JSON object: invalid unicode code point at line 1 column 51"
        );
        // A member at fault is named even when the text goes wrong after it.
        assert_eq!(
            reject(&GOOD.replace("\"spread\": 0.043}", "\"volume\": 3, \"spread\": ")),
            "unknown field `volume`"
        );
    }

    #[test]
    fn mid_is_exact_in_nano_units() {
        let t = Tick::decode(GOOD.as_bytes()).unwrap();
        // (1.7168 + 1.7598) / 2 = 1.7383
        assert_eq!(t.mid_nanos(), 1_738_300_000);
    }
}
