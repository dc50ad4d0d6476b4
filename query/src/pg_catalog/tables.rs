//! The catalog tables (`pg_class`, `pg_attribute`, `information_schema.*`, …) built from a snapshot of the engine's catalog, and the schema providers that serve them.

use super::*;

/// A cell before it is typed by its column.
#[derive(Clone)]
pub(super) enum V {
    N,
    I(i64),
    F(f64),
    B(bool),
    S(String),
    LI(Vec<i64>),
    LS(Vec<String>),
}

pub(super) fn s(x: impl Into<String>) -> V {
    V::S(x.into())
}

pub(super) fn to_scalar(v: &V, dt: &DataType) -> DfResult<ScalarValue> {
    Ok(match (v, dt) {
        (V::N, dt) => ScalarValue::try_from(dt)?,
        (V::I(i), DataType::Int16) => ScalarValue::Int16(Some(*i as i16)),
        (V::I(i), DataType::Int32) => ScalarValue::Int32(Some(*i as i32)),
        (V::I(i), DataType::Int64) => ScalarValue::Int64(Some(*i)),
        (V::I(i), DataType::UInt32) => ScalarValue::UInt32(Some(*i as u32)),
        (V::I(i), DataType::Float32) => ScalarValue::Float32(Some(*i as f32)),
        (V::F(f), DataType::Float32) => ScalarValue::Float32(Some(*f as f32)),
        (V::B(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (V::S(x), DataType::Utf8) => ScalarValue::Utf8(Some(x.clone())),
        (V::I(i), DataType::Utf8) => ScalarValue::Utf8(Some(i.to_string())),
        (V::LI(l), DataType::List(f)) => {
            let vals = l
                .iter()
                .map(|x| to_scalar(&V::I(*x), f.data_type()))
                .collect::<DfResult<Vec<_>>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&vals, f.data_type()))
        }
        (V::LS(l), DataType::List(f)) => {
            let vals = l
                .iter()
                .map(|x| to_scalar(&V::S(x.clone()), f.data_type()))
                .collect::<DfResult<Vec<_>>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&vals, f.data_type()))
        }
        (_, dt) => return exec_err!("catalog cell does not fit its column type {dt}"),
    })
}

pub(super) fn build(schema: &SchemaRef, rows: Vec<Vec<V>>) -> DfResult<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        if rows.is_empty() {
            cols.push(datafusion::arrow::array::new_empty_array(f.data_type()));
            continue;
        }
        let vals = rows
            .iter()
            .map(|r| to_scalar(r.get(i).unwrap_or(&V::N), f.data_type()))
            .collect::<DfResult<Vec<_>>>()?;
        cols.push(ScalarValue::iter_to_array(vals)?);
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

pub(super) fn typ_fields(t: &TypeRow) -> (bool, &'static str, &'static str) {
    let byval = matches!(t.len, 1 | 2 | 4 | 8) && t.category != "A";
    let align = match t.len {
        1 => "c",
        2 => "s",
        4 => "i",
        8 => "d",
        _ => {
            if t.category == "A" || t.typtype == "c" {
                "d"
            } else {
                "i"
            }
        }
    };
    let storage = if t.len < 0 { "x" } else { "p" };
    (byval, align, storage)
}

pub(super) fn collation_of(type_oid: i64) -> i64 {
    match type_by_oid(type_oid).map(|t| t.name.as_str()) {
        Some("text" | "varchar" | "bpchar") => DEFAULT_COLLATION,
        Some("name") => C_COLLATION,
        _ => 0,
    }
}

pub(super) fn rows_of(table: &str, snap: &Snapshot) -> Vec<Vec<V>> {
    let yes_no = |b: bool| s(if b { "YES" } else { "NO" });
    match table {
        "pg_namespace" => [
            (PG_CATALOG_OID, "pg_catalog"),
            (PG_TOAST_OID, "pg_toast"),
            (PUBLIC_OID, "public"),
            (INFORMATION_SCHEMA_OID, "information_schema"),
        ]
        .iter()
        .map(|(o, n)| vec![V::I(*o), s(*n), V::I(OWNER_OID), V::N])
        .collect(),
        "pg_class" => snap
            .relations
            .iter()
            .map(|r| {
                let user = r.schema == "public";
                let ntuples = snap
                    .alive
                    .get(r.table.as_ref().unwrap_or(&r.name))
                    .filter(|_| user)
                    .map(|a| *a as f64)
                    .unwrap_or(-1.0);
                vec![
                    V::I(r.oid),
                    s(&r.name),
                    V::I(namespace_oid(r.schema)),
                    V::I(if user && r.kind == "r" { r.oid + 1 } else { 0 }),
                    V::I(0),
                    V::I(OWNER_OID),
                    V::I(match r.kind {
                        "r" => HEAP_AM_OID,
                        "i" => BTREE_AM_OID,
                        _ => 0,
                    }),
                    V::I(if r.kind == "r" || r.kind == "i" {
                        r.oid
                    } else {
                        0
                    }),
                    V::I(0),
                    V::I(0),
                    V::F(ntuples),
                    V::I(0),
                    V::I(0),
                    // Every user table has its primary-key index.
                    V::B(user && r.kind == "r"),
                    V::B(false),
                    s("p"),
                    s(r.kind),
                    V::I(r.columns.iter().filter(|c| c.3 > 0).count() as i64),
                    V::I(0),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(true),
                    s(if r.kind == "r" { "d" } else { "n" }),
                    V::B(false),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    // relacl: NULL (default privileges) until something is granted.
                    match snap.access.acl(&r.name) {
                        acl if acl.is_empty() || !user || r.kind != "r" => V::N,
                        acl => V::LS(acl),
                    },
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_attribute" => {
            let mut out = Vec::new();
            for r in &snap.relations {
                for (name, ty, typmod, num, notnull) in &r.columns {
                    let t = type_by_oid(*ty);
                    let (len, byval, align, storage) = match t {
                        Some(t) => {
                            let (b, a, st) = typ_fields(t);
                            (t.len, b, a, st)
                        }
                        None => (-1, false, "i", "x"),
                    };
                    let ndims = t.map(|t| (t.category == "A") as i64).unwrap_or(0);
                    out.push(vec![
                        V::I(r.oid),
                        s(name),
                        V::I(*ty),
                        V::I(-1),
                        V::I(len),
                        V::I(*num),
                        V::I(ndims),
                        V::I(-1),
                        V::I(*typmod as i64),
                        V::B(byval),
                        s(align),
                        s(storage),
                        s(""),
                        V::B(*notnull),
                        V::B(false),
                        V::B(false),
                        s(""),
                        s(""),
                        V::B(false),
                        V::B(true),
                        V::I(0),
                        V::I(collation_of(*ty)),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                    ]);
                }
            }
            out
        }
        "pg_type" => {
            let mut types: Vec<TypeRow> = builtin_types().clone();
            for r in &snap.relations {
                if r.schema == "public" && r.kind == "r" {
                    types.push(TypeRow {
                        oid: r.oid + 1,
                        name: r.name.clone(),
                        len: -1,
                        category: "C".into(),
                        elem: 0,
                        array: 0,
                        relid: r.oid,
                        typtype: "c",
                    });
                }
            }
            types
                .iter()
                .map(|t| {
                    let (byval, align, storage) = typ_fields(t);
                    let io = |suffix: &str| {
                        if t.category == "A" {
                            format!("array_{suffix}")
                        } else if t.typtype == "c" {
                            format!("record_{suffix}")
                        } else {
                            format!("{}{suffix}", t.name)
                        }
                    };
                    vec![
                        V::I(t.oid),
                        s(&t.name),
                        V::I(if t.relid != 0 {
                            PUBLIC_OID
                        } else {
                            PG_CATALOG_OID
                        }),
                        V::I(OWNER_OID),
                        V::I(t.len),
                        V::B(byval),
                        s(t.typtype),
                        s(&t.category),
                        V::B(matches!(
                            t.name.as_str(),
                            "bool" | "float8" | "text" | "timestamptz" | "oid" | "interval"
                        )),
                        V::B(true),
                        s(","),
                        V::I(t.relid),
                        s(if t.category == "A" {
                            "array_subscript_handler"
                        } else {
                            "-"
                        }),
                        V::I(t.elem),
                        V::I(t.array),
                        s(io("in")),
                        s(io("out")),
                        s(io("recv")),
                        s(io("send")),
                        s("-"),
                        s("-"),
                        s("-"),
                        s(align),
                        s(storage),
                        V::B(false),
                        V::I(0),
                        V::I(-1),
                        V::I(0),
                        V::I(collation_of(t.oid)),
                        V::N,
                        V::N,
                        V::N,
                    ]
                })
                .collect()
        }
        "pg_database" => vec![vec![
            V::I(DATABASE_OID),
            s(DATABASE),
            V::I(OWNER_OID),
            V::I(6),
            s("c"),
            V::B(false),
            V::B(true),
            V::I(-1),
            V::I(0),
            V::I(0),
            V::I(1663),
            s("C.UTF-8"),
            s("C.UTF-8"),
            V::N,
            V::N,
            V::N,
        ]],
        "pg_roles" => snap
            .roles()
            .iter()
            .map(|r| {
                vec![
                    s(&r.name),
                    V::B(r.superuser),
                    V::B(true),
                    V::B(r.createrole),
                    V::B(r.superuser),
                    V::B(r.login),
                    V::B(false),
                    V::I(-1),
                    s("********"),
                    V::N,
                    V::B(false),
                    V::N,
                    V::I(role_oid(&r.name)),
                ]
            })
            .collect(),
        "pg_user" => snap
            .roles()
            .iter()
            .filter(|r| r.login)
            .map(|r| {
                vec![
                    s(&r.name),
                    V::I(role_oid(&r.name)),
                    V::B(r.superuser),
                    V::B(r.superuser),
                    V::B(false),
                    V::B(false),
                    s("********"),
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        // Like Postgres, rolpassword holds the SCRAM verifier (never a password).
        "pg_authid" => snap
            .roles()
            .iter()
            .map(|r| {
                vec![
                    V::I(role_oid(&r.name)),
                    s(&r.name),
                    V::B(r.superuser),
                    V::B(true),
                    V::B(r.createrole),
                    V::B(r.superuser),
                    V::B(r.login),
                    V::B(false),
                    V::B(false),
                    V::I(-1),
                    r.password.clone().map(V::S).unwrap_or(V::N),
                    V::N,
                ]
            })
            .collect(),
        "pg_auth_members" => snap
            .access
            .members
            .iter()
            .map(|((role, member), grantor)| {
                vec![
                    V::I(role_oid(&format!("{role}\u{1f}{member}"))),
                    V::I(role_oid(role)),
                    V::I(role_oid(member)),
                    V::I(role_oid(grantor)),
                    V::B(false),
                ]
            })
            .collect(),
        "pg_description" | "pg_seclabel" => {
            let (map, comments) = if table == "pg_description" {
                (&snap.access.comments, true)
            } else {
                (&snap.access.labels, false)
            };
            map.iter()
                .filter_map(|((t, c), v)| {
                    let r = snap
                        .relations
                        .iter()
                        .find(|r| r.schema == "public" && r.kind == "r" && r.name == *t)?;
                    let attnum = if c.is_empty() {
                        0
                    } else {
                        r.columns.iter().find(|col| col.0 == *c)?.3
                    };
                    let oid = r.oid;
                    let mut row = vec![V::I(oid), V::I(1259), V::I(attnum)];
                    if !comments {
                        row.push(s(crate::access::LABEL_PROVIDER));
                    }
                    row.push(s(v.as_str()));
                    Some(row)
                })
                .collect()
        }
        "table_privileges" | "role_table_grants" => snap
            .access
            .grants
            .iter()
            .flat_map(|((table, grantee), privs)| {
                privs.iter().map(move |(p, grantor)| {
                    vec![
                        s(grantor.as_str()),
                        s(if grantee == crate::access::PUBLIC {
                            "PUBLIC"
                        } else {
                            grantee.as_str()
                        }),
                        s(DATABASE),
                        s("public"),
                        s(table.as_str()),
                        s(p.name()),
                        s("NO"),
                        s(if *p == crate::access::Privilege::Select {
                            "YES"
                        } else {
                            "NO"
                        }),
                    ]
                })
            })
            .collect(),
        "pg_settings" => SETTINGS
            .iter()
            .map(|(n, v, desc)| {
                vec![
                    s(*n),
                    s(*v),
                    V::N,
                    s("Strata"),
                    s(*desc),
                    V::N,
                    s("user"),
                    s("string"),
                    s("default"),
                    V::N,
                    V::N,
                    V::N,
                    s(*v),
                    s(*v),
                    V::N,
                    V::N,
                    V::B(false),
                ]
            })
            .collect(),
        "pg_am" => vec![
            vec![
                V::I(HEAP_AM_OID),
                s("heap"),
                s("heap_tableam_handler"),
                s("t"),
            ],
            vec![V::I(BTREE_AM_OID), s("btree"), s("bthandler"), s("i")],
        ],
        "pg_tablespace" => vec![
            vec![V::I(1663), s("pg_default"), V::I(OWNER_OID), V::N, V::N],
            vec![V::I(1664), s("pg_global"), V::I(OWNER_OID), V::N, V::N],
        ],
        "pg_collation" => [
            (DEFAULT_COLLATION, "default", "d", V::N),
            (C_COLLATION, "C", "c", s("C")),
            (951, "POSIX", "c", s("POSIX")),
        ]
        .into_iter()
        .map(|(o, n, p, c)| {
            vec![
                V::I(o),
                s(n),
                V::I(PG_CATALOG_OID),
                V::I(OWNER_OID),
                s(p),
                V::B(true),
                V::I(-1),
                c.clone(),
                c,
                V::N,
                V::N,
            ]
        })
        .collect(),
        "pg_language" => [(12, "internal"), (13, "c"), (14, "sql")]
            .into_iter()
            .map(|(o, n)| {
                vec![
                    V::I(o),
                    s(n),
                    V::I(OWNER_OID),
                    V::B(false),
                    V::B(n == "sql"),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    V::N,
                ]
            })
            .collect(),
        "pg_proc" => snap
            .functions
            .iter()
            .map(|f| {
                vec![
                    V::I(function_oid(f)),
                    s(f),
                    V::I(PG_CATALOG_OID),
                    V::I(OWNER_OID),
                    V::I(12),
                    V::F(1.0),
                    V::F(0.0),
                    V::I(0),
                    s("-"),
                    s("f"),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    s("s"),
                    s("s"),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    V::LI(vec![]),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    s(f),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_tables" => snap
            .relations
            .iter()
            .filter(|r| r.kind == "r")
            .map(|r| {
                vec![
                    s(r.schema),
                    s(&r.name),
                    s(OWNER),
                    V::N,
                    V::B(r.schema == "public"),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                ]
            })
            .collect(),
        "pg_views" => snap
            .relations
            .iter()
            .filter(|r| r.kind == "v")
            .map(|r| vec![s(r.schema), s(&r.name), s(OWNER), V::N])
            .collect(),
        "pg_timezone_names" => vec![vec![s("UTC"), s("UTC"), s("00:00:00"), V::B(false)]],
        "schemata" => ["pg_catalog", "public", "information_schema"]
            .iter()
            .map(|n| vec![s(DATABASE), s(*n), s(OWNER), V::N, V::N, V::N, V::N])
            .collect(),
        "tables" => snap
            .relations
            .iter()
            .filter(|r| r.kind != "i")
            .map(|r| {
                let base = r.kind == "r";
                vec![
                    s(DATABASE),
                    s(r.schema),
                    s(&r.name),
                    s(if base { "BASE TABLE" } else { "VIEW" }),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    yes_no(r.schema == "public"),
                    s("NO"),
                    V::N,
                ]
            })
            .collect(),
        "columns" => {
            let mut out = Vec::new();
            for r in snap.relations.iter().filter(|r| r.kind != "i") {
                for (name, ty, typmod, num, notnull) in &r.columns {
                    if *num <= 0 {
                        continue;
                    }
                    let t = type_by_oid(*ty);
                    let udt = t.map(|t| t.name.clone()).unwrap_or_else(|| "text".into());
                    let data_type = match t {
                        Some(t) if t.category == "A" => "ARRAY".to_string(),
                        _ => format_type(*ty, None).unwrap_or_else(|| "text".into()),
                    };
                    let (prec, radix, scale) = match udt.as_str() {
                        "int2" => (V::I(16), V::I(2), V::I(0)),
                        "int4" => (V::I(32), V::I(2), V::I(0)),
                        "int8" => (V::I(64), V::I(2), V::I(0)),
                        "float4" => (V::I(24), V::I(2), V::N),
                        "float8" => (V::I(53), V::I(2), V::N),
                        "numeric" if *typmod >= 4 => (
                            V::I(((*typmod as i64 - 4) >> 16) & 0xffff),
                            V::I(10),
                            V::I((*typmod as i64 - 4) & 0xffff),
                        ),
                        "numeric" => (V::N, V::I(10), V::N),
                        _ => (V::N, V::N, V::N),
                    };
                    let dt_prec = match udt.as_str() {
                        "date" => V::I(0),
                        "time" | "timestamp" | "timestamptz" | "interval" => V::I(6),
                        _ => V::N,
                    };
                    let mut row = vec![
                        s(DATABASE),
                        s(r.schema),
                        s(&r.name),
                        s(name),
                        V::I(*num),
                        V::N,
                        yes_no(!notnull),
                        s(data_type),
                        V::N,
                        if udt == "text" {
                            V::I(1_073_741_824)
                        } else {
                            V::N
                        },
                        prec,
                        radix,
                        scale,
                        dt_prec,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s(DATABASE),
                        s("pg_catalog"),
                        s(udt),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s(num.to_string()),
                        s("NO"),
                        s("NO"),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s("NO"),
                        s("NEVER"),
                        V::N,
                    ];
                    row.push(yes_no(r.schema == "public"));
                    out.push(row);
                }
            }
            out
        }
        "pg_index" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    V::I(k.oid),
                    V::I(k.table_oid),
                    V::I(1),
                    V::I(1),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(true),
                    V::B(false),
                    V::LI(vec![k.attnum]),
                    V::LI(vec![collation_of(k.type_oid)]),
                    V::LI(vec![k.opclass()]),
                    V::LI(vec![0]),
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_indexes" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s("public"),
                    s(&k.table),
                    s(&k.name),
                    V::N,
                    s(k.indexdef(false)),
                ]
            })
            .collect(),
        "pg_constraint" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    V::I(k.constraint_oid()),
                    s(&k.name),
                    V::I(PUBLIC_OID),
                    s("p"),
                    V::B(false),
                    V::B(false),
                    V::B(true),
                    V::I(k.table_oid),
                    V::I(0),
                    V::I(k.oid),
                    V::I(0),
                    V::I(0),
                    s(" "),
                    s(" "),
                    s(" "),
                    V::B(true),
                    V::I(0),
                    V::B(true),
                    V::LI(vec![k.attnum]),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_opclass" => BTREE_OPCLASSES
            .iter()
            .map(|(o, n, ty, fam)| {
                vec![
                    V::I(*o),
                    V::I(BTREE_AM_OID),
                    s(*n),
                    V::I(PG_CATALOG_OID),
                    V::I(OWNER_OID),
                    V::I(*fam),
                    V::I(*ty),
                    V::B(true),
                    V::I(0),
                ]
            })
            .collect(),
        "table_constraints" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s(DATABASE),
                    s("public"),
                    s(&k.name),
                    s(DATABASE),
                    s("public"),
                    s(&k.table),
                    s("PRIMARY KEY"),
                    s("NO"),
                    s("NO"),
                    s("YES"),
                    V::N,
                ]
            })
            .collect(),
        "key_column_usage" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s(DATABASE),
                    s("public"),
                    s(&k.name),
                    s(DATABASE),
                    s("public"),
                    s(&k.table),
                    s(ID),
                    V::I(1),
                    V::N,
                ]
            })
            .collect(),
        "character_sets" => vec![vec![
            V::N,
            V::N,
            s("UTF8"),
            s("UCS"),
            s("UTF8"),
            s(DATABASE),
            s("pg_catalog"),
            s("C.UTF-8"),
        ]],
        // Strata has no indexes or constraints other than the entity key
        // (above), and no comments, defaults, sequences, enums, ranges, inheritance, triggers, rules,
        // extensions or policies: those catalogs are empty.
        _ => vec![],
    }
}

/// Server settings listed in `pg_settings` (SET changes one connection's
/// values; `SHOW` and `current_setting` report those).
pub(super) const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "DateStyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
    ),
    (
        "IntervalStyle",
        "postgres",
        "Sets the display format for interval values.",
    ),
    (
        "TimeZone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "client_encoding",
        "UTF8",
        "Sets the client's character set encoding.",
    ),
    (
        "default_transaction_isolation",
        "read committed",
        "Sets the transaction isolation level of each new transaction.",
    ),
    ("jit", "off", "Allow JIT compilation (Strata has none)."),
    (
        "integer_datetimes",
        "on",
        "Shows whether datetimes are integer based.",
    ),
    (
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
    ),
    (
        "search_path",
        "public",
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    (
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
    ),
    ("server_version", "16.6", "Shows the server version."),
    (
        "server_version_num",
        "160006",
        "Shows the server version as an integer.",
    ),
    (
        "default_table_access_method",
        "heap",
        "Sets the default table access method for new tables.",
    ),
    (
        "max_index_keys",
        "32",
        "Shows the maximum number of index keys.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
    ),
];

pub(super) fn function_oid(name: &str) -> i64 {
    // 8000..15999: below the first user-table oid.
    8_000 + (table_oid(name) - 16_384) / 2 % 8_000
}

/// `pg_catalog` or `information_schema`.
#[derive(Debug)]
pub(super) struct SystemSchema {
    pub(super) schema: &'static str,
    pub(super) engine: Arc<Engine>,
    pub(super) access: Arc<crate::access::Access>,
    pub(super) functions: Arc<Vec<String>>,
}

impl SystemSchema {
    pub(super) fn find(
        &self,
        name: &str,
    ) -> Option<&'static (&'static str, &'static str, i64, &'static str)> {
        SYSTEM_TABLES
            .iter()
            .find(|(s, n, _, _)| *s == self.schema && *n == name)
    }

    pub(super) fn provider(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((_, n, _, spec)) = self.find(name) else {
            return Ok(None);
        };
        let schema = system_schema(spec);
        let snap = Snapshot::take(&self.engine, self.functions.clone(), &self.access);
        let batch = build(&schema, rows_of(n, &snap))?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES
            .iter()
            .filter(|(s, _, _, _)| *s == self.schema)
            .map(|(_, n, _, _)| n.to_string())
            .collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.provider(name)
    }
    fn table_exist(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

/// `public`, where unqualified `pg_class`, `pg_type`, … find `pg_catalog`'s
/// tables first (Postgres searches `pg_catalog` before the search path).
#[derive(Debug)]
pub(super) struct PublicSchema {
    pub(super) inner: Arc<dyn SchemaProvider>,
    pub(super) pg: Arc<SystemSchema>,
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.pg.find(name).is_some() {
            return self.pg.provider(name);
        }
        if name == crate::access::audit::AUDIT_VIEW {
            if let Some(t) = self.inner.table(crate::access::audit::AUDIT).await? {
                return Ok(Some(t));
            }
            let mut fields = vec![Field::new(ID, DataType::Utf8, false)];
            fields.extend(
                crate::access::audit::audit_schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone()),
            );
            let schema = Arc::new(Schema::new(fields));
            return Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)));
        }
        if let Some(t) = crate::system_tables::provider(name, &self.pg.engine)? {
            return Ok(Some(t));
        }
        self.inner.table(name).await
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// The `strata` catalog with `pg_catalog` and `information_schema` beside `public`.
#[derive(Debug)]
pub(super) struct WithSystemSchemas {
    pub(super) inner: Arc<dyn CatalogProvider>,
    pub(super) pg: Arc<SystemSchema>,
    pub(super) info: Arc<SystemSchema>,
}

impl CatalogProvider for WithSystemSchemas {
    fn schema_names(&self) -> Vec<String> {
        let mut v = self.inner.schema_names();
        v.push("pg_catalog".into());
        v.push("information_schema".into());
        v
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            "pg_catalog" => Some(self.pg.clone()),
            "information_schema" => Some(self.info.clone()),
            "public" => self.inner.schema(name).map(|inner| {
                Arc::new(PublicSchema {
                    inner,
                    pg: self.pg.clone(),
                }) as Arc<dyn SchemaProvider>
            }),
            other => self.inner.schema(other),
        }
    }
}

/// Wrap Strata's catalog so that it also serves `pg_catalog` and
/// `information_schema`. `functions` are the function names `pg_proc` lists.
pub fn catalog(
    inner: Arc<dyn CatalogProvider>,
    engine: &Arc<Engine>,
    access: &Arc<crate::access::Access>,
    functions: Arc<Vec<String>>,
) -> Arc<dyn CatalogProvider> {
    let sys = |schema| {
        Arc::new(SystemSchema {
            schema,
            engine: engine.clone(),
            access: access.clone(),
            functions: functions.clone(),
        })
    };
    Arc::new(WithSystemSchemas {
        inner,
        pg: sys("pg_catalog"),
        info: sys("information_schema"),
    })
}

/// Names of the scalar functions a state knows, sorted (for `pg_proc`).
pub fn function_names(state: &SessionState) -> Arc<Vec<String>> {
    // The same for every database of a process (built-ins plus ours): computed once.
    static NAMES: OnceLock<Arc<Vec<String>>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            let mut v: Vec<String> = state.scalar_functions().keys().cloned().collect();
            v.extend(state.aggregate_functions().keys().cloned());
            v.sort();
            v.dedup();
            Arc::new(v)
        })
        .clone()
}
