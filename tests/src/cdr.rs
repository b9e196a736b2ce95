//! CDR records for the tests, and their usage totals summed straight from the rows' text.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use wtc_core::cdr::{CdrKind, RowId, encode_record, split_csv};

/// Rows of two files of each kind over two hours, for a few MSISDNs (so items hold many rows).
pub fn records() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let msisdns: Vec<String> = (0..12)
        .map(|i| format!("0{:012}", 7_000_000 + i * 131))
        .collect();
    let types = ["video", "audio", "image", "text", "application"];
    let mut out = Vec::new();
    for (file, kind) in [
        (0, CdrKind::Data),
        (1, CdrKind::Voice),
        (2, CdrKind::Data),
        (3, CdrKind::Voice),
    ] {
        let id = |line: u64| RowId {
            source: format!("upload/cdr_{}_2024010{}_000320.csv", kind.name(), file),
            etag: format!("etag{file}"),
            line,
        };
        for line in 2..=301u64 {
            let msisdn = &msisdns[rng.random_range(0..msisdns.len())];
            let at = format!(
                "2024-01-01 0{}:{:02}:{:02}.{:06}",
                rng.random_range(1..3),
                rng.random_range(0..60),
                rng.random_range(0..60),
                rng.random_range(0..1_000_000)
            );
            let row = match kind {
                CdrKind::Data => format!(
                    "{msisdn},17,{},{},{},10.0.0.1,http://example.com/,{at}",
                    rng.random_range(100_000..=1_000_000),
                    rng.random_range(100_000..=1_000_000),
                    types[rng.random_range(0..types.len())]
                ),
                CdrKind::Voice => format!(
                    "{msisdn},17,{},0712345678901,{},{at}",
                    if rng.random_bool(0.5) {
                        "voice"
                    } else {
                        "video"
                    },
                    rng.random_range(1..=1_800)
                ),
            };
            let mut fields = Vec::new();
            split_csv(row.as_bytes(), &mut fields).unwrap();
            out.push(encode_record(kind, &id(line), &fields));
        }
    }
    out
}

/// (msisdn, hour, category, type) -> (up, down, seconds, rows), summed from the CSV text.
pub type Totals = BTreeMap<(String, String, String, String), (u128, u128, u128, u128)>;

pub fn expected(records: &[String]) -> Totals {
    let mut out = Totals::new();
    for r in records {
        let f: Vec<&str> = r.split(',').collect();
        let (kind, msisdn) = (f[0], f[4].to_owned());
        let (category, usage_type, up, down, seconds, at) = if kind == "data" {
            (
                "data",
                f[8],
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
                0,
                f[11],
            )
        } else {
            ("call", f[6], 0, 0, f[8].parse().unwrap(), f[9])
        };
        let hour = format!("{}:00:00", &at[..13]);
        let e = out
            .entry((msisdn, hour, category.to_owned(), usage_type.to_owned()))
            .or_default();
        e.0 += up;
        e.1 += down;
        e.2 += seconds;
        e.3 += 1;
    }
    out
}
