//! Strata over a real S3-compatible server (moto, started by the test; see
//! `tests/support/s3.rs`): conditional creates are atomic there, an embedded
//! database and `strata serve` work on an `s3://` URL, and several nodes on
//! one bucket lose no update and see each other's commits.

#[path = "clients/harness.rs"]
mod harness;
#[path = "support/s3.rs"]
mod s3;
#[path = "support/store_checks.rs"]
mod store_checks;

use std::sync::Arc;

use harness::Server;
use s3::S3Server;
use strata::Config;
use strata_storage::store::Storage;

/// How we know the test server's conditional creates are atomic: 16
/// clients race to create each of a few keys with different 2 MiB bodies;
/// exactly one create per key may succeed, and the object holds the
/// winner's bytes. moto's own threaded server fails this (tried: several
/// racers pass the existence check while another's body is still being
/// read, and all "win"); the single-threaded one we run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_is_atomic() {
    let srv = S3Server::start();
    let storage =
        Arc::new(Storage::open(&srv.location(&srv.fresh_prefix("atomic"))).expect("open S3 store"));
    store_checks::race_creates(&storage, "s3", 2 << 20).await;
}

/// An embedded database on S3: writes, a flush to segments, a restart that
/// reads everything back from the bucket, time travel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_database_on_s3_round_trips() {
    let srv = S3Server::start();
    let prefix = srv.fresh_prefix("embedded");
    let cache = tempfile::tempdir().unwrap();
    store_checks::embedded_round_trip(|| {
        Config::location(srv.location(&prefix)).with_cache_dir(cache.path())
    })
    .await;
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

/// `--export-root s3://…`: server-side COPY writes a Parquet file and a
/// Delta table (refreshed once) into the bucket, and is refused outside it.
#[test]
fn exports_to_an_s3_export_root() {
    use object_store::ObjectStoreExt;
    let srv = S3Server::start();
    let prefix = srv.fresh_prefix("exports");
    let url = srv.url(&prefix);
    let data = tempfile::tempdir().unwrap();
    let env = srv.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = Server::start_with(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--export-root",
            &url,
        ],
        &env,
    );
    let full = format!("COPY t TO '{url}/by-url.parquet' (FORMAT parquet)");
    node.psql_ok(&[
        "INSERT INTO t (_id, v) VALUES (1, 'one'), (2, 'two')",
        "COPY t TO 'snap/t.parquet' (FORMAT parquet)",
        &full,
        "COPY t TO 'delta_t' (FORMAT delta)",
        "UPDATE t SET v = 'TWO' WHERE _id = 2",
        "COPY t TO 'delta_t' (FORMAT delta)",
    ]);
    let other = format!(
        "COPY t TO 's3://{}/elsewhere/t.parquet' (FORMAT parquet)",
        s3::BUCKET
    );
    let refused = node.psql(&[&other]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("42501") && stderr.contains("outside the export root"),
        "{stderr}"
    );

    let store = srv.store(&prefix);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for name in ["snap/t.parquet", "by-url.parquet"] {
            let bytes = store
                .get(&name.into())
                .await
                .unwrap_or_else(|e| panic!("{name} in the bucket: {e}"))
                .bytes()
                .await
                .unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
            let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows, 2, "{name}");
        }
        let v1 = store
            .get(&"delta_t/_delta_log/00000000000000000001.json".into())
            .await
            .expect("Delta version 1 in the bucket")
            .bytes()
            .await
            .unwrap();
        let v1 = String::from_utf8(v1.to_vec()).unwrap();
        assert!(
            v1.contains("\"MERGE\"") && v1.contains("\"remove\""),
            "{v1}"
        );
    });
}
