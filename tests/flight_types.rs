//! uuid / json / jsonb columns over Arrow Flight SQL: results are `Utf8`
//! with the column's SQL type in the field metadata (`ARROW:extension:name`),
//! and bulk ingest into such columns is checked like any other write.

#[path = "clients/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use futures::TryStreamExt;
use harness::Server;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

async fn connect(s: &Server) -> Client {
    let ch =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", s.flight_port()))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect to the Flight SQL port");
    FlightSqlServiceClient::new(ch)
}

async fn query(c: &mut Client, sql: &str) -> (Vec<RecordBatch>, Schema) {
    let info = c.execute(sql.to_string(), None).await.unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    let mut out = vec![];
    for ep in info.endpoint {
        let stream = c.do_get(ep.ticket.unwrap()).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    (out, schema)
}

fn ext(f: &Field) -> Option<&str> {
    f.metadata().get("ARROW:extension:name").map(String::as_str)
}

fn ingest_cmd(table: &str) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Fail as i32,
            if_exists: TableExistsOption::Append as i32,
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: HashMap::new(),
    }
}

fn batch(ids: Vec<i64>, us: Vec<&str>) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Int64, false),
            Field::new("u", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(us)),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_results_carry_the_sql_type_and_ingest_is_checked() {
    let s = Server::start();
    let mut c = connect(&s).await;
    c.execute_update(
        "CREATE TABLE docs (_id BIGINT, u UUID, j JSON, b JSONB)".into(),
        None,
    )
    .await
    .unwrap();
    c.execute_update(
        "INSERT INTO docs (_id, u, j, b) VALUES (1, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '[1]', '{\"b\":1,\"a\":2}')".into(),
        None,
    )
    .await
    .unwrap();
    let (batches, schema) = query(&mut c, "SELECT _id, u, j, b FROM docs").await;
    for (i, want) in [(1, "strata.uuid"), (2, "arrow.json"), (3, "strata.jsonb")] {
        assert_eq!(schema.field(i).data_type(), &DataType::Utf8);
        assert_eq!(
            ext(schema.field(i)),
            Some(want),
            "FlightInfo schema of column {i}"
        );
        assert_eq!(
            ext(batches[0].schema().field(i)),
            Some(want),
            "batch schema of column {i}"
        );
    }
    assert_eq!(
        batches[0].column(1).as_string::<i32>().value(0),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(
        batches[0].column(3).as_string::<i32>().value(0),
        "{\"a\": 2, \"b\": 1}"
    );

    // Bulk ingest of plain Utf8 into the uuid column: normalized...
    let n = c
        .execute_ingest(
            ingest_cmd("docs"),
            futures::stream::iter(vec![Ok(batch(
                vec![2],
                vec!["{B0EEBC999C0B4EF8BB6D6BB9BD380A11}"],
            ))]),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (batches, _) = query(&mut c, "SELECT u FROM docs WHERE _id = 2").await;
    assert_eq!(
        batches[0].column(0).as_string::<i32>().value(0),
        "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    // ...and refused, as a whole, when one value is not a uuid.
    let e = c
        .execute_ingest(
            ingest_cmd("docs"),
            futures::stream::iter(vec![Ok(batch(
                vec![3, 4],
                vec!["c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "not a uuid"],
            ))]),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("invalid input syntax for type uuid")
            && e.to_string().contains("not a uuid")
            && e.to_string().contains("22P02"),
        "{e}"
    );
    let (batches, _) = query(&mut c, "SELECT count(*) FROM docs").await;
    assert_eq!(
        batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        2
    );
}
