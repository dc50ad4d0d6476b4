//! Strata over a real S3-compatible server (moto, started by the test; see
//! `tests/support/s3.rs`): conditional creates are atomic there, an embedded
//! database and `strata serve` work on an `s3://` URL, and several nodes on
//! one bucket lose no update and see each other's commits.

#[path = "clients/harness.rs"]
mod harness;
#[path = "support/s3.rs"]
mod s3;

use std::sync::Arc;

use bytes::Bytes;
use harness::Server;
use s3::S3Server;
use strata::{Config, Db};
use strata_storage::store::{CreateOutcome, Storage};

/// How we know the test server's conditional creates are atomic: 16
/// clients race to create each of a few keys with different 2 MiB bodies;
/// exactly one create per key may succeed, and the object holds the
/// winner's bytes. moto's own threaded server fails this (tried: several
/// racers pass the existence check while another's body is still being
/// read, and all "win"); the single-threaded one we run passes.
/// Racer `i`'s object: its name, padded to 2 MiB (a request that takes a
/// while to read, so racing requests overlap).
fn body(i: usize) -> Bytes {
    let mut b = format!("writer {i}").into_bytes();
    b.resize(2 << 20, b'.');
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_is_atomic() {
    let srv = S3Server::start();
    let storage =
        Arc::new(Storage::open(&srv.location(&srv.fresh_prefix("atomic"))).expect("open S3 store"));
    for key in 0..5 {
        let path = format!("race/{key}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let storage = storage.clone();
                let path = path.clone();
                tokio::spawn(
                    async move { (i, storage.create(&path, body(i)).await.expect("create")) },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, outcome) = t.await.unwrap();
            if outcome == CreateOutcome::Created {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "key {key}: winners {winners:?}");
        let got = storage.get(&path).await.unwrap().unwrap();
        assert!(got == body(winners[0]), "the object is not the winner's");
        // And a create over an existing object is refused.
        assert_eq!(
            storage.create(&path, Bytes::from("late")).await.unwrap(),
            CreateOutcome::AlreadyExists
        );
    }
}

async fn rows(db: &Db, sql: &str) -> String {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    strata::format_batches(&batches, strata::OutputFormat::Csv).unwrap()
}

/// An embedded database on S3: writes, a flush to segments, a restart that
/// reads everything back from the bucket, time travel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_database_on_s3_round_trips() {
    let srv = S3Server::start();
    let prefix = srv.fresh_prefix("embedded");
    let cache = tempfile::tempdir().unwrap();
    let config = || Config::location(srv.location(&prefix)).with_cache_dir(cache.path());
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
    // The segments and the manifest are in the bucket.
    let storage = db.database().engine().storage();
    let objects = storage.list("").await.unwrap();
    assert!(
        objects.iter().any(|p| p.starts_with("manifest")),
        "{objects:?}"
    );
    assert!(
        objects.iter().any(|p| p.starts_with("tables/")),
        "{objects:?}"
    );
}

/// `strata serve --store-url s3://…` as a user runs it, with the `AWS_*`
/// variables pointing at the server.
#[test]
fn serve_on_an_s3_url() {
    let srv = S3Server::start();
    let url = srv.url(&srv.fresh_prefix("serve"));
    let cache = tempfile::tempdir().unwrap();
    let env = srv.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("STRATA_CACHE_DIR", cache.path().to_str().unwrap()));
    let node = Server::start_with(&["--store-url", &url], &env);
    node.psql_ok(&[
        "INSERT INTO t (_id, v) VALUES (1, 'one'), (2, 'two')",
        "CHECKPOINT",
    ]);
    assert_eq!(
        node.psql_ok(&["SELECT v FROM t ORDER BY _id"]),
        "one\ntwo\n"
    );
    drop(node);
    let again = Server::start_with(&["--store-url", &url], &env);
    assert_eq!(again.psql_ok(&["SELECT count(*) FROM t"]), "2\n");
}
