//! Descriptions, classification and masking (docs/governance.md): COMMENT
//! ON shows in psql's `\d+`; a column labelled `pii` is masked for a role
//! that is not a member of `strata_unmask`, in every read path (SELECT,
//! time travel, COPY TO, a change-feed cursor, Flight SQL), and a predicate
//! on it reveals nothing; an unmasked role and a superuser see the values.

#[path = "clients/harness.rs"]
mod harness;

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use harness::Server;

use harness::{psql_as as psql, psql_ok_output as ok, psql_refused as refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_columns_are_masked_on_every_read_path_and_predicates_reveal_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--user",
            "admin:adminpw",
        ],
        &[],
    );
    let port = s.port;
    let admin = |c: &[&str]| ok(psql(port, "admin", "adminpw", c));
    let setup = admin(&[
        "CREATE TABLE customers (_id BIGINT, name TEXT, email TEXT, phone TEXT, age BIGINT)",
        "INSERT INTO customers (_id, name, email, phone, age) VALUES \
         (1, 'Ada', 'ada@example.com', '555-0101', 36), (2, 'Bob', 'bob@example.com', '555-0102', 41)",
        "SHOW strata.last_commit",
        "CREATE TABLE orders (_id BIGINT, email TEXT, amount BIGINT)",
        "INSERT INTO orders (_id, email, amount) VALUES (10, 'ada@example.com', 5), (11, 'ada@example.com', 7), (12, 'cy@example.com', 1)",
        "COMMENT ON TABLE customers IS 'People who buy'",
        "COMMENT ON COLUMN customers.email IS 'Where to write'",
        "SECURITY LABEL FOR strata ON COLUMN customers.email IS 'pii'",
        "SECURITY LABEL ON COLUMN customers.phone IS 'pii:redact'",
        "SECURITY LABEL ON COLUMN customers.age IS 'pii:null'",
        "SECURITY LABEL ON COLUMN customers.name IS 'public'",
        "SECURITY LABEL ON COLUMN orders.email IS 'pii'",
        "CREATE USER analyst PASSWORD 'a'",
        "GRANT SELECT ON customers, orders TO analyst",
        "GRANT UPDATE ON customers TO analyst",
        "CREATE USER officer PASSWORD 'o' IN ROLE strata_unmask",
        "GRANT SELECT ON customers TO officer",
        "UPDATE customers SET email = 'ada@new.example.com' WHERE _id = 1",
    ]);
    let first_commit = setup
        .lines()
        .next()
        .expect("last_commit")
        .trim()
        .to_string();
    let analyst = |c: &[&str]| ok(psql(port, "analyst", "a", c));

    // SELECT: a keyed hash (32 hex digits) for `pii`, `****` for
    // `pii:redact`, NULL for `pii:null`; unlabelled and `public` columns as
    // they are.
    let row = analyst(&["SELECT name, email, phone, age IS NULL FROM customers WHERE _id = 2"]);
    let f: Vec<&str> = row.trim().split('|').collect();
    assert_eq!(f[0], "Bob");
    assert!(
        f[1].len() == 32 && f[1].chars().all(|c| c.is_ascii_hexdigit()),
        "{row}"
    );
    assert_eq!(&f[2..], ["****", "t"]);
    // The point-lookup path is masked too.
    assert!(!analyst(&["SELECT * FROM customers WHERE _id = 1"]).contains("example.com"));
    // A predicate sees only the mask.
    for q in [
        "SELECT count(*) FROM customers WHERE email = 'bob@example.com'",
        "SELECT count(*) FROM customers WHERE email LIKE 'bob%'",
        "SELECT count(*) FROM customers WHERE phone = '555-0102'",
        "SELECT count(*) FROM customers WHERE age > 40",
        "SELECT count(*) FROM customers WHERE _id IN (SELECT _id FROM customers WHERE email = 'bob@example.com')",
    ] {
        assert_eq!(analyst(&[q]), "0\n", "{q}");
    }
    // The same value masks the same way, so masked columns still join.
    assert_eq!(
        analyst(&[&format!(
            "SELECT count(*) FROM customers FOR SYSTEM_TIME AS OF TIMESTAMP '{first_commit}' c \
             JOIN orders o ON c.email = o.email"
        )]),
        "2\n"
    );
    // Time travel, COPY TO and a change-feed cursor: no stored value leaks.
    for out in [
        analyst(&[&format!(
            "SELECT email, phone FROM customers FOR SYSTEM_TIME AS OF TIMESTAMP '{first_commit}'"
        )]),
        analyst(&["SELECT email FROM customers FOR ALL VALID_TIME"]),
        analyst(&["COPY customers TO STDOUT"]),
        analyst(&["COPY (SELECT * FROM customers) TO STDOUT (FORMAT csv)"]),
        analyst(&[
            "BEGIN",
            "DECLARE c CURSOR FOR SUBSCRIBE TO customers",
            "FETCH 10 c",
            "COMMIT",
        ]),
    ] {
        assert!(
            !out.contains("example.com") && !out.contains("555-01"),
            "{out}"
        );
    }

    // An UPDATE may not read a masked column (its rows are read unmasked to
    // be written back); one that does not leaves the stored values alone.
    let e = refused(psql(
        port,
        "analyst",
        "a",
        &["UPDATE customers SET name = 'x' WHERE email = 'bob@example.com'"],
    ));
    assert!(
        e.contains("column email of table customers is masked"),
        "{e}"
    );
    let e = refused(psql(
        port,
        "analyst",
        "a",
        &["UPDATE customers SET name = email WHERE _id = 2"],
    ));
    assert!(e.contains("masked"), "{e}");
    analyst(&["UPDATE customers SET name = 'Robert' WHERE _id = 2"]);
    assert_eq!(
        admin(&["SELECT name, email, phone, age FROM customers WHERE _id = 2"]),
        "Robert|bob@example.com|555-0102|41\n"
    );

    // An unmasked role and a superuser see the values.
    assert_eq!(
        ok(psql(
            port,
            "officer",
            "o",
            &["SELECT email FROM customers WHERE _id = 2"]
        )),
        "bob@example.com\n"
    );
    assert_eq!(
        admin(&["SELECT count(*) FROM customers WHERE email = 'bob@example.com'"]),
        "1\n"
    );

    // Flight SQL: masked for the analyst, not for the officer.
    let flight_emails = |user: &'static str, pw: &'static str| {
        let s = &s;
        async move {
            let ch = tonic::transport::Endpoint::from_shared(format!(
                "http://127.0.0.1:{}",
                s.flight_port()
            ))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
            let mut c = FlightSqlServiceClient::new(ch);
            c.handshake(user, pw).await.unwrap();
            let info = c
                .execute("SELECT email FROM customers ORDER BY _id".into(), None)
                .await
                .unwrap();
            let mut out = vec![];
            for ep in info.endpoint {
                let b: Vec<arrow::record_batch::RecordBatch> = c
                    .do_get(ep.ticket.unwrap())
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                for b in b {
                    let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
                        .unwrap();
                    let col = col.as_string::<i32>();
                    out.extend((0..col.len()).map(|i| col.value(i).to_string()));
                }
            }
            out
        }
    };
    let masked = flight_emails("analyst", "a").await;
    assert_eq!(masked.len(), 2);
    assert!(masked.iter().all(|e| !e.contains('@')), "{masked:?}");
    assert_eq!(
        flight_emails("officer", "o").await,
        vec!["ada@new.example.com", "bob@example.com"]
    );

    // Descriptions and labels, as tools read them.
    let d = admin(&["\\d+ customers"]);
    assert!(d.contains("Where to write"), "{d}");
    assert_eq!(
        admin(&["SELECT obj_description('customers'::regclass, 'pg_class')"]),
        "People who buy\n"
    );
    assert_eq!(
        admin(&["SELECT a.attname, l.label FROM pg_seclabel l JOIN pg_attribute a ON a.attrelid = l.objoid AND a.attnum = l.objsubid WHERE l.objoid = 'customers'::regclass ORDER BY 1"]),
        "age|pii:null\nemail|pii\nname|public\nphone|pii:redact\n"
    );
    assert_eq!(
        admin(&["SELECT count(*) FROM pg_description WHERE objoid = 'customers'::regclass"]),
        "2\n"
    );
    // Removing a label unmasks; bad targets are explained.
    admin(&["SECURITY LABEL ON COLUMN customers.email IS NULL"]);
    assert_eq!(
        analyst(&["SELECT email FROM customers WHERE _id = 2"]),
        "bob@example.com\n"
    );
    let e = refused(psql(
        port,
        "admin",
        "adminpw",
        &["SECURITY LABEL ON COLUMN customers.emial IS 'pii'"],
    ));
    assert!(e.contains("did you mean `email`"), "{e}");
    let e = refused(psql(
        port,
        "analyst",
        "a",
        &["COMMENT ON TABLE customers IS 'x'"],
    ));
    assert!(e.contains("needs a superuser"), "{e}");
}
