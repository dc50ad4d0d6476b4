//! ERASE removes an entity's bytes from storage — live index, segments and
//! log — not only its visibility; everything else stays, across a reopen.

use strata::{Config, Db};

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

async fn strings(db: &Db, sql: &str) -> Vec<String> {
    let batches = db.sql(sql).await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        let text = datafusion::arrow::util::display::ArrayFormatter::try_new(
            b.column(0).as_ref(),
            &Default::default(),
        )
        .unwrap();
        for r in 0..b.num_rows() {
            out.push(text.value(r).to_string());
        }
    }
    out
}

#[tokio::test]
async fn erase_removes_the_bytes_from_segments_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || Config::dir(dir.path()).with_test_clock(1_577_836_800_000_000, 86_400_000_000);
    let db = Db::open(cfg()).await.unwrap();
    db.sql("INSERT INTO people (_id, name, note) VALUES (1, 'ada', 'keep-me-1'), (2, 'bob', 'secret-v1-xyzzy')")
        .await
        .unwrap();
    // History in a segment, in the live index, and in the log.
    db.flush().await.unwrap();
    db.sql("UPDATE people SET note = 'secret-v2-xyzzy' WHERE _id = 2")
        .await
        .unwrap();
    db.sql("UPDATE people SET note = 'keep-me-2' WHERE _id = 1")
        .await
        .unwrap();
    db.flush().await.unwrap();
    db.sql("UPDATE people SET note = 'secret-v3-xyzzy' WHERE _id = 2")
        .await
        .unwrap();
    assert!(
        !files_containing(dir.path(), b"xyzzy").is_empty(),
        "test setup: the secret is on disk"
    );

    db.sql("ERASE FROM people WHERE _id = 2").await.unwrap();

    let left = files_containing(dir.path(), b"xyzzy");
    assert!(left.is_empty(), "erased bytes still on disk in {left:?}");
    // Nothing else lost: entity 1 with its whole history.
    assert_eq!(
        strings(&db, "SELECT note FROM people FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 1 ORDER BY _system_from, _valid_from").await,
        vec!["keep-me-1", "keep-me-1", "keep-me-2"]
    );
    assert!(strings(
        &db,
        "SELECT name FROM people FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 2"
    )
    .await
    .is_empty());
    drop(db);

    // After reopening (manifest + log replay) the same.
    let db = Db::open(cfg()).await.unwrap();
    assert_eq!(
        strings(&db, "SELECT name FROM people ORDER BY _id").await,
        vec!["ada"]
    );
    assert_eq!(
        strings(&db, "SELECT note FROM people FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 1 ORDER BY _system_from, _valid_from").await,
        vec!["keep-me-1", "keep-me-1", "keep-me-2"]
    );
    assert!(strings(
        &db,
        "SELECT note FROM people FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 2"
    )
    .await
    .is_empty());
    // And writes go on.
    db.sql("INSERT INTO people (_id, name) VALUES (2, 'bob again')")
        .await
        .unwrap();
    assert_eq!(
        strings(&db, "SELECT name FROM people ORDER BY _id").await,
        vec!["ada", "bob again"]
    );
}

#[tokio::test]
async fn erase_replayed_from_the_log_by_a_fresh_open_purges_nothing_else() {
    // The log alone (no flush before the erase): a reopen replays it.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Config::dir(dir.path())).await.unwrap();
    db.sql("INSERT INTO t (_id, v) VALUES (1, 'plain'), (2, 'gone-qwerty')")
        .await
        .unwrap();
    db.sql("UPDATE t SET v = 'gone-qwerty-2' WHERE _id = 2")
        .await
        .unwrap();
    db.sql("ERASE FROM t WHERE _id = 2").await.unwrap();
    assert!(files_containing(dir.path(), b"qwerty").is_empty());
    drop(db);
    let db = Db::open(Config::dir(dir.path())).await.unwrap();
    assert_eq!(strings(&db, "SELECT v FROM t").await, vec!["plain"]);
}
