//! Our indicators against values TA-Lib itself produced on the same candles
//! (`tests/fixtures/talib/generate.py`): every bar, warm-up included, to 1e-9 relative.

use serde_json::Value;
use wtc_core::indicators::{IndicatorSet, IndicatorValues, Ohlc, Price};

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/talib/talib.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists"))
        .expect("fixture is JSON")
}

fn column(series: &Value, name: &str) -> Vec<f64> {
    series[name]
        .as_array()
        .expect("a column")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn check(series: &str, indicator: &str, ours: &[Option<f64>], talib: &Value) {
    let talib = talib.as_array().expect("indicator values");
    assert_eq!(ours.len(), talib.len());
    for (i, (a, b)) in ours.iter().zip(talib).enumerate() {
        match (a, b.as_f64()) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{series} {indicator} bar {i}: ours {a}, TA-Lib {b}"
            ),
            (a, b) => {
                panic!("{series} {indicator} bar {i}: warm-up differs, ours {a:?}, TA-Lib {b:?}")
            }
        }
    }
}

fn run(series: &Value, price: Price) -> Vec<IndicatorValues> {
    let (o, h, l, c) = (
        column(series, "open"),
        column(series, "high"),
        column(series, "low"),
        column(series, "close"),
    );
    let mut set = IndicatorSet::new(price);
    (0..c.len())
        .map(|i| {
            set.update(&Ohlc {
                open: o[i],
                high: h[i],
                low: l[i],
                close: c[i],
            })
        })
        .collect()
}

#[test]
fn every_indicator_matches_talib_on_every_bar() {
    let fixtures = fixtures();
    let all = fixtures["series"].as_array().expect("series");
    assert!(all.len() >= 3);
    for series in all {
        let name = series["name"].as_str().unwrap_or_default();
        let want = &series["indicators"];
        let v = run(series, Price::Close);
        let pick = |f: fn(&IndicatorValues) -> Option<f64>| v.iter().map(f).collect::<Vec<_>>();
        check(name, "sma20", &pick(|v| v.sma20), &want["sma20"]);
        check(name, "ema8", &pick(|v| v.ema8), &want["ema8"]);
        check(name, "ema12", &pick(|v| v.ema12), &want["ema12"]);
        check(name, "ema21", &pick(|v| v.ema21), &want["ema21"]);
        check(name, "ema26", &pick(|v| v.ema26), &want["ema26"]);
        check(name, "rsi14", &pick(|v| v.rsi14), &want["rsi14"]);
        check(
            name,
            "macd",
            &pick(|v| v.macd.map(|m| m.macd)),
            &want["macd"],
        );
        check(
            name,
            "macd_signal",
            &pick(|v| v.macd.map(|m| m.signal)),
            &want["macd_signal"],
        );
        check(
            name,
            "macd_hist",
            &pick(|v| v.macd.map(|m| m.histogram)),
            &want["macd_hist"],
        );
        check(name, "atr8", &pick(|v| v.atr8), &want["atr8"]);
        check(name, "atr21", &pick(|v| v.atr21), &want["atr21"]);

        let on_open = run(series, Price::Open);
        let pick =
            |f: fn(&IndicatorValues) -> Option<f64>| on_open.iter().map(f).collect::<Vec<_>>();
        check(name, "ema8_open", &pick(|v| v.ema8), &want["ema8_open"]);
        check(name, "atr8_open", &pick(|v| v.atr8), &want["atr8_open"]);
    }
}
