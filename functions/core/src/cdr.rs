//! Call detail records: the curriculum's CSV files, their rows, and the records they become.
//!
//! Files are `cdr_data_YYYYMMDD_HHMMSS.csv` and `cdr_voice_YYYYMMDD_HHMMSS.csv`, with a header row:
//! - data: `msisdn,tower_id,up_bytes,down_bytes,data_type,ip_address,website_url,event_datetime`
//! - voice: `msisdn,tower_id,call_type,dest_nr,call_duration_sec,start_time`
//!
//! Each valid row is published as one record whose value is a CSV line: the kind, the row's
//! identity (source object, its content hash such as the ETag, line number), then the row's fields
//! as in the file, e.g. `data,cdr_data_20240101_000320.csv,9b2c…,2,9724515726732,1800,787119,…`.
//! The identity makes the same file uploaded twice the same rows; CSV keeps decoding cheap.

use crate::event::SourceRecord;
use crate::time::{Timestamp, TimestampError};
use std::fmt;

/// The two kinds of CDR file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CdrKind {
    Data,
    Voice,
}

impl CdrKind {
    pub fn name(self) -> &'static str {
        match self {
            CdrKind::Data => "data",
            CdrKind::Voice => "voice",
        }
    }

    /// The header row of this kind's files.
    pub fn header(self) -> &'static str {
        match self {
            CdrKind::Data => {
                "msisdn,tower_id,up_bytes,down_bytes,data_type,ip_address,website_url,event_datetime"
            }
            CdrKind::Voice => "msisdn,tower_id,call_type,dest_nr,call_duration_sec,start_time",
        }
    }

    /// The topic its records go to.
    pub fn topic(self) -> &'static str {
        match self {
            CdrKind::Data => "cdr-data",
            CdrKind::Voice => "cdr-voice",
        }
    }

    fn fields(self) -> usize {
        match self {
            CdrKind::Data => 8,
            CdrKind::Voice => 6,
        }
    }
}

/// A CDR file's kind and the instant in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdrFile {
    pub kind: CdrKind,
    pub stamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error(
        "{0:?} is not a CDR file name: expected cdr_data_YYYYMMDD_HHMMSS.csv or cdr_voice_YYYYMMDD_HHMMSS.csv"
    )]
    Unknown(String),
    #[error("{name:?}: the time in the name is invalid: {error}")]
    Stamp { name: String, error: TimestampError },
}

impl CdrFile {
    /// Reads an object key or path (only its last segment counts).
    pub fn from_name(key: &str) -> Result<CdrFile, FileNameError> {
        let name = key.rsplit('/').next().unwrap_or(key);
        let unknown = || FileNameError::Unknown(name.to_owned());
        let (kind, rest) = if let Some(rest) = name.strip_prefix("cdr_data_") {
            (CdrKind::Data, rest)
        } else if let Some(rest) = name.strip_prefix("cdr_voice_") {
            (CdrKind::Voice, rest)
        } else {
            return Err(unknown());
        };
        let stamp = rest.strip_suffix(".csv").ok_or_else(unknown)?;
        let b = stamp.as_bytes();
        if b.len() != 15
            || b[8] != b'_'
            || !b
                .iter()
                .enumerate()
                .all(|(i, c)| i == 8 || c.is_ascii_digit())
        {
            return Err(unknown());
        }
        let text = format!(
            "{}-{}-{} {}:{}:{}",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15]
        );
        let stamp = Timestamp::parse(&text).map_err(|error| FileNameError::Stamp {
            name: name.to_owned(),
            error,
        })?;
        Ok(CdrFile { kind, stamp })
    }

    /// The file's name: `cdr_data_20240101_000320.csv`.
    pub fn name(&self) -> String {
        let (y, mo, d, h, mi, s, _) = self.stamp.civil();
        format!(
            "cdr_{}_{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}.csv",
            self.kind.name()
        )
    }
}

/// `data_type` of a data CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Video,
    Audio,
    Image,
    Text,
    Application,
}

/// `call_type` of a voice CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallType {
    Voice,
    Video,
}

/// What a usage total counts: bytes of one data type, or seconds of one call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageType {
    Data(DataType),
    Call(CallType),
}

impl UsageType {
    pub const ALL: [UsageType; 7] = [
        UsageType::Data(DataType::Video),
        UsageType::Data(DataType::Audio),
        UsageType::Data(DataType::Image),
        UsageType::Data(DataType::Text),
        UsageType::Data(DataType::Application),
        UsageType::Call(CallType::Voice),
        UsageType::Call(CallType::Video),
    ];

    /// `data` or `call`, as the API names it.
    pub fn category(self) -> &'static str {
        match self {
            UsageType::Data(_) => "data",
            UsageType::Call(_) => "call",
        }
    }

    /// `video`, `audio`, ... as the files and the API name it.
    pub fn name(self) -> &'static str {
        match self {
            UsageType::Data(DataType::Video) | UsageType::Call(CallType::Video) => "video",
            UsageType::Data(DataType::Audio) => "audio",
            UsageType::Data(DataType::Image) => "image",
            UsageType::Data(DataType::Text) => "text",
            UsageType::Data(DataType::Application) => "application",
            UsageType::Call(CallType::Voice) => "voice",
        }
    }

    /// `bytes` or `seconds`.
    pub fn measure(self) -> &'static str {
        match self {
            UsageType::Data(_) => "bytes",
            UsageType::Call(_) => "seconds",
        }
    }

    /// Parses `data`/`call` and the type's name.
    pub fn from_names(category: &str, name: &str) -> Option<UsageType> {
        UsageType::ALL
            .into_iter()
            .find(|u| u.category() == category && u.name() == name)
    }
}

impl fmt::Display for UsageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.category(), self.name())
    }
}

/// One valid row, reduced to what usage needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub at: Timestamp,
    pub usage_type: UsageType,
    /// Data: uploaded bytes. Calls: 0.
    pub up: u64,
    /// Data: downloaded bytes. Calls: 0.
    pub down: u64,
    /// Data: 0. Calls: the call's seconds.
    pub seconds: u64,
}

/// The most bytes one data row may count in each direction (a petabyte): beyond it a row is
/// rejected, so that no total can wrap.
pub const MAX_ROW_BYTES: u64 = 1_000_000_000_000_000;
/// The longest call one voice row may count, in seconds (366 days).
pub const MAX_CALL_SECONDS: u64 = 366 * 24 * 3_600;

impl Usage {
    /// Bytes for data, seconds for calls.
    pub fn total(&self) -> u128 {
        match self.usage_type {
            UsageType::Data(_) => u128::from(self.up) + u128::from(self.down),
            UsageType::Call(_) => u128::from(self.seconds),
        }
    }

    /// The exact cost in micro-ZAR: data 49 ZAR per 10^9 bytes (billed per byte), voice 1 ZAR a
    /// minute (billed per second), rounded up; `None` past what 128 bits hold. Fractions of a
    /// micro-ZAR are carried as a remainder by the caller's totals: this gives the cost of a total
    /// in one step, so sums stay exact.
    pub fn cost_micro_zar(usage_type: UsageType, total: u128) -> Option<u128> {
        match usage_type {
            // 49 ZAR / 1e9 bytes = 49e6 micro-ZAR / 1e9 bytes = 49 / 1000 micro-ZAR per byte.
            UsageType::Data(_) => total.checked_mul(49).map(|c| c.div_ceil(1_000)),
            // 1 ZAR / 60 s = 1e6 / 60 micro-ZAR per second.
            UsageType::Call(_) => total.checked_mul(1_000_000).map(|c| c.div_ceil(60)),
        }
    }
}

/// Why a row was rejected: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowRejection {
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("field `{field}` must be {rule}, found {found:?}")]
    Field {
        field: &'static str,
        rule: &'static str,
        found: String,
    },
    #[error("field `{field}`: {error}")]
    Time {
        field: &'static str,
        error: TimestampError,
    },
    #[error("a quoted field is not closed")]
    Quote,
}

const DATA_FIELDS: [&str; 8] = [
    "msisdn",
    "tower_id",
    "up_bytes",
    "down_bytes",
    "data_type",
    "ip_address",
    "website_url",
    "event_datetime",
];
const VOICE_FIELDS: [&str; 6] = [
    "msisdn",
    "tower_id",
    "call_type",
    "dest_nr",
    "call_duration_sec",
    "start_time",
];

/// Splits one CSV line (RFC 4180 quoting) into `out`; the fast path has no quotes.
pub fn split_csv<'a>(
    line: &'a [u8],
    out: &mut Vec<std::borrow::Cow<'a, [u8]>>,
) -> Result<(), RowRejection> {
    use std::borrow::Cow;
    out.clear();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.contains(&b'"') {
        out.extend(line.split(|&b| b == b',').map(Cow::Borrowed));
        return Ok(());
    }
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let mut field = Vec::new();
            i += 1;
            loop {
                match line.get(i) {
                    None => return Err(RowRejection::Quote),
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            out.push(Cow::Owned(field));
            match line.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err(RowRejection::Quote),
            }
        } else {
            let end = line[i..].iter().position(|&b| b == b',').map(|p| i + p);
            match end {
                Some(end) => {
                    out.push(Cow::Borrowed(&line[i..end]));
                    i = end + 1;
                }
                None => {
                    out.push(Cow::Borrowed(&line[i..]));
                    return Ok(());
                }
            }
        }
    }
}

fn field_error(field: &'static str, rule: &'static str, found: &[u8]) -> RowRejection {
    RowRejection::Field {
        field,
        rule,
        found: String::from_utf8_lossy(found).into_owned(),
    }
}

/// 1 to 15 digits (E.164's longest), kept as text: leading zeros matter.
pub fn valid_msisdn(b: &[u8]) -> bool {
    b.len() <= 15 && parse_digits(b).is_some()
}

fn digits(field: &'static str, b: &[u8], rule: &'static str) -> Result<u64, RowRejection> {
    parse_digits(b).ok_or_else(|| field_error(field, rule, b))
}

const BYTES_RULE: &str = "an integer from 0 to 10^15 (a petabyte)";
const SECONDS_RULE: &str = "an integer from 0 to 31622400 (366 days)";

/// An amount: digits, at most `max`.
fn bounded(
    field: &'static str,
    b: &[u8],
    max: u64,
    rule: &'static str,
) -> Result<u64, RowRejection> {
    match parse_digits(b) {
        Some(n) if n <= max => Ok(n),
        _ => Err(field_error(field, rule, b)),
    }
}

/// The value of 1 to 19 ASCII digits (every such value fits a `u64`); `None` for anything else.
fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.len() > 19 {
        return None;
    }
    parse_u64(b)
}

/// Any `u64` as `to_string` writes it (digits only: no sign, no space), up to 20 digits: a
/// record's line number, which `encode_record` writes whatever it is.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn time(field: &'static str, b: &[u8]) -> Result<Timestamp, RowRejection> {
    Timestamp::parse_bytes(b).map_err(|error| RowRejection::Time { field, error })
}

/// A validated row: the MSISDN and its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrRow {
    pub msisdn: String,
    pub usage: Usage,
}

/// Validates one row of a file of `kind` (already split into fields): every field typed and in
/// range, the row reduced to its usage.
pub fn validate_row(
    kind: CdrKind,
    fields: &[std::borrow::Cow<'_, [u8]>],
) -> Result<CdrRow, RowRejection> {
    if fields.len() != kind.fields() {
        return Err(RowRejection::FieldCount {
            expected: kind.fields(),
            found: fields.len(),
        });
    }
    let row: Vec<&[u8]> = fields.iter().map(|f| f.as_ref()).collect();
    let (msisdn, usage) = row_usage(kind, &row, true)?;
    Ok(CdrRow {
        msisdn: msisdn.to_string(),
        usage,
    })
}

/// Checks a row's fields (`kind.fields()` of them) and reduces it to its MSISDN and usage. With
/// `parse_address` the IP address is parsed; without, only its characters are checked (for
/// records a publisher has validated already, on the consumer's hot path).
fn row_usage(
    kind: CdrKind,
    row: &[&[u8]],
    parse_address: bool,
) -> Result<(Msisdn, Usage), RowRejection> {
    let msisdn =
        Msisdn::parse(row[0]).ok_or_else(|| field_error("msisdn", "1 to 15 digits", row[0]))?;
    digits("tower_id", row[1], "a non-negative integer")?;
    let usage = match kind {
        CdrKind::Data => {
            let data_type = match row[4] {
                b"video" => DataType::Video,
                b"audio" => DataType::Audio,
                b"image" => DataType::Image,
                b"text" => DataType::Text,
                b"application" => DataType::Application,
                other => {
                    return Err(field_error(
                        DATA_FIELDS[4],
                        "one of video, audio, image, text, application",
                        other,
                    ));
                }
            };
            let ip = row[5];
            let address_ok = if parse_address {
                std::str::from_utf8(ip)
                    .ok()
                    .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok())
            } else {
                !ip.is_empty()
                    && ip.len() <= 45
                    && ip
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || *b == b'.' || *b == b':')
            };
            if !address_ok {
                return Err(field_error(DATA_FIELDS[5], "an IPv4 or IPv6 address", ip));
            }
            let url = row[6];
            if url.is_empty()
                || url
                    .iter()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(field_error(DATA_FIELDS[6], "a URL without spaces", url));
            }
            Usage {
                at: time(DATA_FIELDS[7], row[7])?,
                usage_type: UsageType::Data(data_type),
                up: bounded(DATA_FIELDS[2], row[2], MAX_ROW_BYTES, BYTES_RULE)?,
                down: bounded(DATA_FIELDS[3], row[3], MAX_ROW_BYTES, BYTES_RULE)?,
                seconds: 0,
            }
        }
        CdrKind::Voice => {
            let call_type = match row[2] {
                b"voice" => CallType::Voice,
                b"video" => CallType::Video,
                other => return Err(field_error(VOICE_FIELDS[2], "voice or video", other)),
            };
            if !valid_msisdn(row[3]) {
                return Err(field_error(VOICE_FIELDS[3], "1 to 15 digits", row[3]));
            }
            Usage {
                at: time(VOICE_FIELDS[5], row[5])?,
                usage_type: UsageType::Call(call_type),
                up: 0,
                down: 0,
                seconds: bounded(VOICE_FIELDS[4], row[4], MAX_CALL_SECONDS, SECONDS_RULE)?,
            }
        }
    };
    Ok((msisdn, usage))
}

/// Where a row came from: the object, its content hash and the line (1 is the header). The same
/// file uploaded twice has the same hash, so its rows have the same identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowId {
    pub source: String,
    pub etag: String,
    pub line: u64,
}

impl RowId {
    /// A short text that names the row among all rows: `<etag>:<line>` (the hash alone names
    /// the content, whatever the object was called).
    pub fn ledger_entry(&self) -> String {
        format!("{}:{}", self.etag, self.line)
    }
}

/// A row as published: `kind,source,etag,line,<the row's fields>`, quoted as CSV where needed.
pub fn encode_record(kind: CdrKind, id: &RowId, fields: &[std::borrow::Cow<'_, [u8]>]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(kind.name());
    for field in [
        id.source.as_bytes(),
        id.etag.as_bytes(),
        id.line.to_string().as_bytes(),
    ]
    .into_iter()
    .chain(fields.iter().map(|f| f.as_ref()))
    {
        out.push(',');
        push_csv_field(&mut out, field);
    }
    out
}

fn push_csv_field(out: &mut String, field: &[u8]) {
    let text = String::from_utf8_lossy(field);
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

/// Why a published record was rejected by a consumer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordRejection {
    #[error("not a CDR record: the first field must be `data` or `voice`")]
    Kind,
    #[error("field `{0}` of the record's identity is missing or invalid")]
    Identity(&'static str),
    #[error("{0}")]
    Row(#[from] RowRejection),
}

/// An MSISDN as digits and their count: a number to hash and compare, and its text back with its
/// leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn {
    len: u8,
    digits: u64,
}

impl Msisdn {
    /// 1 to 15 digits.
    pub fn parse(b: &[u8]) -> Option<Msisdn> {
        if b.len() > 15 {
            return None;
        }
        let digits = parse_digits(b)?;
        Some(Msisdn {
            len: b.len() as u8,
            digits,
        })
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.digits, width = usize::from(self.len))
    }
}

/// A decoded record: its identity, its MSISDN and its usage. Borrows the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrRecord<'a> {
    pub kind: CdrKind,
    pub source: std::borrow::Cow<'a, [u8]>,
    pub etag: std::borrow::Cow<'a, [u8]>,
    pub line: u64,
    pub msisdn: Msisdn,
    pub usage: Usage,
}

/// The fields of a record without quotes: at most 16, no allocation (commas found by `memchr`).
/// They are written into `fields` (no copy of the array on return); returns how many.
fn split_plain<'a>(value: &'a [u8], fields: &mut [&'a [u8]; 16]) -> Option<usize> {
    let mut n = 0;
    let mut start = 0;
    for at in memchr::memchr_iter(b',', value) {
        *fields.get_mut(n)? = &value[start..at];
        n += 1;
        start = at + 1;
    }
    *fields.get_mut(n)? = &value[start..];
    Some(n + 1)
}

impl<'a> CdrRecord<'a> {
    /// Decodes a published record, validating what usage needs: the kind, the identity, the
    /// MSISDN, the type, the amounts and the time (and, for data, that the address and URL are
    /// plausible; the publisher checked them fully).
    pub fn decode(value: &'a [u8]) -> Result<CdrRecord<'a>, RecordRejection> {
        use std::borrow::Cow;
        let value = value.strip_suffix(b"\n").unwrap_or(value);
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        if memchr::memchr(b'"', value).is_some() {
            let mut owned = Vec::with_capacity(12);
            split_csv(value, &mut owned)?;
            let plain: Vec<&[u8]> = owned.iter().map(|f| f.as_ref()).collect();
            let record = Self::from_fields(&plain)?;
            let own = |c: Cow<'_, [u8]>| Cow::Owned(c.into_owned());
            return Ok(CdrRecord {
                source: own(record.source),
                etag: own(record.etag),
                ..record
            });
        }
        let mut fields = [&[][..]; 16];
        let n = split_plain(value, &mut fields).ok_or(RowRejection::FieldCount {
            expected: 12,
            found: 17,
        })?;
        Self::from_fields(&fields[..n])
    }

    fn from_fields<'b>(f: &[&'b [u8]]) -> Result<CdrRecord<'b>, RecordRejection> {
        use std::borrow::Cow;
        let kind = match f.first().copied() {
            Some(b"data") => CdrKind::Data,
            Some(b"voice") => CdrKind::Voice,
            _ => return Err(RecordRejection::Kind),
        };
        if f.len() != 4 + kind.fields() {
            return Err(RowRejection::FieldCount {
                expected: kind.fields(),
                found: f.len().saturating_sub(4),
            }
            .into());
        }
        let non_empty = |i: usize, name: &'static str| {
            Some(f[i])
                .filter(|v| !v.is_empty())
                .ok_or(RecordRejection::Identity(name))
        };
        let source = non_empty(1, "source")?;
        let etag = non_empty(2, "etag")?;
        let line = parse_u64(f[3]).ok_or(RecordRejection::Identity("line"))?;
        let (msisdn, usage) = row_usage(kind, &f[4..], false)?;
        Ok(CdrRecord {
            kind,
            source: Cow::Borrowed(source),
            etag: Cow::Borrowed(etag),
            line,
            msisdn,
            usage,
        })
    }
}

/// An hourly usage item's key: (msisdn, hour, usage type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    pub msisdn: Msisdn,
    pub hour: Timestamp,
    pub usage_type: UsageType,
}

/// Totals of one usage item, 128 bits wide: rows are bounded (`MAX_ROW_BYTES`,
/// `MAX_CALL_SECONDS`), so no realistic number of them reaches the bound, and every addition is
/// still checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub up: u128,
    pub down: u128,
    pub seconds: u128,
    pub records: u128,
}

/// A total would pass what 128 bits hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the usage item's total would pass 2^128 - 1")]
pub struct TotalOverflow;

impl UsageTotals {
    /// Adds a row's usage, or leaves the totals as they were if any would overflow.
    pub fn add(&mut self, u: &Usage) -> Result<(), TotalOverflow> {
        self.merge(&UsageTotals {
            up: u128::from(u.up),
            down: u128::from(u.down),
            seconds: u128::from(u.seconds),
            records: 1,
        })
    }

    /// Adds another item's totals, or leaves these as they were if any would overflow.
    pub fn merge(&mut self, o: &UsageTotals) -> Result<(), TotalOverflow> {
        let sum = UsageTotals {
            up: self.up.checked_add(o.up).ok_or(TotalOverflow)?,
            down: self.down.checked_add(o.down).ok_or(TotalOverflow)?,
            seconds: self.seconds.checked_add(o.seconds).ok_or(TotalOverflow)?,
            records: self.records.checked_add(o.records).ok_or(TotalOverflow)?,
        };
        *self = sum;
        Ok(())
    }

    /// Bytes (up plus down) for data, seconds for calls.
    pub fn total(&self, usage_type: UsageType) -> Result<u128, TotalOverflow> {
        match usage_type {
            UsageType::Data(_) => self.up.checked_add(self.down).ok_or(TotalOverflow),
            UsageType::Call(_) => Ok(self.seconds),
        }
    }
}

/// A row's identity within a fold: the file (an index into `UsageFold::files`) and the line.
pub type FoldedRow = (u32, u64);

/// The fold's maps hash with rustc's FxHash: its keys are integers and short byte strings of
/// trusted origin (no defence against chosen collisions is needed within one batch).
type FoldMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// What became of one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded<'p> {
    Added,
    /// Its row was folded already in this batch.
    Repeated,
    Rejected {
        payload: Option<&'p [u8]>,
        reason: String,
    },
}

/// Lines below this are remembered in a bitset per file (128 KiB at most per file)...
const BITSET_LINES: u64 = 1 << 20;
/// ...within 512 KiB for all the files of a batch; other lines go to a set that grows with the
/// batch's records, not with what their line numbers say. A batch from many files, or with huge
/// line numbers, therefore holds at most this plus a few words per record.
const MAX_BITSET_WORDS: usize = 1 << 16;

/// A batch folded into usage items: each item's totals and the rows they came from, each row
/// once (a row delivered twice in one batch is folded once). Files are interned by content hash.
#[derive(Debug, Default, Clone)]
pub struct UsageFold {
    /// (source, content hash) of each file seen, by index.
    pub files: Vec<(String, String)>,
    file_index: FoldMap<Vec<u8>, u32>,
    /// The file of the previous record (rows of one file tend to come together).
    last_file: Option<u32>,
    /// Per file, a bit per line folded (lines up to `BITSET_LINES`; beyond, `seen_far`).
    seen: Vec<Vec<u64>>,
    /// Words of all the bitsets in `seen`.
    bitset_words: usize,
    seen_far: FoldMap<FoldedRow, ()>,
    index: FoldMap<UsageKey, u32>,
    /// Each item's key and totals.
    pub items: Vec<(UsageKey, UsageTotals)>,
    /// Each folded row, with the index of its item and its usage.
    pub rows: Vec<(u32, FoldedRow, Usage)>,
}

impl UsageFold {
    /// A fold sized for a batch of `records`.
    pub fn with_capacity(records: usize) -> Self {
        Self {
            files: Vec::new(),
            file_index: FoldMap::default(),
            last_file: None,
            seen: Vec::new(),
            bitset_words: 0,
            seen_far: FoldMap::default(),
            index: FoldMap::with_capacity_and_hasher(records, Default::default()),
            items: Vec::with_capacity(records),
            rows: Vec::with_capacity(records),
        }
    }

    /// Empties the fold for the next batch, keeping its memory (a warm function reuses it
    /// rather than touching fresh pages for every batch).
    pub fn clear(&mut self) {
        self.files.clear();
        self.file_index.clear();
        self.last_file = None;
        self.seen.clear();
        self.bitset_words = 0;
        self.seen_far.clear();
        self.index.clear();
        self.items.clear();
        self.rows.clear();
    }

    /// Folds a record in; false when its row was already folded in this batch, an error when its
    /// item's totals would overflow (the row is then not folded).
    pub fn add(&mut self, record: &CdrRecord<'_>) -> Result<bool, TotalOverflow> {
        let same = self
            .last_file
            .filter(|&f| self.files[f as usize].1.as_bytes() == record.etag.as_ref());
        let file = match same.or_else(|| self.file_index.get(record.etag.as_ref()).copied()) {
            Some(i) => i,
            None => {
                let i = self.files.len() as u32;
                self.files.push((
                    String::from_utf8_lossy(&record.source).into_owned(),
                    String::from_utf8_lossy(&record.etag).into_owned(),
                ));
                self.file_index.insert(record.etag.to_vec(), i);
                self.seen.push(Vec::new());
                i
            }
        };
        self.last_file = Some(file);
        let (word, bit) = ((record.line / 64) as usize, 1u64 << (record.line % 64));
        let grow = (word + 1).saturating_sub(self.seen[file as usize].len());
        if record.line < BITSET_LINES && self.bitset_words + grow <= MAX_BITSET_WORDS {
            let bits = &mut self.seen[file as usize];
            if grow > 0 {
                bits.resize(word + 1, 0);
                self.bitset_words += grow;
            }
            if bits[word] & bit != 0 {
                return Ok(false);
            }
            bits[word] |= bit;
        } else if self.seen_far.insert((file, record.line), ()).is_some() {
            return Ok(false);
        }
        let key = UsageKey {
            msisdn: record.msisdn,
            hour: record.usage.at.hour_start(),
            usage_type: record.usage.usage_type,
        };
        let next = self.items.len() as u32;
        let item = *self.index.entry(key).or_insert(next);
        if item == next {
            self.items.push((key, UsageTotals::default()));
        }
        if self.items[item as usize].1.add(&record.usage).is_err() {
            return Err(TotalOverflow);
        }
        self.rows.push((item, (file, record.line), record.usage));
        Ok(true)
    }

    /// Decodes and folds every record of a batch, in order, and tells `each` what became of
    /// record `i`: folded, a repeat of a row already folded, or rejected with the payload (when
    /// it could be had) and the reason.
    pub fn fold_records(
        &mut self,
        records: &[SourceRecord<'_>],
        mut each: impl FnMut(usize, Folded<'_>),
    ) {
        let mut buf = Vec::with_capacity(256);
        for (i, record) in records.iter().enumerate() {
            match record.payload(&mut buf) {
                Ok(payload) => match CdrRecord::decode(payload) {
                    Ok(r) => match self.add(&r) {
                        Ok(true) => each(i, Folded::Added),
                        Ok(false) => each(i, Folded::Repeated),
                        Err(e) => each(
                            i,
                            Folded::Rejected {
                                payload: Some(payload),
                                reason: e.to_string(),
                            },
                        ),
                    },
                    Err(e) => each(
                        i,
                        Folded::Rejected {
                            payload: Some(payload),
                            reason: e.to_string(),
                        },
                    ),
                },
                Err(e) => each(
                    i,
                    Folded::Rejected {
                        payload: None,
                        reason: e.to_string(),
                    },
                ),
            }
        }
    }

    /// The rows of each item with their usage, in item order.
    pub fn rows_by_item(&self) -> Vec<Vec<(FoldedRow, Usage)>> {
        let mut out = vec![Vec::new(); self.items.len()];
        for (item, row, usage) in &self.rows {
            out[*item as usize].push((*row, *usage));
        }
        out
    }

    /// A folded row's ledger entry (`<content hash>:<line>`), as `RowId::ledger_entry` gives.
    pub fn ledger_entry(&self, (file, line): FoldedRow) -> String {
        let etag = self.files.get(file as usize).map_or("", |f| f.1.as_str());
        format!("{etag}:{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Just;
    use std::borrow::Cow;

    fn fields(line: &str) -> Vec<Cow<'_, [u8]>> {
        let mut out = Vec::new();
        split_csv(line.as_bytes(), &mut out).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn file_names_are_read_strictly() {
        let f = CdrFile::from_name("upload/cdr_data_20240101_000320.csv")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.kind, CdrKind::Data);
        assert_eq!(f.stamp.to_seconds_string(), "2024-01-01 00:03:20");
        assert_eq!(f.name(), "cdr_data_20240101_000320.csv");
        assert_eq!(
            CdrFile::from_name("cdr_voice_20240101_000320.csv").map(|f| f.kind),
            Ok(CdrKind::Voice)
        );
        for bad in [
            "cdr_sms_20240101_000320.csv",
            "cdr_data_20240101_000320.txt",
            "cdr_data_2024.csv",
            "notes.csv",
        ] {
            assert!(
                matches!(CdrFile::from_name(bad), Err(FileNameError::Unknown(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            CdrFile::from_name("cdr_data_20241301_000320.csv"),
            Err(FileNameError::Stamp { .. })
        ));
    }

    #[test]
    fn the_spec_examples_are_valid() {
        let data = "9724515726732,1800,787119,662662,application,221.128.139.195,http://www.kelly-williams.biz/,2024-01-01 01:01:15.291148";
        let row = validate_row(CdrKind::Data, &fields(data)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.msisdn, "9724515726732");
        assert_eq!(row.usage.total(), 787_119 + 662_662);
        assert_eq!(row.usage.usage_type, UsageType::Data(DataType::Application));
        let voice = "5837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29.707413";
        let row = validate_row(CdrKind::Voice, &fields(voice)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((row.usage.seconds, row.usage.total()), (262, 262));
        // A leading zero stays.
        let zero = "0724515726732,1,1,2,text,::1,http://x/,2024-01-01 01:01:15";
        assert_eq!(
            validate_row(CdrKind::Data, &fields(zero)).map(|r| r.msisdn),
            Ok("0724515726732".into())
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (
                CdrKind::Data,
                "97245x5726732,1800,1,2,text,1.2.3.4,http://x/,2024-01-01 01:01:15",
                "`msisdn`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,-1,2,text,1.2.3.4,http://x/,2024-01-01 01:01:15",
                "`up_bytes`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2.5,text,1.2.3.4,http://x/,2024-01-01 01:01:15",
                "`down_bytes`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2,email,1.2.3.4,http://x/,2024-01-01 01:01:15",
                "`data_type`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2,text,1.2.3,http://x/,2024-01-01 01:01:15",
                "`ip_address`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2,text,1.2.3.4,,2024-01-01 01:01:15",
                "`website_url`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2,text,1.2.3.4,http://x/,2024-02-30 01:01:15",
                "`event_datetime`",
            ),
            (
                CdrKind::Data,
                "9724515726732,1800,1,2,text,1.2.3.4,http://x/",
                "expected 8 fields, found 7",
            ),
            (
                CdrKind::Voice,
                "5837025539272,724,sms,1693098090050,262,2024-01-01 01:01:29",
                "`call_type`",
            ),
            (
                CdrKind::Voice,
                "5837025539272,724,voice,+1693098090050,262,2024-01-01 01:01:29",
                "`dest_nr`",
            ),
            (
                CdrKind::Voice,
                "5837025539272,724,voice,1693098090050,,2024-01-01 01:01:29",
                "`call_duration_sec`",
            ),
            (
                CdrKind::Voice,
                "5837025539272,x,voice,1693098090050,3,2024-01-01 01:01:29",
                "`tower_id`",
            ),
        ];
        for (kind, line, needle) in cases {
            let e = validate_row(kind, &fields(line))
                .expect_err(line)
                .to_string();
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn records_carry_identity_and_fold_once_per_row() {
        let line = "9724515726732,1800,787119,662662,application,221.128.139.195,http://www.kelly-williams.biz/,2024-01-01 01:01:15.291148";
        let id = RowId {
            source: "upload/cdr_data_20240101_000320.csv".into(),
            etag: "9b2cf535".into(),
            line: 2,
        };
        let value = encode_record(CdrKind::Data, &id, &fields(line));
        assert!(
            value.starts_with("data,upload/cdr_data_20240101_000320.csv,9b2cf535,2,9724515726732,"),
            "{value}"
        );
        let r = CdrRecord::decode(value.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.line, r.msisdn.to_string(), r.usage.total()),
            (2, "9724515726732".into(), 1_449_781)
        );
        // A source with a comma is quoted, and comes back whole.
        let odd = RowId {
            source: "a,b/cdr_voice_20240101_000320.csv".into(),
            ..id.clone()
        };
        let voice = "0837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29";
        let value = encode_record(CdrKind::Voice, &odd, &fields(voice));
        let r = CdrRecord::decode(value.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.source.as_ref(), b"a,b/cdr_voice_20240101_000320.csv");
        assert_eq!(r.msisdn.to_string(), "0837025539272", "leading zero kept");

        let mut fold = UsageFold::default();
        let encoded = encode_record(CdrKind::Voice, &id, &fields(voice));
        let first = CdrRecord::decode(encoded.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fold.add(&first), Ok(true));
        assert_eq!(fold.add(&first), Ok(false), "the same row twice folds once");
        let (_, totals) = fold.items[0];
        assert_eq!((totals.seconds, totals.records), (262, 1));
        assert_eq!(fold.ledger_entry(fold.rows_by_item()[0][0].0), "9b2cf535:2");

        for (bad, needle) in [
            ("sms,a,b,2,1,2,3", "first field"),
            (
                "voice,a,,2,0837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29",
                "`etag`",
            ),
            (
                "voice,a,b,x,0837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29",
                "`line`",
            ),
            (
                "voice,a,b,2,0837025539272,724,voice,1693098090050,-4,2024-01-01 01:01:29",
                "`call_duration_sec`",
            ),
            (
                "data,a,b,2,1,2,3,4,text,1.2.3.4,http://x/",
                "expected 8 fields",
            ),
        ] {
            let e = CdrRecord::decode(bad.as_bytes())
                .expect_err(bad)
                .to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn plain_splitting_finds_every_comma() {
        for text in [
            "",
            ",",
            "a",
            "a,b",
            ",,,",
            "abcdefgh,ijklmnop,",
            "a,bcdefghijklmnopqrstuvw,xyz,,1234567,8",
        ] {
            let mut fields = [&[][..]; 16];
            let n = split_plain(text.as_bytes(), &mut fields).unwrap_or_else(|| panic!("{text}"));
            let naive: Vec<&[u8]> = text.as_bytes().split(|&b| b == b',').collect();
            assert_eq!(&fields[..n], naive.as_slice(), "{text:?}");
        }
        assert!(
            split_plain(&[b','; 16], &mut [&[][..]; 16]).is_none(),
            "17 fields are too many"
        );
    }

    fn naive_digits(b: &[u8]) -> Option<u64> {
        if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(b.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    }

    #[test]
    fn digits_are_read_exactly_at_every_length() {
        for text in [
            "0",
            "7",
            "00000000",
            "12345678",
            "123456789",
            "0724515726732",
            "9999999999999999",
            "12345678901234567",
            "9999999999999999999",
        ] {
            assert_eq!(parse_digits(text.as_bytes()), text.parse().ok(), "{text}");
        }
        for bad in [
            "",
            "1a",
            "/",
            ":",
            "12 4",
            "-1",
            "1.5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_digits(bad.as_bytes()), None, "{bad:?}");
        }
        // Bytes next to the digits, and ones whose high nibble is 3 but are not digits.
        for b in 0..=255u8 {
            for at in 0..9 {
                let mut text = *b"123456789";
                text[at] = b;
                assert_eq!(parse_digits(&text), naive_digits(&text), "{text:?}");
                assert_eq!(
                    parse_digits(&text[..at.max(1)]),
                    naive_digits(&text[..at.max(1)])
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn digits_agree_with_a_plain_reading(text in proptest::collection::vec(
            proptest::prop_oneof![9 => b'0'..=b'9', 1 => proptest::num::u8::ANY],
            0..22,
        )) {
            proptest::prop_assert_eq!(parse_digits(&text), naive_digits(&text));
        }

        #[test]
        fn splitting_agrees_with_a_plain_split(text in proptest::collection::vec(
            proptest::prop_oneof![1 => Just(b','), 6 => proptest::num::u8::ANY],
            0..300,
        )) {
            let naive: Vec<&[u8]> = text.split(|&b| b == b',').collect();
            let mut fields = [&[][..]; 16];
            match split_plain(&text, &mut fields) {
                Some(n) => proptest::prop_assert_eq!(&fields[..n], naive.as_slice()),
                None => proptest::prop_assert!(naive.len() > 16),
            }
        }
    }

    #[test]
    fn every_line_number_a_record_can_carry_decodes() {
        // Found by tests/fuzz_decoders.rs: a line past 19 digits was written but not read back.
        let voice = "0837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29";
        for line in [
            0,
            9_999_999_999_999_999_999,
            10_000_000_000_000_000_000,
            u64::MAX,
        ] {
            let id = RowId {
                source: "cdr_voice_20240101_000320.csv".into(),
                etag: "e1".into(),
                line,
            };
            let value = encode_record(CdrKind::Voice, &id, &fields(voice));
            let r = CdrRecord::decode(value.as_bytes()).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(r.line, line);
        }
        for bad in [
            "18446744073709551616",
            "99999999999999999999",
            "1844674407370955161x",
        ] {
            let value =
                format!("voice,f.csv,e1,{bad},0837025539272,724,voice,1,262,2024-01-01 01:01:29");
            assert_eq!(
                CdrRecord::decode(value.as_bytes()),
                Err(RecordRejection::Identity("line")),
                "{bad}"
            );
        }
    }

    #[test]
    fn far_lines_are_folded_once_too() {
        let value =
            "voice,f.csv,e1,5000000,0837025539272,724,voice,1693098090050,262,2024-01-01 01:01:29";
        let r = CdrRecord::decode(value.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut fold = UsageFold::default();
        assert_eq!(fold.add(&r), Ok(true));
        assert_eq!(fold.add(&r), Ok(false));
    }

    #[test]
    fn quoted_fields_are_unquoted() {
        let f = fields(r#"a,"b,c","d""e",f"#);
        let texts: Vec<&[u8]> = f.iter().map(|c| c.as_ref()).collect();
        assert_eq!(texts, [&b"a"[..], b"b,c", b"d\"e", b"f"]);
        let mut out = Vec::new();
        assert_eq!(split_csv(br#"a,"b"#, &mut out), Err(RowRejection::Quote));
    }

    #[test]
    fn costs_are_exact_micro_zar() {
        // 1 GB of data is 49 ZAR; one minute of a call is 1 ZAR.
        assert_eq!(
            Usage::cost_micro_zar(UsageType::Data(DataType::Text), 1_000_000_000),
            Some(49_000_000)
        );
        assert_eq!(
            Usage::cost_micro_zar(UsageType::Call(CallType::Voice), 60),
            Some(1_000_000)
        );
        assert_eq!(
            Usage::cost_micro_zar(UsageType::Call(CallType::Voice), 1),
            Some(16_667)
        );
        // Past 128 bits there is no cost, rather than a wrapped one.
        assert_eq!(
            Usage::cost_micro_zar(UsageType::Call(CallType::Voice), u128::MAX / 2),
            None
        );
        assert_eq!(
            UsageType::from_names("data", "video"),
            Some(UsageType::Data(DataType::Video))
        );
        assert_eq!(
            UsageType::from_names("call", "video"),
            Some(UsageType::Call(CallType::Video))
        );
        assert_eq!(UsageType::from_names("call", "text"), None);
    }
}
