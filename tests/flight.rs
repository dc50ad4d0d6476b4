//! `strata serve` over Arrow Flight SQL, end to end: the real binary and
//! arrow-flight's `FlightSqlServiceClient`.

#[path = "clients/certs.rs"]
mod certs;
#[path = "clients/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementIngest, SqlInfo, TableDefinitionOptions,
    TableExistsOption, TableNotExistOption,
};
use arrow_flight::FlightInfo;
use certs::make_certs;
use futures::TryStreamExt;
use harness::Server;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

/// The Flight SQL port from the banner.

async fn connect(s: &Server) -> Client {
    let port = s.flight_port();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the Flight SQL port");
    FlightSqlServiceClient::new(ch)
}

fn server() -> Server {
    Server::start()
}

fn server_with(args: &[&str]) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = vec!["--data-dir", tmp.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let s = Server::start_with(&all, &[]);
    (s, tmp)
}

/// Every batch of every endpoint of `info`.
async fn fetch(c: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = vec![];
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("endpoint has a ticket");
        let stream = c.do_get(ticket).await.expect("do_get");
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("stream");
        out.extend(batches);
    }
    out
}

async fn query(c: &mut Client, sql: &str) -> Vec<RecordBatch> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(c, info).await
}

async fn update(c: &mut Client, sql: &str) -> i64 {
    c.execute_update(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn i64s(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(col).as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = arrow::compute::cast(b.column(col), &DataType::Utf8).unwrap();
            let a = a.as_string::<i32>();
            (0..a.len())
                .map(|i| {
                    if a.is_valid(i) {
                        a.value(i).to_string()
                    } else {
                        "NULL".into()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_start_and_a_query_streams_many_batches() {
    let (mut s, _tmp) = server_with(&["--flight-port", "0"]);
    let mut c = connect(&s).await;
    assert_eq!(
        update(
            &mut c,
            "INSERT INTO nums (_id, v) SELECT value, value * 2 FROM generate_series(1, 200000)"
        )
        .await,
        200000
    );
    let info = c
        .execute("SELECT _id, v FROM nums ORDER BY _id".into(), None)
        .await
        .unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(0).name(), "_id");
    assert_eq!(schema.field(1).name(), "v");
    let batches = fetch(&mut c, info).await;
    assert_eq!(rows(&batches), 200000);
    assert!(batches.len() > 1, "the result streams in several batches");
    let ids = i64s(&batches, 0);
    let vs = i64s(&batches, 1);
    assert_eq!(ids[0], Some(1));
    assert_eq!(ids[199999], Some(200000));
    assert!(ids
        .iter()
        .zip(&vs)
        .all(|(i, v)| v.unwrap() == i.unwrap() * 2));
    // The Postgres listener runs next to it, on the same data.
    let out = s.psql_ok(&["SELECT count(*) FROM nums"]);
    assert_eq!(out.trim(), "200000");
    // One SIGTERM stops both listeners and the process.
    drop(c);
    let st = s
        .terminate(Duration::from_secs(20))
        .expect("exits after SIGTERM");
    assert!(st.success(), "{st}");
    let port = s.flight_port();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the Flight SQL port is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_parameters_in_a_stateless_handle() {
    let s = server();
    let mut c = connect(&s).await;
    update(
        &mut c,
        "INSERT INTO people (_id, name, age) VALUES (1, 'ada', 36), (2, 'bob', 40), (3, 'cy', 51)",
    )
    .await;
    let mut p = c
        .prepare(
            "SELECT name FROM people WHERE age > $1 ORDER BY _id".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p.dataset_schema().unwrap().field(0).name(), "name");
    assert_eq!(p.parameter_schema().unwrap().fields().len(), 1);
    // A parameter's type comes from the cast it is given.
    let cast = c
        .prepare("SELECT $1::bigint + 1 AS n".into(), None)
        .await
        .unwrap();
    assert_eq!(
        cast.parameter_schema().unwrap().field(0).data_type(),
        &DataType::Int64
    );
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![38]))],
    )
    .unwrap();
    p.set_parameters(params).unwrap();
    let info = p.execute().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 0), vec!["bob", "cy"]);

    // `?` placeholders work too, and a prepared INSERT is an update.
    let mut ins = c
        .prepare(
            "INSERT INTO people (_id, name, age) VALUES (?, ?, ?)".into(),
            None,
        )
        .await
        .unwrap();
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![4, 5])),
            Arc::new(StringArray::from(vec!["dee", "eve"])),
            Arc::new(Int64Array::from(vec![60, 70])),
        ],
    )
    .unwrap();
    ins.set_parameters(params).unwrap();
    assert_eq!(ins.execute_update().await.unwrap(), 2);
    ins.close().await.unwrap();
    let b = query(&mut c, "SELECT count(*) AS n FROM people WHERE age >= 60").await;
    assert_eq!(i64s(&b, 0), vec![Some(2)]);

    // A handle is self-contained: a second server over other data can run
    // the same SQL from the handle a first server issued.
    let s2 = server();
    let mut c2 = connect(&s2).await;
    update(
        &mut c2,
        "INSERT INTO people (_id, name, age) VALUES (9, 'zed', 99)",
    )
    .await;
    let mut p = c
        .prepare("SELECT name FROM people WHERE age > $1".into(), None)
        .await
        .unwrap();
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![90]))],
    )
    .unwrap();
    p.set_parameters(params.clone()).unwrap();
    let info = p.execute().await.unwrap(); // binds, then asks server 1
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let b: Vec<RecordBatch> = c2
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        strings(&b, 0),
        vec!["zed"],
        "server 2 ran server 1's handle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_return_affected_row_counts() {
    let s = server();
    let mut c = connect(&s).await;
    assert_eq!(
        update(
            &mut c,
            "CREATE TABLE acct (_id BIGINT, owner TEXT, balance BIGINT)"
        )
        .await,
        0
    );
    assert_eq!(
        update(
            &mut c,
            "INSERT INTO acct (_id, owner, balance) VALUES (1, 'ada', 100), (2, 'bob', 50), (3, 'cy', 10)"
        )
        .await,
        3
    );
    assert_eq!(
        update(
            &mut c,
            "UPDATE acct SET balance = balance + 1 WHERE balance < 60"
        )
        .await,
        2
    );
    assert_eq!(update(&mut c, "DELETE FROM acct WHERE _id = 3").await, 1);
    let b = query(&mut c, "SELECT _id, balance FROM acct ORDER BY _id").await;
    assert_eq!(i64s(&b, 0), vec![Some(1), Some(2)]);
    assert_eq!(i64s(&b, 1), vec![Some(100), Some(51)]);
    // A write sent as a query runs once, at GetFlightInfo.
    let b = query(
        &mut c,
        "INSERT INTO acct (_id, owner, balance) VALUES (7, 'x', 1)",
    )
    .await;
    assert_eq!(rows(&b), 0);
    let b = query(&mut c, "SELECT count(*) FROM acct").await;
    assert_eq!(i64s(&b, 0), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ingest_loads_one_transaction_with_an_optional_valid_period() {
    let s = server();
    let mut c = connect(&s).await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("a", DataType::Float64, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let batch = |from: i64, n: i64| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(from..from + n)),
                Arc::new(Float64Array::from_iter_values(
                    (from..from + n).map(|i| i as f64 / 2.0),
                )),
                Arc::new(StringArray::from_iter_values(
                    (from..from + n).map(|i| format!("r{i}")),
                )),
            ],
        )
        .unwrap()
    };
    let cmd =
        |table: &str, create: bool, options: HashMap<String, String>| CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if create {
                    TableNotExistOption::Create
                } else {
                    TableNotExistOption::Fail
                } as i32,
                if_exists: if create {
                    TableExistsOption::Fail
                } else {
                    TableExistsOption::Append
                } as i32,
            }),
            table: table.into(),
            schema: None,
            catalog: None,
            temporary: false,
            transaction_id: None,
            options,
        };
    let batches: Vec<Result<RecordBatch, arrow_flight::error::FlightError>> =
        (0..10).map(|i| Ok(batch(i * 10_000, 10_000))).collect();
    let n = c
        .execute_ingest(
            cmd("loaded", true, HashMap::new()),
            futures::stream::iter(batches),
        )
        .await
        .unwrap();
    assert_eq!(n, 100_000);
    let b = query(&mut c, "SELECT count(*), sum(a), min(b) FROM loaded").await;
    assert_eq!(i64s(&b, 0), vec![Some(100_000)]);
    let sum = b[0]
        .column(1)
        .as_primitive::<arrow::datatypes::Float64Type>()
        .value(0);
    assert_eq!(sum, (0..100_000).map(|i| i as f64 / 2.0).sum::<f64>());
    assert_eq!(strings(&b, 2), vec!["r0"]);

    // create again: the table exists.
    let e = c
        .execute_ingest(
            cmd("loaded", true, HashMap::new()),
            futures::stream::iter(vec![Ok(batch(0, 1))]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    // append to a missing table: refused.
    let e = c
        .execute_ingest(
            cmd("nosuch", false, HashMap::new()),
            futures::stream::iter(vec![Ok(batch(0, 1))]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");

    // A valid period for the whole load.
    let opts: HashMap<String, String> = [
        ("valid_from".to_string(), "2001-01-01T00:00:00Z".to_string()),
        ("valid_to".to_string(), "2002-01-01T00:00:00Z".to_string()),
    ]
    .into();
    let n = c
        .execute_ingest(
            cmd("hist", true, opts),
            futures::stream::iter(vec![Ok(batch(1, 3))]),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let b = query(&mut c, "SELECT count(*) FROM hist").await;
    assert_eq!(i64s(&b, 0), vec![Some(0)], "not valid now");
    let b = query(
        &mut c,
        "SELECT _id, _valid_from, _valid_to FROM hist FOR VALID_TIME AS OF TIMESTAMP '2001-06-01Z' ORDER BY _id",
    )
    .await;
    assert_eq!(i64s(&b, 0), vec![Some(1), Some(2), Some(3)]);
    assert!(
        strings(&b, 1)[0].starts_with("2001-01-01T00:00:00"),
        "{:?}",
        strings(&b, 1)
    );
    assert!(
        strings(&b, 2)[0].starts_with("2002-01-01T00:00:00"),
        "{:?}",
        strings(&b, 2)
    );

    // Bad option: a clear message.
    let opts: HashMap<String, String> =
        [("valid_form".to_string(), "2001-01-01".to_string())].into();
    let e = c
        .execute_ingest(
            cmd("hist2", true, opts),
            futures::stream::iter(vec![Ok(batch(1, 1))]),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown ingest option `valid_form`"),
        "{e}"
    );
    // Rows without `_id`: a clear message.
    let noid = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let e = c
        .execute_ingest(
            cmd("noid", true, HashMap::new()),
            futures::stream::iter(vec![Ok(noid)]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`_id`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_describe_the_catalog() {
    let s = server();
    let mut c = connect(&s).await;
    update(
        &mut c,
        "INSERT INTO prices (_id, sym, price) VALUES (1, 'ACME', 9.5)",
    )
    .await;
    update(&mut c, "INSERT INTO zoo (_id, animal) VALUES ('z1', 'yak')").await;

    let info = c.get_catalogs().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 0), vec!["strata"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 1), vec!["public"]);

    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 2), vec!["prices", "zoo"]);
    assert_eq!(strings(&b, 3), vec!["TABLE", "TABLE"]);
    let schema_bytes = b[0].column(4).as_binary::<i32>().value(0).to_vec();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for want in [
        "_id",
        "sym",
        "price",
        "_valid_from",
        "_valid_to",
        "_system_from",
        "_system_to",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Float64
    );

    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("pri%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 2), vec!["prices"]);

    let info = c
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "prices".into(),
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 2), vec!["prices"]);
    assert_eq!(strings(&b, 3), vec!["_id"]);

    let info = c.get_table_types().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 0), vec!["TABLE"]);

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerVersion,
        ])
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 2);
    let text = arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(text.contains("Strata"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");

    let info = c
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    let names = strings(&b, 0);
    for t in [
        "bigint",
        "text",
        "double precision",
        "timestamptz",
        "boolean",
    ] {
        assert!(names.contains(&t.to_string()), "{t} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_queries_see_earlier_versions() {
    let (s, _tmp) = server_with(&["--test-clock", "2020-01-01T00:00:00Z,1d"]);
    let mut c = connect(&s).await;
    update(&mut c, "INSERT INTO prices (_id, price) VALUES (1, 10.0)").await; // 2020-01-01
    update(&mut c, "UPDATE prices SET price = 11.0 WHERE _id = 1").await; // 2020-01-02
    update(&mut c, "UPDATE prices SET price = 12.5 WHERE _id = 1").await; // 2020-01-03
    let now = query(&mut c, "SELECT price FROM prices").await;
    assert_eq!(strings(&now, 0), vec!["12.5"]);
    let then = query(
        &mut c,
        "SELECT price FROM prices FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-02T12:00:00Z'",
    )
    .await;
    assert_eq!(strings(&then, 0), vec!["11.0"]);
    let before = query(
        &mut c,
        "SELECT price FROM prices FOR SYSTEM_TIME AS OF TIMESTAMP '2019-12-31Z'",
    )
    .await;
    assert_eq!(rows(&before), 0);
    let all = query(
        &mut c,
        "SELECT price, _system_from FROM prices FOR ALL SYSTEM_TIME ORDER BY _system_from",
    )
    .await;
    assert_eq!(strings(&all, 0), vec!["10.0", "11.0", "12.5"]);
    let froms = strings(&all, 1);
    assert!(froms[0].starts_with("2020-01-01T00:00:00"), "{froms:?}");
    assert!(froms[2].starts_with("2020-01-03T00:00:00"), "{froms:?}");
    // With a bound parameter for the time.
    let mut p = c
        .prepare(
            "SELECT price FROM prices FOR SYSTEM_TIME AS OF $1".into(),
            None,
        )
        .await
        .unwrap();
    // The parameter is described as the timestamp the clause takes (the
    // session's describe, which the Postgres wire uses too), not as text.
    assert!(
        matches!(
            p.parameter_schema().unwrap().field(0).data_type(),
            DataType::Timestamp(_, Some(_))
        ),
        "{:?}",
        p.parameter_schema()
    );
    let t = arrow::array::TimestampMicrosecondArray::from(vec![1_577_880_000_000_000i64]) // 2020-01-01T12:00Z
        .with_timezone("UTC");
    p.set_parameters(
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "t",
                t.data_type().clone(),
                true,
            )])),
            vec![Arc::new(t)],
        )
        .unwrap(),
    )
    .unwrap();
    let info = p.execute().await.unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b, 0), vec!["10.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_hands_out_bearer_tokens() {
    let (s, _tmp) = server_with(&["--user", "alice:s3cret"]);
    // No credentials: refused.
    let mut c = connect(&s).await;
    let e = c.execute("SELECT 1".into(), None).await.unwrap_err();
    assert!(e.to_string().contains("authentication required"), "{e}");
    // Wrong password: refused at the handshake.
    let e = c.handshake("alice", "nope").await.unwrap_err();
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    let e = c.handshake("mallory", "s3cret").await.unwrap_err();
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    // A forged token: refused.
    c.set_token("not-a-token".into());
    let e = c.execute("SELECT 1".into(), None).await.unwrap_err();
    assert!(e.to_string().contains("bearer token"), "{e}");
    // Right password: a token, used by every later call.
    c.clear_token();
    c.handshake("alice", "s3cret").await.unwrap();
    assert!(c.token().is_some());
    update(&mut c, "INSERT INTO t (_id) VALUES (1)").await;
    let b = query(&mut c, "SELECT count(*) FROM t").await;
    assert_eq!(i64s(&b, 0), vec![Some(1)]);
    // A ticket alone does not get data without the token.
    let info = c.execute("SELECT _id FROM t".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut anon = connect(&s).await;
    let Err(e) = anon.do_get(ticket).await else {
        panic!("do_get without a token must fail")
    };
    assert!(e.to_string().contains("authentication required"), "{e}");

    // Trust mode: no credentials needed; a handshake still works.
    let s = server();
    let mut c = connect(&s).await;
    assert_eq!(rows(&query(&mut c, "SELECT 1").await), 1);
    c.handshake("anyone", "anything").await.unwrap();
    assert_eq!(rows(&query(&mut c, "SELECT 1").await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_statuses_with_clear_messages() {
    let s = server();
    let mut c = connect(&s).await;
    let e = c.execute("SELEC 1".into(), None).await.unwrap_err();
    match &e {
        arrow_flight::error::FlightError::Tonic(st) => {
            assert_eq!(st.code(), tonic::Code::InvalidArgument, "{e:?}")
        }
        other => panic!("expected a gRPC status, got {other:?}"),
    }
    let m = e.to_string();
    assert!(m.contains("syntax error") && m.contains("SELEC"), "{m}");
    assert!(m.contains("42601"), "{m}");
    let e = c
        .execute("SELECT * FROM nosuchtable".into(), None)
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("nosuchtable") && m.contains("does not exist"),
        "{m}"
    );
    let e = c
        .execute_update("INSERT INTO t (x) VALUES (1)".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`_id`"), "{e}");
    let e = c.prepare("SELECT (1 +".into(), None).await.unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
    // A forged ticket.
    let Err(e) = c.do_get(arrow_flight::Ticket::new("garbage")).await else {
        panic!("a garbage ticket must fail")
    };
    assert!(!e.to_string().is_empty());
    // The server is still fine.
    assert_eq!(rows(&query(&mut c, "SELECT 1").await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_flight_sql_and_refuses_plaintext() {
    let (_certs, ca, crt, key, _other_ca) = make_certs();
    let (s, _tmp) = server_with(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let port = s.flight_port();
    let ca = std::fs::read(ca).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("TLS connection to Flight SQL");
    let mut c = FlightSqlServiceClient::new(ch);
    let b = query(&mut c, "SELECT 41 + 1 AS answer").await;
    assert_eq!(i64s(&b, 0), vec![Some(42)]);
    // Plaintext gRPC to the TLS port gets no answer.
    let mut plain = connect(&s).await;
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        plain.execute("SELECT 1".into(), None),
    )
    .await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "plaintext must not work on a TLS listener"
    );
}

/// The statement handle inside a DoGet ticket.
fn ticket_handle(t: &arrow_flight::Ticket) -> Vec<u8> {
    use arrow_flight::sql::{Any, TicketStatementQuery};
    use prost::Message;
    let any = Any::decode(t.ticket.clone()).expect("ticket is an Any");
    let q: TicketStatementQuery = any.unpack().expect("unpack").expect("a statement ticket");
    q.statement_handle.to_vec()
}

fn ticket_for(handle: Vec<u8>) -> arrow_flight::Ticket {
    use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
    use prost::Message;
    let q = TicketStatementQuery {
        statement_handle: handle.into(),
    };
    arrow_flight::Ticket::new(q.as_any().encode_to_vec())
}

/// The checksum Strata appends to a handle (64-bit FNV-1a), so a test can
/// forge handles that get past it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let sum = fnv(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// DoGet on `t`: Ok(rows) or the error text.
async fn try_do_get(c: &mut Client, t: arrow_flight::Ticket) -> Result<usize, String> {
    match c.do_get(t).await {
        Ok(s) => match s.try_collect::<Vec<RecordBatch>>().await {
            Ok(b) => Ok(rows(&b)),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_and_forged_tickets_are_refused_before_use() {
    let s = server();
    let mut c = connect(&s).await;
    update(&mut c, "INSERT INTO forged (_id, v) VALUES (1, 'kept')").await;
    // A script's result travels in its ticket (an Arrow IPC stream).
    let info = c
        .execute(
            "SELECT 'abc' AS s, 42 AS n; SELECT 'xyz' AS s, 7 AS n".into(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let handle = ticket_handle(&ticket);
    assert_eq!(try_do_get(&mut c, ticket.clone()).await, Ok(1));
    // Every single byte altered: refused (the checksum), never a panic.
    for i in 0..handle.len() {
        let mut h = handle.clone();
        h[i] ^= 0x41;
        let e = try_do_get(&mut c, ticket_for(h)).await.unwrap_err();
        assert!(e.contains("altered"), "byte {i}: {e}");
    }
    // Altered with a recomputed checksum (deliberate forgery): the Arrow
    // data is decoded with its inconsistencies caught; an error or rows.
    let body = &handle[..handle.len() - 8];
    for i in 8..body.len() {
        for delta in [1u8, 0x80, 0xff] {
            let mut h = body.to_vec();
            h[i] = h[i].wrapping_add(delta);
            let _ = try_do_get(&mut c, ticket_for(seal(h))).await;
        }
    }
    // A forged result ticket whose record batch claims a body of 2^39
    // bytes: once allocated before reading (the allocation failed and
    // aborted the server); now refused as corrupt.
    let huge = 1i64 << 39;
    let mut forged_body = None;
    for at in 8..body.len() - 8 {
        let mut h = body.to_vec();
        h[at..at + 8].copy_from_slice(&huge.to_le_bytes());
        if let Err(e) = try_do_get(&mut c, ticket_for(seal(h))).await {
            if e.contains(&format!("a message body of {huge} bytes")) {
                forged_body = Some(e);
                break;
            }
        }
    }
    let e = forged_body.expect("a ticket with a forged body length");
    assert!(e.contains("corrupt statement handle or ticket"), "{e}");
    // A forged statement handle binding a batch of no columns that claims
    // 2^40 rows (a row of values was made for each, up front).
    let empty = Arc::new(Schema::empty());
    let many = RecordBatch::try_new_with_options(
        empty.clone(),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1 << 40)),
    )
    .unwrap();
    let sql = "SELECT 1 AS x";
    let mut h = b"STRATA\x02Q".to_vec();
    h.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    h.extend_from_slice(sql.as_bytes());
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut h, &empty).unwrap();
        w.write(&many).unwrap();
        w.finish().unwrap();
    }
    let e = try_do_get(&mut c, ticket_for(seal(h))).await.unwrap_err();
    assert!(e.contains("rows of parameters bound"), "{e}");
    assert_eq!(rows(&query(&mut c, "SELECT 1").await), 1);
    // A ticket forged to carry an INSERT: refused before it runs.
    let sql = "INSERT INTO forged (_id, v) VALUES (2, 'smuggled')";
    let mut h = b"STRATA\x02Q".to_vec();
    h.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    h.extend_from_slice(sql.as_bytes());
    let e = try_do_get(&mut c, ticket_for(seal(h))).await.unwrap_err();
    assert!(e.contains("DoGet runs only") && e.contains("DoPut"), "{e}");
    let b = query(&mut c, "SELECT count(*) AS n FROM forged").await;
    assert_eq!(
        i64s(&b, 0),
        vec![Some(1)],
        "the forged INSERT wrote nothing"
    );
    // SELECT … INTO creates a table: not a query either.
    let sql = "SELECT 1 AS x INTO made_by_doget";
    let mut h = b"STRATA\x02Q".to_vec();
    h.extend_from_slice(&(sql.len() as u32).to_le_bytes());
    h.extend_from_slice(sql.as_bytes());
    assert!(try_do_get(&mut c, ticket_for(seal(h))).await.is_err());
    // The server is still fine.
    assert_eq!(rows(&query(&mut c, "SELECT 1").await), 1);
}
