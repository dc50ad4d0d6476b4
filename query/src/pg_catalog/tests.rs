use super::*;

fn rw(sql: &str) -> String {
    let mut s = crate::sql::parse(sql).unwrap().remove(0);
    rewrite(&mut s);
    s.to_string()
}

#[test]
fn syntax() {
    assert_eq!(
        rw("SELECT 't'::regclass, c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c"),
        "SELECT __pg_regclass('t'), __pg_regclass(c.oid)::TEXT FROM pg_catalog.pg_class c"
    );
    assert_eq!(
        rw("SELECT 1 WHERE x OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
        "SELECT 1 WHERE x ~ '^(t)$'"
    );
    assert_eq!(
        rw("SELECT pg_catalog.format_type(1, 2)"),
        "SELECT format_type(1, 2)"
    );
    assert_eq!(rw("SELECT $1::oid[]"), "SELECT $1::INT UNSIGNED[]");
}

#[test]
fn types() {
    assert_eq!(
        format_type(1043, Some(14)).unwrap(),
        "character varying(10)"
    );
    assert_eq!(format_type(1016, None).unwrap(), "bigint[]");
    assert_eq!(
        format_type(1700, Some((12 << 16 | 2) + 4)).unwrap(),
        "numeric(12,2)"
    );
    assert_eq!(type_oid_by_name("integer"), Some(23));
    assert_eq!(type_oid_by_name("text[]"), Some(1009));
    assert_eq!(type_oid_by_name("pg_catalog.uuid"), Some(2950));
    assert_eq!(type_oid_by_name("hstore"), None);
    assert_eq!(pg_type_of(&list_of(DataType::Int64)), (1016, -1));
    assert_eq!(split_name("\"My T\""), (None, "My T".into()));
    assert_eq!(
        split_name("public.People"),
        (Some("public".into()), "people".into())
    );
    assert!(table_oid("a") % 2 == 0 && table_oid("a") >= 16_384);
}

async fn rows(s: &mut crate::Session, sql: &str) -> Vec<String> {
    use datafusion::arrow::compute::cast;
    let mut out = Vec::new();
    for o in s.execute(sql, &[]).await.unwrap() {
        for b in o.collect().await.unwrap() {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| {
                        let c = cast(c, &DataType::Utf8).unwrap();
                        let c = c
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::StringArray>()
                            .unwrap();
                        if c.is_null(r) {
                            "NULL".into()
                        } else {
                            c.value(r).to_string()
                        }
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
    }
    out
}

/// The catalogs follow the engine's tables live: a table created, a
/// column added by a later write, `::regclass` both ways, visibility.
#[tokio::test]
async fn catalogs_follow_the_live_catalog() {
    use strata_storage::{EngineConfig, StoreLocation};
    let db = crate::Database::open(EngineConfig::new(StoreLocation::Memory))
        .await
        .unwrap();
    let mut s = db.session();
    s.execute(
        "CREATE TABLE t (_id BIGINT, name TEXT, price NUMERIC(10,2), tags TEXT[])",
        &[],
    )
    .await
    .unwrap();
    let cols = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                FROM pg_catalog.pg_attribute a WHERE a.attrelid = 't'::regclass AND a.attnum > 0 ORDER BY a.attnum";
    assert_eq!(
        rows(&mut s, cols).await,
        [
            "_id|bigint|true",
            "name|text|false",
            "price|numeric(10,2)|false",
            "tags|text[]|false"
        ]
    );
    s.execute("INSERT INTO t (_id, extra) VALUES (1, true)", &[])
        .await
        .unwrap();
    assert_eq!(
        rows(&mut s, cols).await.last().unwrap(),
        "extra|boolean|false"
    );
    assert_eq!(
        rows(&mut s, "SELECT c.oid::regclass::text, c.reltuples, pg_table_is_visible(c.oid) FROM pg_class c WHERE c.relname = 't'").await,
        ["t|1.0|true"]
    );
    assert_eq!(
        rows(&mut s, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't' ORDER BY ordinal_position").await,
        ["_id|bigint", "name|text", "price|numeric", "tags|ARRAY", "extra|boolean"]
    );
    // System columns: the temporal ones, with negative attnum.
    assert_eq!(
        rows(&mut s, "SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum < 0 ORDER BY attnum DESC").await,
        ["_valid_from", "_valid_to", "_system_from", "_system_to"]
    );
    // The lookup fails when the value is computed (planning or execution).
    let err = match s.execute("SELECT 'nosuch'::regclass", &[]).await {
        Err(e) => e,
        Ok(mut outs) => outs.remove(0).collect().await.unwrap_err(),
    };
    assert!(
        err.to_string()
            .contains("relation \"nosuch\" does not exist"),
        "{err}"
    );
    assert_eq!(
        rows(&mut s, "SELECT to_regclass('nosuch'), to_regtype('int4')").await,
        ["NULL|23"]
    );
}

/// Every table's primary key (`_id`, index `<table>_pkey`) in pg_index,
/// pg_class, pg_constraint and information_schema, and the functions
/// and syntax the clients read them with.
#[tokio::test]
async fn primary_keys_follow_the_live_catalog() {
    use strata_storage::{EngineConfig, StoreLocation};
    let db = crate::Database::open(EngineConfig::new(StoreLocation::Memory))
        .await
        .unwrap();
    let mut s = db.session();
    let idx = "SELECT c.relname, c.relkind, t.relname, i.indisprimary, i.indisunique, i.indkey, \
               pg_get_indexdef(i.indexrelid), pg_get_indexdef(i.indexrelid, 1, true) \
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid ORDER BY 1";
    assert!(rows(&mut s, idx).await.is_empty());
    // (`_id` is always a table's first column.)
    s.execute("CREATE TABLE a (x BIGINT, _id TEXT)", &[])
        .await
        .unwrap();
    s.execute("INSERT INTO b (_id, v) VALUES (1, 2)", &[])
        .await
        .unwrap();
    // A table named like another's index pushes that index's name on.
    s.execute("CREATE TABLE b_pkey (_id BIGINT)", &[])
        .await
        .unwrap();
    assert_eq!(
        rows(&mut s, idx).await,
        [
            "a_pkey|i|a|true|true|[1]|CREATE UNIQUE INDEX a_pkey ON public.a USING btree (_id)|_id",
            "b_pkey1|i|b|true|true|[1]|CREATE UNIQUE INDEX b_pkey1 ON public.b USING btree (_id)|_id",
            "b_pkey_pkey|i|b_pkey|true|true|[1]|CREATE UNIQUE INDEX b_pkey_pkey ON public.b_pkey USING btree (_id)|_id",
        ]
    );
    assert_eq!(
        rows(&mut s, "SELECT conname, contype, conkey, conrelid::regclass::text, conindid::regclass::text, \
                      pg_get_constraintdef(oid, true) FROM pg_constraint WHERE conrelid = 'a'::regclass").await,
        ["a_pkey|p|[1]|a|a_pkey|PRIMARY KEY (_id)"]
    );
    // Stable OIDs: the index's regclass round-trips; the table has an index.
    assert_eq!(
        rows(&mut s, "SELECT 'a_pkey'::regclass = i.indexrelid, t.relhasindex, ix.relam, ix.reltype \
                      FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class ix ON ix.oid = i.indexrelid \
                      WHERE t.relname = 'a'").await,
        ["true|true|403|0"]
    );
    // The index has its one attribute; it is no table or type.
    assert_eq!(
        rows(&mut s, "SELECT attname, attnum, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'a_pkey'::regclass").await,
        ["_id|1|text"]
    );
    assert!(rows(
        &mut s,
        "SELECT 1 FROM information_schema.tables WHERE table_name LIKE '%pkey1'"
    )
    .await
    .is_empty());
    assert!(
        rows(&mut s, "SELECT 1 FROM pg_type WHERE typname = 'a_pkey'")
            .await
            .is_empty()
    );
    assert_eq!(
        rows(&mut s, "SELECT tc.table_name, kcu.column_name, tc.constraint_name FROM information_schema.table_constraints tc \
                      JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name \
                      WHERE tc.constraint_type = 'PRIMARY KEY' ORDER BY 1").await,
        ["a|_id|a_pkey", "b|_id|b_pkey1", "b_pkey|_id|b_pkey_pkey"]
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'a'"
        )
        .await,
        ["CREATE UNIQUE INDEX a_pkey ON public.a USING btree (_id)"]
    );
    // JDBC's _pg_expandarray and (record).field.
    assert_eq!(
        rows(&mut s, "SELECT (information_schema._pg_expandarray(ARRAY[7, 8])).n, (information_schema._pg_expandarray(ARRAY[7, 8])).x").await,
        ["1|7", "2|8"]
    );
    assert_eq!(
        rows(&mut s, "SELECT r.k::regclass::text FROM (SELECT information_schema._pg_expandarray(i.indkey) AS keys, i.indrelid AS k FROM pg_index i) r \
                      WHERE (r.keys).x = 1 AND (r.keys).n = 1 ORDER BY 1").await,
        ["a", "b", "b_pkey"]
    );
    // SQLAlchemy's generate_subscripts beside unnest; psql's FROM unnest.
    assert_eq!(
        rows(
            &mut s,
            "SELECT unnest(ARRAY['p', 'q']) AS v, generate_subscripts(ARRAY['p', 'q'], 1) AS o"
        )
        .await,
        ["p|1", "q|2"]
    );
    assert!(rows(&mut s, "SELECT generate_subscripts(ARRAY[1], 2)")
        .await
        .is_empty());
    assert_eq!(
        rows(
            &mut s,
            "SELECT x FROM pg_catalog.unnest(ARRAY[3, 4]) x ORDER BY x DESC"
        )
        .await,
        ["4", "3"]
    );
    // EXISTS as a value (psql's \d of an index).
    assert_eq!(
        rows(&mut s, "SELECT c.relname, EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = c.oid AND contype = 'p') \
                      FROM pg_class c WHERE c.relname IN ('a', 'a_pkey') ORDER BY 1").await,
        ["a|false", "a_pkey|true"]
    );
    // regproc literals compare with regproc columns (JDBC getTypeInfo).
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM pg_type WHERE typinput = 'pg_catalog.array_in'::regproc AND typname = '_int8'").await,
        ["1"]
    );
    // Unknown OIDs describe nothing.
    assert_eq!(
        rows(
            &mut s,
            "SELECT pg_get_indexdef(12345), pg_get_constraintdef(12345)"
        )
        .await,
        ["NULL|NULL"]
    );
}
