//! `uuid`, `json` and `jsonb` over the Postgres wire protocol: the real
//! binary and tokio-postgres. Result columns carry the right type OIDs
//! (2950, 114, 3802) and both formats of parameters and results round-trip
//! with the exact bytes Postgres uses (uuid: 16 bytes; json: the text;
//! jsonb: a version byte 1, then the text).

#[path = "clients/harness.rs"]
mod harness;

use std::error::Error;

use bytes::BytesMut;
use harness::Server;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::SimpleQueryMessage;

const U1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const U1_BYTES: [u8; 16] = [
    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11,
];

/// A value's exact wire bytes, whatever its type (binary format).
#[derive(Debug, PartialEq)]
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

impl ToSql for Raw {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

fn jsonb(text: &str) -> Raw {
    let mut v = vec![1u8];
    v.extend_from_slice(text.as_bytes());
    Raw(v)
}

const SETUP: &str = "CREATE TABLE docs (_id BIGINT, u UUID, j JSON, b JSONB); \
    INSERT INTO docs (_id, u, j, b) VALUES \
      (1, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"b\": 1, \"a\": [1, 2]}', '{\"b\": 1, \"a\": [1,2]}'), \
      (2, 'a0eebc999c0b4ef8bb6d6bb9bd380a12', '[true]', '\"x\"'), \
      (3, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_report_uuid_json_jsonb() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.unwrap();

    // Described (Parse + Describe) and executed: the same OIDs.
    let st = c.prepare("SELECT _id, u, j, b FROM docs").await.unwrap();
    let types: Vec<&Type> = st.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::INT8, &Type::UUID, &Type::JSON, &Type::JSONB]);
    assert_eq!(Type::UUID.oid(), 2950);
    assert_eq!(Type::JSON.oid(), 114);
    assert_eq!(Type::JSONB.oid(), 3802);

    // The catalogs (psql's \d, tools, SQLAlchemy) report the declared types.
    let rows = c
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'docs'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want = [
        ("_id", "bigint"),
        ("u", "uuid"),
        ("j", "json"),
        ("b", "jsonb"),
    ];
    for (name, ty) in want {
        assert!(
            got.iter().any(|(n, t)| n == name && t == ty),
            "{name} should be {ty}: {got:?}"
        );
    }
    let rows = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = 'docs' AND column_name IN ('u', 'b') ORDER BY column_name",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [("b".into(), "jsonb".into()), ("u".into(), "uuid".into())]
    );

    // A table made by its first INSERT takes the types of the values.
    c.batch_execute(
        "INSERT INTO tagged (_id, u, j) VALUES (1, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid, '{}'::jsonb)",
    )
    .await
    .unwrap();
    let st = c.prepare("SELECT u, j FROM tagged").await.unwrap();
    let types: Vec<&Type> = st.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::UUID, &Type::JSONB]);

    // Through a filter, a join-free subquery and a CTE the column keeps its type.
    let st = c
        .prepare("WITH x AS (SELECT u, b FROM docs WHERE _id < 3) SELECT u, b FROM x ORDER BY u")
        .await
        .unwrap();
    let types: Vec<&Type> = st.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::UUID, &Type::JSONB]);

    // Casts give the type; a cast to text takes it away.
    let st = c
        .prepare(
            "SELECT 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS a, CAST('[1]' AS JSON) AS b, \
             '{\"k\":1}'::jsonb AS c, u::text AS d FROM docs WHERE _id = 1",
        )
        .await
        .unwrap();
    let types: Vec<&Type> = st.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::UUID, &Type::JSON, &Type::JSONB, &Type::TEXT]);
    let row = c.query_one(&st, &[]).await.unwrap();
    assert_eq!(row.get::<_, Raw>(0), Raw(U1_BYTES.to_vec()));
    assert_eq!(row.get::<_, Raw>(1), Raw(b"[1]".to_vec()));
    assert_eq!(row.get::<_, Raw>(2), jsonb("{\"k\": 1}"));
    assert_eq!(row.get::<_, String>(3), U1);

    // Simple query protocol: the RowDescription OIDs and text values.
    let msgs = c
        .simple_query("SELECT u, j, b FROM docs WHERE _id = 1")
        .await
        .unwrap();
    let mut seen = false;
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            assert_eq!(r.get(0), Some(U1));
            assert_eq!(r.get(1), Some("{\"b\": 1, \"a\": [1, 2]}"));
            assert_eq!(r.get(2), Some("{\"a\": [1, 2], \"b\": 1}"));
            seen = true;
        }
    }
    assert!(seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_use_postgres_encodings() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.unwrap();
    // tokio-postgres asks for binary results.
    let rows = c
        .query("SELECT u, j, b FROM docs ORDER BY _id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<_, Raw>(0), Raw(U1_BYTES.to_vec()));
    assert_eq!(
        rows[0].get::<_, Raw>(1),
        Raw(b"{\"b\": 1, \"a\": [1, 2]}".to_vec()),
        "json goes out as its text"
    );
    assert_eq!(
        rows[0].get::<_, Raw>(2),
        jsonb("{\"a\": [1, 2], \"b\": 1}"),
        "jsonb: version 1, then the normalized text"
    );
    let mut u2 = U1_BYTES;
    u2[15] = 0x12;
    assert_eq!(rows[1].get::<_, Raw>(0), Raw(u2.to_vec()));
    assert_eq!(rows[1].get::<_, Raw>(2), jsonb("\"x\""));
    assert_eq!(rows[2].get::<_, Option<Raw>>(0), None);
    assert_eq!(rows[2].get::<_, Option<Raw>>(2), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_parameters_round_trip_and_compare() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(SETUP).await.unwrap();

    // Insert with typed binary parameters.
    let ins = c
        .prepare_typed(
            "INSERT INTO docs (_id, u, j, b) VALUES ($1, $2, $3, $4)",
            &[Type::INT8, Type::UUID, Type::JSON, Type::JSONB],
        )
        .await
        .unwrap();
    let mut u9 = U1_BYTES;
    u9[0] = 0x09;
    let n = c
        .execute(
            &ins,
            &[
                &9i64,
                &Raw(u9.to_vec()),
                &Raw(b"{\"z\":  [ ]}".to_vec()),
                &jsonb("{\"zz\": 1, \"a\": {\"y\": 2, \"x\": 1}}"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = c
        .query_one("SELECT u, j, b, u::text AS t FROM docs WHERE _id = 9", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Raw>(0), Raw(u9.to_vec()));
    assert_eq!(row.get::<_, Raw>(1), Raw(b"{\"z\":  [ ]}".to_vec()));
    assert_eq!(
        row.get::<_, Raw>(2),
        jsonb("{\"a\": {\"x\": 1, \"y\": 2}, \"zz\": 1}")
    );
    assert_eq!(
        row.get::<_, String>(3),
        "09eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );

    // Compare a uuid column with a binary uuid parameter.
    let st = c
        .prepare_typed("SELECT _id FROM docs WHERE u = $1", &[Type::UUID])
        .await
        .unwrap();
    let row = c.query_one(&st, &[&Raw(U1_BYTES.to_vec())]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // A jsonb parameter spelled differently finds the same document.
    let st = c
        .prepare_typed("SELECT _id FROM docs WHERE b = $1", &[Type::JSONB])
        .await
        .unwrap();
    let rows = c
        .query(&st, &[&jsonb("{\"a\":[1,2],\"b\":1}")])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    // An untyped parameter compared with a uuid column is described as a
    // uuid (as Postgres does); so is one inserted into a uuid column.
    let st = c
        .prepare("SELECT _id FROM docs WHERE u = $1")
        .await
        .unwrap();
    assert_eq!(st.params(), &[Type::UUID]);
    let mut u2 = U1_BYTES;
    u2[15] = 0x12;
    let rows = c.query(&st, &[&Raw(u2.to_vec())]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    let st = c
        .prepare("INSERT INTO docs (_id, u, j, b) VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    assert_eq!(
        st.params(),
        &[Type::INT8, Type::UUID, Type::JSON, Type::JSONB]
    );
    let st = c
        .prepare("SELECT $1::uuid AS a, CAST($2 AS JSONB) AS b")
        .await
        .unwrap();
    assert_eq!(st.params(), &[Type::UUID, Type::JSONB]);
    let row = c
        .query_one(&st, &[&Raw(u2.to_vec()), &jsonb("[ 1 ]")])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Raw>(0), Raw(u2.to_vec()));
    assert_eq!(row.get::<_, Raw>(1), jsonb("[1]"));
    // A text parameter (simple protocol literal) in any uuid spelling.
    let rows = c
        .simple_query("SELECT _id FROM docs WHERE u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12'")
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("2"))));

    // Bad input: SQLSTATE 22P02, nothing written.
    let e = c
        .execute(
            &ins,
            &[
                &10i64,
                &Raw(vec![1, 2, 3]),
                &Raw(b"1".to_vec()),
                &jsonb("1"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e:?}"
    );
    let e = c
        .execute(
            &ins,
            &[&10i64, &Raw(u9.to_vec()), &Raw(b"{".to_vec()), &jsonb("1")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e:?}"
    );
    let e = c
        .execute(
            "INSERT INTO docs (_id, u) VALUES (10, 'a0eebc99-0000-0000-0000-000000000000'), (11, 'not a uuid')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e:?}"
    );
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(
        msg.contains("invalid input syntax for type uuid: \"not a uuid\"") && msg.contains("`u`"),
        "{msg}"
    );
    let e = c.simple_query("SELECT 'nope'::uuid").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM docs WHERE _id >= 10", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Server::start_in(dir.path());
        let c = s.client().await;
        c.batch_execute(SETUP).await.unwrap();
        drop(c);
        s.terminate(std::time::Duration::from_secs(10));
    }
    let s = Server::start_in(dir.path());
    let c = s.client().await;
    let st = c.prepare("SELECT u, j, b FROM docs").await.unwrap();
    let types: Vec<&Type> = st.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, [&Type::UUID, &Type::JSON, &Type::JSONB]);
    let e = c
        .simple_query("INSERT INTO docs (_id, u) VALUES (5, 'xyz')")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{e:?}"
    );
}

/// Run a Python client script from tests/clients/python against `s`; panic
/// with its output unless it exits 0 (the clients are installed by
/// .ci/install.d/20-clients.sh).
fn python(s: &Server, script: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python");
    let out = std::process::Command::new("python3")
        .arg(dir.join(script))
        .env("PYTHONPATH", &dir)
        .env("STRATA_PORT", s.port.to_string())
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 {script} ({e}); install the clients with `bash -c '. .ci/install.d/20-clients.sh'`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn psycopg3_uuid_json_jsonb_as_python_objects() {
    let s = Server::start();
    let out = python(&s, "psycopg_types.py");
    assert!(out.contains("psycopg types: all checks passed"), "{out}");
}

#[test]
fn asyncpg_uuid_json_jsonb_as_python_objects() {
    let s = Server::start();
    let out = python(&s, "asyncpg_types.py");
    assert!(out.contains("asyncpg types: all checks passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_union_is_described_by_its_common_type() {
    // `length(…)` is integer, `i + i` bigint: the union is bigint. Described
    // as integer (the plan before analysis), -4294967296 went out as NULL.
    // Found by the differential test (seed 790475471).
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE un (_id BIGINT, i BIGINT); \
         INSERT INTO un (_id, i) VALUES (1, -2147483648), (2, 100)",
    )
    .await
    .unwrap();
    let sql = "SELECT length('ab') AS c0 FROM un WHERE _id = 1 \
               UNION ALL SELECT i + i AS c0 FROM un ORDER BY 1";
    let rows = c.query(sql, &[]).await.unwrap();
    assert_eq!(
        rows[0].columns()[0].type_(),
        &tokio_postgres::types::Type::INT8
    );
    let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec![-4294967296, 2, 200]);
    // The same over the simple protocol (text).
    let msgs = c.simple_query(sql).await.unwrap();
    let text: Vec<Option<String>> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .collect();
    assert_eq!(
        text,
        vec![
            Some("-4294967296".to_string()),
            Some("2".to_string()),
            Some("200".to_string())
        ]
    );
}
