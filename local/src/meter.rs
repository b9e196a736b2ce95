//! DynamoDB's bill, read off the wire: the proxy in front of the emulator asks for the capacity
//! every read and write consumed (`ReturnConsumedCapacity: TOTAL`, which DynamoDB answers for
//! free) and tallies it by table, with the time each request was in flight.
//!
//! The units are the emulator's, computed by DynamoDB's sizing rules (dynalite implements them:
//! a write costs a unit per KB of the larger of the item before and after, a read a unit per 4 KB,
//! half that when eventually consistent). A write refused by its condition consumes capacity in
//! DynamoDB too but comes back without a figure, so each is counted and charged one unit (at
//! least what DynamoDB charges).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// At most this many request times are kept between two `take_calls` (older ones are dropped):
/// a batch makes a few hundred requests.
const MAX_CALLS: usize = 100_000;

/// One table's requests and units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub reads: u64,
    pub writes: u64,
    pub read_units: f64,
    pub write_units: f64,
    /// Writes refused by their condition (each charged one write unit above).
    pub refused: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.refused += other.refused;
    }
}

/// When one request left for the emulator and when its answer came back.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub start: Instant,
    pub end: Instant,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, Tally>,
    calls: Vec<Call>,
}

/// The tallies so far.
#[derive(Debug, Default)]
pub struct Meter {
    state: Mutex<State>,
}

/// Whether an operation reads or writes, for the operations whose capacity is metered.
fn kind(operation: &str) -> Option<bool> {
    match operation {
        "GetItem" | "BatchGetItem" | "Query" | "Scan" => Some(false),
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" => Some(true),
        _ => None,
    }
}

/// The operation a DynamoDB request names in `X-Amz-Target` (`DynamoDB_20120810.Query`).
pub fn operation(target: &[u8]) -> Option<&str> {
    let target = std::str::from_utf8(target).ok()?;
    target.strip_prefix("DynamoDB_20120810.")
}

/// The request's body with `ReturnConsumedCapacity: TOTAL` added, for metered operations; `None`
/// leaves the body as it is.
pub fn ask_for_capacity(operation: &str, body: &[u8]) -> Option<Vec<u8>> {
    kind(operation)?;
    let mut request: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    request.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
    serde_json::to_vec(&request).ok()
}

/// The table a request is for (`TableName`, or the first of a batch's `RequestItems`).
fn table_of(body: &[u8]) -> String {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    request["TableName"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            request["RequestItems"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
        })
        .unwrap_or_default()
}

impl Meter {
    /// Records one answered request: `body` is what was sent, `answer` what came back.
    pub fn record(&self, operation: &str, body: &[u8], status: u16, answer: &[u8], call: Call) {
        let Some(write) = kind(operation) else {
            return;
        };
        let answer: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
        let mut units: Vec<(String, f64)> = Vec::new();
        match &answer["ConsumedCapacity"] {
            serde_json::Value::Array(list) => {
                for c in list {
                    units.push(capacity(c));
                }
            }
            c @ serde_json::Value::Object(_) => units.push(capacity(c)),
            _ => {}
        }
        let refused = status == 400
            && answer["__type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.calls.len() >= MAX_CALLS {
            state.calls.remove(0);
        }
        state.calls.push(call);
        let table = units
            .first()
            .map(|(t, _)| t.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| table_of(body));
        let tally = state.tables.entry(table).or_default();
        if write {
            tally.writes += 1;
        } else {
            tally.reads += 1;
        }
        if refused {
            tally.refused += 1;
            tally.write_units += 1.0;
        }
        for (table, u) in units {
            let tally = state.tables.entry(table).or_default();
            if write {
                tally.write_units += u;
            } else {
                tally.read_units += u;
            }
        }
    }

    /// The tallies so far, by table, and cleared.
    pub fn take_tables(&self) -> BTreeMap<String, Tally> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.tables))
            .unwrap_or_default()
    }

    /// The request times so far, and cleared.
    pub fn take_calls(&self) -> Vec<Call> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.calls))
            .unwrap_or_default()
    }
}

fn capacity(c: &serde_json::Value) -> (String, f64) {
    (
        c["TableName"].as_str().unwrap_or_default().to_owned(),
        c["CapacityUnits"].as_f64().unwrap_or(0.0),
    )
}

/// The sum of several tables' tallies.
pub fn total<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Tally {
    let mut sum = Tally::default();
    for t in tallies {
        sum.add(t);
    }
    sum
}

/// The most requests that ran one after another: the largest set of calls none of which
/// overlaps another (taken greedily by earliest end, which is optimal). With a fixed service
/// time per request, a batch's wall time is about this many service times.
pub fn sequential_round_trips(calls: &[Call]) -> usize {
    let mut by_end: Vec<&Call> = calls.iter().collect();
    by_end.sort_by_key(|c| c.end);
    let mut count = 0;
    let mut free_from: Option<Instant> = None;
    for call in by_end {
        if free_from.is_none_or(|t| call.start >= t) {
            count += 1;
            free_from = Some(call.end);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trips_count_the_longest_chain_of_calls_that_do_not_overlap() {
        let t0 = Instant::now();
        let at = |a: u64, b: u64| Call {
            start: t0 + Duration::from_millis(a),
            end: t0 + Duration::from_millis(b),
        };
        // Three waves of parallel calls (0-5, 5-10, 10-15), the second with a straggler.
        let calls = [
            at(0, 5),
            at(0, 5),
            at(1, 5),
            at(5, 10),
            at(5, 12),
            at(12, 17),
            at(12, 17),
        ];
        assert_eq!(sequential_round_trips(&calls), 3);
        assert_eq!(sequential_round_trips(&[]), 0);
    }

    #[test]
    fn units_are_read_from_single_and_batch_answers_and_refusals_cost_a_unit() {
        let meter = Meter::default();
        let call = Call {
            start: Instant::now(),
            end: Instant::now(),
        };
        meter.record(
            "UpdateItem",
            br#"{"TableName":"usage"}"#,
            200,
            br#"{"ConsumedCapacity":{"TableName":"usage","CapacityUnits":2.0}}"#,
            call,
        );
        meter.record(
            "BatchWriteItem",
            br#"{"RequestItems":{"ticks":[]}}"#,
            200,
            br#"{"ConsumedCapacity":[{"TableName":"ticks","CapacityUnits":25.0}]}"#,
            call,
        );
        meter.record(
            "UpdateItem",
            br#"{"TableName":"usage"}"#,
            400,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#,
            call,
        );
        meter.record(
            "Query",
            br#"{"TableName":"usage"}"#,
            200,
            br#"{"ConsumedCapacity":{"TableName":"usage","CapacityUnits":0.5}}"#,
            call,
        );
        meter.record("ListTables", b"{}", 200, b"{}", call);
        let tables = meter.take_tables();
        assert_eq!(
            tables["usage"],
            Tally {
                reads: 1,
                writes: 2,
                read_units: 0.5,
                write_units: 3.0,
                refused: 1
            }
        );
        assert_eq!(tables["ticks"].write_units, 25.0);
        assert_eq!(tables.len(), 2);
        assert_eq!(meter.take_calls().len(), 4);
        assert!(meter.take_tables().is_empty());
    }

    #[test]
    fn capacity_is_asked_for_on_reads_and_writes_only() {
        let body = ask_for_capacity("Query", br#"{"TableName":"t"}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ReturnConsumedCapacity"], "TOTAL");
        assert_eq!(v["TableName"], "t");
        assert!(ask_for_capacity("CreateTable", b"{}").is_none());
        assert_eq!(operation(b"DynamoDB_20120810.Query"), Some("Query"));
        assert_eq!(operation(b"Kinesis_20131202.PutRecords"), None);
    }
}
