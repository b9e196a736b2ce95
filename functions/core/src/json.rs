//! A scanner for flat JSON objects (`{"name": value, ...}`), the shape of every record value we consume.
//!
//! The decoders sit on the per-record hot path, where a general JSON parser building a document tree
//! costs several times the whole budget. This scanner walks the bytes once, borrows strings without
//! copying when they have no escapes, and keeps numbers as their validated JSON text so that the caller
//! parses only the fields it wants. Nested values are skipped (and reported by kind), never parsed.
//! Strings come back as bytes: names are compared as bytes, and the caller checks UTF-8 only for the
//! text it keeps (`as_text`), which saves a validation per string on the hot path.

use std::borrow::Cow;

/// A member value of a flat object.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue<'a> {
    /// The string's bytes, escapes decoded.
    String(Cow<'a, [u8]>),
    Number(JsonNumber<'a>),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl JsonValue<'_> {
    /// The JSON kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            JsonValue::String(_) => "a string",
            JsonValue::Number(_) => "a number",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Null => "null",
            JsonValue::Array => "an array",
            JsonValue::Object => "an object",
        }
    }
}

/// A number: its text (checked against the JSON number grammar), and its value when the scan could
/// compute it exactly on the way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonNumber<'a> {
    pub text: &'a [u8],
    exact: Option<f64>,
}

impl JsonNumber<'_> {
    /// The number as the nearest double (what `str::parse::<f64>` gives); infinite when too large.
    pub fn to_f64(&self) -> f64 {
        match self.exact {
            Some(v) => v,
            None => std::str::from_utf8(self.text)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::NAN),
        }
    }
}

/// Powers of ten that are exact doubles.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A JSON syntax error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {expected}")]
pub struct JsonSyntaxError {
    pub offset: usize,
    pub expected: &'static str,
}

/// A member: its name's bytes (escapes decoded) and its value.
pub type Member<'a> = (Cow<'a, [u8]>, JsonValue<'a>);

/// Walks the members of one JSON object, in document order.
pub struct ObjectScanner<'a> {
    b: &'a [u8],
    i: usize,
    first: bool,
    done: bool,
}

impl<'a> ObjectScanner<'a> {
    /// Starts at the opening brace; anything else (an array, a string, garbage) is an error.
    pub fn new(b: &'a [u8]) -> Result<Self, JsonSyntaxError> {
        let mut s = Self {
            b,
            i: 0,
            first: true,
            done: false,
        };
        s.ws();
        s.eat(b'{', "'{' (a JSON object)")?;
        Ok(s)
    }

    /// The next member, `None` after the closing brace (and nothing but white space after it).
    pub fn next_member(&mut self) -> Result<Option<Member<'a>>, JsonSyntaxError> {
        if self.done {
            return Ok(None);
        }
        self.ws();
        if self.peek() == Some(b'}') {
            if !self.first {
                return Err(self.error("a member after ','"));
            }
            return self.finish();
        }
        if !self.first {
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
        self.first = false;
        if self.peek() != Some(b'"') {
            return Err(self.error("a member name in double quotes"));
        }
        let name = self.string()?;
        self.ws();
        self.eat(b':', "':' after a member name")?;
        self.ws();
        let value = self.value()?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.finish::<()>()?;
        }
        Ok(Some((name, value)))
    }

    fn finish<T>(&mut self) -> Result<Option<T>, JsonSyntaxError> {
        self.i += 1;
        self.done = true;
        self.ws();
        if self.i != self.b.len() {
            return Err(self.error("nothing after the closing '}'"));
        }
        Ok(None)
    }

    fn error(&self, expected: &'static str) -> JsonSyntaxError {
        JsonSyntaxError {
            offset: self.i,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8, expected: &'static str) -> Result<(), JsonSyntaxError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn value(&mut self) -> Result<JsonValue<'a>, JsonSyntaxError> {
        match self.peek() {
            Some(b'"') => Ok(JsonValue::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", JsonValue::Bool(true)),
            Some(b'f') => self.literal(b"false", JsonValue::Bool(false)),
            Some(b'n') => self.literal(b"null", JsonValue::Null),
            Some(b'[') => {
                self.skip_nested()?;
                Ok(JsonValue::Array)
            }
            Some(b'{') => {
                self.skip_nested()?;
                Ok(JsonValue::Object)
            }
            _ => Err(self.error("a JSON value")),
        }
    }

    fn literal(
        &mut self,
        text: &[u8],
        value: JsonValue<'a>,
    ) -> Result<JsonValue<'a>, JsonSyntaxError> {
        if self.b[self.i..].starts_with(text) {
            self.i += text.len();
            Ok(value)
        } else {
            Err(self.error("true, false or null"))
        }
    }

    /// Checks the number grammar and, for plain decimals of up to 15 digits (every price we see),
    /// computes the value in the same pass: the digits as an integer below 2^53 and a power of ten
    /// up to 10^15 are exact doubles, and IEEE division rounds correctly, so the result is the one
    /// `str::parse` gives. Anything else is parsed from the text when asked for.
    fn number(&mut self) -> Result<JsonValue<'a>, JsonSyntaxError> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0usize;
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                digits = 1;
            }
            Some(b'1'..=b'9') => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                    digits += 1;
                    self.i += 1;
                }
            }
            _ => return Err(self.error("a digit")),
        }
        let mut frac_digits = 0usize;
        if self.peek() == Some(b'.') {
            self.i += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                frac_digits += 1;
                self.i += 1;
            }
            if frac_digits == 0 {
                return Err(self.error("a digit after '.'"));
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.digits();
        }
        let exact = (!exponent && digits + frac_digits <= 15).then(|| {
            let v = mantissa as f64 / POW10[frac_digits];
            if negative { -v } else { v }
        });
        Ok(JsonValue::Number(JsonNumber {
            text: &self.b[start..self.i],
            exact,
        }))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// Reads a string at the opening quote; borrows it when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, JsonSyntaxError> {
        self.i += 1;
        let start = self.i;
        let rest = &self.b[start..];
        match rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        {
            Some(n) if rest[n] == b'"' => {
                self.i = start + n + 1;
                Ok(Cow::Borrowed(&rest[..n]))
            }
            Some(n) if rest[n] == b'\\' => {
                self.i = start + n;
                self.escaped_string(start)
            }
            Some(n) => {
                self.i = start + n;
                Err(self.error("no control character inside a string"))
            }
            None => {
                self.i = self.b.len();
                Err(self.error("a closing '\"'"))
            }
        }
    }

    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, [u8]>, JsonSyntaxError> {
        let mut out: Vec<u8> = self.b[start..self.i].to_vec();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self
                        .peek()
                        .ok_or_else(|| self.error("an escape character"))?;
                    self.i += 1;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("a valid escape")),
                    }
                }
                Some(0..=0x1f) => return Err(self.error("no control character inside a string")),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
                None => return Err(self.error("a closing '\"'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonSyntaxError> {
        let hex = self
            .b
            .get(self.i..self.i + 4)
            // `from_str_radix` alone would take a sign: `\u+041` is not JSON.
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("four hex digits after \\u"))?;
        self.i += 4;
        Ok(hex)
    }

    fn unicode_escape(&mut self) -> Result<char, JsonSyntaxError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.b[self.i..].starts_with(b"\\u") {
                return Err(self.error("a low surrogate escape"));
            }
            self.i += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("a low surrogate escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("a valid unicode scalar"))
    }

    /// Skips an array or object, minding strings so brackets inside them do not count.
    fn skip_nested(&mut self) -> Result<(), JsonSyntaxError> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b'[' | b'{') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b']' | b'}') => {
                    depth -= 1;
                    self.i += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.i += 1,
                None => return Err(self.error("the end of a nested value")),
            }
        }
    }
}

/// A string value as text; `None` when its bytes are not UTF-8.
pub fn as_text(bytes: Cow<'_, [u8]>) -> Option<Cow<'_, str>> {
    match bytes {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Result<Vec<(String, JsonValue<'_>)>, JsonSyntaxError> {
        let mut s = ObjectScanner::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some((k, v)) = s.next_member()? {
            out.push((String::from_utf8(k.into_owned()).unwrap(), v));
        }
        Ok(out)
    }

    fn string(text: &str) -> JsonValue<'_> {
        JsonValue::String(Cow::Borrowed(text.as_bytes()))
    }

    #[test]
    fn reads_members_in_order() {
        let m =
            members(r#" { "a" : "x", "b":-1.5e3 ,"c":[1,{"d":"]"}],"e":null,"f":true } "#).unwrap();
        assert_eq!(m[0], ("a".into(), string("x")));
        match &m[1] {
            (name, JsonValue::Number(n)) => assert_eq!(
                (name.as_str(), n.text, n.to_f64()),
                ("b", &b"-1.5e3"[..], -1500.0)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(m[2], ("c".into(), JsonValue::Array));
        assert_eq!(m[3], ("e".into(), JsonValue::Null));
        assert_eq!(m[4], ("f".into(), JsonValue::Bool(true)));
    }

    #[test]
    fn decodes_escapes() {
        let m = members(r#"{"a\"b":"\u00e9\n\ud83d\ude00"}"#).unwrap();
        assert_eq!(m[0].0, "a\"b");
        assert_eq!(m[0].1, string("é\n😀"));
    }

    fn number(text: &str) -> f64 {
        let doc = format!("{{\"n\": {text}}}");
        let mut s = ObjectScanner::new(doc.as_bytes()).unwrap();
        match s.next_member().unwrap() {
            Some((_, JsonValue::Number(n))) => n.to_f64(),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn numbers_equal_std_parse(int in 0u64..1_000_000_000, frac in 0u64..1_000_000, width in 0usize..7, neg: bool) {
            let sign = if neg { "-" } else { "" };
            let text = match width {
                0 => format!("{sign}{int}"),
                w => format!("{sign}{int}.{:0w$}", frac % 10u64.pow(w as u32)),
            };
            proptest::prop_assert_eq!(number(&text).to_bits(), text.parse::<f64>().unwrap().to_bits(), "{}", text);
        }
    }

    #[test]
    fn numbers_outside_the_fast_path_still_parse() {
        for text in [
            "1e-3",
            "12345678901234567",
            "-0.0",
            "0.1234567890123456789",
            "1E400",
            "0",
        ] {
            assert_eq!(
                number(text).to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
    }

    #[test]
    fn empty_object_has_no_members() {
        assert!(members("{}").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_syntax_with_offset() {
        for (text, offset) in [
            ("", 0),
            ("[1]", 0),
            ("{\"a\":1,}", 7),
            ("{\"a\" 1}", 5),
            ("{\"a\":01}", 6),
            ("{\"a\":1.}", 7),
            ("{\"a\":1} x", 8),
            ("{\"a\":\"x", 7),
            ("{\"a\":1", 6),
            // Found by tests/fuzz_decoders.rs: a sign passed for a hex digit.
            ("{\"a\":\"\\u+041\"}", 8),
            ("{\"a\":\"\\u-041\"}", 8),
            ("{\"a\":\"\\u 041\"}", 8),
        ] {
            let err = members(text).unwrap_err();
            assert_eq!(err.offset, offset, "{text:?}: {err}");
        }
    }
}
