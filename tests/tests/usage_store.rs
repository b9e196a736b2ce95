//! The usage store on moto's DynamoDB: batches of CDR records folded and applied, replayed,
//! re-batched, a file processed twice and a writer stopped between items; every total is
//! compared with totals summed here straight from the rows.

use aggregate_usage::AggregateUsage;
use wtc_aws::UsageStore;
use wtc_core::cdr::{CdrRecord, UsageFold};
use wtc_tests::cdr::{Totals, expected, records, stored_usage};
use wtc_tests::{Harness, kafka_event};

fn fold(records: &[String]) -> UsageFold {
    let mut fold = UsageFold::with_capacity(records.len());
    for r in records {
        fold.add(&CdrRecord::decode(r.as_bytes()).unwrap())
            .expect("the test rows are far from any total's bound");
    }
    fold
}

async fn stored(store: &UsageStore, records: &[String]) -> Totals {
    stored_usage(store, records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_count_each_row_once_whatever_the_deliveries() {
    let h = Harness::start("usage").await.unwrap();
    let store = UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone());
    let all = records();
    let want = expected(&all);

    // Batches of 250; the second delivered twice.
    for (n, batch) in all.chunks(250).enumerate() {
        let out = store.apply(&fold(batch)).await;
        assert!(out.failed.is_empty(), "{out:?}");
        assert_eq!((out.applied, out.duplicates), (batch.len(), 0));
        if n == 1 {
            let again = store.apply(&fold(batch)).await;
            assert_eq!((again.applied, again.duplicates), (0, batch.len()));
        }
    }
    // A retry with other boundaries, straddling batches already applied.
    let again = store.apply(&fold(&all[600..1_000])).await;
    assert_eq!((again.applied, again.duplicates), (0, 400));
    // The same file processed again: the same content hash, the same rows.
    let again = store.apply(&fold(&all[300..600])).await;
    assert_eq!((again.applied, again.duplicates), (0, 300));
    assert_eq!(stored(&store, &all).await, want);

    // A writer stopped between two items: part of a batch is in, then the whole batch comes again
    // mixed with new rows (a fresh table: the second store's items are separate).
    let fresh = UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone() + "-crash");
    wtc_aws::schema::ensure_table(
        &h.dynamo,
        &(h.names.usage_table.clone() + "-crash"),
        wtc_aws::schema::USAGE,
    )
    .await
    .unwrap();
    let batch = &all[..700];
    let partial = fold(batch);
    let mut first_items = partial.clone();
    first_items.items.truncate(partial.items.len() / 2);
    first_items
        .rows
        .retain(|(item, _, _)| (*item as usize) < first_items.items.len());
    let out = fresh.apply(&first_items).await;
    assert!(out.applied > 0 && out.applied < 700, "{out:?}");
    let out = fresh.apply(&fold(&all)).await;
    assert_eq!(out.applied + out.duplicates, all.len());
    assert_eq!(stored(&fresh, &all).await, want);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_usage_stores_each_row_once_and_dead_letters_bad_records() {
    let h = Harness::start("aggregate").await.unwrap();
    let function = AggregateUsage::new(
        UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone()),
        h.function.dead_letters.clone(),
    );
    let all = records();
    let bad = [
        "data,upload/cdr_data_20240101_000320.csv,etag9,2,123x,17,1,2,text,10.0.0.1,http://x/,2024-01-01 01:00:00",
        "voice,upload/cdr_voice_20240101_000320.csv,etag9,3,0712345678901,17,sms,0712345678901,5,2024-01-01 01:00:00",
        "not a record",
    ];
    let mut values: Vec<Vec<u8>> = all.iter().map(|r| r.clone().into_bytes()).collect();
    values.splice(100..100, bad.iter().map(|b| b.as_bytes().to_vec()));
    let event = |from: usize, to: usize| {
        kafka_event(
            &(from..to)
                .map(|i| ((i % 3) as i32, i as i64, values[i].clone()))
                .collect::<Vec<_>>(),
        )
    };
    let first = function.handle(&event(0, 700)).await;
    assert_eq!(first.report.failed, 0, "{:?}", first.error);
    assert_eq!((first.report.applied, first.report.rejected), (697, 3));
    assert!(first.response().is_ok());
    // Redelivered, then re-batched with the rest.
    let again = function.handle(&event(0, 700)).await.report;
    assert_eq!((again.applied, again.duplicates), (0, 697));
    let rest = function.handle(&event(350, values.len())).await.report;
    assert_eq!(rest.applied, all.len() - 697);
    assert_eq!(stored(&function.store, &all).await, expected(&all));

    let letters = h.dead_letters().await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(
        letters.len(),
        6,
        "three bad records, delivered twice: {reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("`msisdn`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("`call_type`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("first field")),
        "{reasons:?}"
    );
    h.stop().await;
}
