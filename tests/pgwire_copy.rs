//! COPY over the Postgres wire protocol: psql's `\copy` and tokio-postgres'
//! copy_in / copy_out against the real `strata serve`, in text and CSV, with
//! NULLs, quotes and embedded delimiters; a bad row loads nothing; 100k rows.

#[path = "clients/harness.rs"]
mod harness;

use std::time::Instant;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use harness::Server;

/// psql (with `\copy`) that must succeed; its stdout.
fn psql_copy_ok(s: &Server, cmd: &str) -> String {
    s.psql_ok(&[cmd])
}

async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    chunks: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    for c in chunks {
        sink.send(Bytes::copy_from_slice(c.as_bytes())).await?;
    }
    sink.finish().await
}

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.expect("copy out");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy out data");
    String::from_utf8(chunks.concat()).expect("utf8")
}

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .expect(sql)
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn psql_copy_text_and_csv_files() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // Text format: tab-separated, \N for NULL, backslash escapes.
    let text = dir.path().join("people.tsv");
    std::fs::write(
        &text,
        "1\tada\t36\t1.5\n2\tbob\\twith tab\t\\N\t2.25\n3\tc\\\\d\t40\t\\N\n",
    )
    .unwrap();
    let out = psql_copy_ok(
        &s,
        &format!(
            "\\copy people (_id, name, age, score) from '{}'",
            text.display()
        ),
    );
    assert!(out.contains("COPY 3") || out.is_empty(), "{out}");
    let out = s.psql_ok(&["SELECT _id, name, age, score FROM people ORDER BY _id"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["1|ada|36|1.5", "2|bob\twith tab||2.25", "3|c\\d|40|"],
        "{out}"
    );
    // The new columns' types were inferred: age BIGINT, score DOUBLE PRECISION.
    let out = s.psql_ok(&["SELECT sum(age), sum(score) FROM people"]);
    assert_eq!(out.trim(), "76|3.75");

    // CSV with a header, quotes, embedded delimiters and newlines, and NULLs.
    let csv = dir.path().join("notes.csv");
    std::fs::write(
        &csv,
        "_id,note,n\n1,\"hello, world\",10\n2,,20\n3,\"\",\n4,\"say \"\"hi\"\"\nbye\",40\n",
    )
    .unwrap();
    psql_copy_ok(
        &s,
        &format!(
            "\\copy notes from '{}' with (format csv, header true)",
            csv.display()
        ),
    );
    let out = s.psql_ok(&[
        "SELECT _id, coalesce(note, '<null>'), coalesce(n, -1) FROM notes ORDER BY _id",
    ]);
    assert_eq!(
        out, "1|hello, world|10\n2|<null>|20\n3||-1\n4|say \"hi\"\nbye|40\n",
        "{out}"
    );
    // Custom delimiter and NULL string, into the existing table.
    let pipe = dir.path().join("more.txt");
    std::fs::write(&pipe, "5|x;y|NONE\n6|NONE|60\n").unwrap();
    psql_copy_ok(
        &s,
        &format!(
            "\\copy notes (_id, note, n) from '{}' with (delimiter '|', null 'NONE')",
            pipe.display()
        ),
    );
    let out = s.psql_ok(&["SELECT _id, coalesce(note, '<null>'), coalesce(n, -1) FROM notes WHERE _id > 4 ORDER BY _id"]);
    assert_eq!(out, "5|x;y|-1\n6|<null>|60\n", "{out}");

    // \copy … to: psql writes what the server sends.
    let back = dir.path().join("back.csv");
    psql_copy_ok(
        &s,
        &format!(
            "\\copy (SELECT _id, note, n FROM notes ORDER BY _id) to '{}' with (format csv, header)",
            back.display()
        ),
    );
    let got = std::fs::read_to_string(&back).unwrap();
    assert_eq!(
        got,
        "_id,note,n\n1,\"hello, world\",10\n2,,20\n3,\"\",\n4,\"say \"\"hi\"\"\nbye\",40\n5,x;y,\n6,,60\n",
        "{got}"
    );
}

#[test]
fn psql_copy_bad_row_names_the_line_and_loads_nothing() {
    let s = Server::start();
    s.psql_ok(&[
        "CREATE TABLE t (_id BIGINT, n BIGINT)",
        "INSERT INTO t (_id, n) VALUES (100, 1)",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.csv");
    std::fs::write(&f, "1,10\n2,20\n3,thirty\n4,40\n").unwrap();
    let o = s.psql(&[&format!(
        "\\copy t (_id, n) from '{}' with (format csv)",
        f.display()
    )]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3"), "the error names the line: {err}");
    assert!(err.contains("thirty"), "and the value: {err}");
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM t"]).trim(), "1");
    // Wrong column count.
    std::fs::write(&f, "1,10\n2,20,99\n").unwrap();
    let o = s.psql(&[&format!(
        "\\copy t (_id, n) from '{}' with (format csv)",
        f.display()
    )]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("line 2"), "{err}");
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM t"]).trim(), "1");
    // In a transaction (simple protocol): rolled back with it, or committed.
    std::fs::write(&f, "7,70\n8,80\n").unwrap();
    let load = format!("\\copy t (_id, n) from '{}' with (format csv)", f.display());
    s.psql_ok(&["BEGIN", &load, "ROLLBACK"]);
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM t"]).trim(), "1");
    s.psql_ok(&["BEGIN", &load, "SELECT 1", "COMMIT"]);
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM t"]).trim(), "3");
    // A failed load inside a transaction fails the transaction.
    std::fs::write(&f, "9,x\n").unwrap();
    let o = s.psql(&["BEGIN", &load]);
    assert!(!o.status.success());
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM t"]).trim(), "3");
    // A file on the server is refused.
    let o = s.psql(&["COPY t FROM '/etc/passwd'"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("STDIN"), "{err}");
    // The server still serves.
    assert_eq!(s.psql_ok(&["SELECT 1"]).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_copy_in_text_and_csv_and_copy_out_round_trip() {
    let s = Server::start();
    let c = s.client().await;
    // Data split across CopyData messages mid-row and mid-quote.
    let n = copy_in(
        &c,
        "COPY items (_id, name, price, ok) FROM STDIN",
        &[
            "1\twidget\t2.5\tt\n2\tgad",
            "get, big\t\\N\tf\n3\t\\N\t4.5\t\\N\n",
        ],
    )
    .await
    .expect("copy in text");
    assert_eq!(n, 3);
    let n = copy_in(
        &c,
        "COPY items (_id, name, price, ok) FROM STDIN WITH (FORMAT csv)",
        &[
            "4,\"tab\tand, comma\",1.25,true\n5,\"quote \"\"",
            "q\"\" end\",,false\n6,,7.5,\n",
        ],
    )
    .await
    .expect("copy in csv");
    assert_eq!(n, 3);
    assert_eq!(
        rows(&c, "SELECT _id, name, price, ok FROM items ORDER BY _id").await,
        vec![
            "1|widget|2.5|t",
            "2|gadget, big|NULL|f",
            "3|NULL|4.5|NULL",
            "4|tab\tand, comma|1.25|t",
            "5|quote \"q\" end|NULL|f",
            "6|NULL|7.5|NULL",
        ]
    );

    // COPY TO STDOUT, text and CSV.
    // The table form has no ORDER BY: rows come in whatever order the scan's
    // partitions deliver them (as in PostgreSQL, no order is promised).
    let text = copy_out(&c, "COPY items (_id, name, price) TO STDOUT").await;
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines.sort();
    assert_eq!(
        lines.concat(),
        "1\twidget\t2.5\n2\tgadget, big\t\\N\n3\t\\N\t4.5\n4\ttab\\tand, comma\t1.25\n5\tquote \"q\" end\t\\N\n6\t\\N\t7.5\n"
    );
    let csv = copy_out(
        &c,
        "COPY (SELECT _id, name, ok FROM items WHERE _id > 3 ORDER BY _id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(
        csv,
        "_id,name,ok\n4,\"tab\tand, comma\",t\n5,\"quote \"\"q\"\" end\",f\n6,,\n"
    );

    // Round trip: what COPY TO wrote, COPY FROM reads back identically.
    let all = copy_out(
        &c,
        "COPY (SELECT _id, name, price, ok FROM items ORDER BY _id) TO STDOUT",
    )
    .await;
    c.simple_query(
        "CREATE TABLE items2 (_id BIGINT, name TEXT, price DOUBLE PRECISION, ok BOOLEAN)",
    )
    .await
    .unwrap();
    let n = copy_in(&c, "COPY items2 FROM STDIN", &[&all])
        .await
        .unwrap();
    assert_eq!(n, 6);
    let again = copy_out(
        &c,
        "COPY (SELECT _id, name, price, ok FROM items2 ORDER BY _id) TO STDOUT",
    )
    .await;
    assert_eq!(again, all);
    let csv_all = copy_out(
        &c,
        "COPY (SELECT * FROM items ORDER BY _id) TO STDOUT (FORMAT csv)",
    )
    .await;
    c.simple_query(
        "CREATE TABLE items3 (_id BIGINT, name TEXT, price DOUBLE PRECISION, ok BOOLEAN)",
    )
    .await
    .unwrap();
    copy_in(
        &c,
        "COPY items3 (_id, name, price, ok) FROM STDIN (FORMAT csv)",
        &[&copy_out(
            &c,
            "COPY (SELECT _id, name, price, ok FROM items ORDER BY _id) TO STDOUT (FORMAT csv)",
        )
        .await],
    )
    .await
    .unwrap();
    assert_eq!(
        rows(&c, "SELECT _id, name, price, ok FROM items3 ORDER BY _id").await,
        rows(&c, "SELECT _id, name, price, ok FROM items ORDER BY _id").await
    );
    assert!(csv_all.lines().count() == 6, "{csv_all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_fails_the_copy_and_commits_nothing() {
    let s = Server::start();
    let c = s.client().await;
    c.simple_query("CREATE TABLE t (_id BIGINT, n BIGINT, d DATE)")
        .await
        .unwrap();
    c.simple_query("INSERT INTO t (_id, n) VALUES (1, 1)")
        .await
        .unwrap();
    let e = copy_in(
        &c,
        "COPY t (_id, n, d) FROM STDIN",
        &[
            "10\t1\t2020-01-01\n11\t2\t2020-01-02\n",
            "12\t3\tnot-a-date\n13\t4\t\\N\n",
        ],
    )
    .await
    .expect_err("a bad date fails the COPY");
    let db = e.as_db_error().expect("a server error");
    assert!(db.message().contains("line 3"), "{}", db.message());
    assert!(db.message().contains("not-a-date"), "{}", db.message());
    assert_eq!(rows(&c, "SELECT count(*) FROM t").await, vec!["1"]);
    // Without `_id`.
    let e = copy_in(&c, "COPY t (n) FROM STDIN", &["1\n"])
        .await
        .unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("_id"), "{e:?}");
    // Inside a transaction: the load is rolled back with it.
    c.simple_query("BEGIN").await.unwrap();
    copy_in(&c, "COPY t (_id, n) FROM STDIN", &["20\t1\n21\t2\n"])
        .await
        .unwrap();
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(rows(&c, "SELECT count(*) FROM t").await, vec!["1"]);
    // The connection goes on.
    copy_in(&c, "COPY t (_id, n) FROM STDIN", &["30\t1\n"])
        .await
        .unwrap();
    assert_eq!(rows(&c, "SELECT count(*) FROM t").await, vec!["2"]);
    // Dates in Postgres' text form load into the DATE column.
    copy_in(
        &c,
        "COPY t (_id, n, d) FROM STDIN",
        &["40\t4\t2021-03-04\n41\t5\t\\N\n"],
    )
    .await
    .unwrap();
    assert_eq!(
        rows(&c, "SELECT _id, d FROM t WHERE _id >= 40 ORDER BY _id").await,
        vec!["40|2021-03-04", "41|NULL"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_100k_rows_then_count() {
    let s = Server::start();
    let c = s.client().await;
    let n = 100_000u64;
    let mut data = String::with_capacity(4 << 20);
    let mut chunks = Vec::new();
    for i in 0..n {
        use std::fmt::Write;
        let _ = writeln!(data, "{i},name {i},{}.5,{}", i % 1000, i % 2 == 0);
        if data.len() > 64 * 1024 {
            chunks.push(std::mem::take(&mut data));
        }
    }
    chunks.push(data);
    let refs: Vec<&str> = chunks.iter().map(|s| s.as_str()).collect();
    let t = Instant::now();
    let loaded = copy_in(
        &c,
        "COPY big (_id, name, x, even) FROM STDIN WITH (FORMAT csv)",
        &refs,
    )
    .await
    .expect("copy 100k rows");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(loaded, n);
    println!(
        "COPY of {n} rows: {secs:.2} s, {:.0} rows/s",
        n as f64 / secs
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*), count(DISTINCT _id), sum(_id) FROM big"
        )
        .await,
        vec![format!("{n}|{n}|{}", n * (n - 1) / 2)]
    );
    assert_eq!(
        rows(&c, "SELECT name, even FROM big WHERE _id = 99999").await,
        vec!["name 99999|f"]
    );
}
