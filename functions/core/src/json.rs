//! A scanner for flat JSON objects (`{"name": value, ...}`), the shape of every record value we consume.
//!
//! The decoders sit on the per-record hot path, where a general JSON parser building a document tree
//! costs several times the whole budget. This scanner walks the bytes once, borrows strings without
//! copying when they have no escapes, and keeps numbers as their validated JSON text so that the caller
//! parses only the fields it wants. Nested values are skipped (and reported by kind), never parsed.

use std::borrow::Cow;

/// A member value of a flat object.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue<'a> {
    String(Cow<'a, str>),
    /// The number's text, already checked against the JSON number grammar.
    Number(&'a str),
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

/// A JSON syntax error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {expected}")]
pub struct JsonSyntaxError {
    pub offset: usize,
    pub expected: &'static str,
}

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
    pub fn next_member(
        &mut self,
    ) -> Result<Option<(Cow<'a, str>, JsonValue<'a>)>, JsonSyntaxError> {
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

    fn number(&mut self) -> Result<JsonValue<'a>, JsonSyntaxError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a digit in the exponent"));
            }
            self.digits();
        }
        // The grammar above admits ASCII only, so this conversion cannot fail.
        let text =
            std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.error("a number"))?;
        Ok(JsonValue::Number(text))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// Reads a string at the opening quote; borrows it when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonSyntaxError> {
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let raw = &self.b[start..self.i];
                    self.i += 1;
                    return std::str::from_utf8(raw).map(Cow::Borrowed).map_err(|_| {
                        JsonSyntaxError {
                            offset: start,
                            expected: "UTF-8 text in a string",
                        }
                    });
                }
                Some(b'\\') => return self.escaped_string(start),
                Some(0..=0x1f) => return Err(self.error("no control character inside a string")),
                Some(_) => self.i += 1,
                None => return Err(self.error("a closing '\"'")),
            }
        }
    }

    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>, JsonSyntaxError> {
        let mut out: Vec<u8> = self.b[start..self.i].to_vec();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| JsonSyntaxError {
                            offset: start,
                            expected: "UTF-8 text in a string",
                        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Result<Vec<(String, JsonValue<'_>)>, JsonSyntaxError> {
        let mut s = ObjectScanner::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some((k, v)) = s.next_member()? {
            out.push((k.into_owned(), v));
        }
        Ok(out)
    }

    #[test]
    fn reads_members_in_order() {
        let m =
            members(r#" { "a" : "x", "b":-1.5e3 ,"c":[1,{"d":"]"}],"e":null,"f":true } "#).unwrap();
        assert_eq!(m[0], ("a".into(), JsonValue::String("x".into())));
        assert_eq!(m[1], ("b".into(), JsonValue::Number("-1.5e3")));
        assert_eq!(m[2], ("c".into(), JsonValue::Array));
        assert_eq!(m[3], ("e".into(), JsonValue::Null));
        assert_eq!(m[4], ("f".into(), JsonValue::Bool(true)));
    }

    #[test]
    fn decodes_escapes() {
        let m = members(r#"{"a\"b":"\u00e9\n\ud83d\ude00"}"#).unwrap();
        assert_eq!(m[0].0, "a\"b");
        assert_eq!(m[0].1, JsonValue::String("é\n😀".into()));
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
        ] {
            let err = members(text).unwrap_err();
            assert_eq!(err.offset, offset, "{text:?}: {err}");
        }
    }
}
