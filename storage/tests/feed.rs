//! The change feed (storage/src/feed.rs): every committed change of a
//! table once, in log order, from the beginning, a system time or a saved
//! position; erased values never replayed; collected history refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Int64Type, Schema, TimestampMicrosecondType};
use strata_storage::feed::{split_position, FeedStart};
use strata_storage::{Engine, EngineConfig, Op, OpKind, StoreLocation, TxRequest};

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), *n != "_id"))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn put(ids: &[i64], v: &str) -> Op {
    Op {
        kind: OpKind::Put,
        table: "t".into(),
        batch: batch(vec![
            ("_id", Arc::new(Int64Array::from(ids.to_vec()))),
            ("v", Arc::new(StringArray::from(vec![v; ids.len()]))),
        ]),
    }
}

fn id_op(kind: OpKind, table: &str, id: i64) -> Op {
    Op {
        kind,
        table: table.into(),
        batch: batch(vec![("_id", Arc::new(Int64Array::from(vec![id])))]),
    }
}

async fn commit(e: &Engine, ops: Vec<Op>) -> i64 {
    e.commit(TxRequest {
        ops,
        ..Default::default()
    })
    .await
    .unwrap()
    .system_time
}

async fn open(dir: &std::path::Path) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    cfg.compaction.background = false;
    Engine::open(cfg).await.unwrap()
}

/// One change row: (position, system time, op, id, valid_from, valid_to, v).
type Row = (
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn rows(b: &RecordBatch) -> Vec<Row> {
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    let ts = |n: &str, r: usize| {
        let c = col(n);
        let a = c.as_primitive::<TimestampMicrosecondType>();
        a.is_valid(r).then(|| a.value(r))
    };
    let v = col("v");
    (0..b.num_rows())
        .map(|r| {
            (
                col("_position").as_primitive::<Int64Type>().value(r),
                ts("_system_time", r).unwrap(),
                col("_op").as_string::<i32>().value(r).to_string(),
                col("_id").as_primitive::<Int64Type>().value(r),
                ts("_valid_from", r),
                ts("_valid_to", r),
                v.is_valid(r)
                    .then(|| v.as_string::<i32>().value(r).to_string()),
            )
        })
        .collect()
}

/// Everything the feed has without waiting.
async fn drain(f: &mut strata_storage::ChangeFeed) -> Vec<Row> {
    let mut out = vec![];
    while let Some(b) = f.try_next().await.unwrap() {
        assert!(b.num_rows() > 0);
        out.extend(rows(&b));
    }
    out
}

#[tokio::test]
async fn puts_deletes_and_erases_in_log_order_and_erased_values_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let t1 = commit(&e, vec![put(&[1, 2], "a")]).await;
    // Another table's changes are not in t's feed.
    commit(&e, vec![id_op(OpKind::Put, "other", 9)]).await;
    let t2 = commit(&e, vec![put(&[1], "b"), id_op(OpKind::Delete, "t", 2)]).await;
    let mut feed = e.change_feed("t", FeedStart::Beginning).await.unwrap();
    assert_eq!(
        feed.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        [
            "_position",
            "_system_time",
            "_op",
            "_id",
            "_valid_from",
            "_valid_to",
            "v"
        ]
    );
    let got = drain(&mut feed).await;
    let ops: Vec<(String, i64, Option<String>)> = got
        .iter()
        .map(|r| (r.2.clone(), r.3, r.6.clone()))
        .collect();
    assert_eq!(
        ops,
        [
            ("put".into(), 1, Some("a".into())),
            ("put".into(), 2, Some("a".into())),
            ("put".into(), 1, Some("b".into())),
            ("delete".into(), 2, None),
        ]
    );
    assert_eq!(got[0].1, t1);
    assert_eq!(
        got[0].4,
        Some(t1),
        "a put without a period starts at its system time"
    );
    assert_eq!(got[0].5, None, "… and stays open");
    assert_eq!(got[2].1, t2);
    assert!(got[0].0 == got[1].0 && got[1].0 < got[2].0 && got[2].0 == got[3].0);
    // Waiting: the next commit wakes the feed.
    let waiter = tokio::spawn(async move {
        let b = feed.next().await.unwrap();
        (rows(&b), feed)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    commit(&e, vec![id_op(OpKind::Erase, "t", 1)]).await;
    let (got, mut feed) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got[0].2.as_str(), got[0].3), ("erase", 1));
    assert!(drain(&mut feed).await.is_empty());
    // A feed replaying after the erase never sees entity 1's values.
    let mut again = e.change_feed("t", FeedStart::Beginning).await.unwrap();
    let replay = drain(&mut again).await;
    assert!(
        replay.iter().all(|r| r.3 != 1 || r.2 == "erase"),
        "{replay:?}"
    );
    assert_eq!(replay.iter().filter(|r| r.3 == 2).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_writers_each_transaction_once_in_order_and_resume_after_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    commit(&e, vec![put(&[0], "start")]).await;
    let mut feed = e.change_feed("t", FeedStart::Beginning).await.unwrap();
    let per_writer = 250;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let e = e.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let id = 1 + w * per_writer + i;
                    commit(&e, vec![put(&[id], &format!("w{w}"))]).await;
                }
            })
        })
        .collect();
    let total = 1 + 4 * per_writer as usize;
    let mut got: Vec<Row> = vec![];
    while got.len() < total {
        let b = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("the feed stalled")
            .unwrap();
        got.extend(rows(&b));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(drain(&mut feed).await.is_empty());
    // Once each, in position (log) order, system times rising with it.
    let mut seen = HashMap::new();
    for r in &got {
        assert!(seen.insert(r.3, r.0).is_none(), "id {} twice", r.3);
    }
    assert_eq!(seen.len(), total);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    // Each writer's transactions in its own commit order.
    for w in 0..4 {
        let ids: Vec<i64> = got
            .iter()
            .filter(|r| r.6.as_deref() == Some(format!("w{w}").as_str()))
            .map(|r| r.3)
            .collect();
        assert!(ids.windows(2).all(|p| p[0] < p[1]));
    }
    // Killed after the 600th change: resumed after its position, the rest exactly.
    let saved = got[599].0;
    let mut resumed = e.change_feed("t", FeedStart::After(saved)).await.unwrap();
    let rest = drain(&mut resumed).await;
    assert_eq!(rest, got[600..].to_vec());
    // From a system time: the history since then, inclusive.
    let at = got[300].1;
    let mut since = e
        .change_feed(
            "t",
            FeedStart::SystemTime {
                at,
                inclusive: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(drain(&mut since).await, got[300..].to_vec());
    let mut after = e
        .change_feed(
            "t",
            FeedStart::SystemTime {
                at,
                inclusive: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(drain(&mut after).await, got[301..].to_vec());
    let (seq, tx) = split_position(got[600].0);
    assert!(seq >= 1 && tx < 1 << 16);
}

#[tokio::test]
async fn bad_starts_and_collected_history_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(StoreLocation::Local(dir.path().to_path_buf()));
    cfg.compaction.background = false;
    cfg.gc.log_retention = Duration::ZERO;
    cfg.gc.grace = Duration::ZERO;
    let e = Engine::open(cfg).await.unwrap();
    let err = e
        .change_feed("nope", FeedStart::Beginning)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("\"nope\" does not exist"), "{err}");
    let t0 = commit(&e, vec![put(&[1], "a")]).await;
    let err = e
        .change_feed("t", FeedStart::After(1 << 40))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("past the end"), "{err}");
    commit(&e, vec![put(&[2], "b")]).await;
    e.checkpoint().await.unwrap();
    e.checkpoint().await.unwrap();
    let t2 = commit(&e, vec![put(&[3], "c")]).await;
    for start in [
        FeedStart::Beginning,
        FeedStart::SystemTime {
            at: t0,
            inclusive: true,
        },
    ] {
        let err = e.change_feed("t", start).await.err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("no longer in the log") && msg.contains("WITH SNAPSHOT"),
            "{start:?}: {msg}"
        );
    }
    // What the log still holds can be read.
    let mut f = e
        .change_feed(
            "t",
            FeedStart::SystemTime {
                at: t2,
                inclusive: true,
            },
        )
        .await
        .unwrap();
    let got = drain(&mut f).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].3, 3);
}
