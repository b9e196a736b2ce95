//! Folding ticks into M1, M30 and H1 candles (every tick updates all three).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wtc_core::candles::CandleFold;
use wtc_core::simulate::ForexSimulator;
use wtc_core::tick::Tick;

fn bench(c: &mut Criterion) {
    let ticks: Vec<Tick> = ForexSimulator::new(9).take(100_000).collect();
    let mut group = c.benchmark_group("candles");
    group.throughput(Throughput::Elements(ticks.len() as u64));
    group.bench_function("fold_ticks_m1_m30_h1", |b| {
        b.iter(|| {
            let mut fold = CandleFold::default();
            for t in &ticks {
                fold.add_tick(black_box(t));
            }
            fold.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
