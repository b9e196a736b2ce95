//! Updating every indicator of a series (SMA20, EMA8/12/21/26, RSI14, MACD(12,26,9), ATR8/21)
//! for one closed candle. Time per element is time per candle.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wtc_core::indicators::{IndicatorSet, Ohlc, Price};

fn bench(c: &mut Criterion) {
    let mut p = 100.0f64;
    let candles: Vec<Ohlc> = (0..10_000)
        .map(|i| {
            let open = p;
            p *= 1.0 + ((i * 7919 % 201) as f64 - 100.0) * 1e-4;
            Ohlc {
                open,
                high: open.max(p) * 1.001,
                low: open.min(p) * 0.999,
                close: p,
            }
        })
        .collect();
    let mut warmed = IndicatorSet::new(Price::Close);
    candles[..100].iter().for_each(|c| {
        warmed.update(c);
    });
    let mut group = c.benchmark_group("indicators");
    group.throughput(Throughput::Elements(candles.len() as u64));
    group.bench_function("all_indicators_per_closed_candle", |b| {
        b.iter(|| {
            let mut set = warmed.clone();
            for c in &candles {
                black_box(set.update(black_box(c)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
