//! Checks every object store backend must pass, shared by `tests/s3.rs`
//! (moto) and `tests/object_stores.rs` (Azurite): conditional creates are
//! atomic, and an embedded database round-trips through the store.
//!
//! Included with `#[path = "support/store_checks.rs"] mod store_checks;`.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use strata::{Config, Db};
use strata_storage::store::{CreateOutcome, Storage};

/// The result of `sql` as CSV text.
pub async fn rows(db: &Db, sql: &str) -> String {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    strata::format_batches(&batches, strata::OutputFormat::Csv).unwrap()
}

/// Racer `i`'s object: its name, padded to `len` bytes (a long body keeps
/// a request in flight a while, so racing requests overlap).
fn body(i: usize, len: usize) -> Bytes {
    let mut b = format!("writer {i}").into_bytes();
    b.resize(len.max(b.len()), b'.');
    Bytes::from(b)
}

/// 16 clients race to create each of 5 paths under `round/` with
/// different `len`-byte bodies: exactly one create per path may succeed,
/// the object holds the winner's bytes, and a later create is refused
/// without writing.
pub async fn race_creates(storage: &Arc<Storage>, round: &str, len: usize) {
    for key in 0..5 {
        let path = format!("race/{round}/{key}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let storage = storage.clone();
                let path = path.clone();
                tokio::spawn(async move { (i, storage.create(&path, body(i, len)).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, outcome) = t.await.unwrap();
            match outcome {
                Ok(CreateOutcome::Created) => winners.push(i),
                Ok(CreateOutcome::AlreadyExists) => {}
                Err(e) => panic!("create {path} (writer {i}): {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{path}: winners {winners:?}");
        let winner = body(winners[0], len);
        let got = storage.get(&path).await.unwrap().unwrap();
        assert!(got == winner, "{path}: the object is not the winner's");
        assert_eq!(
            storage.create(&path, Bytes::from("late")).await.unwrap(),
            CreateOutcome::AlreadyExists,
            "a create over an existing object must be refused"
        );
        assert!(
            storage.get(&path).await.unwrap().unwrap() == winner,
            "{path}: a refused create must not have written"
        );
    }
}

/// An embedded database on the store `config()` opens: writes, a flush to
/// segments, a reopen that reads everything back from the store, time
/// travel, and the segments and manifest in the store.
pub async fn embedded_round_trip(config: impl Fn() -> Config) {
    let t1;
    {
        let db = Db::open(config()).await.unwrap();
        db.sql("INSERT INTO accounts (_id, owner, balance) VALUES (1, 'Ada', 100), (2, 'Bo', 50)")
            .await
            .unwrap();
        db.flush().await.unwrap();
        t1 = rows(&db, "SELECT max(_system_from) FROM accounts").await;
        db.sql("UPDATE accounts SET balance = 90 WHERE _id = 1")
            .await
            .unwrap();
    }
    let db = Db::open(config()).await.unwrap();
    assert_eq!(
        rows(&db, "SELECT _id, owner, balance FROM accounts ORDER BY _id").await,
        "_id,owner,balance\n1,Ada,90\n2,Bo,50\n"
    );
    let t1 = t1.lines().nth(1).unwrap().to_string();
    assert_eq!(
        rows(
            &db,
            &format!(
                "SELECT _id, balance FROM accounts FOR SYSTEM_TIME AS OF TIMESTAMP '{t1}' ORDER BY _id"
            )
        )
        .await,
        "_id,balance\n1,100\n2,50\n"
    );
    let objects = db.database().engine().storage().list("").await.unwrap();
    assert!(
        objects.iter().any(|p| p.starts_with("manifest")),
        "{objects:?}"
    );
    assert!(
        objects.iter().any(|p| p.starts_with("tables/")),
        "{objects:?}"
    );
}
